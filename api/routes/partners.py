"""Partner platforms (接口管理): the signed partner API and its administration.

``/api/v1/partner/…`` is called by 110 linkage, the 12345 hotline and the provincial 矛调
platform with HMAC-signed requests (see ``geoserver.services.partners``); writes carry an
``Idempotency-Key``. ``/api/v1/admin/partners`` manages partners, their keys (the secret is
shown once) and the status-push outbox with its dead letters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.deps import AuditContextDep, CryptoDep, EngineDep, SessionDep, SettingsDep, require
from api.routes.events import EventSettingsDep
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.principal import Principal
from geoserver.errors import RateLimited
from geoserver.services import partner_outbox, partners
from geoserver.services.partner_outbox import OutboxItem, OutboxStatus
from geoserver.services.partners import (
    KeyPublic,
    NewKey,
    PartnerAction,
    PartnerActionIn,
    PartnerCaller,
    PartnerCreate,
    PartnerEvent,
    PartnerPublic,
    PartnerReport,
    PartnerUpdate,
    SignedRequest,
)

partner_router = APIRouter(prefix="/api/v1/partner", tags=["partner"])
admin_router = APIRouter(prefix="/api/v1/admin/partners", tags=["admin"])
router = APIRouter()

Manager = Annotated[Principal, Depends(require("partner.manage"))]
Code = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
EventId = Annotated[int, Path(ge=1, le=2**63 - 1)]
IdempotencyKey = Annotated[str | None, Header(alias=partners.IDEMPOTENCY_HEADER)]
SIGNED = {401: {"description": "missing, wrong, stale or replayed signature"},
          429: {"description": "over the partner's rate limit (Retry-After)"}}


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _signed_path(request: Request) -> str:
    """Return the path and query exactly as the partner sent (and signed) them."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    return raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


@dataclass(frozen=True)
class PartnerCall:
    """A verified partner request: its work transaction (the partner's scope) and request."""

    session: Session
    caller: PartnerCaller
    request: SignedRequest


def partner_call(request: Request, engine: EngineDep, crypto: CryptoDep, settings: SettingsDep,
                 body: Annotated[bytes, Depends(_raw_body)]) -> Iterator[PartnerCall]:
    """Verify the signature (its nonce commits on its own), then open the work transaction."""
    signed = SignedRequest(method=request.method, path=_signed_path(request),
                           headers=request.headers, body=body)
    with scoped_session(engine, SYSTEM_SCOPE) as auth_session:
        caller = partners.authenticate(auth_session, request=signed, crypto=crypto,
                                       settings=settings.partners)
    if caller.retry_after is not None:
        raise RateLimited(f"partner {caller.code} is over its rate limit",
                          retry_after=caller.retry_after)
    with scoped_session(engine, caller.scope) as session:
        yield PartnerCall(session, caller, signed)


# The work transaction commits before the response is sent, like SessionDep.
PartnerDep = Annotated[PartnerCall, Depends(partner_call, scope="function")]


def _once(call: PartnerCall, key: str | None, settings: SettingsDep, status: int,
          work: Callable[[], PartnerEvent]) -> JSONResponse:
    digest = partners.request_hash(call.request.method, call.request.path, call.request.body)
    stored, replayed = partners.run_once(call.session, caller=call.caller, key=key,
                                         digest=digest, settings=settings.partners,
                                         status=status, work=work)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(stored.body, status_code=stored.status, headers=headers)


# --- the partner API -----------------------------------------------------------------------------


@partner_router.post("/events", status_code=201, response_model=PartnerEvent,
                     responses={**SIGNED, 409: {}, 422: {}})
