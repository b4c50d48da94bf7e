"""Patrols (网格巡查): ingest GPS points, patrol records (巡查记录), playback (轨迹回放), live
positions and statistics (网格巡查统计).

Tracks are sensitive personal information (行踪轨迹, PIPL art. 28): playback, live views and
exports are audited. Ingest is not audited per batch: ``gps_batch`` records who sent what and
when, and an audit row per phone batch would outgrow the audit log at city scale.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import shapely
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ
from geoserver.domain.principal import Principal
from geoserver.domain.tracks import TrackRules, TravelMode, simplify
from geoserver.errors import InvalidInput, NotFound, PermissionDenied
from geoserver.geo.crs import from_storage
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.patrol_input import (
    Limits,
    PointColumns,
    parse_csv,
    parse_gpx,
    parse_point_batch,
    read_batch_id,
    read_crs,
)
from geoserver.services.patrol_store import StoredBatch, store_points


class PatrolSettings(BaseSettings):
    """Patrol thresholds and limits (prefix ``GRIDGOV_PATROL_``)."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_PATROL_", extra="ignore")

    max_batch_points: int = Field(default=20_000, ge=1)
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_file_points: int = Field(default=200_000, ge=1)
    max_past_days: float = Field(default=366, gt=0)
    max_future_seconds: float = Field(default=300, ge=0)
    retention_days: int = Field(default=90, ge=1)
    partitions_ahead_days: int = Field(default=3, ge=1, le=60)
    online_minutes: float = Field(default=5, gt=0)
    session_gap_minutes: float = Field(default=20, gt=0)
    gap_seconds: float = Field(default=120, gt=0)
    max_accuracy_m: float = Field(default=50, gt=0)
    jitter_radius_m: float = Field(default=15, gt=0)
    visit_radius_m: float = Field(default=30, gt=0)
    walk_max_speed_mps: float = Field(default=3.0, gt=0)
    ride_max_speed_mps: float = Field(default=10.0, gt=0)
    max_export_sessions: int = Field(default=5000, ge=1)

    def limits(self) -> Limits:
        """Return the ingest limits."""
        return Limits(self.max_batch_points, self.max_file_bytes, self.max_file_points,
                      self.max_past_days, self.max_future_seconds)

    def rules(self) -> TrackRules:
        """Return the cleaning and session rules."""
        return TrackRules(
            max_accuracy_m=self.max_accuracy_m, jitter_radius_m=self.jitter_radius_m,
            gap_seconds=self.gap_seconds, session_gap_seconds=self.session_gap_minutes * 60,
            visit_radius_m=self.visit_radius_m,
            max_speed_mps={TravelMode.WALK: self.walk_max_speed_mps,
                           TravelMode.BICYCLE: self.ride_max_speed_mps})


DEFAULT_SETTINGS = PatrolSettings()


def _require(actor: Principal, permission: str) -> None:
    if not actor.can(permission):
        raise PermissionDenied(f"this needs the permission {permission!r}")


# --- ingest --------------------------------------------------------------------------------------


