"""Streaming exports (CSV, xlsx, GeoJSON), each carrying a watermark of user and time (等保)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from fastapi.responses import StreamingResponse

from geoserver.domain.principal import Principal
from geoserver.domain.watermark import watermark

FORMATS = ("csv", "xlsx", "geojson")
MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "geojson": "application/geo+json",
}


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], mark: str) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    # A BOM so that Excel opens UTF-8 Chinese text correctly; then the watermark line.
    yield ("\ufeff# " + mark + "\n").encode()
    writer.writerow(columns)
    for i, row in enumerate(rows, 1):
        writer.writerow([_cell(row.get(c)) for c in columns])
        if i % 500 == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def _geojson(rows: Iterable[dict[str, Any]], columns: Sequence[str], mark: str) -> Iterator[bytes]:
    yield ('{"type":"FeatureCollection","watermark":' + json.dumps(mark, ensure_ascii=False)
           + ',"features":[').encode()
    first = True
    for row in rows:
        feature = {"type": "Feature", "id": row.get("id") or row.get("code"),
                   "geometry": row.get("geometry"),
                   "properties": {c: _cell(row.get(c)) for c in columns}}
        yield (("" if first else ",") + json.dumps(feature, ensure_ascii=False,
                                                   default=str)).encode()
        first = False
    yield b"]}"


def _xlsx(rows: Iterable[dict[str, Any]], columns: Sequence[str], mark: str) -> Iterator[bytes]:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("export")
    ws.append([mark])
    ws.append(list(columns))
    for row in rows:
        ws.append([_cell(row.get(c)) for c in columns])
    out = io.BytesIO()
    wb.save(out)
    yield out.getvalue()


def export_response(fmt: str, rows: Iterable[dict[str, Any]], columns: Sequence[str],
                    user: Principal, filename: str) -> StreamingResponse:
    """Stream rows in ``fmt`` with the watermark; the caller has checked the format."""
    body = {"csv": _csv, "geojson": _geojson, "xlsx": _xlsx}[fmt](rows, columns, watermark(user))
    ext = "geojson" if fmt == "geojson" else fmt
    return StreamingResponse(body, media_type=MEDIA[fmt], headers={
        "Content-Disposition": f'attachment; filename="{filename}.{ext}"',
        "Cache-Control": "no-store"})
