"""Authentication: password logins with lockout, web sessions, API tokens, principals.

Credentials are looked up through SECURITY DEFINER functions (authentication happens before the
caller's scope is known); everything else runs under the caller's scope like any service.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import SecuritySettings
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound, PermissionDenied
from geoserver.security.passwords import (
    check_password_strength,
    generate_token,
    hash_password,
    hash_token,
    verify_password,
)
from geoserver.services.audit import AuditContext, audit
from geoserver.services.roles import guard_target

SPECIAL_PREFIX = "special."
# Verifying against a real hash even for unknown users keeps response times alike, so timing
# does not reveal which usernames exist.
_DUMMY_HASH = hash_password("gridgov-timing-equaliser-not-a-password")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class LoginResult:
    """A new web session: the cookie token and the CSRF token go to the browser only once."""

    user_id: int
    session_token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class LoginFailure:
    """A failed login: wrong credentials (401), or a locked account (429 after retry_after s)."""

    retry_after: int | None = None


def login(
    session: Session,
    *,
    username: str,
    password: str,
    settings: SecuritySettings,
    context: AuditContext,
) -> LoginResult | LoginFailure:
    """Check a password, counting failures towards a growing lockout; open a session on success.

    Failures are returned, not raised, so the caller commits the counted failure and its audit
    row; a failure with ``retry_after`` means the account is locked for that many seconds.
    """
    row = session.execute(text("SELECT * FROM gridgov_meta.user_for_login(:u)"),
                          {"u": username}).first()
    now = session.execute(text("SELECT now()")).scalar_one()
    if row is not None and row.locked_until is not None and row.locked_until > now:
        audit(session, actor=None, action="login.locked", object_kind="user",
              object_id=str(row.id), context=context, success=False,
              detail={"username": username})
        return LoginFailure(retry_after=int((row.locked_until - now).total_seconds()) + 1)
    ok = (
        row is not None and row.is_active and row.password_hash is not None
        and verify_password(password, row.password_hash)
    )
    if row is None or not row.password_hash:
        verify_password(password, _DUMMY_HASH)
    if row is not None:
        session.execute(
            text("SELECT * FROM gridgov_meta.record_login(:i, :ok, :n, :s)"),
            {"i": row.id, "ok": ok, "n": settings.lock_after_failures, "s": settings.lock_seconds},
        )
    audit(session, actor=None, action="login.success" if ok else "login.failure",
          object_kind="user", object_id=str(row.id) if row else None, context=context,
          success=ok, detail={"username": username})
    if not ok or row is None:
        return LoginFailure()
    return open_session(session, user_id=row.id, settings=settings, context=context)


def open_session(
    session: Session, *, user_id: int, settings: SecuritySettings, context: AuditContext
) -> LoginResult:
    """Create a web session for a user already authenticated (password or single sign-on)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    expires = session.execute(
        text(
            "INSERT INTO web_session (token_hash, csrf_hash, user_id, expires_at, idle_seconds, "
            "ip, user_agent) VALUES (:t, :c, :u, now() + make_interval(hours => :h), :idle, "
            "CAST(:ip AS inet), :ua) RETURNING expires_at"
        ),
        {"t": _digest(token), "c": _digest(csrf), "u": user_id,
         "h": settings.session_absolute_hours, "idle": settings.session_idle_minutes * 60,
         "ip": context.ip, "ua": (context.user_agent or "")[:300]},
    ).scalar_one()
    return LoginResult(user_id=user_id, session_token=token, csrf_token=csrf, expires_at=expires)


@dataclass(frozen=True)
class ResolvedCredential:
    """Who a request's credential belongs to."""

    principal: Principal
    session_id: int | None = None
    token_id: int | None = None
    csrf_hash: bytes | None = None

    def csrf_ok(self, csrf_token: str | None) -> bool:
        """Return whether the request's CSRF token matches its session."""
        if self.csrf_hash is None:
            return True  # bearer tokens are not sent by browsers on their own
        return bool(csrf_token) and secrets.compare_digest(
            _digest(csrf_token or ""), bytes(self.csrf_hash)
        )


