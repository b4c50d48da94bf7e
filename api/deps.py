"""Request dependencies as ``Annotated`` aliases: the engine, the caller, the scoped session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from geoserver.config import Settings
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.principal import Principal
from geoserver.errors import PermissionDenied, Unauthenticated
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services import auth
from geoserver.services.audit import AuditContext

SESSION_COOKIE = "gridgov_session"
CSRF_COOKIE = "gridgov_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_engine(request: Request) -> Engine:
    """Return the app's engine (owned by the lifespan)."""
    return request.app.state.engine


def get_settings(request: Request) -> Settings:
    """Return the app's settings."""
    return request.app.state.settings


def get_crypto(request: Request) -> PersonalDataCrypto:
    """Return the personal-data cipher and blind-index key."""
    return request.app.state.crypto


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CryptoDep = Annotated[PersonalDataCrypto, Depends(get_crypto)]


def audit_context(request: Request) -> AuditContext:
    """Return where the request came from, for the audit log."""
    return AuditContext(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


AuditContextDep = Annotated[AuditContext, Depends(audit_context)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def resolve_credential(request: Request, engine: EngineDep) -> auth.ResolvedCredential | None:
    """Resolve the request's bearer token or session cookie (once per request)."""
    if hasattr(request.state, "credential"):
        return request.state.credential  # type: ignore[no-any-return]
    bearer = _bearer(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    cred = None
    if bearer or cookie:
        with scoped_session(engine, SYSTEM_SCOPE) as s:
            if bearer:
                cred = auth.resolve_api_token(s, bearer)
            elif cookie:
                cred = auth.resolve_session_token(s, cookie)
        if bearer and cred is None:
            raise Unauthenticated("the API token is invalid, expired or revoked")
    if cred is not None and request.method not in SAFE_METHODS and not cred.csrf_ok(
        request.headers.get(CSRF_HEADER)
    ):
        raise PermissionDenied("missing or wrong CSRF token (send the X-CSRF-Token header)")
    request.state.credential = cred
    request.state.principal = cred.principal if cred else None
    return cred


CredentialDep = Annotated[auth.ResolvedCredential | None, Depends(resolve_credential)]


def optional_principal(cred: CredentialDep) -> Principal | None:
    """Return the caller, or None for anonymous requests."""
    return cred.principal if cred else None


def current_principal(cred: CredentialDep) -> Principal:
    """Return the caller; anonymous requests get 401."""
    if cred is None:
        raise Unauthenticated("log in first (session cookie or Authorization: Bearer token)")
    return cred.principal


OptionalUser = Annotated[Principal | None, Depends(optional_principal)]
CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Callable[[Principal], Principal]:
    """Return a dependency that insists the caller holds ``permission``."""

    def check(user: CurrentUser) -> Principal:
        if not user.can(permission):
            raise PermissionDenied(f"this needs the permission {permission!r}")
        return user

    return check


def get_session(engine: EngineDep, user: OptionalUser) -> Iterator[Session]:
    """Yield one transaction per request with the caller's scope set first."""
    with scoped_session(engine, user.scope if user else ()) as session:
        yield session


# scope="function": the transaction commits before the response is sent, so a 2xx means the
# data is committed. Streaming responses read through their own session (see stream_rows).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def stream_rows(engine: Engine, user: Principal,
                produce: Callable[[Session], Iterator[dict[str, object]]]
                ) -> Iterator[dict[str, object]]:
    """Yield rows from ``produce`` in a read transaction of the user's scope, for streaming."""
    with scoped_session(engine, user.scope) as session:
        yield from produce(session)


def get_anonymous_session(engine: EngineDep) -> Iterator[Session]:
    """Yield a transaction with an empty scope (login: no caller yet, sees no scoped rows)."""
    with scoped_session(engine, ()) as session:
        yield session


AnonSessionDep = Annotated[Session, Depends(get_anonymous_session, scope="function")]
