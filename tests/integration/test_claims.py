"""Claim queue (数据认领) and pooled records (归集) against real PostGIS, on the hand-made tree.

Grids of village 330302006001 (120.0–120.25E): 001 south of 27.75N, 002 north of it. Village
330302006002 (120.25–120.5E) has grids 001/002 likewise; township 330302025 lies north of 28N.
One session switches scope between actors, since the tree lives in its uncommitted transaction.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from geoserver.database.engine import set_scope
from geoserver.database.models.claims import ClaimReason, ClaimStatus
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.services import claims
from tests.integration.test_addresses import retire_demo_city, seed_addresses
from tests.support.regions import build_test_tree

V1 = "330302006001"  # village with grids V1+001 (south) and V1+002 (north)
V2 = "330302006002"
T1 = "330302006"
T2 = "330302025"
NEAR_BOUNDARY = (120.1, 27.7499)  # ~11 m south of the V1 grid boundary at 27.75N
INTERIOR = (120.35, 27.55)  # deep inside V2 grid 001
WORKER = frozenset({"claim.read", "claim.write"})


@pytest.fixture
def tree(db):
    """The hand-made tree alone: any demo city in the template is retired for the test."""
    retire_demo_city(db)
    db.execute(text("DELETE FROM key_place"))
    return build_test_tree(db)


def actor(db, tree, code: str | None, perms=WORKER, uid: int = 7) -> Principal:
    """Return a principal scoped to one region and set the session's scope to match."""
    scope = ("",) if code is None else (tree[code],)
    set_scope(db, scope)
    return Principal(user_id=uid, username=f"u{uid}", scope=scope, permissions=perms)


def system(db, tree) -> Principal:
    return actor(db, tree, None, perms=frozenset({"*"}), uid=1)


def add_place(db, wkt: str) -> int:
    return db.execute(text(
        "INSERT INTO key_place (name, category, geom) "
        "VALUES ('测试场所', 'market', ST_GeomFromText(:g, 4490)) RETURNING id"), {"g": wkt},
    ).scalar_one()


def point_record(rid: str, lonlat, **extra) -> dict:
    return {"source_department": "市场监管局", "source_record_id": rid, "target_kind": "enterprise",
            "geometry": {"type": "Point", "coordinates": list(lonlat)}, "crs": "CGCS2000",
            **extra}


@pytest.fixture
def boundary_item(db, tree):
    """A key place ~11 m from the boundary between V1's two grids, queued."""
    add_place(db, "POINT(120.1 27.6)")  # interior: must not be queued
    place = add_place(db, "POINT({} {})".format(*NEAR_BOUNDARY))
    report = claims.enqueue_boundary_rows(db, actor=system(db, tree), kind="key_place",
                                          distance_m=50)
    assert (report.boundary, report.outside_grids) == (1, 0)
    item_id = db.execute(text(
        "SELECT id FROM claim_item WHERE subject_kind = 'key_place' AND subject_id = :p"),
        {"p": place}).scalar_one()
    return item_id, place


def test_boundary_point_gets_both_grids_and_village_holds_it(db, tree, boundary_item) -> None:
    item_id, _ = boundary_item
    row = db.execute(text("SELECT path::text, reason::text, status::text FROM claim_item "
                          "WHERE id = :i"), {"i": item_id}).one()
    assert row == (tree[V1], "boundary", "open")
    cands = db.execute(text("SELECT region_code, distance_m FROM claim_candidate "
                            "WHERE claim_item_id = :i ORDER BY region_code"),
                       {"i": item_id}).all()
    assert [c.region_code for c in cands] == [V1 + "001", V1 + "002"]
    # Metres on the spheroid: 0.0001° of latitude is ~11 m; geography reads the 24 km test edge
    # as a geodesic, which bulges ~6 m north of the parallel there (real edges are short).
    assert cands[0].distance_m == 0 and 11 < cands[1].distance_m < 20


def test_enqueue_is_idempotent(db, tree, boundary_item) -> None:
    again = claims.enqueue_boundary_rows(db, actor=system(db, tree), kind="key_place",
                                         distance_m=50)
    assert (again.boundary, again.outside_grids) == (0, 0)
    assert db.execute(text("SELECT count(*) FROM claim_item")).scalar() == 1