def principal_for(session: Session, user_id: int,
                  restrict_to: list[str] | None = None) -> Principal | None:
    """Build the principal of an active user (optionally limited to a token's permissions)."""
    row = session.execute(text("SELECT * FROM gridgov_meta.principal_of(:u)"),
                          {"u": user_id}).first()
    return None if row is None else _principal(user_id, row, restrict_to)


def _principal(user_id: int, row: Any, restrict_to: list[str] | None = None) -> Principal:
    """Build a Principal from a row of gridgov_meta.principal_of's columns."""
    perms = frozenset(row.permissions)
    if restrict_to:
        perms = perms & frozenset(restrict_to)
    return Principal(
        user_id=user_id,
        username=row.username,
        scope=tuple(sorted(row.scope)),
        permissions=perms,
        roles=frozenset(row.roles),
        grid_codes=tuple(sorted(row.grid_codes)),
        special_categories=frozenset(
            p[len(SPECIAL_PREFIX):] for p in perms if p.startswith(SPECIAL_PREFIX)
        ),
    )


def resolve_session_token(session: Session, token: str) -> ResolvedCredential | None:
    """Resolve a session cookie and touch its idle clock, in one round trip."""
    row = session.execute(text("SELECT * FROM gridgov_meta.authenticate_session(:h)"),
                          {"h": _digest(token)}).first()
    if row is None:
        return None
    return ResolvedCredential(_principal(int(row.user_id), row), session_id=row.session_id,
                              csrf_hash=row.csrf_hash)


def resolve_api_token(session: Session, token: str) -> ResolvedCredential | None:
    """Resolve a personal API token (``Authorization: Bearer ggv_…``) in one round trip."""
    row = session.execute(text("SELECT * FROM gridgov_meta.authenticate_token(:h)"),
                          {"h": hash_token(token)}).first()
    if row is None:
        return None
    return ResolvedCredential(
        _principal(int(row.user_id), row, list(row.token_permissions) or None),
        token_id=row.token_id)


def logout(session: Session, *, session_id: int) -> None:
    """Revoke one web session."""
    session.execute(text("UPDATE web_session SET revoked_at = now() WHERE id = :s "
                         "AND revoked_at IS NULL"), {"s": session_id})


def revoke_all_sessions(session: Session, *, actor: Principal, user_id: int,
                        context: AuditContext) -> int:
    """Revoke every session and token of a user (themselves, or one an admin manages)."""
    if user_id != actor.user_id:
        _load_managed_user(session, actor=actor, user_id=user_id)
    sessions = len(session.execute(text("UPDATE web_session SET revoked_at = now() "
                                        "WHERE user_id = :u AND revoked_at IS NULL RETURNING id"),
                                   {"u": user_id}).all())
    tokens = len(session.execute(text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u "
                                      "AND revoked_at IS NULL RETURNING id"),
                                 {"u": user_id}).all())
    audit(session, actor=actor, action="user.revoke_sessions", object_kind="user",
          object_id=str(user_id), context=context, detail={"revoked": sessions + tokens},
          before={"active_sessions": sessions, "active_tokens": tokens},
          after={"active_sessions": 0, "active_tokens": 0})
    return sessions + tokens


def _load_managed_user(session: Session, *, actor: Principal, user_id: int) -> Any:
    """Load a user the actor may manage (inside their scope via RLS), else NotFound.

    The actor's own account and accounts of another administrator duty are refused
    (三员分立: a password reset would hand over that duty).
    """
    if not actor.can("user.admin"):
        raise PermissionDenied("managing accounts needs the system administrator role")
    row = session.execute(text("SELECT id, username, path, must_change_password FROM app_user "
                               "WHERE id = :u"), {"u": user_id}).first()
    if row is None:
        raise NotFound(f"no user {user_id}")
    guard_target(session, actor, user_id)
    return row


def change_password(session: Session, *, actor: Principal, old_password: str,
                    new_password: str, context: AuditContext) -> None:
    """Change the caller's own password (checked against the policy); other sessions end."""
    assert actor.user_id is not None
    row = session.execute(text("SELECT password_hash, username FROM app_user WHERE id = :u"),
                          {"u": actor.user_id}).one()
    if not row.password_hash or not verify_password(old_password, row.password_hash):
        raise InvalidInput("the current password is wrong", field="old_password")
    _set_password(session, user_id=actor.user_id, username=row.username, password=new_password,
                  must_change=False)
    audit(session, actor=actor, action="user.password_change", object_kind="user",
          object_id=str(actor.user_id), context=context)


