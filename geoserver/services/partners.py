"""Partner platforms (接口管理): 110 linkage (风动/警综), the 12345 hotline, the provincial 矛调.

A partner calls gridgov with HMAC-signed requests: ``HMAC-SHA256(secret, METHOD \\n PATH \\n
TIMESTAMP \\n NONCE \\n sha256(body))`` in hex, with its key id, the unix timestamp (±window)
and a nonce that may be used once. It reports events into its jurisdiction (the event keeps
the partner as its source and the partner's own number), reads the events that are its own,
signs for and handles events dispatched to its unit (签收, 处置), and closes the events it
reported once they are handled (办结 after its 回访). Every status change of its events is
pushed back to it by ``partner_outbox``.

Authentication (``authenticate``) runs in a short transaction of its own that commits the
nonce, so a replay is refused even when the first request failed; the work runs in a second
transaction with the partner's scope, together with its Idempotency-Key record, so a failed
request leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.config import PartnerSettings
from geoserver.domain.events import EventAction, EventSource, Severity
from geoserver.domain.principal import Principal
from geoserver.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
)
from geoserver.security.cipher import DecryptionFailed
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services import dberrors, event_actions, events
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.event_types import rowcount
from geoserver.services.events import EventDetail, EventSettings

#: Request headers of a signed call.
KEY_HEADER = "X-Gridgov-Key"
TIMESTAMP_HEADER = "X-Gridgov-Timestamp"
NONCE_HEADER = "X-Gridgov-Nonce"
SIGNATURE_HEADER = "X-Gridgov-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SECRET_CONTEXT = "partner_key.secret"
RATE_WINDOW_SECONDS = 60

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
_SIGNATURE = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class PartnerKind(StrEnum):
    """对接平台类型: police_110 110联动 (风动/警综), hotline_12345 12345热线, mediation 省矛调."""

    POLICE_110 = "police_110"
    HOTLINE_12345 = "hotline_12345"
    MEDIATION = "mediation"


#: The event source a partner's reports carry.
SOURCE_OF_KIND: Mapping[PartnerKind, EventSource] = {
    PartnerKind.POLICE_110: EventSource.POLICE_110,
    PartnerKind.HOTLINE_12345: EventSource.HOTLINE_12345,
    PartnerKind.MEDIATION: EventSource.EXTERNAL,
}


class PartnerAction(StrEnum):
    """What a partner may do to its events: accept 签收 (dispatched to its unit), handle 处置
    (with the result), close 办结 (an event it reported, once handled or verified)."""

    ACCEPT = "accept"
    HANDLE = "handle"
    CLOSE = "close"


_ACTION_OF: Mapping[PartnerAction, tuple[EventAction, str]] = {
    PartnerAction.ACCEPT: (EventAction.SIGN, "event.handle"),
    PartnerAction.HANDLE: (EventAction.HANDLE, "event.handle"),
    PartnerAction.CLOSE: (EventAction.CLOSE, "event.dispatch"),
}

# --- signing (shared with the outbox and the partners' own code) ---------------------------------


def body_digest(body: bytes) -> str:
    """Return the hex sha256 of a request body (of b"" for a GET)."""
    return hashlib.sha256(body).hexdigest()


def canonical_request(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Return the text that is signed: method, path with query, timestamp, nonce, body hash."""
    return "\n".join((method.upper(), path, timestamp, nonce, body_digest(body)))


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Return the hex HMAC-SHA256 signature of a request."""
    message = canonical_request(method, path, timestamp, nonce, body).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(key_id: str, secret: str, method: str, path: str, body: bytes,
                   *, now: float | None = None) -> dict[str, str]:
    """Return the headers that sign a request (a fresh nonce, the current time)."""
    timestamp = str(int(now if now is not None else time.time()))
    nonce = secrets.token_urlsafe(18)
    return {KEY_HEADER: key_id, TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce,
            SIGNATURE_HEADER: sign(secret, method, path, timestamp, nonce, body)}


# --- models --------------------------------------------------------------------------------------

_CODE = r"^[a-z][a-z0-9_]{1,31}$"
_REGION = r"^[0-9]{2,24}$"
_REF = r"^[A-Za-z0-9_.:/-]{1,64}$"


class PartnerCreate(BaseModel):
    """A new partner platform; its service account is made with it."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=_CODE)
    name: str = Field(min_length=1, max_length=100)
    kind: PartnerKind
    scope: list[str] = Field(min_length=1, max_length=50, description="region codes")
    callback_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    rate_limit_per_minute: int = Field(default=120, ge=1, le=100_000)
    org_unit_code: str | None = Field(default=None, max_length=40)
    note: str = Field(default="", max_length=500)