def test_enqueue_refuses_degrees_sized_distance_and_unknown_kind(db, tree) -> None:
    sys_actor = system(db, tree)
    with pytest.raises(InvalidInput) as err:
        claims.enqueue_boundary_rows(db, actor=sys_actor, kind="key_place", distance_m=5000)
    assert err.value.problems[0].field == "distance_m"
    with pytest.raises(InvalidInput):
        claims.enqueue_boundary_rows(db, actor=sys_actor, kind="region", distance_m=10)


def test_candidate_grid_user_claims_and_subject_moves(db, tree, boundary_item) -> None:
    item_id, place = boundary_item
    # The trigger put the place in grid 001 (it lies south of the line); grid 002 claims it.
    north = actor(db, tree, V1 + "002")
    outcome = claims.claim(db, actor=north, item_id=item_id, grid_code=V1 + "002")
    assert outcome.status == ClaimStatus.CLAIMED and outcome.holder_path == tree[V1 + "002"]
    system(db, tree)
    assert db.execute(text("SELECT path::text FROM key_place WHERE id = :p"),
                      {"p": place}).scalar() == tree[V1 + "002"]
    history = db.execute(text("SELECT action::text, from_path::text, to_path::text, "
                              "actor_user_id FROM claim_action WHERE claim_item_id = :i"),
                         {"i": item_id}).all()
    assert history == [("claim", tree[V1 + "002"], tree[V1 + "002"], 7)]


def test_user_of_another_township_or_grid_gets_not_found(db, tree, boundary_item) -> None:
    item_id, _ = boundary_item
    for code in (T2, V2 + "001"):
        outsider = actor(db, tree, code)
        with pytest.raises(NotFound):
            claims.claim(db, actor=outsider, item_id=item_id, grid_code=V1 + "002")
        assert claims.list_items(db, actor=outsider).total == 0


def test_claim_needs_a_grid_of_ones_own_under_the_holder(db, tree, boundary_item) -> None:
    item_id, _ = boundary_item
    south = actor(db, tree, V1 + "001")
    with pytest.raises(InvalidInput) as err:
        claims.claim(db, actor=south, item_id=item_id, grid_code=V1 + "002")
    assert err.value.problems[0].field == "grid_code"
    township = actor(db, tree, T1)
    with pytest.raises(InvalidInput):  # a grid, but not under the holding village
        claims.claim(db, actor=township, item_id=item_id, grid_code=V2 + "001")
    with pytest.raises(PermissionDenied):
        claims.claim(db, actor=Principal(7, "u7", (tree[T1],)), item_id=item_id,
                     grid_code=V1 + "001")


def test_stale_version_and_double_claim_conflict(db, tree, boundary_item) -> None:
    item_id, _ = boundary_item
    village = actor(db, tree, V1)
    with pytest.raises(Conflict):
        claims.claim(db, actor=village, item_id=item_id, grid_code=V1 + "001", version=99)
    claims.claim(db, actor=village, item_id=item_id, grid_code=V1 + "001", version=1)
    with pytest.raises(Conflict):
        claims.claim(db, actor=village, item_id=item_id, grid_code=V1 + "002")


def test_holder_decline_moves_item_up_to_the_township(db, tree, boundary_item) -> None:
    item_id, _ = boundary_item
    village = actor(db, tree, V1)
    outcome = claims.decline(db, actor=village, item_id=item_id, note="不在本村")
    assert outcome.holder_path == tree[T1] and outcome.status == ClaimStatus.DECLINED
    with pytest.raises(NotFound):  # the village gave it up: no longer in its reach
        claims.claim(db, actor=village, item_id=item_id, grid_code=V1 + "001")
    township = actor(db, tree, T1)
    page = claims.list_items(db, actor=township)
    assert [i.id for i in page.items] == [item_id]
    assert page.items[0].reason == ClaimReason.DECLINED
    assert page.items[0].origin_reason == ClaimReason.BOUNDARY
    assert page.items[0].candidates == []  # the village struck its grids off
    row = db.execute(text("SELECT action::text, from_path::text, to_path::text, note "
                          "FROM claim_action WHERE claim_item_id = :i"), {"i": item_id}).one()
    assert row == ("decline", tree[V1], tree[T1], "不在本村")


def test_candidate_grid_decline_strikes_only_itself(db, tree, boundary_item) -> None:
    item_id, _ = boundary_item
    south = actor(db, tree, V1 + "001")
    outcome = claims.decline(db, actor=south, item_id=item_id, note="属北侧网格")
    assert outcome.holder_path == tree[V1]
    with pytest.raises(NotFound):
        claims.decline(db, actor=south, item_id=item_id, note="again")
    north = actor(db, tree, V1 + "002")
    [view] = claims.list_items(db, actor=north).items
    assert [c.region_code for c in view.candidates] == [V1 + "002"]


