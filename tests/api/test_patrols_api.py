"""Patrols over real HTTP: ingest (JSON, GPX, CSV), retries, partitions, bad input, records,
playback and scope."""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import numpy as np
import openpyxl
import pytest
from shapely.geometry import LineString
from sqlalchemy import text

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.geo.crs import from_metric, to_metric
from geoserver.services import patrols
from geoserver.services.patrol_sessions import build_pending_sessions
from tests.conftest import make_settings
from tests.support.live import app_with, serve
from tests.support.places import ring_inside
from tests.support.users import grid_worker, make_user, township_commander

GRID = "330302006044001"  # 鼓楼社区第1网格, 五马街道
TOWNSHIP = "330302006"
OTHER_TOWNSHIP = "330302024"


@pytest.fixture(scope="module")
def server(pg, module_db) -> Iterator[str]:
    """The app on this module's database, served by uvicorn in a thread."""
    with serve(app_with(make_settings(pg, module_db, jobs_enabled=False))) as url:
        yield url


@pytest.fixture(scope="module")
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def worker(module_engine):
    return grid_worker(module_engine, "patrol_w1", GRID)


@pytest.fixture(scope="module")
def commander(module_engine):
    return township_commander(module_engine, "patrol_t1", TOWNSHIP, on_duty=False)


@pytest.fixture(scope="module")
def stranger(module_engine):
    return township_commander(module_engine, "patrol_t2", OTHER_TOWNSHIP, on_duty=False)


@pytest.fixture(scope="module")
def loop(module_engine) -> LineString:
    return from_metric(ring_inside(module_engine, GRID, inset_m=20))


def walk(loop: LineString, start: float, limit: int | None = None):
    metric = to_metric(loop)
    d = np.arange(0, metric.length, 6.5)[:limit]
    pts = [from_metric(metric.interpolate(x)) for x in d]
    return (start + np.arange(d.size) * 5.0, np.array([p.x for p in pts]),
            np.array([p.y for p in pts]))


def body(batch_id: str, t, lon, lat, crs: str = "WGS84") -> dict:
    return {"batch_id": batch_id, "crs": crs, "points": [
        {"t": int(round(a * 1000)), "lon": b, "lat": c, "accuracy": 6.5}
        for a, b, c in zip(t.tolist(), lon.tolist(), lat.tolist(), strict=True)]}


def scalar(engine, sql: str, **params):
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return s.execute(text(sql), params).scalar()


def run_session_job(engine) -> None:
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        build_pending_sessions(s, rules=patrols.DEFAULT_SETTINGS.rules())


