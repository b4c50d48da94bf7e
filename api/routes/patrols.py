"""Patrols (网格巡查): point ingest from phones and files, patrol records, playback, live
positions and statistics."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, File, Form, Query, Response, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.deps import AuditContextDep, CurrentUser, get_session
from geoserver.services import patrols
from geoserver.services.patrol_store import StoredBatch

router = APIRouter(prefix="/api/v1/patrols", tags=["patrols"])

# Writes commit before the response is sent (scope="function"): a 2xx means the points are
# durable, and a failed commit is an error answer, not a lost batch behind a 201.
CommittedSessionDep = Annotated[Session, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_session)]


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


def _batch(result: StoredBatch, response: Response) -> BatchOut:
    response.status_code = 200 if result.duplicate else 201
    return BatchOut(**result.__dict__)


def _json(data: Any, media_type: str = "application/json") -> Response:
    body = json.dumps(data, ensure_ascii=False, default=lambda v: v.isoformat())
    return Response(body, media_type=media_type)


# The body is validated column-wise by the service (fast for 10,000 points, and it names the
# exact bad point); the model documents it in OpenAPI.
_BATCH_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PointBatchIn.model_json_schema()}}}}


@router.post("/points", response_model=BatchOut, status_code=201, openapi_extra=_BATCH_DOC,
             responses={200: {"description": "the batch was stored before"}, 413: {}, 422: {}})
def post_points(payload: Annotated[Any, Body()], user: CurrentUser,
                session: CommittedSessionDep, response: Response) -> BatchOut:
    """Store a phone's batch of points (committed when this answers 2xx)."""
    result = patrols.ingest_points(session, actor=user, payload=payload)
    return _batch(result, response)


def _upload(kind: str, session: Session, user: Any, file: UploadFile, crs: str | None,
            batch_id: str | None, user_id: int | None) -> StoredBatch:
    limit = patrols.DEFAULT_SETTINGS.max_file_bytes
    data = file.file.read(limit + 1)  # one byte over tells the service it is too large
    return patrols.ingest_file(session, actor=user, data=data, kind=kind, crs=crs,
                               batch_id=batch_id, user_id=user_id)


@router.post("/gpx", response_model=BatchOut, status_code=201, responses={413: {}, 422: {}})
def post_gpx(file: Annotated[UploadFile, File()], user: CurrentUser,
             session: CommittedSessionDep, response: Response,
             crs: Annotated[str | None, Form()] = None,
             batch_id: Annotated[str | None, Form()] = None,
             user_id: Annotated[int | None, Form()] = None) -> BatchOut:
    """Upload a GPX 1.0/1.1 track (every point needs a time); ``crs`` is required."""
    return _batch(_upload("gpx", session, user, file, crs, batch_id, user_id), response)


@router.post("/csv", response_model=BatchOut, status_code=201, responses={413: {}, 422: {}})
def post_csv(file: Annotated[UploadFile, File()], user: CurrentUser,
             session: CommittedSessionDep, response: Response,
             crs: Annotated[str | None, Form()] = None,
             batch_id: Annotated[str | None, Form()] = None,
             user_id: Annotated[int | None, Form()] = None) -> BatchOut:
    """Upload a CSV track (time, lon, lat[, accuracy, speed, heading]); ``crs`` is required."""
    return _batch(_upload("csv", session, user, file, crs, batch_id, user_id), response)


def _filters(user_id: int | None = None, grid: str | None = Query(None, max_length=24),
             region: str | None = Query(None, max_length=24), date_from: date | None = None,
             date_to: date | None = None) -> patrols.SessionFilter:
    return patrols.SessionFilter(user_id=user_id, grid_code=grid, region_code=region,
                                 date_from=date_from, date_to=date_to)


FiltersDep = Annotated[patrols.SessionFilter, Depends(_filters)]


@router.get("/sessions")
def list_sessions(user: CurrentUser, session: ReadSessionDep, filters: FiltersDep,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50,
                  offset: Annotated[int, Query(ge=0)] = 0) -> Response:
    """List patrol records (巡查记录) by worker, grid, region and Shanghai dates."""
    return _json(patrols.list_sessions(session, actor=user, filters=filters, limit=limit,
                                       offset=offset))


@router.get("/sessions/export", responses={200: {"content": {
    "text/csv": {}, "application/geo+json": {}, "application/gpx+xml": {}}}})
def export_sessions(user: CurrentUser, session: CommittedSessionDep, filters: FiltersDep,
                    context: AuditContextDep,
                    format: Literal["csv", "geojson", "gpx"] = "csv") -> Response:
    """Export patrol records as CSV, or with their tracks as GeoJSON or GPX (audited)."""
    out = patrols.export_sessions(session, actor=user, filters=filters, fmt=format,
                                  context=context)
    return Response(out.content, media_type=out.media_type, headers={
        "Content-Disposition": f'attachment; filename="{out.filename}"'})


@router.get("/sessions/{session_id}")
def get_session_detail(session_id: int, user: CurrentUser, session: ReadSessionDep) -> Response:
    """Return one patrol record with its gaps and visits."""
    return _json(patrols.get_session(session, actor=user, session_id=session_id))


@router.delete("/sessions/{session_id}", status_code=204)
def delete_session(session_id: int, user: CurrentUser, session: CommittedSessionDep,
                   context: AuditContextDep) -> Response:
    """Delete a patrol record (soft, audited)."""
    patrols.delete_session(session, actor=user, session_id=session_id, context=context)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/playback")
def playback(session_id: int, user: CurrentUser, session: CommittedSessionDep,
             context: AuditContextDep,
             resolution: Annotated[float, Query(ge=0, le=10_000,
                                                description="metres per pixel")] = 0.0,
             crs: str = "WGS84") -> Response:
    """Return a record's cleaned track with times (GeoJSON Feature), for 轨迹回放 (audited)."""
    feature = patrols.playback(session, actor=user, session_id=session_id,
                               resolution_m=resolution, crs=crs, context=context)
    return _json(feature, "application/geo+json")


@router.get("/live")
def live(user: CurrentUser, session: CommittedSessionDep, context: AuditContextDep) -> Response:
    """Return every worker's last position in your jurisdiction, online or not (audited)."""
    return _json(patrols.live_positions(session, actor=user, context=context),
                 "application/geo+json")


@router.get("/stats")
def stats(user: CurrentUser, session: ReadSessionDep,
          region: Annotated[str, Query(max_length=24)],
          date_from: date | None = None, date_to: date | None = None) -> Response:
    """Return patrol statistics (网格巡查统计) of a region over Shanghai days (default today)."""
    return _json(patrols.patrol_stats(session, actor=user, region_code=region,
                                      date_from=date_from, date_to=date_to))
