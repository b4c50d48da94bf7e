"""Organizations, key places, city components and enterprises through the services."""

from __future__ import annotations

import random

import pytest

from geoserver.domain.documents import synthetic_uscc
from geoserver.errors import Conflict, InvalidInput, NotFound
from geoserver.geo.h3cells import cell_int
from geoserver.services.enterprises import create_enterprise, update_enterprise
from geoserver.services.objects import delete_object, get_object
from geoserver.services.places import (
    create_city_component,
    create_key_place,
    create_organization,
    update_city_component,
    update_key_place,
    update_organization,
)
from tests.support.objects import (
    IN_GRID_E_S,
    IN_GRID_W_N,
    IN_GRID_W_S,
    IN_NANHUI,
    OUTSIDE_CITY,
    WRITE_ALL,
    make_actor,
    point,
    scoped,
    square,
)

USCC = synthetic_uscc(random.Random(7), "330302")
USCC2 = synthetic_uscc(random.Random(8), "330302")


def _bad_check_character(code: str) -> str:
    return code[:-1] + ("1" if code[-1] != "1" else "2")


# --- organizations ----------------------------------------------------------------------------


def test_organization_crud_with_point_or_region(db, tree, system) -> None:
    by_region = create_organization(db, actor=system, data={
        "name": "五马街道党工委", "category": "party", "region_code": "330302006"}).record
    assert by_region["path"] == tree["330302006"] and by_region["geometry"] is None
    by_point = create_organization(db, actor=system, data={
        "name": "某协会", "category": "social_organization", "uscc": USCC,
        "geometry": point(*IN_GRID_W_N), "crs": "WGS84"}).record
    assert by_point["path"] == tree["330302006001002"]
    assert by_point["h3_r9"] == cell_int(*IN_GRID_W_N, 9)
    moved = update_organization(db, actor=system, organization_id=by_region["id"], data={
        "version": 1, "geometry": point(*IN_GRID_E_S), "crs": "WGS84"}).record
    assert moved["path"] == tree["330302006002001"] and moved["geometry"]["type"] == "Point"
    back = update_organization(db, actor=system, organization_id=by_region["id"], data={
        "version": 2, "geometry": None, "region_code": "330302025"}).record
    assert back["path"] == tree["330302025"] and back["geometry"] is None
    delete_object(db, actor=system, kind="organization", object_id=back["id"], version=3)


def test_organization_validation(db, tree, system) -> None:
    with pytest.raises(InvalidInput) as err:
        create_organization(db, actor=system, data={"name": "x", "category": "party"})
    assert err.value.problems[0].field == "region_code"
    with pytest.raises(InvalidInput) as err:
        create_organization(db, actor=system, data={
            "name": "x", "category": "party", "region_code": "330302006",
            "uscc": _bad_check_character(USCC)})
    assert err.value.problems[0].field == "uscc"
    with pytest.raises(InvalidInput) as err:
        create_organization(db, actor=system, data={"name": "x", "category": "guild",
                                                    "region_code": "330302006"})
    assert err.value.problems[0].field == "category"
    with pytest.raises(InvalidInput) as err:
        create_organization(db, actor=system, data={"name": "x", "region_code": "999999"})
    assert err.value.problems[0].field == "region_code"


# --- key places -------------------------------------------------------------------------------


def test_key_place_point_or_outline_and_masked_contact(db, tree, crypto) -> None:
    actor = make_actor()
    school = create_key_place(db, actor=actor, crypto=crypto, data={
        "name": "实验小学", "category": "school", "contact_name": "陈老师傅",
        "contact_phone": "13912345678", "risk_level": "medium",
        "geometry": square(*IN_GRID_W_S, d=0.001), "crs": "WGS84"}).record
    assert school["geometry"]["type"] == "Polygon"
    assert school["contact_name"] == "陈**傅" and school["contact_phone"] == "139****5678"
    assert school["h3_r9"] == cell_int(*IN_GRID_W_S, 9)
    cleared = make_actor(permissions=WRITE_ALL | {"person.read_sensitive"})
    clear = get_object(db, actor=cleared, kind="key_place", object_id=school["id"],
                       reveal=True, crypto=crypto)
    assert clear["contact_name"] == "陈老师傅" and clear["contact_phone"] == "13912345678"
    assert clear["revealed"] == ["contact_name", "contact_phone"]
    station = create_key_place(db, actor=actor, crypto=crypto, data={
        "name": "加油站", "category": "gas_station", "geometry": point(*IN_GRID_W_N),
        "crs": "WGS84"}).record
    assert station["geometry"]["type"] == "Point" and station["contact_phone"] is None
    upd = update_key_place(db, actor=actor, crypto=crypto, key_place_id=station["id"],
                           data={"version": 1, "risk_level": "high",
                                 "contact_phone": "0577-88881234"}).record
    assert upd["risk_level"] == "high" and upd["contact_phone"] == "0577-****1234"
    with pytest.raises(Conflict):
        update_key_place(db, actor=actor, crypto=crypto, key_place_id=station["id"],
                         data={"version": 1, "risk_level": "low"})
    delete_object(db, actor=actor, kind="key_place", object_id=station["id"], version=2)
    with pytest.raises(NotFound):
        get_object(db, actor=actor, kind="key_place", object_id=station["id"])


