"""Login, logout, the current user, password change and personal API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    AnonSessionDep,
    AuditContextDep,
    CredentialDep,
    CurrentUser,
    OptionalUser,
    SessionDep,
    SettingsDep,
)
from api.errors import problem
from geoserver.errors import NotFound
from geoserver.services import auth, sso

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginIn(BaseModel):
    """Username and password."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class Me(BaseModel):
    """The current user as the web client needs it."""

    user_id: int | None
    username: str
    roles: list[str]
    permissions: list[str]
    scope: list[str]
    grid_codes: list[str]


class LoginOut(BaseModel):
    """A new session: the CSRF token to send back in X-CSRF-Token."""

    csrf_token: str
    expires_at: datetime


def _me(user: auth.Principal) -> Me:
    return Me(user_id=user.user_id, username=user.username, roles=sorted(user.roles),
              permissions=sorted(user.permissions), scope=list(user.scope),
              grid_codes=list(user.grid_codes))


def _session_cookies(response: Response, result: auth.LoginResult,
                     settings: SettingsDep) -> LoginOut:
    """Set the session cookie (HttpOnly) and the CSRF cookie of a new session."""
    secure = settings.security.cookie_secure
    max_age = settings.security.session_absolute_hours * 3600
    response.set_cookie(SESSION_COOKIE, result.session_token, httponly=True, secure=secure,
                        samesite="lax", max_age=max_age, path="/")
    response.set_cookie(CSRF_COOKIE, result.csrf_token, httponly=False, secure=secure,
                        samesite="lax", max_age=max_age, path="/")
    return LoginOut(csrf_token=result.csrf_token, expires_at=result.expires_at)


@router.post("/login", response_model=LoginOut, responses={401: {}, 429: {}})
def login(body: LoginIn, response: Response, session: AnonSessionDep, settings: SettingsDep,
          context: AuditContextDep) -> LoginOut | Response:
    """Log in with a password; sets the session cookie (HttpOnly) and the CSRF cookie."""
    result = auth.login(session, username=body.username, password=body.password,
                        settings=settings.security, context=context)
    if isinstance(result, auth.LoginFailure):
        # The failure is counted (committed with this transaction) towards the lockout.
        if result.retry_after is not None:
            return problem(429, "too many failed logins: the account is locked for now",
                           headers={"Retry-After": str(result.retry_after)})
        return problem(401, "wrong username or password",
                       headers={"WWW-Authenticate": "Bearer"})
    return _session_cookies(response, result, settings)


def get_sso_providers(request: Request, settings: SettingsDep) -> dict[str, sso.AuthProvider]:
    """Return the configured sign-on providers (built once per app; they cache app tokens)."""
    providers = getattr(request.app.state, "sso_providers", None)
    if providers is None:
        providers = request.app.state.sso_providers = sso.providers_from_settings(settings.sso)
    return providers  # type: ignore[no-any-return]


SsoProvidersDep = Annotated[dict[str, sso.AuthProvider], Depends(get_sso_providers)]


class SsoIn(BaseModel):
    """The one-time code the identity server (OIDC, 浙政钉 免登) gave the browser."""

    code: str = Field(min_length=1, max_length=512, pattern=r"^[\x21-\x7e]+$")


@router.post("/sso/{provider}", response_model=LoginOut, responses={401: {}, 404: {}})
def sso_login(provider: str, body: SsoIn, response: Response, session: AnonSessionDep,
              settings: SettingsDep, providers: SsoProvidersDep,
              context: AuditContextDep) -> LoginOut | Response:
    """Single sign-on: exchange the code; the bound account gets a session like a login."""
    chosen = providers.get(provider)
    if chosen is None:
        raise NotFound(f"no single sign-on provider {provider!r} is configured")
    result = sso.sso_login(session, provider=chosen, code=body.code,
                           settings=settings.security, context=context)
    if isinstance(result, auth.LoginFailure):
        # Unknown identities get no account and no hint whether the code or the binding failed.
        return problem(401, "single sign-on failed", headers={"WWW-Authenticate": "Bearer"})
    return _session_cookies(response, result, settings)


@router.post("/logout", status_code=204)
def logout(cred: CredentialDep, session: SessionDep, response: Response) -> Response:
    """End the current web session."""
    if cred is not None and cred.session_id is not None:
        auth.logout(session, session_id=cred.session_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/me", response_model=Me)
def me(user: CurrentUser) -> Me:
    """Return who is logged in, with roles, permissions, scope and grids."""
    return _me(user)


class PasswordChange(BaseModel):
    """Old and new password."""

    old_password: str = Field(max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


@router.post("/password", status_code=204)
def change_password(body: PasswordChange, user: CurrentUser, session: SessionDep,
                    context: AuditContextDep) -> Response:
    """Change your own password."""
    auth.change_password(session, actor=user, old_password=body.old_password,
                         new_password=body.new_password, context=context)
    return Response(status_code=204)


@router.post("/sessions/revoke-all", status_code=204)
def revoke_all(user: CurrentUser, session: SessionDep, context: AuditContextDep) -> Response:
    """End every session and API token of yours, this one included."""
    assert user.user_id is not None
    auth.revoke_all_sessions(session, actor=user, user_id=user.user_id, context=context)
    return Response(status_code=204)


class TokenIn(BaseModel):
    """A new personal API token."""

    name: str = Field(min_length=1, max_length=100)
    days: int = Field(default=90, ge=1, le=3650)
    permissions: list[str] = Field(default_factory=list, max_length=100)


class TokenOut(BaseModel):
    """The token is shown once."""

    id: int
    token: str
    expires_at: datetime


@router.post("/tokens", response_model=TokenOut, status_code=201)
def create_token(body: TokenIn, user: CurrentUser, session: SessionDep, settings: SettingsDep,
                 context: AuditContextDep) -> TokenOut:
    """Create a personal API token (send it as ``Authorization: Bearer …``)."""
    t = auth.create_api_token(session, actor=user, name=body.name, days=body.days,
                              permissions=body.permissions, settings=settings.security,
                              context=context)
    return TokenOut(id=t.id, token=t.token, expires_at=t.expires_at)


@router.get("/tokens")
def list_tokens(user: CurrentUser, session: SessionDep) -> list[dict[str, object]]:
    """List your tokens (without their secrets)."""
    return auth.list_api_tokens(session, actor=user)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, user: CurrentUser, session: SessionDep,
                 context: AuditContextDep) -> Response:
    """Revoke one of your tokens at once."""
    auth.revoke_api_token(session, actor=user, token_id=token_id, context=context)
    return Response(status_code=204)


@router.get("/session", summary="Whether a session is open (200 either way)")
def current_session(user: OptionalUser) -> dict[str, object]:
    """Return ``{"authenticated": false}`` or the current user; pages probe with this first."""
    if user is None:
        return {"authenticated": False}
    return {"authenticated": True, **_me(user).model_dump()}
