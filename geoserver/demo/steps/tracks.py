"""Demo patrol tracks (巡查轨迹): the grid workers' patrols of the last two days.

Each patrol walks (or rides an e-bike) around the inside of the worker's grid and across it,
with what real phone tracks have: GPS noise, an indoor jump of a few hundred metres and back,
a stop at a household with jitter, a spell with the page hidden or without a fix, and start and
stop markers. Points are written as the phone would have sent them (batches of a quarter of an
hour, already CGCS2000), then the session builder turns them into patrol records, exactly as
the job runner does.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely
from psycopg2.extras import execute_values
from shapely.geometry import LineString, Point, Polygon

from geoserver.config import GOVERNANCE_TZ
from geoserver.demo.loader import DemoContext
from geoserver.domain.tracks import PointKind
from geoserver.geo.crs import from_metric, to_metric
from geoserver.geo.h3cells import cells_for_points

#: Grid workers given tracks per scale (the city has ~10,000 grids: a sample is enough to see).
WORKERS = {"tiny": 10_000, "demo": 400, "city": 1_000}
DAYS = 2
EVERY_S = 5.0
BATCH_S = 15 * 60


@dataclass
class _Patrol:
    """One generated patrol: rows in time order (times, metric x/y, accuracy, kind)."""

    t: list[float]
    x: list[float]
    y: list[float]
    acc: list[float]
    kind: list[int]

    def add(self, t: float, x: float, y: float, acc: float, kind: int = PointKind.FIX) -> None:
        """Append one row."""
        self.t.append(t)
        self.x.append(x)
        self.y.append(y)
        self.acc.append(acc)
        self.kind.append(kind)


def _route(area: Polygon, rng: np.random.Generator) -> LineString:
    """A loop just inside the grid's edge with a few crossings, in metres."""
    inner = area.buffer(-15)
    if inner.is_empty:
        inner = area
    if inner.geom_type == "MultiPolygon":
        inner = max(inner.geoms, key=lambda p: p.area)
    ring = list(inner.exterior.coords)
    start = int(rng.integers(0, len(ring) - 1))
    ring = ring[start:-1] + ring[:start + 1]
    west, south, east, north = inner.bounds
    crossings: list[tuple[float, float]] = []
    while len(crossings) < 3:
        p = Point(rng.uniform(west, east), rng.uniform(south, north))
        if inner.contains(p):
            crossings.append((p.x, p.y))
    return LineString(ring + crossings + [ring[0]])


def _walk(p: _Patrol, route: LineString, t0: float, seconds: float, speed: float,
          rng: np.random.Generator) -> float:
    """Move along the route (repeating it) for some seconds with GPS noise; return the time."""
    n = int(seconds / EVERY_S)
    d = (np.arange(n) * speed * EVERY_S + rng.uniform(0, route.length)) % route.length
    pts = shapely.line_interpolate_point(route, d)
    xy = shapely.get_coordinates(pts) + rng.normal(0, 4.0, (n, 2))
    for i in range(n):
        p.add(t0 + i * EVERY_S, xy[i, 0], xy[i, 1], float(rng.uniform(5, 20)))
    return t0 + n * EVERY_S


def _stop(p: _Patrol, t0: float, rng: np.random.Generator) -> float:
    """Stand at a household for a few minutes: jitter around the last fix."""
    x, y = p.x[-1], p.y[-1]
    n = int(rng.uniform(180, 480) / EVERY_S)
    for i in range(n):
        p.add(t0 + i * EVERY_S, x + rng.normal(0, 4), y + rng.normal(0, 4),
              float(rng.uniform(8, 25)))
    return t0 + n * EVERY_S


def _jump(p: _Patrol, t0: float, rng: np.random.Generator) -> float:
    """Indoors: a few fixes hundreds of metres off (Wi-Fi positioning), then back."""
    angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(150, 400)
    x, y = p.x[-1] + dist * np.cos(angle), p.y[-1] + dist * np.sin(angle)
    n = int(rng.integers(3, 6))
    for i in range(n):
        p.add(t0 + i * EVERY_S, x + rng.normal(0, 10), y + rng.normal(0, 10),
              float(rng.uniform(20, 45)))
    return t0 + n * EVERY_S


def _silence(p: _Patrol, t0: float, rng: np.random.Generator) -> float:
    """The page hidden for a few minutes, or no fix in an underpass (heartbeats only)."""
    seconds = rng.uniform(180, 360)
    if rng.random() < 0.5:
        p.add(t0, np.nan, np.nan, np.nan, PointKind.HIDDEN)
    else:
        for s in np.arange(0, seconds, 30.0):
            p.add(t0 + s, np.nan, np.nan, np.nan, PointKind.NO_FIX)
    return t0 + seconds


