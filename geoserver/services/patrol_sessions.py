"""Building patrol sessions (巡查记录) from raw points, incrementally, for the job runner.

Each run takes the batches not yet processed, and for each worker re-cleans the time window
they touch, widened to the sessions already built there and by the session gap on each side,
so a late batch (a phone offline for hours) merges into the right patrol. Sessions keep their
id when rebuilt; soft-deleted ones are left alone and nothing is rebuilt over them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ
from geoserver.domain.tracks import (
    Cleaned,
    Gap,
    GridArea,
    Places,
    SessionMetrics,
    Stream,
    TrackRules,
    clean,
    find_gaps,
    measure_session,
    split_sessions,
)


@dataclass(frozen=True)
class BuildReport:
    """What one run of the session builder did."""

    batches: int = 0
    workers: int = 0
    sessions_written: int = 0
    sessions_removed: int = 0
    points_marked: int = 0


@dataclass(frozen=True)
class _Grid:
    region_id: int | None
    grid_code: str | None
    area: GridArea | None


@dataclass(frozen=True)
class _Built:
    rows: np.ndarray
    metrics: SessionMetrics
    gaps: list[Gap]


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, GOVERNANCE_TZ)


# --- loading -------------------------------------------------------------------------------------


# A worker's pending batches are taken together once one of them has settled (received
# settle seconds ago), is not live data (ends before the session gap: an offline phone's
# backlog) or is a file; until then a phone uploading every minute keeps adding to them, and
# its open patrol is rebuilt once per settle period rather than once a minute.
_PENDING = text(
    "SELECT id, user_id, first_ts, last_ts FROM gps_batch WHERE processed_at IS NULL "
    "AND n_points > 0 AND user_id IN (SELECT user_id FROM gps_batch WHERE processed_at IS NULL "
    "AND n_points > 0 AND (received_at <= now() - make_interval(secs => :settle) "
    "OR last_ts < now() - make_interval(secs => :gap) OR source <> 'phone')) "
    "ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED")


def _pending(session: Session, limit: int, settle_seconds: float, gap_seconds: float
             ) -> list[Any]:
    # SKIP LOCKED: a second builder (or a slow previous run) never processes a batch twice.
    return list(session.execute(_PENDING, {"n": limit, "settle": settle_seconds,
                                           "gap": gap_seconds}).all())


def _window(session: Session, user_id: int, lo: datetime,
            hi: datetime) -> tuple[datetime, datetime]:
    """Widen [lo, hi] to cover every live session it touches."""
    row = session.execute(
        text("SELECT min(started_at), max(ended_at) FROM patrol_session WHERE user_id = :u "
             "AND deleted_at IS NULL AND started_at <= :hi AND ended_at >= :lo"),
        {"u": user_id, "lo": lo, "hi": hi}).first()
    if row is None or row[0] is None:
        return lo, hi
    return min(lo, row[0]), max(hi, row[1])


def _load_points(session: Session, user_id: int, lo: datetime, hi: datetime) -> dict[str, Any]:
    rows = session.execute(
        text("SELECT extract(epoch FROM ts)::float8, lon, lat, accuracy, event, "
             "coalesce(dropped_reason, 0), batch_id, seq, path::text FROM gps_point "
             "WHERE user_id = :u AND ts BETWEEN :lo AND :hi ORDER BY ts, batch_id, seq"),
        {"u": user_id, "lo": lo, "hi": hi}).all()
    if not rows:
        return {"n": 0}
    t, lon, lat, acc, ev, reason, batch, seq, path = zip(*rows, strict=True)
    f = np.float64

    def arr(v: tuple[Any, ...]) -> np.ndarray:
        return np.array([np.nan if x is None else x for x in v], dtype=f)

    return {"n": len(rows), "stream": Stream.of(np.asarray(t, f), arr(lon), arr(lat), arr(acc),
                                                np.asarray(ev, np.int64)),
            "reason": np.asarray(reason, np.int64), "batch": np.asarray(batch, np.int64),
            "seq": np.asarray(seq, np.int64), "path": path}


def _grid(session: Session, path: str, cache: dict[str, _Grid]) -> _Grid:
    """Return the worker's grid (outline, H3 cells, key places and buildings), cached."""
    if path in cache:
        return cache[path]
    row = session.execute(
        text("SELECT id, code, level::text, ST_AsBinary(geom) FROM region "
             "WHERE path = CAST(:p AS ltree) AND valid_to IS NULL"), {"p": path}).first()
    if row is None or row[2] not in ("grid", "micro_grid"):
        cache[path] = _Grid(row[0] if row else None, None, None)
        return cache[path]
    places = session.execute(
        text("SELECT 'key_place', k.id, ST_X(p), ST_Y(p) FROM region r, key_place k, "
             "LATERAL ST_PointOnSurface(k.geom) p WHERE r.id = :r AND k.geom && r.geom "
             "AND ST_Intersects(r.geom, p) UNION ALL "
             "SELECT 'building', b.id, ST_X(b.centroid), ST_Y(b.centroid) FROM region r, "
             "building b WHERE r.id = :r AND b.centroid && r.geom "
             "AND ST_Intersects(r.geom, b.centroid)"), {"r": row[0]}).all()
    kinds, ids, xs, ys = zip(*places, strict=True) if places else ((), (), (), ())
    area = GridArea.of(shapely.from_wkb(bytes(row[3])),
                       Places(tuple(kinds), np.asarray(ids, np.int64),
                              np.asarray(xs, np.float64), np.asarray(ys, np.float64)))
    cache[path] = _Grid(row[0], row[1], area)
    return cache[path]


