"""Events (事件中心): intake, detail with history and "why", lifecycle actions, queues."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.deps import (
    AuditContextDep,
    CryptoDep,
    EngineDep,
    SessionDep,
    SettingsDep,
    require,
)
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.events import EventSource, EventState, Queue
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.services import event_actions, event_queues, events
from geoserver.services.event_clocks import ClockPublic
from geoserver.services.event_queues import EventFilter, EventPage
from geoserver.services.events import (
    ActionIn,
    DuplicateCandidate,
    EventCreate,
    EventDetail,
    EventSettings,
)

router = APIRouter(prefix="/api/v1/events", tags=["events"])

Reader = Annotated[Principal, Depends(require("event.read"))]
Reporter = Annotated[Principal, Depends(require("event.report"))]


@lru_cache(maxsize=1)
def _env_event_settings() -> EventSettings:
    return EventSettings()


def event_settings(settings: SettingsDep) -> EventSettings:
    """Return the event-center settings (``Settings.events`` when present, else from env)."""
    return getattr(settings, "events", None) or _env_event_settings()


EventSettingsDep = Annotated[EventSettings, Depends(event_settings)]


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


class PublicReceipt(BaseModel):
    """What an anonymous reporter gets back: the code to quote when asking about it."""

    code: str
    state: EventState


def _public_session(engine: EngineDep) -> Iterator[Session]:
    # The public has no jurisdiction; the report is placed by the server, then routed.
    with scoped_session(engine, SYSTEM_SCOPE) as session:
        yield session


@router.post("/public", status_code=201, response_model=PublicReceipt)
def report_public(body: EventCreate, session: Annotated[Session, Depends(_public_session)],
                  crypto: CryptoDep, settings: EventSettingsDep,
                  context: AuditContextDep) -> PublicReceipt:
    """Report an event anonymously (群众上报): a phone number is required, kept encrypted."""
    if not body.reporter_phone:
        raise InvalidInput("a phone number is required for public reports",
                           field="reporter_phone")
    data = body.model_copy(update={"source": EventSource.PUBLIC, "resolved_on_spot": False})
    detail = events.report_event(session, actor=events.PUBLIC, data=data, crypto=crypto,
                                 settings=settings, context=context)
    return PublicReceipt(code=detail.code, state=detail.state)


@router.get("", response_model=EventPage)
def list_events(session: SessionDep, user: Reader, queue: Queue | None = None,
                type_code: str | None = None, source: EventSource | None = None,
                state: EventState | None = None,
                sla: Annotated[str | None, Query(pattern="^(green|amber|red)$")] = None,
                region_code: str | None = None, since: datetime | None = None,
                until: datetime | None = None,
                q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
                limit: Annotated[int, Query(ge=1, le=200)] = 50,
                offset: Annotated[int, Query(ge=0)] = 0) -> EventPage:
    """List events in the caller's jurisdiction: a work queue and/or filters, most urgent first."""
    filters = EventFilter(queue=queue, type_code=type_code, source=source, state=state, sla=sla,
                          region_code=region_code, since=since, until=until, q=q)
    return event_queues.list_events(session, actor=user, filters=filters, limit=limit,
                                    offset=offset)


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