class PartnerUpdate(BaseModel):
    """Changes to a partner; omitted fields stay."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    active: bool | None = None
    scope: list[str] | None = Field(default=None, min_length=1, max_length=50)
    callback_url: str | None = Field(default=None, max_length=500, pattern=r"^(https?://\S+)?$")
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=100_000)
    org_unit_code: str | None = Field(default=None, max_length=40)
    note: str | None = Field(default=None, max_length=500)


class KeyPublic(BaseModel):
    """A signing key, without its secret."""

    key_id: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewKey(KeyPublic):
    """A key just made: the secret is shown this once."""

    secret: str


class PartnerPublic(BaseModel):
    """A partner as the administrator sees it."""

    id: int
    code: str
    name: str
    kind: PartnerKind
    active: bool
    scope: list[str]
    callback_url: str | None
    rate_limit_per_minute: int
    org_unit_code: str | None
    service_username: str | None
    note: str
    keys: list[KeyPublic]
    version: int


class PartnerReport(BaseModel):
    """An event reported by a partner: its own number, a type, what and where — a point with
    its ``crs`` (WGS84, CGCS2000, GCJ02, BD09), an address text, or a region code."""

    model_config = ConfigDict(extra="forbid")

    partner_ref: str = Field(pattern=_REF, description="the partner's own number (警情号/工单号)")
    type_code: str = Field(min_length=1, max_length=32)
    severity: Severity = Severity.NORMAL
    title: str | None = Field(default=None, min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=4000)
    location: dict[str, Any] | None = None
    crs: str | None = Field(default=None, max_length=20)
    address: str | None = Field(default=None, min_length=1, max_length=500)
    region_code: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{2,24}$")
    reporter_name: str | None = Field(default=None, max_length=50)
    reporter_phone: str | None = Field(default=None, max_length=30)


class PartnerActionIn(BaseModel):
    """What a partner's action carries: the version it saw (optional), a note, the handling
    result (处置, required there), and on accept its own number for a dispatched event."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1)
    note: str | None = Field(default=None, max_length=2000)
    result: str | None = Field(default=None, max_length=2000)
    partner_ref: str | None = Field(default=None, pattern=_REF)


class PartnerHistoryItem(BaseModel):
    """One step of an event's history, as a partner sees it."""

    id: int
    at: datetime
    action: str
    from_state: str | None
    to_state: str
    note: str | None
    result: str | None


class PartnerEvent(BaseModel):
    """An event of the partner's: state, where it went and why, and its history."""

    event_id: int
    code: str
    partner_ref: str | None
    origin: str
    type_code: str
    severity: str
    state: str
    title: str
    address: str | None
    lon: float | None
    lat: float | None
    grid_code: str | None
    routed_to: str | None
    route_reason: str | None
    reported_at: datetime
    closed_at: datetime | None
    version: int
    history: list[PartnerHistoryItem]


# --- administration ------------------------------------------------------------------------------


def _require_manager(actor: Principal) -> None:
    if not actor.can("partner.manage"):
        raise PermissionDenied("partner platforms need the permission partner.manage")


def _scope_paths(session: Session, codes: list[str]) -> dict[str, str]:
    """Return the current path of each region code the caller sees (RLS on region)."""
    found = session.execute(text(
        "SELECT code, path::text AS path FROM region WHERE code = ANY(:c) AND valid_to IS NULL"),
        {"c": codes}).all()
    return {r.code: r.path for r in found}


def _checked_scope(session: Session, actor: Principal, codes: list[str]) -> dict[str, str]:
    """Return the paths of a new scope; every region must exist in the actor's jurisdiction."""
    for code in codes:
        if not re.match(_REGION, code):
            raise InvalidInput(f"{code!r} is not a region code", field="scope")
    paths = _scope_paths(session, list(dict.fromkeys(codes)))
    for code in codes:
        if code not in paths or not actor.covers(paths[code]):
            raise InvalidInput(f"no region {code} in your jurisdiction", field="scope")
    return paths


