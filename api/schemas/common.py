"""Request pieces several routers share: id bounds, safe text, bbox text, storable bodies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel

from geoserver.errors import FieldProblem, InvalidInput

#: Ids are bigint: a larger number is invalid input, not a database error.
MAX_ID = 2**63 - 1
MIN_INT = -(2**63)
#: PostgreSQL text can never hold NUL: refuse it as invalid input rather than fail on it.
NO_NUL = r"^[^\x00]*$"
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Version = Annotated[int, Query(ge=1, le=2**31 - 1, description="the version you saw")]
RegionCode = Annotated[str | None, Query(pattern=r"^[0-9A-Za-z]{2,24}$")]
CrsName = Annotated[str, Query(pattern=r"^[A-Za-z0-9:_-]{1,40}$",
                               description="WGS84, CGCS2000, GCJ02 or BD09")]
BBoxText = Annotated[str | None, Query(
    pattern=r"^[-+0-9.eE]+(,[-+0-9.eE]+){3}$", max_length=120,
    description="west,south,east,north in bbox_crs")]


def parse_bbox(value: str | None, *, field: str = "bbox") -> tuple[float, float, float,
                                                                   float] | None:
    """Parse ``west,south,east,north`` into floats (ranges are the services' to check)."""
    if not value:
        return None
    try:
        west, south, east, north = (float(v) for v in value.split(","))
    except ValueError:
        raise InvalidInput("bbox is west,south,east,north in degrees", field=field) from None
    return west, south, east, north


def _unstorable(value: Any, where: str, top: bool) -> Iterator[FieldProblem]:
    """Yield the values PostgreSQL could not store or bind, with where they are."""
    if isinstance(value, str):
        if "\x00" in value:
            yield FieldProblem(where, "text must not contain NUL characters")
        elif not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                yield FieldProblem(where, "text must be valid Unicode (no lone surrogates)")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and top and not MIN_INT <= value <= MAX_ID:
        # Top-level numbers go to bigint columns and id lookups; JSON inside is jsonb.
        yield FieldProblem(where, "number is out of range")
    elif isinstance(value, BaseModel):
        for name in value.model_fields_set:
            yield from _unstorable(getattr(value, name), f"{where}.{name}", top)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unstorable(key, where, False)
            yield from _unstorable(item, f"{where}.{key}", False)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _unstorable(item, f"{where}[{i}]", top)


def check_storable(body: BaseModel) -> None:
    """Refuse a body holding NUL characters, lone surrogates or out-of-range ids (422)."""
    problems = [p for name in body.model_fields_set
                for p in _unstorable(getattr(body, name), name, True)]
    if problems:
        raise InvalidInput("; ".join(f"{p.field}: {p.message}" for p in problems[:5]),
                           problems=problems)
