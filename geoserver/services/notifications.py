"""Message center (消息中心): a user's notifications, unread counts, read marks and settings.

Notifications are written by the database (migration 0070): a trigger on the event history
creates them for the people of the receiving unit when an event is reported, dispatched,
reminded (催办), supervised (督办), returned, escalated or goes overdue, and one on broadcasts
(通知公告); each is announced on ``NOTIFY gridgov_messages``. This module reads them for their
owner: row-level security keys on the acting user (``gridgov.user_id``), which every function
here sets first, so a user only ever reads or marks their own.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import MessageSettings
from geoserver.domain.principal import Principal
from geoserver.errors import FieldProblem, InvalidInput, NotFound, PermissionDenied

#: The channel new messages and read marks are announced on (payloads carry ``user_id``).
MESSAGES_CHANNEL = "gridgov_messages"

#: 消息类型 and their names, in the order the settings page lists them.
KINDS: dict[str, str] = {
    "new_report": "新事件待受理",
    "new_dispatch": "新派遣",
    "reminder": "催办",
    "supervision": "督办",
    "overdue": "超时",
    "return_requested": "申请退回",
    "returned": "退回",
    "escalated": "上报",
    "verify_failed": "核查不通过",
    "broadcast": "通知公告",
}
#: Kinds nobody may turn off: supervision (督办) is a formal instruction from a higher level.
ALWAYS_ON = frozenset({"supervision"})
MAX_PAGE = 200


class Message(BaseModel):
    """One notification as its owner sees it."""

    id: int
    kind: str
    kind_name: str
    title: str
    body: str
    event_id: int | None
    broadcast_id: int | None
    created_at: datetime
    read_at: datetime | None


class MessagePage(BaseModel):
    """A page of messages, newest first, with the owner's unread count."""

    items: list[Message]
    unread: int
    next_before_id: int | None


class Preferences(BaseModel):
    """消息设置: which kinds a user receives, and 免打扰 (kept and counted, no pop-up)."""

    kinds: dict[str, bool]
    muted: bool


class PreferencesIn(BaseModel):
    """A change of message settings; kinds left out keep their setting."""

    model_config = ConfigDict(extra="forbid")

    kinds: dict[str, bool] = Field(default_factory=dict)
    muted: bool | None = None


def _own(session: Session, actor: Principal) -> int:
    """Make the actor the owner row-level security checks against, for this transaction."""
    if actor.user_id is None:
        raise PermissionDenied("messages belong to a user account")
    session.execute(text("SELECT set_config('gridgov.user_id', :u, true)"),
                    {"u": str(actor.user_id)})
    return actor.user_id


def _kind(kind: str | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"unknown message kind {kind!r}; one of {', '.join(KINDS)}",
                           field="kind")
    return kind


def _message(row: Any) -> Message:
    return Message(kind_name=KINDS.get(row.kind, row.kind), **row._mapping)


_COLUMNS = "id, kind, title, body, event_id, broadcast_id, created_at, read_at"


def unread(session: Session, *, actor: Principal) -> dict[str, Any]:
    """Return the actor's unread count, in total and by kind."""
    _own(session, actor)
    rows = session.execute(text("SELECT kind, count(*) AS n FROM notification "
                                "WHERE read_at IS NULL GROUP BY kind")).all()
    by_kind = {r.kind: int(r.n) for r in rows}
    return {"unread": sum(by_kind.values()), "by_kind": by_kind}


def list_messages(session: Session, *, actor: Principal, unread_only: bool = False,
                  kind: str | None = None, before_id: int | None = None,
                  limit: int = 50) -> MessagePage:
    """Return the actor's messages, newest first (keyset: ``before_id`` is the last id seen)."""
    _own(session, actor)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE}", field="limit")
    rows = session.execute(text(
        f"SELECT {_COLUMNS} FROM notification "
        "WHERE (NOT :u OR read_at IS NULL) AND (CAST(:k AS text) IS NULL OR kind = :k) "
        "AND (CAST(:b AS bigint) IS NULL OR id < :b) ORDER BY id DESC LIMIT :l"),
        {"u": unread_only, "k": _kind(kind), "b": before_id, "l": limit + 1}).all()
    items = [_message(r) for r in rows[:limit]]
    more = len(rows) > limit
    return MessagePage(items=items, unread=unread(session, actor=actor)["unread"],
                       next_before_id=items[-1].id if more else None)