_PARTNER_SELECT = """
SELECT p.id, p.code, p.name, p.kind, p.active, p.callback_url, p.rate_limit_per_minute,
       p.org_unit_id, p.user_id, p.note, p.version, o.code AS org_unit_code,
       u.username AS service_username,
       coalesce((SELECT array_agg(s.region_code ORDER BY s.region_code) FROM partner_scope s
                 WHERE s.partner_id = p.id), '{}') AS scope_codes,
       coalesce((SELECT array_agg(r.path::text) FROM partner_scope s JOIN region r
                 ON r.code = s.region_code AND r.valid_to IS NULL
                 WHERE s.partner_id = p.id), '{}') AS scope_paths
FROM partner p
LEFT JOIN LATERAL gridgov_meta.event_org_units(ARRAY[p.org_unit_id], NULL) o ON true
LEFT JOIN app_user u ON u.id = p.user_id
"""


def _covers_all(actor: Principal, row: Mapping[Any, Any]) -> bool:
    """Whether every region of the partner's scope is visible to and inside the actor's."""
    paths = list(row["scope_paths"])
    return (bool(paths) and len(paths) == len(row["scope_codes"])
            and all(actor.covers(p) for p in paths))


def _load(session: Session, actor: Principal, code: str) -> Mapping[Any, Any]:
    """Return a partner whose whole scope lies in the actor's jurisdiction, else NotFound."""
    _require_manager(actor)
    row = session.execute(text(_PARTNER_SELECT + " WHERE p.code = :c"),
                          {"c": code}).mappings().first()
    if row is None or not _covers_all(actor, row):
        raise NotFound(f"no partner {code}")
    return row


def _keys(session: Session, partner_id: int) -> list[KeyPublic]:
    rows = session.execute(text(
        "SELECT key_id, created_at, revoked_at, last_used_at FROM partner_key "
        "WHERE partner_id = :p ORDER BY created_at DESC, key_id"), {"p": partner_id}).mappings()
    return [KeyPublic.model_validate(dict(r)) for r in rows]


def _public(session: Session, row: Mapping[Any, Any]) -> PartnerPublic:
    return PartnerPublic(
        id=row["id"], code=row["code"], name=row["name"], kind=row["kind"],
        active=row["active"], scope=list(row["scope_codes"]), callback_url=row["callback_url"],
        rate_limit_per_minute=row["rate_limit_per_minute"], org_unit_code=row["org_unit_code"],
        service_username=row["service_username"], note=row["note"],
        keys=_keys(session, int(row["id"])), version=row["version"])


def list_partners(session: Session, *, actor: Principal) -> list[PartnerPublic]:
    """Return the partners whose scope lies in the actor's jurisdiction."""
    _require_manager(actor)
    rows = session.execute(text(_PARTNER_SELECT + " ORDER BY p.code")).mappings().all()
    return [_public(session, r) for r in rows if _covers_all(actor, r)]


def get_partner(session: Session, *, actor: Principal, code: str) -> PartnerPublic:
    """Return one partner with its keys (never their secrets)."""
    return _public(session, _load(session, actor, code))


def _org_unit(session: Session, code: str) -> tuple[int, str, str]:
    """Return (id, region code, path) of a department or platform unit the caller sees."""
    row = session.execute(text(
        "SELECT id, kind, region_code, path::text AS path FROM org_unit WHERE code = :c"),
        {"c": code}).first()
    if row is None or row.kind not in ("department", "platform"):
        raise InvalidInput(f"no department or platform {code} in your jurisdiction",
                           field="org_unit_code")
    return int(row.id), str(row.region_code), str(row.path)


def _bind_unit(session: Session, user_id: int, code: str | None) -> int | None:
    """Make the service account the (only) member of the partner's unit; return its id."""
    session.execute(text("UPDATE staff_assignment SET valid_to = now() WHERE user_id = :u "
                         "AND valid_to IS NULL"), {"u": user_id})
    if not code:
        return None
    unit_id, region, path = _org_unit(session, code)
    session.execute(text(
        "INSERT INTO staff_assignment (user_id, position, region_code, org_unit_id, path) "
        "VALUES (:u, 'department_staff', :r, :o, CAST(:p AS ltree))"),
        {"u": user_id, "r": region, "o": unit_id, "p": path})
    return unit_id


def _write(session: Session, sql: str, params: Mapping[str, Any],
           fields: Mapping[str, str] | None = None) -> Any:
    """Run one write in a savepoint; map database errors to domain errors."""
    try:
        with session.begin_nested():
            return session.execute(text(sql), params).first()
    except DBAPIError as exc:
        raise dberrors.translate(exc, fields=fields) from None


