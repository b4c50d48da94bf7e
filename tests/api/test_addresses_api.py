"""Standard addresses, geocoding and reverse geocoding over HTTP on the tiny demo city."""

from __future__ import annotations

import pytest

from geoserver.geo.crs import wgs84_to_gcj02
from tests.support.users import make_user

WUMA = "330302006"       # 五马街道
NANHUI = "330302025"     # 南汇街道
#: 鹿城区五马街道路湾社区解放街123号 and its 3幢2单元 in the demo city.
DOOR = "330302006116000006"
UNIT = "330302006116000006-03-02"
ADDRESS = "鹿城区五马街道解放街123号3幢2单元"


@pytest.fixture(scope="module")
def commander(module_engine):
    return make_user(module_engine, "addr_cmd", roles=["township_commander"], scope=[WUMA])


@pytest.fixture(scope="module")
def neighbour(module_engine):
    return make_user(module_engine, "addr_nanhui", roles=["township_commander"], scope=[NANHUI])


@pytest.fixture(scope="module")
def auditor(module_engine):
    return make_user(module_engine, "addr_auditor", roles=["audit_admin"], scope=["330300"])


def field_of(r) -> str | None:
    body = r.json()
    return body["errors"][0]["field"] if body.get("errors") else body.get("field")


# --- geocoding -----------------------------------------------------------------------------


def test_geocode_the_full_text(http, commander) -> None:
    r = http.get("/api/v1/geocode", params={"q": ADDRESS}, headers=commander.headers)
    assert r.status_code == 200, r.text
    hit = r.json()["hits"][0]
    assert hit["address"]["code"] == UNIT and hit["score"] >= 0.9
    assert {"road", "door_number", "building", "unit"} <= set(hit["matched"])
    assert hit["conflicting"] == [] and 120 < hit["lon"] < 121 and 27 < hit["lat"] < 29


@pytest.mark.parametrize("text", [
    "五马解放街１２３号三幢二单元",  # abbreviated township, full-width digits, Chinese numerals
    "鹿城解放街123号3栋2单元",  # no township, 栋
    "温州市鹿城区五马街道解放街123号3号楼2单元",  # city prefix, 号楼
    "浙江省温州市五马街道解放街123号第3幢第2单元",  # 第
])
def test_geocode_common_variants(http, commander, text) -> None:
    hits = http.get("/api/v1/geocode", params={"q": text},
                    headers=commander.headers).json()["hits"]
    assert hits and hits[0]["address"]["code"] == UNIT, (text, hits[:1])


def test_geocode_typo_near_and_room(http, commander) -> None:
    typo = http.get("/api/v1/geocode", params={"q": "五马街道解方街123号3幢2单元"},
                    headers=commander.headers).json()["hits"][0]
    assert typo["address"]["code"] == UNIT and "road" in typo["approximate"]
    room = http.get("/api/v1/geocode", params={"q": ADDRESS + "302室"},
                    headers=commander.headers).json()["hits"][0]
    assert room["address"]["room"] == "302" and room["address"]["unit"] == "2"
    door = http.get(f"/api/v1/addresses/{DOOR}", headers=commander.headers).json()
    lon, lat = wgs84_to_gcj02(door["lon"], door["lat"])
    near = http.get("/api/v1/geocode", params={"q": "解放街123号", "near": f"{lon},{lat}",
                                               "near_crs": "GCJ02", "limit": 3},
                    headers=commander.headers).json()["hits"]
    assert near[0]["address"]["code"] == DOOR and near[0]["distance_m"] < 5


def test_geocode_nothing_is_an_empty_list_not_404(http, commander) -> None:
    r = http.get("/api/v1/geocode", params={"q": "火星殖民地幸福大道99999号"},
                 headers=commander.headers)
    assert r.status_code == 200 and r.json() == {"q": "火星殖民地幸福大道99999号", "hits": []}


def test_geocode_bad_input(http, commander) -> None:
    h = commander.headers
    assert http.get("/api/v1/geocode", headers=h).status_code == 422
    assert field_of(http.get("/api/v1/geocode", params={"q": ADDRESS, "limit": 0},
                             headers=h)) == "limit"
    r = http.get("/api/v1/geocode", params={"q": ADDRESS, "near": "120.6,28.0"}, headers=h)
    assert r.status_code == 422 and field_of(r) == "near_crs"
    r = http.get("/api/v1/geocode", params={"q": ADDRESS, "near": "28.0,120.6",
                                            "near_crs": "WGS84"}, headers=h)
    assert r.status_code == 422 and field_of(r) == "near"
    assert http.get("/api/v1/geocode", params={"q": ADDRESS}).status_code == 401


def test_reverse_geocode(http, commander) -> None:
    door = http.get(f"/api/v1/addresses/{DOOR}", headers=commander.headers).json()
    r = http.get("/api/v1/reverse-geocode", headers=commander.headers,
                 params={"lon": door["lon"], "lat": door["lat"], "crs": "CGCS2000",
                         "radius_m": 30})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["addresses"][0]["address"]["door_number"] == "123"
    assert result["addresses"][0]["distance_m"] < 1
    assert WUMA in [g["code"] for g in result["regions"]]
    assert all(a["distance_m"] <= 30 for a in result["addresses"])


@pytest.mark.parametrize(("params", "field"), [
    ({"lon": 120.65, "lat": 28.0}, "crs"),
    ({"lon": 28.0, "lat": 120.65, "crs": "WGS84"}, "location"),
    ({"lon": 120.65, "lat": 95, "crs": "WGS84"}, "location"),
    ({"lon": "east", "lat": 28.0, "crs": "WGS84"}, "lon"),
    ({"lon": 120.65, "lat": 28.0, "crs": "WGS84", "radius_m": 99999}, "radius_m"),
    ({"lon": 120.65, "lat": 28.0, "crs": "Mars"}, "crs"),
])
def test_reverse_geocode_bad_input(http, commander, params, field) -> None:
    r = http.get("/api/v1/reverse-geocode", params=params, headers=commander.headers)
    assert r.status_code == 422, r.text
    assert field_of(r) == field