def test_key_place_validation(db, tree, system, crypto) -> None:
    line = {"type": "LineString", "coordinates": [list(IN_GRID_W_S), list(IN_GRID_W_N)]}
    for data, field in (
        ({"geometry": line}, "geometry"),
        ({"geometry": point(*OUTSIDE_CITY)}, "geometry"),
        ({"contact_phone": "110"}, "contact_phone"),
        ({"category": "casino"}, "category"),
    ):
        body = {"name": "x", "category": "market", "geometry": point(*IN_GRID_W_S),
                "crs": "WGS84"} | data
        with pytest.raises(InvalidInput) as err:
            create_key_place(db, actor=system, crypto=crypto, data=body)
        assert err.value.problems[0].field == field, data


# --- city components --------------------------------------------------------------------------


def test_city_component_crud(db, tree, system) -> None:
    c = create_city_component(db, actor=system, data={
        "code": "JG-0001", "category": "manhole_cover", "owner_department": "市政",
        "geometry": point(*IN_GRID_W_S), "crs": "BD09"}).record
    assert c["status"] == "intact" and c["path"].startswith(tree["330302006"])
    upd = update_city_component(db, actor=system, city_component_id=c["id"],
                                data={"version": 1, "status": "damaged"}).record
    assert upd["status"] == "damaged"
    with pytest.raises(Conflict) as err:
        create_city_component(db, actor=system, data={
            "code": "JG-0001", "category": "street_lamp", "geometry": point(*IN_GRID_W_N),
            "crs": "WGS84"})
    assert err.value.extra["field"] == "code"
    with pytest.raises(InvalidInput) as err:
        update_city_component(db, actor=system, city_component_id=c["id"],
                              data={"version": 2, "status": "stolen"})
    assert err.value.problems[0].field == "status"
    with pytest.raises(Conflict):
        update_city_component(db, actor=system, city_component_id=c["id"],
                              data={"version": 1, "status": "missing"})
    delete_object(db, actor=system, kind="city_component", object_id=c["id"])
    with pytest.raises(NotFound):
        get_object(db, actor=system, kind="city_component", object_id=c["id"])


def test_a_height_in_the_input_is_dropped(db, tree, system) -> None:
    c = create_city_component(db, actor=system, data={
        "code": "Z1", "category": "camera", "crs": "WGS84",
        "geometry": {"type": "Point", "coordinates": [*IN_GRID_W_S, 12.5]}}).record
    assert c["geometry"]["coordinates"] == list(IN_GRID_W_S)


def test_city_component_polygon_is_refused(db, tree, system) -> None:
    with pytest.raises(InvalidInput) as err:
        create_city_component(db, actor=system, data={
            "code": "X1", "category": "camera", "geometry": square(*IN_GRID_W_S),
            "crs": "WGS84"})
    assert err.value.problems[0].field == "geometry"


# --- enterprises ------------------------------------------------------------------------------


def test_enterprise_crud_uscc_and_masked_representative(db, tree, crypto) -> None:
    actor = make_actor()
    e = create_enterprise(db, actor=actor, data={
        "name": "温州某某鞋业有限公司", "uscc": USCC.lower(), "credit_grade": "A",
        "legal_representative": "林大山", "industry": "制鞋业", "staff_count": 120,
        "region_code": "330302006001"}).record
    assert e["uscc"] == USCC and e["legal_representative"] == "林*山"
    assert e["path"] == tree["330302006001"]
    cleared = make_actor(permissions=WRITE_ALL | {"person.read_sensitive"})
    assert get_object(db, actor=cleared, kind="enterprise", object_id=e["id"], reveal=True,
                      crypto=crypto)["legal_representative"] == "林大山"
    with pytest.raises(Conflict) as err:
        create_enterprise(db, actor=actor, data={"name": "重复", "uscc": USCC,
                                                 "region_code": "330302006"})
    assert err.value.extra["field"] == "uscc"
    with pytest.raises(InvalidInput) as err:
        create_enterprise(db, actor=actor, data={"name": "坏码", "uscc": _bad_check_character(
            USCC2), "region_code": "330302006"})
    assert err.value.problems[0].field == "uscc"
    upd = update_enterprise(db, actor=actor, enterprise_id=e["id"], data={
        "version": 1, "credit_grade": "C", "geometry": point(*IN_GRID_W_N),
        "crs": "WGS84"}).record
    assert upd["credit_grade"] == "C" and upd["path"] == tree["330302006001002"]
    with pytest.raises(InvalidInput) as err:
        update_enterprise(db, actor=actor, enterprise_id=e["id"],
                          data={"version": 2, "credit_grade": "E"})
    assert err.value.problems[0].field == "credit_grade"
    with pytest.raises(Conflict):
        update_enterprise(db, actor=actor, enterprise_id=e["id"],
                          data={"version": 1, "credit_grade": "B"})
    delete_object(db, actor=actor, kind="enterprise", object_id=e["id"], version=2)
    with pytest.raises(NotFound):
        get_object(db, actor=actor, kind="enterprise", object_id=e["id"])


def test_enterprise_scope_isolation(db, tree, system) -> None:
    e = create_enterprise(db, actor=system, data={
        "name": "南汇企业", "uscc": USCC, "geometry": point(*IN_NANHUI),
        "crs": "WGS84"}).record
    worker = scoped(db, tree["330302006"])
    with pytest.raises(NotFound):
        get_object(db, actor=worker, kind="enterprise", object_id=e["id"])
    with pytest.raises(NotFound):
        update_enterprise(db, actor=worker, enterprise_id=e["id"],
                          data={"version": 1, "name": "x"})
    with pytest.raises(InvalidInput) as err:
        create_enterprise(db, actor=worker, data={"name": "越界", "uscc": USCC2,
                                                  "geometry": point(*IN_NANHUI),
                                                  "crs": "WGS84"})
    assert "outside your jurisdiction" in err.value.detail