def create_partner(session: Session, *, actor: Principal, data: PartnerCreate | Mapping[str, Any],
                   context: AuditContext = NO_CONTEXT) -> PartnerPublic:
    """Register a partner platform with its scope and service account (no key yet).

    Raises:
        PermissionDenied: the actor lacks partner.manage.
        InvalidInput: a region outside the actor's jurisdiction, an unknown unit.
        Conflict: the code (or the service account's name) is taken, or the unit has a partner.
    """
    _require_manager(actor)
    new: PartnerCreate = events.validated(PartnerCreate, data)
    paths = _checked_scope(session, actor, new.scope)
    home = sorted(new.scope, key=lambda c: (len(paths[c]), c))[0]
    user = _write(session, (
        "INSERT INTO app_user (username, display_name, password_hash, home_region_code, path) "
        "VALUES (:u, :d, NULL, :c, CAST(:p AS ltree)) RETURNING id"),
        {"u": f"partner.{new.code}", "d": new.name, "c": home, "p": paths[home]},
        {"app_user_username": "code"})
    unit_id = _bind_unit(session, int(user.id), new.org_unit_code)
    row = _write(session, (
        "INSERT INTO partner (code, name, kind, callback_url, rate_limit_per_minute, "
        "org_unit_id, user_id, note) VALUES (:code, :name, :kind, :url, :rate, :unit, :uid, "
        ":note) RETURNING id"),
        {"code": new.code, "name": new.name, "kind": new.kind.value, "url": new.callback_url,
         "rate": new.rate_limit_per_minute, "unit": unit_id, "uid": user.id, "note": new.note},
        {"partner_code_key": "code", "partner_org_unit": "org_unit_code"})
    _set_scope(session, int(row.id), list(paths))
    audit(session, actor=actor, action="partner.create", object_kind="partner",
          object_id=new.code, after=new.model_dump(mode="json"), context=context)
    return get_partner(session, actor=actor, code=new.code)


def _set_scope(session: Session, partner_id: int, codes: list[str]) -> None:
    session.execute(text("DELETE FROM partner_scope WHERE partner_id = :p"), {"p": partner_id})
    session.execute(text("INSERT INTO partner_scope (partner_id, region_code) "
                         "SELECT :p, unnest(CAST(:c AS text[]))"), {"p": partner_id, "c": codes})


def update_partner(session: Session, *, actor: Principal, code: str,
                   data: PartnerUpdate | Mapping[str, Any],
                   context: AuditContext = NO_CONTEXT) -> PartnerPublic:
    """Change a partner: name, active, scope, callback, rate limit, unit, note."""
    change: PartnerUpdate = events.validated(PartnerUpdate, data)
    row = _load(session, actor, code)
    given = change.model_dump(exclude_unset=True)
    if "scope" in given and change.scope is not None:
        _set_scope(session, int(row["id"]), list(_checked_scope(session, actor, change.scope)))
    unit_id = row["org_unit_id"]
    if "org_unit_code" in given and row["user_id"] is not None:
        unit_id = _bind_unit(session, int(row["user_id"]), change.org_unit_code)
    editable = ("name", "active", "rate_limit_per_minute", "note")
    sets: dict[str, Any] = {k: given[k] for k in editable if given.get(k) is not None}
    if "callback_url" in given:
        sets["callback_url"] = change.callback_url or None
    assignments = "".join(f", {k} = :{k}" for k in sets)
    _write(session, f"UPDATE partner SET org_unit_id = :unit, updated_at = now(), "
                    f"version = version + 1{assignments} WHERE id = :id RETURNING id",
           {"unit": unit_id, "id": row["id"], **sets}, {"partner_org_unit": "org_unit_code"})
    audit(session, actor=actor, action="partner.update", object_kind="partner", object_id=code,
          before={k: row[k] for k in ("name", "active", "callback_url", "rate_limit_per_minute")},
          after=change.model_dump(mode="json", exclude_unset=True), context=context)
    return get_partner(session, actor=actor, code=code)


