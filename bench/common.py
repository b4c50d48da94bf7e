"""Set-up the bench scripts share: a database on the test cluster, a server process, timing.

Scripts run as ``.venv/bin/python bench/bench_x.py`` from anywhere; each puts the repository root
on ``sys.path`` before ``from bench.common import …``. Database helpers import ``tests`` lazily
(the tiny demo template comes from its conftest), so importing this module connects nowhere.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.support.db import TestCluster

ROOT = Path(__file__).resolve().parent.parent


# --- timing -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0–100) of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def timed(fn: Callable[[], Any], n: int, *, warmup: int = 0) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``n`` times; return the durations in ms."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


# --- the database -----------------------------------------------------------------------------


@contextlib.contextmanager
def bench_clone(tag: str, *, scale: str = "tiny",
                keep: str | None = None) -> Iterator[tuple[TestCluster, str]]:
    """Yield the test cluster and a database on it holding the demo city at ``scale``.

    ``tiny`` clones the tiny demo template; a larger scale loads the demo city into a clone of
    the empty template. The database is dropped afterwards unless ``keep`` names it: then it is
    reused when it exists (migrated, so its SQL functions are current) and left for next time.
    """
    import tests.conftest  # noqa: F401  (registers the tiny demo city as the template filler)
    from geoserver.database import migrate
    from geoserver.database.bootstrap import OWNER_ROLE
    from tests.support.db import test_cluster

    with test_cluster() as pg:
        name = keep or f"gridgov_bench_{tag}_{os.getpid()}"
        with contextlib.closing(pg.superuser()) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            exists = keep is not None and cur.fetchone() is not None
        if exists:
            migrate.migrate(pg.url(OWNER_ROLE, name))
        else:
            pg.clone(pg.ensure_template(demo=scale == "tiny"), name)
        try:
            if not exists and scale != "tiny":
                _load_demo(pg.url(OWNER_ROLE, name), name, scale)
            yield pg, name
        finally:
            if keep is None:
                pg.drop(name)


def _load_demo(owner_url: str, name: str, scale: str) -> None:
    from geoserver.config import SecuritySettings
    from geoserver.demo.loader import load_demo
    from geoserver.security.crypto import crypto_from_settings

    print(f"loading the {scale} demo city into {name} …", flush=True)
    t = time.perf_counter()
    load_demo(owner_url, scale=scale, seed=1, crypto=crypto_from_settings(SecuritySettings()))
    print(f"  loaded in {time.perf_counter() - t:.0f} s", flush=True)


@contextlib.contextmanager
def bench_database(tag: str, *, scale: str = "tiny",
                   keep: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield (owner URL, app URL) of a ``bench_clone`` database."""
    from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE

    with bench_clone(tag, scale=scale, keep=keep) as (pg, name):
        yield pg.url(OWNER_ROLE, name), pg.url(APP_ROLE, name)


@contextlib.contextmanager
def given_or_bench_database(tag: str, *,
                            scale: str = "tiny") -> Iterator[tuple[str, str | None]]:
    """Yield (owner URL, None) of the database ``GRIDGOV_DATABASE_URL`` names (read as it is,
    RLS bypassed), else (owner URL, app URL) of a ``bench_database`` clone."""
    url = os.environ.get("GRIDGOV_DATABASE_URL")
    if url:
        yield url, None
        return
    with bench_database(tag, scale=scale) as urls:
        yield urls


# --- servers ----------------------------------------------------------------------------------


def gridgov_env(owner_url: str, app_url: str, **extra: str) -> dict[str, str]:
    """Return the environment of a gridgov server process on a bench database (jobs off)."""
    return {"GRIDGOV_DATABASE_URL": owner_url, "GRIDGOV_APP_DATABASE_URL": app_url,
            "GRIDGOV_JOBS_ENABLED": "false", "GRIDGOV_ENV": "test",
            "GRIDGOV_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), **extra}


def uvicorn_command(factory: str = "api.app:app_from_env", *, workers: int | None = None,
                    python: str = sys.executable, extra: tuple[str, ...] = ()) -> list[str]:
    """Return the command serving an app factory on ``{port}`` (``server_process`` fills it)."""
    cmd = [python, "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1",
           "--port", "{port}", "--log-level", "warning", "--no-access-log"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    return cmd + list(extra)


@contextlib.contextmanager
def server_process(cmd: list[str], env: dict[str, str], *, health: str = "/health",
                   capture: bool = False, timeout: float = 90) -> Iterator[tuple[str, int]]:
    """Run an HTTP server subprocess until its ``health`` path answers 200; yield its base URL
    and pid, then stop it.

    ``{port}`` in ``cmd`` becomes a free loopback port. The server gets its own session, so a
    Ctrl-C reaches only this script, which stops it. ``capture`` keeps its output out of the
    console (shown only when it does not start).
    """
    from geoserver.database.cluster import free_port

    port = free_port()
    cmd = [c.replace("{port}", str(port)) for c in cmd]
    log = tempfile.TemporaryFile() if capture else None
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=log,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + health, timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = ""
                if log is not None:
                    log.seek(0)
                    tail = ":\n" + log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{cmd[0]} did not start{tail}")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not None:
            log.close()
