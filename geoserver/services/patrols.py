"""Patrols (网格巡查): ingest GPS points, patrol records (巡查记录), playback (轨迹回放), live
positions and statistics (网格巡查统计).

Tracks are sensitive personal information (行踪轨迹, PIPL art. 28): playback, live views and
exports are audited. Ingest is not audited per batch: ``gps_batch`` records who sent what and
when, and an audit row per phone batch would outgrow the audit log at city scale.
"""

from __future__ import annotations

import hashlib
import time
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ, PatrolSettings
from geoserver.domain.principal import Principal
from geoserver.domain.tracks import simplify
from geoserver.errors import InvalidInput, NotFound, PermissionDenied
from geoserver.geo.crs import from_storage
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.patrol_input import (
    PointColumns,
    parse_csv,
    parse_gpx,
    parse_point_batch,
    read_batch_id,
    read_crs,
)
from geoserver.services.patrol_store import StoredBatch, store_points

#: Settings from the environment, for callers that were given none (scripts, the demo).
DEFAULT_SETTINGS = PatrolSettings()


def require(actor: Principal, permission: str) -> None:
    """Raise PermissionDenied unless the actor holds the permission."""
    if not actor.can(permission):
        raise PermissionDenied(f"this needs the permission {permission!r}")


# --- ingest --------------------------------------------------------------------------------------


def _target(actor: Principal, user_id: int | None) -> int:
    """Return whose points these are: the actor's own, or (patrol.manage) a worker's."""
    if user_id is None or user_id == actor.user_id:
        require(actor, "patrol.report")
        if actor.user_id is None:
            raise PermissionDenied("points belong to a user account")
        return actor.user_id
    require(actor, "patrol.manage")
    return user_id


def _store(session: Session, actor: Principal, user_id: int | None, cols: PointColumns,
           client_batch_id: str, source: str, settings: PatrolSettings) -> StoredBatch:
    # The worker's grid path is looked up by the INSERT itself, and the scope policy checks it.
    return store_points(session, cols, user_id=_target(actor, user_id),
                        client_batch_id=client_batch_id, source=source,
                        retention_days=settings.retention_days)


def ingest_points(session: Session, *, actor: Principal, payload: Any,
                  settings: PatrolSettings = DEFAULT_SETTINGS,
                  now: float | None = None) -> StoredBatch:
    """Store a phone's JSON batch of points once (a retried batch id writes nothing).

    ``payload`` is the raw JSON body (decoded here, off the event loop) or a decoded object.

    Raises:
        InvalidInput: naming the first bad field (``points[3].lat``, ``crs`` …).
        TooLarge: more points than a batch may hold.
    """
    require(actor, "patrol.report")
    batch = parse_point_batch(payload, limits=settings.limits(), now=now or time.time())
    return _store(session, actor, None, batch.points, batch.client_batch_id, "phone", settings)


def ingest_file(session: Session, *, actor: Principal, data: bytes, kind: str, crs: str | None,
                batch_id: str | None = None, user_id: int | None = None,
                settings: PatrolSettings = DEFAULT_SETTINGS,
                now: float | None = None) -> StoredBatch:
    """Store a GPX (1.0/1.1) or CSV track file once; the batch id defaults to its content hash."""
    source = read_crs(crs)
    parse = {"gpx": parse_gpx, "csv": parse_csv}.get(kind)
    if parse is None:
        raise InvalidInput("file kind must be gpx or csv", field="kind")
    cols = parse(data, crs=source, limits=settings.limits(), now=now or time.time())
    client_id = read_batch_id(batch_id) if batch_id else (
        f"{kind}:{hashlib.sha256(data).hexdigest()[:40]}")
    return _store(session, actor, user_id, cols, client_id, kind, settings)


# --- records -------------------------------------------------------------------------------------


class SessionFilter(BaseModel):
    """Which patrol records to list: by worker, grid, region and Shanghai dates (inclusive)."""

    user_id: int | None = None
    grid_code: str | None = Field(default=None, max_length=24)
    region_code: str | None = Field(default=None, max_length=24)
    date_from: date | None = None
    date_to: date | None = None


#: Patrol dates outside these are mistakes (and date.max would overflow the day arithmetic).
EARLIEST_DAY, LATEST_DAY = date(2000, 1, 1), date(2100, 12, 31)


