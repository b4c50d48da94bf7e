"""Message center (消息中心): a user's messages, unread count, read marks, settings, and the
live stream of new messages (SSE)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from starlette.responses import StreamingResponse

from api.deps import CurrentUser, EngineDep, SessionDep
from api.live import RESYNC, SseEvent, Subscription, hub_of, parse_last_event_id, sse_response
from geoserver.database.engine import scoped_session
from geoserver.domain.principal import Principal
from geoserver.errors import PermissionDenied
from geoserver.services import notifications
from geoserver.services.notifications import (
    MESSAGES_CHANNEL,
    Message,
    MessagePage,
    Preferences,
    PreferencesIn,
)

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])


class UnreadOut(BaseModel):
    """The caller's unread count, in total and by kind."""

    unread: int
    by_kind: dict[str, int]


class ReadOut(BaseModel):
    """A message marked read, and what is left unread."""

    id: int
    unread: int


class ReadAllIn(BaseModel):
    """Which unread messages to mark read: all, or those of one kind or one event."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = Field(default=None, max_length=32)
    event_id: int | None = Field(default=None, ge=1)


class ReadAllOut(BaseModel):
    """How many messages were marked read, and what is left unread."""

    marked: int
    unread: int


@router.get("", response_model=MessagePage)
def list_messages(user: CurrentUser, session: SessionDep, unread: bool = False,
                  kind: Annotated[str | None, Query(max_length=32)] = None,
                  before_id: Annotated[int | None, Query(ge=1)] = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50) -> MessagePage:
    """Return your messages, newest first, with your unread count."""
    return notifications.list_messages(session, actor=user, unread_only=unread, kind=kind,
                                       before_id=before_id, limit=limit)


@router.get("/unread-count", response_model=UnreadOut)
def unread_count(user: CurrentUser, session: SessionDep) -> Any:
    """Return your unread count (the bell's badge)."""
    return notifications.unread(session, actor=user)


@router.post("/read-all", response_model=ReadAllOut)
def read_all(user: CurrentUser, session: SessionDep, body: ReadAllIn | None = None) -> Any:
    """Mark your unread messages read (all of them, or one kind's or one event's)."""
    body = body or ReadAllIn()
    return notifications.mark_all_read(session, actor=user, kind=body.kind,
                                       event_id=body.event_id)


@router.post("/{message_id}/read", response_model=ReadOut)
def read(message_id: Annotated[int, Path(ge=1)], user: CurrentUser,
         session: SessionDep) -> Any:
    """Mark one of your messages read (404 for anyone else's)."""
    return notifications.mark_read(session, actor=user, message_id=message_id)


@router.get("/settings", response_model=Preferences)
def get_settings(user: CurrentUser, session: SessionDep) -> Preferences:
    """Return your message settings (消息设置): kinds received, and 免打扰."""
    return notifications.get_preferences(session, actor=user)


@router.put("/settings", response_model=Preferences)
def put_settings(body: PreferencesIn, user: CurrentUser, session: SessionDep) -> Preferences:
    """Change your message settings; kinds left out keep their setting."""
    return notifications.put_preferences(session, actor=user, data=body)


def _catch_up(engine: Engine, user: Principal, after: int | None) -> tuple[int, list[Message]]:
    """Return the unread count and the messages after ``after`` (None: none)."""
    with scoped_session(engine, user.scope) as session:
        count = notifications.unread(session, actor=user)["unread"]
        missed = ([] if after is None else
                  notifications.messages_after(session, actor=user, after_id=after))
    return count, missed


def _message_event(m: dict[str, Any]) -> SseEvent:
    return SseEvent(m, event="message", id=m["id"])


async def _events(engine: Engine, user: Principal, sub: Subscription, count: int,
                  missed: list[Message]) -> AsyncGenerator[SseEvent | None, None]:
    """The stream: the unread count, missed messages, then new ones and read marks."""
    try:
        seen = max([m.id for m in missed], default=0)
        yield SseEvent({"unread": count}, event="unread")
        for m in missed:
            yield _message_event(m.model_dump(mode="json"))
        while True:
            items = await sub.get(sub.hub.heartbeat)
            if not items:
                yield None
            for item in items:
                if item is RESYNC:  # the hub reconnected: notifications may have been lost
                    count, missed = await run_in_threadpool(_catch_up, engine, user, seen)
                    yield SseEvent({"unread": count}, event="unread")
                    for m in missed:
                        seen = max(seen, m.id)
                        yield _message_event(m.model_dump(mode="json"))
                elif "read" in item:
                    yield SseEvent({"read": item["read"], "unread": item["unread"]},
                                   event="read")
                elif int(item.get("id", 0)) > seen:
                    seen = int(item["id"])
                    yield _message_event({k: v for k, v in item.items() if k != "user_id"})
    finally:
        sub.hub.unsubscribe(sub)


@router.get("/stream", response_class=StreamingResponse, responses={
    200: {"description": "text/event-stream: `unread`, `message` (id = message id) and "
                         "`read` events", "content": {"text/event-stream": {}}}})
async def stream(request: Request, user: CurrentUser, engine: EngineDep,
                 last_event_id: Annotated[str | None, Header(alias="Last-Event-ID",
                                                             max_length=40)] = None
                 ) -> StreamingResponse:
    """Push your new messages live (SSE); after a reconnect, those missed since Last-Event-ID."""
    after = parse_last_event_id(last_event_id)
    if user.user_id is None:
        raise PermissionDenied("messages belong to a user account")
    hub = hub_of(request)
    # Subscribe before reading, so nothing committed in between is missed (ids dedupe).
    sub = hub.subscribe(MESSAGES_CHANNEL, key=user.user_id)
    try:
        count, missed = await run_in_threadpool(_catch_up, engine, user, after)
    except BaseException:
        hub.unsubscribe(sub)
        raise
    return sse_response(hub, _events(engine, user, sub, count, missed))
