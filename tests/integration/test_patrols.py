"""Patrol ingest, partitions, session building, records, playback, stats and scope, on the tiny
demo city (services against real PostGIS, rolled back after each test)."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from datetime import time as dtime

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString
from sqlalchemy import text

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.engine import set_scope
from geoserver.domain.principal import SYSTEM
from geoserver.errors import InvalidInput, NotFound, PermissionDenied, TooLarge
from geoserver.geo.crs import from_metric, to_metric, wgs84_to_gcj02
from geoserver.services import auth, patrol_export, patrol_stats, patrols, users
from geoserver.services.patrol_sessions import build_pending_sessions, maintain_partitions
from tests.support.places import ring_inside_session

GRID = "330302006044001"  # 鼓楼社区第1网格, 五马街道
OTHER_TOWNSHIP = "330302024"  # 滨江街道
RULES = patrols.DEFAULT_SETTINGS.rules()


def grid_loop(session, code: str = GRID, inset: float = 20.0) -> LineString:
    """A walking loop just inside a grid's boundary (lon/lat)."""
    return from_metric(ring_inside_session(session, code, inset))


def walk_points(loop: LineString, *, start: float, speed: float = 1.3, every: float = 5.0,
                limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    metric = to_metric(loop)
    d = np.arange(0, metric.length, speed * every)[:limit]
    pts = [from_metric(metric.interpolate(x)) for x in d]
    lon = np.array([p.x for p in pts])
    lat = np.array([p.y for p in pts])
    return start + np.arange(d.size) * every, lon, lat


def payload(batch_id: str, t, lon, lat, *, crs: str = "WGS84", **extra) -> dict:
    # As JSON would give them: plain ints and floats.
    points = [{"t": int(round(ti * 1000)), "lon": x, "lat": y, "accuracy": 8.0}
              for ti, x, y in zip(np.asarray(t).tolist(), np.asarray(lon).tolist(),
                                  np.asarray(lat).tolist(), strict=True)]
    return {"batch_id": batch_id, "crs": crs, "points": points, **extra}


@pytest.fixture
def worker(demo):
    """A new grid worker of GRID (the demo's own workers may already have tracks)."""
    user = users.create_user(demo, actor=SYSTEM, username="patrol_test_w", display_name="巡查员",
                             home_region_code=GRID, roles=["grid_worker"], scope_codes=[GRID])
    users.assign_staff(demo, actor=SYSTEM, user_id=user.id, position="grid_worker",
                       region_code=GRID)
    principal = auth.principal_for(demo, user.id)
    assert principal is not None and principal.can("patrol.report")
    return principal


@pytest.fixture
def worker_session(demo, worker):
    """The demo transaction with the worker's scope (switch with as_(): one transaction, so
    what the worker wrote is visible to the commander's reads)."""
    return as_(demo, worker)


def as_(session, principal):
    set_scope(session, principal.scope)
    return session


def count(session, sql: str, **params) -> int:
    return int(session.execute(text(sql), params).scalar_one())


def test_batch_is_stored_and_a_retried_batch_is_stored_once(worker_session, worker, demo) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 3600, limit=200)
    body = payload("b-1", t, lon, lat)
    first = patrols.ingest_points(as_(demo, worker), actor=worker, payload=body)
    again = patrols.ingest_points(as_(demo, worker), actor=worker, payload=body)
    assert first.points == 200 and not first.duplicate
    assert again.duplicate and again.points == 0
    assert count(worker_session, "SELECT count(*) FROM gps_point WHERE user_id = :u",
                 u=worker.user_id) == 200
    stored = worker_session.execute(text(
        "SELECT lon, lat, h3_r10, path::text FROM gps_point WHERE batch_id = :b AND seq = 0"),
        {"b": first.batch_id}).one()
    assert stored.lon == pytest.approx(lon[0], abs=1e-9)
    assert stored.path.endswith(GRID)
    from geoserver.geo.h3cells import cell_int
    assert stored.h3_r10 == cell_int(lon[0], lat[0], 10)


def test_gcj02_points_are_stored_as_cgcs2000(worker_session, worker, demo) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 3600, limit=20)
    glon, glat = wgs84_to_gcj02(lon, lat)
    assert abs(glon[0] - lon[0]) > 1e-3  # ~500 m apart in Wenzhou
    r = patrols.ingest_points(as_(demo, worker), actor=worker,
                              payload=payload("gcj", t, glon, glat, crs="GCJ-02"))
    got = worker_session.execute(text("SELECT lon, lat FROM gps_point WHERE batch_id = :b "
                                      "ORDER BY seq"), {"b": r.batch_id}).all()
    assert np.allclose([g.lon for g in got], lon, atol=1e-7)
    assert np.allclose([g.lat for g in got], lat, atol=1e-7)


