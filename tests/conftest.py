"""Shared fixtures: a real PostGIS for every test that touches data."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from geoserver.config import DatabaseSettings, ServerSettings, Settings
from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.cluster import free_port
from geoserver.database.engine import SYSTEM_SCOPE, set_scope, sqlalchemy_url
from tests.support.db import TestCluster, test_cluster

# Statistics and "days" are Shanghai's whatever the machine says; CI runs in UTC, and so do we.
os.environ.setdefault("TZ", "UTC")


@pytest.fixture(scope="session")
def pg() -> Iterator[TestCluster]:
    """The session's embedded test cluster."""
    with test_cluster() as tc:
        yield tc


@pytest.fixture(scope="session")
def template_db(pg: TestCluster) -> str:
    """The migrated (and demo-filled) template database's name."""
    return pg.ensure_template()


@pytest.fixture(scope="session")
def test_db(pg: TestCluster, template_db: str) -> Iterator[str]:
    """A session-wide database cloned from the template; tests roll back their changes."""
    name = pg.clone(template_db, f"gridgov_test_{os.getpid()}")
    yield name
    pg.drop(name)


def _engine(url: str) -> Engine:
    return create_engine(
        sqlalchemy_url(url), pool_size=4, connect_args={"options": "-c timezone=Asia/Shanghai"}
    )


@pytest.fixture(scope="session")
def app_engine(pg: TestCluster, test_db: str) -> Iterator[Engine]:
    """An engine connected as the app role (NOBYPASSRLS), as the server connects."""
    e = _engine(pg.url(APP_ROLE, test_db))
    yield e
    e.dispose()


@pytest.fixture(scope="session")
def owner_engine(pg: TestCluster, test_db: str) -> Iterator[Engine]:
    """An engine connected as the owner role (for set-up the app may not do)."""
    e = _engine(pg.url(OWNER_ROLE, test_db))
    yield e
    e.dispose()


@pytest.fixture
def session_as(app_engine: Engine) -> Iterator[Callable[[Sequence[str]], Session]]:
    """Open app-role sessions with a given scope; everything they write is rolled back."""
    opened: list[tuple[Session, object]] = []

    def open_session(scope: Sequence[str]) -> Session:
        conn = app_engine.connect()
        trans = conn.begin()
        s = Session(bind=conn, join_transaction_mode="create_savepoint",
                    expire_on_commit=False)
        set_scope(s, scope)
        opened.append((s, (conn, trans)))
        return s

    yield open_session
    for s, (conn, trans) in opened:  # type: ignore[misc]
        s.close()
        trans.rollback()
        conn.close()


@pytest.fixture
def db(session_as: Callable[[Sequence[str]], Session]) -> Session:
    """An app-role session that sees the whole city (system scope), rolled back afterwards."""
    return session_as(SYSTEM_SCOPE)


@pytest.fixture(scope="module")
def module_db(pg: TestCluster, template_db: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this module's own, for tests that commit (HTTP tests, jobs)."""
    name = f"gridgov_m_{os.getpid()}_{abs(hash(request.module.__name__)) % 10**8}"
    pg.clone(template_db, name)
    yield name
    pg.drop(name)


def make_settings(pg: TestCluster, database: str, **server: object) -> Settings:
    """Settings pointing at a test database."""
    return Settings(
        database=DatabaseSettings(
            database_url=pg.url(OWNER_ROLE, database),
            app_database_url=pg.url(APP_ROLE, database),
        ),
        server=ServerSettings(env="test", **server),  # type: ignore[arg-type]
    )


@contextmanager
def run_server(settings: Settings) -> Iterator[str]:
    """Serve the app over real HTTP on a free loopback port in a thread; yield its base URL."""
    from api.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module")
def live_server(pg: TestCluster, module_db: str) -> Iterator[str]:
    """The app served over real HTTP against this module's database."""
    with run_server(make_settings(pg, module_db, jobs_enabled=False)) as url:
        yield url


@pytest.fixture(scope="module")
def http(live_server: str) -> Iterator[httpx.Client]:
    """An HTTP client for the live server."""
    with httpx.Client(base_url=live_server, timeout=30) as c:
        yield c
