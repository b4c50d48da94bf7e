"""Patrols (网格巡查): point ingest from phones and files, patrol records and their exports,
playback, live positions, statistics and targets."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import (
    AuditContextDep,
    CurrentUser,
    EngineDep,
    SessionDep,
    SettingsDep,
    stream_rows,
)
from api.exports import export_response
from geoserver.config import PatrolSettings
from geoserver.domain.principal import Principal
from geoserver.domain.watermark import watermark
from geoserver.services import patrol_export, patrol_stats, patrols
from geoserver.services.patrol_store import StoredBatch

router = APIRouter(prefix="/api/v1/patrols", tags=["patrols"])

# SessionDep commits before the response is sent: a 2xx means the points are durable, and a
# failed commit is an error answer, not a lost batch behind a 201.


class PointIn(BaseModel):
    """One fix or marker from the phone."""

    t: int | str = Field(description="epoch milliseconds, or ISO 8601 with a UTC offset")
    lon: float | None = None
    lat: float | None = None
    accuracy: float | None = Field(default=None, description="metres")
    speed: float | None = Field(default=None, description="m/s")
    heading: float | None = Field(default=None, description="degrees from north")
    event: Literal["fix", "start", "stop", "no_fix", "hidden"] = "fix"


class PointBatchIn(BaseModel):
    """A batch of points; ``batch_id`` makes a retried upload count once."""

    batch_id: str = Field(min_length=1, max_length=128)
    crs: str = Field(description="WGS84, CGCS2000, GCJ-02 or BD-09 (required, no default)")
    points: list[PointIn]


class BatchOut(BaseModel):
    """What was stored: nothing (and duplicate=true) for a batch stored before."""

    batch_id: int | None
    client_batch_id: str
    points: int
    duplicate: bool
    first_ts: datetime | None
    last_ts: datetime | None


class TargetIn(BaseModel):
    """A grid type's daily patrol targets (巡查考核标准)."""

    min_mileage_m: float = Field(ge=0, le=patrol_stats.MAX_TARGET_MILEAGE_M)
    min_duration_s: int = Field(ge=0, le=patrol_stats.MAX_TARGET_DURATION_S)


def _batch(result: StoredBatch, response: Response) -> BatchOut:
    response.status_code = 200 if result.duplicate else 201
    return BatchOut(**result.__dict__)