def test_a_late_batch_lands_in_its_own_days_partition(worker_session, worker, demo) -> None:
    now = datetime.now(GOVERNANCE_TZ)
    loop = grid_loop(demo)
    for days_ago in (1, 40):  # yesterday, and a phone offline for weeks (within retention)
        start = (now - timedelta(days=days_ago)).replace(hour=9, minute=0, second=0)
        t, lon, lat = walk_points(loop, start=start.timestamp(), limit=30)
        r = patrols.ingest_points(as_(demo, worker), actor=worker,
                                  payload=payload(f"late-{days_ago}", t, lon, lat))
        parts = worker_session.execute(text(
            "SELECT DISTINCT tableoid::regclass::text FROM gps_point WHERE batch_id = :b"),
            {"b": r.batch_id}).scalars().all()
        assert parts == [f"gps_point_p{start:%Y%m%d}"]


def test_points_older_than_retention_wait_in_the_default_partition(worker_session, worker,
                                                                   demo) -> None:
    start = datetime.now(GOVERNANCE_TZ) - timedelta(days=200)
    t, lon, lat = walk_points(grid_loop(demo), start=start.timestamp(), limit=5)
    r = patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("old", t, lon, lat))
    parts = worker_session.execute(text(
        "SELECT DISTINCT tableoid::regclass::text FROM gps_point WHERE batch_id = :b"),
        {"b": r.batch_id}).scalars().all()
    assert parts == ["gps_point_default"]
    # The app role reaches raw points only through gps_point (where the scope policy holds).
    with pytest.raises(Exception, match="permission denied"):
        with worker_session.begin_nested():
            worker_session.execute(text("SELECT count(*) FROM gps_point_default"))


def _bad_cases(t, lon, lat):
    good = payload("bad", t, lon, lat)
    now_ms = int(time.time() * 1000)

    def edit(i, **changes):
        p = {**good, "points": [dict(x) for x in good["points"]]}
        p["points"][i].update(changes)
        return p

    no_crs = {k: v for k, v in good.items() if k != "crs"}
    return [
        (no_crs, "crs"),
        ({**good, "crs": "EPSG:3857"}, "crs"),
        ({**good, "batch_id": ""}, "batch_id"),
        (edit(3, lat=91.5), "points[3]"),
        (edit(4, lon=float(lat[4]), lat=float(lon[4])), "points[4]"),  # swapped
        (edit(5, lon=505_000.0, lat=3_100_000.0), "points[5]"),  # EPSG:4549 metres
        (edit(6, t=now_ms + 3_600_000), "points[6].t"),  # an hour in the future
        (edit(7, t="1901-05-01T08:00:00+08:00"), "points[7].t"),
        (edit(8, t=int(time.time())), "points[8].t"),  # seconds, not milliseconds
        (edit(9, t="2026-01-01 08:00"), "points[9].t"),  # no offset
        (edit(10, lat="28.0"), "points[10].lat"),
        (edit(11, accuracy=-3), "points[11].accuracy"),
        (edit(12, event="teleport"), "points[12].event"),
        (edit(13, lon=None), "points[13].lon"),
        ({**good, "points": []}, "points"),
    ]


def test_bad_input_names_the_field_and_writes_nothing(worker_session, worker, demo) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 3600, limit=20)
    before = count(worker_session, "SELECT count(*) FROM gps_batch")
    for body, field in _bad_cases(t, lon, lat):
        with pytest.raises(InvalidInput) as e:
            patrols.ingest_points(as_(demo, worker), actor=worker, payload=body)
        assert e.value.problems[0].field.startswith(field), (field, e.value.detail)
    assert "swapped" in _detail(worker_session, worker, _bad_cases(t, lon, lat)[4][0])
    assert "metres" in _detail(worker_session, worker, _bad_cases(t, lon, lat)[5][0])
    assert count(worker_session, "SELECT count(*) FROM gps_batch") == before


def _detail(session, worker, body) -> str:
    with pytest.raises(InvalidInput) as e:
        patrols.ingest_points(session, actor=worker, payload=body)
    return e.value.detail


def test_too_many_points_is_too_large(worker_session, worker, demo) -> None:
    settings = patrols.PatrolSettings(max_batch_points=10)
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 3600, limit=11)
    with pytest.raises(TooLarge):
        patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("big", t, lon, lat),
                              settings=settings)


