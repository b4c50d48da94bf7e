"""Standard addresses: creation rules, region checks, scope, listing, updates and deletes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from geoserver.database.engine import set_scope
from geoserver.domain.principal import SYSTEM, Principal
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.geo.crs import gcj02_to_wgs84, wgs84_to_gcj02
from geoserver.services import addresses as svc

WUMA, NANHUI = "330302006", "330302025"
WUMA_WEST, WUMA_EAST, NANHUI_WEST = "330302006001", "330302006002", "330302025001"


def retire_demo_city(session) -> None:
    """Hide a demo city inside this test's transaction (rolled back after); no-op when empty.

    For tests on a database holding the tiny demo city whose codes the hand-made tree reuses.
    """
    session.execute(text("DELETE FROM standard_address"))
    session.execute(text("DELETE FROM road"))
    session.execute(text("UPDATE region SET valid_to = now(), version = version + 1000 "
                         "WHERE valid_to IS NULL"))


def door(code: str, lon: float, lat: float, *, township: str = WUMA,
         village: str | None = WUMA_WEST, road: str | None = "解放街", number: str = "123",
         crs: str = "WGS84") -> dict[str, Any]:
    """Return the input of a door address at lon/lat."""
    return {"code": code, "level": "door", "township_code": township, "village_code": village,
            "road": road, "door_number": number, "crs": crs,
            "location": {"type": "Point", "coordinates": [lon, lat]}}


def child(code: str, parent: str, level: str, value: str, lon: float, lat: float) -> dict:
    """Return the input of a building, unit or room under ``parent``."""
    own = {"building": "building", "unit": "unit", "room": "room"}[level]
    return {"code": code, "level": level, "parent_code": parent, own: value, "crs": "WGS84",
            "location": {"type": "Point", "coordinates": [lon, lat]}}


def seed_addresses(session) -> dict[str, svc.AddressPublic]:
    """Insert the known addresses the address and geocoding tests use; return them by code."""
    inputs = [
        door("TD1", 120.1, 27.6),
        child("TB1", "TD1", "building", "3", 120.1001, 27.6001),
        child("TU1", "TB1", "unit", "2", 120.1001, 27.6001),
        child("TR1", "TU1", "room", "302", 120.1001, 27.6001),
        door("TD2", 120.1005, 27.6, number="125"),
        door("TD3", 120.3, 27.7, village=WUMA_EAST, road="人民路", number="12"),
        door("TD4", 120.1, 28.2, township=NANHUI, village=NANHUI_WEST, road=None, number="8"),
        door("TD5", 120.1, 28.3, township=NANHUI, village=NANHUI_WEST, road="解放街"),
        door("TD6", 120.11, 28.2, township=NANHUI, village=NANHUI_WEST, road="桂花街", number="8"),
    ]
    return {d["code"]: svc.create_address(session, actor=SYSTEM, data=d) for d in inputs}


@pytest.fixture
def seeded(db, tree) -> dict[str, svc.AddressPublic]:
    """The tree plus the known addresses."""
    return seed_addresses(db)


def test_door_gets_canonical_text_path_and_county(db, seeded) -> None:
    d = seeded["TD1"]
    assert d.full_text == "鹿城区五马街道村6001解放街123号"
    assert d.county_code == "330302"
    assert d.path.endswith("330302006001.330302006001001")  # the grid holding the point
    assert (d.lon, d.lat) == pytest.approx((120.1, 27.6))
    h3 = db.execute(text("SELECT h3_r9 FROM standard_address WHERE code = 'TD1'")).scalar()
    assert h3 is not None


def test_children_inherit_and_format(seeded) -> None:
    room = seeded["TR1"]
    assert room.parent_code == "TU1"
    assert (room.road, room.door_number, room.building, room.unit, room.room) == (
        "解放街", "123", "3", "2", "302")
    assert room.full_text == "鹿城区五马街道村6001解放街123号3幢2单元302室"


def test_components_are_normalised(db, seeded) -> None:
    created = svc.create_address(db, actor=SYSTEM, data=child(
        "TB2", "TD1", "building", "五栋", 120.1002, 27.6002))
    assert created.building == "5"
    unit = svc.create_address(db, actor=SYSTEM, data=child(
        "TU2", "TB2", "unit", "二单元", 120.1002, 27.6002))
    assert unit.unit == "2" and unit.full_text.endswith("123号5幢2单元")


def test_roads_are_registered_per_township(db, seeded) -> None:
    rows = db.execute(text("SELECT township_code, name FROM road ORDER BY 1, 2")).all()
    assert [tuple(r) for r in rows] == [
        (WUMA, "人民路"), (WUMA, "解放街"), (NANHUI, "桂花街"), (NANHUI, "解放街")]


def test_missing_crs_is_invalid_crs(db, tree) -> None:
    data = door("TX1", 120.1, 27.6)
    del data["crs"]
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=data)
    assert err.value.problems[0].field == "crs"


def test_unknown_crs_is_invalid_crs(db, tree) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=door("TX1", 120.1, 27.6, crs="EPSG:3857"))
    assert err.value.problems[0].field == "crs"


def test_swapped_lon_lat_is_invalid_location(db, tree) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=door("TX1", 27.6, 120.1))
    assert err.value.problems[0].field == "location"
    assert "swapped" in err.value.detail


def test_point_outside_named_village_is_invalid_location(db, tree) -> None:
    # (120.3, 27.6) lies in the eastern village, ~24 km from the western one.
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=door("TX1", 120.3, 27.6))
    assert err.value.problems[0].field == "location"
    assert WUMA_WEST in err.value.detail


def test_point_just_outside_village_is_tolerated(db, tree) -> None:
    # 120.2502 is ~20 m east of the village edge at 120.25: a sliver, within the tolerance.
    created = svc.create_address(db, actor=SYSTEM, data=door("TX1", 120.2502, 27.6))
    assert created.village_code == WUMA_WEST
    assert WUMA_EAST in created.path  # the location still follows the point


def test_village_of_another_township_is_invalid(db, tree) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=door("TX1", 120.1, 28.2, village=NANHUI_WEST))
    assert err.value.problems[0].field == "village_code"


def test_unknown_township_is_invalid(db, tree) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=door("TX1", 120.1, 27.6, township="330302099"))
    assert err.value.problems[0].field == "township_code"


def test_door_without_number_and_bad_building_are_invalid(db, seeded) -> None:
    data = door("TX1", 120.1, 27.6)
    del data["door_number"]
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=data)
    assert err.value.problems[0].field == "door_number"
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=child(
            "TX2", "TD1", "building", "3楼东侧", 120.1, 27.6))
    assert err.value.problems[0].field == "building"


def test_child_must_fit_its_parent(db, seeded) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=child("TX1", "TD1", "unit", "1", 120.1, 27.6))
    assert err.value.problems[0].field == "parent_code"
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=SYSTEM, data=child("TX1", "NOPE", "building", "1", 120.1,
                                                        27.6))
    assert err.value.problems[0].field == "parent_code"


def test_duplicate_code_is_conflict(db, seeded) -> None:
    with pytest.raises(Conflict) as err:
        svc.create_address(db, actor=SYSTEM, data=door("TD1", 120.1003, 27.6, number="127"))
    assert err.value.extra["field"] == "code"


def test_duplicate_address_text_is_conflict(db, seeded) -> None:
    with pytest.raises(Conflict) as err:
        svc.create_address(db, actor=SYSTEM, data=door("TX9", 120.1003, 27.6))
    assert err.value.extra["field"] == "door_number"
    # The session is still usable after the failed insert (savepoint).
    assert svc.get_address(db, actor=SYSTEM, code="TD1").code == "TD1"


def test_gcj02_input_is_stored_as_cgcs2000(db, tree) -> None:
    lon, lat = wgs84_to_gcj02(120.1, 27.6)
    created = svc.create_address(db, actor=SYSTEM, data=door("TX1", lon, lat, crs="GCJ02"))
    expected = gcj02_to_wgs84(lon, lat)
    assert (created.lon, created.lat) == pytest.approx(expected, abs=1e-7)
    assert abs(created.lon - lon) > 0.002  # the ~500 m offset really was removed


def test_write_needs_permission_and_jurisdiction(db, tree) -> None:
    reader = Principal(user_id=1, username="r", scope=("",), permissions=frozenset({
        svc.ADDRESS_READ}))
    with pytest.raises(PermissionDenied):
        svc.create_address(db, actor=reader, data=door("TX1", 120.1, 27.6))
    nanhui_path = tree[NANHUI]
    writer = Principal(user_id=2, username="w", scope=(nanhui_path,), permissions=frozenset({
        svc.ADDRESS_WRITE, svc.ADDRESS_READ}))
    set_scope(db, [nanhui_path])  # the tree lives in db's transaction: narrow its scope
    with pytest.raises(InvalidInput) as err:
        svc.create_address(db, actor=writer, data=door("TX1", 120.1, 27.6))
    assert err.value.problems[0].field == "location"


def test_out_of_scope_address_is_not_found(db, tree, seeded) -> None:
    nanhui = Principal(user_id=2, username="n", scope=(tree[NANHUI],),
                       permissions=frozenset({svc.ADDRESS_READ, svc.ADDRESS_WRITE}))
    # The seeded rows live in db's transaction: narrow its scope, and RLS hides the 五马 rows.
    set_scope(db, [tree[NANHUI]])
    with pytest.raises(NotFound):
        svc.get_address(db, actor=nanhui, code="TD1")
    with pytest.raises(NotFound):
        svc.delete_address(db, actor=nanhui, code="TD1", version=1)
    assert svc.get_address(db, actor=nanhui, code="TD4").village_code == NANHUI_WEST


def test_list_filters_and_pages(db, seeded) -> None:
    page = svc.list_addresses(db, actor=SYSTEM, region_code=WUMA, limit=3)
    assert [a.code for a in page.items] == ["TD1", "TB1", "TU1"] and page.next_offset == 3
    rest = svc.list_addresses(db, actor=SYSTEM, region_code=WUMA, limit=3, offset=3)
    assert [a.code for a in rest.items] == ["TR1", "TD2", "TD3"] and rest.next_offset is None
    by_road = svc.list_addresses(db, actor=SYSTEM, road="解放街", level="door")
    assert {a.code for a in by_road.items} == {"TD1", "TD2", "TD5"}
    by_text = svc.list_addresses(db, actor=SYSTEM, text_query="123号3幢")
    assert {a.code for a in by_text.items} == {"TB1", "TU1", "TR1"}
    in_box = svc.list_addresses(db, actor=SYSTEM, bbox=(120.0, 28.0, 120.5, 28.5))
    assert {a.code for a in in_box.items} == {"TD4", "TD5", "TD6"}


def test_list_rejects_bad_bbox_and_limit(db, seeded) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.list_addresses(db, actor=SYSTEM, bbox=(120.5, 27.5, 120.0, 28.0))
    assert err.value.problems[0].field == "bbox"
    with pytest.raises(InvalidInput) as err:
        svc.list_addresses(db, actor=SYSTEM, limit=0)
    assert err.value.problems[0].field == "limit"


def test_update_renames_road_for_descendants(db, seeded) -> None:
    updated = svc.update_address(db, actor=SYSTEM, code="TD1",
                                 data={"version": 1, "road": "解放南路"})
    assert updated.version == 2 and updated.road == "解放南路"
    room = svc.get_address(db, actor=SYSTEM, code="TR1")
    assert room.road == "解放南路"
    assert room.full_text == "鹿城区五马街道村6001解放南路123号3幢2单元302室"


def test_update_with_stale_version_is_conflict(db, seeded) -> None:
    with pytest.raises(Conflict):
        svc.update_address(db, actor=SYSTEM, code="TD2", data={"version": 7, "door_number": "127"})


def test_update_may_not_change_inherited_components(db, seeded) -> None:
    with pytest.raises(InvalidInput) as err:
        svc.update_address(db, actor=SYSTEM, code="TB1", data={"version": 1, "road": "人民路"})
    assert err.value.problems[0].field == "road"


def test_update_moves_point_and_path(db, seeded) -> None:
    moved = svc.update_address(db, actor=SYSTEM, code="TD2", data={
        "version": 1, "crs": "WGS84",
        "location": {"type": "Point", "coordinates": [120.1, 27.8]}})
    assert moved.lat == pytest.approx(27.8)
    assert moved.path.endswith("330302006001002")  # the northern grid of the village


def test_delete_refuses_parents_and_removes_leaves(db, seeded) -> None:
    with pytest.raises(Conflict):
        svc.delete_address(db, actor=SYSTEM, code="TU1", version=1)
    svc.delete_address(db, actor=SYSTEM, code="TR1", version=1)
    with pytest.raises(NotFound):
        svc.get_address(db, actor=SYSTEM, code="TR1")


def test_demo_link_buildings_reaches_units_and_rooms(demo) -> None:
    from geoserver.demo.steps.addresses import link_buildings

    site = demo.execute(text(
        "SELECT b.id FROM standard_address b WHERE b.level = 'building' AND EXISTS "
        "(SELECT 1 FROM standard_address u JOIN standard_address r ON r.parent_id = u.id "
        "WHERE u.parent_id = b.id) ORDER BY b.id LIMIT 1")).scalar_one()
    building = demo.execute(text("SELECT max(id) FROM building")).scalar_one()
    raw = demo.connection().connection.dbapi_connection
    updated = link_buildings(raw, [site], [building])
    rows = demo.execute(text(
        "WITH RECURSIVE d AS (SELECT id FROM standard_address WHERE id = :s UNION ALL "
        "SELECT a.id FROM standard_address a JOIN d ON a.parent_id = d.id) "
        "SELECT count(*), count(*) FILTER (WHERE a.building_id = :b) FROM standard_address a "
        "JOIN d USING (id)"), {"s": site, "b": building}).one()
    assert rows[0] > 2 and tuple(rows) == (updated, updated)
