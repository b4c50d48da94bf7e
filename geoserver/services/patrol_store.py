"""Writing raw patrol points: batches stored once, COPY in the caller's transaction, daily
partitions made on demand, the live position updated and announced.

The app role is subject to row-level security, and PostgreSQL refuses ``COPY FROM`` into a
table with RLS; points are therefore copied into a per-connection temporary staging table and
moved with one ``INSERT … SELECT``, which the scope policy checks. Staged rows carry their
batch id and are left for the commit to clear (``ON COMMIT DELETE ROWS``): deleting them in
the statement (``DELETE … RETURNING``) cost almost as much as inserting them into gps_point.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ
from geoserver.domain.tracks import PointKind
from geoserver.errors import NotFound
from geoserver.services.dberrors import sqlstate, translate
from geoserver.services.patrol_input import PointColumns

LIVE_CHANNEL = "gridgov_patrol_live"

# Staged in binary COPY format with fixed-width rows (NaN and 0 stand for NULL and become NULL
# on the way into gps_point): numpy writes 10,000 rows in well under a millisecond, where text
# formatting takes tens, and the server parses no text.
_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS gps_point_staged (b int8, t float8, lon float8, "
    "lat float8, h3 int8, acc float8, spd float8, hdg float8, seq int4, ev int2) "
    "ON COMMIT DELETE ROWS"
)
# Several batches in one transaction (a test, an import) each move only their own rows.
_MOVE = text(
    "INSERT INTO gps_point (ts, user_id, batch_id, lon, lat, h3_r10, accuracy, speed, heading, "
    "seq, event, path) SELECT to_timestamp(s.t), :u, s.b, nullif(s.lon, 'NaN'), "
    "nullif(s.lat, 'NaN'), nullif(s.h3, 0), nullif(s.acc, 'NaN'), nullif(s.spd, 'NaN'), "
    "nullif(s.hdg, 'NaN'), s.seq, s.ev, CAST(:p AS ltree) FROM gps_point_staged s "
    "WHERE s.b = :b"
)
_STAGE_FIELDS = (("b", ">i8"), ("t", ">f8"), ("lon", ">f8"), ("lat", ">f8"), ("h3", ">i8"),
                 ("acc", ">f8"), ("spd", ">f8"), ("hdg", ">f8"), ("seq", ">i4"), ("ev", ">i2"))
_ROW = np.dtype([("nfields", ">i2")] + [
    item for name, kind in _STAGE_FIELDS for item in ((f"{name}_len", ">i4"), (name, kind))])
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"


@dataclass(frozen=True)
class StoredBatch:
    """The outcome of storing one batch: its id, and whether it had been stored before."""

    batch_id: int | None
    client_batch_id: str
    points: int
    duplicate: bool
    first_ts: datetime | None
    last_ts: datetime | None


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, GOVERNANCE_TZ)


def copy_binary(cols: PointColumns, batch_id: int = 0) -> bytes:
    """Render points as a binary COPY stream for the staging table."""
    rows = np.zeros(len(cols), dtype=_ROW)
    rows["nfields"] = len(_STAGE_FIELDS)
    values = {"b": batch_id, "t": cols.t, "lon": cols.lon, "lat": cols.lat, "h3": cols.h3_r10,
              "acc": cols.accuracy, "spd": cols.speed, "hdg": cols.heading,
              "seq": np.arange(len(cols)), "ev": cols.kind}
    for name, kind in _STAGE_FIELDS:
        rows[f"{name}_len"] = np.dtype(kind).itemsize
        rows[name] = values[name]
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def _days(t: np.ndarray) -> set[date]:
    # Shanghai day of each time: shift by the (DST-free) +08:00 offset, floor to days.
    day0 = np.floor((t + 8 * 3600) / 86400).astype(np.int64)
    return {date(1970, 1, 1) + timedelta(days=int(d)) for d in np.unique(day0)}


def _days_to_check(t: np.ndarray, retention_days: int) -> list[date]:
    """The batch's Shanghai days that may have a partition (older ones go to DEFAULT)."""
    today = datetime.now(GOVERNANCE_TZ).date()
    oldest = today - timedelta(days=retention_days)
    return sorted(d for d in _days(t) if oldest <= d <= today + timedelta(days=1))


def _ensure_partitions(session: Session, missing: list[date] | None) -> None:
    """Create the daily partitions a batch lacks (rare: the job keeps days ahead)."""
    if missing:
        # Takes a transaction-level lock: only when a day is really missing.
        session.execute(text("SELECT gridgov_meta.ensure_gps_partitions(:a, :b)"),
                        {"a": missing[0], "b": missing[-1]})