def delete_partner(session: Session, *, actor: Principal, code: str,
                   context: AuditContext = NO_CONTEXT) -> None:
    """Delete a partner that has no events; one with events is deactivated instead (409)."""
    row = _load(session, actor, code)
    try:
        # partner_event refuses the delete (RESTRICT) wherever its links lie, seen or not.
        with session.begin_nested():
            session.execute(text("DELETE FROM partner WHERE id = :p"), {"p": row["id"]})
    except DBAPIError:
        raise Conflict(f"partner {code} has events: deactivate it (active=false) "
                       "instead") from None
    if row["user_id"] is not None:
        # Its service account goes too, so the code can be registered again.
        session.execute(text("DELETE FROM app_user WHERE id = :u"), {"u": row["user_id"]})
    audit(session, actor=actor, action="partner.delete", object_kind="partner", object_id=code,
          context=context)


def create_key(session: Session, *, actor: Principal, code: str, crypto: PersonalDataCrypto,
               context: AuditContext = NO_CONTEXT) -> NewKey:
    """Make a new signing key (rotation): at most two stay active, the oldest is revoked."""
    row = _load(session, actor, code)
    key_id = f"gk_{secrets.token_hex(10)}"
    secret = secrets.token_urlsafe(32)
    session.execute(text(
        "INSERT INTO partner_key (key_id, partner_id, secret_enc, created_by, created_at) "
        "VALUES (:k, :p, :s, :by, clock_timestamp())"),
        {"k": key_id, "p": row["id"], "s": crypto.encrypt(secret, context=SECRET_CONTEXT),
         "by": actor.user_id})
    revoked = session.execute(text(
        "UPDATE partner_key SET revoked_at = now() WHERE partner_id = :p AND revoked_at IS NULL "
        "AND key_id NOT IN (SELECT key_id FROM partner_key WHERE partner_id = :p "
        "AND revoked_at IS NULL ORDER BY created_at DESC, key_id = :k DESC LIMIT 2) "
        "RETURNING key_id"), {"p": row["id"], "k": key_id}).scalars().all()
    audit(session, actor=actor, action="partner.key_create", object_kind="partner",
          object_id=code, after={"key_id": key_id, "revoked": list(revoked)}, context=context)
    made = session.execute(text("SELECT key_id, created_at, revoked_at, last_used_at "
                                "FROM partner_key WHERE key_id = :k"), {"k": key_id}).mappings()
    return NewKey(**dict(made.one()), secret=secret)


def revoke_key(session: Session, *, actor: Principal, code: str, key_id: str,
               context: AuditContext = NO_CONTEXT) -> KeyPublic:
    """Revoke one signing key now."""
    row = _load(session, actor, code)
    got = session.execute(text(
        "UPDATE partner_key SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = :k "
        "AND partner_id = :p RETURNING key_id, created_at, revoked_at, last_used_at"),
        {"k": key_id, "p": row["id"]}).mappings().first()
    if got is None:
        raise NotFound(f"no key {key_id} of partner {code}")
    audit(session, actor=actor, action="partner.key_revoke", object_kind="partner",
          object_id=code, after={"key_id": key_id}, context=context)
    return KeyPublic.model_validate(dict(got))


# --- authentication ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedRequest:
    """What authentication needs from a request: method, raw path with query, headers, body."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class PartnerCaller:
    """An authenticated partner: who it is, its jurisdiction, and whether it must slow down."""

    id: int
    code: str
    kind: PartnerKind
    user_id: int | None
    key_id: str
    scope: tuple[str, ...]
    retry_after: int | None = None

    def principal(self, *extra: str) -> Principal:
        """Return the partner as an actor: report and read, plus ``extra`` permissions."""
        return Principal(user_id=self.user_id, username=f"partner.{self.code}",
                         scope=self.scope,
                         permissions=frozenset({"event.read", "event.report", *extra}))


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise Unauthenticated(f"missing {name}: sign the request (see the partner guide)")
    return value.strip()


_CALLER_SQL = """
SELECT k.key_id, k.secret_enc, p.id, p.code, p.kind, p.active, p.user_id,
       p.rate_limit_per_minute,
       coalesce((SELECT array_agg(r.path::text) FROM partner_scope s JOIN region r
                 ON r.code = s.region_code AND r.valid_to IS NULL
                 WHERE s.partner_id = p.id), '{}') AS scope
