"""Buildings, residences and households through the services: CRUD, validation, scope, moves."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.geo.crs import InputCRS, wgs84_to_gcj02
from geoserver.geo.h3cells import cell_int
from geoserver.services.buildings import (
    create_building,
    create_household,
    create_residence,
    update_building,
    update_household,
    update_residence,
)
from geoserver.services.objects import delete_object, get_object
from tests.support.objects import (
    IN_GRID_E_S,
    IN_GRID_W_N,
    IN_GRID_W_S,
    IN_NANHUI,
    OUTSIDE_CITY,
    make_actor,
    scoped,
    square,
)


def _building(db, actor, code="B-1", where=IN_GRID_W_S, **extra):
    return create_building(db, actor=actor, data={
        "code": code, "name": "一号楼", "category": "residential", "floors": 6,
        "geometry": square(*where), "crs": "WGS84", **extra})


def test_create_read_update_delete_building(db, tree, system) -> None:
    saved = _building(db, system)
    rec = saved.record
    assert saved.warnings == []
    assert rec["path"] == tree["330302006001001"]
    assert rec["category"] == "residential" and rec["version"] == 1
    assert rec["geometry"]["type"] == "MultiPolygon"
    assert rec["h3_r9"] == cell_int(IN_GRID_W_S[0], IN_GRID_W_S[1], 9)
    assert rec["revealed"] == []

    got = get_object(db, actor=system, kind="building", object_id=rec["id"])
    assert got["code"] == "B-1"

    upd = update_building(db, actor=system, building_id=rec["id"],
                          data={"version": 1, "floors": 7, "name": "一号楼甲"})
    assert upd.record["floors"] == 7 and upd.record["version"] == 2
    assert upd.record["code"] == "B-1"  # untouched fields stay

    delete_object(db, actor=system, kind="building", object_id=rec["id"], version=2)
    with pytest.raises(NotFound):
        get_object(db, actor=system, kind="building", object_id=rec["id"])


def test_gcj02_input_is_stored_as_cgcs2000(db, tree, system) -> None:
    lon, lat = wgs84_to_gcj02(*IN_GRID_W_S)
    rec = create_building(db, actor=system, data={
        "code": "G1", "geometry": square(lon, lat), "crs": "GCJ-02"}).record
    centre = db.execute(text("SELECT ST_X(centroid), ST_Y(centroid) FROM building WHERE id = :i"),
                        {"i": rec["id"]}).one()
    assert centre[0] == pytest.approx(IN_GRID_W_S[0], abs=1e-6)
    assert centre[1] == pytest.approx(IN_GRID_W_S[1], abs=1e-6)
    out = get_object(db, actor=system, kind="building", object_id=rec["id"], out_crs="GCJ02")
    xs = [p[0] for p in out["geometry"]["coordinates"][0][0]]
    assert min(xs) == pytest.approx(lon - 0.0004, abs=1e-6)


def test_self_intersecting_footprint_is_repaired_with_a_warning(db, tree, system) -> None:
    x, y = IN_GRID_W_S
    bowtie = {"type": "Polygon", "coordinates": [[
        [x, y], [x + 0.001, y + 0.001], [x + 0.001, y], [x, y + 0.001], [x, y]]]}
    saved = create_building(db, actor=system,
                            data={"code": "BT", "geometry": bowtie, "crs": "WGS84"})
    assert saved.warnings and "self-intersection" in saved.warnings[0]
    assert len(saved.record["geometry"]["coordinates"]) == 2


@pytest.mark.parametrize(("geometry", "crs", "field", "words"), [
    (square(IN_GRID_W_S[1], IN_GRID_W_S[0]), "WGS84", "geometry", "swapped"),
    (square(*OUTSIDE_CITY), "WGS84", "geometry", "outside the city"),
    ({"type": "Polygon", "coordinates": []}, "WGS84", "geometry", "empty"),
    ({"type": "Point", "coordinates": list(IN_GRID_W_S)}, "WGS84", "geometry", "Point"),
    (square(*IN_GRID_W_S), "EPSG:3857", "crs", "unknown crs"),
    (square(*IN_GRID_W_S), None, "crs", "crs"),
])
def test_bad_geometry_names_the_field(db, tree, system, geometry, crs, field, words) -> None:
    with pytest.raises(InvalidInput) as err:
        create_building(db, actor=system, data={"code": "X", "geometry": geometry, "crs": crs})
    assert err.value.problems[0].field == field
    assert words in err.value.detail


def test_bad_plain_fields_name_the_field(db, tree, system) -> None:
    with pytest.raises(InvalidInput) as err:
        _building(db, system, floors=0)
    assert err.value.problems[0].field == "floors"
    with pytest.raises(InvalidInput) as err:
        _building(db, system, code="a b")
    assert err.value.problems[0].field == "code"
    with pytest.raises(InvalidInput) as err:
        _building(db, system, category="castle")
    assert err.value.problems[0].field == "category"


def test_duplicate_code_is_a_conflict_naming_code(db, tree, system) -> None:
    _building(db, system)
    with pytest.raises(Conflict) as err:
        _building(db, system, where=IN_GRID_W_N)
    assert err.value.extra["field"] == "code"
    # The savepoint kept the caller's transaction usable.
    assert db.execute(text("SELECT count(*) FROM building")).scalar() == 1


def test_stale_version_is_a_conflict(db, tree, system) -> None:
    rec = _building(db, system).record
    update_building(db, actor=system, building_id=rec["id"], data={"version": 1, "floors": 3})
    with pytest.raises(Conflict) as err:
        update_building(db, actor=system, building_id=rec["id"],
                        data={"version": 1, "floors": 4})
    assert "version" in err.value.detail
    with pytest.raises(Conflict):
        delete_object(db, actor=system, kind="building", object_id=rec["id"], version=1)


def test_writing_needs_the_permission(db, tree) -> None:
    reader = make_actor(permissions={"building.read"})
    with pytest.raises(PermissionDenied):
        _building(db, reader)


def test_other_township_cannot_see_update_or_delete(db, tree, system) -> None:
    rec = _building(db, system).record
    outsider = scoped(db, tree["330302025"])
    with pytest.raises(NotFound):
        get_object(db, actor=outsider, kind="building", object_id=rec["id"])
    with pytest.raises(NotFound):
        update_building(db, actor=outsider, building_id=rec["id"],
                        data={"version": 1, "floors": 2})
    with pytest.raises(NotFound):
        delete_object(db, actor=outsider, kind="building", object_id=rec["id"])


def test_actor_scope_is_checked_even_if_the_session_sees_more(db, tree, system) -> None:
    rec = _building(db, system).record
    # RLS sees the whole city, but the actor's jurisdiction is the other township.
    outsider = make_actor((tree["330302025"],))
    with pytest.raises(NotFound):
        get_object(db, actor=outsider, kind="building", object_id=rec["id"])


def test_cannot_create_or_move_outside_own_jurisdiction(db, tree) -> None:
    grid_worker = scoped(db, tree["330302006001001"])
    with pytest.raises(InvalidInput) as err:
        _building(db, grid_worker, where=IN_NANHUI)
    assert "outside your jurisdiction" in err.value.detail
    assert "330302025" not in err.value.detail
    rec = _building(db, grid_worker).record
    with pytest.raises(InvalidInput) as err:
        update_building(db, actor=grid_worker, building_id=rec["id"],
                        data={"version": 1, "geometry": square(*IN_GRID_W_N), "crs": "WGS84"})
    assert err.value.problems[0].field == "geometry"


def test_moving_a_building_moves_residences_households_and_people(db, tree, system,
                                                                   crypto) -> None:
    from geoserver.services.persons import create_person

    b = _building(db, system).record
    r = create_residence(db, actor=system, data={"building_id": b["id"], "room": "101"}).record
    h = create_household(db, actor=system,
                         data={"household_no": "H001", "residence_id": r["id"]}).record
    p = create_person(db, actor=system, crypto=crypto,
                      data={"name": "张三", "residence_id": r["id"],
                            "household_id": h["id"]}).record
    assert {r["path"], h["path"], p["path"]} == {tree["330302006001001"]}

    moved = update_building(db, actor=system, building_id=b["id"], data={
        "version": 1, "geometry": square(*IN_GRID_E_S), "crs": InputCRS.WGS84}).record
    target = tree["330302006002001"]
    assert moved["path"] == target
    assert moved["h3_r8"] == cell_int(IN_GRID_E_S[0], IN_GRID_E_S[1], 8)
    for kind, oid in (("residence", r["id"]), ("household", h["id"]), ("person", p["id"])):
        assert get_object(db, actor=system, kind=kind, object_id=oid)["path"] == target


def test_residence_crud_and_validation(db, tree, system) -> None:
    b = _building(db, system).record
    r = create_residence(db, actor=system, data={
        "building_id": b["id"], "unit": "1", "floor": 3, "room": "301", "usage": "rented",
        "area_m2": "89.50"}).record
    assert r["path"] == b["path"] and r["area_m2"] == 89.5 and r["usage"] == "rented"
    with pytest.raises(Conflict) as err:
        create_residence(db, actor=system,
                         data={"building_id": b["id"], "unit": "1", "room": "301"})
    assert err.value.extra["field"] == "room"
    with pytest.raises(InvalidInput) as err:
        create_residence(db, actor=system, data={"building_id": -5, "room": "1"})
    assert err.value.problems[0].field == "building_id"
    with pytest.raises(InvalidInput) as err:
        create_residence(db, actor=system, data={"building_id": b["id"], "room": "1",
                                                 "usage": "palace"})
    assert err.value.problems[0].field == "usage"
    upd = update_residence(db, actor=system, residence_id=r["id"],
                           data={"version": 1, "usage": "vacant"}).record
    assert upd["usage"] == "vacant" and upd["version"] == 2
    with pytest.raises(Conflict):
        update_residence(db, actor=system, residence_id=r["id"],
                         data={"version": 1, "usage": "rented"})
    with pytest.raises(Conflict) as err:  # a building with residences cannot go
        delete_object(db, actor=system, kind="building", object_id=b["id"])
    assert "residence" in err.value.detail
    delete_object(db, actor=system, kind="residence", object_id=r["id"])


def test_residence_moves_with_a_new_building(db, tree, system) -> None:
    b1 = _building(db, system).record
    b2 = _building(db, system, code="B-2", where=IN_GRID_W_N).record
    r = create_residence(db, actor=system, data={"building_id": b1["id"], "room": "1"}).record
    moved = update_residence(db, actor=system, residence_id=r["id"],
                             data={"version": 1, "building_id": b2["id"]}).record
    assert moved["path"] == tree["330302006001002"]


def test_residence_in_another_jurisdictions_building_is_refused(db, tree, system) -> None:
    b = _building(db, system, where=IN_NANHUI).record
    worker = scoped(db, tree["330302006"])
    with pytest.raises(InvalidInput) as err:
        create_residence(db, actor=worker, data={"building_id": b["id"], "room": "1"})
    assert err.value.problems[0].field == "building_id"


def test_household_crud(db, tree, system, crypto) -> None:
    from geoserver.services.persons import create_person

    b = _building(db, system).record
    r = create_residence(db, actor=system, data={"building_id": b["id"], "room": "1"}).record
    h = create_household(db, actor=system,
                         data={"household_no": "3303020060010001", "residence_id": r["id"]})
    rec = h.record
    assert rec["path"] == b["path"] and rec["head_person_id"] is None
    head = create_person(db, actor=system, crypto=crypto,
                         data={"name": "李四", "household_id": rec["id"]}).record
    assert head["residence_id"] == r["id"]  # taken from the household
    upd = update_household(db, actor=system, household_id=rec["id"],
                           data={"version": 1, "head_person_id": head["id"]}).record
    assert upd["head_person_id"] == head["id"]
    with pytest.raises(Conflict) as err:
        create_household(db, actor=system,
                         data={"household_no": "3303020060010001", "residence_id": r["id"]})
    assert err.value.extra["field"] == "household_no"
    with pytest.raises(InvalidInput) as err:
        update_household(db, actor=system, household_id=rec["id"],
                         data={"version": 2, "residence_id": None})
    assert err.value.problems[0].field == "residence_id"
    with pytest.raises(InvalidInput) as err:
        update_household(db, actor=system, household_id=rec["id"],
                         data={"version": 2, "head_person_id": 10**12})
    assert err.value.problems[0].field == "head_person_id"
    with pytest.raises(Conflict):
        update_household(db, actor=system, household_id=rec["id"],
                         data={"version": 1, "household_no": "X1"})
    delete_object(db, actor=system, kind="household", object_id=rec["id"], version=2)
    # The members stay, without a household.
    assert get_object(db, actor=system, kind="person", object_id=head["id"])[
        "household_id"] is None
