"""Who is acting: a user's identity, jurisdiction scope and permissions (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    """The caller of a service: scope is a tuple of region paths (辖区); empty sees nothing."""

    user_id: int | None
    username: str
    scope: tuple[str, ...]
    permissions: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)
    #: Codes of the grids the user is assigned or bound to (网格员, 入格).
    grid_codes: tuple[str, ...] = ()
    #: Special-population categories this user may see (特殊人群, one permission each).
    special_categories: frozenset[str] = field(default_factory=frozenset)

    def can(self, permission: str) -> bool:
        """Return whether the principal holds ``permission`` (``*`` holds all)."""
        return "*" in self.permissions or permission in self.permissions

    def covers(self, path: str) -> bool:
        """Return whether ``path`` lies inside the principal's scope."""
        return any(path == p or path.startswith(p + ".") or p == "" for p in self.scope)


#: The system itself (jobs, loaders): every permission, the whole tree.
SYSTEM = Principal(user_id=None, username="system", scope=("",), permissions=frozenset({"*"}),
                   special_categories=frozenset({"*"}))