def _target(actor: Principal, user_id: int | None) -> int:
    """Return whose points these are: the actor's own, or (patrol.manage) a worker's."""
    if user_id is None or user_id == actor.user_id:
        _require(actor, "patrol.report")
        if actor.user_id is None:
            raise PermissionDenied("points belong to a user account")
        return actor.user_id
    _require(actor, "patrol.manage")
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

    Raises:
        InvalidInput: naming the first bad field (``points[3].lat``, ``crs`` …).
        TooLarge: more points than a batch may hold.
    """
    _require(actor, "patrol.report")
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


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """Return [start of first, start of the day after last) in Shanghai time."""
    start = datetime.combine(first, datetime.min.time(), GOVERNANCE_TZ)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), GOVERNANCE_TZ)
    return start, end


_SUMMARY = (
    "s.id, s.user_id, u.username, u.display_name, s.grid_code, s.path::text AS path, "
    "s.started_at, s.ended_at, s.duration_s, s.mileage_m, s.in_grid_time_share, "
    "s.in_grid_length_share, s.coverage_share, s.cells_visited, s.points_raw, s.points_kept, "
    "s.mode, s.state, s.version"
)


def _filter_sql(session: Session, actor: Principal,
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
        first = f.date_from or f.date_to
        last = f.date_to or f.date_from
        assert first is not None and last is not None
        if last < first:
            raise InvalidInput("date_to is before date_from", field="date_to")
        params["d0"], params["d1"] = day_bounds(first, last)
        where.append("s.started_at >= :d0 AND s.started_at < :d1")
    return " AND ".join(where), params


def _record(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["mileage_m"] = round(out["mileage_m"], 1)
    return out


def list_sessions(session: Session, *, actor: Principal, filters: SessionFilter,
                  limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """List patrol records newest first, with the total count for paging."""
    where, params = _filter_sql(session, actor, filters)
    params.update(limit=max(1, min(limit, 500)), offset=max(0, offset))
    rows = session.execute(
        text(f"SELECT {_SUMMARY}, count(*) OVER () AS total FROM patrol_session s "
             f"LEFT JOIN app_user u ON u.id = s.user_id WHERE {where} "
             "ORDER BY s.started_at DESC, s.id DESC LIMIT :limit OFFSET :offset"), params).all()
    total = rows[0].total if rows else 0
    return {"total": total, "items": [_record(r) for r in rows]}


def _load(session: Session, actor: Principal, session_id: int, columns: str = _SUMMARY) -> Any:
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
    row = _load(session, actor, session_id, _SUMMARY + ", s.gaps")
    out = _record(row)
    out["visits"] = [dict(v._mapping) for v in session.execute(
        text("SELECT kind, object_id, at, distance_m FROM patrol_visit WHERE session_id = :i "
             "ORDER BY at"), {"i": session_id})]
    return out


def delete_session(session: Session, *, actor: Principal, session_id: int,
                   context: AuditContext = NO_CONTEXT) -> None:
    """Soft-delete a patrol record (it leaves lists and statistics); audited."""
    _require(actor, "patrol.manage")
    row = _load(session, actor, session_id)
    session.execute(
        text("UPDATE patrol_session SET deleted_at = now(), deleted_by = :by, "
             "updated_at = now(), version = version + 1 WHERE id = :i"),
        {"i": session_id, "by": actor.user_id})
    audit(session, actor=actor, action="patrol.delete", object_kind="patrol_session",
          object_id=str(session_id), before=_record(row), context=context)


# --- playback and live ---------------------------------------------------------------------------


def _track(row: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    row = _load(session, actor, session_id, _SUMMARY + ", ST_AsBinary(s.track) AS wkb, s.times")
    t, lon, lat = _track(row)
    keep = simplify(t, lon, lat, resolution_m)
    x, y = from_storage(lon[keep], lat[keep], out_crs)
    audit(session, actor=actor, action="patrol.playback", object_kind="patrol_session",
          object_id=str(session_id), context=context,
          detail={"user_id": row.user_id, "resolution_m": resolution_m, "points": int(keep.size)})
    props = _record(row)
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
    _require(actor, "patrol.playback")
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


# --- export --------------------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "geojson", "gpx")
_CSV_FIELDS = ("id", "user_id", "username", "display_name", "grid_code", "started_at",
               "ended_at", "duration_s", "mileage_m", "in_grid_time_share",
               "in_grid_length_share", "coverage_share", "points_kept", "mode", "state")


@dataclass(frozen=True)
class Export:
    """An export file: its bytes, media type and a file name."""

    content: bytes
    media_type: str
    filename: str


def _export_rows(session: Session, actor: Principal, filters: SessionFilter, tracks: bool,
                 limit: int) -> list[Any]:
    where, params = _filter_sql(session, actor, filters)
    extra = ", ST_AsBinary(s.track) AS wkb, s.times" if tracks else ""
    params["limit"] = limit + 1
    rows = session.execute(
        text(f"SELECT {_SUMMARY}{extra} FROM patrol_session s LEFT JOIN app_user u "
             f"ON u.id = s.user_id WHERE {where} ORDER BY s.started_at, s.id LIMIT :limit"),
        params).all()
    if len(rows) > limit:
        raise InvalidInput(f"more than {limit} records match: narrow the dates or region",
                           field="date_from")
    return list(rows)


def _csv_export(rows: Sequence[Any]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(_CSV_FIELDS)
    for r in rows:
        rec = _record(r)
        w.writerow([rec[f].isoformat() if isinstance(rec[f], datetime) else rec[f]
                    for f in _CSV_FIELDS])
    return ("\ufeff" + buf.getvalue()).encode()  # BOM: Excel opens UTF-8 Chinese correctly


def _geojson_export(rows: Sequence[Any]) -> bytes:
    features = []
    for r in rows:
        t, lon, lat = _track(r)
        props = {k: (v.isoformat() if isinstance(v, datetime) else v)
                 for k, v in _record(r).items() if k not in ("wkb", "times")}
        props["times"] = [round(v * 1000) for v in t.tolist()]
        features.append({"type": "Feature", "id": r.id, "properties": props, "geometry": {
            "type": "LineString", "coordinates": np.round(np.column_stack([lon, lat]), 7)
            .tolist()}})
    return json.dumps({"type": "FeatureCollection", "features": features},
                      ensure_ascii=False).encode()


def _gpx_export(rows: Sequence[Any]) -> bytes:
    ns = "http://www.topografix.com/GPX/1/1"
    ET.register_namespace("", ns)
    root = ET.Element(f"{{{ns}}}gpx", {"version": "1.1", "creator": "gridgov"})
    for r in rows:
        trk = ET.SubElement(root, f"{{{ns}}}trk")
        ET.SubElement(trk, f"{{{ns}}}name").text = f"{r.username or r.user_id} {r.started_at:%F %R}"
        seg = ET.SubElement(trk, f"{{{ns}}}trkseg")
        t, lon, lat = _track(r)
        for ti, x, y in zip(t.tolist(), lon.tolist(), lat.tolist(), strict=True):
            pt = ET.SubElement(seg, f"{{{ns}}}trkpt", {"lat": f"{y:.7f}", "lon": f"{x:.7f}"})
            stamp = datetime.fromtimestamp(ti, GOVERNANCE_TZ).astimezone(tz=None)
            ET.SubElement(pt, f"{{{ns}}}time").text = stamp.isoformat(timespec="milliseconds")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def export_sessions(session: Session, *, actor: Principal, filters: SessionFilter, fmt: str,
                    settings: PatrolSettings = DEFAULT_SETTINGS,
                    context: AuditContext = NO_CONTEXT) -> Export:
    """Export patrol records as CSV (summaries), GeoJSON or GPX (tracks); audited."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(EXPORT_FORMATS)}", field="format")
    _require(actor, "patrol.read")
    _require(actor, "export")
    rows = _export_rows(session, actor, filters, fmt != "csv", settings.max_export_sessions)
    body = {"csv": _csv_export, "geojson": _geojson_export, "gpx": _gpx_export}[fmt](rows)
    audit(session, actor=actor, action="patrol.export", object_kind="patrol_session",
          context=context, detail={"format": fmt, "records": len(rows),
                                   "filters": filters.model_dump(mode="json")})
    media = {"csv": "text/csv; charset=utf-8", "geojson": "application/geo+json",
             "gpx": "application/gpx+xml"}[fmt]
    return Export(body, media, f"patrols.{fmt}")