FROM partner_key k JOIN partner p ON p.id = k.partner_id
WHERE k.key_id = :k AND k.revoked_at IS NULL
"""


def authenticate(session: Session, *, request: SignedRequest, crypto: PersonalDataCrypto,
                 settings: PartnerSettings, now: float | None = None) -> PartnerCaller:
    """Check a signed request and record its nonce; say when the rate limit is exceeded.

    Run it in a transaction of its own with system scope and commit it whatever the request
    then does, so a replay is refused even when the first request failed.

    Raises:
        Unauthenticated: missing headers, an unknown or revoked key, a timestamp outside the
            window, a wrong signature, a nonce seen before.
        PermissionDenied: the partner is deactivated.
        TooLarge: the body exceeds the partner body limit.
    """
    if len(request.body) > settings.max_body_bytes:
        raise TooLarge(f"partner requests are limited to {settings.max_body_bytes} bytes")
    key_id, timestamp, nonce, signature = (_header(request.headers, h) for h in (
        KEY_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER))
    row = (session.execute(text(_CALLER_SQL), {"k": key_id}).mappings().first()
           if _KEY_ID.match(key_id) else None)
    if row is None:
        raise Unauthenticated("unknown or revoked key")
    clock = now if now is not None else time.time()
    if not timestamp.isdigit() or abs(clock - int(timestamp)) > settings.timestamp_window_seconds:
        raise Unauthenticated(f"{TIMESTAMP_HEADER} must be the current unix time "
                              f"(±{settings.timestamp_window_seconds} s)")
    if not _NONCE.match(nonce):
        raise Unauthenticated(f"{NONCE_HEADER} must be 16..64 letters, digits, - or _")
    try:
        secret = crypto.decrypt(row["secret_enc"], context=SECRET_CONTEXT)
    except DecryptionFailed:
        raise Unauthenticated("unknown or revoked key") from None
    expected = sign(secret, request.method, request.path, timestamp, nonce, request.body)
    if not (_SIGNATURE.match(signature.lower())
            and hmac.compare_digest(expected, signature.lower())):
        raise Unauthenticated("the signature does not match the request")
    if not row["active"]:
        raise PermissionDenied(f"partner {row['code']} is deactivated")
    retry_after = _record_nonce(session, int(row["id"]), nonce, int(row["rate_limit_per_minute"]))
    session.execute(text("UPDATE partner_key SET last_used_at = now() WHERE key_id = :k AND "
                         "(last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"),
                    {"k": key_id})
    return PartnerCaller(id=int(row["id"]), code=row["code"], kind=PartnerKind(row["kind"]),
                         user_id=row["user_id"], key_id=key_id, scope=tuple(row["scope"]),
                         retry_after=retry_after)


def _record_nonce(session: Session, partner_id: int, nonce: str, limit: int) -> int | None:
    """Store the nonce (refusing a replay); return seconds to wait when over the rate limit."""
    seen = session.execute(text(
        "SELECT count(*) AS n, greatest(1, ceil(:w - extract(epoch FROM now() - min(seen_at))))"
        "::int AS wait FROM partner_nonce WHERE partner_id = :p AND counted "
        "AND seen_at > now() - make_interval(secs => :w)"),
        {"p": partner_id, "w": RATE_WINDOW_SECONDS}).one()
    limited = int(seen.n) >= limit
    stored = session.execute(text(
        "INSERT INTO partner_nonce (partner_id, nonce, counted) VALUES (:p, :n, :c) "
        "ON CONFLICT DO NOTHING RETURNING 1"),
        {"p": partner_id, "n": nonce, "c": not limited}).first()
    if stored is None:
        raise Unauthenticated("this nonce was used before: a replayed request is refused")
    return int(seen.wait) if limited else None


def purge_expired(session: Session, *, settings: PartnerSettings) -> dict[str, int]:
    """Delete nonces whose timestamps can no longer pass, and expired idempotency records."""
    # A timestamp may lie a window ahead of the clock, so a nonce is kept for two windows.
    nonces = rowcount(session.execute(text(
        "DELETE FROM partner_nonce WHERE seen_at < now() - make_interval(secs => :s)"),
        {"s": 2 * max(settings.timestamp_window_seconds, RATE_WINDOW_SECONDS)}))
    keys = rowcount(session.execute(text(
        "DELETE FROM partner_idempotency WHERE created_at < now() - make_interval(hours => :h)"),
        {"h": settings.idempotency_hours}))
    return {"nonces": nonces, "idempotency": keys}


# --- idempotency ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredResponse:
    """The first response given to an Idempotency-Key."""

    status: int
    body: Any


def request_hash(method: str, path: str, body: bytes) -> str:
    """Return the hash telling a repeat from another request (JSON compared by content)."""
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, ensure_ascii=False)
        content = canonical.encode()
    except ValueError:
        content = body
    return hashlib.sha256(b"\n".join((method.upper().encode(), path.encode(), content))
                          ).hexdigest()


def check_idempotency_key(value: str | None) -> str:
    """Return a well-formed Idempotency-Key (8..128 letters, digits, ``_.:-``; a uuid fits)."""
    if not value or not _IDEMPOTENCY_KEY.match(value):
        raise InvalidInput(f"{IDEMPOTENCY_HEADER} is required: 8..128 letters, digits, _ . : "
                           "or - (send a uuid)", field=IDEMPOTENCY_HEADER)
    return value


def earlier_response(session: Session, *, caller: PartnerCaller, key: str, digest: str,
                     settings: PartnerSettings) -> StoredResponse | None:
    """Serialise on (partner, key); return the first response to the key, if any.

    Raises:
        Conflict: the key was used with another request.
    """
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, :p))"),
                    {"k": key, "p": caller.id})
    row = session.execute(text(
        "SELECT request_hash, status, body FROM partner_idempotency WHERE partner_id = :p "
        "AND idempotency_key = :k AND created_at > now() - make_interval(hours => :h)"),
        {"p": caller.id, "k": key, "h": settings.idempotency_hours}).first()
    if row is None:
        return None
    if row.request_hash != digest:
        raise Conflict(f"this {IDEMPOTENCY_HEADER} was used for a different request; "
                       "make a new key for each new request", field=IDEMPOTENCY_HEADER)
    return StoredResponse(status=int(row.status), body=row.body)


def remember_response(session: Session, *, caller: PartnerCaller, key: str, digest: str,
                      status: int, body: Any) -> None:
    """Keep the response to a key, in the transaction that did the work."""
    session.execute(text(
        "INSERT INTO partner_idempotency (partner_id, idempotency_key, request_hash, status, "
        "body) VALUES (:p, :k, :h, :s, CAST(:b AS jsonb)) ON CONFLICT (partner_id, "
        "idempotency_key) DO UPDATE SET request_hash = EXCLUDED.request_hash, "
        "status = EXCLUDED.status, body = EXCLUDED.body, created_at = now()"),
        {"p": caller.id, "k": key, "h": digest, "s": status,
         "b": json.dumps(body, ensure_ascii=False, default=str)})


def run_once(session: Session, *, caller: PartnerCaller, key: str | None, digest: str,
             settings: PartnerSettings, status: int, work: Callable[[], BaseModel]
             ) -> tuple[StoredResponse, bool]:
    """Do ``work`` once per Idempotency-Key; return its response and whether it is a replay.

    Raises:
        InvalidInput: a missing or malformed key.
        Conflict: the key was used with another request.
    """
    key = check_idempotency_key(key)
    earlier = earlier_response(session, caller=caller, key=key, digest=digest, settings=settings)
    if earlier is not None:
        return earlier, True
    body = work().model_dump(mode="json")
    remember_response(session, caller=caller, key=key, digest=digest, status=status, body=body)
    return StoredResponse(status=status, body=body), False


# --- the partner's own calls ---------------------------------------------------------------------


def _link(session: Session, caller: PartnerCaller, *, event_id: int | None = None,
          partner_ref: str | None = None) -> Mapping[Any, Any]:
    """Return the caller's link to an event (by our id or its number), else NotFound."""
    row = session.execute(text(
        "SELECT event_id, partner_ref, origin FROM partner_event WHERE partner_id = :p AND "
        "(event_id = :e OR partner_ref = :r)"),
        {"p": caller.id, "e": event_id, "r": partner_ref}).mappings().first()
    if row is None:
        raise NotFound(f"no event {event_id or partner_ref} of partner {caller.code}")
    return row