# --- writing -------------------------------------------------------------------------------------


def _mark_dropped(session: Session, user_id: int, pts: dict[str, Any], cleaned: Cleaned,
                  lo: datetime, hi: datetime) -> int:
    """Store the drop reason of every point whose reason changed."""
    changed = np.flatnonzero(cleaned.reasons.astype(np.int64) != pts["reason"])
    if changed.size == 0:
        return 0
    session.execute(
        text("UPDATE gps_point p SET dropped_reason = nullif(v.r, 0) FROM unnest("
             "CAST(:b AS bigint[]), CAST(:s AS integer[]), CAST(:r AS smallint[])) AS v(b, s, r) "
             "WHERE p.user_id = :u AND p.ts BETWEEN :lo AND :hi AND p.batch_id = v.b "
             "AND p.seq = v.s"),
        {"u": user_id, "lo": lo, "hi": hi, "b": pts["batch"][changed].tolist(),
         "s": pts["seq"][changed].tolist(), "r": cleaned.reasons[changed].tolist()})
    return int(changed.size)


def _gaps_json(gaps: list[Gap]) -> str:
    return json.dumps([{"start": _dt(g.start).isoformat(), "end": _dt(g.end).isoformat(),
                        "seconds": round(g.seconds), "cause": str(g.cause)} for g in gaps])


def _session_params(user_id: int, path: str, grid: _Grid, built: _Built, stream: Stream,
                    cleaned: Cleaned, n_raw: int, state: str) -> dict[str, Any]:
    m, rows = built.metrics, built.rows
    line = LineString(np.column_stack([stream.lon[rows], stream.lat[rows]]))
    return {
        "u": user_id, "g": grid.grid_code, "r": grid.region_id, "p": path,
        "s": _dt(m.started_at), "e": _dt(m.ended_at), "d": round(m.duration_s),
        "m": m.mileage_m, "ts": m.in_grid_time_share, "ls": m.in_grid_length_share,
        "c": m.coverage_share, "cv": m.cells_visited, "pr": n_raw, "pk": int(rows.size),
        "mode": str(cleaned.mode_of(rows)), "wkb": shapely.to_wkb(line),
        "times": stream.t[rows].tolist(), "gaps": _gaps_json(built.gaps), "state": state,
        "cells": list(m.grid_cells) if m.grid_cell_count is not None else None,
        "ncells": m.grid_cell_count,
    }


#: (column, value expression) of a session row, shared by INSERT and UPDATE.
_SESSION_COLUMNS = (
    ("user_id", ":u"), ("grid_code", ":g"), ("region_id", ":r"), ("path", "CAST(:p AS ltree)"),
    ("started_at", ":s"), ("ended_at", ":e"), ("duration_s", ":d"), ("mileage_m", ":m"),
    ("in_grid_time_share", ":ts"), ("in_grid_length_share", ":ls"), ("coverage_share", ":c"),
    ("cells_visited", ":cv"), ("points_raw", ":pr"), ("points_kept", ":pk"), ("mode", ":mode"),
    ("track", "ST_GeomFromWKB(:wkb, 4490)"), ("times", "CAST(:times AS float8[])"),
    ("gaps", "CAST(:gaps AS jsonb)"), ("state", ":state"),
    ("grid_cells", "CAST(:cells AS bigint[])"), ("grid_cell_count", ":ncells"),
)
_UPDATE_SESSION = text(
    "UPDATE patrol_session SET " + ", ".join(f"{c} = {v}" for c, v in _SESSION_COLUMNS)
    + ", updated_at = now(), version = version + 1 WHERE id = :id")