def test_decline_at_the_top_is_refused(db, tree) -> None:
    sys_actor = system(db, tree)
    report = claims.ingest_pooled(db, actor=sys_actor, records=[
        {"source_department": "公安", "source_record_id": "x1", "target_kind": "person"}])
    [item_id] = report.item_ids
    assert db.execute(text("SELECT path::text FROM claim_item WHERE id = :i"),
                      {"i": item_id}).scalar() == "330300"
    with pytest.raises(InvalidInput):
        claims.decline(db, actor=sys_actor, item_id=item_id, note=None)


def test_transfer_within_scope_then_claim_there(db, tree, boundary_item) -> None:
    item_id, _ = boundary_item
    township = actor(db, tree, T1)
    with pytest.raises(InvalidInput) as err:  # another township: not the actor's to give
        claims.transfer(db, actor=township, item_id=item_id, to_region_code=T2, note=None)
    assert err.value.problems[0].field == "to_region_code"
    outcome = claims.transfer(db, actor=township, item_id=item_id, to_region_code=V2,
                              note="实为二村")
    assert outcome.holder_path == tree[V2] and outcome.status == ClaimStatus.TRANSFERRED
    with pytest.raises(NotFound):  # candidates outside the target were struck off
        claims.claim(db, actor=actor(db, tree, V1 + "001"), item_id=item_id,
                     grid_code=V1 + "001")
    v2 = actor(db, tree, V2)
    claims.claim(db, actor=v2, item_id=item_id, grid_code=V2 + "001")
    system(db, tree)
    actions = db.execute(text("SELECT action::text, to_path::text FROM claim_action "
                              "WHERE claim_item_id = :i ORDER BY id"), {"i": item_id}).all()
    assert actions == [("transfer", tree[V2]), ("claim", tree[V2 + "001"])]


def test_history_is_append_only_for_the_app_role(db, tree, boundary_item) -> None:
    item_id, _ = boundary_item
    claims.claim(db, actor=actor(db, tree, V1), item_id=item_id, grid_code=V1 + "001")
    system(db, tree)
    for sql in ("UPDATE claim_action SET note = 'x'", "DELETE FROM claim_action"):
        with pytest.raises(DBAPIError) as err:
            with db.begin_nested():
                db.execute(text(sql))
        assert err.value.orig.pgcode == "42501"  # type: ignore[union-attr]


def test_history_trigger_refuses_even_the_owner(owner_engine) -> None:
    with owner_engine.connect() as conn, conn.begin() as trans:
        record = conn.execute(text(
            "INSERT INTO pooled_record (source_department, source_record_id, target_kind, path) "
            "VALUES ('d', 'r', 'person', '330300') RETURNING id")).scalar()
        item = conn.execute(text(
            "INSERT INTO claim_item (reason, origin_reason, pooled_record_id, path) "
            "VALUES ('no_location', 'no_location', :r, '330300') RETURNING id"),
            {"r": record}).scalar()
        conn.execute(text("INSERT INTO claim_action (claim_item_id, action, from_path, to_path) "
                          "VALUES (:i, 'transfer', '330300', '330300')"), {"i": item})
        for sql in ("UPDATE claim_action SET note = 'x'", "DELETE FROM claim_action"):
            with pytest.raises(DBAPIError, match="append-only"):
                with conn.begin_nested():
                    conn.execute(text(sql))
        trans.rollback()


def test_ingest_places_records_by_what_locates_them(db, tree) -> None:
    sys_actor = system(db, tree)
    report = claims.ingest_pooled(db, actor=sys_actor, boundary_m=50, records=[
        point_record("p1", INTERIOR),
        point_record("p2", NEAR_BOUNDARY),
        point_record("p3", (120.7, 27.9)),  # in county 330303, which has no grids
        {"source_department": "民政局", "source_record_id": "a1", "target_kind": "person",
         "address": "鹿城区五马街道解放街1号", "region_code": V2},
        {"source_department": "民政局", "source_record_id": "n1", "target_kind": "person"},
    ])
    assert report.created == 5 and report.duplicates == 0
    rows = db.execute(text(
        "SELECT p.source_record_id, i.reason::text, i.path::text, p.path::text AS located, "
        "(SELECT count(*) FROM claim_candidate c WHERE c.claim_item_id = i.id) AS n "
        "FROM claim_item i JOIN pooled_record p ON p.id = i.pooled_record_id "
        "ORDER BY p.source_record_id")).all()
    got = {r.source_record_id: (r.reason, r.path, r.n) for r in rows}
    assert got == {
        "a1": ("address_only", tree[V2], 0),
        "n1": ("no_location", "330300", 0),
        "p1": ("in_grid", tree[V2 + "001"], 1),
        "p2": ("boundary", tree[V1], 2),
        "p3": ("outside_grids", tree["330303"], 0),
    }
    again = claims.ingest_pooled(db, actor=sys_actor, records=[point_record("p1", INTERIOR)])
    assert (again.created, again.duplicates) == (0, 1)


