"""Administration: accounts, roles, jurisdictions, staff assignments, org units, audit log.

Itself scoped: an administrator sees and manages only accounts homed in their jurisdiction
(RLS on ``app_user.path``); anything else answers 404. Duties are separated (三员分立, see
``geoserver.services.roles``): the system administrator manages accounts and staff, the
security administrator roles and grants, the audit administrator reads the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from api.deps import AuditContextDep, CryptoDep, CurrentUser, SessionDep, require
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, PermissionDenied
from geoserver.services import auth, roles, users
from geoserver.services.audit import query_audit

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def require_any(*permissions: str) -> Callable[[Principal], Principal]:
    """Return a dependency that insists the caller holds one of ``permissions``."""

    def check(user: CurrentUser) -> Principal:
        if not any(user.can(p) for p in permissions):
            raise PermissionDenied(f"this needs one of the permissions {', '.join(permissions)}")
        return user

    return check


Admin = Annotated[Principal, Depends(require_any("user.admin", "role.admin"))]
SystemAdmin = Annotated[Principal, Depends(require("user.admin"))]
SecurityAdmin = Annotated[Principal, Depends(require("role.admin"))]
Auditor = Annotated[Principal, Depends(require("audit.read"))]
Limit = Annotated[int, Query(ge=1, le=500)]
#: Ids are bigint: larger numbers are invalid input, not a database error.
MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Code = Annotated[str | None, Query(max_length=24, pattern=r"^[0-9A-Za-z*]+$")]
NO_NUL = users.NO_NUL
RoleName = Annotated[str, Path(pattern=users.ROLE_NAME)]


def utc(value: datetime | None, field: str) -> datetime | None:
    """Return a time in UTC (PostgreSQL refuses offsets beyond ±15:59 that ISO 8601 allows)."""
    try:
        return value.astimezone(UTC) if value is not None else None
    except OverflowError:
        raise InvalidInput(f"{field} is out of range", field=field) from None


def page(items: list[dict[str, Any]], after: int | None) -> dict[str, Any]:
    """Shape a keyset page: pass ``next_after`` back as ``after`` for the next one."""
    return {"items": items, "next_after": after}


# --- accounts -----------------------------------------------------------------------------


@router.get("/users", summary="List accounts homed in your jurisdiction (phones masked)")
def list_users(user: Admin, session: SessionDep,
               q: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
               role: Annotated[str | None, Query(pattern=users.ROLE_NAME)] = None,
               region_code: Code = None, active: bool | None = None,
               after: QueryId = None,
               limit: Limit = 100) -> dict[str, Any]:
    """List accounts by id; filter by text, role, home region, active flag."""
    items, nxt = users.list_users(session, actor=user, q=q, role=role, region_code=region_code,
                                  active=active, after_id=after, limit=limit)
    return page(items, nxt)


@router.post("/users", status_code=201, summary="Create an account")
def create_user(body: users.UserCreate, user: SystemAdmin, session: SessionDep,
                crypto: CryptoDep, context: AuditContextDep) -> dict[str, Any]:
    """Create an account; a generated one-time password is returned once."""
    new = users.create_user(
        session, actor=user, username=body.username, display_name=body.display_name,
        home_region_code=body.home_region_code, roles=body.roles,
        scope_codes=body.scope, password=body.password, phone=body.phone,
        external_subject=body.external_subject, crypto=crypto, context=context)
    created = users.get_user(session, actor=user, user_id=new.id)
    return {**created, "one_time_password": new.password}


@router.get("/users/{user_id}", summary="One account with jurisdiction and staff assignments")
def get_user(user_id: Id, user: Admin, session: SessionDep, crypto: CryptoDep,
             context: AuditContextDep,
             reveal: Annotated[list[str], Query(max_length=3)] = []) -> dict[str, Any]:  # noqa: B006
    """Return an account; ``reveal=phone`` shows the phone in clear (audited, cleared roles)."""
    return users.get_user(session, actor=user, user_id=user_id, reveal=reveal, crypto=crypto,
                          context=context)


@router.patch("/users/{user_id}", summary="Edit an account (name, active, phone, home, SSO)")
def update_user(user_id: Id, body: users.UserUpdate, user: SystemAdmin, session: SessionDep,
                crypto: CryptoDep, context: AuditContextDep) -> dict[str, Any]:
    """Edit an account; send the ``version`` you saw."""
    return users.update_user(session, actor=user, user_id=user_id, data=body, crypto=crypto,
                             context=context)


@router.post("/users/{user_id}/disable", summary="Disable an account and end its sessions")
def disable_user(user_id: Id, user: SystemAdmin, session: SessionDep,
                 context: AuditContextDep) -> dict[str, Any]:
    """Deactivate an account at once (sessions and tokens end)."""
    return users.disable_user(session, actor=user, user_id=user_id, context=context)


class OneTimePassword(BaseModel):
    """A reset password, shown once; the user must change it at the next login."""

    one_time_password: str


@router.post("/users/{user_id}/password-reset", response_model=OneTimePassword,
             summary="Reset a password (returns a one-time password once)")
def reset_password(user_id: Id, user: SystemAdmin, session: SessionDep,
                   context: AuditContextDep) -> OneTimePassword:
    """Set a random one-time password and end the account's sessions."""
    return OneTimePassword(one_time_password=auth.reset_password(
        session, actor=user, user_id=user_id, context=context))