def _gpx(t, lon, lat, version: str = "1.1", with_time: bool = True) -> bytes:
    ns = f"http://www.topografix.com/GPX/{version.replace('.', '/')}"
    pts = "".join(
        f'<trkpt lat="{y:.8f}" lon="{x:.8f}"><ele>5</ele>'
        + (f"<time>{datetime.fromtimestamp(ti, GOVERNANCE_TZ).isoformat()}</time>"
           if with_time else "") + "</trkpt>"
        for ti, x, y in zip(t, lon, lat, strict=True))
    return (f'<?xml version="1.0"?><gpx version="{version}" creator="test" xmlns="{ns}">'
            f"<trk><trkseg>{pts}</trkseg></trk></gpx>").encode()


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_gpx_round_trip_through_a_session(worker_session, worker, demo, version) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 7200)
    data = _gpx(t, lon, lat, version)
    r = patrols.ingest_file(worker_session, actor=worker, data=data, kind="gpx", crs="WGS84")
    assert r.points == t.size
    again = patrols.ingest_file(worker_session, actor=worker, data=data, kind="gpx", crs="WGS84")
    assert again.duplicate  # the same file twice is stored once
    build_pending_sessions(as_(demo, SYSTEM), rules=RULES)
    leader = auth.principal_for(demo, demo.execute(text(
        "SELECT id FROM app_user WHERE username = :u"), {"u": f"t{GRID[:9]}"}).scalar_one())
    f = patrols.SessionFilter(user_id=worker.user_id)
    as_(demo, leader)
    assert patrol_export.prepare_export(demo, actor=leader, filters=f, fmt="gpx",
                                        settings=patrols.DEFAULT_SETTINGS) == 1
    rows = patrol_export.iter_records(demo, actor=leader, filters=f, tracks=True, limit=10)
    root = ET.fromstring(b"".join(patrol_export.gpx_chunks(rows, "mark <&>")))
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    pts = root.findall("g:trk/g:trkseg/g:trkpt", ns)
    assert len(root.findall("g:trk", ns)) == 1
    # Straight steps of a clean walk: every fix survives cleaning and comes back.
    assert len(pts) == t.size
    back_t = [datetime.fromisoformat(p.find("g:time", ns).text).timestamp() for p in pts]
    assert np.allclose(back_t, t, atol=0.001)
    assert np.allclose([float(p.get("lon")) for p in pts], lon, atol=1e-6)


def test_bad_files_are_refused(worker_session, worker, demo) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 3600, limit=10)
    cases = [
        (_gpx(t, lon, lat, with_time=False), "gpx", "time"),
        (b"<gpx><trk>", "gpx", "malformed XML"),
        (b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "aaaa">]><gpx/>', "gpx", "DTD"),
        (b"<kml xmlns='http://www.opengis.net/kml/2.2'/>", "gpx", "GPX 1.0 or 1.1"),
        (b"when,x\n1,2\n", "csv", "columns"),
    ]
    for data, kind, words in cases:
        with pytest.raises(InvalidInput, match=words):
            patrols.ingest_file(worker_session, actor=worker, data=data, kind=kind, crs="WGS84")
    with pytest.raises(InvalidInput, match="crs"):
        patrols.ingest_file(worker_session, actor=worker, data=_gpx(t, lon, lat), kind="gpx",
                            crs=None)
    with pytest.raises(TooLarge):
        patrols.ingest_file(worker_session, actor=worker, data=_gpx(t, lon, lat), kind="gpx",
                            crs="WGS84", settings=patrols.PatrolSettings(max_file_bytes=1024))


def test_csv_upload(worker_session, worker, demo) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 3600, limit=50)
    rows = ["time,lng,lat,accuracy"] + [
        f"{datetime.fromtimestamp(a, GOVERNANCE_TZ).isoformat()},{b},{c},6"
        for a, b, c in zip(t, lon, lat, strict=True)]
    r = patrols.ingest_file(worker_session, actor=worker, data="\n".join(rows).encode(),
                            kind="csv", crs="CGCS2000")
    assert r.points == 50
    assert count(worker_session, "SELECT count(*) FROM gps_point WHERE batch_id = :b "
                 "AND accuracy = 6", b=r.batch_id) == 50


def test_session_is_built_incrementally_and_keeps_its_id(worker_session, worker, demo) -> None:
    loop = grid_loop(demo)
    t, lon, lat = walk_points(loop, start=0)
    t = t + time.time() - 120 - t[-1]  # ended two minutes ago: the patrol is still open
    half = t.size // 2
    # An indoor jump of ~300 m for four fixes, in the first half.
    lon_j = lon.copy()
    lon_j[20:24] += 300 / (111_320 * np.cos(np.radians(lat[20])))
    patrols.ingest_points(as_(demo, worker), actor=worker,
                          payload=payload("p1", t[:half], lon_j[:half], lat[:half]))
    report = build_pending_sessions(as_(demo, SYSTEM), rules=RULES)
    assert report.batches == 1 and report.sessions_written == 1
    first = worker_session.execute(text("SELECT id, mileage_m, points_kept FROM patrol_session "
                                        "WHERE user_id = :u"), {"u": worker.user_id}).one()
    assert count(worker_session, "SELECT count(*) FROM gps_point WHERE user_id = :u "
                 "AND dropped_reason = 3", u=worker.user_id) == 4
    patrols.ingest_points(as_(demo, worker), actor=worker,
                          payload=payload("p2", t[half:], lon[half:], lat[half:]))
    assert build_pending_sessions(as_(demo, SYSTEM), rules=RULES).sessions_written == 1
    rec = worker_session.execute(text(
        "SELECT id, mileage_m, duration_s, in_grid_time_share, coverage_share, cells_visited, "
        "points_kept, state, ST_NPoints(track) AS n, cardinality(times) AS nt FROM "
        "patrol_session WHERE user_id = :u"), {"u": worker.user_id}).one()
    assert rec.id == first.id  # the same patrol, grown
    true_len = shapely.length(to_metric(LineString(np.column_stack([lon, lat]))))
    assert rec.mileage_m == pytest.approx(true_len, rel=0.02)
    assert rec.duration_s == pytest.approx(t[-1] - t[0], abs=1)
    assert rec.in_grid_time_share > 0.95
    assert 0.3 < rec.coverage_share <= 1.0
    assert rec.n == rec.nt == rec.points_kept == t.size - 4
    assert rec.state == "open"
    # Nothing pending: a second run does nothing.
    assert build_pending_sessions(as_(demo, SYSTEM), rules=RULES).batches == 0


