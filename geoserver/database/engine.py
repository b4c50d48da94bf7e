"""Engines and the request transaction: every unit of work runs in one transaction that first
sets the caller's scope, so row-level security sees exactly the caller's jurisdiction."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

#: A scope that sees every row: the empty ltree is an ancestor of every path.
SYSTEM_SCOPE: tuple[str, ...] = ("",)

_PATH = re.compile(r"^(?:[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)?$")


def sqlalchemy_url(url: str) -> str:
    """Pin the psycopg2 driver (SQLAlchemy 2.1 would pick psycopg 3 for ``postgresql://``)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def make_engine(url: str, *, pool_size: int = 8, statement_timeout_ms: int = 30_000) -> Engine:
    """Create an engine whose connections use Shanghai time and a statement timeout."""
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "options": f"-c timezone=Asia/Shanghai -c statement_timeout={statement_timeout_ms}",
            "connect_timeout": 5,
            "application_name": "gridgov",
        },
    )


def scope_literal(paths: Sequence[str]) -> str:
    """Render region paths as an ltree[] literal; reject anything that is not a path."""
    for p in paths:
        if not _PATH.match(p):
            raise ValueError(f"not a region path: {p!r}")
    return "{" + ",".join(f'"{p}"' for p in paths) + "}"


def set_scope(session: Session, paths: Sequence[str]) -> None:
    """Set the caller's scope for the current transaction only (``set_config(…, true)``)."""
    session.execute(
        text("SELECT set_config('gridgov.scope', :s, true)"), {"s": scope_literal(paths)}
    )


@contextmanager
def scoped_session(engine: Engine, scope: Sequence[str]) -> Iterator[Session]:
    """Yield a session in one transaction with ``scope`` set; commit on success, else roll back."""
    with Session(engine, expire_on_commit=False) as session:
        with session.begin():
            set_scope(session, scope)
            yield session