def patrol(area: Polygon, start: float, rng: np.random.Generator) -> _Patrol:
    """Generate one patrol of 60–100 minutes in a grid (metric polygon)."""
    p = _Patrol([], [], [], [], [])
    route = _route(area, rng)
    speed = float(rng.uniform(4.0, 6.0) if rng.random() < 0.3 else rng.uniform(1.1, 1.5))
    p.add(start, np.nan, np.nan, np.nan, PointKind.START)
    t = start + 1
    events = [_stop, _jump, _silence]
    rng.shuffle(events)  # type: ignore[arg-type]
    for event in events:
        t = _walk(p, route, t, rng.uniform(900, 1500), speed, rng)
        if event is not _silence or rng.random() < 0.6:
            t = event(p, t, rng)
    t = _walk(p, route, t, rng.uniform(600, 900), speed, rng)
    p.add(t, np.nan, np.nan, np.nan, PointKind.STOP)
    return p


def _workers(cur: Any, ctx: DemoContext) -> list[tuple[int, str, str]]:
    """(user id, grid code, grid path) of the grid workers to give tracks, sampled by scale."""
    cur.execute("SELECT u.id, sa.region_code FROM app_user u JOIN staff_assignment sa "
                "ON sa.user_id = u.id WHERE sa.position = 'grid_worker' ORDER BY u.id")
    rows = cur.fetchall()
    cap = WORKERS.get(ctx.scale, 200)
    if len(rows) > cap:
        keep = ctx.rng(71).choice(len(rows), size=cap, replace=False)
        rows = [rows[i] for i in sorted(keep)]
    return [(uid, code, ctx.paths[code]) for uid, code in rows if code in ctx.paths]


def _rows(p: _Patrol) -> dict[str, np.ndarray]:
    """Columns of a patrol in storage lon/lat with H3 cells."""
    x, y = np.asarray(p.x), np.asarray(p.y)
    has = np.isfinite(x)
    lon, lat = np.full(x.size, np.nan), np.full(x.size, np.nan)
    if has.any():
        ll = shapely.get_coordinates(from_metric(shapely.MultiPoint(np.column_stack(
            [x[has], y[has]]))))
        lon[has], lat[has] = ll[:, 0], ll[:, 1]
    h3 = np.zeros(x.size, np.int64)
    h3[has] = cells_for_points(lon[has], lat[has], 10)
    return {"t": np.asarray(p.t), "lon": lon, "lat": lat, "acc": np.asarray(p.acc),
            "kind": np.asarray(p.kind, np.int64), "h3": h3}


def _text(values: np.ndarray) -> list[str]:
    """Render a float column for COPY (\\N for NaN)."""
    return ["\\N" if v != v else repr(v) for v in values.tolist()]


def _write(cur: Any, user_id: int, path: str, rows: dict[str, np.ndarray], tag: str) -> int:
    """Write a patrol as quarter-hour batches (rows and their points); return points."""
    t = rows["t"]
    cut = np.floor((t - t[0]) / BATCH_S).astype(np.int64)
    parts = np.unique(cut)
    firsts = np.searchsorted(cut, parts)
    lasts = np.searchsorted(cut, parts, side="right") - 1
    ids = execute_values(
        cur, "INSERT INTO gps_batch (user_id, client_batch_id, source, n_points, first_ts, "
             "last_ts, path) VALUES %s RETURNING id",
        [(user_id, f"demo-{tag}-{b}", "phone", int(z - a + 1),
          datetime.fromtimestamp(t[a], GOVERNANCE_TZ), datetime.fromtimestamp(t[z], GOVERNANCE_TZ),
          path) for b, a, z in zip(parts.tolist(), firsts.tolist(), lasts.tolist(), strict=True)],
        fetch=True)
    batch = np.asarray([i for (i,) in ids], np.int64)[np.searchsorted(parts, cut)]
    seq = np.arange(t.size) - firsts[np.searchsorted(parts, cut)]
    stamps = np.datetime_as_string((t * 1e6).astype("datetime64[us]"), unit="us")
    h3 = [str(c) if c else "\\N" for c in rows["h3"].tolist()]
    columns = [[f"{s}+00" for s in stamps.tolist()], [str(user_id)] * t.size,
               list(map(str, batch.tolist())), _text(rows["lon"]), _text(rows["lat"]), h3,
               _text(rows["acc"]), list(map(str, seq.tolist())),
               list(map(str, rows["kind"].tolist())), [path] * t.size]
    buf = io.StringIO("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n")
    cur.copy_expert("COPY gps_point (ts, user_id, batch_id, lon, lat, h3_r10, accuracy, seq, "
                    "event, path) FROM STDIN", buf)
    return int(t.size)