def test_visits_record_places_passed_nearby(worker_session, worker, demo) -> None:
    loop = grid_loop(demo)
    t, lon, lat = walk_points(loop, start=time.time() - 5400)
    # A building next to the route (a 10 m square 8 m off the 40th fix)
    x, y = to_metric(shapely.Point(lon[40], lat[40])).coords[0]
    square = from_metric(shapely.box(x + 8, y - 5, x + 18, y + 5))
    bid = as_(demo, SYSTEM).execute(text(
        "INSERT INTO building (code, name, geom) VALUES ('patrol-test-b1', '测试楼', "
        "ST_Multi(ST_GeomFromWKB(:w, 4490))) RETURNING id"), {"w": shapely.to_wkb(square)}
    ).scalar_one()
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("v", t, lon, lat))
    build_pending_sessions(as_(demo, SYSTEM), rules=RULES)
    visit = as_(demo, SYSTEM).execute(text(
        "SELECT v.at, v.distance_m FROM patrol_visit v JOIN patrol_session s ON s.id = "
        "v.session_id WHERE s.user_id = :u AND v.kind = 'building' AND v.object_id = :b"),
        {"u": worker.user_id, "b": bid}).one()
    assert visit.distance_m < 20
    assert abs(visit.at.timestamp() - t[40]) < 30


def yesterday_at(hour: int) -> datetime:
    return (datetime.now(GOVERNANCE_TZ) - timedelta(days=1)).replace(
        hour=hour, minute=0, second=0, microsecond=0)


def _one_session(worker_session, worker, demo) -> int:
    """One patrol lap of the grid, yesterday from 10:00 (Shanghai)."""
    t, lon, lat = walk_points(grid_loop(demo), start=yesterday_at(10).timestamp())
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("s", t, lon, lat))
    build_pending_sessions(as_(demo, SYSTEM), rules=RULES)
    return int(worker_session.execute(text("SELECT id FROM patrol_session WHERE user_id = :u"),
                                      {"u": worker.user_id}).scalar_one())


def _principal(demo, username: str):
    as_(demo, SYSTEM)
    return auth.principal_for(demo, demo.execute(text(
        "SELECT id FROM app_user WHERE username = :u"), {"u": username}).scalar_one())


def test_playback_is_simplified_and_audited(worker_session, worker, demo) -> None:
    sid = _one_session(worker_session, worker, demo)
    commander = _principal(demo, f"t{GRID[:9]}")
    full = patrols.playback(as_(demo, commander), actor=commander, session_id=sid)
    coarse = patrols.playback(demo, actor=commander, session_id=sid, resolution_m=20)
    props, geom = full["properties"], full["geometry"]
    assert geom["type"] == "LineString"
    assert len(props["times"]) == len(geom["coordinates"]) == props["vertices_full"]
    assert len(coarse["geometry"]["coordinates"]) < len(geom["coordinates"]) / 3
    assert coarse["properties"]["times"][0] == props["times"][0]
    assert coarse["properties"]["times"][-1] == props["times"][-1]
    audits = demo.execute(text("SELECT actor_username, detail FROM audit_log WHERE action = "
                               "'patrol.playback' AND object_id = :i"), {"i": str(sid)}).all()
    assert len(audits) == 2 and audits[0].actor_username == commander.username


def test_playback_without_permission_is_refused(worker_session, worker, demo) -> None:
    sid = _one_session(worker_session, worker, demo)
    with pytest.raises(PermissionDenied):
        patrols.playback(as_(demo, worker), actor=worker, session_id=sid)


def test_commander_of_another_township_gets_not_found(worker_session, worker, demo) -> None:
    sid = _one_session(worker_session, worker, demo)
    other = _principal(demo, f"t{OTHER_TOWNSHIP}")
    assert other.can("patrol.playback")
    as_(worker_session, other)  # RLS with the other township's scope must hide it
    for call in (lambda: patrols.playback(worker_session, actor=other, session_id=sid),
                 lambda: patrols.get_session(worker_session, actor=other, session_id=sid),
                 lambda: patrols.delete_session(worker_session, actor=other, session_id=sid)):
        with pytest.raises(NotFound):
            call()
    listed = patrols.list_sessions(worker_session, actor=other, filters=patrols.SessionFilter())
    assert sid not in [r["id"] for r in listed["items"]]


