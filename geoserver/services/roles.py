"""Roles and permissions as data, and the separation of administrator duties (三员分立).

Three duties, none able to do the others' work:

- system administrator (``user.admin``): accounts, staff assignments and business roles and
  jurisdictions inside their own jurisdiction; not role definitions, not the audit log;
- security administrator (``role.admin``): role definitions, administrator roles, roles and
  jurisdictions of accounts; not creating or resetting accounts, not the audit log;
- audit administrator (``audit.read``): reads the audit log, nothing else.

The database enforces the structural half (a duty's permissions only in roles of that duty,
an account holds one duty, an audit account holds nothing else); this module the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.domain.principal import Principal
from geoserver.errors import NotFound, PermissionDenied
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.dberrors import translate

#: Free text never holds NUL (PostgreSQL text cannot): refuse it as invalid input.
NO_NUL = r"^[^\x00]*$"
#: A permission name (the ``permission`` table's CHECK).
PERMISSION_NAME = r"^[a-z_*]+(\.[a-z_]+)*$"
#: The permission that marks each administrator duty.
DUTY_PERMISSION = {"system": "user.admin", "security": "role.admin", "audit": "audit.read"}


def actor_duties(actor: Principal) -> frozenset[str]:
    """Return the administrator duties the actor holds (the system itself holds them all)."""
    return frozenset(d for d, p in DUTY_PERMISSION.items() if actor.can(p))


def user_duties(session: Session, user_id: int) -> frozenset[str]:
    """Return the administrator duties an account holds through its roles."""
    rows = session.execute(text("SELECT DISTINCT r.admin_duty FROM user_role ur JOIN role r "
                                "ON r.id = ur.role_id WHERE ur.user_id = :u "
                                "AND r.admin_duty IS NOT NULL"), {"u": user_id}).scalars()
    return frozenset(rows)


def guard_target(session: Session, actor: Principal, user_id: int, *,
                 granting: bool = False) -> None:
    """Refuse to act on one's own account or on an account of another administrator duty.

    Resetting the audit administrator's password would hand the system administrator the
    audit log, so only an administrator of the same duty (or the ``gridgov`` CLI) acts on a
    duty account. ``granting`` (roles and jurisdictions) is the security administrator's
    duty and reaches every account but their own.
    """
    if actor.can("*"):
        return
    if actor.user_id == user_id:
        raise PermissionDenied("administrators do not manage their own account here")
    if granting and actor.can("role.admin"):
        return
    foreign = user_duties(session, user_id) - actor_duties(actor)
    if foreign:
        raise PermissionDenied(
            f"this account holds the {', '.join(sorted(foreign))} administrator duty: "
            "an administrator of that duty manages it")


def _may_define_roles(actor: Principal) -> None:
    """Role definitions apply everywhere: only a city-wide security administrator edits them."""
    if not actor.can("role.admin"):
        raise PermissionDenied("role definitions are the security administrator's duty")
    if not actor.can("*") and not any(p == "" or "." not in p for p in actor.scope):
        raise PermissionDenied("role definitions apply everywhere: they need a city-wide "
                               "security administrator")


def list_permissions(session: Session, *, actor: Principal) -> list[dict[str, Any]]:
    """List the permissions with their descriptions and administrator duty."""
    _require_admin(actor)
    rows = session.execute(text("SELECT name, description, admin_duty FROM permission "
                                "WHERE name <> '*' ORDER BY name")).mappings().all()
    return [dict(r) for r in rows]


def _require_admin(actor: Principal) -> None:
    if not (actor.can("user.admin") or actor.can("role.admin")):
        raise PermissionDenied("this needs the system or security administrator role")


_ROLE_SELECT = (
    "SELECT r.id, r.name, r.title, r.description, r.admin_duty, r.builtin, r.created_at, "
    "coalesce(array_agg(rp.permission ORDER BY rp.permission) FILTER (WHERE rp.permission "
    "IS NOT NULL), '{}') AS permissions FROM role r "
    "LEFT JOIN role_permission rp ON rp.role_id = r.id "
)


def list_roles(session: Session, *, actor: Principal) -> list[dict[str, Any]]:
    """List the roles with their permissions."""
    _require_admin(actor)
    rows = session.execute(text(_ROLE_SELECT + "GROUP BY r.id ORDER BY r.id")).mappings().all()
    return [dict(r) for r in rows]


def get_role(session: Session, *, actor: Principal, name: str) -> dict[str, Any]:
    """Return one role with its permissions."""
    _require_admin(actor)
    row = session.execute(text(_ROLE_SELECT + "WHERE r.name = :n GROUP BY r.id"),
                          {"n": name}).mappings().first()
    if row is None:
        raise NotFound(f"no role {name!r}")
    return dict(row)


class RoleCreate(BaseModel):
    """A new role: a name, a title and its permissions."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z_]{2,40}$")
    title: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    description: str = Field(default="", max_length=500, pattern=NO_NUL)
    admin_duty: str | None = Field(default=None, pattern=r"^(system|security|audit)$")
    permissions: list[Annotated[str, Field(max_length=80, pattern=PERMISSION_NAME)]] = Field(
        default_factory=list, max_length=200)