def check_day(day: date | None, field: str) -> None:
    """Raise InvalidInput naming ``field`` unless the date lies in 2000..2100."""
    if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:
        raise InvalidInput(f"{field} must lie between {EARLIEST_DAY} and {LATEST_DAY}",
                           field=field)


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """Return [start of first, start of the day after last) in Shanghai time."""
    start = datetime.combine(first, datetime.min.time(), GOVERNANCE_TZ)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), GOVERNANCE_TZ)
    return start, end


SUMMARY_COLUMNS = (
    "s.id, s.user_id, u.username, u.display_name, s.grid_code, s.path::text AS path, "
    "s.started_at, s.ended_at, s.duration_s, s.mileage_m, s.in_grid_time_share, "
    "s.in_grid_length_share, s.coverage_share, s.cells_visited, s.points_raw, s.points_kept, "
    "s.mode, s.state, s.version"
)


def filter_sql(session: Session, actor: Principal,
               f: SessionFilter) -> tuple[str, dict[str, Any]]:
    """Build the WHERE clause of a record query (values bound, never formatted)."""
    where = ["s.deleted_at IS NULL"]
    params: dict[str, Any] = {}
    user_id = f.user_id
    if not actor.can("patrol.read"):
        # Without patrol.read a worker sees their own patrols only.
        if actor.user_id is None or user_id not in (None, actor.user_id):
            raise PermissionDenied("this needs the permission 'patrol.read'")
        user_id = actor.user_id
    if user_id is not None:
        where.append("s.user_id = :uid")
        params["uid"] = user_id
    if f.grid_code:
        where.append("s.grid_code = :grid")
        params["grid"] = f.grid_code
    if f.region_code:
        path = session.execute(text("SELECT path::text FROM region WHERE code = :c "
                                    "AND valid_to IS NULL"), {"c": f.region_code}).scalar()
        if path is None or not actor.covers(path):
            raise InvalidInput("unknown region code, or outside your jurisdiction",
                               field="region_code")
        where.append("s.path <@ CAST(:rpath AS ltree)")
        params["rpath"] = path
    if f.date_from or f.date_to:
        check_day(f.date_from, "date_from")
        check_day(f.date_to, "date_to")
        first = f.date_from or f.date_to
        last = f.date_to or f.date_from
        assert first is not None and last is not None
        if last < first:
            raise InvalidInput("date_to is before date_from", field="date_to")
        params["d0"], params["d1"] = day_bounds(first, last)
        where.append("s.started_at >= :d0 AND s.started_at < :d1")
    return " AND ".join(where), params


def record(row: Any) -> dict[str, Any]:
    """Return a record row as a dict, mileage rounded to decimetres."""
    out = dict(row._mapping)
    out["mileage_m"] = round(out["mileage_m"], 1)
    return out


