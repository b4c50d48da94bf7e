"""Live patrol positions (实时位置) over SSE: the workers of your jurisdiction, then their moves
and online → offline changes as they happen. Opening the view is audited (行踪轨迹 are
sensitive personal information)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from starlette.responses import StreamingResponse

from api.deps import AuditContextDep, CurrentUser, EngineDep
from api.live import RESYNC, Message, SseEvent, Subscription, hub_of, sse_response
from geoserver.database.engine import scoped_session
from geoserver.domain.principal import Principal
from geoserver.services import patrols
from geoserver.services.audit import AuditContext
from geoserver.services.patrol_store import LIVE_CHANNEL

router = APIRouter(prefix="/api/v1/patrols/live", tags=["patrols"])


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
