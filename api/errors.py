"""Map domain errors to HTTP in one table and render every error as problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException

from geoserver import errors as e

log = logging.getLogger("gridgov.api")

PROBLEM = "application/problem+json"

#: Domain error → HTTP status. The one place where the two meet.
STATUS: dict[type[e.GridgovError], int] = {
    e.InvalidInput: 422,
    e.NotFound: 404,
    e.Conflict: 409,
    e.PermissionDenied: 403,
    e.Unauthenticated: 401,
    e.TooLarge: 413,
    e.RateLimited: 429,
    e.Unavailable: 503,
    e.SchemaMismatch: 503,
    e.ClusterError: 503,
}

_SLUG = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 406: "not-acceptable", 409: "conflict",
    413: "payload-too-large", 415: "unsupported-media-type", 422: "invalid-input",
    429: "too-many-requests", 500: "internal-error", 503: "service-unavailable",
}
_TITLE = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 406: "Not acceptable", 409: "Conflict",
    413: "Payload too large", 415: "Unsupported media type", 422: "Invalid input",
    429: "Too many requests", 500: "Internal server error", 503: "Service unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": f"urn:gridgov:problem:{_SLUG.get(status, str(status))}",
        "title": title or _TITLE.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_for(exc: e.GridgovError) -> int:
    """Return the HTTP status of a domain error (the nearest class in the table)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.GridgovError)
    status = status_for(exc)
    headers = None
    if isinstance(exc, e.RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, e.Unauthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    errors = None
    if isinstance(exc, e.InvalidInput) and exc.problems:
        errors = [{"field": p.field, "message": p.message} for p in exc.problems]
    return problem(status, exc.detail, headers=headers, errors=errors, **exc.extra)


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[0] if loc else "request")


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _loc(tuple(err.get("loc", ()))), "message": err.get("msg", "")}
              for err in exc.errors()]
    fields = ", ".join(dict.fromkeys(x["field"] for x in errors))
    return problem(422, f"invalid input: {fields}", errors=errors)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _TITLE.get(exc.status_code, "Error")
    return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _database(request: Request, exc: Exception) -> JSONResponse:
    # A lost or refused connection is the database being away, not a bug: 503, retry later.
    if isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        return problem(503, "the database is not reachable now; retry shortly",
                       headers={"Retry-After": "5"})
    return await _unexpected(request, exc)


def _nul_text(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it wraps) is PostgreSQL refusing a NUL character in text."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, ValueError) and "NUL (0x00)" in str(exc):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__
        seen += 1
    return False


async def _value(request: Request, exc: Exception) -> JSONResponse:
    # PostgreSQL text cannot hold U+0000; a body that smuggles one in is bad input, not a bug.
    # (Handled here rather than under Exception, whose handler runs after the connection is lost.)
    if _nul_text(exc):
        return problem(422, "text may not contain the NUL character (U+0000)")
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    rid = getattr(request.state, "request_id", None)
    return problem(500, "an internal error occurred; it has been logged", request_id=rid)


def install(app: FastAPI) -> None:
    """Install the error handlers on ``app``."""
    app.add_exception_handler(e.GridgovError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(ValueError, _value)
    app.add_exception_handler(StatementError, _value)
    app.add_exception_handler(Exception, _unexpected)
