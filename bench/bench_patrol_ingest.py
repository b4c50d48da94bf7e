"""Bench: patrol point ingest through HTTP against a raw COPY into the same table.

Side by side in one run, on a clone of the tiny demo template on the test cluster (fsync on,
synchronous_commit on: every batch is durable when it is answered):

- HTTP: ``POST /api/v1/patrols/points`` with batches of 1,000 and 10,000 points (JSON, WGS84),
  and of 50 (a phone's minute at 1 Hz: the per-request cost),
  served by uvicorn in a separate process (``--workers`` processes), ``--clients`` threads
  posting at once. Every batch is parsed, checked, converted, H3-indexed, COPYed into the
  staging table and moved into ``gps_point`` under row-level security, and committed.
- service: the same batches through ``patrols.ingest_points`` in this process, no HTTP.
- raw COPY: the owner COPYs the same rows straight into ``gps_point`` (no checks, no RLS,
  H3 precomputed), one COPY and one commit per batch: the ceiling of this table design.

Then bytes per stored point: the raw-point partitions (heap + indexes) over their row count.

    .venv/bin/python bench/bench_patrol_ingest.py [--points 200000] [--clients 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from geoserver.database.engine import scoped_session, sqlalchemy_url  # noqa: E402

GRID = "330302006044001"


def make_app() -> Any:
    """App factory for the server process: the app, with the patrol router if app.py lacks it."""
    from api.app import create_app
    from api.routes import patrols as patrol_routes
    from geoserver.config import Settings

    app = create_app(Settings())
    if not any(getattr(r, "path", "").startswith("/api/v1/patrols") for r in app.routes):
        app.include_router(patrol_routes.router)
        mounts = [r for r in app.router.routes if getattr(r, "name", "") == "web_map"]
        app.router.routes[:] = [r for r in app.router.routes if r not in mounts] + mounts
    return app


@contextmanager
def bench_database() -> Iterator[tuple[str, str]]:
    """Yield (owner URL, app URL) of a fresh clone of the tiny demo template."""
    import tests.conftest  # noqa: F401  (registers the tiny demo city as the template filler)
    from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
    from tests.support.db import test_cluster

    with test_cluster() as pg:
        name = pg.clone(pg.ensure_template(demo=True), f"gridgov_bench_patrol_{os.getpid()}")
        try:
            yield pg.url(OWNER_ROLE, name), pg.url(APP_ROLE, name)
        finally:
            pg.drop(name)


@contextmanager
def server(owner_url: str, app_url: str, workers: int) -> Iterator[str]:
    """Run uvicorn in its own process group; yield its base URL."""
    from geoserver.database.cluster import free_port

    port = free_port()
    env = {**os.environ, "GRIDGOV_DATABASE_URL": owner_url, "GRIDGOV_APP_DATABASE_URL": app_url,
           "GRIDGOV_JOBS_ENABLED": "false", "GRIDGOV_ENV": "test", "GRIDGOV_LOG_LEVEL": "WARNING",
           "GRIDGOV_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "bench_patrol_ingest:make_app",
         "--app-dir", str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the bench server did not start")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


def track(n: int, start: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A wandering walk near the grid, five fixes a second (times, lon, lat)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 1.0, (n, 2)).cumsum(axis=0)
    lon = 120.694 + steps[:, 0] * 1e-5
    lat = 28.020 + steps[:, 1] * 1e-5
    return start + np.arange(n, dtype=np.float64) * 0.2, lon, lat


def batch_json(batch_id: str, t: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> bytes:
    """Serialise a batch as the phone sends it."""
    pts = [{"t": int(a * 1000), "lon": round(b, 7), "lat": round(c, 7), "accuracy": 8.0,
            "speed": 1.2} for a, b, c in zip(t.tolist(), lon.tolist(), lat.tolist(), strict=True)]
    return json.dumps({"batch_id": batch_id, "crs": "WGS84", "points": pts}).encode()


def batches(n_points: int, size: int, tag: str, start: float) -> list[bytes]:
    """Pre-serialised batches covering n_points, consecutive in time."""
    out = []
    for i in range(max(1, n_points // size)):
        t, lon, lat = track(size, start + i * size * 0.2, seed=i)
        out.append(batch_json(f"{tag}-{size}-{i}", t, lon, lat))
    return out


def post_all(base: str, headers: dict[str, str], bodies: list[bytes], clients: int) -> float:
    """POST every body with `clients` threads; return the elapsed seconds."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=120, headers={
                **headers, "content-type": "application/json"}) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = c.post("/api/v1/patrols/points", content=body)
                if r.status_code != 201:
                    errors.append(r.text[:300])

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise SystemExit(f"{len(errors)} batches failed, e.g. {errors[0]}")
    return time.perf_counter() - t0


