"""Unified search and nearby on the tiny demo city, as the app role under RLS."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from geoserver.domain.principal import SYSTEM, Principal
from geoserver.errors import InvalidInput
from geoserver.services.persons import DOCUMENT_CONTEXT
from geoserver.services.search import (
    GramStats,
    index_grams,
    nearby,
    pinyin_pattern,
    search,
    to_feature_collection,
)

WUMA = "330300.330302.330302006"      # 五马街道
BINJIANG = "330300.330302.330302024"  # 滨江街道
READ_ALL = frozenset({"region.read", "address.read", "building.read", "place.read",
                      "enterprise.read", "person.read", "event.read"})


def _actor(scope: str, permissions=READ_ALL, special=frozenset()) -> Principal:
    return Principal(user_id=None, username="searcher", scope=(scope,),
                     permissions=permissions, special_categories=special)


def _kinds(result) -> set[str]:
    return {h.kind for h in result.hits}


def test_two_chinese_characters_find_regions_grids_buildings_and_addresses(demo) -> None:
    result = search(demo, actor=SYSTEM, q="鼓楼", limit=50)
    assert {"region", "grid", "building", "standard_address"} <= _kinds(result)
    assert all("鼓楼" in h.title for h in result.hits)
    # The village itself outranks the things inside it: "鼓楼社区" starts with the query and
    # is the shortest such title.
    assert (result.hits[0].kind, result.hits[0].title) == ("region", "鼓楼社区")


def test_two_character_query_uses_the_bigram_index_as_the_app_role(demo_session_as) -> None:
    session = demo_session_as([WUMA])
    session.execute(text("SET LOCAL enable_seqscan = off"))
    for table in ("standard_address", "building", "person", "region", "enterprise",
                  "key_place", "organization", "event"):
        current = " AND valid_to IS NULL" if table == "region" else ""
        plan = "\n".join(session.execute(text(
            f"EXPLAIN SELECT id FROM {table} WHERE search_grams @> CAST(:g AS text[]){current} "
            "LIMIT 20"), {"g": ["鼓楼"]}).scalars())
        assert f"{table}_search_grams" in plan and "Seq Scan" not in plan, plan


def test_bigrams_are_cut_as_documented(demo) -> None:
    grams = demo.execute(text("SELECT search_bigrams('鹿城区，五马街道(１２-1号) A座')")).scalar()
    assert grams == ["鹿城", "城区", "五马", "马街", "街道", "12", "1号", "a座"]


def test_exact_phrase_beats_bigram_scatter(demo) -> None:
    hits = search(demo, actor=SYSTEM, q="五马街道", kinds=["region"]).hits
    assert hits[0].title == "五马街道" and hits[0].match == "exact"


def test_a_typo_still_finds_the_name(demo) -> None:
    result = search(demo, actor=SYSTEM, q="鼓楼社去", kinds=["region"])
    assert "鼓楼社区" in [h.title for h in result.hits]


def test_full_id_number_finds_the_person_exactly_and_masked(demo, crypto) -> None:
    row = demo.execute(text(
        "SELECT id, name, document_number_enc FROM person WHERE document_type = 'resident_id' "
        "AND special_category IS NULL ORDER BY id LIMIT 1")).one()
    number = crypto.decrypt(bytes(row.document_number_enc), context=DOCUMENT_CONTEXT)
    result = search(demo, actor=SYSTEM, q=number, crypto=crypto)
    persons = [h for h in result.hits if h.kind == "person"]
    assert [h.id for h in persons] == [row.id]
    assert persons[0].match == "exact"
    assert persons[0].title != row.name and "*" in persons[0].title
    text_out = str(to_feature_collection(result))
    assert number not in text_out and row.name not in text_out
    assert number[:6] + "*" * 8 + number[-4:] in persons[0].subtitle
    # A wrong check digit is not an ID number: nothing is looked up.
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")
    assert not [h for h in search(demo, actor=SYSTEM, q=wrong, crypto=crypto).hits
                if h.kind == "person"]


def test_person_names_are_masked_and_special_populations_hidden(demo_session_as) -> None:
    special = demo_session_as([""]).execute(text(
        "SELECT name, path::text FROM person WHERE special_category = 'drug_rehab' "
        "AND length(name) >= 2 ORDER BY id LIMIT 1")).one()
    session = demo_session_as([special.path])
    plain = search(session, actor=_actor(special.path), q=special.name, kinds=["person"])
    assert all("*" in h.title for h in plain.hits)
    cleared = search(session, actor=_actor(special.path, special=frozenset({"drug_rehab"})),
                     q=special.name, kinds=["person"])
    assert len(cleared.hits) == len(plain.hits) + 1


def test_another_townships_objects_never_appear(demo_session_as) -> None:
    session = demo_session_as([WUMA])
    actor = _actor(WUMA)
    for q in ("滨江", "滨江街道", "杨府山", "社区"):
        for hit in search(session, actor=actor, q=q, limit=50).hits:
            assert hit.path.startswith(WUMA), (q, hit)
    assert search(session, actor=actor, q="滨江街道", kinds=["region"]).hits == []
    with pytest.raises(InvalidInput) as err:
        search(session, actor=actor, q="社区", region_code="330302024")
    assert err.value.problems[0].field == "region_code"


def test_kinds_without_permission_are_left_out(demo_session_as) -> None:
    session = demo_session_as([WUMA])
    actor = _actor(WUMA, permissions=frozenset({"region.read"}))
    assert _kinds(search(session, actor=actor, q="鼓楼", limit=50)) <= {"region", "grid"}


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"q": ""}, "q"), ({"q": "  "}, "q"), ({"q": "五"}, "q"), ({"q": "马" * 65}, "q"),
    ({"q": "鼓楼", "kinds": ["spaceship"]}, "kinds"), ({"q": "鼓楼", "limit": 0}, "limit"),
    ({"q": "鼓楼", "limit": 51}, "limit"),
    ({"q": "鼓楼", "bbox": (120.7, 28.0, 120.6, 28.1)}, "bbox"),
    ({"q": "鼓楼", "near": (28.0, 120.6)}, "near"),
    ({"q": "鼓楼", "near": (120.6, 28.0), "crs": "EPSG:9999"}, "crs"),
])
def test_bad_input_is_refused(demo, kwargs, field) -> None:
    with pytest.raises(InvalidInput) as err:
        search(demo, actor=SYSTEM, **kwargs)
    assert err.value.problems[0].field == field


def test_bbox_outside_the_city_is_empty_without_a_scan(demo, monkeypatch) -> None:
    from geoserver.services import search as search_module

    def refuse(plan):
        raise AssertionError("the kinds were queried")

    beijing = (116.3, 39.8, 116.5, 40.0)
    monkeypatch.setattr(search_module, "statement", refuse)
    assert search(demo, actor=SYSTEM, q="社区", bbox=beijing).hits == []
    assert search(demo, actor=SYSTEM, q="wmjd", bbox=beijing).hits == []


def test_bbox_keeps_hits_inside_it(demo) -> None:
    box = demo.execute(text(
        "SELECT ST_XMin(geom) AS w, ST_YMin(geom) AS s, ST_XMax(geom) AS e, ST_YMax(geom) AS n "
        "FROM region WHERE code = '330302006044' AND valid_to IS NULL")).one()
    hits = search(demo, actor=SYSTEM, q="社区", bbox=tuple(box), kinds=["building"],
                  limit=50).hits
    assert hits
    for h in hits:
        xs = [p[0] for ring in h.geometry["coordinates"][0] for p in ring]
        assert min(xs) <= box.e and max(xs) >= box.w


def test_the_map_centre_pulls_nearby_hits_up(demo) -> None:
    far, near_one = demo.execute(text(
        "SELECT ST_X(centroid), ST_Y(centroid) FROM building WHERE name LIKE '鼓楼社区第1_幢' "
        "ORDER BY id LIMIT 2")).all()
    first = search(demo, actor=SYSTEM, q="鼓楼社区第1", kinds=["building"], near=tuple(far))
    second = search(demo, actor=SYSTEM, q="鼓楼社区第1", kinds=["building"],
                    near=tuple(near_one))
    assert first.hits[0].distance_m < 1 and second.hits[0].distance_m < 1
    assert first.hits[0].id != second.hits[0].id


def test_features_carry_kind_and_codes_only_for_regions(demo) -> None:
    fc = to_feature_collection(search(demo, actor=SYSTEM, q="鼓楼", limit=50))
    assert fc["type"] == "FeatureCollection" and fc["features"]
    for f in fc["features"]:
        props = f["properties"]
        assert props["kind"] and props["title"]
        # Organizations, enterprises and persons may have no location of their own.
        assert f["geometry"] or props["kind"] in ("organization", "enterprise", "person")
        assert "crs" not in (f["geometry"] or {})
        assert ("code" in props) == (props["kind"] in ("region", "grid"))


def test_nearby_lists_what_is_around_by_kind(demo) -> None:
    b = demo.execute(text("SELECT id, ST_X(centroid) AS x, ST_Y(centroid) AS y FROM building "
                          "ORDER BY id LIMIT 1")).one()
    fc = nearby(demo, actor=SYSTEM, lon=b.x, lat=b.y, crs="CGCS2000", radius_m=100)
    assert fc["regions"] and fc["grid"]
    buildings = [f for f in fc["features"] if f["properties"]["kind"] == "building"]
    assert buildings[0]["properties"]["id"] == b.id
    assert buildings[0]["properties"]["distance_m"] == 0
    assert all(f["properties"]["distance_m"] <= 100 for f in fc["features"])
    only = nearby(demo, actor=SYSTEM, lon=b.x, lat=b.y, crs="CGCS2000", radius_m=100,
                  kinds=["standard_address"])
    assert {f["properties"]["kind"] for f in only["features"]} <= {"standard_address"}
    no_buildings = _actor("", permissions=frozenset({"region.read", "address.read"}))
    shown = nearby(demo, actor=no_buildings, lon=b.x, lat=b.y, crs="CGCS2000", radius_m=100)
    assert "building" not in {f["properties"]["kind"] for f in shown["features"]}
    with pytest.raises(InvalidInput):
        nearby(demo, actor=SYSTEM, lon=b.x, lat=b.y, crs="CGCS2000", kinds=["ufo"])


def test_an_over_budget_typo_pass_is_skipped(demo, monkeypatch) -> None:
    from geoserver.services import search as search_module

    slow = ("SELECT 'region' AS kind, 'text' AS tag, 1 AS id, NULL AS code, 'x' AS title, "
            "'' AS path, 0.0 AS sim, NULL::float8 AS distance_m FROM pg_sleep(2)")
    monkeypatch.setattr(search_module, "FUZZY_BUDGET_MS", 50)
    monkeypatch.setattr(search_module, "fuzzy_statement", lambda plan: slow)
    before = demo.execute(text("SHOW statement_timeout")).scalar()
    assert search(demo, actor=SYSTEM, q="鼓楼社去", kinds=["region"]).hits == []
    # The transaction goes on, with its own timeout back.
    assert demo.execute(text("SHOW statement_timeout")).scalar() == before


# --- pinyin -----------------------------------------------------------------------------------


def test_pinyin_is_written_by_the_database_with_every_reading(demo) -> None:
    rows = dict(demo.execute(text(
        "SELECT n, search_pinyin(n) FROM unnest(CAST(:n AS text[])) n"),
        {"n": ["五马街道", "乐清", "鼓楼社区第12幢", "ＫＴＶ广场", "12-3"]}).all())
    assert rows["五马街道"] == " wmjd wumajiedao"
    # 乐 reads le and yue: both initials and both spellings.
    assert rows["乐清"].split() == ["lq", "yq", "leqing", "yueqing"]
    # Digits are left out (pinyin queries are letters only); full-width Latin is folded.
    assert "glsqdz" in rows["鼓楼社区第12幢"].split()  # 幢: chuang or zhuang
    assert rows["ＫＴＶ广场"].split()[:1] == ["ktvgc"]
    assert rows["12-3"] is None


def test_every_character_of_wenzhous_division_names_has_its_pypinyin_readings(demo) -> None:
    from pypinyin import Style, pinyin

    from geoserver.demo.divisions import load_division_tree

    chars = sorted({ch for d in load_division_tree() for ch in d.name
                    if "\u3400" <= ch <= "\u9fff"})
    table = dict(demo.execute(text(
        "SELECT ch, syllables FROM gridgov_meta.pinyin_char WHERE ch = ANY (:c)"),
        {"c": chars}).all())
    assert sorted(table) == chars  # 垟, 岙, 埭, 鳌 … all there
    for ch in chars:
        readings = list(dict.fromkeys(pinyin(ch, style=Style.NORMAL, heteronym=True)[0]))
        assert table[ch] == readings[:2], ch


@pytest.mark.parametrize("q", ["wmjd", "WMJD", "wm jd", "wumajiedao", "wuma", "wm"])
def test_pinyin_initials_and_spelling_find_the_township(demo, q) -> None:
    hits = search(demo, actor=SYSTEM, q=q, kinds=["region"]).hits
    assert hits and hits[0].title == "五马街道", [h.title for h in hits]
    assert hits[0].match == "pinyin"


def test_two_letters_match_the_start_of_a_variant_only(demo) -> None:
    # "jd" is inside wmjd but starts no variant of 五马街道.
    assert "五马街道" not in [h.title for h in search(demo, actor=SYSTEM, q="jd",
                                                        kinds=["region"], limit=50).hits]
    assert "五马街道" in [h.title for h in search(demo, actor=SYSTEM, q="mjd",
                                                    kinds=["region"], limit=50).hits]


def test_pinyin_of_a_renamed_building_is_searchable_at_once(demo_session_as) -> None:
    session = demo_session_as([WUMA])
    building = session.execute(text(
        "UPDATE building SET name = '拼音测试大楼' WHERE id = (SELECT min(id) FROM building "
        "WHERE path <@ CAST(:p AS ltree)) RETURNING id"), {"p": WUMA}).scalar_one()
    hits = search(session, actor=_actor(WUMA), q="pycsdl", kinds=["building"]).hits
    assert [(h.id, h.match) for h in hits] == [(building, "pinyin")]


def test_pinyin_search_stays_in_the_jurisdiction(demo, demo_session_as) -> None:
    # bjjd = 滨江街道, another township.
    assert search(demo, actor=SYSTEM, q="bjjd", kinds=["region"]).hits
    assert search(demo_session_as([WUMA]), actor=_actor(WUMA), q="bjjd").hits == []


def test_pinyin_uses_the_trigram_index_as_the_app_role(demo_session_as) -> None:
    session = demo_session_as([WUMA])
    session.execute(text("SET LOCAL enable_seqscan = off"))
    # (region's 118 current rows are cheaper to read through its partial geometry index.)
    for table in ("building", "key_place", "enterprise", "organization"):
        for pattern in ("% wm%", "%wmjd%"):
            plan = "\n".join(session.execute(text(
                f"EXPLAIN SELECT id FROM {table} WHERE search_pinyin LIKE :p LIMIT 20"),
                {"p": pattern}).scalars())
            assert f"{table}_search_pinyin" in plan and "Seq Scan" not in plan, plan


def test_pinyin_pattern() -> None:
    assert pinyin_pattern("Wm JD") == "%wmjd%"
    assert pinyin_pattern("wm") == "% wm%"
    for q in ("w", "wm1", "五马", "w-m", "x" * 65):
        assert pinyin_pattern(q) is None


# --- long queries: only the rare bigrams are looked up ------------------------------------------


def test_index_grams_keep_the_rarest_and_other_rare_ones() -> None:
    stats = GramStats(rows=1e6, floor=0.001,
                      shares={"网格": 1.0, "村委": 0.7, "第1": 0.5, "岙村": 0.036, "1网": 0.01})
    grams = ["1网", "村委", "第1", "网格", "岙村", "委会"]  # 委会: not listed, so rarer than 0.001
    assert index_grams(grams, stats) == ["1网", "委会"]
    common = ["网格", "村委", "第1"]
    assert index_grams(common, stats) == ["第1"]  # the rarest, however common
    assert index_grams(grams, None) == grams  # never analysed: all of them
    assert index_grams(["网格"], stats) == ["网格"]


def test_rare_bigram_lookup_finds_what_the_full_lookup_finds(demo, monkeypatch) -> None:
    from geoserver.services import search as search_module

    q = "鼓楼社区第1"
    full = search(demo, actor=SYSTEM, q=q, limit=50)
    grams = demo.execute(text("SELECT search_bigrams(:q)"), {"q": q}).scalar_one()
    # Pretend 社区 is rare everywhere: only it is read from the index, the rest checked.
    stats = GramStats(rows=1e6, floor=0.5, shares={g: 0.9 for g in grams if g != "社区"})
    tables = ("region", "standard_address", "building", "key_place", "enterprise",
              "organization", "person", "event")
    monkeypatch.setattr(search_module, "gram_stats", lambda s: dict.fromkeys(tables, stats))
    plan = search_module._plan(demo, SYSTEM, q, ["building"], None, None, None, 20, "WGS84",
                               None)
    assert plan.index_grams["building"] == ["社区"]
    explained = "\n".join(demo.execute(text("EXPLAIN " + search_module.statement(plan)),
                                       search_module._params(plan)).scalars())
    assert "@> '{社区}'::text[]" in explained and "鼓楼" in explained  # both conditions
    rare = search(demo, actor=SYSTEM, q=q, limit=50)
    assert [(h.kind, h.id) for h in rare.hits] == [(h.kind, h.id) for h in full.hits]
    assert all("鼓楼社区第1" in h.title.replace(" ", "") or h.match != "contains"
               for h in rare.hits)


def test_the_typo_pass_runs_only_when_nothing_matched(demo, monkeypatch) -> None:
    from geoserver.services import search as search_module

    def refuse(plan):
        raise AssertionError("typo pass ran")

    monkeypatch.setattr(search_module, "fuzzy_statement", refuse)
    assert search(demo, actor=SYSTEM, q="鼓楼社区", kinds=["region"]).hits