def list_sessions(session: Session, *, actor: Principal, filters: SessionFilter,
                  limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """List patrol records newest first, with the total count for paging."""
    where, params = filter_sql(session, actor, filters)
    params.update(limit=max(1, min(limit, 500)), offset=max(0, offset))
    rows = session.execute(
        text(f"SELECT {SUMMARY_COLUMNS}, count(*) OVER () AS total FROM patrol_session s "
             f"LEFT JOIN app_user u ON u.id = s.user_id WHERE {where} "
             "ORDER BY s.started_at DESC, s.id DESC LIMIT :limit OFFSET :offset"), params).all()
    total = rows[0].total if rows else 0
    return {"total": total, "items": [record(r) for r in rows]}


#: The summary columns plus the cleaned track (WKB) and its times, for playback and exports.
TRACK_COLUMNS = SUMMARY_COLUMNS + ", ST_AsBinary(s.track) AS wkb, s.times"


def _load(session: Session, actor: Principal, session_id: int,
          columns: str = SUMMARY_COLUMNS) -> Any:
    """Load a live record the actor may see (RLS and scope), else NotFound."""
    row = session.execute(
        text(f"SELECT {columns} FROM patrol_session s LEFT JOIN app_user u ON u.id = s.user_id "
             "WHERE s.id = :i AND s.deleted_at IS NULL"), {"i": session_id}).first()
    if row is None or not actor.covers(row.path):
        raise NotFound("no such patrol record")
    if not actor.can("patrol.read") and row.user_id != actor.user_id:
        raise NotFound("no such patrol record")
    return row


def get_session(session: Session, *, actor: Principal, session_id: int) -> dict[str, Any]:
    """Return one patrol record with its gaps and visits (the track is in playback)."""
    row = _load(session, actor, session_id, SUMMARY_COLUMNS + ", s.gaps")
    out = record(row)
    out["visits"] = [dict(v._mapping) for v in session.execute(
        text("SELECT kind, object_id, at, distance_m FROM patrol_visit WHERE session_id = :i "
             "ORDER BY at"), {"i": session_id})]
    return out


def delete_session(session: Session, *, actor: Principal, session_id: int,
                   context: AuditContext = NO_CONTEXT) -> None:
    """Soft-delete a patrol record (it leaves lists and statistics); audited."""
    require(actor, "patrol.manage")
    row = _load(session, actor, session_id)
    session.execute(
        text("UPDATE patrol_session SET deleted_at = now(), deleted_by = :by, "
             "updated_at = now(), version = version + 1 WHERE id = :i"),
        {"i": session_id, "by": actor.user_id})
    audit(session, actor=actor, action="patrol.delete", object_kind="patrol_session",
          object_id=str(session_id), before=record(row), context=context)


# --- playback and live ---------------------------------------------------------------------------


def track_arrays(row: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return a record row's track as (epoch seconds, lon, lat) arrays."""
    coords = shapely.get_coordinates(shapely.from_wkb(bytes(row.wkb)))
    return np.asarray(row.times, dtype=np.float64), coords[:, 0], coords[:, 1]


def playback(session: Session, *, actor: Principal, session_id: int,
             resolution_m: float = 0.0, crs: str = "WGS84",
             context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """Return a record's cleaned track as a GeoJSON Feature: a LineString and a ``times``
    array (epoch milliseconds per vertex), simplified to ``resolution_m``; audited."""
    if not actor.can("patrol.playback"):
        _load(session, actor, session_id)  # 404 before 403 for someone else's record
        raise PermissionDenied("this needs the permission 'patrol.playback'")
    if not 0 <= resolution_m <= 10_000:
        raise InvalidInput("resolution must be 0..10000 metres", field="resolution")
    out_crs = read_crs(crs)
    row = _load(session, actor, session_id, TRACK_COLUMNS)
    t, lon, lat = track_arrays(row)
    keep = simplify(t, lon, lat, resolution_m)
    x, y = from_storage(lon[keep], lat[keep], out_crs)
    audit(session, actor=actor, action="patrol.playback", object_kind="patrol_session",
          object_id=str(session_id), context=context,
          detail={"user_id": row.user_id, "resolution_m": resolution_m, "points": int(keep.size)})
    props = record(row)
    props.pop("wkb", None)
    props.pop("times", None)
    props.update(times=[round(v * 1000) for v in t[keep].tolist()], crs=str(out_crs),
                 resolution_m=resolution_m, vertices=int(keep.size), vertices_full=int(t.size))
    return {"type": "Feature", "id": session_id, "properties": props,
            "geometry": {"type": "LineString",
                         "coordinates": [[round(a, 7), round(b, 7)] for a, b in
                                         zip(np.atleast_1d(x).tolist(), np.atleast_1d(y).tolist(),
                                             strict=True)]}}


def live_positions(session: Session, *, actor: Principal,
                   settings: PatrolSettings = DEFAULT_SETTINGS,
                   context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """Return every worker's last position in the actor's scope, online or not; audited."""
    require(actor, "patrol.playback")
    rows = session.execute(
        text("SELECT l.user_id, u.username, u.display_name, l.ts, l.lon, l.lat, l.accuracy, "
             "l.path::text AS path, l.ts > now() - make_interval(secs => :s) AS online "
             "FROM patrol_live l LEFT JOIN app_user u ON u.id = l.user_id "
             "ORDER BY l.ts DESC LIMIT 20000"), {"s": settings.online_minutes * 60}).all()
    audit(session, actor=actor, action="patrol.live", object_kind="patrol_live",
          context=context, detail={"workers": len(rows)})
    features = [{"type": "Feature", "id": r.user_id,
                 "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]},
                 "properties": {"user_id": r.user_id, "username": r.username,
                                "display_name": r.display_name, "ts": r.ts.isoformat(),
                                "accuracy": r.accuracy, "online": r.online, "path": r.path}}
                for r in rows]
    return {"type": "FeatureCollection", "features": features,
            "online": sum(1 for r in rows if r.online), "total": len(rows)}
