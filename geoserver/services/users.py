"""Accounts and their roles, scopes and staff assignments (the admin side of access).

Duties are separated (三员分立, see ``geoserver.services.roles``): the system administrator
(``user.admin``) creates and edits accounts and staff assignments and grants business roles and
jurisdictions inside their own; the security administrator (``role.admin``) grants roles
(administrator roles only they) and jurisdictions and edits role definitions; the audit
administrator only reads the audit log. Everything runs under the caller's scope: accounts are
visible by their home region (RLS on ``app_user.path``).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from geoserver.domain.documents import DocumentInvalid, mask_phone, normalize_phone
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.security.passwords import check_password_strength, hash_password
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.dberrors import translate
from geoserver.services.roles import guard_target

WHOLE_TREE = "*"
PHONE_CONTEXT = "app_user.phone"
SENSITIVE_PERMISSION = "user.read_sensitive"
#: Sub-objects the admin API may read with ``reveal``.
REVEALABLE = frozenset({"phone"})


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


def _phone_columns(phone: str | None, crypto: PersonalDataCrypto | None) -> dict[str, Any]:
    """Return the encrypted and masked phone (both None to clear it)."""
    if phone is None or not phone.strip():
        return {"pe": None, "pm": None}
    if crypto is None:
        raise InvalidInput("storing a phone needs the personal-data cipher", field="phone")
    try:
        normalized = normalize_phone(phone)
    except DocumentInvalid as e:
        raise InvalidInput(e.reason, field="phone") from None
    return {"pe": crypto.encrypt(normalized, context=PHONE_CONTEXT),
            "pm": mask_phone(normalized)}


def _subject(value: str | None) -> str | None:
    """Check an external identity key: ``<provider>:<subject>``."""
    if value is None or not value.strip():
        return None
    provider, _, subject = value.strip().partition(":")
    if not provider.isidentifier() or not subject or len(value) > 200:
        raise InvalidInput("external_subject must look like <provider>:<subject>",
                           field="external_subject")
    return value.strip()


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
    phone: str | None = None,
    external_subject: str | None = None,
    crypto: PersonalDataCrypto | None = None,
) -> NewUser:
    """Create an account; generate a one-time password when none is given.

    A phone is stored encrypted with a masked copy (needs ``crypto``); ``external_subject``
    (``<provider>:<subject>``) binds a single sign-on identity.

    Raises:
        PermissionDenied: the actor is not a system administrator.
        InvalidInput: a weak password, an unknown role, a region outside the actor's scope.
        Conflict: the username or the external subject is taken.
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
    phone_cols, subject = _phone_columns(phone, crypto), _subject(external_subject)
    try:
        with session.begin_nested():
            uid = session.execute(
                text("INSERT INTO app_user (username, display_name, password_hash, "
                     "must_change_password, home_region_code, path, phone_enc, phone_masked, "
                     "external_subject) VALUES (:u, :d, :h, :m, :c, CAST(:p AS ltree), :pe, "
                     ":pm, :x) RETURNING id"),
                {"u": username, "d": display_name, "h": hash_password(password),
                 "m": generated is not None, "c": home_region_code, "p": home_path,
                 **phone_cols, "x": subject},
            ).scalar_one()
    except IntegrityError as e:
        if "app_user_username" in str(e.orig):
            raise Conflict(f"username {username!r} is taken", field="username") from None
        if "app_user_external" in str(e.orig):
            raise Conflict("this external identity is bound to another account",
                           field="external_subject") from None
        raise InvalidInput("username must be 3–64 letters, digits or _.@-",
                           field="username") from None
    for rid in role_ids:
        session.execute(text("INSERT INTO user_role (user_id, role_id, granted_by) "
                             "VALUES (:u, :r, :by)"), {"u": uid, "r": rid, "by": actor.user_id})
    for code in paths:
        session.execute(text("INSERT INTO user_scope (user_id, region_code) VALUES (:u, :c)"),
                        {"u": uid, "c": code})
    audit(session, actor=actor, action="user.create", object_kind="user", object_id=str(uid),
          after={"username": username, "display_name": display_name, "roles": list(roles),
                 "scope": list(paths), "home_region_code": home_region_code,
                 "phone": phone_cols["pm"], "external_subject": subject},
          context=context)
    return NewUser(id=uid, username=username, password=generated)