# --- statistics ----------------------------------------------------------------------------------

_STATS = text("""
WITH w AS (
    SELECT DISTINCT ON (sa.user_id, g.code) sa.user_id, g.code AS grid_code,
           g.name AS grid_name, g.grid_type::text AS grid_type
    FROM staff_assignment sa
    JOIN region g ON g.code = sa.region_code AND g.valid_to IS NULL
    WHERE sa.valid_to IS NULL
      AND sa.position IN ('grid_leader', 'grid_worker', 'part_time_grid_worker')
      AND g.level IN ('grid', 'micro_grid') AND g.path <@ CAST(:rpath AS ltree)
), d AS (
    SELECT user_id, (started_at AT TIME ZONE 'Asia/Shanghai')::date AS day,
           sum(mileage_m) AS mileage_m, sum(duration_s)::bigint AS duration_s,
           count(*) AS sessions,
           avg(coverage_share) AS coverage
    FROM patrol_session
    WHERE deleted_at IS NULL AND started_at >= :d0 AND started_at < :d1
      AND path <@ CAST(:rpath AS ltree)
    GROUP BY 1, 2
)
SELECT w.user_id, w.grid_code, w.grid_name, w.grid_type,
       coalesce(sum(d.mileage_m), 0)::float8 AS mileage_m,
       coalesce(sum(d.duration_s), 0)::bigint AS duration_s,
       coalesce(sum(d.sessions), 0)::integer AS sessions, avg(d.coverage)::float8 AS coverage,
       count(d.day) AS days_patrolled,
       count(d.day) FILTER (WHERE d.mileage_m >= t.min_mileage_m
                            AND d.duration_s >= t.min_duration_s) AS days_met,
       bool_or(l.ts > now() - make_interval(secs => :online)) AS online
FROM w
LEFT JOIN d ON d.user_id = w.user_id
LEFT JOIN patrol_target t ON t.grid_type::text = w.grid_type
LEFT JOIN patrol_live l ON l.user_id = w.user_id
GROUP BY 1, 2, 3, 4
ORDER BY 2, 1
""")


