"""Status pushes to partner platforms: the transactional outbox's delivery (状态回推).

Rows are written by a trigger on ``event_history`` (migration 0080) in the transaction that
changed the event. The worker claims due rows with ``FOR UPDATE SKIP LOCKED`` (any number of
workers may run), POSTs each as signed JSON to the partner's callback URL, and records the
outcome: delivered, or retried after an exponential back-off, or — after the last try — put
on the dead-letter list, from which an administrator redelivers it.

Order per (partner, event) is kept: a push waits while an earlier push of the same event to
the same partner is undelivered and not dead. Delivery is at least once (a crash after the
POST and before the commit sends it again): partners deduplicate on ``delivery_id`` or
``history_id``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import PartnerSettings
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, InvalidInput, NotFound
from geoserver.security.cipher import DecryptionFailed
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services import partners
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit

DELIVERY_HEADER = "X-Gridgov-Delivery"
OutboxStatus = Literal["pending", "dead", "delivered"]


class OutboxItem(BaseModel):
    """One status push and how its delivery went."""

    id: int
    partner_code: str
    event_id: int
    history_id: int
    action: str
    to_state: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    dead: bool
    created_at: datetime


@dataclass
class OutboxRun:
    """What one run of the worker did."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0
    ids: list[int] = field(default_factory=list)


def backoff_seconds(attempts: int, settings: PartnerSettings) -> float:
    """Return the wait after the ``attempts``-th failed try: base × 2^(attempts-1), capped."""
    wait = settings.outbox_backoff_seconds * 2 ** max(0, attempts - 1)
    return float(min(settings.outbox_backoff_max_seconds, wait))


_CLAIM = """
SELECT o.id, o.partner_id, o.event_id, o.payload, o.attempts, p.callback_url
FROM partner_outbox o JOIN partner p ON p.id = o.partner_id
WHERE o.delivered_at IS NULL AND NOT o.dead AND o.next_attempt_at <= now()
  AND p.active AND p.callback_url IS NOT NULL AND o.id <> ALL(:seen)
  AND NOT EXISTS (SELECT 1 FROM partner_outbox b WHERE b.partner_id = o.partner_id
                  AND b.event_id = o.event_id AND b.id < o.id
                  AND b.delivered_at IS NULL AND NOT b.dead)
ORDER BY o.next_attempt_at, o.id
LIMIT :n
FOR UPDATE OF o SKIP LOCKED
"""

_RECORD = """
UPDATE partner_outbox SET attempts = attempts + 1, last_attempt_at = clock_timestamp(),
    last_status = :status, last_error = :error,
    delivered_at = CASE WHEN :ok THEN clock_timestamp() END,
    dead = NOT :ok AND attempts + 1 >= :max,
    next_attempt_at = CASE WHEN :ok THEN next_attempt_at
                           ELSE now() + make_interval(secs => :wait) END
WHERE id = :id
RETURNING dead
"""


def _signing_key(session: Session, partner_id: int, crypto: PersonalDataCrypto
                 ) -> tuple[str, str] | None:
    """Return the partner's newest active key (id, secret), which signs the pushes."""
    row = session.execute(text(
        "SELECT key_id, secret_enc FROM partner_key WHERE partner_id = :p AND revoked_at IS NULL "
        "ORDER BY created_at DESC LIMIT 1"), {"p": partner_id}).first()
    if row is None:
        return None
    try:
        return str(row.key_id), crypto.decrypt(row.secret_enc, context=partners.SECRET_CONTEXT)
    except DecryptionFailed:
        return None


def _post(client: httpx.Client, url: str, key: tuple[str, str] | None, outbox_id: int,
          payload: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """POST one signed push; return (HTTP status, error or None when delivered)."""
    if key is None:
        return None, "the partner has no usable active key to sign with"
    body = json.dumps({**payload, "delivery_id": outbox_id}, ensure_ascii=False,
                      default=str).encode()
    parts = urlsplit(url)
    path = parts.path or "/"
    headers = {**partners.signed_headers(key[0], key[1], "POST",
                                         path + (f"?{parts.query}" if parts.query else ""), body),
               "Content-Type": "application/json", DELIVERY_HEADER: str(outbox_id)}
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:2000]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:500]}"


