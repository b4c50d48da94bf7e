"""Accounts and their roles, scopes and staff assignments (the admin side of access).

Duties are separated (三员分立): the system administrator (``user.admin``) creates accounts and
grants business roles and scopes inside their own jurisdiction; only the security administrator
(``role.admin``) grants administrator roles and edits roles; the audit administrator only reads
the audit log.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.security.passwords import check_password_strength, hash_password
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit

WHOLE_TREE = "*"


@dataclass(frozen=True)
class NewUser:
    """A created account; ``password`` is set only when gridgov generated it (shown once)."""

    id: int
    username: str
    password: str | None


def _region_path(session: Session, actor: Principal, code: str, field: str) -> str:
    if code == WHOLE_TREE:
        if "" not in actor.scope:
            raise InvalidInput("only a city-wide administrator grants the whole tree", field=field)
        return ""
    row = session.execute(text("SELECT path::text FROM region WHERE code = :c "
                               "AND valid_to IS NULL"), {"c": code}).first()
    if row is None or not actor.covers(row[0]):
        raise InvalidInput(f"no region {code} in your jurisdiction", field=field)
    return str(row[0])


def _role_ids(session: Session, actor: Principal, roles: Sequence[str]) -> list[int]:
    rows = session.execute(text("SELECT id, name, admin_duty FROM role WHERE name = ANY(:r)"),
                           {"r": list(roles)}).all()
    unknown = set(roles) - {r.name for r in rows}
    if unknown:
        raise InvalidInput(f"unknown role(s): {', '.join(sorted(unknown))}", field="roles")
    for r in rows:
        if r.admin_duty is not None and not (actor.can("role.admin") or actor.can("*")):
            raise PermissionDenied("administrator roles are granted by the security administrator")
    return [r.id for r in rows]


def create_user(
    session: Session,
    *,
    actor: Principal,
    username: str,
    display_name: str,
    home_region_code: str,
    roles: Sequence[str] = (),
    scope_codes: Sequence[str] = (),
    password: str | None = None,
    context: AuditContext = NO_CONTEXT,
) -> NewUser:
    """Create an account; generate a one-time password when none is given.

    Raises:
        PermissionDenied: the actor is not a system administrator.
        InvalidInput: a weak password, an unknown role, a region outside the actor's scope.
        Conflict: the username is taken.
    """
    if not actor.can("user.admin"):
        raise PermissionDenied("creating accounts needs the system administrator role")
    home_path = _region_path(session, actor, home_region_code, "home_region_code")
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(12) + "Aa1!"
    problems = check_password_strength(password, username=username)
    if problems:
        raise InvalidInput("; ".join(problems), field="password")
    role_ids = _role_ids(session, actor, roles)
    paths = {c: _region_path(session, actor, c, "scope") for c in scope_codes or [home_region_code]}
    try:
        with session.begin_nested():
            uid = session.execute(
                text("INSERT INTO app_user (username, display_name, password_hash, "
                     "must_change_password, home_region_code, path) VALUES (:u, :d, :h, :m, :c, "
                     "CAST(:p AS ltree)) RETURNING id"),
                {"u": username, "d": display_name, "h": hash_password(password),
                 "m": generated is not None, "c": home_region_code, "p": home_path},
            ).scalar_one()
    except IntegrityError as e:
        if "app_user_username" in str(e.orig):
            raise Conflict(f"username {username!r} is taken", field="username") from None
        raise InvalidInput("username must be 3–64 letters, digits or _.@-",
                           field="username") from None
    for rid in role_ids:
        session.execute(text("INSERT INTO user_role (user_id, role_id, granted_by) "
                             "VALUES (:u, :r, :by)"), {"u": uid, "r": rid, "by": actor.user_id})
    for code in paths:
        session.execute(text("INSERT INTO user_scope (user_id, region_code) VALUES (:u, :c)"),
                        {"u": uid, "c": code})
    audit(session, actor=actor, action="user.create", object_kind="user", object_id=str(uid),
          after={"username": username, "roles": list(roles), "scope": list(paths)},
          context=context)
    return NewUser(id=uid, username=username, password=generated)


def _require_user(session: Session, user_id: int) -> None:
    """Raise NotFound unless the user exists inside the caller's scope (RLS on app_user)."""
    if session.execute(text("SELECT 1 FROM app_user WHERE id = :u"),
                       {"u": user_id}).first() is None:
        raise NotFound(f"no user {user_id}")