class _Row(tuple):  # type: ignore[type-arg]
    """A result row with attribute access by column name."""

    names: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self[type(self).names[name]]
        except KeyError:
            raise AttributeError(name) from None


class _Result:
    """The part of a SQLAlchemy result the session builder uses."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def all(self) -> list[Any]:
        return self.rows

    def first(self) -> Any:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalar_one(self) -> Any:
        if len(self.rows) != 1:
            raise LookupError(f"expected one row, got {len(self.rows)}")
        return self.rows[0][0]

    def scalars(self) -> list[Any]:
        return [r[0] for r in self.rows]

    def __iter__(self) -> Any:
        return iter(self.rows)


class _LoaderSession:
    """Runs the session builder's SQL on the loader's psycopg2 connection.

    A SQLAlchemy engine cannot borrow it: its first connect rolls the connection back, which
    would undo the whole load. The builder only calls ``execute``, so this is all it needs.
    """

    def __init__(self, conn: Any) -> None:
        from sqlalchemy.dialects import postgresql

        self.conn = conn
        self.dialect = postgresql.psycopg2.dialect()  # type: ignore[attr-defined]

    def execute(self, stmt: Any, params: Any = None) -> _Result:
        """Execute a text() statement with named parameters (a list: executemany)."""
        sql = str(stmt.compile(dialect=self.dialect))
        with self.conn.cursor() as cur:
            if isinstance(params, list):
                cur.executemany(sql, params)
                return _Result([])
            cur.execute(sql, params or {})
            if cur.description is None:
                return _Result([])
            row = type("Row", (_Row,), {"names": {
                d.name: i for i, d in reversed(list(enumerate(cur.description)))}})
            return _Result([row(r) for r in cur.fetchall()])


def _build_sessions(conn: Any) -> int:
    """Run the session builder on this (uncommitted) connection, as the job would."""
    from geoserver.services.patrol_sessions import build_pending_sessions
    from geoserver.services.patrols import DEFAULT_SETTINGS

    session = _LoaderSession(conn)
    written = 0
    while True:
        report = build_pending_sessions(session, rules=DEFAULT_SETTINGS.rules())  # type: ignore[arg-type]
        written += report.sessions_written
        if report.batches == 0:
            return written


def _live(cur: Any) -> None:
    """Every tracked worker's last fix as their (offline) live position."""
    cur.execute(
        "INSERT INTO patrol_live (user_id, ts, lon, lat, accuracy, path) "
        "SELECT DISTINCT ON (user_id) user_id, ts, lon, lat, accuracy, path FROM gps_point "
        "WHERE event = 0 AND dropped_reason IS NULL AND lon IS NOT NULL "
        "ORDER BY user_id, ts DESC ON CONFLICT (user_id) DO NOTHING")


def load(conn: Any, ctx: DemoContext) -> dict[str, int]:
    """Generate two days of patrols for the grid workers and build their records."""
    grids = {r.code: r for r in ctx.regions if r.level == "grid"}
    today = datetime.now(GOVERNANCE_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    points = patrols = 0
    with conn.cursor() as cur:
        workers = [w for w in _workers(cur, ctx) if w[1] in grids]
        cur.execute("SELECT gridgov_meta.ensure_gps_partitions(%s, %s)",
                    ((today - timedelta(days=DAYS)).date(), today.date()))
        for n, (uid, code, path) in enumerate(workers):
            rng = np.random.default_rng([ctx.seed, 72, int(code)])
            area = to_metric(max(grids[code].geom.geoms, key=lambda g: g.area))
            for day in range(DAYS, 0, -1):
                start = today - timedelta(days=day, hours=-8, minutes=-int(rng.integers(0, 180)))
                p = patrol(area, start.timestamp(), rng)
                points += _write(cur, uid, path, _rows(p), f"{uid}-{start:%Y%m%d}")
                patrols += 1
            ctx.progress("tracks", n + 1, len(workers))
        sessions = _build_sessions(conn)
        _live(cur)
    return {"gps_point": points, "patrol": patrols, "patrol_session": sessions}