def _totals(rows: Sequence[Any], days: int) -> dict[str, Any]:
    workers = len({r.user_id for r in rows})
    online = len({r.user_id for r in rows if r.online})
    patrolled = len({r.user_id for r in rows if r.days_patrolled})
    met = sum(r.days_met for r in rows)
    return {
        "workers": workers, "online": online,
        "online_rate": round(online / workers, 4) if workers else None,
        "patrolled": patrolled, "not_patrolled": workers - patrolled,
        "worker_days": len(rows) * days, "worker_days_met": met,
        "worker_days_not_met": len(rows) * days - met,
        "mileage_m": round(sum(r.mileage_m for r in rows), 1),
        "duration_s": int(sum(r.duration_s for r in rows)),
        "sessions": int(sum(r.sessions for r in rows)),
    }


def patrol_stats(session: Session, *, actor: Principal, region_code: str,
                 date_from: date | None = None, date_to: date | None = None,
                 settings: PatrolSettings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """Return patrol statistics of a region over Shanghai days (default today): workers,
    online now, patrolled or not, worker-days meeting the grid type's targets, mileage,
    duration and coverage, with one row per worker and grid."""
    _require(actor, "patrol.read")
    today = datetime.now(GOVERNANCE_TZ).date()
    first, last = date_from or date_to or today, date_to or date_from or today
    if last < first or (last - first).days > 92:
        raise InvalidInput("the period must be 1..93 days, date_from first", field="date_to")
    path = session.execute(text("SELECT path::text FROM region WHERE code = :c "
                                "AND valid_to IS NULL"), {"c": region_code}).scalar()
    if path is None or not actor.covers(path):
        raise NotFound("no such region in your jurisdiction")
    d0, d1 = day_bounds(first, last)
    rows = session.execute(_STATS, {"rpath": path, "d0": d0, "d1": d1,
                                    "online": settings.online_minutes * 60}).all()
    days = (last - first).days + 1
    per_worker = [{**r._mapping, "mileage_m": round(r.mileage_m, 1),
                   "coverage": None if r.coverage is None else round(r.coverage, 4),
                   "online": bool(r.online)} for r in rows]
    return {"region_code": region_code, "date_from": first.isoformat(),
            "date_to": last.isoformat(), "days": days, **_totals(rows, days),
            "workers_detail": per_worker}
