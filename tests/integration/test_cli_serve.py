"""`gridgov serve` and `gridgov db …` as a newcomer runs them: fresh data directories, real
processes, real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import psycopg2
import pytest

from geoserver.database.bootstrap import OWNER_ROLE
from geoserver.database.cluster import EmbeddedCluster, free_port

GRIDGOV = [sys.executable, "-m", "api"]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDGOV_")}
    env.update(GRIDGOV_DATA_DIR=str(data_dir), GRIDGOV_LOG_LEVEL="WARNING", **extra)
    return env


def gridgov(data_dir: Path, *args: str, timeout: float = 120, **env: str):
    return subprocess.run(GRIDGOV + list(args), env=_env(data_dir, **env), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp and traversable: the cluster runs as the postgres user when tests run as root.
    d = Path(tempfile.mkdtemp(prefix="gridgov-cli-"))
    d.chmod(0o755)
    yield d
    EmbeddedCluster(d).stop(mode="immediate")
    shutil.rmtree(d, ignore_errors=True)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server never became ready")


def _serve(data_dir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(GRIDGOV + ["serve", "--port", str(port)], env=_env(data_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_cold_start_refusals_and_clean_sigterm(data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(data_dir, port)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        cluster = EmbeddedCluster(data_dir)
        assert cluster.running_port() is not None

        second = gridgov(data_dir, "serve", "--port", str(free_port()))
        assert second.returncode != 0
        assert "another gridgov serve" in second.stderr

        other_dir = tmp_path / "other"
        busy = gridgov(other_dir, "serve", "--port", str(port))
        assert busy.returncode != 0 and "cannot listen" in busy.stderr
        assert not (other_dir / "pg").exists(), "a refused start must not create a cluster"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "gridgov stopped" in err
    assert EmbeddedCluster(data_dir).running_port() is None


def test_backup_restore_round_trip_and_stale_pid(data_dir: Path, tmp_path: Path) -> None:
    up = gridgov(data_dir, "db", "up")
    assert up.returncode == 0, up.stderr
    owner_url = up.stdout.strip().splitlines()[-1]
    assert gridgov(data_dir, "db", "migrate").returncode == 0
    with closing(psycopg2.connect(owner_url)) as conn, conn, conn.cursor() as cur:
        cur.execute("INSERT INTO gridgov_meta.job_queue (kind, payload) VALUES "
                    "('probe', '{\"城市\": \"温州\"}')")
    archive = tmp_path / "backup.tar.gz"
    r = gridgov(data_dir, "db", "backup", str(archive))
    assert r.returncode == 0, r.stderr
    assert gridgov(data_dir, "db", "down").returncode == 0

    # A kill -9 leaves postmaster.pid behind: the next start must recover from it.
    pidfile = EmbeddedCluster(data_dir).pgdata / "postmaster.pid"
    pidfile.write_text("999999\n/nowhere\n0\n5432\n")
    assert gridgov(data_dir, "db", "up").returncode == 0
    assert gridgov(data_dir, "db", "down").returncode == 0

    fresh = Path(tempfile.mkdtemp(prefix="gridgov-restore-"))
    fresh.chmod(0o755)
    try:
        r = gridgov(fresh, "db", "restore", str(archive))
        assert r.returncode == 0, r.stderr
        up2 = gridgov(fresh, "db", "up")
        url2 = up2.stdout.strip().splitlines()[-1]
        with closing(psycopg2.connect(url2)) as conn, conn.cursor() as cur:
            cur.execute("SELECT payload FROM gridgov_meta.job_queue WHERE kind = 'probe'")
            assert cur.fetchone()[0] == {"城市": "温州"}
        status = gridgov(fresh, "db", "status")
        assert "schema is current" in status.stdout
    finally:
        EmbeddedCluster(fresh).stop(mode="immediate")
        shutil.rmtree(fresh, ignore_errors=True)


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = gridgov(blocker / "data", "db", "up")
    assert r.returncode != 0
    assert "not writable" in r.stderr and "Traceback" not in r.stderr


def test_server_without_postgis_is_refused(pg, tmp_path: Path) -> None:
    name = "gridgov_no_postgis"
    pg.drop(name)
    with closing(pg.superuser()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
    try:
        r = gridgov(tmp_path, "serve", "--port", str(free_port()),
                    GRIDGOV_DATABASE_URL=pg.url(OWNER_ROLE, name))
        assert r.returncode != 0
        assert "postgis" in r.stderr.lower() and "bootstrap" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        pg.drop(name)


def test_status_reports_cluster(data_dir: Path) -> None:
    r = gridgov(data_dir, "db", "status")
    assert r.returncode == 0
    assert "running: False" in r.stdout
    assert json.dumps(str(data_dir.resolve()))[1:-1] in r.stdout


def test_database_outage_is_503_and_recovers(data_dir: Path) -> None:
    from geoserver.config import DatabaseSettings, ServerSettings, Settings
    from geoserver.database.runtime import derive_app_url
    from tests.conftest import run_server

    up = gridgov(data_dir, "db", "up")
    assert up.returncode == 0, up.stderr
    owner_url = up.stdout.strip().splitlines()[-1]
    assert gridgov(data_dir, "db", "migrate").returncode == 0
    secrets = json.loads((data_dir / "secrets.json").read_text())
    settings = Settings(
        database=DatabaseSettings(
            database_url=owner_url,
            app_database_url=derive_app_url(owner_url, secrets["gridgov_app"]),
        ),
        server=ServerSettings(env="test", jobs_enabled=True),
    )
    with run_server(settings) as base:
        assert httpx.get(base + "/ready").status_code == 200
        assert gridgov(data_dir, "db", "down").returncode == 0
        r = httpx.get(base + "/ready")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("application/problem+json")
        assert gridgov(data_dir, "db", "up").returncode == 0
        deadline = time.monotonic() + 30
        while httpx.get(base + "/ready").status_code != 200:
            assert time.monotonic() < deadline, "server did not recover after the database"
            time.sleep(0.2)