def test_ingest_lists_every_bad_record_and_stores_nothing(db, tree) -> None:
    township = actor(db, tree, T1, perms=frozenset({"pooled_record.write"}))
    bad = point_record("b1", INTERIOR)
    del bad["crs"]
    with pytest.raises(InvalidInput) as err:
        claims.ingest_pooled(db, actor=township, records=[
            bad,
            point_record("b2", (27.55, 120.35)),  # swapped
            {"source_department": "d", "source_record_id": "b3", "target_kind": "person",
             "region_code": T2},  # another township's code
            {"source_department": "d", "source_record_id": "b4", "target_kind": "Bad Kind"},
        ])
    fields = sorted(p.field for p in err.value.problems)
    assert fields == ["records[0].geometry", "records[1].geometry", "records[2].region_code",
                      "records[3].target_kind"]
    with pytest.raises(InvalidInput) as err:  # a point in another township
        claims.ingest_pooled(db, actor=township, records=[point_record("b5", (120.1, 28.2))])
    assert err.value.problems[0].field == "records[0]"
    assert db.execute(text("SELECT count(*) FROM pooled_record")).scalar() == 0


def test_auto_claim_assigns_interior_points_and_leaves_boundary_ones(db, tree) -> None:
    sys_actor = system(db, tree)
    geocoded = (120.4, 27.9)  # V2 grid 002
    claims.ingest_pooled(db, actor=sys_actor, boundary_m=50, records=[
        point_record("p1", INTERIOR),
        point_record("p2", NEAR_BOUNDARY),
        {"source_department": "民政局", "source_record_id": "a1", "target_kind": "person",
         "address": "五马街道二村某路8号", "region_code": T1},
        {"source_department": "民政局", "source_record_id": "a2", "target_kind": "person",
         "address": "查无此地", "region_code": T1},
        {"source_department": "民政局", "source_record_id": "n1", "target_kind": "person",
         "region_code": V1},
    ])
    book = {"五马街道二村某路8号": geocoded}
    report = claims.auto_claim(db, actor=sys_actor, geocoder=book.get)
    assert (report.examined, report.geocoded, report.claimed, report.ambiguous,
            report.unlocated) == (5, 1, 2, 1, 2)
    rows = db.execute(text(
        "SELECT p.source_record_id, p.status::text, p.path::text, i.status::text AS item, "
        "p.location_source FROM pooled_record p JOIN claim_item i ON i.pooled_record_id = p.id "
        "ORDER BY 1")).all()
    got = {r.source_record_id: (r.status, r.path, r.item, r.location_source) for r in rows}
    assert got["p1"] == ("claimed", tree[V2 + "001"], "claimed", "source")
    assert got["a1"] == ("claimed", tree[V2 + "002"], "claimed", "geocoded")
    assert got["p2"][0] == "pending" and got["p2"][2] == "open"
    assert got["a2"][2] == got["n1"][2] == "open"
    actions = db.execute(text("SELECT count(*) FROM claim_action WHERE action = 'auto_claim' "
                              "AND actor_user_id = 1")).scalar()
    assert actions == 2
    again = claims.auto_claim(db, actor=sys_actor, geocoder=book.get)
    assert again.claimed == 0 and again.examined == 3


