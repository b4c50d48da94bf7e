"""Resolve where the database is: an external server from settings, or the embedded cluster."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg2
from sqlalchemy.engine import make_url

from geoserver.config import DatabaseSettings
from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE, bootstrap
from geoserver.database.cluster import DATABASE, SUPERUSER, EmbeddedCluster
from geoserver.errors import ClusterError, SchemaMismatch


@dataclass
class DatabaseTarget:
    """Connection URLs for one gridgov database, and the cluster if gridgov runs it."""

    owner_url: str
    app_url: str
    superuser_url: str | None = None
    cluster: EmbeddedCluster | None = None
    started_here: bool = False

    def export_env(self) -> None:
        """Put the URLs in the environment so uvicorn workers find the same database."""
        os.environ["GRIDGOV_DATABASE_URL"] = self.owner_url
        os.environ["GRIDGOV_APP_DATABASE_URL"] = self.app_url

    def close(self) -> None:
        """Stop the embedded cluster if this process started it."""
        if self.cluster is not None and self.started_here:
            self.cluster.stop()
            self.started_here = False


def derive_app_url(owner_url: str, password: str | None = None) -> str:
    """Return the owner URL with the app role as user."""
    url = make_url(owner_url).set(username=APP_ROLE)
    if password is not None:
        url = url.set(password=password)
    return url.render_as_string(hide_password=False)


def open_database(settings: DatabaseSettings, *, start: bool = True) -> DatabaseTarget:
    """Return the database gridgov should use, starting the embedded cluster when needed."""
    if settings.database_url:
        app_url = settings.app_database_url or derive_app_url(settings.database_url)
        return DatabaseTarget(owner_url=settings.database_url, app_url=app_url)
    cluster = EmbeddedCluster(settings.data_dir, os_user=settings.cluster_os_user)
    if start:
        info, started = cluster.start()
    else:
        if cluster.running_port() is None:
            raise ClusterError(f"no cluster is running in {cluster.pgdata}: run `gridgov db up`")
        info, started = cluster.info(), False
    target = DatabaseTarget(
        owner_url=info.url(OWNER_ROLE),
        app_url=info.url(APP_ROLE),
        superuser_url=info.url(SUPERUSER),
        cluster=cluster,
        started_here=started,
    )
    try:
        bootstrap(
            target.superuser_url or "", database=DATABASE, owner_role=OWNER_ROLE,
            app_role=APP_ROLE, owner_password=info.passwords[OWNER_ROLE],
            app_password=info.passwords[APP_ROLE],
        )
    except Exception:
        target.close()
        raise
    return target


def check_server(owner_url: str) -> None:
    """Refuse a server older than PostgreSQL 15 or a database without PostGIS ≥ 3.3."""
    try:
        conn = psycopg2.connect(owner_url, connect_timeout=10)
    except psycopg2.OperationalError as e:
        first = str(e).strip().splitlines()[0]
        raise ClusterError(f"cannot connect to the database: {first}") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version_num")
            version = int(cur.fetchone()[0])
            cur.execute(
                "SELECT extname, extversion FROM pg_extension "
                "WHERE extname IN ('postgis', 'ltree', 'pg_trgm', 'btree_gist')"
            )
            have = dict(cur.fetchall())
    finally:
        conn.close()
    if version < 150000:
        raise SchemaMismatch(f"PostgreSQL {version // 10000} is too old: gridgov needs 15 or newer")
    missing = [x for x in ("postgis", "ltree", "pg_trgm", "btree_gist") if x not in have]
    if missing:
        raise SchemaMismatch(
            f"the database lacks the extension(s) {', '.join(missing)}: a superuser runs "
            "`gridgov db bootstrap --superuser-url …` once"
        )
    major_minor = tuple(int(x) for x in have["postgis"].split(".")[:2])
    if major_minor < (3, 3):
        raise SchemaMismatch(f"PostGIS {have['postgis']} is too old: gridgov needs 3.3 or newer")