# --- CRUD ----------------------------------------------------------------------------------


def test_list_and_read(http, commander, neighbour) -> None:
    r = http.get("/api/v1/addresses", params={"road": "解放街", "level": "unit", "limit": 500},
                 headers=commander.headers)
    assert r.status_code == 200
    page = r.json()
    assert UNIT in {a["code"] for a in page["items"]}
    assert all(a["level"] == "unit" and a["township_code"] == WUMA for a in page["items"])
    found = http.get("/api/v1/addresses", params={"q": "解放街123号3幢"},
                     headers=commander.headers).json()["items"]
    assert found and all("解放街123号3幢" in a["full_text"] for a in found)
    one = http.get(f"/api/v1/addresses/{UNIT}", headers=commander.headers).json()
    assert one["full_text"].endswith("解放街123号3幢2单元")
    assert http.get(f"/api/v1/addresses/{UNIT}", headers=neighbour.headers).status_code == 404
    theirs = http.get("/api/v1/addresses", params={"bbox": f"{one['lon'] - 0.001},"
                                                           f"{one['lat'] - 0.001},"
                                                           f"{one['lon'] + 0.001},"
                                                           f"{one['lat'] + 0.001}"},
                      headers=neighbour.headers).json()["items"]
    assert all(a["township_code"] == NANHUI for a in theirs)


def test_create_update_delete_round_trip(http, commander, auditor) -> None:
    door = http.get(f"/api/v1/addresses/{DOOR}", headers=commander.headers).json()
    point = {"type": "Point", "coordinates": [door["lon"] + 0.00005, door["lat"]]}
    body = {"code": "API-A-0001", "level": "door", "township_code": WUMA,
            "village_code": door["village_code"], "road": "解放街", "door_number": "9001",
            "location": point, "crs": "CGCS2000"}
    r = http.post("/api/v1/addresses", json=body, headers=commander.headers)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["full_text"].endswith("解放街9001号") and made["version"] == 1
    assert http.post("/api/v1/addresses", json=body,
                     headers=commander.headers).status_code == 409
    child = http.post("/api/v1/addresses", headers=commander.headers, json={
        "code": "API-A-0001-01", "level": "building", "parent_code": "API-A-0001",
        "building": "一", "location": point, "crs": "CGCS2000"})
    assert child.status_code == 201, child.text
    assert child.json()["full_text"].endswith("解放街9001号1幢")
    moved = http.patch("/api/v1/addresses/API-A-0001", headers=commander.headers,
                       json={"version": 1, "door_number": "9002"})
    assert moved.status_code == 200, moved.text
    again = http.get("/api/v1/addresses/API-A-0001-01", headers=commander.headers).json()
    assert again["full_text"].endswith("解放街9002号1幢")
    row = http.get("/api/v1/admin/audit", headers=auditor.headers,
                   params={"action": "address.update", "object_id": "API-A-0001"}).json()
    assert row["items"][0]["before"]["door_number"] == "9001"
    stale = http.patch("/api/v1/addresses/API-A-0001", headers=commander.headers,
                       json={"version": 1, "door_number": "9003"})
    assert stale.status_code == 409
    has_child = http.delete("/api/v1/addresses/API-A-0001", params={"version": 2},
                            headers=commander.headers)
    assert has_child.status_code == 409
    assert http.delete("/api/v1/addresses/API-A-0001-01", params={"version": 2},
                       headers=commander.headers).status_code == 204
    assert http.delete("/api/v1/addresses/API-A-0001", params={"version": 2},
                       headers=commander.headers).status_code == 204
    assert http.get("/api/v1/addresses/API-A-0001", headers=commander.headers).status_code == 404


@pytest.mark.parametrize(("change", "field"), [
    ({"location": {"type": "Point", "coordinates": "swap"}}, "location"),
    ({"location": {"type": "Point", "coordinates": [200.0, 28.0]}}, "location"),
    ({"location": {"type": "LineString", "coordinates": [[120.6, 28], [120.7, 28]]}},
     "location"),
    ({"crs": "EPSG:4549"}, "crs"),
    ({"door_number": "123456789"}, "door_number"),
    ({"township_code": NANHUI}, "village_code"),
    ({"road": "解放\x00街"}, "road"),
    ({"code": "a b"}, "code"),
])
def test_create_bad_input_names_the_field(http, commander, change, field) -> None:
    door = http.get(f"/api/v1/addresses/{DOOR}", headers=commander.headers).json()
    body = {"code": "API-A-BAD", "level": "door", "township_code": WUMA,
            "village_code": door["village_code"], "road": "解放街", "door_number": "9101",
            "location": {"type": "Point", "coordinates": [door["lon"], door["lat"]]},
            "crs": "WGS84"}
    body.update(change)
    if body["location"]["coordinates"] == "swap":
        body["location"]["coordinates"] = [door["lat"], door["lon"]]
    r = http.post("/api/v1/addresses", json=body, headers=commander.headers)
    assert r.status_code == 422, r.text
    assert field_of(r) == field, r.json()


def test_other_township_cannot_write_here(http, neighbour) -> None:
    h = neighbour.headers
    assert http.patch(f"/api/v1/addresses/{DOOR}", json={"version": 1},
                      headers=h).status_code == 404
    assert http.delete(f"/api/v1/addresses/{UNIT}", params={"version": 1},
                       headers=h).status_code == 404
