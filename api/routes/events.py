"""Events (事件中心): intake, detail with history and "why", lifecycle actions, queues."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, Query, Response, UploadFile
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.deps import (
    AuditContextDep,
    CryptoDep,
    EngineDep,
    SessionDep,
    SettingsDep,
    require,
    stream_rows,
)
from api.exports import MEDIA, export_response
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.events import EventSource, EventState, Queue
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.services import event_actions, event_queues, events, photos
from geoserver.services.event_clocks import ClockPublic
from geoserver.services.event_queues import EXPORT_COLUMNS, EXPORT_FORMATS, EventFilter, EventPage
from geoserver.services.events import (
    ActionIn,
    DuplicateCandidate,
    EventCreate,
    EventDetail,
    EventSettings,
)
from geoserver.services.photos import PhotoPublic, PhotoStore

router = APIRouter(prefix="/api/v1/events", tags=["events"])

Reader = Annotated[Principal, Depends(require("event.read"))]
Reporter = Annotated[Principal, Depends(require("event.report"))]


def event_settings(settings: SettingsDep) -> EventSettings:
    """Return the app's event-center settings."""
    return settings.events


EventSettingsDep = Annotated[EventSettings, Depends(event_settings)]


def photo_store(settings: SettingsDep) -> PhotoStore:
    """Return the photo store under the data directory, with its limits and quotas."""
    return PhotoStore(settings.database.data_dir, settings.photos)


PhotoStoreDep = Annotated[PhotoStore, Depends(photo_store)]
Photos = Annotated[list[UploadFile], File(description="JPEG, PNG or WebP (HEIC if supported)")]
Exporter = Annotated[Principal, Depends(require("export"))]


def read_photos(files: list[UploadFile], store: PhotoStore) -> list[bytes]:
    """Read uploaded photos, each at most one byte past the limit (enough to refuse it)."""
    return [f.file.read(store.settings.max_photo_bytes + 1) for f in files]


def form_json(body: str) -> dict[str, Any]:
    """Parse the ``body`` form field of a multipart request as a JSON object."""
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError:
        raise InvalidInput("must be a JSON object", field="body") from None
    if not isinstance(parsed, dict):
        raise InvalidInput("must be a JSON object", field="body")
    return parsed


def event_filter(type_code: str | None = None, source: EventSource | None = None,
                 state: EventState | None = None,
                 sla: Annotated[str | None, Query(pattern="^(green|amber|red)$")] = None,
                 region_code: str | None = None, since: datetime | None = None,
                 until: datetime | None = None,
                 q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
                 ) -> EventFilter:
    """Return the list filters of a request (every one optional)."""
    return EventFilter(type_code=type_code, source=source, state=state, sla=sla,
                       region_code=region_code, since=since, until=until, q=q)


FilterDep = Annotated[EventFilter, Depends(event_filter)]


def _etag(response: Response, version: int) -> None:
    response.headers["ETag"] = f'"{version}"'


def _if_match(if_match: str | None, body_version: int | None) -> int | None:
    """Return the version the caller saw, from If-Match ("3", W/"3") or the body."""
    if if_match is None:
        return body_version
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise InvalidInput("If-Match must be the event's version, e.g. \"3\"", field="version")
    if body_version is not None and body_version != int(raw):
        raise InvalidInput("If-Match and version disagree", field="version")
    return int(raw)


@router.post("", status_code=201, response_model=EventDetail)
def report(body: EventCreate, response: Response, session: SessionDep, user: Reporter,
           crypto: CryptoDep, settings: EventSettingsDep,
           context: AuditContextDep) -> EventDetail:
    """Report an event (上报): a point with its crs, an address, or a region code."""
    detail = events.report_event(session, actor=user, data=body, crypto=crypto,
                                 settings=settings, context=context)
    _etag(response, detail.version)
    return detail


@router.post("/with-photos", status_code=201, response_model=EventDetail,
             responses={413: {}, 422: {}})
def report_with_photos(
    body: Annotated[str, Form(max_length=20_000, description="the report (JSON, as POST /)")],
    response: Response, session: SessionDep, user: Reporter, crypto: CryptoDep,
    settings: EventSettingsDep, store: PhotoStoreDep, context: AuditContextDep,
    photos: Photos = [],  # noqa: B006 (FastAPI copies defaults)
) -> EventDetail:
    """Report an event with photos (multipart: ``body`` JSON and ``photos`` files)."""
    detail = events.report_event(session, actor=user, data=form_json(body), crypto=crypto,
                                 settings=settings, context=context,
                                 photos=read_photos(photos, store), photo_store=store)
    _etag(response, detail.version)
    return detail


