"""Geocoding text to standard addresses, reverse geocoding, and both under the caller's scope."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from geoserver.database.engine import set_scope
from geoserver.errors import InvalidInput
from geoserver.geo.crs import wgs84_to_gcj02
from geoserver.geo.measure import haversine_m
from geoserver.services.geocode import geocode, region_chain, reverse_geocode
from tests.integration.test_addresses import NANHUI, WUMA, seed_addresses
from tests.support.regions import build_test_tree


@pytest.fixture
def tree(db) -> dict[str, str]:
    """The hand-made region tree with the known addresses."""
    paths = build_test_tree(db)
    seed_addresses(db)
    return paths


def top(db, query: str, **kw):
    """Return the best hit for a query (fails the test if there is none)."""
    hits = geocode(db, text=query, **kw)
    assert hits, f"no hit for {query}"
    return hits[0]


def test_exact_address_finds_the_unit(db, tree) -> None:
    hit = top(db, "鹿城区五马街道解放街123号3幢2单元")
    assert hit.address.code == "TU1"
    assert hit.score == 1.0
    assert set(hit.matched) == {"county", "township", "road", "door_number", "building", "unit"}
    assert hit.approximate == hit.missing == hit.conflicting == ()
    assert (hit.lon, hit.lat) == pytest.approx((120.1001, 27.6001))


@pytest.mark.parametrize("query", [
    "五马解放街１２３号三幢二单元",  # abbreviated township, full-width digits, Chinese numerals
    "鹿城解放街123号3栋2单元",  # no township, 栋
    "温州市鹿城区五马街道解放街123号3号楼2单元",  # city prefix, 号楼
    "浙江省温州市五马街道解放街123号第3幢第2单元",  # 第
])
def test_variants_find_the_unit(db, tree, query: str) -> None:
    assert top(db, query).address.code == "TU1"


def test_trailing_room_finds_the_room(db, tree) -> None:
    for query in ("鹿城区五马街道解放街123号3幢2单元302", "解放街123号3-2-302"):
        hit = top(db, query)
        assert hit.address.code == "TR1" and hit.score == 1.0


def test_unknown_room_falls_back_to_its_unit(db, tree) -> None:
    hit = top(db, "五马街道解放街123号3幢2单元1101室")
    assert hit.address.code == "TU1"
    assert hit.missing == ("room",) and hit.score < 1.0


def test_door_only_prefers_the_door(db, tree) -> None:
    hits = geocode(db, text="五马街道解放街123号")
    assert hits[0].address.code == "TD1" and hits[0].score == 1.0
    # Then the neighbouring door on the same side, and the same number in another township.
    assert [h.address.code for h in hits[1:]] == ["TD2", "TD5"]
    assert hits[1].approximate == ("door_number",) and hits[1].score < 0.8
    assert hits[2].conflicting == ("township",) and hits[2].score < 0.8


def test_one_character_typo_in_road(db, tree) -> None:
    hit = top(db, "五马街道解方街123号3幢2单元")
    assert hit.address.code == "TU1"
    assert hit.approximate == ("road",)
    assert 0.5 <= hit.score < 0.9


def test_road_known_in_one_township_fills_it_in(db, tree) -> None:
    hit = top(db, "人民路12号")
    assert hit.address.code == "TD3"
    assert "township" in hit.matched  # inferred from the road gazetteer


def test_same_road_in_two_townships_ties_and_near_breaks_it(db, tree) -> None:
    hits = geocode(db, text="解放街123号")
    assert {h.address.code for h in hits[:2]} == {"TD1", "TD5"}
    assert hits[0].score == hits[1].score == 1.0
    lon, lat = wgs84_to_gcj02(120.1, 28.29)
    near = geocode(db, text="解放街123号", near=(lon, lat), near_crs="GCJ02")
    assert near[0].address.code == "TD5" and near[0].distance_m < 1200


def test_rural_address_by_village_and_door(db, tree) -> None:
    hits = geocode(db, text="南汇街道村5001 8号")
    # 桂花街8号 in the same village scores as well; the door without a road wins the tie.
    assert [h.address.code for h in hits] == ["TD4", "TD6"]
    assert set(hits[0].matched) >= {"village", "door_number"}
    assert top(db, "南汇街道村5001桂花街8号").address.code == "TD6"


def test_nothing_matches(db, tree) -> None:
    assert geocode(db, text="不存在路999号") == []
    assert geocode(db, text="五马街道解放街999号") == []  # no door anywhere near 999
    assert geocode(db, text="") == []
    assert geocode(db, text="今天天气很好") == []


def test_bad_arguments(db, tree) -> None:
    with pytest.raises(InvalidInput) as err:
        geocode(db, text="解放街123号", limit=0)
    assert err.value.problems[0].field == "limit"
    with pytest.raises(InvalidInput) as err:
        geocode(db, text="解放街123号", near=(120.1, 27.6))
    assert err.value.problems[0].field == "near_crs"


def test_scope_hides_other_townships(db, tree) -> None:
    set_scope(db, [tree[NANHUI]])  # the rows live in db's transaction: narrow its scope
    assert geocode(db, text="人民路12号") == []
    hits = geocode(db, text="五马街道解放街123号3幢2单元")
    # Only 南汇's 解放街123号 is visible, and its township contradicts the text.
    assert [h.address.code for h in hits] == ["TD5"]
    assert "township" in hits[0].conflicting and hits[0].score < 0.8
    assert reverse_geocode(db, lon=120.1, lat=27.6, crs="WGS84").addresses == []


def test_reverse_geocode_nearest_with_distance(db, tree) -> None:
    result = reverse_geocode(db, lon=120.1004, lat=27.6, crs="WGS84", radius_m=100)
    codes = [h.address.code for h in result.addresses]
    assert codes == ["TD2", "TB1", "TD1"]  # doors and buildings only, nearest first
    expected = haversine_m(120.1004, 27.6, 120.1005, 27.6)
    assert result.addresses[0].distance_m == pytest.approx(expected, rel=0.01)
    assert all(h.distance_m <= 100 for h in result.addresses)
    assert [r.code for r in result.regions] == [
        "330300", "330302", WUMA, "330302006001", "330302006001001"]


def test_reverse_geocode_radius_levels_and_crs(db, tree) -> None:
    small = reverse_geocode(db, lon=120.1004, lat=27.6, crs="WGS84", radius_m=5)
    assert small.addresses == []
    rooms = reverse_geocode(db, lon=120.1001, lat=27.6001, crs="WGS84", levels=["room"])
    assert [h.address.code for h in rooms.addresses] == ["TR1"]
    lon, lat = wgs84_to_gcj02(120.1005, 27.6)
    shifted = reverse_geocode(db, lon=lon, lat=lat, crs="GCJ02", radius_m=10)
    assert [h.address.code for h in shifted.addresses] == ["TD2"]
    with pytest.raises(InvalidInput) as err:
        reverse_geocode(db, lon=120.1, lat=27.6, crs="")
    assert err.value.problems[0].field == "crs"
    with pytest.raises(InvalidInput) as err:
        reverse_geocode(db, lon=27.6, lat=120.1, crs="WGS84")
    assert err.value.problems[0].field == "location"


def test_region_chain_lists_dedicated_grids_last(db, tree) -> None:
    chain = region_chain(db, 120.22, 27.65)
    assert [r.code for r in chain][-2:] == ["330302006001001", "330302006900001"]
    assert chain[-1].grid_type == "dedicated"
    assert region_chain(db, 122.5, 27.65) == []


# --- the generated tiny demo city ----------------------------------------------------------------


def test_demo_city_has_the_example_of_the_issue(demo) -> None:
    hit = top(demo, "鹿城区五马街道解放街123号3幢2单元")
    assert hit.score == 1.0
    a = hit.address
    assert (a.township_code, a.road, a.door_number, a.building, a.unit, a.room) == (
        WUMA, "解放街", "123", "3", "2", None)
    assert top(demo, "五马街道解放街123号3幢2单元302室").address.room == "302"


def test_demo_city_locations_match_the_trigger(demo) -> None:
    """The demo step computes path/region_id in bulk; they must be what locate() gives."""
    counts = demo.execute(text(
        "SELECT count(*) AS total, "
        "count(*) FILTER (WHERE (a.path, a.region_id) IS DISTINCT FROM (l.path, l.region_id)) "
        "AS wrong FROM standard_address a "
        "LEFT JOIN LATERAL gridgov_meta.locate(a.geom) l ON true")).one()
    assert counts.total > 1000 and counts.wrong == 0
    outside = demo.execute(text(
        "SELECT count(*) FROM standard_address a JOIN region v ON v.code = a.village_code "
        "AND v.valid_to IS NULL WHERE NOT ST_Intersects(v.geom, a.geom)")).scalar()
    assert outside == 0


def test_demo_city_scope_of_one_grid(demo_session_as) -> None:
    probe = demo_session_as([""])
    grid_path, inside = probe.execute(text(
        "SELECT path::text, count(*) FROM standard_address GROUP BY path "
        "ORDER BY count(*) DESC, path LIMIT 1")).one()
    scoped = demo_session_as([grid_path])
    assert scoped.execute(text("SELECT count(*) FROM standard_address")).scalar() == inside
    door = probe.execute(text(
        "SELECT full_text FROM standard_address WHERE level = 'door' AND NOT path <@ "
        "CAST(:p AS ltree) ORDER BY id LIMIT 1"), {"p": grid_path}).scalar()
    assert top(probe, door).address.full_text == door
    hits = geocode(scoped, text=door)
    assert door not in [h.address.full_text for h in hits]
    assert all(h.address.path == grid_path or h.address.path.startswith(grid_path + ".")
               for h in hits)