def _json(data: Any, media_type: str = "application/json") -> Response:
    # orjson: a 4-hour playback is ~3,000 coordinate pairs, encoded several times faster.
    return Response(orjson.dumps(data, default=str, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type=media_type)


async def raw_body(request: Request) -> bytes:
    """Return the request body unparsed: the service decodes it with orjson in the worker
    thread, where FastAPI would decode it with the standard library on the event loop."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]

# The body is validated column-wise by the service (fast for 10,000 points, and it names the
# exact bad point); the model documents it in OpenAPI.
def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return a model's JSON schema with its one nested model inlined (a ``$defs`` reference
    cannot be resolved inside the OpenAPI document)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    schema["properties"]["points"]["items"] = defs["PointIn"]
    return schema


_BATCH_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inline_schema(PointBatchIn)}}}}


@router.post("/points", response_model=BatchOut, status_code=201, openapi_extra=_BATCH_DOC,
             responses={200: {"description": "the batch was stored before"}, 413: {}, 422: {}})
def post_points(body: RawBody, user: CurrentUser, session: SessionDep, settings: SettingsDep,
                response: Response) -> BatchOut:
    """Store a phone's batch of points (committed when this answers 2xx)."""
    result = patrols.ingest_points(session, actor=user, payload=body, settings=settings.patrol)
    return _batch(result, response)


def _upload(kind: str, session: Session, user: Principal, file: UploadFile, crs: str | None,
            batch_id: str | None, user_id: int | None, settings: PatrolSettings) -> StoredBatch:
    data = file.file.read(settings.max_file_bytes + 1)  # one byte over: the service says 413
    return patrols.ingest_file(session, actor=user, data=data, kind=kind, crs=crs,
                               batch_id=batch_id, user_id=user_id, settings=settings)


@router.post("/gpx", response_model=BatchOut, status_code=201, responses={413: {}, 422: {}})
def post_gpx(file: Annotated[UploadFile, File()], user: CurrentUser, session: SessionDep,
             settings: SettingsDep, response: Response,
             crs: Annotated[str | None, Form()] = None,
             batch_id: Annotated[str | None, Form()] = None,
             user_id: Annotated[int | None, Form()] = None) -> BatchOut:
    """Upload a GPX 1.0/1.1 track (every point needs a time); ``crs`` is required."""
    return _batch(_upload("gpx", session, user, file, crs, batch_id, user_id, settings.patrol),
                  response)


@router.post("/csv", response_model=BatchOut, status_code=201, responses={413: {}, 422: {}})
def post_csv(file: Annotated[UploadFile, File()], user: CurrentUser, session: SessionDep,
             settings: SettingsDep, response: Response,
             crs: Annotated[str | None, Form()] = None,
             batch_id: Annotated[str | None, Form()] = None,
             user_id: Annotated[int | None, Form()] = None) -> BatchOut:
    """Upload a CSV track (time, lon, lat[, accuracy, speed, heading]); ``crs`` is required."""
    return _batch(_upload("csv", session, user, file, crs, batch_id, user_id, settings.patrol),
                  response)


def _filters(user_id: int | None = None, grid: str | None = Query(None, max_length=24),
             region: str | None = Query(None, max_length=24), date_from: date | None = None,
             date_to: date | None = None) -> patrols.SessionFilter:
    return patrols.SessionFilter(user_id=user_id, grid_code=grid, region_code=region,
                                 date_from=date_from, date_to=date_to)


FiltersDep = Annotated[patrols.SessionFilter, Depends(_filters)]


@router.get("/sessions")
def list_sessions(user: CurrentUser, session: SessionDep, filters: FiltersDep,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50,
                  offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
    """List patrol records (巡查记录) by worker, grid, region and Shanghai dates."""
    return _json(patrols.list_sessions(session, actor=user, filters=filters, limit=limit,
                                       offset=offset))


ExportFormat = Literal["csv", "xlsx", "geojson", "gpx"]


@router.get("/sessions/export", response_class=Response, responses={200: {"content": {
    "text/csv": {}, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
    "application/geo+json": {}, "application/gpx+xml": {}}}})
def export_sessions(user: CurrentUser, session: SessionDep, engine: EngineDep,
                    settings: SettingsDep, filters: FiltersDep, context: AuditContextDep,
                    format: ExportFormat = "csv") -> Response:
    """Export patrol records as CSV or xlsx, or with their tracks as GeoJSON or GPX: checked
    and audited first, then streamed with a watermark."""
    patrol_export.prepare_export(session, actor=user, filters=filters, fmt=format,
                                 settings=settings.patrol, context=context)
    tracks = format in patrol_export.TRACK_FORMATS
    cap = patrol_export.export_cap(format, settings.patrol)
    rows = stream_rows(engine, user, lambda s: patrol_export.iter_records(
        s, actor=user, filters=filters, tracks=tracks, limit=cap))
    if not tracks:
        return export_response(format, rows, patrol_export.COLUMNS, user, "patrols")
    return StreamingResponse(
        patrol_export.stream(format, rows, watermark(user)),
        media_type=patrol_export.MEDIA[format], headers={
            "Content-Disposition": f'attachment; filename="patrols.{format}"',
            "Cache-Control": "no-store"})


@router.get("/sessions/{session_id}")
def get_session_detail(session_id: int, user: CurrentUser, session: SessionDep) -> Response:
    """Return one patrol record with its gaps and visits."""
    return _json(patrols.get_session(session, actor=user, session_id=session_id))


@router.delete("/sessions/{session_id}", status_code=204)
def delete_session(session_id: int, user: CurrentUser, session: SessionDep,
                   context: AuditContextDep) -> Response:
    """Delete a patrol record (soft, audited)."""
    patrols.delete_session(session, actor=user, session_id=session_id, context=context)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/playback")
def playback(session_id: int, user: CurrentUser, session: SessionDep,
             context: AuditContextDep,
             resolution: Annotated[float, Query(ge=0, le=10_000,
                                                description="metres per pixel")] = 0.0,
             crs: str = "WGS84") -> Response:
    """Return a record's cleaned track with times (GeoJSON Feature), for 轨迹回放 (audited)."""
    feature = patrols.playback(session, actor=user, session_id=session_id,
                               resolution_m=resolution, crs=crs, context=context)
    return _json(feature, "application/geo+json")


@router.get("/live")
def live(user: CurrentUser, session: SessionDep, settings: SettingsDep,
         context: AuditContextDep) -> Response:
    """Return every worker's last position in your jurisdiction, online or not (audited)."""
    return _json(patrols.live_positions(session, actor=user, settings=settings.patrol,
                                        context=context), "application/geo+json")


@router.get("/stats")
def stats(user: CurrentUser, session: SessionDep, settings: SettingsDep,
          region: Annotated[str, Query(min_length=2, max_length=24)],
          period: Literal["day", "week", "month"] | None = None,
          date_: Annotated[date | None, Query(alias="date")] = None,
          date_from: date | None = None, date_to: date | None = None,
          detail: bool = True) -> Response:
    """Return patrol statistics (网格巡查统计) of a region for the Shanghai day, ISO week or
    month holding ``date`` (default today), or for date_from..date_to: totals, rates, a daily
    series, every child region (choropleth-ready) and, with ``detail``, every worker."""
    return _json(patrol_stats.patrol_stats(
        session, actor=user, region_code=region, period=period, day=date_, date_from=date_from,
        date_to=date_to, detail=detail, settings=settings.patrol))


@router.get("/targets")
def targets(user: CurrentUser, session: SessionDep) -> Response:
    """Return the daily targets (minimum mileage and duration) per grid type."""
    return _json(patrol_stats.list_targets(session, actor=user))


@router.put("/targets/{grid_type}")
def set_target(grid_type: str, body: TargetIn, user: CurrentUser, session: SessionDep,
               context: AuditContextDep) -> Response:
    """Set a grid type's daily targets (needs patrol.target; audited)."""
    return _json(patrol_stats.set_target(
        session, actor=user, grid_type=grid_type, min_mileage_m=body.min_mileage_m,
        min_duration_s=body.min_duration_s, context=context))