_INSERT_SESSION = text(
    "INSERT INTO patrol_session (" + ", ".join(c for c, _ in _SESSION_COLUMNS) + ") VALUES ("
    + ", ".join(v for _, v in _SESSION_COLUMNS) + ") RETURNING id")


def _write_session(session: Session, existing_id: int | None, params: dict[str, Any]) -> int:
    if existing_id is None:
        return int(session.execute(_INSERT_SESSION, params).scalar_one())
    session.execute(_UPDATE_SESSION, {**params, "id": existing_id})
    session.execute(text("DELETE FROM patrol_visit WHERE session_id = :id"), {"id": existing_id})
    return existing_id


def _write_visits(session: Session, session_id: int, metrics: SessionMetrics, path: str) -> None:
    if not metrics.visits:
        return
    v = metrics.visits
    # One statement for all visits (an executemany would be one round trip per visit).
    session.execute(
        text("INSERT INTO patrol_visit (session_id, kind, object_id, at, distance_m, path) "
             "SELECT :sid, k, o, to_timestamp(a), d, CAST(:p AS ltree) FROM unnest("
             "CAST(:k AS text[]), CAST(:o AS bigint[]), CAST(:a AS float8[]), "
             "CAST(:d AS float8[])) AS x(k, o, a, d)"),
        {"sid": session_id, "p": path, "k": [x.kind for x in v], "o": [x.object_id for x in v],
         "a": [x.at for x in v], "d": [x.distance_m for x in v]})


def _existing(session: Session, user_id: int, lo: datetime, hi: datetime) -> list[Any]:
    return list(session.execute(
        text("SELECT id, extract(epoch FROM started_at)::float8 AS s, "
             "extract(epoch FROM ended_at)::float8 AS e, deleted_at IS NOT NULL AS deleted "
             "FROM patrol_session WHERE user_id = :u AND started_at <= :hi AND ended_at >= :lo"),
        {"u": user_id, "lo": lo, "hi": hi}).all())


def _match(built: _Built, existing: list[Any]) -> Any | None:
    """Return the existing session overlapping a built one the most."""
    s, e = built.metrics.started_at, built.metrics.ended_at
    best, overlap = None, -1.0
    for row in existing:
        o = min(e, row.e) - max(s, row.s)
        if o >= 0 and o > overlap:
            best, overlap = row, o
    return best


# --- one worker ----------------------------------------------------------------------------------


def _build(stream: Stream, cleaned: Cleaned, grid_of: Any, rules: TrackRules) -> list[_Built]:
    gaps = find_gaps(stream, cleaned, rules)
    out = []
    for rows in split_sessions(stream, cleaned, rules):
        t, lon, lat = stream.t[rows], stream.lon[rows], stream.lat[rows]
        metrics = measure_session(t, lon, lat, grid_of(rows).area, rules)
        out.append(_Built(rows, metrics, [g for g in gaps if t[0] <= g.start < t[-1]]))
    return out


