"""Accounts for tests, created through the same services the API and CLI use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from geoserver.config import SecuritySettings
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.principal import SYSTEM
from geoserver.services import auth, users

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