def test_auto_claim_gives_a_polygon_to_its_largest_overlap(db, tree) -> None:
    sys_actor = system(db, tree)
    # 70% south of the V1 grid line at 27.75, 30% north of it; and one on the corner where four
    # grids of two villages meet, a quarter in each.
    mostly_south = add_place(db, "POLYGON((120.1 27.7493, 120.101 27.7493, 120.101 27.7503, "
                                 "120.1 27.7503, 120.1 27.7493))")
    corner = add_place(db, "POLYGON((120.2495 27.7495, 120.2505 27.7495, 120.2505 27.7505, "
                           "120.2495 27.7505, 120.2495 27.7495))")
    report = claims.enqueue_boundary_rows(db, actor=sys_actor, kind="key_place", distance_m=5)
    assert report.boundary == 2
    shares = db.execute(text(
        "SELECT c.region_code, round(c.overlap_share::numeric, 2) FROM claim_candidate c "
        "JOIN claim_item i ON i.id = c.claim_item_id WHERE i.subject_id = :p "
        "ORDER BY c.region_code"), {"p": mostly_south}).all()
    assert [(code, float(s)) for code, s in shares] == [(V1 + "001", 0.7), (V1 + "002", 0.3)]
    assert db.execute(text("SELECT path::text FROM claim_item WHERE subject_id = :p"),
                      {"p": corner}).scalar() == tree[T1]
    auto = claims.auto_claim(db, actor=sys_actor)
    assert (auto.claimed, auto.ambiguous) == (1, 1)
    assert db.execute(text("SELECT path::text FROM key_place WHERE id = :p"),
                      {"p": mostly_south}).scalar() == tree[V1 + "001"]


def test_auto_claim_stays_inside_the_actors_scope(db, tree) -> None:
    claims.ingest_pooled(db, actor=system(db, tree), records=[point_record("p1", INTERIOR)])
    other = actor(db, tree, T2, perms=frozenset({"claim.manage"}))
    assert claims.auto_claim(db, actor=other).examined == 0
    with pytest.raises(PermissionDenied):
        claims.auto_claim(db, actor=actor(db, tree, T1))


def test_list_items_filters_and_counts_by_reason(db, tree) -> None:
    sys_actor = system(db, tree)
    claims.ingest_pooled(db, actor=sys_actor, boundary_m=50, records=[
        point_record("p1", INTERIOR),
        point_record("p2", NEAR_BOUNDARY),
        {"source_department": "d", "source_record_id": "n1", "target_kind": "person",
         "region_code": V1},
        {"source_department": "d", "source_record_id": "n2", "target_kind": "person",
         "region_code": V2},
    ])
    township = actor(db, tree, T1, perms=frozenset({"claim.read"}))
    page = claims.list_items(db, actor=township, reason=ClaimReason.NO_LOCATION, limit=1)
    assert page.counts_by_reason == {"in_grid": 1, "boundary": 1, "no_location": 2}
    assert page.total == 2 and len(page.items) == 1
    in_v1 = claims.list_items(db, actor=township, region_code=V1)
    assert in_v1.counts_by_reason == {"boundary": 1, "no_location": 1}
    [p2] = [i for i in in_v1.items if i.reason == ClaimReason.BOUNDARY]
    assert p2.source_record_id == "p2" and p2.holder_code == V1
    assert p2.lon == pytest.approx(NEAR_BOUNDARY[0])
    grid = actor(db, tree, V1 + "002", perms=frozenset({"claim.read"}))
    assert [i.source_record_id for i in claims.list_items(db, actor=grid).items] == ["p2"]
    with pytest.raises(InvalidInput):
        claims.list_items(db, actor=township, region_code=T2)


def test_ingest_geocodes_against_standard_addresses_by_default(db, tree) -> None:
    sys_actor = system(db, tree)
    seed_addresses(db)  # 解放街123号 of 五马 lies in grid V1+001; 南汇 has a 解放街 too
    report = claims.ingest_pooled(db, actor=sys_actor, records=[
        {"source_department": "民政局", "source_record_id": "g1", "target_kind": "person",
         "address": "鹿城区五马街道解放街123号"},
        {"source_department": "民政局", "source_record_id": "g2", "target_kind": "person",
         "address": "解放街"},
    ])
    assert report.by_reason == {"in_grid": 1, "address_only": 1}
    row = db.execute(text("SELECT p.location_source, i.path::text FROM pooled_record p "
                          "JOIN claim_item i ON i.pooled_record_id = p.id "
                          "WHERE p.source_record_id = 'g1'")).one()
    assert row == ("geocoded", tree[V1 + "001"])
    skipped = claims.ingest_pooled(db, actor=sys_actor, geocoder=claims.no_geocoding, records=[
        {"source_department": "民政局", "source_record_id": "g3", "target_kind": "person",
         "address": "鹿城区五马街道解放街123号"}])
    assert skipped.by_reason == {"address_only": 1}