class RoleUpdate(BaseModel):
    """Changes to a role; ``permissions`` replaces the whole set."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=100, pattern=NO_NUL)
    description: str | None = Field(default=None, max_length=500, pattern=NO_NUL)
    permissions: list[Annotated[str, Field(max_length=80, pattern=PERMISSION_NAME)]] | None = (
        Field(default=None, max_length=200))


_FIELDS = {"role_name_key": "name", "role_permission_permission_fkey": "permissions"}


def _set_permissions(session: Session, role_id: int, permissions: Sequence[str]) -> None:
    session.execute(text("DELETE FROM role_permission WHERE role_id = :r"), {"r": role_id})
    if not permissions:
        return
    try:
        with session.begin_nested():
            session.execute(text("INSERT INTO role_permission (role_id, permission) "
                                 "SELECT :r, unnest(CAST(:p AS text[]))"),
                            {"r": role_id, "p": sorted(set(permissions))})
    except DBAPIError as e:
        raise translate(e, fields=_FIELDS) from None


def _not_own_role(session: Session, actor: Principal, role_id: int, name: str) -> None:
    """Refuse editing a role the actor holds: nobody grants themselves permissions."""
    if actor.user_id is None:
        return
    held = session.execute(text("SELECT 1 FROM user_role WHERE user_id = :u AND role_id = :r"),
                           {"u": actor.user_id, "r": role_id}).first()
    if held:
        raise PermissionDenied(f"you hold the role {name!r}: another security administrator "
                               "edits it")


def create_role(session: Session, *, actor: Principal, data: RoleCreate,
                context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """Create a role with permissions (security administrator, city-wide)."""
    _may_define_roles(actor)
    try:
        with session.begin_nested():
            role_id = session.execute(
                text("INSERT INTO role (name, title, description, admin_duty) VALUES "
                     "(:n, :t, :d, :duty) RETURNING id"),
                {"n": data.name, "t": data.title, "d": data.description,
                 "duty": data.admin_duty}).scalar_one()
    except DBAPIError as e:
        raise translate(e, fields=_FIELDS) from None
    _set_permissions(session, role_id, data.permissions)
    created = get_role(session, actor=actor, name=data.name)
    audit(session, actor=actor, action="permission.role_create", object_kind="role",
          object_id=data.name, after=_snapshot(created), context=context)
    return created


def update_role(session: Session, *, actor: Principal, name: str, data: RoleUpdate,
                context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """Change a role's title, description or permissions (security administrator)."""
    _may_define_roles(actor)
    before = get_role(session, actor=actor, name=name)
    _not_own_role(session, actor, before["id"], name)
    session.execute(text("UPDATE role SET title = coalesce(:t, title), "
                         "description = coalesce(:d, description) WHERE id = :r"),
                    {"t": data.title, "d": data.description, "r": before["id"]})
    if data.permissions is not None:
        _set_permissions(session, before["id"], data.permissions)
    after = get_role(session, actor=actor, name=name)
    audit(session, actor=actor, action="permission.role_update", object_kind="role",
          object_id=name, before=_snapshot(before), after=_snapshot(after), context=context)
    return after


def _snapshot(role: dict[str, Any]) -> dict[str, Any]:
    return {k: role[k] for k in ("title", "description", "admin_duty", "permissions")}