def test_records_list_delete_and_stats(worker_session, worker, demo) -> None:
    sid = _one_session(worker_session, worker, demo)
    commander = _principal(demo, f"t{GRID[:9]}")
    day = yesterday_at(10).date()
    own = {"user_id": worker.user_id, "grid_code": GRID}
    f = patrols.SessionFilter(**own, date_from=day, date_to=day)
    before = day - timedelta(days=1)
    assert patrols.list_sessions(as_(demo, commander), actor=commander, filters=patrols.
                                 SessionFilter(**own, date_from=before, date_to=before)
                                 )["total"] == 0
    listed = patrols.list_sessions(as_(demo, commander), actor=commander, filters=f)
    assert [r["id"] for r in listed["items"]] == [sid] and listed["total"] == 1
    # A worker without patrol.read sees their own records only.
    own = patrols.list_sessions(as_(demo, worker), actor=worker, filters=patrols.SessionFilter())
    assert [r["id"] for r in own["items"]] == [sid]
    with pytest.raises(PermissionDenied):
        patrols.list_sessions(worker_session, actor=worker,
                              filters=patrols.SessionFilter(user_id=worker.user_id + 1))
    stats = patrol_stats.patrol_stats(as_(demo, commander), actor=commander,
                                      region_code=GRID[:9], date_from=day)
    mine = [w for w in stats["workers_detail"] if w["user_id"] == worker.user_id]
    # The walk was yesterday: patrolled that day, but not online now.
    assert mine and mine[0]["online"] is False and mine[0]["sessions"] == 1
    assert stats["workers"] >= 2 and stats["patrolled"] >= 1
    with pytest.raises(PermissionDenied):
        patrols.delete_session(as_(demo, worker), actor=worker, session_id=sid)
    patrols.delete_session(as_(demo, commander), actor=commander, session_id=sid)
    assert patrols.list_sessions(as_(demo, commander), actor=commander, filters=f)["total"] == 0
    with pytest.raises(NotFound):
        patrols.get_session(as_(demo, commander), actor=commander, session_id=sid)
    assert count(demo, "SELECT count(*) FROM audit_log WHERE action = 'patrol.delete' "
                 "AND object_id = :i", i=str(sid)) == 1


def test_stats_count_a_day_patrolled_and_met(worker_session, worker, demo) -> None:
    # Yesterday 09:00-11:10: a long patrol, enough for a general or key grid's targets? Check
    # against the target row of the grid's type rather than assuming it.
    start = yesterday_at(9)
    loop = grid_loop(demo)
    chunks = []
    t0 = start.timestamp()
    for _ in range(7):  # seven laps of the grid
        t, lon, lat = walk_points(loop, start=t0)
        chunks.append((t, lon, lat))
        t0 = t[-1] + 5
    t, lon, lat = (np.concatenate(c) for c in zip(*chunks, strict=True))
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("day", t, lon, lat))
    build_pending_sessions(as_(demo, SYSTEM), rules=RULES)
    target = demo.execute(text("SELECT min_mileage_m, min_duration_s FROM patrol_target "
                               "JOIN region ON region.grid_type = patrol_target.grid_type "
                               "WHERE region.code = :g AND valid_to IS NULL"), {"g": GRID}).one()
    commander = _principal(demo, f"t{GRID[:9]}")
    stats = patrol_stats.patrol_stats(as_(demo, SYSTEM), actor=SYSTEM, region_code=GRID[:9],
                                      date_from=start.date())
    mine = next(w for w in stats["workers_detail"] if w["user_id"] == worker.user_id)
    assert mine["days_patrolled"] == 1 and mine["sessions"] == 1
    met = mine["mileage_m"] >= target.min_mileage_m and mine["duration_s"] >= target.min_duration_s
    assert mine["days_met"] == int(met)
    assert stats["patrolled"] >= 1 and stats["not_patrolled"] == stats["workers"] - stats[
        "patrolled"]
    assert commander is not None


def test_partition_job_creates_days_ahead(worker_session, worker, demo) -> None:
    result = maintain_partitions(as_(demo, SYSTEM), ahead_days=10, retention_days=90)
    days = demo.execute(text("SELECT * FROM gridgov_meta.gps_partition_days()")).scalars().all()
    today = datetime.now(GOVERNANCE_TZ).date()
    assert {today + timedelta(days=i) for i in range(11)} <= set(days)
    assert result["created"] >= 3  # the migration made a week ahead; the job goes further
    assert min(days) >= today - timedelta(days=90)