def _view(detail: EventDetail, link: Mapping[str, Any]) -> PartnerEvent:
    route = detail.routes[-1] if detail.routes else None
    return PartnerEvent(
        event_id=detail.id, code=detail.code, partner_ref=link["partner_ref"],
        origin=link["origin"], type_code=detail.type_code, severity=detail.severity,
        state=detail.state.value, title=detail.title, address=detail.address, lon=detail.lon,
        lat=detail.lat, grid_code=detail.grid_code,
        routed_to=route.unit.code if route and route.unit else None,
        route_reason=route.reason if route else None, reported_at=detail.reported_at,
        closed_at=detail.closed_at, version=detail.version,
        history=[PartnerHistoryItem(id=h.id, at=h.at, action=h.action, from_state=h.from_state,
                                    to_state=h.to_state, note=h.note,
                                    result=h.data.get("result")) for h in detail.history])


def report(session: Session, *, caller: PartnerCaller, data: PartnerReport | Mapping[str, Any],
           crypto: PersonalDataCrypto, settings: EventSettings = events.DEFAULT_SETTINGS,
           context: AuditContext = NO_CONTEXT) -> PartnerEvent:
    """Take in a partner's report through the event intake, linked to the partner's number.

    Raises:
        InvalidInput: as ``events.report_event`` (unknown type_code, missing crs, a location
            outside the partner's jurisdiction …).
        Conflict: the partner reported this partner_ref before.
    """
    report_in: PartnerReport = events.validated(PartnerReport, data)
    if session.execute(text("SELECT 1 FROM partner_event WHERE partner_id = :p AND "
                            "partner_ref = :r"), {"p": caller.id, "r": report_in.partner_ref}
                       ).first():
        raise Conflict(f"partner_ref {report_in.partner_ref} was reported before",
                       field="partner_ref")
    body = report_in.model_dump(exclude={"partner_ref"}, exclude_none=True)
    body.update(source=SOURCE_OF_KIND[caller.kind].value, external_ref=report_in.partner_ref)
    detail = events.report_event(session, actor=caller.principal(), data=body, crypto=crypto,
                                 settings=settings, context=context)
    _write(session, "INSERT INTO partner_event (partner_id, event_id, partner_ref, origin) "
                    "VALUES (:p, :e, :r, 'reported') RETURNING event_id",
           {"p": caller.id, "e": detail.id, "r": report_in.partner_ref},
           {"partner_event_ref": "partner_ref"})
    return _view(detail, {"partner_ref": report_in.partner_ref, "origin": "reported"})


