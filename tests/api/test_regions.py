"""Regions and grids over HTTP on the tiny demo city: tree, info, edits, exports, scope."""

from __future__ import annotations

import csv
import io

import pytest
from shapely.geometry import mapping, shape

from tests.support.users import make_user

WUMA = "330302006"       # 五马街道
NANHUI = "330302025"     # 南汇街道


@pytest.fixture(scope="module")
def commander(module_engine):
    return make_user(module_engine, "wuma_cmd", roles=["township_commander"], scope=[WUMA])


def _a_grid(http, user, township=WUMA) -> dict:
    items = http.get("/api/v1/grids", params={"q": township, "limit": 1000},
                     headers=user.headers).json()["items"]
    general = [g for g in items if g["grid_type"] != "dedicated"]
    assert general, "the tiny demo city has grids"
    return general[0]


def test_list_is_scoped(http, commander, city_admin) -> None:
    mine = http.get("/api/v1/regions", params={"level": "grid", "limit": 1000},
                    headers=commander.headers).json()
    assert mine["total"] > 0
    assert all(g["path"].split(".")[2] == WUMA for g in mine["items"])
    everyone = http.get("/api/v1/regions", params={"level": "grid", "limit": 1000},
                        headers=city_admin.headers).json()
    assert everyone["total"] > mine["total"]


def test_other_township_is_404_not_403(http, commander) -> None:
    r = http.get(f"/api/v1/regions/{NANHUI}", headers=commander.headers)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_region_feature_and_info(http, commander) -> None:
    f = http.get(f"/api/v1/regions/{WUMA}", headers=commander.headers).json()
    assert f["type"] == "Feature" and f["properties"]["level"] == "township"
    assert shape(f["geometry"]).is_valid
    info = http.get(f"/api/v1/regions/{WUMA}/info", headers=commander.headers).json()
    props = info["properties"]
    assert props["children"]["village"] > 0 and props["children"]["grid"] > 0
    assert [c["code"] for c in props["chain"]][-1] == WUMA
    grid = _a_grid(http, commander)
    ginfo = http.get(f"/api/v1/regions/{grid['code']}/info", headers=commander.headers).json()
    positions = {m["position"] for m in ginfo["properties"]["team"]}
    assert {"grid_leader", "grid_worker"} <= positions


def test_leader_phone_masked_for_commander(http, commander) -> None:
    grid = _a_grid(http, commander)
    assert "****" in grid["leader_phone"]


