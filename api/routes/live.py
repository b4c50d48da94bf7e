"""Live views over SSE.

Patrol positions (实时位置): the workers of your jurisdiction, then their moves and online →
offline changes as they happen; opening the view is audited (行踪轨迹 are sensitive personal
information). Event changes: every action on an event of your jurisdiction, as it commits.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from starlette.responses import StreamingResponse

from api.deps import AuditContextDep, CurrentUser, EngineDep, require
from api.live import (
    EVENTS_CHANNEL,
    RESYNC,
    Message,
    SseEvent,
    Subscription,
    hub_of,
    sse_response,
)
from geoserver.database.engine import scoped_session
from geoserver.domain.principal import Principal
from geoserver.services import patrols
from geoserver.services.audit import AuditContext
from geoserver.services.patrol_store import LIVE_CHANNEL

router = APIRouter(prefix="/api/v1/patrols/live", tags=["patrols"])
event_router = APIRouter(prefix="/api/v1/events", tags=["events"])


def _snapshot(engine: Engine, user: Principal, context: AuditContext) -> dict[str, Any]:
    """Every worker's last position in the user's scope (audited as a live view)."""
    with scoped_session(engine, user.scope) as session:
        return patrols.live_positions(session, actor=user, context=context)


def _feature(m: Message) -> dict[str, Any]:
    """A move or an offline change as a GeoJSON Feature like the snapshot's."""
    return {"type": "Feature", "id": m["user_id"],
            "geometry": {"type": "Point", "coordinates": [m["lon"], m["lat"]]},
            "properties": {"user_id": m["user_id"], "username": m.get("username"),
                           "display_name": m.get("display_name"), "ts": m["ts"],
                           "accuracy": m.get("accuracy"), "online": bool(m.get("online")),
                           "path": m["path"]}}


async def _events(engine: Engine, user: Principal, context: AuditContext, sub: Subscription,
                  snapshot: dict[str, Any]) -> AsyncGenerator[SseEvent | None, None]:
    """The stream: the snapshot, then moves and offline changes inside the user's scope."""
    try:
        yield SseEvent(snapshot, event="snapshot")
        while True:
            items = await sub.get(sub.hub.heartbeat)
            if not items:
                yield None
            for item in items:
                if item is RESYNC:  # moves may have been missed: start again from the table
                    snapshot = await run_in_threadpool(_snapshot, engine, user, context)
                    yield SseEvent(snapshot, event="snapshot")
                elif item.get("change") == "offline":
                    yield SseEvent(_feature(item), event="offline")
                else:
                    yield SseEvent(_feature(item), event="move")
    finally:
        sub.hub.unsubscribe(sub)


@router.get("/stream", response_class=StreamingResponse, responses={
    200: {"description": "text/event-stream: a `snapshot` FeatureCollection, then `move` and "
                         "`offline` Features", "content": {"text/event-stream": {}}},
    403: {"description": "needs patrol.playback"}})
async def live_stream(request: Request, user: CurrentUser, engine: EngineDep,
                      context: AuditContextDep) -> StreamingResponse:
    """Push the live positions of the workers in your jurisdiction (SSE; audited)."""
    hub = hub_of(request)
    # The filter is the caller's own scope, never a request parameter; subscribe before the
    # snapshot so no move in between is lost (the page keeps the newer of two positions).
    sub = hub.subscribe(LIVE_CHANNEL, scope=user.scope)
    try:
        snapshot = await run_in_threadpool(_snapshot, engine, user, context)
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return sse_response(hub, _events(engine, user, context, sub, snapshot))


async def _event_changes(sub: Subscription) -> AsyncGenerator[SseEvent | None, None]:
    """The stream: one ``change`` per event action in the user's scope; ``resync`` if missed."""
    try:
        while True:
            items = await sub.get(sub.hub.heartbeat)
            if not items:
                yield None
            for item in items:
                if item is RESYNC:  # changes may have been missed: the page re-reads its lists
                    yield SseEvent({}, event="resync")
                else:
                    yield SseEvent({k: item.get(k) for k in ("id", "action", "state", "version")},
                                   event="change")
    finally:
        sub.hub.unsubscribe(sub)


@event_router.get("/stream", response_class=StreamingResponse, responses={
    200: {"description": "text/event-stream: `change` {id, action, state, version} per action "
                         "on an event in your jurisdiction; `resync` when changes may have been "
                         "missed", "content": {"text/event-stream": {}}},
    403: {"description": "needs event.read"}})
async def event_stream(request: Request,
                       user: Annotated[Principal, Depends(require("event.read"))]
                       ) -> StreamingResponse:
    """Push every change of an event in your jurisdiction as it commits (SSE)."""
    hub = hub_of(request)
    # Filtered by the caller's own scope (the payload's region path), never a parameter.
    return sse_response(hub, _event_changes(hub.subscribe(EVENTS_CHANNEL, scope=user.scope)))