def test_retried_batch_is_stored_once_and_committed_on_2xx(api, module_engine, worker,
                                                            loop) -> None:
    t, lon, lat = walk(loop, time.time() - 3000, limit=150)
    b = body("api-1", t, lon, lat)
    r = api.post("/api/v1/patrols/points", json=b, headers=worker.headers)
    assert r.status_code == 201, r.text
    # Another connection sees the points as soon as the answer arrives: 2xx means committed.
    assert scalar(module_engine, "SELECT count(*) FROM gps_point WHERE batch_id = :b",
                  b=r.json()["batch_id"]) == 150
    again = api.post("/api/v1/patrols/points", json=b, headers=worker.headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert scalar(module_engine, "SELECT count(*) FROM gps_point WHERE user_id = :u "
                  "AND ts >= to_timestamp(:t0)", u=worker.id, t0=float(t[0]) - 1) == 150


def test_late_batch_lands_in_its_days_partition(api, module_engine, worker, loop) -> None:
    day = datetime.now(GOVERNANCE_TZ) - timedelta(days=2)
    start = day.replace(hour=8, minute=30).timestamp()
    t, lon, lat = walk(loop, start, limit=40)
    r = api.post("/api/v1/patrols/points", json=body("late-2d", t, lon, lat),
                 headers=worker.headers)
    assert r.status_code == 201, r.text
    assert scalar(module_engine, "SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM "
                  "gps_point WHERE batch_id = :b", b=r.json()["batch_id"]) == \
        f"gps_point_p{day:%Y%m%d}"


def _edit(good: dict, i: int, **changes) -> dict:
    out = {**good, "points": [dict(p) for p in good["points"]]}
    out["points"][i].update(changes)
    return out


def _gpx_doc(trkpts: str) -> bytes:
    return ('<?xml version="1.0"?><gpx version="1.1" creator="t" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
            f"{trkpts}</trkseg></trk></gpx>").encode()


_NOW = "2026-01-01T08:00:00+08:00"  # replaced by a recent time in the test
_GPX_OK = f'<trkpt lat="28.02" lon="120.65"><time>{_NOW}</time></trkpt>'


def _json_cases(good: dict) -> list[tuple[str, object, int, str, str]]:
    """(name, body, status, field, words in the detail) for the JSON batch endpoint."""
    lon, lat = good["points"][2]["lon"], good["points"][2]["lat"]
    too_many = {**good, "points": [good["points"][0]] * 20_001}
    return [
        ("missing crs", {k: v for k, v in good.items() if k != "crs"}, 422, "crs", "required"),
        ("unknown crs", {**good, "crs": "EPSG:3857"}, 422, "crs", "crs"),
        ("swapped", _edit(good, 2, lon=lat, lat=lon), 422, "points[2]", "swapped"),
        ("projected metres", _edit(good, 3, lon=505000.0, lat=3100000.0), 422, "points[3]",
         "metres"),
        ("latitude out of range", _edit(good, 4, lat=95.0), 422, "points[4]", "95"),
        ("future", _edit(good, 5, t=int((time.time() + 86400) * 1000)), 422, "points[5].t",
         "future"),
        ("1901 as text", _edit(good, 6, t="1901-01-01T00:00:00+08:00"), 422, "points[6].t",
         "before 2000"),
        ("1901 as epoch ms", _edit(good, 7, t=-2_177_481_600_000), 422, "points[7].t",
         "before 2000"),
        ("points not a list", {**good, "points": "many"}, 422, "points", "list"),
        ("malformed JSON", b'{"batch_id": "x", "crs": ', 422, "body", "malformed JSON"),
        ("too many points", too_many, 413, "", "at most 20000 points"),
        ("oversized body", b'{"points": [' + b" " * (20_000 * 512) + b"]}", 413, "", "bytes"),
    ]


def _file_cases(recent: str) -> list[tuple[str, str, bytes, dict, int, str, str]]:
    """(name, endpoint, file, form, status, field, words) for the GPX and CSV uploads."""
    ok = _GPX_OK.replace(_NOW, recent)
    wgs = {"crs": "WGS84"}
    return [
        ("gpx missing crs", "gpx", _gpx_doc(ok), {}, 422, "crs", "required"),
        ("gpx without time", "gpx", _gpx_doc('<trkpt lat="28.02" lon="120.65"/>'), wgs, 422,
         "trkpt[0].time", "no <time>"),
        ("gpx malformed XML", "gpx", b"<gpx><trk", wgs, 422, "file", "malformed XML"),
        ("gpx with a DTD", "gpx", b'<?xml version="1.0"?><!DOCTYPE g [<!ENTITY a "b">]><gpx/>',
         wgs, 422, "file", "DTD"),
        ("gpx swapped", "gpx", _gpx_doc(ok.replace('lat="28.02" lon="120.65"',
                                                   'lat="120.65" lon="28.02"')), wgs, 422,
         "trkpt[0]", "swapped"),
        ("gpx in 1901", "gpx", _gpx_doc(ok.replace(recent, "1901-05-01T08:00:00+08:00")), wgs,
         422, "trkpt[0].time", "before 2000"),
        ("gpx oversized", "gpx", b"x" * (patrols.DEFAULT_SETTINGS.max_file_bytes + 10), wgs,
         413, "", "bytes"),
        ("csv missing crs", "csv", f"time,lon,lat\n{recent},120.65,28.02\n".encode(), {}, 422,
         "crs", "required"),
        ("csv projected metres", "csv", f"time,lon,lat\n{recent},505000,3100000\n".encode(),
         wgs, 422, "row[0]", "metres"),
        ("csv in the future", "csv", b"time,lon,lat\n2999-01-01T00:00:00Z,120.65,28.02\n",
         wgs, 422, "row[0].time", "future"),
        ("csv without lat", "csv", f"time,lon\n{recent},120.65\n".encode(), wgs, 422, "file",
         "lat"),
    ]


def _written(engine, user_id: int) -> tuple[int, int]:
    return (scalar(engine, "SELECT count(*) FROM gps_batch WHERE user_id = :u", u=user_id),
            scalar(engine, "SELECT count(*) FROM gps_point WHERE user_id = :u", u=user_id))


def _assert_problem(r: httpx.Response, status: int, field: str, words: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert words in problem["detail"], problem
    if field:
        assert problem["errors"][0]["field"] == field, problem


def test_bad_batches_are_4xx_problems_naming_the_field_and_write_nothing(api, module_engine, worker,
                                                                         loop) -> None:
    t, lon, lat = walk(loop, time.time() - 600, limit=10)
    good = body("bad-1", t, lon, lat)
    before = _written(module_engine, worker.id)
    for name, payload, status, field, words in _json_cases(good):
        if isinstance(payload, bytes):
            r = api.post("/api/v1/patrols/points", content=payload, headers={
                **worker.headers, "content-type": "application/json"})
        else:
            r = api.post("/api/v1/patrols/points", json=payload, headers=worker.headers)
        try:
            _assert_problem(r, status, field, words)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
        assert _written(module_engine, worker.id) == before, name
    assert api.post("/api/v1/patrols/points", json=good).status_code == 401
    # The good batch itself goes in: the cases above failed for their one flaw.
    assert api.post("/api/v1/patrols/points", json=good, headers=worker.headers
                    ).status_code == 201


def test_bad_files_are_4xx_problems_naming_the_problem_and_write_nothing(api, module_engine,
                                                                        worker) -> None:
    recent = datetime.fromtimestamp(time.time() - 600, GOVERNANCE_TZ).isoformat()
    before = _written(module_engine, worker.id)
    for name, kind, data, form, status, field, words in _file_cases(recent):
        r = api.post(f"/api/v1/patrols/{kind}", files={"file": (f"t.{kind}", data)}, data=form,
                     headers=worker.headers)
        try:
            _assert_problem(r, status, field, words)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
        assert _written(module_engine, worker.id) == before, name


def _gpx(t, lon, lat) -> bytes:
    pts = "".join(f'<trkpt lat="{c:.8f}" lon="{b:.8f}"><time>'
                  f"{datetime.fromtimestamp(a, GOVERNANCE_TZ).isoformat()}</time></trkpt>"
                  for a, b, c in zip(t, lon, lat, strict=True))
    return ('<?xml version="1.0"?><gpx version="1.1" creator="t" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
            f"{pts}</trkseg></trk></gpx>").encode()


@pytest.fixture(scope="module")
def patrol_id(api, module_engine, worker, loop) -> int:
    """A GPX patrol uploaded yesterday 09:00 and built into a session by the job."""
    start = (datetime.now(GOVERNANCE_TZ) - timedelta(days=1)).replace(hour=9, minute=0,
                                                                      second=0, microsecond=0)
    t, lon, lat = walk(loop, start.timestamp())
    r = api.post("/api/v1/patrols/gpx", files={"file": ("walk.gpx", _gpx(t, lon, lat))},
                 data={"crs": "WGS84"}, headers=worker.headers)
    assert r.status_code == 201, r.text
    run_session_job(module_engine)
    sid = scalar(module_engine, "SELECT id FROM patrol_session WHERE user_id = :u AND started_at = "
                 "to_timestamp(:t)", u=worker.id, t=float(t[0]))
    assert sid is not None
    return int(sid)


def test_gpx_round_trip(api, commander, patrol_id, module_engine) -> None:
    r = api.get("/api/v1/patrols/sessions/export", params={"format": "gpx", "grid": GRID},
                headers=commander.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/gpx")
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    trk = ET.fromstring(r.content).findall("g:trk", ns)
    n = scalar(module_engine, "SELECT points_kept FROM patrol_session WHERE id = :i", i=patrol_id)
    assert any(len(t.findall("g:trkseg/g:trkpt", ns)) == n for t in trk)
    assert scalar(module_engine, "SELECT count(*) FROM audit_log WHERE action = 'patrol.export' "
                  "AND actor_username = 'patrol_t1'") >= 1


def test_records_and_playback_for_the_commander(api, commander, patrol_id, module_engine) -> None:
    day = (datetime.now(GOVERNANCE_TZ) - timedelta(days=1)).date().isoformat()
    listed = api.get("/api/v1/patrols/sessions", params={"region": TOWNSHIP, "date_from": day},
                     headers=commander.headers).json()
    assert patrol_id in [i["id"] for i in listed["items"]]
    detail = api.get(f"/api/v1/patrols/sessions/{patrol_id}", headers=commander.headers)
    assert detail.status_code == 200 and detail.json()["mileage_m"] > 300
    before = scalar(module_engine, "SELECT count(*) FROM audit_log WHERE "
                    "action = 'patrol.playback' AND object_id = :i", i=str(patrol_id))
    r = api.get(f"/api/v1/patrols/sessions/{patrol_id}/playback", params={"resolution": 10},
                headers=commander.headers)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["geometry"]["type"] == "LineString"
    assert len(f["properties"]["times"]) == len(f["geometry"]["coordinates"]) >= 2
    assert f["properties"]["times"] == sorted(f["properties"]["times"])
    assert scalar(module_engine, "SELECT count(*) FROM audit_log WHERE action = 'patrol.playback' "
                  "AND object_id = :i", i=str(patrol_id)) == before + 1
    stats = api.get("/api/v1/patrols/stats", params={"region": TOWNSHIP, "date_from": day},
                    headers=commander.headers)
    assert stats.status_code == 200 and stats.json()["patrolled"] >= 1


def test_commander_of_another_township_gets_404(api, stranger, patrol_id) -> None:
    for method, url in (("GET", f"/api/v1/patrols/sessions/{patrol_id}"),
                        ("GET", f"/api/v1/patrols/sessions/{patrol_id}/playback"),
                        ("DELETE", f"/api/v1/patrols/sessions/{patrol_id}")):
        r = api.request(method, url, headers=stranger.headers)
        assert r.status_code == 404, (url, r.text)
    listed = api.get("/api/v1/patrols/sessions", headers=stranger.headers).json()
    assert patrol_id not in [i["id"] for i in listed["items"]]
    live = api.get("/api/v1/patrols/live", headers=stranger.headers).json()
    assert all(not f["properties"]["path"].startswith("330300.330302.330302006")
               for f in live["features"])


def test_worker_may_not_play_back(api, worker, patrol_id) -> None:
    assert api.get(f"/api/v1/patrols/sessions/{patrol_id}/playback",
                   headers=worker.headers).status_code == 403


def test_csv_upload_and_live_position(api, worker, commander, loop) -> None:
    t, lon, lat = walk(loop, time.time() - 120, limit=20)
    csv_text = "time,lon,lat\n" + "\n".join(
        f"{int(a * 1000)},{b},{c}" for a, b, c in zip(t, lon, lat, strict=True))
    r = api.post("/api/v1/patrols/csv", files={"file": ("t.csv", csv_text.encode())},
                 data={"crs": "CGCS2000"}, headers=worker.headers)
    assert r.status_code == 201, r.text
    live = api.get("/api/v1/patrols/live", headers=commander.headers).json()
    me = [f for f in live["features"] if f["properties"]["username"] == "patrol_w1"]
    assert me and me[0]["properties"]["online"] is True
    assert me[0]["geometry"]["coordinates"] == pytest.approx([lon[-1], lat[-1]])


def test_delete_is_soft_and_audited(api, commander, module_engine, worker, loop) -> None:
    start = (datetime.now(GOVERNANCE_TZ) - timedelta(days=3)).replace(hour=15, minute=0,
                                                                      second=0, microsecond=0)
    t, lon, lat = walk(loop, start.timestamp())
    assert api.post("/api/v1/patrols/points", json=body("to-delete", t, lon, lat),
                    headers=worker.headers).status_code == 201
    run_session_job(module_engine)
    sid = scalar(module_engine, "SELECT id FROM patrol_session WHERE user_id = :u AND started_at = "
                 "to_timestamp(:t)", u=worker.id, t=float(t[0]))
    r = api.delete(f"/api/v1/patrols/sessions/{sid}", headers=commander.headers)
    assert r.status_code == 204, r.text
    assert api.get(f"/api/v1/patrols/sessions/{sid}", headers=commander.headers).status_code \
        == 404
    assert scalar(module_engine, "SELECT deleted_at IS NOT NULL FROM patrol_session WHERE id = :i",
                  i=sid) is True
    assert scalar(module_engine, "SELECT count(*) FROM audit_log WHERE action = 'patrol.delete' "
                  "AND object_id = :i", i=str(sid)) == 1


# --- exports, statistics, targets ----------------------------------------------------------------


def _audits(engine, action: str, user: str) -> int:
    return scalar(engine, "SELECT count(*) FROM audit_log WHERE action = :a "
                  "AND actor_username = :u", a=action, u=user)


def test_exports_in_four_formats_are_watermarked_audited_and_scoped(api, module_engine, commander,
                                                                    stranger, worker,
                                                                    patrol_id) -> None:
    url = "/api/v1/patrols/sessions/export"
    params = {"grid": GRID}
    before = _audits(module_engine, "patrol.export", "patrol_t1")
    got = {f: api.get(url, params={**params, "format": f}, headers=commander.headers)
           for f in ("csv", "xlsx", "geojson", "gpx")}
    for f, r in got.items():
        assert r.status_code == 200, (f, r.text)
        assert "attachment" in r.headers["content-disposition"]
    assert _audits(module_engine, "patrol.export", "patrol_t1") == before + 4

    lines = got["csv"].content.decode("utf-8-sig").splitlines()
    assert "patrol_t1" in lines[0] and lines[1].startswith("id,user_id,username")
    assert any(line.startswith(f"{patrol_id},") for line in lines[2:])

    sheet = openpyxl.load_workbook(io.BytesIO(got["xlsx"].content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert "patrol_t1" in rows[0][0] and rows[1][0] == "id"
    assert patrol_id in [r[0] for r in rows[2:]]

    fc = got["geojson"].json()
    assert got["geojson"].headers["content-type"].startswith("application/geo+json")
    assert "patrol_t1" in fc["watermark"]
    feat = next(f for f in fc["features"] if f["id"] == patrol_id)
    assert feat["geometry"]["type"] == "LineString"
    assert len(feat["properties"]["times"]) == len(feat["geometry"]["coordinates"]) \
        == feat["properties"]["points_kept"]

    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    gpx = ET.fromstring(got["gpx"].content)
    assert "patrol_t1" in gpx.find("g:metadata/g:desc", ns).text
    trk = next(t for t in gpx.findall("g:trk", ns) if t.find("g:number", ns).text ==
               str(patrol_id))
    assert len(trk.findall("g:trkseg/g:trkpt", ns)) == feat["properties"]["points_kept"]

    # Another township: the region is refused by name, and an unfiltered export is empty.
    r = api.get(url, params={"region": TOWNSHIP}, headers=stranger.headers)
    _assert_problem(r, 422, "region_code", "jurisdiction")
    r = api.get(url, params={"format": "csv"}, headers=stranger.headers)
    assert r.status_code == 200 and f"\n{patrol_id}," not in r.text
    _assert_problem(api.get(url, params={"format": "kml"}, headers=commander.headers), 422,
                    "format", "format")
    assert api.get(url, headers=worker.headers).status_code == 403


def test_stats_by_week_and_month_with_children(api, commander, stranger, patrol_id) -> None:
    yesterday = (datetime.now(GOVERNANCE_TZ) - timedelta(days=1)).date()
    for period, days in (("week", 7), ("month", None)):
        r = api.get("/api/v1/patrols/stats", params={"region": TOWNSHIP, "period": period,
                                                      "date": yesterday.isoformat()},
                    headers=commander.headers)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["period"] == period and (days is None or out["days"] == days)
        assert out["patrolled"] >= 1 and 0 <= out["patrolled_rate"] <= 1
        assert len(out["series"]) == out["days"]
        village = next(c for c in out["children"] if c["code"] == GRID[:12])
        assert village["patrolled"] >= 1 and village["coverage"] > 0
        assert {t["grid_type"] for t in out["targets"]} == {"general", "key", "dedicated"}
    bad = [({"region": TOWNSHIP, "period": "year"}, 422, "period"),
           ({"region": TOWNSHIP, "period": "week", "date_from": "2026-01-01"}, 422, "period"),
           ({"region": TOWNSHIP, "date_from": "2026-01-01", "date_to": "2026-12-01"}, 422,
            "date_to"),
           ({"region": TOWNSHIP, "date": "2026-13-01"}, 422, "date"),
           ({"region": TOWNSHIP, "period": "week", "date": "9999-12-31"}, 422, "date"),
           ({}, 422, "region")]
    for params, status, field in bad:
        r = api.get("/api/v1/patrols/stats", params=params, headers=commander.headers)
        assert r.status_code == status, (params, r.text)
        assert field in {e["field"] for e in r.json()["errors"]}, r.text
    r = api.get("/api/v1/patrols/stats", params={"region": TOWNSHIP, "period": "week"},
                headers=stranger.headers)
    assert r.status_code == 404 and r.headers["content-type"].startswith(
        "application/problem+json")


@pytest.fixture(scope="module")
def city(module_engine):
    return make_user(module_engine, "patrol_city", roles=["city_commander"], scope=["330300"])


def test_targets_are_read_and_set_per_grid_type(api, module_engine, commander, city) -> None:
    r = api.get("/api/v1/patrols/targets", headers=commander.headers)
    assert r.status_code == 200
    old = {t["grid_type"]: t for t in r.json()}["dedicated"]
    url = "/api/v1/patrols/targets/dedicated"
    new = {"min_mileage_m": 1500, "min_duration_s": 2400}
    assert api.put(url, json=new, headers=commander.headers).status_code == 403
    for body_, path, field in ((new, "/api/v1/patrols/targets/park", "grid_type"),
                               ({**new, "min_mileage_m": -5}, url, "min_mileage_m"),
                               ({**new, "min_duration_s": "long"}, url, "min_duration_s"),
                               ({"min_mileage_m": 1}, url, "min_duration_s")):
        r = api.put(path, json=body_, headers=city.headers)
        assert r.status_code == 422, r.text
        assert field in {e["field"] for e in r.json()["errors"]}, r.text
    before = _audits(module_engine, "patrol.target", "patrol_city")
    r = api.put(url, json=new, headers=city.headers)
    assert r.status_code == 200 and r.json()["min_mileage_m"] == 1500
    assert _audits(module_engine, "patrol.target", "patrol_city") == before + 1
    listed = {t["grid_type"]: t for t in api.get("/api/v1/patrols/targets",
                                                 headers=commander.headers).json()}
    assert listed["dedicated"]["min_duration_s"] == 2400
    restore = {k: old[k] for k in ("min_mileage_m", "min_duration_s")}
    assert api.put(url, json=restore, headers=city.headers).status_code == 200


def test_record_filters_out_of_range_are_4xx_naming_the_field(api, commander) -> None:
    for url in ("/api/v1/patrols/sessions", "/api/v1/patrols/sessions/export"):
        for params, field in (({"date_from": "9999-12-31"}, "date_from"),
                              ({"date_to": "0001-01-01"}, "date_to"),
                              ({"date_from": "2026-02-01", "date_to": "2026-01-01"}, "date_to"),
                              ({"region": "999999"}, "region_code")):
            r = api.get(url, params=params, headers=commander.headers)
            _assert_problem(r, 422, field, "")