def messages_after(session: Session, *, actor: Principal, after_id: int,
                   limit: int = 100) -> list[Message]:
    """Return the actor's messages newer than ``after_id``, oldest first (stream resume)."""
    _own(session, actor)
    rows = session.execute(text(
        f"SELECT {_COLUMNS} FROM notification WHERE id > :a ORDER BY id LIMIT :l"),
        {"a": after_id, "l": limit}).all()
    return [_message(r) for r in rows]


def _announce_read(session: Session, user_id: int, read: list[int] | str, left: int) -> None:
    """Tell the owner's other open pages (delivered on commit, like the read mark itself)."""
    note = {"user_id": user_id, "read": read, "unread": left}
    session.execute(text("SELECT pg_notify(:c, :m)"),
                    {"c": MESSAGES_CHANNEL, "m": json.dumps(note)})


def mark_read(session: Session, *, actor: Principal, message_id: int) -> dict[str, Any]:
    """Mark one of the actor's messages read (again is harmless); return the unread count.

    Raises:
        NotFound: no such message of the actor's (another user's message included).
    """
    user_id = _own(session, actor)
    row = session.execute(text(
        "UPDATE notification SET read_at = coalesce(read_at, now()) WHERE id = :i "
        "RETURNING id"), {"i": message_id}).first()
    if row is None:
        raise NotFound(f"no message {message_id}")
    left = unread(session, actor=actor)["unread"]
    _announce_read(session, user_id, [message_id], left)
    return {"id": message_id, "unread": left}


def mark_all_read(session: Session, *, actor: Principal, kind: str | None = None,
                  event_id: int | None = None) -> dict[str, Any]:
    """Mark all the actor's unread messages read (of one kind or event, if given)."""
    user_id = _own(session, actor)
    result = session.execute(text(
        "UPDATE notification SET read_at = now() WHERE read_at IS NULL "
        "AND (CAST(:k AS text) IS NULL OR kind = :k) "
        "AND (CAST(:e AS bigint) IS NULL OR event_id = :e)"),
        {"k": _kind(kind), "e": event_id})
    marked = int(getattr(result, "rowcount", 0) or 0)
    left = unread(session, actor=actor)["unread"]
    if marked:
        _announce_read(session, user_id, "all", left)
    return {"marked": marked, "unread": left}


def get_preferences(session: Session, *, actor: Principal) -> Preferences:
    """Return the actor's message settings (every kind on, not muted, until changed)."""
    _own(session, actor)
    row = session.execute(text(
        "SELECT disabled_kinds, muted FROM notification_setting")).first()
    disabled = set(row.disabled_kinds) if row else set()
    return Preferences(kinds={k: k not in disabled for k in KINDS},
                       muted=bool(row.muted) if row else False)


def put_preferences(session: Session, *, actor: Principal, data: PreferencesIn) -> Preferences:
    """Change the actor's message settings.

    Raises:
        InvalidInput: an unknown kind, or turning off a kind that is always on (督办).
    """
    user_id = _own(session, actor)
    problems = [FieldProblem(f"kinds.{k}", f"unknown message kind {k!r}")
                for k in data.kinds if k not in KINDS]
    problems += [FieldProblem(f"kinds.{k}", f"{KINDS[k]} cannot be turned off")
                 for k, on in data.kinds.items() if k in ALWAYS_ON and not on]
    if problems:
        raise InvalidInput(problems[0].message, problems=problems)
    current = get_preferences(session, actor=actor)
    kinds = {**current.kinds, **data.kinds}
    muted = current.muted if data.muted is None else data.muted
    session.execute(text(
        "INSERT INTO notification_setting (user_id, disabled_kinds, muted) VALUES (:u, :d, :m) "
        "ON CONFLICT (user_id) DO UPDATE SET disabled_kinds = EXCLUDED.disabled_kinds, "
        "muted = EXCLUDED.muted, updated_at = now()"),
        {"u": user_id, "d": sorted(k for k, on in kinds.items() if not on), "m": muted})
    return Preferences(kinds=kinds, muted=muted)


def prune(session: Session, *, settings: MessageSettings) -> int:
    """Delete read messages past their retention, and any past ``keep_days``; return how many."""
    total = 0
    while True:
        n = int(session.execute(text(
            "SELECT gridgov_meta.prune_notifications(:r, :a, :b)"),
            {"r": settings.keep_read_days, "a": settings.keep_days, "b": 50_000}).scalar_one())
        total += n
        if n < 50_000:
            return total
