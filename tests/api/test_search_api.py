"""Search, nearby and statistics over real HTTP on the tiny demo city: shape, scope, bad input."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from api.routes import search as search_routes
from api.routes import statistics as statistics_routes
from geoserver.config import SecuritySettings, Settings
from geoserver.database.bootstrap import OWNER_ROLE
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session, sqlalchemy_url
from geoserver.security.crypto import crypto_from_settings
from geoserver.services import statistics
from geoserver.services.persons import DOCUMENT_CONTEXT
from tests.conftest import make_settings
from tests.support.live import app_with, serve
from tests.support.users import make_user

WUMA = "330302006"
TOWNSHIPS = {"330302006", "330302024", "330302025", "330302026"}


@pytest.fixture(scope="module")
def fresh_statistics(module_engine) -> None:
    """Refresh the statistics tables once, as their job would (no jobs run in tests)."""
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        statistics.refresh_objects(s)
        statistics.refresh_events(s, full=True)


@pytest.fixture(scope="module")
def owner(pg, module_db):
    e = create_engine(sqlalchemy_url(pg.url(OWNER_ROLE, module_db)))
    yield e
    e.dispose()


def _app(settings: Settings) -> FastAPI:
    """Build the app with the search and statistics routers (until app.py includes them)."""
    app = app_with(settings)
    paths = {getattr(r, "path", "") for r in app.routes}
    for router in (search_routes.router, statistics_routes.router):
        if not any(getattr(r, "path", "") in paths for r in router.routes):
            app.include_router(router)
    return app


@pytest.fixture(scope="module")
def http(pg, module_db, fresh_statistics):
    settings = make_settings(pg, module_db, jobs_enabled=False,
                             web_dir=Path("/nonexistent-web-dir"))
    with serve(_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def commander(module_engine):
    return make_user(module_engine, "srch_cmd", roles=["township_commander"], scope=[WUMA])


@pytest.fixture(scope="module")
def viewer(module_engine):
    return make_user(module_engine, "srch_viewer", roles=["viewer"], scope=[WUMA])


def _problem(resp: httpx.Response, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def test_search_returns_geojson_with_kinds(http, commander) -> None:
    resp = http.get("/api/v1/search", params={"q": "鼓楼", "limit": 30},
                    headers=commander.headers)
    assert resp.status_code == 200, resp.text
    fc = resp.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 30
    kinds = {f["properties"]["kind"] for f in fc["features"]}
    assert {"region", "grid", "building", "standard_address"} <= kinds
    first = fc["features"][0]
    assert first["properties"]["code"] == "330302006044" and first["geometry"]["type"]


def test_search_stays_in_the_jurisdiction(http, commander) -> None:
    resp = http.get("/api/v1/search", params={"q": "滨江街道"}, headers=commander.headers)
    assert resp.status_code == 200 and resp.json()["features"] == []
    _problem(http.get("/api/v1/search", params={"q": "社区", "region_code": "330302024"},
                      headers=commander.headers), 422, "region_code")


def test_search_by_id_number_is_exact_and_masked(http, commander, owner) -> None:
    with owner.connect() as conn:
        row = conn.execute(text(
            "SELECT id, document_number_enc FROM person WHERE document_type = 'resident_id' "
            "AND special_category IS NULL AND path <@ '330300.330302.330302006' "
            "ORDER BY id LIMIT 1")).one()
    number = crypto_from_settings(SecuritySettings()).decrypt(
        bytes(row.document_number_enc), context=DOCUMENT_CONTEXT)
    resp = http.get("/api/v1/search", params={"q": number}, headers=commander.headers)
    assert resp.status_code == 200
    assert number not in resp.text
    persons = [f for f in resp.json()["features"] if f["properties"]["kind"] == "person"]
    assert [f["properties"]["id"] for f in persons] == [row.id]
    assert "*" in persons[0]["properties"]["title"]


@pytest.mark.parametrize(("params", "field"), [
    ({"q": "五"}, "q"), ({"q": ""}, "q"), ({"q": "马" * 65}, "q"),
    ({"q": "鼓楼", "kinds": "region,spaceship"}, "kinds"),
    ({"q": "鼓楼", "bbox": "120.7,28.0"}, "bbox"), ({"q": "鼓楼", "lon": 120.6}, "lat"),
    ({"q": "鼓楼", "limit": 500}, "limit"), ({"q": "鼓楼", "lon": 28.0, "lat": 120.6}, "near"),
    ({"q": "鼓\x00楼"}, "q"), ({"q": "鼓楼", "region_code": "33'; --"}, "region_code"),
    ({"q": "x" * 5000}, "q"), ({"q": "a"}, "q"), ({"q": "——！"}, "q"), ({"q": "五 马"}, "q"),
    ({"q": "鼓楼", "kinds": "region", "bbox": "120.7,28.1,120.6,28.0"}, "bbox"),
])
def test_search_bad_input_is_422(http, commander, params, field) -> None:
    _problem(http.get("/api/v1/search", params=params, headers=commander.headers), 422, field)


def test_search_bbox_elsewhere_is_empty_and_anonymous_is_401(http, commander) -> None:
    resp = http.get("/api/v1/search", params={"q": "社区", "bbox": "116.3,39.8,116.5,40.0"},
                    headers=commander.headers)
    assert resp.status_code == 200 and resp.json()["features"] == []
    _problem(http.get("/api/v1/search", params={"q": "鼓楼"}), 401)


def test_search_by_pinyin_initials(http, commander) -> None:
    for q in ("wmjd", "WuMaJieDao"):
        fc = http.get("/api/v1/search", params={"q": q}, headers=commander.headers).json()
        first = fc["features"][0]["properties"]
        assert (first["title"], first["match"], first["code"]) == ("五马街道", "pinyin", WUMA)
    # 滨江街道 is another township's: its pinyin finds nothing either.
    fc = http.get("/api/v1/search", params={"q": "bjjd", "kinds": "region"},
                  headers=commander.headers).json()
    assert fc["features"] == []


def test_nearby_elsewhere_shows_nothing_and_bad_radius_is_422(http, commander, owner) -> None:
    with owner.connect() as conn:
        x, y = conn.execute(text(
            "SELECT ST_X(label_point), ST_Y(label_point) FROM region WHERE code = '330302024' "
            "AND valid_to IS NULL")).one()
    fc = http.get("/api/v1/nearby", params={"lon": x, "lat": y, "crs": "CGCS2000",
                                            "radius_m": 500}, headers=commander.headers).json()
    assert fc["features"] == [] and fc["grid"] is None
    assert {r["code"] for r in fc["regions"]} <= {"330300", "330302"}  # not 滨江's own
    for radius in (0, 2001, "far"):
        _problem(http.get("/api/v1/nearby", params={"lon": x, "lat": y, "crs": "CGCS2000",
                                                    "radius_m": radius},
                          headers=commander.headers), 422, "radius_m")


def test_viewer_finds_regions_only(http, viewer) -> None:
    fc = http.get("/api/v1/search", params={"q": "鼓楼", "limit": 50},
                  headers=viewer.headers).json()
    assert fc["features"] and {f["properties"]["kind"] for f in fc["features"]} <= {
        "region", "grid"}


def test_nearby(http, commander, owner) -> None:
    with owner.connect() as conn:
        b = conn.execute(text(
            "SELECT id, ST_X(centroid) AS x, ST_Y(centroid) AS y FROM building "
            "WHERE path <@ '330300.330302.330302006' ORDER BY id LIMIT 1")).one()
    resp = http.get("/api/v1/nearby", params={"lon": b.x, "lat": b.y, "crs": "CGCS2000",
                                              "radius_m": 80}, headers=commander.headers)
    assert resp.status_code == 200, resp.text
    fc = resp.json()
    assert fc["regions"] and fc["features"][0]["properties"]["distance_m"] == 0
    assert b.id in [f["properties"]["id"] for f in fc["features"]
                    if f["properties"]["kind"] == "building"]
    _problem(http.get("/api/v1/nearby", params={"lon": b.x, "lat": b.y},
                      headers=commander.headers), 422, "crs")
    _problem(http.get("/api/v1/nearby", params={"lon": b.x, "lat": b.y, "crs": "WGS84",
                                                "kinds": "ufo"},
                      headers=commander.headers), 422, "kinds")


def test_statistics_endpoints(http, commander) -> None:
    h = commander.headers
    dist = http.get("/api/v1/statistics/distribution", params={"subject": "person"}, headers=h)
    assert dist.status_code == 200, dist.text
    body = dist.json()
    assert body["region"]["code"] == WUMA and body["refreshed_at"] and body["total"] > 0
    assert all("per_km2" in r for r in body["rows"])
    trend = http.get("/api/v1/statistics/trend",
                     params={"subject": "event", "unit": "week"}, headers=h)
    assert trend.status_code == 200 and trend.json()["rows"]
    ranking = http.get("/api/v1/statistics/ranking", params={"subject": "key_place"},
                       headers=h).json()
    assert {r["code"] for r in ranking["rows"]} == TOWNSHIPS
    assert [r["code"] for r in ranking["rows"] if r["own"]] == [WUMA]
    hot = http.get("/api/v1/statistics/hotspots", params={"resolution": 9}, headers=h)
    assert hot.status_code == 200 and hot.json()["type"] == "FeatureCollection"
    table = http.get("/api/v1/statistics/regions", headers=h).json()
    assert table["rows"] and table["refreshed_at"]


def test_statistics_bad_input_and_permissions(http, commander, viewer) -> None:
    h = commander.headers
    _problem(http.get("/api/v1/statistics/distribution", params={"subject": "aliens"},
                      headers=h), 422, "subject")
    _problem(http.get("/api/v1/statistics/trend", params={"subject": "event", "unit": "year"},
                      headers=h), 422, "unit")
    _problem(http.get("/api/v1/statistics/hotspots", params={"resolution": 12}, headers=h),
             422)
    _problem(http.get("/api/v1/statistics/distribution",
                      params={"subject": "person", "region_code": "330302024"}, headers=h),
             422, "region_code")
    _problem(http.get("/api/v1/statistics/distribution", params={"subject": "person"},
                      headers=viewer.headers), 403)
    for params, field in (({"date_to": "9999-12-31"}, "date_to"),
                          ({"date_from": "1740-06-06"}, "date_from"),
                          ({"region_code": "x\x00"}, "region_code"),
                          ({"event_type": "a b"}, "event_type")):
        _problem(http.get("/api/v1/statistics/trend", params={"subject": "event", **params},
                          headers=h), 422, field)
    _problem(http.get("/api/v1/statistics/hotspots", params={"date_to": "9999-12-31"},
                      headers=h), 422, "date_to")


def test_statistics_export_is_watermarked_and_audited(http, commander, owner) -> None:
    resp = http.get("/api/v1/statistics/export",
                    params={"report": "regions", "format": "csv"}, headers=commander.headers)
    assert resp.status_code == 200, resp.text
    lines = resp.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("# gridgov 导出") and "srch_cmd" in lines[0]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines[1:]))))
    assert rows and rows[0]["code"].startswith(WUMA)
    with owner.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'export' "
                              "AND object_kind = 'statistics' AND actor_username = 'srch_cmd'"))
        assert n.scalar_one() >= 1
    _problem(http.get("/api/v1/statistics/export", params={"report": "gossip"},
                      headers=commander.headers), 422, "report")