def _require_user(session: Session, user_id: int) -> None:
    """Raise NotFound unless the user exists inside the caller's scope (RLS on app_user)."""
    if session.execute(text("SELECT 1 FROM app_user WHERE id = :u"),
                       {"u": user_id}).first() is None:
        raise NotFound(f"no user {user_id}")


def _outside(session: Session, actor: Principal, codes: Sequence[str]) -> list[str]:
    """Return the codes among ``codes`` that lie outside the actor's jurisdiction."""
    if "" in actor.scope:
        return []
    inside = set(session.execute(
        text("SELECT code FROM region WHERE code = ANY(:c) AND valid_to IS NULL"),
        {"c": list(codes)}).scalars())
    return sorted(c for c in codes if c not in inside)


def set_scope(session: Session, *, actor: Principal, user_id: int, scope_codes: Sequence[str],
              context: AuditContext = NO_CONTEXT) -> None:
    """Replace a user's jurisdiction with regions inside the actor's own.

    Raises:
        PermissionDenied: not an administrator; the actor's own account; an account of
            another administrator duty (unless the actor is the security administrator);
            the account holds regions outside the actor's jurisdiction, which they may not
            take away.
    """
    if not (actor.can("user.admin") or actor.can("role.admin")):
        raise PermissionDenied("changing a jurisdiction needs an administrator role")
    _require_user(session, user_id)
    guard_target(session, actor, user_id, granting=True)
    if not scope_codes:
        raise InvalidInput("a jurisdiction needs at least one region", field="scope")
    for code in scope_codes:
        _region_path(session, actor, code, "scope")
    before = list(session.execute(text("SELECT region_code FROM user_scope WHERE user_id = :u "
                                       "ORDER BY region_code"), {"u": user_id}).scalars())
    foreign = _outside(session, actor, before)
    if foreign:
        raise PermissionDenied(f"this account's jurisdiction includes {', '.join(foreign)}, "
                               "outside yours: an administrator covering it changes it")
    session.execute(text("DELETE FROM user_scope WHERE user_id = :u"), {"u": user_id})
    for code in dict.fromkeys(scope_codes):
        session.execute(text("INSERT INTO user_scope (user_id, region_code) VALUES (:u, :c)"),
                        {"u": user_id, "c": code})
    audit(session, actor=actor, action="permission.scope", object_kind="user",
          object_id=str(user_id), before=before, after=sorted(set(scope_codes)),
          context=context)


def set_roles(session: Session, *, actor: Principal, user_id: int, roles: Sequence[str],
              context: AuditContext = NO_CONTEXT) -> None:
    """Replace a user's roles (administrator roles only by the security administrator).

    Raises:
        PermissionDenied: not an administrator; the actor's own account; an account of another
            administrator duty; granting or taking away an administrator role without
            ``role.admin``.
        Conflict: the roles would give one account two administrator duties.
    """
    if not (actor.can("user.admin") or actor.can("role.admin")):
        raise PermissionDenied("changing roles needs an administrator role")
    _require_user(session, user_id)
    guard_target(session, actor, user_id, granting=True)
    role_ids = _role_ids(session, actor, roles)
    before = session.execute(text("SELECT r.name, r.admin_duty FROM user_role ur JOIN role r "
                                  "ON r.id = ur.role_id WHERE ur.user_id = :u ORDER BY r.name"),
                             {"u": user_id}).all()
    removed_duty = [r.name for r in before if r.admin_duty and r.name not in roles]
    if removed_duty and not actor.can("role.admin"):
        raise PermissionDenied("administrator roles are taken away by the security administrator")
    session.execute(text("DELETE FROM user_role WHERE user_id = :u"), {"u": user_id})
    try:
        with session.begin_nested():
            for rid in role_ids:
                session.execute(text("INSERT INTO user_role (user_id, role_id, granted_by) "
                                     "VALUES (:u, :r, :by)"),
                                {"u": user_id, "r": rid, "by": actor.user_id})
    except DBAPIError as e:
        raise translate(e) from None
    audit(session, actor=actor, action="permission.roles", object_kind="user",
          object_id=str(user_id), before=[r.name for r in before], after=sorted(set(roles)),
          context=context)