def raw_copy(owner: Engine, bodies: list[bytes], user_id: int, path: str) -> float:
    """COPY the same points straight into gps_point as the owner, one commit per batch.

    Rows are rendered before the clock starts: this side measures what the database can take.
    """
    from geoserver.geo.h3cells import cells_for_points

    prepared = []
    for i, body in enumerate(bodies):
        pts = json.loads(body)["points"]
        t = np.array([p["t"] * 1000 for p in pts], dtype=np.int64) - 3 * 86400 * 10**6
        ts = np.datetime_as_string(t.astype("datetime64[us]"), unit="us")
        lon = np.array([p["lon"] for p in pts])
        lat = np.array([p["lat"] for p in pts])
        h3 = cells_for_points(lon, lat, 10)
        prepared.append("".join(
            f"{a}+00\t{user_id}\t{i + 10**9}\t{b!r}\t{c!r}\t{h}\t8\t1.2\t\\N\t{k}\t0\t{path}\n"
            for k, (a, b, c, h) in enumerate(zip(ts.tolist(), lon.tolist(), lat.tolist(),
                                                  h3.tolist(), strict=True))))
    conn = owner.raw_connection()
    try:
        cur = conn.cursor()
        t0 = time.perf_counter()
        for lines in prepared:
            cur.copy_expert(
                "COPY gps_point (ts, user_id, batch_id, lon, lat, h3_r10, accuracy, speed, "
                "heading, seq, event, path) FROM STDIN", io.StringIO(lines))
            conn.commit()
        return time.perf_counter() - t0
    finally:
        conn.close()


def service_ingest(app: Engine, bodies: list[bytes], user_id: int) -> float:
    """Run the same batches through the service in this process (no HTTP)."""
    from geoserver.services import auth, patrols

    with scoped_session(app, ("",)) as s:
        actor = auth.principal_for(s, user_id)
    assert actor is not None
    payloads = [json.loads(b) for b in bodies]
    for p in payloads:
        p["batch_id"] = "svc-" + p["batch_id"]
        for q in p["points"]:
            q["t"] -= 86400 * 1000  # another day than the HTTP run
    t0 = time.perf_counter()
    for p in payloads:
        with scoped_session(app, actor.scope) as s:
            patrols.ingest_points(s, actor=actor, payload=p)
    return time.perf_counter() - t0


def bytes_per_point(owner: Engine) -> tuple[int, float, float]:
    """Return (rows, bytes per row heap+indexes, heap only) over the raw-point partitions."""
    with owner.connect() as c:
        rows, total, heap = c.execute(text(
            "SELECT sum(n), sum(t), sum(h) FROM (SELECT (SELECT count(*) FROM gps_point) AS n, "
            "0 AS t, 0 AS h UNION ALL SELECT 0, pg_total_relation_size(i.inhrelid), "
            "pg_relation_size(i.inhrelid) FROM pg_inherits i "
            "WHERE i.inhparent = 'gps_point'::regclass) x")).one()
    return int(rows), float(total) / max(1, int(rows)), float(heap) / max(1, int(rows))


def run(points: int, clients: int, workers: int) -> None:
    """Set up, run each side, print the figures."""
    from tests.support.users import make_user

    with bench_database() as (owner_url, app_url):
        owner = create_engine(sqlalchemy_url(owner_url))
        app = create_engine(sqlalchemy_url(app_url), pool_size=2)
        user = make_user(app, "bench_patrol", roles=["grid_worker"], scope=[GRID],
                         positions=[("grid_worker", GRID)])
        with owner.connect() as c:
            path = c.execute(text("SELECT path::text FROM region WHERE code = :g "
                                  "AND valid_to IS NULL"), {"g": GRID}).scalar_one()
        now = time.time()
        print(f"points per run: {points}; HTTP: {workers} uvicorn worker(s), {clients} client "
              f"thread(s); {os.cpu_count()} CPUs; fsync on, synchronous_commit on")
        print(f"{'batch':>7} {'HTTP pts/s':>11} {'service pts/s':>14} {'raw COPY pts/s':>15} "
              f"{'HTTP/COPY':>10}")
        with server(owner_url, app_url, workers) as base:
            for size, hours in ((50, 36), (1000, 30), (10_000, 20)):
                # 50 points: a phone's minute; fewer of them, the figure is per request.
                start = now - hours * 3600
                bodies = batches(points if size > 50 else points // 10, size, "http", start)
                n = len(bodies) * size
                http_s = post_all(base, user.headers, bodies, clients)
                svc_s = service_ingest(app, bodies[: max(1, len(bodies) // 4)], user.id)
                svc_n = max(1, len(bodies) // 4) * size
                copy_s = raw_copy(owner, bodies, user.id, path)
                print(f"{size:>7} {n / http_s:>11,.0f} {svc_n / svc_s:>14,.0f} "
                      f"{n / copy_s:>15,.0f} {copy_s / http_s:>10.2f}   "
                      f"({len(bodies) / http_s:,.0f} HTTP batches/s)")
        rows, per_row, heap = bytes_per_point(owner)
        print(f"stored rows {rows:,}: {per_row:.0f} bytes per point with indexes "
              f"({heap:.0f} heap only)")
        owner.dispose()
        app.dispose()


def main() -> None:
    """Parse arguments and run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    run(args.points, args.clients, args.workers)


if __name__ == "__main__":
    main()