def _partition_exists(session, name: str, schema: str = "public") -> bool:
    return bool(session.execute(text(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :s AND c.relname = :r"), {"s": schema, "r": name}).scalar_one())


@pytest.mark.parametrize("archive", [False, True], ids=["drop", "archive"])
def test_retention_summarises_then_drops_or_archives_expired_days(worker_session, worker, demo,
                                                                  archive) -> None:
    today = datetime.now(GOVERNANCE_TZ).date()
    old, older = today - timedelta(days=100), today - timedelta(days=120)
    part = f"gps_point_p{old:%Y%m%d}"
    as_(demo, SYSTEM).execute(text("SELECT gridgov_meta.ensure_gps_partitions(:d, :d)"),
                              {"d": old})
    loop = grid_loop(demo)
    t, lon, lat = walk_points(loop, start=datetime.combine(old, dtime(9), GOVERNANCE_TZ)
                              .timestamp(), limit=80)
    lon[30:34] += 300 / (111_320 * np.cos(np.radians(lat[30])))  # an indoor jump: 4 dropped
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("old", t, lon, lat))
    # A straggler of a day with no partition waits in DEFAULT.
    t2, lon2, lat2 = walk_points(loop, start=datetime.combine(older, dtime(9), GOVERNANCE_TZ)
                                 .timestamp(), limit=5)
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("older", t2, lon2,
                                                                           lat2))
    build_pending_sessions(as_(demo, SYSTEM), rules=RULES)
    uid = worker.user_id
    assert count(demo, "SELECT count(*) FROM gps_point WHERE user_id = :u", u=uid) == 85

    result = maintain_partitions(demo, ahead_days=3, retention_days=90, archive=archive)

    retired = result["retired"]
    assert retired["partitions"] >= 1 and retired["stragglers"] >= 5
    assert retired["action"] == ("archive" if archive else "drop")
    assert old not in demo.execute(text("SELECT * FROM gridgov_meta.gps_partition_days()")
                                   ).scalars().all()
    assert not _partition_exists(demo, part)
    assert _partition_exists(demo, part, "gps_archive") is archive
    assert count(demo, "SELECT count(*) FROM gps_point WHERE user_id = :u", u=uid) == 0
    assert count(demo, "SELECT count(*) FROM gps_batch WHERE user_id = :u", u=uid) == 0
    day = demo.execute(text("SELECT * FROM gps_point_day WHERE user_id = :u AND day = :d"),
                       {"u": uid, "d": old}).one()
    assert (day.points, day.fixes, day.kept, day.jumps, day.batches) == (80, 80, 76, 4, 1)
    assert day.retired_as == ("archive" if archive else "drop")
    assert count(demo, "SELECT points FROM gps_point_day WHERE user_id = :u AND day = :d",
                 u=uid, d=older) == 5
    # The patrol record keeps its summary and cleaned track.
    rec = demo.execute(text("SELECT points_kept, ST_NPoints(track) AS n FROM patrol_session "
                            "WHERE user_id = :u AND started_at < :c"),
                       {"u": uid, "c": datetime.combine(old, dtime(23), GOVERNANCE_TZ)}).one()
    assert rec.points_kept == rec.n == 76


def test_live_positions_are_scoped_and_audited(worker_session, worker, demo) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 600, limit=100)
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("live", t, lon, lat))
    commander = _principal(demo, f"t{GRID[:9]}")
    live = patrols.live_positions(as_(demo, commander), actor=commander)
    mine = [f for f in live["features"] if f["id"] == worker.user_id]
    assert mine and mine[0]["properties"]["online"]
    assert mine[0]["geometry"]["coordinates"] == pytest.approx([lon[-1], lat[-1]])
    assert count(demo, "SELECT count(*) FROM audit_log WHERE action = 'patrol.live'") >= 1


# --- statistics over weeks and months, targets ---------------------------------------------------


def test_period_days_are_shanghai_days_iso_weeks_and_months() -> None:
    wednesday = date(2026, 11, 25)
    assert patrol_stats.period_days("day", wednesday) == (wednesday, wednesday)
    assert patrol_stats.period_days("week", wednesday) == (date(2026, 11, 23), date(2026, 11, 29))
    assert patrol_stats.period_days("week", date(2026, 11, 23))[0] == date(2026, 11, 23)
    assert patrol_stats.period_days("week", date(2026, 11, 29))[0] == date(2026, 11, 23)
    assert patrol_stats.period_days("month", date(2028, 2, 10)) == (date(2028, 2, 1),
                                                                    date(2028, 2, 29))
    today = date(2026, 11, 25)
    assert patrol_stats.resolve_period(None, None, None, None, today) == ("day", today, today)
    assert patrol_stats.resolve_period(None, None, date(2026, 11, 1), date(2026, 11, 3),
                                       today) == ("range", date(2026, 11, 1), date(2026, 11, 3))
    bad = [(("year", None, None, None), "period"),
           (("week", None, date(2026, 11, 1), None), "period"),
           ((None, date(2026, 11, 1), date(2026, 11, 1), None), "date"),
           ((None, None, date(2026, 11, 3), date(2026, 11, 1)), "date_to"),
           ((None, None, date(2026, 1, 1), date(2026, 6, 1)), "date_to"),
           (("month", date(9999, 12, 31), None, None), "date"),
           ((None, None, date(1, 1, 1), None), "date_from")]
    for args, field in bad:
        with pytest.raises(InvalidInput) as e:
            patrol_stats.resolve_period(*args, today)
        assert e.value.problems[0].field == field, args


