"""Lists and exports: filters, whitelisted sort, keyset and offset paging, streaming."""

from __future__ import annotations

import pytest

from geoserver.errors import InvalidInput, PermissionDenied
from geoserver.geo.crs import wgs84_to_gcj02
from geoserver.services.buildings import create_building, create_residence
from geoserver.services.objects import iter_rows, kinds, list_objects
from geoserver.services.persons import create_person
from tests.support.objects import (
    IN_GRID_E_S,
    IN_GRID_W_S,
    IN_NANHUI,
    KINDS,
    make_actor,
    scoped,
    square,
)


@pytest.fixture
def town(db, tree, system):
    """Twelve buildings: ten in a row in grid W-S, one in grid E-S, one in 南汇."""
    made = []
    for i in range(10):
        made.append(create_building(db, actor=system, data={
            "code": f"R{i:02d}", "name": f"幸福小区{i}幢",
            "category": "residential" if i % 2 else "commercial",
            "geometry": square(IN_GRID_W_S[0] + i * 0.002, IN_GRID_W_S[1]),
            "crs": "WGS84"}).record)
    made.append(create_building(db, actor=system, data={
        "code": "E01", "name": "东区仓库", "category": "industrial",
        "geometry": square(*IN_GRID_E_S), "crs": "WGS84"}).record)
    made.append(create_building(db, actor=system, data={
        "code": "N01", "name": "南汇大厦", "category": "office",
        "geometry": square(*IN_NANHUI), "crs": "WGS84"}).record)
    return made


def _codes(page) -> list[str]:
    return [r["code"] for r in page.items]


def test_every_kind_lists(db, system) -> None:
    assert sorted(KINDS) == kinds()
    for kind in KINDS:
        assert list_objects(db, actor=system, kind=kind).items == []


def test_filters_by_region_category_and_text(db, town, system) -> None:
    page = list_objects(db, actor=system, kind="building",
                        filters={"region_code": "330302006001001", "category": "residential"})
    assert _codes(page) == ["R01", "R03", "R05", "R07", "R09"]
    # Two CJK characters: pg_trgm + LIKE still finds them (C.UTF-8 cluster).
    assert _codes(list_objects(db, actor=system, kind="building",
                               filters={"text": "仓库"})) == ["E01"]
    assert _codes(list_objects(db, actor=system, kind="building",
                               filters={"text": "%"})) == []  # wildcards are literal
    with pytest.raises(InvalidInput) as err:
        list_objects(db, actor=system, kind="building", filters={"region_code": "nope"})
    assert err.value.problems[0].field == "region_code"


def test_bbox_in_gcj02(db, town, system) -> None:
    # A box around R00..R02 in WGS84, sent in GCJ-02 as a phone map would.
    west, south = wgs84_to_gcj02(IN_GRID_W_S[0] - 0.001, IN_GRID_W_S[1] - 0.001)
    east, north = wgs84_to_gcj02(IN_GRID_W_S[0] + 0.0045, IN_GRID_W_S[1] + 0.001)
    page = list_objects(db, actor=system, kind="building", filters={
        "bbox": (west, south, east, north), "bbox_crs": "GCJ02", "sort": "code"})
    assert _codes(page) == ["R00", "R01", "R02"]
    with pytest.raises(InvalidInput) as err:
        list_objects(db, actor=system, kind="building",
                     filters={"bbox": (27.6, 120.1, 27.7, 120.2)})
    assert err.value.problems[0].field == "bbox"


def test_bbox_reaches_people_through_their_building(db, town, system, crypto) -> None:
    r = create_residence(db, actor=system, data={"building_id": town[0]["id"],
                                                 "room": "1"}).record
    p = create_person(db, actor=system, crypto=crypto,
                      data={"name": "甲", "residence_id": r["id"]}).record
    create_person(db, actor=system, crypto=crypto, data={"name": "乙",
                                                         "region_code": "330302006"})
    x, y = IN_GRID_W_S
    page = list_objects(db, actor=system, kind="person",
                        filters={"bbox": (x - 0.001, y - 0.001, x + 0.001, y + 0.001)})
    assert [i["id"] for i in page.items] == [p["id"]]
    by_building = list_objects(db, actor=system, kind="person",
                               filters={"building_id": town[0]["id"]})
    assert [i["id"] for i in by_building.items] == [p["id"]]


def test_sort_and_keyset_paging_visit_every_row_once(db, town, system) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = list_objects(db, actor=system, kind="building",
                            filters={"sort": "-code", "limit": 5, "cursor": cursor})
        seen += _codes(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted((b["code"] for b in town), reverse=True)
    by_offset = list_objects(db, actor=system, kind="building",
                             filters={"sort": "code", "limit": 3, "offset": 3})
    assert _codes(by_offset) == ["R01", "R02", "R03"]
    by_time = list_objects(db, actor=system, kind="building",
                           filters={"sort": "created_at", "limit": 4})
    nxt = list_objects(db, actor=system, kind="building",
                       filters={"sort": "created_at", "limit": 100,
                                "cursor": by_time.next_cursor})
    assert len(by_time.items) + len(nxt.items) == len(town)


@pytest.mark.parametrize(("filters", "field"), [
    ({"sort": "geom"}, "sort"),
    ({"sort": "version; DROP TABLE building"}, "sort"),
    ({"limit": 1001}, "limit"),
    ({"limit": 0}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"tags": ["党员"]}, "tags"),
    ({"colour": "red"}, "colour"),
])
def test_bad_list_parameters_name_the_field(db, town, system, filters, field) -> None:
    with pytest.raises(InvalidInput) as err:
        list_objects(db, actor=system, kind="building", filters=filters)
    assert err.value.problems[0].field == field


def test_unknown_kind(db, system) -> None:
    with pytest.raises(InvalidInput) as err:
        list_objects(db, actor=system, kind="spaceship")
    assert err.value.problems[0].field == "kind"


def test_lists_stay_inside_jurisdiction(db, town) -> None:
    worker = scoped(db, "330300.330302.330302006.330302006002")
    page = list_objects(db, actor=worker, kind="building")
    assert _codes(page) == ["E01"]


def test_iter_rows_streams_everything_filtered(db, town, system) -> None:
    rows = list(iter_rows(db, actor=system, kind="building",
                          filters={"category": "commercial", "sort": "code", "limit": 1},
                          batch_size=2))
    assert [r["code"] for r in rows] == ["R00", "R02", "R04", "R06", "R08"]
    assert all(r["geometry"]["type"] == "MultiPolygon" for r in rows)
    worker = make_actor(("330300.330302.330302025",))
    assert [r["code"] for r in iter_rows(db, actor=worker, kind="building")] == ["N01"]


def test_iter_rows_checks_before_the_first_row(db, system) -> None:
    with pytest.raises(PermissionDenied):
        iter_rows(db, actor=make_actor(permissions=()), kind="building")
    with pytest.raises(InvalidInput):
        iter_rows(db, actor=system, kind="building", filters={"sort": "nope"})