def _org_unit(session: Session, org_unit_id: int, position: str, path: str) -> dict[str, Any]:
    """Load an org unit the staff assignment may name (visible, the right kind, around path)."""
    unit = session.execute(text("SELECT id, code, kind, path::text AS path FROM org_unit "
                                "WHERE id = :o"), {"o": org_unit_id}).mappings().first()
    if unit is None:
        raise InvalidInput(f"no org unit {org_unit_id} in your jurisdiction", field="org_unit_id")
    wanted = {"department_staff": "department", "command_centre_staff": "command_centre"}
    if position in wanted and unit["kind"] not in (wanted[position], "platform"):
        raise InvalidInput(f"a {position} belongs to a {wanted[position]}, not a {unit['kind']}",
                           field="org_unit_id")
    # 入格: a department's account is bound to grids inside the department's own region.
    if not (path == unit["path"] or path.startswith(unit["path"] + ".")):
        raise InvalidInput("the region lies outside the org unit's region", field="region_code")
    return dict(unit)


def assign_staff(session: Session, *, actor: Principal, user_id: int, position: str,
                 region_code: str, org_unit_id: int | None = None,
                 context: AuditContext = NO_CONTEXT) -> int:
    """Assign a user a position at a region (a grid worker to a grid, 入格 bindings …).

    A department account bound to a grid (入格) is ``department_staff`` at the grid with the
    department's ``org_unit_id``; the grid must lie inside the department's region.
    """
    if not actor.can("user.admin"):
        raise PermissionDenied("staff assignments need the system administrator role")
    path = _region_path(session, actor, region_code, "region_code")
    _require_user(session, user_id)
    if position == "department_staff" and org_unit_id is None:
        raise InvalidInput("department staff name their department", field="org_unit_id")
    if org_unit_id is not None:
        _org_unit(session, org_unit_id, position, path)
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
    audit(session, actor=actor, action="staff.assign", object_kind="staff_assignment",
          object_id=str(sid), after={"user_id": user_id, "position": position,
                                     "region": region_code, "org_unit_id": org_unit_id},
          context=context)
    return int(sid)


# --- the admin API's reads and edits ------------------------------------------------------


def _require_admin(actor: Principal) -> None:
    if not (actor.can("user.admin") or actor.can("role.admin")):
        raise PermissionDenied("this needs the system or security administrator role")


_USER_COLUMNS = (
    "u.id, u.username, u.display_name, u.phone_masked, u.is_active, u.must_change_password, "
    "u.home_region_code, u.external_subject, u.last_login_at, "
    "(u.locked_until IS NOT NULL AND u.locked_until > now()) AS locked, u.created_at, "
    "u.updated_at, u.version, "
    "coalesce((SELECT array_agg(r.name ORDER BY r.name) FROM user_role ur JOIN role r "
    "ON r.id = ur.role_id WHERE ur.user_id = u.id), '{}') AS roles"
)


