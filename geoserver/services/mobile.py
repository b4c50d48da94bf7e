"""The grid worker's phone (掌上应用): requests from its offline outbox applied exactly once,
the worker's tasks in one round trip, and the profile page.

A phone on a patchy network often loses the answer to a request that did succeed, and its
outbox then sends the same request again — minutes or hours later. Every write from the phone
therefore carries a client key made when the worker tapped "submit". The first request with a
key does the work and records the key with a hash of the request; a repeat with the same key
and the same request gets the same event back (and writes nothing); the same key with another
request is a client bug and a Conflict. Concurrent repeats are serialised on an advisory lock
of (user, key), so two tabs retrying at once still make one event.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.events import EventAction, Queue
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, InvalidInput, PermissionDenied
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services import broadcasts, event_actions, event_queues, events
from geoserver.services.audit import NO_CONTEXT, AuditContext
from geoserver.services.event_queues import EventFilter
from geoserver.services.events import EventDetail, EventPublic, EventSettings
from geoserver.services.photos import PhotoStore

_KEY = re.compile(r"^[0-9A-Za-z_-]{8,64}$")
#: Actions a worker takes from the phone (签收, 处置, 核查, 申请退回, 申请延期); the rest are the
#: command centre's.
PHONE_ACTIONS = frozenset({EventAction.SIGN, EventAction.HANDLE, EventAction.VERIFY_PASS,
                           EventAction.VERIFY_FAIL, EventAction.REQUEST_RETURN,
                           EventAction.REQUEST_EXTENSION})
#: The phone's task list: 待签收, 待办理, 待核查.
TASK_QUEUES = (Queue.TO_SIGN, Queue.TO_HANDLE, Queue.TO_VERIFY)


@dataclass(frozen=True)
class PhoneWrite:
    """One write from the phone: its client key, the JSON it carries and its photos' bytes."""

    client_key: str
    body: Mapping[str, Any]
    photos: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class PhoneResult:
    """What a phone write did: the event, and whether this was a repeat of an earlier write."""

    event: EventDetail
    duplicate: bool


def check_client_key(value: str) -> str:
    """Return the client key (8..64 letters, digits, ``-`` or ``_``: a uuid fits)."""
    if not isinstance(value, str) or not _KEY.match(value):
        raise InvalidInput("client_key must be 8..64 letters, digits, - or _ (send a uuid)",
                           field="client_key")
    return value


def request_hash(kind: str, body: Mapping[str, Any], photos: list[bytes]) -> str:
    """Return the hash that tells a repeat of a request from another request."""
    h = hashlib.sha256(kind.encode())
    h.update(json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode())
    for data in photos:
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


def _earlier(session: Session, actor: Principal, key: str, kind: str,
             digest: str) -> int | None:
    """Serialise on (user, key) and return the event an earlier request with the key made."""
    session.execute(text("SELECT pg_advisory_xact_lock(:u, hashtext(:k))"),
                    {"u": int(actor.user_id or 0) % 2**31, "k": key})
    row = session.execute(text(
        "SELECT kind, body_hash, event_id FROM mobile_request WHERE user_id = :u "
        "AND client_key = :k"), {"u": actor.user_id, "k": key}).first()
    if row is None:
        return None
    if row.kind != kind or row.body_hash != digest:
        raise Conflict("this client_key was used for a different request; make a new key "
                       "for each new report or action")
    return int(row.event_id)


def _remember(session: Session, actor: Principal, key: str, kind: str, digest: str,
              event: EventDetail) -> None:
    stored = session.execute(text(
        "INSERT INTO mobile_request (user_id, client_key, kind, body_hash, event_id, path) "
        "VALUES (:u, :k, :kind, :h, :e, CAST(:p AS ltree)) ON CONFLICT DO NOTHING "
        "RETURNING 1"), {"u": actor.user_id, "k": key, "kind": kind, "h": digest,
                         "e": event.id, "p": event.path}).first()
    if stored is None:
        # The key's first use is hidden from this caller now (its event left their scope):
        # refuse rather than make the report twice; the raise rolls back this one.
        raise Conflict("this client_key was used before, for an event outside your "
                       "jurisdiction now; make a new key")


def _need_user(actor: Principal) -> None:
    if actor.user_id is None:
        raise PermissionDenied("phone requests need a user account")


def report(session: Session, *, actor: Principal, write: PhoneWrite, store: PhotoStore,
           crypto: PersonalDataCrypto, settings: EventSettings = events.DEFAULT_SETTINGS,
           context: AuditContext = NO_CONTEXT) -> PhoneResult:
    """Report an event from the phone once, however often the outbox sends it (上报).

    Raises:
        InvalidInput: a bad client key, report or photo (see ``events.report_event``).
        Conflict: the client key was used for a different request.
    """
    _need_user(actor)
    key = check_client_key(write.client_key)
    digest = request_hash("report", write.body, write.photos)
    earlier = _earlier(session, actor, key, "report", digest)
    if earlier is not None:
        return PhoneResult(events.get_event(session, actor=actor, event_id=earlier,
                                            settings=settings), duplicate=True)
    detail = events.report_event(session, actor=actor, data=write.body, crypto=crypto,
                                 settings=settings, context=context, photos=write.photos,
                                 photo_store=store)
    _remember(session, actor, key, "report", digest, detail)
    return PhoneResult(detail, duplicate=False)


