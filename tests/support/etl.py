"""Running ``gridgov etl`` in tests: the typer app against a module database, and checks."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from typer.testing import CliRunner

from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.engine import sqlalchemy_url

_ENV = ("GRIDGOV_DATABASE_URL", "GRIDGOV_APP_DATABASE_URL", "GRIDGOV_DATA_DIR")


@dataclass
class EtlRun:
    """A database the CLI runs against, and an owner engine to look at the results."""

    owner: Engine
    workdir: Path

    def __call__(self, *args: Any) -> Any:
        """Run ``gridgov etl <args>`` in-process; return click's Result."""
        from spatial_etl.cli import etl_app

        old = Path.cwd()
        os.chdir(self.workdir)  # default report/rejects files land here
        try:
            return CliRunner().invoke(etl_app, [str(a) for a in args], catch_exceptions=False)
        finally:
            os.chdir(old)

    def scalar(self, sql: str, **params: Any) -> Any:
        """Return the first column of the first row of a query (as the owner, no RLS)."""
        with self.owner.connect() as c:
            return c.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> Sequence[Any]:
        """Return all rows of a query (as the owner)."""
        with self.owner.connect() as c:
            return c.execute(text(sql), params).all()

    def execute(self, sql: str, **params: Any) -> None:
        """Run a statement as the owner and commit it."""
        with self.owner.begin() as c:
            c.execute(text(sql), params)


@contextmanager
def etl_database(pg: Any, database: str, workdir: Path) -> Iterator[EtlRun]:
    """Point the CLI at a test database through the environment (as an operator would)."""
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ["GRIDGOV_DATABASE_URL"] = pg.url(OWNER_ROLE, database)
    os.environ["GRIDGOV_APP_DATABASE_URL"] = pg.url(APP_ROLE, database)
    os.environ["GRIDGOV_DATA_DIR"] = str(workdir / ".gridgov")
    owner = create_engine(sqlalchemy_url(pg.url(OWNER_ROLE, database)))
    try:
        yield EtlRun(owner, workdir)
    finally:
        owner.dispose()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
