"""Request dependencies as ``Annotated`` aliases: the engine, the caller, the scoped session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from geoserver.database.engine import scoped_session


def get_engine(request: Request) -> Engine:
    """Return the app's engine (owned by the lifespan)."""
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def caller_scope(request: Request) -> tuple[str, ...]:
    """Return the caller's region paths; no caller means an empty scope, which sees nothing."""
    principal = getattr(request.state, "principal", None)
    return tuple(principal.scope) if principal is not None else ()


def get_session(request: Request, engine: EngineDep) -> Iterator[Session]:
    """Yield one transaction per request with the caller's scope set first."""
    with scoped_session(engine, caller_scope(request)) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