@router.post("/users/{user_id}/sessions/revoke-all", status_code=204,
             summary="End every session and API token of an account")
def revoke_sessions(user_id: Id, user: SystemAdmin, session: SessionDep,
                    context: AuditContextDep) -> Response:
    """Revoke all of an account's sessions and tokens at once."""
    auth.revoke_all_sessions(session, actor=user, user_id=user_id, context=context)
    return Response(status_code=204)


class RolesIn(BaseModel):
    """The complete set of roles an account should hold."""

    roles: list[users.RoleNameItem] = Field(max_length=20)


class ScopeIn(BaseModel):
    """The complete jurisdiction (region codes) an account should hold."""

    scope: list[users.RegionCodeItem] = Field(min_length=1, max_length=100)


@router.put("/users/{user_id}/roles", summary="Replace an account's roles")
def set_roles(user_id: Id, body: RolesIn, user: Admin, session: SessionDep,
              context: AuditContextDep) -> dict[str, Any]:
    """Replace roles (administrator roles only by the security administrator)."""
    users.set_roles(session, actor=user, user_id=user_id, roles=body.roles, context=context)
    return users.get_user(session, actor=user, user_id=user_id)


@router.put("/users/{user_id}/scope", summary="Replace an account's jurisdiction")
def set_scope(user_id: Id, body: ScopeIn, user: Admin, session: SessionDep,
              context: AuditContextDep) -> dict[str, Any]:
    """Replace the jurisdiction with regions inside yours."""
    users.set_scope(session, actor=user, user_id=user_id, scope_codes=body.scope,
                    context=context)
    return users.get_user(session, actor=user, user_id=user_id)


# --- staff assignments and org units ------------------------------------------------------


class StaffIn(BaseModel):
    """A position at a region: a grid worker at a grid, 入格 (department_staff at a grid with
    the department's org unit), a commander at a command centre."""

    user_id: int = Field(ge=1, le=MAX_ID)
    position: str = Field(max_length=40)
    region_code: str = Field(max_length=24, pattern=r"^[0-9A-Za-z]+$")
    org_unit_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class StaffEnd(BaseModel):
    """When the assignment ends (now when left out)."""

    valid_to: AwareDatetime | None = None