class PublicReceipt(BaseModel):
    """What an anonymous reporter gets back: the code to quote when asking about it."""

    code: str
    state: EventState


def _public_session(engine: EngineDep) -> Iterator[Session]:
    # The public has no jurisdiction; the report is placed by the server, then routed.
    with scoped_session(engine, SYSTEM_SCOPE) as session:
        yield session


@router.post("/public", status_code=201, response_model=PublicReceipt,
             responses={422: {}, 429: {"description": "too many reports; see Retry-After"}})
def report_public(body: EventCreate, session: Annotated[Session, Depends(_public_session)],
                  crypto: CryptoDep, settings: EventSettingsDep,
                  context: AuditContextDep) -> PublicReceipt:
    """Report an event anonymously (群众上报): a mainland mobile number is required, kept
    encrypted; limited per IP address and per phone number each hour."""
    detail = events.report_public(session, data=body, crypto=crypto, ip=context.ip,
                                  settings=settings, context=context)
    return PublicReceipt(code=detail.code, state=detail.state)


@router.get("", response_model=EventPage)
def list_events(session: SessionDep, user: Reader, filters: FilterDep,
                queue: Queue | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> EventPage:
    """List events in the caller's jurisdiction: a work queue and/or filters, most urgent first."""
    return event_queues.list_events(session, actor=user, limit=limit, offset=offset,
                                    filters=filters.model_copy(update={"queue": queue}))


def _export(session: Session, engine: EngineDep, user: Principal, filters: EventFilter,
            fmt: str, settings: EventSettings, context: AuditContextDep, name: str) -> Response:
    # Checks, counts and audits now, before the response starts; rows stream afterwards.
    event_queues.start_export(session, actor=user, filters=filters, fmt=fmt,
                              max_rows=settings.max_export_rows, context=context)
    rows = stream_rows(engine, user, lambda s: event_queues.iter_events(
        s, actor=user, filters=filters, max_rows=settings.max_export_rows))
    return export_response(fmt, rows, EXPORT_COLUMNS, user, name)


_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {MEDIA[f].split(";")[0]: {} for f in EXPORT_FORMATS}}, 403: {}, 422: {}}


@router.get("/export", response_class=Response, responses=_EXPORT_RESPONSES)
def export_events(session: SessionDep, engine: EngineDep, user: Reader, _: Exporter,
                  filters: FilterDep, settings: EventSettingsDep, context: AuditContextDep,
                  format: str = "csv") -> Response:
    """Export the events matching the filters (csv, xlsx, geojson; watermarked, audited)."""
    return _export(session, engine, user, filters, format, settings, context, "events")


@router.get("/queues/{queue}/export", response_class=Response, responses=_EXPORT_RESPONSES)
def export_queue(queue: Queue, session: SessionDep, engine: EngineDep, user: Reader,
                 _: Exporter, filters: FilterDep, settings: EventSettingsDep,
                 context: AuditContextDep, format: str = "csv") -> Response:
    """Export a work queue with the list's filters (csv, xlsx, geojson; watermarked, audited)."""
    return _export(session, engine, user, filters.model_copy(update={"queue": queue}), format,
                   settings, context, f"events-{queue.value}")


@router.get("/queues", response_model=dict[str, int])
def queue_counts(session: SessionDep, user: Reader) -> dict[str, int]:
    """Count the caller's work queues (待受理, 待签收, 待办理, 待核查, 已办理, 已办结 …)."""
    return event_queues.queue_counts(session, actor=user)


@router.get("/{event_id}", response_model=EventDetail, responses={404: {}})
def get_event(event_id: int, response: Response, session: SessionDep, user: Reader,
              settings: EventSettingsDep) -> EventDetail:
    """Return an event with its history, routes and why, assignments and live clocks."""
    detail = events.get_event(session, actor=user, event_id=event_id, settings=settings)
    _etag(response, detail.version)
    return detail


@router.get("/{event_id}/clocks", response_model=list[ClockPublic], responses={404: {}})
def clocks_at(event_id: int, at: datetime, session: SessionDep, user: Reader,
              settings: EventSettingsDep) -> list[ClockPublic]:
    """Return the event's phase clocks as they stood at a past moment ``at``."""
    return events.clocks_at(session, actor=user, event_id=event_id, at=at, settings=settings)


