"""Translate database errors into domain errors, so services answer 409/422, never a 500.

SQL raises custom SQLSTATEs for rules it enforces: 'GG422' (invalid; DETAIL names the field)
and 'GG409' (conflict; DETAIL names the other object's code). Constraint violations are mapped
by their SQLSTATE; the offending value is never copied into the message, because a unique
violation's detail can hold personal data (a document number's hash, a phone).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy.exc import DBAPIError, OperationalError

from geoserver.errors import Conflict, GridgovError, InvalidInput, Unavailable

_KEY_COLUMNS = re.compile(r"Key \(([^)]*)\)")


def sqlstate(exc: BaseException) -> str | None:
    """Return the SQLSTATE of a (wrapped) psycopg2 error, if any."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "pgcode", None)


def _diag(exc: BaseException, name: str) -> str | None:
    """Return one diagnostic field (``message_detail``, ``constraint_name`` …) of the error."""
    diag = getattr(getattr(exc, "orig", exc), "diag", None)
    return getattr(diag, name, None) if diag is not None else None


def _key_fields(exc: BaseException) -> list[str]:
    """Return the columns named in 'Key (a, b)=(…)' of a unique or foreign-key violation."""
    match = _KEY_COLUMNS.search(_diag(exc, "message_detail") or "")
    return [c.strip() for c in match.group(1).split(",")] if match else []


def _field(name: str | None, fields: Mapping[str, str]) -> str | None:
    """Return the request field for a column or constraint name (unchanged if not mapped)."""
    if name is None:
        return None
    return fields.get(name, name)


def _unique(exc: BaseException, fields: Mapping[str, str]) -> GridgovError:
    constraint = _diag(exc, "constraint_name")
    columns = _key_fields(exc)
    field = fields.get(constraint or "") or (_field(columns[-1], fields) if columns else None)
    return Conflict(f"{field or 'value'} already exists", field=field)


def _foreign_key(exc: BaseException, fields: Mapping[str, str]) -> GridgovError:
    constraint = _diag(exc, "constraint_name")
    detail = _diag(exc, "message_detail") or ""
    if "is still referenced" in detail:
        table = _diag(exc, "table_name") or "other objects"
        # The table named is the referencing one, for a DELETE or key UPDATE of the parent.
        return Conflict(f"still referenced by {table}", field=None)
    columns = _key_fields(exc)
    field = fields.get(constraint or "") or (_field(columns[0], fields) if columns else None)
    return InvalidInput(f"{field or 'reference'} refers to nothing", field=field)


def _check(exc: BaseException, fields: Mapping[str, str]) -> GridgovError:
    constraint = _diag(exc, "constraint_name") or ""
    field = fields.get(constraint)
    if field is None:
        # PostgreSQL names a column CHECK "<table>_<column>_check"; take the column part.
        table = _diag(exc, "table_name") or ""
        stem = constraint.removeprefix(table + "_") if table else constraint
        field = stem.removesuffix("_check") or None
        field = _field(field, fields)
    return InvalidInput(f"{field or 'value'} breaks a rule", field=field)


def translate(exc: BaseException, *, fields: Mapping[str, str] | None = None) -> GridgovError:
    """Map a database error to a domain error.

    Args:
        exc: a SQLAlchemy ``DBAPIError`` (or a raw psycopg2 error).
        fields: optional column or constraint name → request field name, e.g.
            ``{"document_number_hash": "document_number"}``.

    Returns:
        InvalidInput (GG422, check, not-null, foreign key to nothing, out of jurisdiction),
        Conflict (GG409, unique, still referenced, serialization failure or deadlock),
        Unavailable (connection lost, timeout), or a plain GridgovError for anything else.
    """
    names = fields or {}
    code = sqlstate(exc)
    message = _diag(exc, "message_primary") or "database error"
    if code == "GG422":
        field = _field(_diag(exc, "message_detail"), names)
        return InvalidInput(message, field=field)
    if code == "GG409":
        other = _diag(exc, "message_detail")
        return Conflict(message, other=other)
    if code == "23505":
        return _unique(exc, names)
    if code == "23503":
        return _foreign_key(exc, names)
    if code == "23514":
        return _check(exc, names)
    if code == "23502":
        field = _field(_diag(exc, "column_name"), names)
        return InvalidInput(f"{field or 'value'} is required", field=field)
    if code in ("22P02", "22001", "22003", "22007", "22008"):
        return InvalidInput("a value has the wrong form or is out of range")
    if code == "42501" and "row-level security" in message:
        return InvalidInput("outside your jurisdiction")
    if code in ("40001", "40P01", "55P03"):
        return Conflict("a concurrent change got there first; retry")
    if code == "57014" or isinstance(exc, OperationalError) and code is None:
        return Unavailable("the database did not answer in time")
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Unavailable("the database connection was lost")
    return GridgovError("database error")
