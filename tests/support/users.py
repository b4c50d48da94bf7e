"""Accounts for tests, created through the same services the API and CLI use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, text

from geoserver.config import SecuritySettings
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.principal import SYSTEM
from geoserver.services import auth, users
from tests.support.places import point_in

PASSWORD = "Wenzhou-grid-2026!"


@dataclass(frozen=True)
class TestUser:
    """A user with a password and a bearer token."""

    __test__ = False  # not a test class, despite the name

    id: int
    username: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for the token."""
        return {"Authorization": f"Bearer {self.token}"}


def make_user(engine: Engine, username: str, *, roles: Sequence[str],
              scope: Sequence[str] = ("*",), home: str | None = None,
              positions: Sequence[tuple[str, str]] = ()) -> TestUser:
    """Create a user with roles, a jurisdiction, staff positions and an API token."""
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        new = users.create_user(s, actor=SYSTEM, username=username, display_name=username,
                                home_region_code=home or scope[0], roles=roles,
                                scope_codes=scope, password=PASSWORD)
        for position, region in positions:
            users.assign_staff(s, actor=SYSTEM, user_id=new.id, position=position,
                               region_code=region)
        principal = auth.principal_for(s, new.id)
        assert principal is not None
        token = auth.create_api_token(s, actor=principal, name="tests", days=1, permissions=[],
                                      settings=SecuritySettings(), context=auth.AuditContext())
    return TestUser(new.id, username, PASSWORD, token.token)


def grid_worker(engine: Engine, username: str, grid: str) -> TestUser:
    """Create a grid worker (网格员) posted in one grid."""
    return make_user(engine, username, roles=["grid_worker"], scope=[grid],
                     positions=[("grid_worker", grid)])


def township_commander(engine: Engine, username: str, township: str, *,
                       on_duty: bool = True) -> TestUser:
    """Create a commander of a township, posted in its command centre (指挥室) when on duty."""
    # The post makes them act for the command centre's unit (its queues and messages); a
    # commander without it has the role's rights only.
    positions = [("command_centre_staff", township)] if on_duty else []
    return make_user(engine, username, roles=["township_commander"], scope=[township],
                     positions=positions)


def platform_member(engine: Engine, username: str, township: str, *,
                    platform: str = "zf") -> TestUser:
    """Create a member of a township platform's unit (zf: 综合执法), who receives its dispatches."""
    user = make_user(engine, username, roles=["department_staff"], scope=[township])
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        unit = s.execute(text("SELECT id FROM org_unit WHERE code = :c"),
                         {"c": f"{platform}{township}"}).scalar_one()
        users.assign_staff(s, actor=SYSTEM, user_id=user.id, position="department_staff",
                           region_code=township, org_unit_id=unit)
    return user


class EventStaff:
    """A grid worker who reports in a grid, a commander on duty in its township, a commander on
    duty in another township (who must see none of it), and a point inside the grid."""

    def __init__(self, engine: Engine, prefix: str, *, grid: str, township: str,
                 other: str) -> None:
        self.worker = grid_worker(engine, f"{prefix}_worker", grid)
        self.commander = township_commander(engine, f"{prefix}_cmd", township)
        self.other = township_commander(engine, f"{prefix}_other", other)
        self.point = list(point_in(engine, grid))