def test_anonymous_and_bad_params(http, commander) -> None:
    assert http.get("/api/v1/regions").status_code == 401
    r = http.get("/api/v1/regions", params={"sort": "geom; drop table region"},
                 headers=commander.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sort"
    r = http.get("/api/v1/regions", params={"bbox": "1,2,3"}, headers=commander.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "bbox"
    r = http.get("/api/v1/regions", params={"level": "planet"}, headers=commander.headers)
    assert r.status_code == 422


def test_edit_attributes_versioned_and_stale_version_409(http, commander) -> None:
    grid = _a_grid(http, commander)
    code, version = grid["code"], grid["version"]
    ok = http.patch(f"/api/v1/regions/{code}", headers=commander.headers,
                    json={"version": version, "households": 321})
    assert ok.status_code == 200, ok.text
    assert ok.json()["properties"]["households"] == 321
    stale = http.patch(f"/api/v1/regions/{code}", headers=commander.headers,
                       json={"version": version, "households": 1})
    assert stale.status_code == 409


def test_boundary_change_makes_new_version_and_overlap_is_409(http, commander) -> None:
    grid = _a_grid(http, commander)
    code = grid["code"]
    f = http.get(f"/api/v1/regions/{code}", headers=commander.headers).json()
    geom = shape(f["geometry"])
    shrunk = geom.buffer(-0.0002)
    r = http.patch(f"/api/v1/regions/{code}", headers=commander.headers,
                   json={"version": f["properties"]["version"], "geometry": mapping(shrunk),
                         "crs": "CGCS2000"})
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["version"] == f["properties"]["version"] + 1
    # Grow it well into its neighbours: the neighbour is named in the 409.
    grown = geom.buffer(0.003)
    r = http.patch(f"/api/v1/regions/{code}", headers=commander.headers,
                   json={"version": r.json()["properties"]["version"],
                         "geometry": mapping(grown), "crs": "CGCS2000"})
    assert r.status_code == 409, r.text
    assert r.json()["other"]


def test_geometry_input_errors(http, commander) -> None:
    grid = _a_grid(http, commander)
    url = f"/api/v1/regions/{grid['code']}"
    v = grid["version"]
    no_crs = http.patch(url, headers=commander.headers,
                        json={"version": v, "geometry": {"type": "Polygon", "coordinates": []}})
    assert no_crs.status_code == 422 and no_crs.json()["errors"][0]["field"] == "crs"
    swapped = {"type": "Polygon", "coordinates": [[[28.0, 120.6], [28.0, 120.61], [28.01, 120.61],
                                                   [28.0, 120.6]]]}
    r = http.patch(url, headers=commander.headers,
                   json={"version": v, "geometry": swapped, "crs": "WGS84"})
    assert r.status_code == 422 and "swap" in r.json()["detail"]
    point = {"type": "Point", "coordinates": [120.6, 28.0]}
    r = http.patch(url, headers=commander.headers,
                   json={"version": v, "geometry": point, "crs": "WGS84"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "geometry"


def test_create_region_duplicate_code_409(http, commander) -> None:
    grid = _a_grid(http, commander)
    f = http.get(f"/api/v1/regions/{grid['code']}", headers=commander.headers).json()
    body = {"code": grid["code"], "name": "重复", "level": "grid",
            "parent_code": grid["parent_code"], "grid_type": "general",
            "geometry": f["geometry"], "crs": "CGCS2000"}
    r = http.post("/api/v1/regions", headers=commander.headers, json=body)
    assert r.status_code == 409


def test_grid_export_csv_has_watermark_and_is_scoped(http, commander) -> None:
    r = http.get("/api/v1/grids/export", params={"format": "csv"}, headers=commander.headers)
    assert r.status_code == 200
    text_body = r.content.decode("utf-8-sig")
    first, rest = text_body.split("\n", 1)
    assert "wuma_cmd" in first and "exported by" in first
    rows = list(csv.DictReader(io.StringIO(rest)))
    assert rows and all(row["code"].startswith(WUMA) for row in rows)
    geo = http.get("/api/v1/grids/export", params={"format": "geojson"},
                   headers=commander.headers).json()
    assert geo["features"] and "wuma_cmd" in geo["watermark"]
    xlsx = http.get("/api/v1/grids/export", params={"format": "xlsx"}, headers=commander.headers)
    assert xlsx.content[:2] == b"PK"
    bad = http.get("/api/v1/grids/export", params={"format": "pdf"}, headers=commander.headers)
    assert bad.status_code == 422


def test_what_is_here(http, commander) -> None:
    grid = _a_grid(http, commander)
    f = http.get(f"/api/v1/regions/{grid['code']}", headers=commander.headers).json()
    p = shape(f["geometry"]).representative_point()
    here = http.get("/api/v1/here", params={"lon": p.x, "lat": p.y, "crs": "CGCS2000"},
                    headers=commander.headers).json()
    assert here["grid"]["code"] == grid["code"]
    # The chain stops at the top of the caller's jurisdiction: ancestors outside it are hidden.
    assert [r["level"] for r in here["regions"]][:3] == ["township", "village", "grid"]
    assert isinstance(here["buildings"], list) and isinstance(here["places"], list)
    missing = http.get("/api/v1/here", params={"lon": p.x, "lat": p.y},
                       headers=commander.headers)
    assert missing.status_code == 422
