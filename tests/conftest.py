"""Shared fixtures: a real PostGIS for every test that touches data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from geoserver.config import DatabaseSettings, ServerSettings, Settings
from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.engine import SYSTEM_SCOPE, set_scope, sqlalchemy_url
from tests.support.db import TEMPLATE_FILLERS, TEMPLATE_SALT, TestCluster, test_cluster
from tests.support.live import app_with, serve
from tests.support.users import TestUser, make_user

# Statistics and "days" are Shanghai's whatever the machine says; CI runs in UTC, and so do we.
os.environ.setdefault("TZ", "UTC")

#: The tiny demo city (鹿城区, ~60 grids) is in every test database, generated with this seed.
DEMO_SEED = 1


def _demo_code_hash() -> str:
    import hashlib
    from pathlib import Path

    import geoserver.demo as demo

    h = hashlib.sha256()
    root = Path(demo.__file__).parent
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".csv"):
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _load_tiny(owner_url: str) -> None:
    from geoserver.config import SecuritySettings
    from geoserver.demo.loader import load_demo
    from geoserver.security.crypto import crypto_from_settings

    load_demo(owner_url, scale="tiny", seed=DEMO_SEED,
              crypto=crypto_from_settings(SecuritySettings()))


TEMPLATE_SALT.append(_demo_code_hash())
TEMPLATE_FILLERS.append(_load_tiny)


@pytest.fixture(scope="session")
def pg() -> Iterator[TestCluster]:
    """The session's embedded test cluster."""
    with test_cluster() as tc:
        yield tc


@pytest.fixture(scope="session")
def template_db(pg: TestCluster) -> str:
    """The migrated, empty template database's name."""
    return pg.ensure_template(demo=False)


@pytest.fixture(scope="session")
def demo_template_db(pg: TestCluster) -> str:
    """The migrated template database holding the tiny demo city."""
    return pg.ensure_template(demo=True)


@pytest.fixture(scope="session")
def test_db(pg: TestCluster, template_db: str) -> Iterator[str]:
    """A session-wide empty database; tests build what they need and roll back."""
    name = pg.clone(template_db, f"gridgov_test_{os.getpid()}")
    yield name
    pg.drop(name)


@pytest.fixture(scope="session")
def demo_db(pg: TestCluster, demo_template_db: str) -> Iterator[str]:
    """A session-wide database with the tiny demo city; tests roll back their changes."""
    name = pg.clone(demo_template_db, f"gridgov_demo_{os.getpid()}")
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


@pytest.fixture(scope="session")
def demo_engine(pg: TestCluster, demo_db: str) -> Iterator[Engine]:
    """An app-role engine on the database holding the tiny demo city."""
    e = _engine(pg.url(APP_ROLE, demo_db))
    yield e
    e.dispose()


@contextmanager
def _sessions(engine: Engine) -> Iterator[Callable[[Sequence[str]], Session]]:
    opened: list[tuple[Session, object]] = []

    def open_session(scope: Sequence[str]) -> Session:
        conn = engine.connect()
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
def session_as(app_engine: Engine) -> Iterator[Callable[[Sequence[str]], Session]]:
    """Open app-role sessions on the empty database with a given scope; rolled back after."""
    with _sessions(app_engine) as open_session:
        yield open_session


@pytest.fixture
def db(session_as: Callable[[Sequence[str]], Session]) -> Session:
    """An app-role session on the empty database with system scope, rolled back afterwards."""
    return session_as(SYSTEM_SCOPE)


@pytest.fixture
def demo_session_as(demo_engine: Engine) -> Iterator[Callable[[Sequence[str]], Session]]:
    """Open app-role sessions on the tiny demo city with a given scope; rolled back after."""
    with _sessions(demo_engine) as open_session:
        yield open_session


@pytest.fixture
def demo(demo_session_as: Callable[[Sequence[str]], Session]) -> Session:
    """An app-role session on the tiny demo city with system scope, rolled back afterwards."""
    return demo_session_as(SYSTEM_SCOPE)


@pytest.fixture(scope="module")
def module_db(pg: TestCluster, demo_template_db: str,
              request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this module's own with the tiny demo city, for tests that commit."""
    name = f"gridgov_m_{os.getpid()}_{abs(hash(request.module.__name__)) % 10**8}"
    pg.clone(demo_template_db, name)
    yield name
    pg.drop(name)


@pytest.fixture(scope="module")
def module_engine(pg: TestCluster, module_db: str) -> Iterator[Engine]:
    """An app-role engine (NOBYPASSRLS) on this module's database, for set-up and checks."""
    e = create_engine(sqlalchemy_url(pg.url(APP_ROLE, module_db)))
    yield e
    e.dispose()


def make_settings(pg: TestCluster, database: str, **server: object) -> Settings:
    """Settings pointing at a test database; uploaded files go under the cluster's directory."""
    return Settings(
        database=DatabaseSettings(
            database_url=pg.url(OWNER_ROLE, database),
            app_database_url=pg.url(APP_ROLE, database),
            data_dir=pg.cluster.data_dir / "files" / database,
        ),
        server=ServerSettings(env="test", **server),  # type: ignore[arg-type]
    )


@contextmanager
def run_server(settings: Settings) -> Iterator[str]:
    """Serve the app over real HTTP on a free loopback port in a thread; yield its base URL."""
    with serve(app_with(settings)) as url:
        yield url


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


@pytest.fixture(scope="module")
def city_admin(module_engine: Engine) -> TestUser:
    """An administrator of the whole city (温州市 330300) in this module's database."""
    return make_user(module_engine, "city_admin", roles=["admin"], scope=["330300"])


@pytest.fixture(scope="module")
def catalogue(city_admin: TestUser, http: httpx.Client) -> None:
    """Load the default event-type catalogue over HTTP, as the city administrator does."""
    r = http.post("/api/v1/event-types/initialize", headers=city_admin.headers)
    assert r.status_code == 200, r.text