@router.get("/{event_id}/duplicates", response_model=list[DuplicateCandidate],
            responses={404: {}})
def duplicates(event_id: int, session: SessionDep, user: Reader,
               radius_m: Annotated[float, Query(gt=0, le=2000)] = 100.0,
               hours: Annotated[float, Query(gt=0, le=720)] = 72.0) -> list[DuplicateCandidate]:
    """Suggest open events of the same kind nearby in space and time (疑似重复), to merge."""
    return events.find_duplicates(session, actor=user, event_id=event_id, radius_m=radius_m,
                                  hours=hours)


@router.get("/{event_id}/photos", response_model=list[PhotoPublic], responses={404: {}})
def event_photos(event_id: int, session: SessionDep, user: Reader) -> list[PhotoPublic]:
    """List an event's photos: the action each documents, EXIF time (and position, if cleared)."""
    return photos.event_photos(session, actor=user, event_id=event_id)


_IMAGE = {200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}},
          304: {"description": "not modified"}, 403: {}, 404: {}}


def _photo_response(found: photos.PhotoFile, if_none_match: str | None) -> Response:
    # One photo id always names the same bytes (content-addressed): cache it for good, but
    # privately — it is evidence from one jurisdiction.
    headers = {"ETag": found.etag, "Cache-Control": "private, max-age=31536000, immutable",
               "X-Content-Type-Options": "nosniff"}
    if if_none_match and found.etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(found.data, media_type=found.content_type, headers=headers)


@router.get("/photos/{photo_id}", response_class=Response, responses=_IMAGE)
def photo(photo_id: int, session: SessionDep, user: Reader, store: PhotoStoreDep,
          context: AuditContextDep, original: bool = False,
          if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """Return a photo without its GPS position, or ``original=true`` (event.photo_original,
    audited) as uploaded."""
    found = photos.photo_file(session, actor=user, photo_id=photo_id, store=store,
                              variant="original" if original else "full", context=context)
    return _photo_response(found, if_none_match)


@router.get("/photos/{photo_id}/thumbnail", response_class=Response, responses=_IMAGE)
def photo_thumbnail(photo_id: int, session: SessionDep, user: Reader, store: PhotoStoreDep,
                    if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """Return a photo's thumbnail (JPEG, at most 320 px by default)."""
    found = photos.photo_file(session, actor=user, photo_id=photo_id, store=store,
                              variant="thumbnail")
    return _photo_response(found, if_none_match)


@router.post("/{event_id}/actions/{action}/with-photos", response_model=EventDetail,
             responses={404: {}, 409: {}, 413: {}, 422: {}})
def act_with_photos(
    event_id: int, action: str,
    body: Annotated[str, Form(max_length=20_000, description="the action (JSON, as actions/)")],
    response: Response, session: SessionDep, user: Reader, settings: EventSettingsDep,
    store: PhotoStoreDep, context: AuditContextDep,
    if_match: Annotated[str | None, Header()] = None,
    photos: Photos = [],  # noqa: B006 (FastAPI copies defaults)
) -> EventDetail:
    """Apply an action with photos as its evidence (处置 result, 核查 on site): multipart
    ``body`` JSON and ``photos`` files; the version in If-Match or the body."""
    data = form_json(body)
    data["version"] = _if_match(if_match, data.get("version"))
    detail = event_actions.act(session, actor=user, event_id=event_id, action=action,
                               data=data, settings=settings, context=context,
                               photos=read_photos(photos, store), photo_store=store)
    _etag(response, detail.version)
    return detail


@router.post("/{event_id}/actions/{action}", response_model=EventDetail,
             responses={404: {}, 409: {}, 422: {}})
def act(event_id: int, action: str, body: ActionIn, response: Response, session: SessionDep,
        user: Reader, settings: EventSettingsDep, context: AuditContextDep,
        if_match: Annotated[str | None, Header()] = None) -> EventDetail:
    """Apply a lifecycle action (accept, dispatch, sign, handle, verify_pass …); send the
    version you saw in If-Match (or ``version``): a stale one is 409."""
    data = body.model_copy(update={"version": _if_match(if_match, body.version)})
    detail = event_actions.act(session, actor=user, event_id=event_id, action=action,
                               data=data, settings=settings, context=context)
    _etag(response, detail.version)
    return detail