def list_users(session: Session, *, actor: Principal, q: str | None = None,
               role: str | None = None, region_code: str | None = None,
               active: bool | None = None, after_id: int | None = None,
               limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """List accounts homed in the actor's jurisdiction (phones masked), by id.

    Returns the page and the ``after_id`` of the next page (None on the last page).
    """
    _require_admin(actor)
    limit = max(1, min(limit, 500))
    pattern = None
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = session.execute(
        text(f"SELECT {_USER_COLUMNS} FROM app_user u WHERE "
             "(CAST(:q AS text) IS NULL OR u.username ILIKE :q OR u.display_name ILIKE :q) "
             "AND (CAST(:role AS text) IS NULL OR EXISTS (SELECT 1 FROM user_role ur JOIN role r "
             "ON r.id = ur.role_id WHERE ur.user_id = u.id AND r.name = :role)) "
             "AND (CAST(:rc AS text) IS NULL OR u.path <@ (SELECT path FROM region "
             "WHERE code = :rc AND valid_to IS NULL)) "
             "AND (CAST(:active AS boolean) IS NULL OR u.is_active = :active) "
             "AND (CAST(:after AS bigint) IS NULL OR u.id > :after) "
             "ORDER BY u.id LIMIT :limit"),
        {"q": pattern, "role": role, "rc": region_code, "active": active, "after": after_id,
         "limit": limit + 1},
    ).mappings().all()
    items = [dict(r) for r in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)


def _load_user(session: Session, user_id: int) -> dict[str, Any]:
    """Load an account inside the caller's scope (RLS on app_user), else NotFound."""
    row = session.execute(text(f"SELECT {_USER_COLUMNS}, u.phone_enc FROM app_user u "
                               "WHERE u.id = :u"), {"u": user_id}).mappings().first()
    if row is None:
        raise NotFound(f"no user {user_id}")
    return dict(row)


def get_user(session: Session, *, actor: Principal, user_id: int,
             reveal: Sequence[str] = (), crypto: PersonalDataCrypto | None = None,
             context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """Return an account with its jurisdiction and current staff assignments.

    ``reveal=["phone"]`` shows the phone in clear: it needs ``user.read_sensitive`` and is
    written to the audit log (``read_sensitive``).
    """
    _require_admin(actor)
    unknown = set(reveal) - REVEALABLE
    if unknown:
        raise InvalidInput(f"reveal one of {', '.join(sorted(REVEALABLE))}", field="reveal")
    if reveal and not actor.can(SENSITIVE_PERMISSION):
        raise PermissionDenied("showing personal data in clear needs user.read_sensitive")
    user = _load_user(session, user_id)
    phone_enc = user.pop("phone_enc")
    user["scope"] = list(session.execute(
        text("SELECT region_code FROM user_scope WHERE user_id = :u ORDER BY region_code"),
        {"u": user_id}).scalars())
    user["staff"] = [dict(r) for r in session.execute(
        text("SELECT id, position::text AS position, region_code, org_unit_id, valid_from "
             "FROM staff_assignment WHERE user_id = :u AND valid_to IS NULL ORDER BY id"),
        {"u": user_id}).mappings()]
    if "phone" in reveal and phone_enc is not None:
        if crypto is None:
            raise InvalidInput("revealing needs the personal-data cipher", field="reveal")
        user["phone"] = crypto.decrypt(phone_enc, context=PHONE_CONTEXT)
        audit(session, actor=actor, action="read_sensitive", object_kind="user",
              object_id=str(user_id), detail={"fields": ["phone"]}, context=context)
    return user


#: Free text never holds NUL (PostgreSQL text cannot): refuse it as invalid input.
NO_NUL = r"^[^\x00]*$"
ROLE_NAME = r"^[a-z_]{2,40}$"
RoleNameItem = Annotated[str, Field(pattern=ROLE_NAME)]
#: A region code, or ``*`` for the whole tree.
RegionCodeItem = Annotated[str, Field(max_length=24, pattern=r"^([0-9A-Za-z]+|\*)$")]


class UserCreate(BaseModel):
    """A new account (the admin API's body)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    display_name: str = Field(min_length=1, max_length=100, pattern=NO_NUL)
    home_region_code: str = Field(min_length=1, max_length=24, pattern=r"^[0-9A-Za-z*]+$")
    roles: list[RoleNameItem] = Field(default_factory=list, max_length=20)
    scope: list[RegionCodeItem] = Field(default_factory=list, max_length=100)
    phone: str | None = Field(default=None, max_length=30, pattern=NO_NUL)
    password: str | None = Field(default=None, max_length=200, pattern=NO_NUL)
    external_subject: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


class UserUpdate(BaseModel):
    """Changes to an account; fields left out stay, ``phone: null`` clears the phone."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1,
                         description="The version you saw (optimistic locking).")
    display_name: str | None = Field(default=None, min_length=1, max_length=100, pattern=NO_NUL)
    is_active: bool | None = None
    phone: str | None = Field(default=None, max_length=30, pattern=NO_NUL)
    home_region_code: str | None = Field(default=None, min_length=1, max_length=24,
                                         pattern=r"^[0-9A-Za-z]+$")
    external_subject: str | None = Field(default=None, max_length=200, pattern=NO_NUL)


_SNAPSHOT = ("display_name", "is_active", "phone_masked", "home_region_code",
             "external_subject", "version")


def _snapshot(user: dict[str, Any]) -> dict[str, Any]:
    """Return what the audit log keeps of an account (the phone only masked)."""
    return {k: user.get(k) for k in _SNAPSHOT}


def _changes(session: Session, actor: Principal, data: UserUpdate,
             crypto: PersonalDataCrypto | None) -> dict[str, Any]:
    """Return the column values an update sets (validated)."""
    sent = data.model_fields_set - {"version"}
    values: dict[str, Any] = {}
    if "display_name" in sent and data.display_name is not None:
        values["display_name"] = data.display_name
    if "is_active" in sent and data.is_active is not None:
        values["is_active"] = data.is_active
    if "phone" in sent:
        phone = _phone_columns(data.phone, crypto)
        values.update(phone_enc=phone["pe"], phone_masked=phone["pm"])
    if "home_region_code" in sent and data.home_region_code is not None:
        values["home_region_code"] = data.home_region_code
        values["path"] = _region_path(session, actor, data.home_region_code, "home_region_code")
    if "external_subject" in sent:
        values["external_subject"] = _subject(data.external_subject)
    return values


def update_user(session: Session, *, actor: Principal, user_id: int, data: UserUpdate,
                crypto: PersonalDataCrypto | None = None, action: str = "user.update",
                context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """Edit an account (system administrator); deactivating it ends its sessions and tokens.

    Raises:
        NotFound: not homed in the actor's jurisdiction.
        PermissionDenied: not a system administrator; the actor's own account; an account of
            another administrator duty.
        Conflict: a stale version; the external identity is bound to another account.
    """
    if not actor.can("user.admin"):
        raise PermissionDenied("editing accounts needs the system administrator role")
    before = _load_user(session, user_id)
    guard_target(session, actor, user_id)
    if before["version"] != data.version:
        raise Conflict(f"user {user_id} changed since version {data.version} "
                       f"(now {before['version']}); reload it", field="version")
    values = _changes(session, actor, data, crypto)
    if values:
        sets = ", ".join(f"{k} = CAST(:{k} AS ltree)" if k == "path" else f"{k} = :{k}"
                         for k in values)
        try:
            with session.begin_nested():
                session.execute(text(f"UPDATE app_user SET {sets}, updated_at = now(), "
                                     "version = version + 1 WHERE id = :id"),
                                {**values, "id": user_id})
        except DBAPIError as e:
            raise translate(e, fields={"app_user_external": "external_subject"}) from None
    if values.get("is_active") is False:
        _end_credentials(session, user_id)
    after = _load_user(session, user_id)
    after.pop("phone_enc")
    audit(session, actor=actor, action=action, object_kind="user", object_id=str(user_id),
          before=_snapshot(before), after=_snapshot(after), context=context)
    return after


def _end_credentials(session: Session, user_id: int) -> None:
    """Revoke every session and API token of an account at once."""
    session.execute(text("UPDATE web_session SET revoked_at = now() WHERE user_id = :u "
                         "AND revoked_at IS NULL"), {"u": user_id})
    session.execute(text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u "
                         "AND revoked_at IS NULL"), {"u": user_id})


def disable_user(session: Session, *, actor: Principal, user_id: int,
                 context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """Deactivate an account and end its sessions and tokens (it can be re-enabled)."""
    if not actor.can("user.admin"):
        raise PermissionDenied("disabling accounts needs the system administrator role")
    current = _load_user(session, user_id)
    return update_user(session, actor=actor, user_id=user_id,
                       data=UserUpdate(version=current["version"], is_active=False),
                       action="user.disable", context=context)


# --- staff assignments and org units -------------------------------------------------------


def list_staff(session: Session, *, actor: Principal, user_id: int | None = None,
               region_code: str | None = None, position: str | None = None,
               org_unit_id: int | None = None, current: bool = True,
               after_id: int | None = None, limit: int = 100
               ) -> tuple[list[dict[str, Any]], int | None]:
    """List staff assignments in the actor's jurisdiction (of accounts homed in it).

    ``region_code`` takes assignments at that region and below (a township's grid workers).
    """
    _require_admin(actor)
    limit = max(1, min(limit, 500))
    rows = session.execute(
        text("SELECT s.id, s.user_id, u.username, u.display_name, s.position::text AS position, "
             "s.region_code, s.org_unit_id, o.code AS org_unit_code, s.valid_from, s.valid_to "
             "FROM staff_assignment s JOIN app_user u ON u.id = s.user_id "
             "LEFT JOIN org_unit o ON o.id = s.org_unit_id WHERE "
             "(CAST(:u AS bigint) IS NULL OR s.user_id = :u) "
             "AND (CAST(:rc AS text) IS NULL OR s.path <@ (SELECT path FROM region "
             "WHERE code = :rc AND valid_to IS NULL)) "
             "AND (CAST(:pos AS text) IS NULL OR s.position::text = :pos) "
             "AND (CAST(:o AS bigint) IS NULL OR s.org_unit_id = :o) "
             "AND (NOT :cur OR s.valid_to IS NULL OR s.valid_to > now()) "
             "AND (CAST(:after AS bigint) IS NULL OR s.id > :after) ORDER BY s.id LIMIT :l"),
        {"u": user_id, "rc": region_code, "pos": position, "o": org_unit_id, "cur": current,
         "after": after_id, "l": limit + 1},
    ).mappings().all()
    items = [dict(r) for r in rows[:limit]]
    return items, (items[-1]["id"] if len(rows) > limit else None)


def end_staff(session: Session, *, actor: Principal, assignment_id: int,
              valid_to: datetime | None = None,
              context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """End a staff assignment now (or at ``valid_to``); history keeps it."""
    if not actor.can("user.admin"):
        raise PermissionDenied("staff assignments need the system administrator role")
    before = session.execute(
        text("SELECT s.id, s.user_id, s.position::text AS position, s.region_code, "
             "s.org_unit_id, s.valid_from, s.valid_to FROM staff_assignment s "
             "JOIN app_user u ON u.id = s.user_id WHERE s.id = :i"),
        {"i": assignment_id}).mappings().first()
    if before is None or before["valid_to"] is not None:
        raise NotFound(f"no current staff assignment {assignment_id}")
    if valid_to is not None and valid_to <= before["valid_from"]:
        raise InvalidInput("valid_to must come after the assignment started", field="valid_to")
    ended = session.execute(
        text("UPDATE staff_assignment SET valid_to = coalesce(:t, now()) WHERE id = :i "
             "RETURNING valid_to"), {"t": valid_to, "i": assignment_id}).scalar_one()
    after = {**before, "valid_to": ended}
    audit(session, actor=actor, action="staff.end", object_kind="staff_assignment",
          object_id=str(assignment_id), before=dict(before), after=after, context=context)
    return after


def dispatch_units(session: Session, *, actor: Principal,
                   region_code: str) -> list[dict[str, Any]]:
    """List the units an event in ``region_code`` may be dispatched to (派遣对象).

    Platforms and departments of the region's township and of the levels above it, as far as
    the actor's jurisdiction shows them (RLS): command centres dispatch, they are not targets.
    """
    if not actor.can("event.dispatch"):
        raise PermissionDenied("this needs the permission 'event.dispatch'")
    rows = session.execute(
        text("WITH r AS (SELECT path FROM region WHERE code = :rc AND valid_to IS NULL) "
             "SELECT u.id, u.code, u.name, u.kind, u.region_code FROM org_unit u, r "
             "WHERE u.kind <> 'command_centre' AND u.path @> r.path "
             "ORDER BY nlevel(u.path) DESC, u.kind, u.code LIMIT 500"),
        {"rc": region_code}).mappings().all()
    if not rows and session.execute(
            text("SELECT 1 FROM region WHERE code = :rc AND valid_to IS NULL"),
            {"rc": region_code}).first() is None:
        raise NotFound(f"no region {region_code!r} in your jurisdiction")
    return [dict(r) for r in rows]


def list_org_units(session: Session, *, actor: Principal, kind: str | None = None,
                   region_code: str | None = None) -> list[dict[str, Any]]:
    """List command centres, departments and township platforms in the actor's jurisdiction."""
    _require_admin(actor)
    rows = session.execute(
        text("SELECT id, code, name, kind, region_code FROM org_unit WHERE "
             "(CAST(:k AS text) IS NULL OR kind = :k) "
             "AND (CAST(:rc AS text) IS NULL OR path <@ (SELECT path FROM region "
             "WHERE code = :rc AND valid_to IS NULL)) ORDER BY path, kind, code LIMIT 5000"),
        {"k": kind, "rc": region_code}).mappings().all()
    return [dict(r) for r in rows]