def act(session: Session, *, actor: Principal, event_id: int, action: str, write: PhoneWrite,
        store: PhotoStore, settings: EventSettings = events.DEFAULT_SETTINGS,
        context: AuditContext = NO_CONTEXT) -> PhoneResult:
    """Apply a worker's action (签收, 处置 with result photos, 核查 with position) once.

    Raises:
        InvalidInput: an action the phone does not take, a bad key, body or photo; a verifier
            too far from the event (from ``event_actions.act``).
        Conflict: the key was used for another request; a stale version or a state that does
            not allow the action.
    """
    _need_user(actor)
    if action not in {a.value for a in PHONE_ACTIONS}:
        raise InvalidInput(f"the phone takes only {', '.join(sorted(PHONE_ACTIONS))}",
                           field="action")
    key = check_client_key(write.client_key)
    digest = request_hash(f"{action}:{event_id}", write.body, write.photos)
    earlier = _earlier(session, actor, key, action, digest)
    if earlier is not None:
        return PhoneResult(events.get_event(session, actor=actor, event_id=earlier,
                                            settings=settings), duplicate=True)
    detail = event_actions.act(session, actor=actor, event_id=event_id, action=action,
                               data=write.body, settings=settings, context=context,
                               photos=write.photos, photo_store=store)
    _remember(session, actor, key, action, digest, detail)
    return PhoneResult(detail, duplicate=False)


# --- reading -------------------------------------------------------------------------------------


class MyTasks(BaseModel):
    """我的任务: events waiting for the worker, those under reminder or supervision, and
    broadcasts."""

    to_sign: list[EventPublic]
    to_handle: list[EventPublic]
    to_verify: list[EventPublic]
    #: 催办/督办: events of the lists above that a higher level reminded or supervises.
    supervised: list[EventPublic]
    broadcasts: list[broadcasts.BroadcastPublic]
    unread_broadcasts: int


def my_tasks(session: Session, *, actor: Principal, limit: int = 50) -> MyTasks:
    """Return the worker's task lists in one answer (one wake-up of the phone's radio)."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    lists = {q: event_queues.list_events(session, actor=actor, filters=EventFilter(queue=q),
                                         limit=limit).items for q in TASK_QUEUES}
    urged = [e for q in TASK_QUEUES for e in lists[q] if e.supervised or e.reminders > 0]
    sent = broadcasts.list_broadcasts(session, actor=actor, limit=20)
    return MyTasks(to_sign=lists[Queue.TO_SIGN], to_handle=lists[Queue.TO_HANDLE],
                   to_verify=lists[Queue.TO_VERIFY], supervised=urged, broadcasts=sent,
                   unread_broadcasts=sum(not b.read for b in sent))


_POSITIONS = text(
    "SELECT sa.position::text AS position, sa.region_code, r.name AS region_name, "
    "r.level::text AS level, u.code AS org_unit_code, u.name AS org_unit_name "
    "FROM staff_assignment sa LEFT JOIN region r ON r.code = sa.region_code "
    "AND r.valid_to IS NULL LEFT JOIN org_unit u ON u.id = sa.org_unit_id "
    "WHERE sa.user_id = :u AND sa.valid_to IS NULL ORDER BY sa.id")

# Today and this month are Shanghai's, whatever the server's time zone.
_FIGURES = text(
    "WITH bounds AS (SELECT date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai') "
    "AT TIME ZONE 'Asia/Shanghai' AS day0, date_trunc('month', now() AT TIME ZONE "
    "'Asia/Shanghai') AT TIME ZONE 'Asia/Shanghai' AS month0) SELECT "
    "(SELECT count(*) FROM patrol_session s, bounds WHERE s.user_id = :u "
    " AND s.deleted_at IS NULL AND s.started_at >= day0) AS patrols_today, "
    "(SELECT coalesce(sum(mileage_m), 0) FROM patrol_session s, bounds WHERE s.user_id = :u "
    " AND s.deleted_at IS NULL AND s.started_at >= day0) AS mileage_today_m, "
    "(SELECT coalesce(sum(duration_s), 0) FROM patrol_session s, bounds WHERE s.user_id = :u "
    " AND s.deleted_at IS NULL AND s.started_at >= day0) AS duration_today_s, "
    "(SELECT count(*) FROM event e, bounds WHERE e.reporter_user_id = :u "
    " AND e.reported_at >= month0) AS reported_month, "
    "(SELECT count(DISTINCT h.event_id) FROM event_history h, bounds WHERE "
    " h.actor_user_id = :u AND h.action IN ('handle', 'resolve_on_spot') "
    " AND h.at >= month0) AS handled_month")


def profile(session: Session, *, actor: Principal) -> dict[str, Any]:
    """Return the worker's profile (我的): name, positions and grids, and today's figures."""
    _need_user(actor)
    name = session.execute(text("SELECT display_name FROM app_user WHERE id = :u"),
                           {"u": actor.user_id}).scalar()
    positions = [dict(r) for r in session.execute(_POSITIONS, {"u": actor.user_id}).mappings()]
    figures = dict(session.execute(_FIGURES, {"u": actor.user_id}).mappings().one())
    figures["mileage_today_m"] = round(float(figures["mileage_today_m"]), 1)
    return {"user_id": actor.user_id, "username": actor.username,
            "display_name": name or actor.username, "roles": sorted(actor.roles),
            "positions": positions, "grid_codes": list(actor.grid_codes),
            "can": {p: actor.can(p) for p in ("event.report", "event.handle", "event.verify",
                                              "patrol.report", "broadcast.send")},
            "figures": figures}
