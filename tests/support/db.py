"""Test databases: one embedded cluster per test session, a template migrated once (keyed by a
hash of ``sql/``), clones for tests that must commit."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from geoserver.database import migrate as migrations
from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE, bootstrap, prepare_database
from geoserver.database.cluster import SUPERUSER, ClusterInfo, EmbeddedCluster

#: Builders that fill the demo template after migrating (conftest adds the tiny city here).
TEMPLATE_FILLERS: list[Callable[[str], None]] = []
#: Extra text mixed into the demo template's hash (a hash of the demo generator's code).
TEMPLATE_SALT: list[str] = []


def test_data_dir() -> Path:
    """Return the test cluster's directory: under /tmp, so the postgres user can reach it.

    Locally it persists between runs (the template is rebuilt only when ``sql/`` changes);
    under CI every run starts from an empty directory.
    """
    if "GRIDGOV_TEST_DATA_DIR" in os.environ:
        return Path(os.environ["GRIDGOV_TEST_DATA_DIR"])
    if os.environ.get("CI"):
        return Path(f"/tmp/gridgov-ci-{os.getpid()}")
    return Path(f"/tmp/gridgov-test-{os.getuid()}")


@dataclass
class TestCluster:
    """A running cluster for tests."""

    __test__ = False  # not a test class, despite the name

    cluster: EmbeddedCluster
    info: ClusterInfo

    def url(self, role: str, database: str) -> str:
        """Return a URL for ``role`` on ``database``."""
        return self.info.url(role, database)

    def superuser(self, database: str = "postgres") -> psycopg2.extensions.connection:
        """Return an autocommit superuser connection."""
        conn = psycopg2.connect(self.url(SUPERUSER, database))
        conn.autocommit = True
        return conn

    def template_name(self, demo: bool) -> str:
        """Return the template database's name for the current SQL (and demo code)."""
        import hashlib

        from geoserver.database import bootstrap

        salt = "".join(TEMPLATE_SALT) if demo else "empty"
        # bootstrap.py prepares each database (extensions, LEAKPROOF marks): part of the key.
        salt += hashlib.sha256(Path(bootstrap.__file__).read_bytes()).hexdigest()
        h = hashlib.sha256((migrations.code_hash() + salt).encode())
        return f"gridgov_tpl_{'demo' if demo else 'empty'}_{h.hexdigest()[:12]}"

    def ensure_template(self, *, demo: bool) -> str:
        """Build a template database once for this code, empty or with the tiny demo city."""
        name = self.template_name(demo)
        lock = (self.cluster.data_dir / "template.lock").open("a")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with closing(self.superuser()) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone():
                    return name
                building = name + "_building"
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(building)))
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'")
                    .format(sql.Identifier(building), sql.Identifier(OWNER_ROLE))
                )
            prepare_database(self.url(SUPERUSER, building), database=building,
                             owner_role=OWNER_ROLE, app_role=APP_ROLE)
            migrations.migrate(self.url(OWNER_ROLE, building))
            for fill in TEMPLATE_FILLERS if demo else []:
                fill(self.url(OWNER_ROLE, building))
            with closing(self.superuser()) as conn, conn.cursor() as cur:
                cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(building), sql.Identifier(name)))
                cur.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(
                    sql.Identifier(name)))
                self._drop_stale_templates(cur, keep=name, kind=name.split("_")[2])
            return name
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()

    def _drop_stale_templates(self, cur: Any, *, keep: str, kind: str) -> None:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
                    (f"gridgov_tpl_{kind}_%", keep))
        for (old,) in cur.fetchall():
            cur.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(old)))
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(old)))

    def clone(self, template: str, name: str) -> str:
        """Create database ``name`` as a copy of ``template``; return its name."""
        with closing(self.superuser()) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(template), sql.Identifier(OWNER_ROLE)))
            cur.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(APP_ROLE)))
        return name

    def drop(self, name: str) -> None:
        """Drop a test database."""
        with closing(self.superuser()) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@contextmanager
def test_cluster() -> Iterator[TestCluster]:
    """Start (or reuse) the test cluster; stop it afterwards if this call started it."""
    cluster = EmbeddedCluster(test_data_dir())
    info, started = cluster.start()
    bootstrap(info.url(SUPERUSER), database="gridgov", owner_role=OWNER_ROLE,
              app_role=APP_ROLE, owner_password=info.passwords[OWNER_ROLE],
              app_password=info.passwords[APP_ROLE])
    try:
        yield TestCluster(cluster, info)
    finally:
        # Locally the cluster stays up for the next run (and for other test runs sharing it);
        # CI stops it and removes its directory.
        if os.environ.get("CI"):
            if started:
                cluster.stop()
            if "GRIDGOV_TEST_DATA_DIR" not in os.environ:
                shutil.rmtree(cluster.data_dir, ignore_errors=True)