def _quiet_week(weekday: int, hour: int) -> datetime:
    """A time on a weekday (0 = Monday) of the week before last, Shanghai.

    Not last week: the demo city's tracks cover the last two days, which on a Monday or Tuesday
    fall in last week and would add their coverage to the grid's.
    """
    today = datetime.now(GOVERNANCE_TZ).date()
    day = today - timedelta(days=today.weekday() + 14 - weekday)
    return datetime.combine(day, dtime(hour), GOVERNANCE_TZ)


def _patrol_on(demo, worker, when: datetime, part: slice, tag: str) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=when.timestamp())
    patrols.ingest_points(as_(demo, worker), actor=worker,
                          payload=payload(tag, t[part], lon[part], lat[part]))


def test_week_and_month_stats_count_worker_days_targets_and_union_coverage(
        worker_session, worker, demo) -> None:
    monday, tuesday = _quiet_week(0, 9), _quiet_week(1, 15)
    # Monday: the first 60 % of a lap; Tuesday: the rest. Coverage over the week is their union.
    n = walk_points(grid_loop(demo), start=0)[0].size
    _patrol_on(demo, worker, monday, slice(0, n * 6 // 10), "mon")
    _patrol_on(demo, worker, tuesday, slice(n * 6 // 10, n), "tue")
    build_pending_sessions(as_(demo, SYSTEM), rules=RULES)
    recs = demo.execute(text(
        "SELECT mileage_m, coverage_share, grid_cells, grid_cell_count FROM patrol_session "
        "WHERE user_id = :u ORDER BY started_at"), {"u": worker.user_id}).all()
    assert len(recs) == 2 and all(r.grid_cell_count for r in recs)
    # Targets between the two days' mileage: Monday meets them, Tuesday does not.
    grid_type = demo.execute(text("SELECT grid_type::text FROM region WHERE code = :g "
                                  "AND valid_to IS NULL"), {"g": GRID}).scalar_one()
    patrol_stats.set_target(demo, actor=SYSTEM, grid_type=grid_type, min_duration_s=0,
                            min_mileage_m=(recs[0].mileage_m + recs[1].mileage_m) / 2)

    week = patrol_stats.patrol_stats(as_(demo, SYSTEM), actor=SYSTEM, region_code=GRID[:9],
                                     period="week", day=tuesday.date())
    assert (week["period"], week["days"], week["days_counted"]) == ("week", 7, 7)
    assert week["date_from"] == monday.date().isoformat()
    mine = next(w for w in week["workers_detail"] if w["user_id"] == worker.user_id)
    assert (mine["days_patrolled"], mine["days_mileage_met"], mine["days_duration_met"],
            mine["days_met"], mine["sessions"]) == (2, 1, 2, 1, 2)
    union = set(recs[0].grid_cells) | set(recs[1].grid_cells)
    assert mine["coverage"] == pytest.approx(len(union) / recs[0].grid_cell_count, abs=1e-4)
    assert mine["coverage"] > max(r.coverage_share for r in recs) + 0.1
    assert week["worker_days"] == week["workers"] * 7
    assert week["worker_days_not_met"] == week["worker_days"] - week["worker_days_met"]
    assert [d["date"] for d in week["series"]][:2] == [monday.date().isoformat(),
                                                       tuesday.date().isoformat()]
    assert week["series"][0]["workers_met"] >= 1 and len(week["series"]) == 7
    # Choropleth-ready: every child region of the township, ours with the worker in it.
    kids = {c["code"]: c for c in week["children"]}
    assert set(kids) == set(demo.execute(text(
        "SELECT code FROM region WHERE parent_code = :c AND valid_to IS NULL"),
        {"c": GRID[:9]}).scalars())
    village = kids[GRID[:12]]
    assert village["patrolled"] >= 1 and 0 < village["coverage"] <= 1
    assert village["patrolled_rate"] == pytest.approx(village["patrolled"] / village["workers"],
                                                      abs=1e-4)
    assert sum(c["workers"] for c in kids.values()) == week["workers"]

    month = patrol_stats.patrol_stats(demo, actor=SYSTEM, region_code=GRID[:9],
                                      period="month", day=monday.date(), detail=False)
    assert month["date_from"] == monday.date().replace(day=1).isoformat()
    assert "workers_detail" not in month and month["patrolled"] >= 1
    one_day = patrol_stats.patrol_stats(demo, actor=SYSTEM, region_code=GRID,
                                        period="day", day=tuesday.date())
    me = next(w for w in one_day["workers_detail"] if w["user_id"] == worker.user_id)
    assert (me["days_patrolled"], me["days_met"]) == (1, 0)
    assert one_day["children"] == [] or all(c["workers"] == 0 for c in one_day["children"])


def test_stats_of_another_jurisdiction_are_not_found(worker_session, worker, demo) -> None:
    other = _principal(demo, f"t{OTHER_TOWNSHIP}")
    with pytest.raises(NotFound):
        patrol_stats.patrol_stats(as_(demo, other), actor=other, region_code=GRID[:9],
                                  period="week")
    with pytest.raises(PermissionDenied):
        patrol_stats.patrol_stats(as_(demo, worker), actor=worker, region_code=GRID)


def test_targets_are_set_per_grid_type_by_the_city_and_audited(worker_session, demo) -> None:
    township = _principal(demo, f"t{GRID[:9]}")
    with pytest.raises(PermissionDenied):
        patrol_stats.set_target(as_(demo, township), actor=township, grid_type="key",
                                min_mileage_m=1, min_duration_s=1)
    city = _principal(demo, "city")
    assert city.can("patrol.target")
    as_(demo, city)
    for kwargs, field in (({"grid_type": "park"}, "grid_type"),
                          ({"min_mileage_m": -1.0}, "min_mileage_m"),
                          ({"min_mileage_m": float("nan")}, "min_mileage_m"),
                          ({"min_duration_s": 90_000}, "min_duration_s")):
        args = {"grid_type": "key", "min_mileage_m": 500.0, "min_duration_s": 60, **kwargs}
        with pytest.raises(InvalidInput) as e:
            patrol_stats.set_target(demo, actor=city, **args)
        assert e.value.problems[0].field == field
    out = patrol_stats.set_target(demo, actor=city, grid_type="key", min_mileage_m=4500.0,
                                  min_duration_s=7200)
    assert (out["min_mileage_m"], out["min_duration_s"], out["updated_by"]) == (
        4500.0, 7200, city.user_id)
    listed = {t["grid_type"]: t for t in patrol_stats.list_targets(demo, actor=city)}
    assert set(listed) == {"general", "key", "dedicated"} and listed["key"]["min_duration_s"] \
        == 7200
    row = demo.execute(text("SELECT before, after FROM audit_log WHERE action = 'patrol.target' "
                            "AND object_id = 'key' ORDER BY id DESC LIMIT 1")).one()
    assert row.before["min_duration_s"] == 5400 and row.after["min_duration_s"] == 7200


def test_export_cap_and_formats(worker_session, worker, demo) -> None:
    _patrol_on(demo, worker, _quiet_week(2, 9), slice(0, None), "x1")
    _patrol_on(demo, worker, _quiet_week(3, 9), slice(0, None), "x2")
    build_pending_sessions(as_(demo, SYSTEM), rules=RULES)
    leader = _principal(demo, f"t{GRID[:9]}")
    f = patrols.SessionFilter(user_id=worker.user_id)
    small = patrols.PatrolSettings(max_export_sessions=1)
    as_(demo, leader)
    with pytest.raises(InvalidInput, match="more than 1 records"):
        patrol_export.prepare_export(demo, actor=leader, filters=f, fmt="geojson",
                                     settings=small)
    assert patrol_export.prepare_export(demo, actor=leader, filters=f, fmt="csv",
                                        settings=small) == 2
    with pytest.raises(InvalidInput) as e:
        patrol_export.prepare_export(demo, actor=leader, filters=f, fmt="kml", settings=small)
    assert e.value.problems[0].field == "format"
    with pytest.raises(PermissionDenied):
        patrol_export.prepare_export(as_(demo, worker), actor=worker, filters=f, fmt="csv",
                                     settings=small)
    rows = patrol_export.iter_records(as_(demo, leader), actor=leader, filters=f, tracks=True,
                                      limit=10)
    fc = json.loads(b"".join(patrol_export.geojson_chunks(rows, "导出 mark")))
    assert fc["watermark"] == "导出 mark" and len(fc["features"]) == 2
    for feat in fc["features"]:
        assert feat["geometry"]["type"] == "LineString"
        assert len(feat["properties"]["times"]) == len(feat["geometry"]["coordinates"])
        assert feat["properties"]["times"] == sorted(feat["properties"]["times"])


def test_the_job_lets_a_live_workers_batches_settle(worker_session, worker, demo) -> None:
    loop = grid_loop(demo)
    t, lon, lat = walk_points(loop, start=time.time() - 300, limit=40)
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("live-1", t, lon,
                                                                           lat))
    # Just received and still live: left to gather more for up to ten minutes.
    assert build_pending_sessions(as_(demo, SYSTEM), rules=RULES,
                                  settle_seconds=600).batches == 0
    # A backlog from hours ago (an offline phone) is taken at once, and with it the worker's
    # other pending batches.
    t2, lon2, lat2 = walk_points(loop, start=time.time() - 4 * 3600, limit=40)
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("old-1", t2, lon2,
                                                                           lat2))
    assert build_pending_sessions(as_(demo, SYSTEM), rules=RULES,
                                  settle_seconds=600).batches == 2
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("live-2", t + 400,
                                                                           lon, lat))
    assert build_pending_sessions(as_(demo, SYSTEM), rules=RULES,
                                  settle_seconds=600).batches == 0
    # Once settled (received long enough ago), it is built.
    demo.execute(text("UPDATE gps_batch SET received_at = now() - interval '11 minutes' "
                      "WHERE user_id = :u AND processed_at IS NULL"), {"u": worker.user_id})
    assert build_pending_sessions(as_(demo, SYSTEM), rules=RULES,
                                  settle_seconds=600).batches == 1
