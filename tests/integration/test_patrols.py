"""Patrol ingest, partitions, session building, records, playback, stats and scope, on the tiny
demo city (services against real PostGIS, rolled back after each test)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, Polygon
from sqlalchemy import text

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.engine import set_scope
from geoserver.domain.principal import SYSTEM
from geoserver.errors import InvalidInput, NotFound, PermissionDenied, TooLarge
from geoserver.geo.crs import from_metric, to_metric, wgs84_to_gcj02
from geoserver.services import auth, patrols, users
from geoserver.services.patrol_sessions import build_pending_sessions, maintain_partitions

GRID = "330302006044001"  # 鼓楼社区第1网格, 五马街道
OTHER_TOWNSHIP = "330302024"  # 滨江街道
RULES = patrols.DEFAULT_SETTINGS.rules()


def grid_loop(session, code: str = GRID, inset: float = 20.0) -> LineString:
    """A walking loop just inside a grid's boundary (lon/lat)."""
    wkb = session.execute(text("SELECT ST_AsBinary(geom) FROM region WHERE code = :c "
                               "AND valid_to IS NULL"), {"c": code}).scalar()
    poly = to_metric(shapely.from_wkb(bytes(wkb))).buffer(-inset)
    if poly.geom_type == "MultiPolygon":
        poly = max(poly.geoms, key=lambda p: p.area)
    assert isinstance(poly, Polygon)
    return from_metric(LineString(poly.exterior.coords))


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
    out = patrols.export_sessions(as_(demo, leader), actor=leader,
                                  filters=patrols.SessionFilter(user_id=worker.user_id),
                                  fmt="gpx")
    root = ET.fromstring(out.content)
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
    stats = patrols.patrol_stats(as_(demo, commander), actor=commander, region_code=GRID[:9],
                                 date_from=day)
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
    stats = patrols.patrol_stats(as_(demo, SYSTEM), actor=SYSTEM, region_code=GRID[:9],
                                 date_from=start.date())
    mine = next(w for w in stats["workers_detail"] if w["user_id"] == worker.user_id)
    assert mine["days_patrolled"] == 1 and mine["sessions"] == 1
    met = mine["mileage_m"] >= target.min_mileage_m and mine["duration_s"] >= target.min_duration_s
    assert mine["days_met"] == int(met)
    assert stats["patrolled"] >= 1 and stats["not_patrolled"] == stats["workers"] - stats[
        "patrolled"]
    assert commander is not None


def test_partition_job_moves_stragglers_and_drops_expired_days(worker_session, worker, demo,
                                                               owner_engine) -> None:
    result = maintain_partitions(as_(demo, SYSTEM), ahead_days=3, retention_days=90)
    days = demo.execute(text("SELECT * FROM gridgov_meta.gps_partition_days()")).scalars().all()
    today = datetime.now(GOVERNANCE_TZ).date()
    assert today + timedelta(days=3) in days
    assert min(days) >= today - timedelta(days=90)
    assert result["created"] >= 0


def test_live_positions_are_scoped_and_audited(worker_session, worker, demo) -> None:
    t, lon, lat = walk_points(grid_loop(demo), start=time.time() - 600, limit=100)
    patrols.ingest_points(as_(demo, worker), actor=worker, payload=payload("live", t, lon, lat))
    commander = _principal(demo, f"t{GRID[:9]}")
    live = patrols.live_positions(as_(demo, commander), actor=commander)
    mine = [f for f in live["features"] if f["id"] == worker.user_id]
    assert mine and mine[0]["properties"]["online"]
    assert mine[0]["geometry"]["coordinates"] == pytest.approx([lon[-1], lat[-1]])
    assert count(demo, "SELECT count(*) FROM audit_log WHERE action = 'patrol.live'") >= 1
