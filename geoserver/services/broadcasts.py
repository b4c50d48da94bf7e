"""Broadcasts (通知公告): a command centre's message to every worker at or under a region,
with read receipts.

Located data is read inside the reader's jurisdiction; a broadcast is read *below* where it
was sent (a grid worker reads what the township sent), so its row-level policy also lets a
reader see broadcasts sent to regions above their own (migration 0060).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound, PermissionDenied
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit

#: Control characters other than line breaks and tabs (PostgreSQL refuses NUL outright).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class BroadcastIn(BaseModel):
    """A new broadcast: to whom (a region code in the sender's jurisdiction) and what."""

    model_config = ConfigDict(extra="forbid")

    region_code: str = Field(pattern=r"^[0-9A-Za-z]{2,24}$")
    title: str = Field(min_length=1, max_length=100)
    body: str = Field(min_length=1, max_length=4000)
    #: With a time zone: a bare 18:00 would be read in the server's zone, not Shanghai's.
    expires_at: AwareDatetime | None = None

    @field_validator("title", "body")
    @classmethod
    def _printable(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("may not contain control characters")
        return value

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        # An expired broadcast would reach nobody (and the table refuses it).
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must lie in the future")
        return value


class BroadcastPublic(BaseModel):
    """A broadcast as a reader sees it."""

    id: int
    title: str
    body: str
    region_code: str
    sender_name: str
    sent_at: datetime
    expires_at: datetime | None
    read: bool


_SELECT = (
    "SELECT b.id, b.title, b.body, b.region_code, b.sender_name, b.sent_at, b.expires_at, "
    "EXISTS (SELECT 1 FROM broadcast_read r WHERE r.broadcast_id = b.id AND r.user_id = :u) "
    "AS read FROM broadcast b")


def send_broadcast(session: Session, *, actor: Principal, data: BroadcastIn,
                   context: AuditContext = NO_CONTEXT) -> BroadcastPublic:
    """Send a broadcast to a region in the sender's jurisdiction (发布通知公告).

    Raises:
        PermissionDenied: the sender lacks broadcast.send.
        InvalidInput: no such region in the sender's jurisdiction.
    """
    if not actor.can("broadcast.send"):
        raise PermissionDenied("sending broadcasts needs the permission broadcast.send")
    path = session.execute(text("SELECT path::text FROM region WHERE code = :c "
                                "AND valid_to IS NULL"), {"c": data.region_code}).scalar()
    if path is None or not actor.covers(path):
        raise InvalidInput(f"no region {data.region_code} in your jurisdiction",
                           field="region_code")
    new_id = session.execute(text(
        "INSERT INTO broadcast (title, body, region_code, path, sent_by, sender_name, "
        "expires_at) VALUES (:t, :b, :c, CAST(:p AS ltree), :u, :n, :x) RETURNING id"),
        {"t": data.title, "b": data.body, "c": data.region_code, "p": path,
         "u": actor.user_id, "n": actor.username, "x": data.expires_at}).scalar_one()
    audit(session, actor=actor, action="broadcast.send", object_kind="broadcast",
          object_id=str(new_id), after=data.model_dump(mode="json"), context=context)
    row = session.execute(text(_SELECT + " WHERE b.id = :i"),
                          {"i": new_id, "u": actor.user_id}).mappings().one()
    return BroadcastPublic.model_validate(dict(row))


def list_broadcasts(session: Session, *, actor: Principal, limit: int = 20,
                    unread_only: bool = False) -> list[BroadcastPublic]:
    """Return the live broadcasts for the caller's jurisdiction, newest first."""
    if not 1 <= limit <= 200:
        raise InvalidInput("limit must be 1..200", field="limit")
    where = "(b.expires_at IS NULL OR b.expires_at > now())"
    if unread_only:
        where += (" AND NOT EXISTS (SELECT 1 FROM broadcast_read r WHERE r.broadcast_id = b.id "
                  "AND r.user_id = :u)")
    rows = session.execute(text(f"{_SELECT} WHERE {where} ORDER BY b.sent_at DESC, b.id DESC "
                                "LIMIT :n"), {"u": actor.user_id, "n": limit}).mappings().all()
    return [BroadcastPublic.model_validate(dict(r)) for r in rows]


def mark_read(session: Session, *, actor: Principal, broadcast_id: int) -> None:
    """Record that the caller read a broadcast (repeating it changes nothing)."""
    if actor.user_id is None:
        raise PermissionDenied("read receipts need a user account")
    seen = session.execute(text("SELECT 1 FROM broadcast WHERE id = :i"),
                           {"i": broadcast_id}).first()
    if seen is None:
        raise NotFound(f"no broadcast {broadcast_id}")
    session.execute(text("INSERT INTO broadcast_read (broadcast_id, user_id) VALUES (:i, :u) "
                         "ON CONFLICT DO NOTHING"), {"i": broadcast_id, "u": actor.user_id})