# One round trip (a small batch is dominated by round trips): make sure this connection has its
# staging table, record the batch, and list the batch's days that lack a partition (a catalog
# lookup without locks: the usual answer is "none"). The worker's grid (first current grid
# assignment), else their home region, is where the points belong; the scope policy on
# gps_batch refuses a path outside the caller's scope.
_INSERT_BATCH = text(
    _STAGE_DDL + "; WITH ins AS (INSERT INTO gps_batch (user_id, client_batch_id, source, "
    "n_points, first_ts, last_ts, path) "
    "SELECT :u, :c, :s, :n, :f, :l, coalesce((SELECT g.path FROM staff_assignment sa "
    "JOIN region g ON g.code = sa.region_code AND g.valid_to IS NULL WHERE sa.user_id = :u "
    "AND sa.valid_to IS NULL AND g.level IN ('grid', 'micro_grid') ORDER BY sa.id LIMIT 1), "
    "(SELECT path FROM app_user WHERE id = :u)) "
    "ON CONFLICT (user_id, client_batch_id) DO NOTHING RETURNING id, path) "
    "SELECT ins.id, ins.path::text, (SELECT array_agg(d ORDER BY d) FROM "
    "unnest(CAST(:d AS date[])) AS d WHERE to_regclass('public.' || "
    "gridgov_meta.gps_partition_name(d)) IS NULL) FROM ins")


def _insert_batch(session: Session, *, user_id: int, client_batch_id: str, source: str,
                  cols: PointColumns, days: list[date]) -> tuple[int, str, list[date]] | None:
    """Record the batch; return (id, path, days lacking a partition), or None if stored before."""
    params = {"u": user_id, "c": client_batch_id, "s": source, "n": len(cols),
              "f": _dt(float(cols.t[0])), "l": _dt(float(cols.t[-1])), "d": days}
    try:
        row = session.execute(_INSERT_BATCH, params).first()
    except DBAPIError as e:
        # 23502: the worker has no location we can see; 42501: outside the caller's scope.
        if sqlstate(e) in ("23502", "42501"):
            raise NotFound("no such worker in your jurisdiction") from None
        raise translate(e) from None
    return None if row is None else (int(row[0]), str(row[1]), row[2] or [])


_LIVE = (
    "WITH moved AS (INSERT INTO patrol_live (user_id, ts, lon, lat, accuracy, path) "
    "VALUES (:u, :t, :x, :y, :a, CAST(:p AS ltree)) ON CONFLICT (user_id) DO UPDATE "
    "SET ts = EXCLUDED.ts, lon = EXCLUDED.lon, lat = EXCLUDED.lat, "
    "accuracy = EXCLUDED.accuracy, path = EXCLUDED.path, updated_at = now() "
    "WHERE patrol_live.ts < EXCLUDED.ts RETURNING user_id) "
    # NOTIFY is delivered on commit only: listeners never see a position rolled back.
    "SELECT pg_notify(:c, :m) FROM moved")
#: Moving the staged points and updating the live position go in one round trip.
_MOVE_AND_LIVE = text(_MOVE.text + "; " + _LIVE)


def _live_params(cols: PointColumns, *, user_id: int, path: str) -> dict[str, Any] | None:
    """Return the parameters moving the worker's live position to the batch's last fix (if
    newer) and announcing it; None without a fix."""
    fixes = np.flatnonzero((cols.kind == PointKind.FIX) & np.isfinite(cols.lon))
    if fixes.size == 0:
        return None
    i = int(fixes[-1])
    acc = float(cols.accuracy[i])
    when = _dt(float(cols.t[i]))
    x, y = float(cols.lon[i]), float(cols.lat[i])
    note = {"user_id": user_id, "ts": when.isoformat(), "lon": x, "lat": y, "path": path}
    return {"t": when, "x": x, "y": y, "a": None if acc != acc else acc, "c": LIVE_CHANNEL,
            "m": json.dumps(note)}


def _copy(session: Session, cols: PointColumns, *, batch_id: int, user_id: int,
          path: str) -> None:
    """COPY points into the staging table on the session's own connection, then move them
    (and the live position) in one statement round trip."""
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        cur.copy_expert("COPY gps_point_staged FROM STDIN WITH (FORMAT binary)",
                        io.BytesIO(copy_binary(cols, batch_id)))
    params = {"u": user_id, "b": batch_id, "p": path}
    live = _live_params(cols, user_id=user_id, path=path)
    if live is None:
        session.execute(_MOVE, params)
    else:
        session.execute(_MOVE_AND_LIVE, {**params, **live})


def store_points(session: Session, cols: PointColumns, *, user_id: int, client_batch_id: str,
                 source: str, retention_days: int) -> StoredBatch:
    """Store a validated batch once: a retried batch id writes nothing and says so.

    Raises:
        NotFound: the worker is outside the caller's scope or has no location.
    """
    first, last = _dt(float(cols.t[0])), _dt(float(cols.t[-1]))
    stored = _insert_batch(session, user_id=user_id, client_batch_id=client_batch_id,
                           source=source, cols=cols,
                           days=_days_to_check(cols.t, retention_days))
    if stored is None:
        return StoredBatch(None, client_batch_id, 0, True, first, last)
    batch_id, path, missing = stored
    _ensure_partitions(session, missing)
    _copy(session, cols, batch_id=batch_id, user_id=user_id, path=path)
    return StoredBatch(batch_id, client_batch_id, len(cols), False, first, last)