def set_scope(session: Session, *, actor: Principal, user_id: int, scope_codes: Sequence[str],
              context: AuditContext = NO_CONTEXT) -> None:
    """Replace a user's jurisdiction with regions inside the actor's own."""
    if not (actor.can("user.admin") or actor.can("role.admin")):
        raise PermissionDenied("changing a jurisdiction needs an administrator role")
    _require_user(session, user_id)
    if not scope_codes:
        raise InvalidInput("a jurisdiction needs at least one region", field="scope")
    for code in scope_codes:
        _region_path(session, actor, code, "scope")
    before = session.execute(text("SELECT array_agg(region_code) FROM user_scope "
                                  "WHERE user_id = :u"), {"u": user_id}).scalar()
    session.execute(text("DELETE FROM user_scope WHERE user_id = :u"), {"u": user_id})
    for code in scope_codes:
        session.execute(text("INSERT INTO user_scope (user_id, region_code) VALUES (:u, :c)"),
                        {"u": user_id, "c": code})
    audit(session, actor=actor, action="permission.scope", object_kind="user",
          object_id=str(user_id), before=before, after=list(scope_codes), context=context)


def set_roles(session: Session, *, actor: Principal, user_id: int, roles: Sequence[str],
              context: AuditContext = NO_CONTEXT) -> None:
    """Replace a user's roles (administrator roles only by the security administrator)."""
    if not (actor.can("user.admin") or actor.can("role.admin")):
        raise PermissionDenied("changing roles needs an administrator role")
    _require_user(session, user_id)
    role_ids = _role_ids(session, actor, roles)
    before = session.execute(text("SELECT array_agg(r.name) FROM user_role ur JOIN role r "
                                  "ON r.id = ur.role_id WHERE ur.user_id = :u"),
                             {"u": user_id}).scalar()
    session.execute(text("DELETE FROM user_role WHERE user_id = :u"), {"u": user_id})
    for rid in role_ids:
        session.execute(text("INSERT INTO user_role (user_id, role_id, granted_by) "
                             "VALUES (:u, :r, :by)"), {"u": user_id, "r": rid, "by": actor.user_id})
    audit(session, actor=actor, action="permission.roles", object_kind="user",
          object_id=str(user_id), before=before, after=list(roles), context=context)


def assign_staff(session: Session, *, actor: Principal, user_id: int, position: str,
                 region_code: str, org_unit_id: int | None = None,
                 context: AuditContext = NO_CONTEXT) -> int:
    """Assign a user a position at a region (a grid worker to a grid, 入格 bindings …)."""
    if not actor.can("user.admin"):
        raise PermissionDenied("staff assignments need the system administrator role")
    path = _region_path(session, actor, region_code, "region_code")
    _require_user(session, user_id)
    try:
        with session.begin_nested():
            sid = session.execute(
                text("INSERT INTO staff_assignment (user_id, position, region_code, org_unit_id, "
                     "path) VALUES (:u, CAST(:p AS staff_position), :c, :o, CAST(:path AS ltree)) "
                     "RETURNING id"),
                {"u": user_id, "p": position, "c": region_code, "o": org_unit_id, "path": path},
            ).scalar_one()
    except Exception as e:  # an unknown position value
        if "staff_position" in str(e):
            raise InvalidInput(f"unknown position {position!r}", field="position") from None
        raise
    audit(session, actor=actor, action="staff.assign", object_kind="user", object_id=str(user_id),
          after={"position": position, "region": region_code}, context=context)
    return int(sid)