def deliver_due(session: Session, *, crypto: PersonalDataCrypto, settings: PartnerSettings,
                client: httpx.Client | None = None, limit: int | None = None) -> OutboxRun:
    """Deliver due pushes, in order per (partner, event), until none is due or ``limit``.

    Each row stays locked (SKIP LOCKED for other workers) until the caller commits.
    """
    run = OutboxRun()
    own = client is None
    http = client or httpx.Client(timeout=settings.outbox_timeout_seconds,
                                  follow_redirects=False)
    keys: dict[int, tuple[str, str] | None] = {}
    budget = limit or settings.outbox_batch
    try:
        while len(run.ids) < budget:
            rows = session.execute(text(_CLAIM), {"seen": run.ids or [0],
                                                  "n": min(20, budget - len(run.ids))}).all()
            if not rows:
                break
            for row in rows:
                if row.partner_id not in keys:
                    keys[row.partner_id] = _signing_key(session, row.partner_id, crypto)
                status, error = _post(http, row.callback_url, keys[row.partner_id], row.id,
                                      row.payload)
                _record(session, run, row.id, row.attempts, status, error, settings)
    finally:
        if own:
            http.close()
    return run


def _record(session: Session, run: OutboxRun, outbox_id: int, attempts: int,
            status: int | None, error: str | None, settings: PartnerSettings) -> None:
    dead = session.execute(text(_RECORD), {
        "id": outbox_id, "status": status, "error": error, "ok": error is None,
        "max": settings.outbox_max_attempts,
        "wait": backoff_seconds(attempts + 1, settings)}).scalar_one()
    run.ids.append(outbox_id)
    if error is None:
        run.delivered += 1
    elif dead:
        run.dead += 1
    else:
        run.failed += 1


_ITEM_SELECT = """
SELECT o.id, p.code AS partner_code, o.event_id, o.history_id, o.payload->>'action' AS action,
       o.payload->>'to_state' AS to_state, o.payload, o.attempts, o.next_attempt_at,
       o.last_attempt_at, o.last_status, o.last_error, o.delivered_at, o.dead, o.created_at
FROM partner_outbox o JOIN partner p ON p.id = o.partner_id
"""

_STATUS_SQL: Mapping[str, str] = {
    "pending": "o.delivered_at IS NULL AND NOT o.dead",
    "dead": "o.dead",
    "delivered": "o.delivered_at IS NOT NULL",
}


def list_outbox(session: Session, *, actor: Principal, code: str,
                status: OutboxStatus | None = None, before_id: int | None = None,
                limit: int = 100) -> list[OutboxItem]:
    """Return a partner's pushes in the actor's jurisdiction, newest first (dead letters …)."""
    partner = partners.get_partner(session, actor=actor, code=code)
    if status is not None and status not in _STATUS_SQL:
        raise InvalidInput("status is pending, dead or delivered", field="status")
    where = _STATUS_SQL[status] if status else "true"
    rows = session.execute(text(
        f"{_ITEM_SELECT} WHERE o.partner_id = :p AND {where} "
        "AND (CAST(:before AS bigint) IS NULL OR o.id < :before) ORDER BY o.id DESC LIMIT :n"),
        {"p": partner.id, "before": before_id, "n": max(1, min(limit, 500))}).mappings().all()
    return [OutboxItem.model_validate(dict(r)) for r in rows]


def redeliver(session: Session, *, actor: Principal, code: str, outbox_id: int,
              context: AuditContext = NO_CONTEXT) -> OutboxItem:
    """Send a dead (or waiting) push again now, with a fresh count of tries.

    Raises:
        NotFound: no such push of this partner in the actor's jurisdiction.
        Conflict: the push was delivered already.
    """
    partner = partners.get_partner(session, actor=actor, code=code)
    row = session.execute(text(_ITEM_SELECT + " WHERE o.id = :i AND o.partner_id = :p"),
                          {"i": outbox_id, "p": partner.id}).mappings().first()
    if row is None:
        raise NotFound(f"no push {outbox_id} of partner {code}")
    if row["delivered_at"] is not None:
        raise Conflict(f"push {outbox_id} was delivered at {row['delivered_at']:%Y-%m-%d %H:%M}")
    session.execute(text(
        "UPDATE partner_outbox SET dead = false, attempts = 0, next_attempt_at = now() "
        "WHERE id = :i"), {"i": outbox_id})
    audit(session, actor=actor, action="partner.redeliver", object_kind="partner_outbox",
          object_id=str(outbox_id), before={"dead": row["dead"], "attempts": row["attempts"]},
          context=context)
    fresh = session.execute(text(_ITEM_SELECT + " WHERE o.id = :i"), {"i": outbox_id})
    return OutboxItem.model_validate(dict(fresh.mappings().one()))
