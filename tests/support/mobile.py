"""Helpers for the phone page's tests: a live server with its own data directory (photos)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine

from geoserver.config import DatabaseSettings, ServerSettings, Settings
from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.principal import SYSTEM
from geoserver.services import event_types
from tests.support import live
from tests.support.db import TestCluster


def mobile_settings(pg: TestCluster, database: str, data_dir: Path) -> Settings:
    """Settings for a test server with its own data directory (photos)."""
    return Settings(
        database=DatabaseSettings(database_url=pg.url(OWNER_ROLE, database),
                                  app_database_url=pg.url(APP_ROLE, database),
                                  data_dir=data_dir),
        server=ServerSettings(env="test", jobs_enabled=False),
    )


@contextmanager
def serve(settings: Settings, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the whole app over HTTP in a thread; yield ``http://host:port``."""
    with live.serve(live.app_with(settings), host) as url:
        yield url


def load_catalogue(engine: Engine) -> None:
    """Load the default event-type catalogue (the tiny demo has none)."""
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        event_types.initialize_catalogue(s, actor=SYSTEM)
