"""Patrol record exports (巡查记录导出): summaries as CSV or xlsx, tracks as GeoJSON or GPX.

Tracks are sensitive personal information (行踪轨迹): every export is checked (permissions,
filters, the row cap) and audited before the first byte goes out, then streamed from its own
read transaction, and each file carries the watermark of who exported it and when.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import PatrolSettings
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.patrols import (
    SUMMARY_COLUMNS,
    TRACK_COLUMNS,
    SessionFilter,
    filter_sql,
    record,
    require,
    track_arrays,
)

EXPORT_FORMATS = ("csv", "xlsx", "geojson", "gpx")
#: Formats that carry the cleaned tracks (heavier rows, a lower cap).
TRACK_FORMATS = ("geojson", "gpx")
MEDIA = {"geojson": "application/geo+json", "gpx": "application/gpx+xml"}
#: Columns of the summary formats, and the properties of each GeoJSON feature.
COLUMNS = ("id", "user_id", "username", "display_name", "grid_code", "started_at", "ended_at",
           "duration_s", "mileage_m", "in_grid_time_share", "in_grid_length_share",
           "coverage_share", "cells_visited", "points_raw", "points_kept", "mode", "state")


def check_format(fmt: str) -> None:
    """Raise InvalidInput naming ``format`` unless it is an export format."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(EXPORT_FORMATS)}", field="format")


def export_cap(fmt: str, settings: PatrolSettings) -> int:
    """Return how many records an export in ``fmt`` may hold."""
    return settings.max_export_sessions if fmt in TRACK_FORMATS else settings.max_export_rows


def prepare_export(session: Session, *, actor: Principal, filters: SessionFilter, fmt: str,
                   settings: PatrolSettings,
                   context: AuditContext = NO_CONTEXT) -> int:
    """Check an export before it starts and audit it; return how many records it will hold.

    Raises:
        InvalidInput: a bad format or filter, or more records match than the cap allows.
        PermissionDenied: without patrol.read and export.
    """
    check_format(fmt)
    require(actor, "patrol.read")
    require(actor, "export")
    where, params = filter_sql(session, actor, filters)
    cap = export_cap(fmt, settings)
    n = session.execute(text(f"SELECT count(*) FROM (SELECT 1 FROM patrol_session s WHERE {where} "
                             "LIMIT :cap) x"), {**params, "cap": cap + 1}).scalar_one()
    if n > cap:
        raise InvalidInput(f"more than {cap} records match: narrow the dates, region or worker "
                           f"(a {fmt} export holds at most {cap})", field="date_from")
    audit(session, actor=actor, action="patrol.export", object_kind="patrol_session",
          context=context, detail={"format": fmt, "records": int(n),
                                   "filters": filters.model_dump(mode="json")})
    return int(n)


def iter_records(session: Session, *, actor: Principal, filters: SessionFilter, tracks: bool,
                 limit: int) -> Iterator[dict[str, Any]]:
    """Yield matching records oldest first (with ``geometry`` and ``times`` when ``tracks``)."""
    where, params = filter_sql(session, actor, filters)
    columns = TRACK_COLUMNS if tracks else SUMMARY_COLUMNS
    result = session.execute(
        text(f"SELECT {columns} FROM patrol_session s LEFT JOIN app_user u ON u.id = s.user_id "
             f"WHERE {where} ORDER BY s.started_at, s.id LIMIT :limit"),
        {**params, "limit": limit}, execution_options={"yield_per": 200})
    for row in result:
        out = record(row)
        if tracks:
            t, lon, lat = track_arrays(row)
            del out["wkb"]
            out["times"] = t
            out["geometry"] = {"type": "LineString",
                               "coordinates": np.round(np.column_stack([lon, lat]), 7)}
        yield out


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def geojson_chunks(rows: Iterable[dict[str, Any]], mark: str) -> Iterator[bytes]:
    """Stream records as a GeoJSON FeatureCollection: LineStrings with a ``times`` array
    (epoch milliseconds per vertex), as playback returns them, and the watermark."""
    yield b'{"type":"FeatureCollection","watermark":' + orjson.dumps(mark) + b',"features":['
    sep = b""
    for r in rows:
        props = {c: _plain(r[c]) for c in COLUMNS}
        props["times"] = np.round(r["times"] * 1000).astype(np.int64)
        feature = {"type": "Feature", "id": r["id"], "geometry": r["geometry"],
                   "properties": props}
        yield sep + orjson.dumps(feature, option=orjson.OPT_SERIALIZE_NUMPY)
        sep = b","
    yield b"]}"


def _gpx_times(t: np.ndarray) -> list[str]:
    """Return GPX times (UTC, milliseconds) for epoch seconds."""
    ms = np.round(t * 1000).astype("datetime64[ms]")
    return [s + "Z" for s in np.datetime_as_string(ms, unit="ms").tolist()]


def gpx_chunks(rows: Iterable[dict[str, Any]], mark: str) -> Iterator[bytes]:
    """Stream records as GPX 1.1, one <trk> per record, the watermark in the metadata."""
    yield ('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="gridgov" '
           'xmlns="http://www.topografix.com/GPX/1/1">\n'
           f"<metadata><desc>{escape(mark)}</desc></metadata>\n").encode()
    for r in rows:
        name = f"{r['display_name'] or r['username'] or r['user_id']} {r['started_at']:%F %R}"
        coords = r["geometry"]["coordinates"].tolist()
        pts = "".join(f'<trkpt lat="{lat:.7f}" lon="{lon:.7f}"><time>{when}</time></trkpt>\n'
                      for (lon, lat), when in zip(coords, _gpx_times(r["times"]), strict=True))
        desc = f"patrol record {r['id']}, grid {r['grid_code'] or '-'}"
        yield (f"<trk><name>{escape(name)}</name><desc>{escape(desc)}</desc>"
               f"<src>{escape(mark)}</src><number>{int(r['id'])}</number>"
               f"<type>{escape(str(r['mode']))}</type><trkseg>\n{pts}</trkseg></trk>\n"
               ).encode()
    yield b"</gpx>\n"


def stream(fmt: str, rows: Iterable[dict[str, Any]], mark: str) -> Iterator[bytes]:
    """Return the byte stream of a track export (GeoJSON or GPX)."""
    return geojson_chunks(rows, mark) if fmt == "geojson" else gpx_chunks(rows, mark)