def get_event(session: Session, *, caller: PartnerCaller, event_id: int | None = None,
              partner_ref: str | None = None,
              settings: EventSettings = events.DEFAULT_SETTINGS) -> PartnerEvent:
    """Return one of the partner's events (by our id or its own number) with its history."""
    link = _link(session, caller, event_id=event_id, partner_ref=partner_ref)
    detail = events.get_event(session, actor=caller.principal(), event_id=int(link["event_id"]),
                              settings=settings)
    return _view(detail, link)


def act(session: Session, *, caller: PartnerCaller, event_id: int, action: PartnerAction | str,
        data: PartnerActionIn | Mapping[str, Any],
        settings: EventSettings = events.DEFAULT_SETTINGS,
        context: AuditContext = NO_CONTEXT) -> PartnerEvent:
    """Accept (签收), handle (处置) or close (办结) one of the partner's events.

    Raises:
        NotFound: not the partner's event (or outside its jurisdiction).
        PermissionDenied: accept/handle on an event not dispatched to the partner's unit;
            close on an event the partner did not report.
        InvalidInput: an unknown action; handle without a result.
        Conflict: a stale version or an action the state does not allow (listing those).
    """
    try:
        which = PartnerAction(action)
    except ValueError:
        raise InvalidInput(f"unknown action {action!r}: accept, handle or close",
                           field="action") from None
    body: PartnerActionIn = events.validated(PartnerActionIn, data)
    link = _link(session, caller, event_id=event_id)
    if which is PartnerAction.CLOSE and link["origin"] != "reported":
        raise PermissionDenied("a partner closes only the events it reported")
    event_action, permission = _ACTION_OF[which]
    version = body.version or events.load_event(session, event_id).version
    detail = event_actions.act(
        session, actor=caller.principal(permission), event_id=event_id, action=event_action,
        data={"version": version, "note": body.note, "result": body.result},
        settings=settings, context=context)
    ref = link["partner_ref"]
    if which is PartnerAction.ACCEPT and body.partner_ref and ref is None:
        _write(session, "UPDATE partner_event SET partner_ref = :r WHERE partner_id = :p AND "
                        "event_id = :e RETURNING event_id",
               {"r": body.partner_ref, "p": caller.id, "e": event_id},
               {"partner_event_ref": "partner_ref"})
        ref = body.partner_ref
    return _view(detail, {"partner_ref": ref, "origin": link["origin"]})