def rebuild_worker(session: Session, *, user_id: int, lo: datetime, hi: datetime,
                   rules: TrackRules, grids: dict[str, _Grid] | None = None,
                   now: datetime | None = None) -> tuple[int, int, int]:
    """Re-clean one worker's points in [lo, hi] (widened) and rewrite the sessions there.

    Returns (sessions written, sessions removed, points whose drop reason changed).
    """
    gap = timedelta(seconds=rules.session_gap_seconds)
    lo, hi = _window(session, user_id, lo - gap, hi + gap)
    pts = _load_points(session, user_id, lo, hi)
    existing = _existing(session, user_id, lo, hi)
    if pts["n"] == 0:
        return 0, 0, 0
    stream: Stream = pts["stream"]
    cleaned = clean(stream, rules)
    marked = _mark_dropped(session, user_id, pts, cleaned, lo, hi)
    cache = grids if grids is not None else {}
    built = _build(stream, cleaned, lambda rows: _grid(session, pts["path"][rows[-1]], cache),
                   rules)
    now_t = (now or datetime.now(GOVERNANCE_TZ)).timestamp()
    deleted = [r for r in existing if r.deleted]
    live = [r for r in existing if not r.deleted]
    written = 0
    for b in built:
        if _match(b, deleted) is not None:
            continue  # a deleted record stays deleted, even when late points arrive
        target = _match(b, live)
        if target is not None:
            live.remove(target)
        path = pts["path"][b.rows[-1]]
        state = "open" if now_t - b.metrics.ended_at < rules.session_gap_seconds else "closed"
        params = _session_params(user_id, path, _grid(session, path, cache), b, stream,
                                 cleaned, _raw_count(stream, b.rows), state)
        sid = _write_session(session, target.id if target is not None else None, params)
        _write_visits(session, sid, b.metrics, path)
        written += 1
    if live:  # superseded by the rebuild (merged into a neighbour, or too short now)
        session.execute(text("DELETE FROM patrol_session WHERE id = ANY(:ids)"),
                        {"ids": [r.id for r in live]})
    return written, len(live), marked


def _raw_count(stream: Stream, rows: np.ndarray) -> int:
    """Count every raw row between a session's first and last kept fix."""
    return int(np.searchsorted(stream.t, stream.t[rows[-1]], side="right")
               - np.searchsorted(stream.t, stream.t[rows[0]], side="left"))


# --- the job -------------------------------------------------------------------------------------


def build_pending_sessions(session: Session, *, rules: TrackRules, max_batches: int = 5000,
                           settle_seconds: float = 0.0,
                           grids: dict[str, Any] | None = None) -> BuildReport:
    """Process unprocessed batches: rebuild their workers' sessions, mark the batches done,
    and close open sessions whose worker has been silent longer than the session gap.

    ``settle_seconds`` leaves a live worker's batches to gather until one of them is that old
    (the job's debounce; 0 takes everything). ``grids`` caches grid outlines, cells and places
    across calls (the caller decides how long they stay fresh).
    """
    batches = _pending(session, max_batches, settle_seconds, rules.session_gap_seconds)
    by_user: dict[int, list[Any]] = defaultdict(list)
    for b in batches:
        by_user[b.user_id].append(b)
    grids = {} if grids is None else grids
    written = removed = marked = 0
    for user_id, rows in by_user.items():
        w, r, m = rebuild_worker(session, user_id=user_id, lo=min(b.first_ts for b in rows),
                                 hi=max(b.last_ts for b in rows), rules=rules, grids=grids)
        written, removed, marked = written + w, removed + r, marked + m
    if batches:
        session.execute(text("UPDATE gps_batch SET processed_at = now() WHERE id = ANY(:ids)"),
                        {"ids": [b.id for b in batches]})
    session.execute(
        text("UPDATE patrol_session SET state = 'closed', updated_at = now() "
             "WHERE state = 'open' AND ended_at < now() - make_interval(secs => :g)"),
        {"g": rules.session_gap_seconds})
    return BuildReport(len(batches), len(by_user), written, removed, marked)


def maintain_partitions(session: Session, *, ahead_days: int, retention_days: int,
                        archive: bool = False) -> dict[str, Any]:
    """Create raw-point partitions ahead (and for stragglers in DEFAULT); retire expired days.

    Retiring summarises each expired day's raw points per worker into ``gps_point_day``, then
    drops its partition, or with ``archive`` moves it into the ``gps_archive`` schema.
    """
    today = datetime.now(GOVERNANCE_TZ).date()
    first = today - timedelta(days=retention_days)
    ensure = text("SELECT gridgov_meta.ensure_gps_partitions(:a, :b)")
    created = session.execute(ensure, {"a": today - timedelta(days=1),
                                       "b": today + timedelta(days=ahead_days)}).scalar_one()
    # Stragglers in DEFAULT from days within retention move into partitions of their own.
    for day in session.execute(text("SELECT * FROM gridgov_meta.gps_default_days()")).scalars():
        if first <= day < today - timedelta(days=1):
            created += session.execute(ensure, {"a": day, "b": day}).scalar_one()
    retired = session.execute(text("SELECT gridgov_meta.retire_gps_partitions(:d, :a)"),
                              {"d": first, "a": archive}).scalar_one()
    return {"created": int(created), "retired": retired}