def reset_password(session: Session, *, actor: Principal, user_id: int,
                   context: AuditContext) -> str:
    """Admin reset: set a random one-time password, end the user's sessions, return it."""
    row = _load_managed_user(session, actor=actor, user_id=user_id)
    temporary = secrets.token_urlsafe(9) + "Aa1!"
    _set_password(session, user_id=user_id, username=row.username, password=temporary,
                  must_change=True)
    ended = len(session.execute(text("UPDATE web_session SET revoked_at = now() "
                                     "WHERE user_id = :u AND revoked_at IS NULL RETURNING id"),
                                {"u": user_id}).all())
    # The password itself never reaches the log: only that it must be changed at next login.
    audit(session, actor=actor, action="user.password_reset", object_kind="user",
          object_id=str(user_id), context=context,
          before={"must_change_password": row.must_change_password, "active_sessions": ended},
          after={"must_change_password": True, "active_sessions": 0})
    return temporary


def _set_password(session: Session, *, user_id: int, username: str, password: str,
                  must_change: bool) -> None:
    problems = check_password_strength(password, username=username)
    if problems:
        raise InvalidInput("; ".join(problems), field="password")
    session.execute(
        text("UPDATE app_user SET password_hash = :h, must_change_password = :m, "
             "failed_logins = 0, locked_until = NULL, updated_at = now(), version = version + 1 "
             "WHERE id = :u"),
        {"h": hash_password(password), "m": must_change, "u": user_id},
    )


@dataclass(frozen=True)
class NewToken:
    """A personal API token; ``token`` is shown once and never stored."""

    id: int
    token: str
    expires_at: datetime


def create_api_token(session: Session, *, actor: Principal, name: str, days: int,
                     permissions: list[str], settings: SecuritySettings,
                     context: AuditContext) -> NewToken:
    """Create a personal API token limited to some of the caller's permissions."""
    assert actor.user_id is not None
    if not 1 <= days <= settings.token_max_days:
        raise InvalidInput(f"days must be 1..{settings.token_max_days}", field="days")
    if not name.strip() or len(name) > 100:
        raise InvalidInput("name must be 1..100 characters", field="name")
    extra = [p for p in permissions if not actor.can(p)]
    if extra:
        raise InvalidInput(f"you do not hold {', '.join(extra)}", field="permissions")
    token, digest = generate_token()
    row = session.execute(
        text("INSERT INTO api_token (user_id, name, token_hash, prefix, permissions, expires_at) "
             "VALUES (:u, :n, :h, :p, :perms, now() + :d) RETURNING id, expires_at"),
        {"u": actor.user_id, "n": name.strip(), "h": digest, "p": token[:8],
         "perms": list(permissions), "d": timedelta(days=days)},
    ).one()
    audit(session, actor=actor, action="token.create", object_kind="api_token",
          object_id=str(row.id), context=context, detail={"name": name, "days": days})
    return NewToken(id=row.id, token=token, expires_at=row.expires_at)


def list_api_tokens(session: Session, *, actor: Principal) -> list[dict[str, Any]]:
    """List the caller's tokens (never the secrets)."""
    rows = session.execute(
        text("SELECT id, name, prefix, permissions, created_at, expires_at, last_used_at, "
             "revoked_at FROM api_token WHERE user_id = :u ORDER BY id"),
        {"u": actor.user_id},
    ).mappings().all()
    return [dict(r) for r in rows]


def revoke_api_token(session: Session, *, actor: Principal, token_id: int,
                     context: AuditContext) -> None:
    """Revoke one of the caller's tokens at once."""
    revoked = session.execute(
        text("UPDATE api_token SET revoked_at = now() WHERE id = :i AND user_id = :u "
             "AND revoked_at IS NULL RETURNING id"),
        {"i": token_id, "u": actor.user_id},
    ).first()
    if revoked is None:
        raise NotFound(f"no active token {token_id}")
    audit(session, actor=actor, action="token.revoke", object_kind="api_token",
          object_id=str(token_id), context=context)