@router.get("/staff", summary="List staff assignments in your jurisdiction")
def list_staff(user: Admin, session: SessionDep,
               user_id: QueryId = None, region_code: Code = None,
               position: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
               org_unit_id: QueryId = None, current: bool = True,
               after: QueryId = None,
               limit: Limit = 100) -> dict[str, Any]:
    """List assignments (current ones unless ``current=false``), by id."""
    items, nxt = users.list_staff(session, actor=user, user_id=user_id, region_code=region_code,
                                  position=position, org_unit_id=org_unit_id, current=current,
                                  after_id=after, limit=limit)
    return page(items, nxt)


@router.post("/staff", status_code=201, summary="Assign a position (incl. 入格 grid binding)")
def create_staff(body: StaffIn, user: SystemAdmin, session: SessionDep,
                 context: AuditContextDep) -> dict[str, Any]:
    """Create a staff assignment."""
    sid = users.assign_staff(session, actor=user, user_id=body.user_id, position=body.position,
                             region_code=body.region_code, org_unit_id=body.org_unit_id,
                             context=context)
    items, _ = users.list_staff(session, actor=user, user_id=body.user_id, limit=500)
    return next(i for i in items if i["id"] == sid)


@router.post("/staff/{assignment_id}/end", summary="End a staff assignment")
def end_staff(assignment_id: Id, body: StaffEnd, user: SystemAdmin, session: SessionDep,
              context: AuditContextDep) -> dict[str, Any]:
    """End an assignment now or at ``valid_to``."""
    return users.end_staff(session, actor=user, assignment_id=assignment_id,
                           valid_to=utc(body.valid_to, "valid_to"), context=context)


@router.get("/org-units", summary="Command centres, departments and platforms")
def list_org_units(user: Admin, session: SessionDep,
                   kind: Annotated[str | None, Query(
                       pattern=r"^(command_centre|department|platform)$")] = None,
                   region_code: Code = None) -> dict[str, Any]:
    """List org units in your jurisdiction."""
    return {"items": users.list_org_units(session, actor=user, kind=kind,
                                          region_code=region_code)}


# --- roles and permissions ----------------------------------------------------------------


@router.get("/permissions", summary="Permissions and their administrator duty")
def list_permissions(user: Admin, session: SessionDep) -> dict[str, Any]:
    """List every permission."""
    return {"items": roles.list_permissions(session, actor=user)}


@router.get("/roles", summary="Roles with their permissions")
def list_roles(user: Admin, session: SessionDep) -> dict[str, Any]:
    """List every role with its permissions."""
    return {"items": roles.list_roles(session, actor=user)}


@router.post("/roles", status_code=201, summary="Create a role (security administrator)")
def create_role(body: roles.RoleCreate, user: SecurityAdmin, session: SessionDep,
                context: AuditContextDep) -> dict[str, Any]:
    """Create a role with permissions."""
    return roles.create_role(session, actor=user, data=body, context=context)


@router.patch("/roles/{name}", summary="Change a role's title or permissions")
def update_role(name: RoleName, body: roles.RoleUpdate, user: SecurityAdmin,
                session: SessionDep, context: AuditContextDep) -> dict[str, Any]:
    """Change a role; ``permissions`` replaces the set."""
    return roles.update_role(session, actor=user, name=name, data=body, context=context)


# --- audit log ----------------------------------------------------------------------------


@router.get("/audit", summary="Query the audit log (audit administrator only)")
def audit_log(user: Auditor, session: SessionDep,
              action: Annotated[str | None, Query(max_length=80, pattern=NO_NUL)] = None,
              user_id: QueryId = None,
              object_kind: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
              object_id: Annotated[str | None, Query(max_length=80, pattern=NO_NUL)] = None,
              since: AwareDatetime | None = None, until: AwareDatetime | None = None,
              before: QueryId = None,
              limit: Limit = 100) -> dict[str, Any]:
    """Read the log newest first; pass ``next_before`` back as ``before`` for older rows."""
    items = query_audit(session, actor=user, action=action, user_id=user_id,
                        since=utc(since, "since"), until=utc(until, "until"), limit=limit,
                        before_id=before, object_kind=object_kind, object_id=object_id)
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}
