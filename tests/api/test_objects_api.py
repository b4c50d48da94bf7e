"""Base data over HTTP on the tiny demo city: CRUD round trips for every kind, masking and
audited reveals, person lookup, lists (filters, bbox, cursor, GeoJSON), exports, bad input."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from datetime import date

import openpyxl
import pytest
from shapely.geometry import box, mapping, shape
from stdnum.cn import ric

from geoserver.domain.documents import synthetic_uscc
from geoserver.geo.crs import wgs84_to_gcj02
from geoserver.geo.measure import haversine_m
from tests.support.users import make_user

WUMA = "330302006"       # 五马街道
NANHUI = "330302025"     # 南汇街道
WUMA_PATH = f"330300.330302.{WUMA}"
KINDS = ("buildings", "residences", "households", "persons", "organizations", "key-places",
         "city-components", "enterprises")


@pytest.fixture(scope="module")
def commander(module_engine):
    """A township commander: reads and writes base data, exports, is not cleared to reveal."""
    return make_user(module_engine, "obj_cmd", roles=["township_commander"], scope=[WUMA])


@pytest.fixture(scope="module")
def cleared(module_engine):
    """A commander who is also a 网格长, whose role is cleared to see personal data."""
    return make_user(module_engine, "obj_cleared", roles=["township_commander", "grid_leader"],
                     scope=[WUMA])


@pytest.fixture(scope="module")
def neighbour(module_engine):
    return make_user(module_engine, "obj_nanhui", roles=["township_commander"], scope=[NANHUI])


@pytest.fixture(scope="module")
def auditor(module_engine):
    return make_user(module_engine, "obj_auditor", roles=["audit_admin"], scope=["330300"])


def audited(http, auditor, action: str, object_id: object = None) -> dict:
    """Return the newest audit row of an action (on an object), read as the auditor."""
    params = {"action": action, "limit": 1}
    if object_id is not None:
        params["object_id"] = str(object_id)
    r = http.get("/api/v1/admin/audit", headers=auditor.headers, params=params)
    assert r.status_code == 200, r.text
    assert r.json()["items"], f"no audit row {action} for {object_id}"
    return r.json()["items"][0]


def first(http, user, kind: str, **params) -> dict:
    r = http.get(f"/api/v1/{kind}", params={"limit": 1, **params}, headers=user.headers)
    assert r.status_code == 200, r.text
    assert r.json()["items"], f"no {kind} for {params}"
    return r.json()["items"][0]


def footprint_near(http, user, size_deg: float = 0.0001) -> dict:
    """Return a small square footprint (WGS84) at the middle of a visible demo building."""
    centre = shape(first(http, user, "buildings")["geometry"]).centroid
    return mapping(box(centre.x - size_deg, centre.y - size_deg, centre.x + size_deg,
                       centre.y + size_deg))


def resident_id(birth: date, sequence: int) -> str:
    """Return a checksum-valid 鹿城区 resident ID (sequence 900+ never occurs in the demo)."""
    body = f"330302{birth:%Y%m%d}{sequence:03d}"
    return body + ric.calc_check_digit(body + "0")


def wrong_check(number: str) -> str:
    """Return the number with another check character (fails GB 11643 / GB 32100)."""
    return number[:-1] + ("1" if number[-1] == "0" else "0")


def problem_field(r) -> str | None:
    body = r.json()
    return body["errors"][0]["field"] if body.get("errors") else body.get("field")


# --- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_lists_and_reads_inside_the_jurisdiction(http, commander, kind) -> None:
    r = http.get(f"/api/v1/{kind}", params={"limit": 20}, headers=commander.headers)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["items"], kind
    assert all(i["path"].startswith(WUMA_PATH) for i in page["items"])
    one = http.get(f"/api/v1/{kind}/{page['items'][0]['id']}", headers=commander.headers)
    assert one.status_code == 200 and one.json()["id"] == page["items"][0]["id"]
    assert one.json()["revealed"] == []


def test_anonymous_is_401_and_missing_permission_403(http, module_engine) -> None:
    assert http.get("/api/v1/buildings").status_code == 401
    viewer = make_user(module_engine, "obj_viewer", roles=["viewer"], scope=[WUMA])
    assert http.get("/api/v1/persons", headers=viewer.headers).status_code == 403


def test_cursor_pages_do_not_overlap_and_sort_descending(http, commander) -> None:
    p1 = http.get("/api/v1/persons", params={"limit": 50}, headers=commander.headers).json()
    assert p1["next_cursor"]
    p2 = http.get("/api/v1/persons", params={"limit": 50, "cursor": p1["next_cursor"]},
                  headers=commander.headers).json()
    ids1, ids2 = [i["id"] for i in p1["items"]], [i["id"] for i in p2["items"]]
    assert ids1 == sorted(ids1) and max(ids1) < min(ids2)
    desc = http.get("/api/v1/persons", params={"limit": 5, "sort": "-id"},
                    headers=commander.headers).json()
    ids = [i["id"] for i in desc["items"]]
    assert ids == sorted(ids, reverse=True) and ids[0] > max(ids2)


def test_filters_category_text_region_and_parent(http, commander) -> None:
    schools = http.get("/api/v1/key-places", params={"category": "school", "limit": 100},
                       headers=commander.headers).json()["items"]
    assert all(p["category"] == "school" for p in schools)
    person = first(http, commander, "persons")
    by_name = http.get("/api/v1/persons", params={"text": person["name"], "limit": 100},
                       headers=commander.headers).json()["items"]
    assert person["id"] in {p["id"] for p in by_name}
    assert all(person["name"] in p["name"] for p in by_name)
    residence = first(http, commander, "residences")
    inside = http.get("/api/v1/persons", params={"building_id": residence["building_id"]},
                      headers=commander.headers).json()["items"]
    rooms = {r["id"] for r in http.get("/api/v1/residences", params={
        "building_id": residence["building_id"], "limit": 1000},
        headers=commander.headers).json()["items"]}
    assert all(p["residence_id"] in rooms for p in inside)
    village = person["path"].split(".")[3]
    in_village = http.get("/api/v1/persons", params={"region_code": village, "limit": 100},
                          headers=commander.headers).json()["items"]
    assert in_village and all(p["path"].split(".")[3] == village for p in in_village)


def test_bbox_keeps_what_lies_in_the_box(http, commander) -> None:
    building = first(http, commander, "buildings")
    x0, y0, x1, y1 = shape(building["geometry"]).bounds
    r = http.get("/api/v1/buildings", params={"bbox": f"{x0},{y0},{x1},{y1}", "limit": 1000},
                 headers=commander.headers)
    assert r.status_code == 200
    items = r.json()["items"]
    assert building["id"] in {b["id"] for b in items}
    envelope = box(x0, y0, x1, y1)
    assert all(shape(b["geometry"]).intersects(envelope) for b in items)


def test_geojson_by_f_and_by_accept_header(http, commander) -> None:
    r = http.get("/api/v1/key-places", params={"f": "geojson", "limit": 5},
                 headers=commander.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 5
    assert all(f["geometry"]["type"] in ("Point", "Polygon", "MultiPolygon")
               for f in fc["features"])
    assert "geometry" not in fc["features"][0]["properties"]
    accept = {**commander.headers, "Accept": "application/geo+json"}
    r = http.get("/api/v1/buildings", params={"limit": 2}, headers=accept)
    assert r.headers["content-type"] == "application/geo+json"
    assert r.json()["features"][0]["geometry"]["type"] == "MultiPolygon"


# --- masking and reveal --------------------------------------------------------------------


def test_person_masked_reveal_needs_clearance_and_is_audited(http, commander, cleared,
                                                             auditor) -> None:
    person = next(p for p in http.get("/api/v1/persons", params={"limit": 100},
                                      headers=commander.headers).json()["items"]
                  if p["document_number"] and p["phone"])
    assert "*" in person["document_number"] and "*" in person["phone"]
    assert http.get(f"/api/v1/persons/{person['id']}", params={"reveal": "true"},
                    headers=commander.headers).status_code == 403
    r = http.get(f"/api/v1/persons/{person['id']}", params={"reveal": "true"},
                 headers=cleared.headers)
    assert r.status_code == 200, r.text
    clear = r.json()
    assert clear["revealed"] == ["document_number", "phone"]
    assert "*" not in clear["document_number"] and len(clear["document_number"]) == 18
    assert clear["document_number"][-4:] == person["document_number"][-4:]
    row = audited(http, auditor, "read_sensitive", person["id"])
    assert row["object_kind"] == "person" and row["actor_username"] == "obj_cleared"
    assert row["detail"]["fields"] == ["document_number", "phone"]
    # A masked read writes no such row.
    before = audited(http, auditor, "read_sensitive")["id"]
    http.get(f"/api/v1/persons/{person['id']}", headers=cleared.headers)
    assert audited(http, auditor, "read_sensitive")["id"] == before


def test_key_place_contact_and_enterprise_representative_are_masked(http, commander,
                                                                    cleared) -> None:
    place = next(p for p in http.get("/api/v1/key-places", params={"limit": 100},
                                     headers=commander.headers).json()["items"]
                 if p["contact_phone"])
    assert "*" in place["contact_phone"]
    clear = http.get(f"/api/v1/key-places/{place['id']}", params={"reveal": "true"},
                     headers=cleared.headers).json()
    assert "contact_phone" in clear["revealed"] and "*" not in clear["contact_phone"]
    firm = next(e for e in http.get("/api/v1/enterprises", params={"limit": 100},
                                    headers=commander.headers).json()["items"]
                if e["legal_representative"])
    assert "*" in firm["legal_representative"]


def test_lookup_by_full_document_number_and_phone(http, commander, cleared, auditor) -> None:
    person = next(p for p in http.get("/api/v1/persons", params={"limit": 100},
                                      headers=commander.headers).json()["items"]
                  if p["document_number"] and p["phone"])
    clear = http.get(f"/api/v1/persons/{person['id']}", params={"reveal": "true"},
                     headers=cleared.headers).json()
    r = http.post("/api/v1/persons/lookup", headers=commander.headers,
                  json={"document_number": clear["document_number"]})
    assert r.status_code == 200, r.text
    assert [p["id"] for p in r.json()["items"]] == [person["id"]]
    assert "*" in r.json()["items"][0]["document_number"]
    row = audited(http, auditor, "person.lookup")
    assert row["detail"] == {"by": "document_number", "matches": 1}
    assert clear["document_number"] not in json.dumps(row, ensure_ascii=False)
    seen = audited(http, auditor, "read_sensitive", person["id"])["id"]
    revealed = http.post("/api/v1/persons/lookup", headers=cleared.headers,
                         json={"document_number": clear["document_number"], "reveal": True})
    assert revealed.json()["items"][0]["document_number"] == clear["document_number"]
    assert audited(http, auditor, "read_sensitive", person["id"])["id"] > seen
    assert http.post("/api/v1/persons/lookup", headers=commander.headers, json={
        "document_number": clear["document_number"], "reveal": True}).status_code == 403
    by_phone = http.post("/api/v1/persons/lookup", headers=commander.headers,
                         json={"phone": clear["phone"]}).json()["items"]
    assert person["id"] in {p["id"] for p in by_phone}
    bad = http.post("/api/v1/persons/lookup", headers=commander.headers,
                    json={"document_number": wrong_check(clear["document_number"]),
                          "document_type": "resident_id"})
    assert bad.status_code == 422 and problem_field(bad) == "document_number"
    assert http.post("/api/v1/persons/lookup", headers=commander.headers,
                     json={}).status_code == 422


# --- writing -------------------------------------------------------------------------------


def test_building_round_trip_versions_and_audit(http, commander, auditor) -> None:
    body = {"code": "API-B-0001", "name": "接口测试楼", "category": "residential", "floors": 6,
            "geometry": footprint_near(http, commander), "crs": "WGS84"}
    r = http.post("/api/v1/buildings", json=body, headers=commander.headers)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["warnings"] == [] and made["path"].startswith(WUMA_PATH)
    assert made["geometry"]["type"] == "MultiPolygon" and made["version"] == 1
    assert audited(http, auditor, "building.create", made["id"])["after"]["code"] == "API-B-0001"
    url = f"/api/v1/buildings/{made['id']}"
    r = http.patch(url, json={"version": 1, "floors": 7}, headers=commander.headers)
    assert r.status_code == 200 and r.json()["floors"] == 7 and r.json()["version"] == 2
    row = audited(http, auditor, "building.update", made["id"])
    assert row["before"]["floors"] == 6 and row["after"]["floors"] == 7
    stale = http.patch(url, json={"version": 1, "floors": 8}, headers=commander.headers)
    assert stale.status_code == 409 and problem_field(stale) == "version"
    assert http.delete(url, params={"version": 1}, headers=commander.headers).status_code == 409
    assert http.delete(url, headers=commander.headers).status_code == 422  # version required
    assert http.delete(url, params={"version": 2}, headers=commander.headers).status_code == 204
    assert http.get(url, headers=commander.headers).status_code == 404
    assert audited(http, auditor, "building.delete", made["id"])["before"]["floors"] == 7


def test_residence_household_person_chain(http, commander, cleared) -> None:
    building = http.post("/api/v1/buildings", headers=commander.headers, json={
        "code": "API-B-0002", "category": "residential",
        "geometry": footprint_near(http, commander), "crs": "WGS84"}).json()
    residence = http.post("/api/v1/residences", headers=commander.headers, json={
        "building_id": building["id"], "unit": "1", "floor": 3, "room": "301"})
    assert residence.status_code == 201, residence.text
    assert residence.json()["path"] == building["path"]
    household = http.post("/api/v1/households", headers=commander.headers, json={
        "household_no": "API-H-0001", "residence_id": residence.json()["id"]})
    assert household.status_code == 201, household.text
    number = resident_id(date(1961, 4, 5), 901)
    person = http.post("/api/v1/persons", headers=commander.headers, json={
        "name": "接口测试", "document_type": "resident_id", "document_number": number,
        "phone": "13905770001", "household_id": household.json()["id"],
        "relation_to_head": "本人", "tags": ["党员"]})
    assert person.status_code == 201, person.text
    made = person.json()
    assert made["document_number"] == number[:6] + "********" + number[-4:]
    assert made["birth_date"] == "1961-04-05" and made["gender"] == "male"
    assert made["residence_id"] == residence.json()["id"] and made["path"] == building["path"]
    clear = http.get(f"/api/v1/persons/{made['id']}", params={"reveal": "true"},
                     headers=cleared.headers).json()
    assert clear["document_number"] == number and clear["phone"] == "13905770001"
    tagged = http.get("/api/v1/persons", params={"tags": "党员", "household_id":
                                                  household.json()["id"]},
                      headers=commander.headers).json()["items"]
    assert [p["id"] for p in tagged] == [made["id"]]
    again = http.post("/api/v1/persons", headers=commander.headers, json={
        "name": "重复", "document_type": "resident_id", "document_number": number,
        "region_code": WUMA})
    assert again.status_code == 409 and problem_field(again) == "document_number"
    # The building is still referenced: deleting it is a conflict, not a cascade.
    r = http.delete(f"/api/v1/buildings/{building['id']}", params={"version": 1},
                    headers=commander.headers)
    assert r.status_code == 409


def test_places_and_enterprises_round_trip(http, commander) -> None:
    centre = shape(footprint_near(http, commander)).centroid
    point = {"type": "Point", "coordinates": [centre.x, centre.y]}
    place = http.post("/api/v1/key-places", headers=commander.headers, json={
        "name": "接口测试网吧", "category": "internet_cafe", "contact_name": "王小明",
        "contact_phone": "13905770002", "geometry": point, "crs": "WGS84"})
    assert place.status_code == 201, place.text
    assert place.json()["contact_name"] != "王小明" and "*" in place.json()["contact_phone"]
    # A phone's GCJ-02 reading of the same spot (~500 m off in Wenzhou) is stored where it is.
    gcj = wgs84_to_gcj02(centre.x, centre.y)
    assert haversine_m(centre.x, centre.y, *gcj) > 300
    component = http.post("/api/v1/city-components", headers=commander.headers, json={
        "code": "API-C-0001", "category": "manhole_cover", "crs": "GCJ02",
        "geometry": {"type": "Point", "coordinates": list(gcj)}})
    assert component.status_code == 201, component.text
    stored = shape(component.json()["geometry"])
    assert haversine_m(centre.x, centre.y, stored.x, stored.y) < 2
    fixed = http.patch(f"/api/v1/city-components/{component.json()['id']}",
                       headers=commander.headers, json={"version": 1, "status": "damaged"})
    assert fixed.status_code == 200 and fixed.json()["status"] == "damaged"
    org = http.post("/api/v1/organizations", headers=commander.headers, json={
        "name": "接口测试社会组织", "category": "social_organization", "region_code": WUMA})
    assert org.status_code == 201 and org.json()["path"] == WUMA_PATH
    assert org.json()["geometry"] is None
    uscc = synthetic_uscc(random.Random(2026), "330302")
    firm = http.post("/api/v1/enterprises", headers=commander.headers, json={
        "name": "接口测试有限公司", "uscc": uscc, "credit_grade": "A",
        "legal_representative": "李四", "geometry": point, "crs": "WGS84"})
    assert firm.status_code == 201, firm.text
    assert firm.json()["legal_representative"] != "李四"
    twin = http.post("/api/v1/enterprises", headers=commander.headers, json={
        "name": "重复公司", "uscc": uscc, "region_code": WUMA})
    assert twin.status_code == 409 and problem_field(twin) == "uscc"
    graded = http.get("/api/v1/enterprises", params={"status": "A", "text": "接口测试"},
                      headers=commander.headers).json()["items"]
    assert [e["id"] for e in graded] == [firm.json()["id"]]


# --- bad input -----------------------------------------------------------------------------


def test_self_intersecting_footprint_is_repaired_with_a_warning(http, commander) -> None:
    x0, y0, x1, y1 = shape(footprint_near(http, commander, 0.0002)).bounds
    bowtie = {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y1], [x1, y0], [x0, y1],
                                                  [x0, y0]]]}
    r = http.post("/api/v1/buildings", headers=commander.headers, json={
        "code": "API-B-BOWTIE", "geometry": bowtie, "crs": "WGS84"})
    assert r.status_code == 201, r.text
    assert r.json()["warnings"] and shape(r.json()["geometry"]).is_valid


@pytest.mark.parametrize(("change", "field"), [
    ({"geometry": "swap"}, "geometry"),
    ({"geometry": "far"}, "geometry"),
    ({"geometry": "nanhui"}, "geometry"),
    ({"crs": None}, "crs"),
    ({"crs": "EPSG:3857"}, "crs"),
    ({"floors": "many"}, "floors"),
    ({"floors": 0}, "floors"),
    ({"code": "bad code!"}, "code"),
    ({"name": "nul\x00name"}, "name"),
    ({"address_id": 2**70}, "address_id"),
    ({"colour": "red"}, "colour"),
])
def test_building_bad_input_names_the_field(http, commander, neighbour, change, field) -> None:
    good = footprint_near(http, commander)
    body = {"code": "API-B-BAD", "geometry": good, "crs": "WGS84"}
    ring = good["coordinates"][0]
    geometries = {
        "swap": {"type": "Polygon", "coordinates": [[[y, x] for x, y in ring]]},
        "far": {"type": "Polygon", "coordinates": [[[x + 60, y] for x, y in ring]]},
        "nanhui": footprint_near(http, neighbour),
    }
    body.update({k: geometries.get(v, v) if k == "geometry" else v for k, v in change.items()})
    body = {k: v for k, v in body.items() if v is not None}
    r = http.post("/api/v1/buildings", json=body, headers=commander.headers)
    assert r.status_code == 422, r.text
    assert problem_field(r) == field, r.json()


def test_checksums_and_duplicates(http, commander) -> None:
    building = first(http, commander, "buildings")
    dup = http.post("/api/v1/buildings", headers=commander.headers, json={
        "code": building["code"], "geometry": footprint_near(http, commander), "crs": "WGS84"})
    assert dup.status_code == 409 and problem_field(dup) == "code"
    r = http.post("/api/v1/persons", headers=commander.headers, json={
        "name": "校验", "document_type": "resident_id",
        "document_number": wrong_check(resident_id(date(1970, 1, 1), 903)),
        "region_code": WUMA})
    assert r.status_code == 422 and problem_field(r) == "document_number"
    r = http.post("/api/v1/enterprises", headers=commander.headers, json={
        "name": "坏码公司", "uscc": wrong_check(synthetic_uscc(random.Random(7), "330302")),
        "region_code": WUMA})
    assert r.status_code == 422 and problem_field(r) == "uscc"


def test_bad_list_parameters(http, commander) -> None:
    h = commander.headers
    cases = [({"limit": "abc"}, "limit"), ({"limit": 1001}, "limit"),
             ({"bbox": "200,1,201,2"}, "bbox"), ({"bbox": "1,2,3"}, "bbox"),
             ({"sort": "geom; drop table building"}, "sort"), ({"sort": "nonsense"}, "sort"),
             ({"cursor": "not-a-cursor"}, "cursor"), ({"category": "castle"}, "category"),
             ({"bbox_crs": "EPSG:3857", "bbox": "120,28,121,29"}, "bbox_crs")]
    for params, field in cases:
        r = http.get("/api/v1/buildings", params=params, headers=h)
        assert r.status_code == 422, (params, r.text)
        assert problem_field(r) == field, (params, r.json())
    # Households have no category: an unknown parameter is refused, not ignored.
    r = http.get("/api/v1/households", params={"category": "x"}, headers=h)
    assert r.status_code == 422
    assert http.get("/api/v1/persons/0", headers=h).status_code == 422
    assert http.get(f"/api/v1/persons/{2**70}", headers=h).status_code == 422


@pytest.mark.parametrize(("sort", "value"), [("id", "abc"), ("created_at", "not a time"),
                                             ("id", {"a": 1}), ("id", 2**70)])
def test_a_hand_edited_cursor_is_422_not_500(http, commander, sort, value) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps([value, 5]).encode()).decode().rstrip("=")
    r = http.get("/api/v1/persons", params={"sort": sort, "cursor": cursor},
                 headers=commander.headers)
    assert r.status_code == 422 and problem_field(r) == "cursor"


def test_oversized_body_is_413(http, commander) -> None:
    ring = [[120.6 + i * 1e-7, 28.0] for i in range(1_200_000)]
    body = json.dumps({"code": "API-HUGE", "crs": "WGS84",
                       "geometry": {"type": "Polygon", "coordinates": [ring]}})
    assert len(body) > 20 * 1024 * 1024
    r = http.post("/api/v1/buildings", content=body,
                  headers={**commander.headers, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_another_jurisdictions_ids_are_404(http, commander, neighbour) -> None:
    h = commander.headers
    for kind in KINDS:
        theirs = first(http, neighbour, kind)
        url = f"/api/v1/{kind}/{theirs['id']}"
        assert http.get(url, headers=h).status_code == 404, kind
        assert http.patch(url, json={"version": theirs["version"]},
                          headers=h).status_code == 404, kind
        assert http.delete(url, params={"version": theirs["version"]},
                           headers=h).status_code == 404, kind
    theirs = first(http, neighbour, "buildings")
    r = http.post("/api/v1/residences", headers=h, json={"building_id": theirs["id"],
                                                         "room": "101"})
    assert r.status_code == 422 and problem_field(r) == "building_id"


# --- exports -------------------------------------------------------------------------------


def test_csv_export_is_masked_watermarked_scoped_and_audited(http, commander, auditor) -> None:
    r = http.get("/api/v1/persons/export", params={"format": "csv"}, headers=commander.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    mark, body = r.content.decode("utf-8-sig").split("\n", 1)
    assert "obj_cmd" in mark and "导出" in mark
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) > 1000
    assert all(row["path"].startswith(WUMA_PATH) for row in rows)
    numbers = [row["document_number"] for row in rows if row["document_number"]]
    assert numbers and all("*" in n for n in numbers)
    row = audited(http, auditor, "export")
    assert row["object_kind"] == "person" and row["detail"]["format"] == "csv"


def test_xlsx_and_geojson_exports(http, commander, neighbour) -> None:
    r = http.get("/api/v1/key-places/export", params={"format": "xlsx"},
                 headers=commander.headers)
    assert r.status_code == 200
    rows = list(openpyxl.load_workbook(io.BytesIO(r.content)).active.iter_rows(values_only=True))
    assert "obj_cmd" in rows[0][0]
    header = rows[1]
    assert "contact_phone" in header and "contact_phone_enc" not in header
    paths = [row[header.index("path")] for row in rows[2:]]
    assert paths and all(p.startswith(WUMA_PATH) for p in paths)
    r = http.get("/api/v1/buildings/export", params={"format": "geojson", "category": "public"},
                 headers=neighbour.headers)
    fc = json.loads(r.content)
    assert "obj_nanhui" in fc["watermark"]
    assert fc["features"] and all(f["properties"]["category"] == "public" and
                                  f["properties"]["path"].split(".")[2] == NANHUI
                                  for f in fc["features"])
    bad = http.get("/api/v1/persons/export", params={"format": "geojson"},
                   headers=commander.headers)
    assert bad.status_code == 422
    bad = http.get("/api/v1/persons/export", params={"format": "csv", "sort": "nope"},
                   headers=commander.headers)
    assert bad.status_code == 422 and problem_field(bad) == "sort"