def report(body: PartnerReport, call: PartnerDep, settings: SettingsDep, crypto: CryptoDep,
           events_settings: EventSettingsDep, context: AuditContextDep,
           idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Report an event (上报): a point with its crs, an address, or a region code."""
    return _once(call, idempotency_key, settings, 201, lambda: partners.report(
        call.session, caller=call.caller, data=body, crypto=crypto, settings=events_settings,
        context=context))


@partner_router.get("/events", response_model=PartnerEvent, responses={**SIGNED, 404: {}})
def event_by_ref(call: PartnerDep, events_settings: EventSettingsDep,
                 partner_ref: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]
                 ) -> PartnerEvent:
    """Return one of your events by your own number, with its state and history."""
    return partners.get_event(call.session, caller=call.caller, partner_ref=partner_ref,
                              settings=events_settings)


@partner_router.get("/events/{event_id}", response_model=PartnerEvent,
                    responses={**SIGNED, 404: {}})
def event_by_id(event_id: EventId, call: PartnerDep,
                events_settings: EventSettingsDep) -> PartnerEvent:
    """Return one of your events by its gridgov id, with its state and history."""
    return partners.get_event(call.session, caller=call.caller, event_id=event_id,
                              settings=events_settings)


@partner_router.post("/events/{event_id}/actions/{action}", response_model=PartnerEvent,
                     responses={**SIGNED, 403: {}, 404: {}, 409: {}, 422: {}})
def act(event_id: EventId, action: PartnerAction, body: PartnerActionIn, call: PartnerDep,
        settings: SettingsDep, events_settings: EventSettingsDep, context: AuditContextDep,
        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """Accept (签收) or handle (处置) an event dispatched to you; close (办结) one you reported."""
    return _once(call, idempotency_key, settings, 200, lambda: partners.act(
        call.session, caller=call.caller, event_id=event_id, action=action, data=body,
        settings=events_settings, context=context))


@partner_router.get("/me", responses=SIGNED)
def whoami(call: PartnerDep) -> dict[str, object]:
    """Return who the signature says you are (to check your signing code)."""
    caller = call.caller
    return {"code": caller.code, "kind": caller.kind.value, "key_id": caller.key_id,
            "scope": list(caller.scope)}


# --- administration ------------------------------------------------------------------------------


@admin_router.get("", response_model=list[PartnerPublic])
def list_partners(user: Manager, session: SessionDep) -> list[PartnerPublic]:
    """List the partner platforms in your jurisdiction."""
    return partners.list_partners(session, actor=user)


@admin_router.post("", status_code=201, response_model=PartnerPublic,
                   responses={409: {}, 422: {}})
def create_partner(body: PartnerCreate, user: Manager, session: SessionDep,
                   context: AuditContextDep) -> PartnerPublic:
    """Register a partner platform (make its first key with POST …/keys)."""
    return partners.create_partner(session, actor=user, data=body, context=context)


@admin_router.get("/{code}", response_model=PartnerPublic, responses={404: {}})
def get_partner(code: Code, user: Manager, session: SessionDep) -> PartnerPublic:
    """Return a partner with its keys (never their secrets)."""
    return partners.get_partner(session, actor=user, code=code)


@admin_router.patch("/{code}", response_model=PartnerPublic, responses={404: {}, 422: {}})
def update_partner(code: Code, body: PartnerUpdate, user: Manager, session: SessionDep,
                   context: AuditContextDep) -> PartnerPublic:
    """Change a partner: name, active, scope, callback URL, rate limit, unit, note."""
    return partners.update_partner(session, actor=user, code=code, data=body, context=context)


@admin_router.delete("/{code}", status_code=204, responses={404: {}, 409: {}})
def delete_partner(code: Code, user: Manager, session: SessionDep,
                   context: AuditContextDep) -> Response:
    """Delete a partner without events (one with events: deactivate it)."""
    partners.delete_partner(session, actor=user, code=code, context=context)
    return Response(status_code=204)


@admin_router.post("/{code}/keys", status_code=201, response_model=NewKey,
                   responses={404: {}})
def create_key(code: Code, user: Manager, session: SessionDep, crypto: CryptoDep,
               context: AuditContextDep) -> NewKey:
    """Make a new signing key (rotation keeps two active); the secret is shown only now."""
    return partners.create_key(session, actor=user, code=code, crypto=crypto, context=context)


@admin_router.delete("/{code}/keys/{key_id}", response_model=KeyPublic, responses={404: {}})
def revoke_key(code: Code, key_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{8,64}$")],
               user: Manager, session: SessionDep, context: AuditContextDep) -> KeyPublic:
    """Revoke a signing key now."""
    return partners.revoke_key(session, actor=user, code=code, key_id=key_id, context=context)


@admin_router.get("/{code}/outbox", response_model=list[OutboxItem], responses={404: {}})
def list_outbox(code: Code, user: Manager, session: SessionDep,
                status: OutboxStatus | None = None,
                before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[OutboxItem]:
    """List a partner's status pushes, newest first: pending, dead (dead letters), delivered."""
    return partner_outbox.list_outbox(session, actor=user, code=code, status=status,
                                      before_id=before_id, limit=limit)


@admin_router.post("/{code}/outbox/{outbox_id}/redeliver", response_model=OutboxItem,
                   responses={404: {}, 409: {}})
def redeliver(code: Code, outbox_id: Annotated[int, Path(ge=1, le=2**63 - 1)], user: Manager,
              session: SessionDep, context: AuditContextDep) -> OutboxItem:
    """Send a dead-lettered (or waiting) push again now."""
    return partner_outbox.redeliver(session, actor=user, code=code, outbox_id=outbox_id,
                                    context=context)


router.include_router(partner_router)
router.include_router(admin_router)
