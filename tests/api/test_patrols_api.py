"""Patrols over real HTTP: ingest (JSON, GPX, CSV), retries, partitions, bad input, records,
playback and scope."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import numpy as np
import pytest
import shapely
import uvicorn
from shapely.geometry import LineString, Polygon
from sqlalchemy import create_engine, text

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.bootstrap import APP_ROLE
from geoserver.database.cluster import free_port
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session, sqlalchemy_url
from geoserver.geo.crs import from_metric, to_metric
from geoserver.services import patrols
from geoserver.services.patrol_sessions import build_pending_sessions
from tests.conftest import make_settings
from tests.support.users import make_user

GRID = "330302006044001"  # 鼓楼社区第1网格, 五马街道
TOWNSHIP = "330302006"
OTHER_TOWNSHIP = "330302024"


@pytest.fixture(scope="module")
def server(pg, module_db) -> Iterator[str]:
    """The app with the patrol router (included here until api/app.py includes it)."""
    from api.app import create_app
    from api.routes import patrols as patrol_routes

    app = create_app(make_settings(pg, module_db, jobs_enabled=False))
    if not any(getattr(r, "path", "").startswith("/api/v1/patrols") for r in app.routes):
        app.include_router(patrol_routes.router)
        # The static web client is mounted at "/" and would shadow routes added after it.
        mounts = [r for r in app.router.routes if getattr(r, "name", "") == "web_map"]
        app.router.routes[:] = [r for r in app.router.routes if r not in mounts] + mounts
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(15)


@pytest.fixture(scope="module")
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def engine(pg, module_db):
    e = create_engine(sqlalchemy_url(pg.url(APP_ROLE, module_db)))
    yield e
    e.dispose()


@pytest.fixture(scope="module")
def worker(engine):
    return make_user(engine, "patrol_w1", roles=["grid_worker"], scope=[GRID],
                     positions=[("grid_worker", GRID)])


@pytest.fixture(scope="module")
def commander(engine):
    return make_user(engine, "patrol_t1", roles=["township_commander"], scope=[TOWNSHIP])


@pytest.fixture(scope="module")
def stranger(engine):
    return make_user(engine, "patrol_t2", roles=["township_commander"], scope=[OTHER_TOWNSHIP])


@pytest.fixture(scope="module")
def loop(engine) -> LineString:
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        wkb = s.execute(text("SELECT ST_AsBinary(geom) FROM region WHERE code = :c "
                             "AND valid_to IS NULL"), {"c": GRID}).scalar()
    poly = to_metric(shapely.from_wkb(bytes(wkb))).buffer(-20)
    if poly.geom_type == "MultiPolygon":
        poly = max(poly.geoms, key=lambda p: p.area)
    assert isinstance(poly, Polygon)
    return from_metric(LineString(poly.exterior.coords))


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


def test_retried_batch_is_stored_once_and_committed_on_2xx(api, engine, worker, loop) -> None:
    t, lon, lat = walk(loop, time.time() - 3000, limit=150)
    b = body("api-1", t, lon, lat)
    r = api.post("/api/v1/patrols/points", json=b, headers=worker.headers)
    assert r.status_code == 201, r.text
    # Another connection sees the points as soon as the answer arrives: 2xx means committed.
    assert scalar(engine, "SELECT count(*) FROM gps_point WHERE batch_id = :b",
                  b=r.json()["batch_id"]) == 150
    again = api.post("/api/v1/patrols/points", json=b, headers=worker.headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert scalar(engine, "SELECT count(*) FROM gps_point WHERE user_id = :u "
                  "AND ts >= to_timestamp(:t0)", u=worker.id, t0=float(t[0]) - 1) == 150


def test_late_batch_lands_in_its_days_partition(api, engine, worker, loop) -> None:
    day = datetime.now(GOVERNANCE_TZ) - timedelta(days=2)
    start = day.replace(hour=8, minute=30).timestamp()
    t, lon, lat = walk(loop, start, limit=40)
    r = api.post("/api/v1/patrols/points", json=body("late-2d", t, lon, lat),
                 headers=worker.headers)
    assert r.status_code == 201, r.text
    assert scalar(engine, "SELECT string_agg(DISTINCT tableoid::regclass::text, ',') FROM "
                  "gps_point WHERE batch_id = :b", b=r.json()["batch_id"]) == \
        f"gps_point_p{day:%Y%m%d}"


def test_bad_input_is_a_4xx_naming_the_problem_and_writes_nothing(api, engine, worker,
                                                                  loop) -> None:
    t, lon, lat = walk(loop, time.time() - 600, limit=10)
    good = body("bad-1", t, lon, lat)
    before = scalar(engine, "SELECT count(*) FROM gps_batch WHERE user_id = :u", u=worker.id)

    def point(i, **kw):
        b = {**good, "points": [dict(p) for p in good["points"]]}
        b["points"][i].update(kw)
        return b

    cases = [
        ({k: v for k, v in good.items() if k != "crs"}, 422, "crs"),
        (point(2, lat=float(lon[2]), lon=float(lat[2])), 422, "swapped"),
        (point(3, lon=505000.0, lat=3100000.0), 422, "metres"),
        (point(4, lat=95.0), 422, "points[4]"),
        (point(5, t=int((time.time() + 86400) * 1000)), 422, "future"),
        (point(6, t="1901-01-01T00:00:00+08:00"), 422, "before 2000"),
        ({**good, "points": "many"}, 422, "points"),
    ]
    for payload, status, words in cases:
        r = api.post("/api/v1/patrols/points", json=payload, headers=worker.headers)
        assert r.status_code == status, (words, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert words in r.text, r.text
    r = api.post("/api/v1/patrols/points", content=b"{not json", headers={
        **worker.headers, "content-type": "application/json"})
    assert r.status_code == 422
    gpx_cases = [
        (b'<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
         b'<trk><trkseg><trkpt lat="28.0" lon="120.6"/></trkseg></trk></gpx>', 422, "time"),
        (b"<gpx><trk", 422, "malformed XML"),
        (b"x" * (patrols.DEFAULT_SETTINGS.max_file_bytes + 10), 413, "bytes"),
    ]
    for data, status, words in gpx_cases:
        r = api.post("/api/v1/patrols/gpx", files={"file": ("t.gpx", data)},
                     data={"crs": "WGS84"}, headers=worker.headers)
        assert r.status_code == status and words in r.text, r.text
    assert api.post("/api/v1/patrols/points", json=good).status_code == 401
    assert scalar(engine, "SELECT count(*) FROM gps_batch WHERE user_id = :u",
                  u=worker.id) == before


def _gpx(t, lon, lat) -> bytes:
    pts = "".join(f'<trkpt lat="{c:.8f}" lon="{b:.8f}"><time>'
                  f"{datetime.fromtimestamp(a, GOVERNANCE_TZ).isoformat()}</time></trkpt>"
                  for a, b, c in zip(t, lon, lat, strict=True))
    return ('<?xml version="1.0"?><gpx version="1.1" creator="t" '
            'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
            f"{pts}</trkseg></trk></gpx>").encode()


@pytest.fixture(scope="module")
def patrol_id(api, engine, worker, loop) -> int:
    """A GPX patrol uploaded yesterday 09:00 and built into a session by the job."""
    start = (datetime.now(GOVERNANCE_TZ) - timedelta(days=1)).replace(hour=9, minute=0,
                                                                      second=0, microsecond=0)
    t, lon, lat = walk(loop, start.timestamp())
    r = api.post("/api/v1/patrols/gpx", files={"file": ("walk.gpx", _gpx(t, lon, lat))},
                 data={"crs": "WGS84"}, headers=worker.headers)
    assert r.status_code == 201, r.text
    run_session_job(engine)
    sid = scalar(engine, "SELECT id FROM patrol_session WHERE user_id = :u AND started_at = "
                 "to_timestamp(:t)", u=worker.id, t=float(t[0]))
    assert sid is not None
    return int(sid)


def test_gpx_round_trip(api, commander, patrol_id, engine) -> None:
    r = api.get("/api/v1/patrols/sessions/export", params={"format": "gpx", "grid": GRID},
                headers=commander.headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/gpx")
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    trk = ET.fromstring(r.content).findall("g:trk", ns)
    n = scalar(engine, "SELECT points_kept FROM patrol_session WHERE id = :i", i=patrol_id)
    assert any(len(t.findall("g:trkseg/g:trkpt", ns)) == n for t in trk)
    assert scalar(engine, "SELECT count(*) FROM audit_log WHERE action = 'patrol.export' "
                  "AND actor_username = 'patrol_t1'") >= 1


def test_records_and_playback_for_the_commander(api, commander, patrol_id, engine) -> None:
    day = (datetime.now(GOVERNANCE_TZ) - timedelta(days=1)).date().isoformat()
    listed = api.get("/api/v1/patrols/sessions", params={"region": TOWNSHIP, "date_from": day},
                     headers=commander.headers).json()
    assert patrol_id in [i["id"] for i in listed["items"]]
    detail = api.get(f"/api/v1/patrols/sessions/{patrol_id}", headers=commander.headers)
    assert detail.status_code == 200 and detail.json()["mileage_m"] > 300
    before = scalar(engine, "SELECT count(*) FROM audit_log WHERE action = 'patrol.playback' "
                    "AND object_id = :i", i=str(patrol_id))
    r = api.get(f"/api/v1/patrols/sessions/{patrol_id}/playback", params={"resolution": 10},
                headers=commander.headers)
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["geometry"]["type"] == "LineString"
    assert len(f["properties"]["times"]) == len(f["geometry"]["coordinates"]) >= 2
    assert f["properties"]["times"] == sorted(f["properties"]["times"])
    assert scalar(engine, "SELECT count(*) FROM audit_log WHERE action = 'patrol.playback' "
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


def test_delete_is_soft_and_audited(api, commander, engine, worker, loop) -> None:
    start = (datetime.now(GOVERNANCE_TZ) - timedelta(days=3)).replace(hour=15, minute=0,
                                                                      second=0, microsecond=0)
    t, lon, lat = walk(loop, start.timestamp())
    assert api.post("/api/v1/patrols/points", json=body("to-delete", t, lon, lat),
                    headers=worker.headers).status_code == 201
    run_session_job(engine)
    sid = scalar(engine, "SELECT id FROM patrol_session WHERE user_id = :u AND started_at = "
                 "to_timestamp(:t)", u=worker.id, t=float(t[0]))
    r = api.delete(f"/api/v1/patrols/sessions/{sid}", headers=commander.headers)
    assert r.status_code == 204, r.text
    assert api.get(f"/api/v1/patrols/sessions/{sid}", headers=commander.headers).status_code \
        == 404
    assert scalar(engine, "SELECT deleted_at IS NOT NULL FROM patrol_session WHERE id = :i",
                  i=sid) is True
    assert scalar(engine, "SELECT count(*) FROM audit_log WHERE action = 'patrol.delete' "
                  "AND object_id = :i", i=str(sid)) == 1
