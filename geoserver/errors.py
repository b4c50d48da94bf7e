"""Domain errors. They know nothing of HTTP; ``api/errors.py`` maps them to status codes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GridgovError(Exception):
    """Base of every error gridgov raises on purpose."""

    title = "Error"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one input field."""

    field: str
    message: str


class InvalidInput(GridgovError):
    """The input is malformed or breaks a rule; names the fields."""

    title = "Invalid input"

    def __init__(
        self, detail: str, *, field: str | None = None, problems: Sequence[FieldProblem] = ()
    ) -> None:
        super().__init__(detail)
        self.problems = list(problems) or ([FieldProblem(field, detail)] if field else [])


class NotFound(GridgovError):
    """No such object, or not in the caller's scope (the two are never told apart)."""

    title = "Not found"


class Conflict(GridgovError):
    """The write conflicts with existing data or with a concurrent change."""

    title = "Conflict"


class PermissionDenied(GridgovError):
    """The caller may see the object but not do this to it."""

    title = "Forbidden"


class Unauthenticated(GridgovError):
    """No valid credentials."""

    title = "Unauthorized"


class TooLarge(GridgovError):
    """An upload or payload exceeds its limit."""

    title = "Payload too large"


class RateLimited(GridgovError):
    """Too many requests or attempts; retry later."""

    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(GridgovError):
    """A dependency (the database) is not reachable now."""

    title = "Service unavailable"


class ClusterError(GridgovError):
    """The embedded PostgreSQL cluster cannot be set up, started or stopped."""

    title = "Database cluster error"


class SchemaMismatch(GridgovError):
    """The database schema or SQL functions differ from this code."""

    title = "Schema mismatch"
