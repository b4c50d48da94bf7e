"""Bench: vector tile throughput and latency, ours uncached and cached, tipg, and the SQL floor.

One run, one database, one fixed list of tiles (zooms 12–16 over the urban cores: the densest
building tiles of each zoom), the buildings layer with the same properties and feature limit:

- ``floor``: the raw ``ST_AsMVT`` query over ``building.geom_3857`` run by ``pgbench`` as the
  owner (no HTTP, no row-level security) — what the database alone can do;
- ``tipg``: tipg (PyPI, its own venv, ``TIPG_CATALOG_TTL=0``) serving ``public.building``
  as the owner, ``?properties=code,name,category,floors``;
- ``gridgov uncached``: our server with the tile memory cache off (every request renders
  through ``tiles.buildings`` under the caller's scope, RLS applied);
- ``gridgov cached``: our server after one warming pass (answers from memory, through the
  cache-hit middleware in front of the framework);
- ``cached, route only``: the same without that middleware (every hit through FastAPI's
  middleware, routing and dependencies), to show what the framework costs;
- ``cached, strict``: cached with ``GRIDGOV_TILES_CONSISTENCY=strict`` (one shared round trip on
  the change listener's connection before answering);
- ``events uncached`` / ``events cached``: the events layer (points from z14, clusters below,
  every state) over the densest event tiles of z12–16.

Each line: requests/s, p50, p99 at ``--concurrency`` clients, and the server's CPU time per
request (load-independent); then the ratios the issue asks for (uncached ≥ 2× tipg, cached
≥ 20× tipg, cached p99 < 50 ms). These machines are shared and small (2 cores for server,
database and load generator alike): read the ratios, not the absolute numbers. No thresholds.
uvicorn parses HTTP with h11 unless ``httptools`` (and ``uvloop``) are installed
(``uvicorn[standard]``), which the hit path notices: the header line says which.

Database: a clone of the tiny demo template on the test cluster (``--scale tiny``), or a
database loaded with the demo city at ``--scale demo|city`` (kept for the next run with
``--database NAME``, which is reused when it exists).

    .venv/bin/python bench/bench_tiles.py [--scale tiny|demo|city] [--database NAME]
        [--concurrency 32] [--seconds 10] [--workers 1] [--tipg-python PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    bench_database,
    gridgov_env,
    percentile,
    server_process,
    uvicorn_command,
)

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
ZOOMS = {12: 8, 13: 16, 14: 24, 15: 32, 16: 40}  # tiles per zoom in the fixed list
PROPERTIES = "code,name,category,floors"
#: The events bench draws every state (open and finished): more features than the default.
EVENT_QUERY = "state=open,final"


def route_only_app() -> object:
    """App factory of our server without the tile cache-hit middleware (the route answers)."""
    from api.app import app_from_env
    from api.routes.tiles import TileCacheMiddleware

    app = app_from_env()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not TileCacheMiddleware]
    return app


@dataclass
class Figures:
    """Throughput and latency of one contender."""

    label: str
    rps: float
    p50: float
    p99: float
    n: int
    errors: int = 0
    #: Server CPU time per request in µs (our server only: /proc of its process).
    cpu_us: float | None = None

    def line(self) -> str:
        """Return one printed line."""
        err = f"  ({self.errors} errors)" if self.errors else ""
        cpu = f"   CPU {self.cpu_us:>5.0f} µs/req" if self.cpu_us is not None else ""
        return (f"{self.label:<22} {self.rps:>9.1f} req/s   p50 {self.p50:>8.2f} ms   "
                f"p99 {self.p99:>8.2f} ms   n={self.n}{cpu}{err}")


# --- the database -----------------------------------------------------------------------------


@contextlib.contextmanager
def tiles_database(scale: str, keep: str | None) -> Iterator[tuple[str, str]]:
    """Yield (owner URL, app URL) of a bench database at ``scale``, buildings analysed."""
    import psycopg2

    with bench_database("tiles", scale=scale, keep=keep) as (owner_url, app_url):
        with contextlib.closing(psycopg2.connect(owner_url)) as conn:
            conn.autocommit = True
            conn.cursor().execute("VACUUM ANALYZE building")
        yield owner_url, app_url


def tile_list(owner_url: str, points: str = "SELECT ST_X(centroid) AS lon, ST_Y(centroid) "
              "AS lat FROM building") -> list[tuple[int, int, int]]:
    """Return the fixed tile list: the densest tiles of each zoom (of ``points``), biggest
    first."""
    import psycopg2

    tiles: list[tuple[int, int, int]] = []
    with contextlib.closing(psycopg2.connect(owner_url)) as conn, conn.cursor() as cur:
        for z, n in ZOOMS.items():
            cur.execute(
                f"WITH p AS ({points}) "
                "SELECT floor((lon + 180) / 360 * 2 ^ %(z)s)::int AS x, "
                "floor((1 - ln(tan(radians(lat)) + 1 / cos(radians(lat))) / pi()) / 2 "
                "      * 2 ^ %(z)s)::int AS y, count(*) AS c "
                "FROM p GROUP BY 1, 2 ORDER BY c DESC, x, y LIMIT %(n)s", {"z": z, "n": n})
            tiles += [(z, x, y) for x, y, _ in cur.fetchall()]
    return tiles


# --- servers ----------------------------------------------------------------------------------


#: Process ids of the servers started by ``server`` (for their CPU time), by base URL.
PIDS: dict[str, int] = {}


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process and its reaped children used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(cmd: list[str], env: dict[str, str], health: str, *,
           track_cpu: bool = False) -> Iterator[str]:
    """Run an HTTP server subprocess until its ``health`` URL answers; yield its base URL.

    ``track_cpu``: the process serves alone (one worker), so its CPU time is the server's.
    """
    with server_process(cmd, env, health=health, capture=True) as (base, pid):
        if track_cpu:
            PIDS[base] = pid
        yield base


def gridgov_server(owner_url: str, app_url: str, *, cached: bool, workers: int,
                   fast: bool = True,
                   consistency: str = "notify") -> contextlib.AbstractContextManager[str]:
    """Start our server (uvicorn subprocess) with the tile memory cache on or off, with or
    without the cache-hit middleware, in a consistency mode."""
    env = gridgov_env(owner_url, app_url, GRIDGOV_TILES_MEMORY_MB="512" if cached else "0",
                      GRIDGOV_TILES_CONSISTENCY=consistency)
    factory = "api.app:app_from_env" if fast else "bench.bench_tiles:route_only_app"
    return server(uvicorn_command(factory, workers=workers), env, "/health",
                  track_cpu=workers == 1)


def tipg_python(given: str | None) -> str:
    """Return a Python with tipg installed (its own venv under .gridgov/bench by default)."""
    if given:
        return given
    venv = ROOT / ".gridgov" / "bench" / "tipg-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print("installing tipg into", venv, "…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "tipg", "uvicorn"],
                       check=True)
    return str(python)


def tipg_server(python: str, owner_url: str,
                workers: int) -> contextlib.AbstractContextManager[str]:
    """Start tipg serving public.building with the same feature limit as ours."""
    env = {"DATABASE_URL": owner_url, "TIPG_CATALOG_TTL": "0",
           "TIPG_DB_SCHEMAS": '["public"]', "TIPG_DB_TABLES": '["public.building"]',
           "TIPG_MAX_FEATURES_PER_TILE": "10000", "TIPG_DEBUG": "false"}
    cmd = [python, "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1", "--port", "{port}",
           "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return server(cmd, env, "/collections/public.building")


def http_parser() -> str:
    """Return the HTTP parser uvicorn picks here (httptools when installed, else h11)."""
    import importlib.util

    return "httptools" if importlib.util.find_spec("httptools") else "h11 (pure Python)"


# --- load -------------------------------------------------------------------------------------


async def _load(base: str, paths: list[str], headers: dict[str, str], concurrency: int,
                seconds: float) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    counter = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=120) as client:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal counter, errors
            while time.perf_counter() < stop:
                path = paths[counter % len(paths)]
                counter += 1
                t = time.perf_counter()
                r = await client.get(path)
                await r.aread()
                latencies.append((time.perf_counter() - t) * 1000)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return latencies, errors, wall


_WRK_SCRIPT = """
local paths = {%s}
local headers = {%s}
local i = 0
init = function(args)
  i = math.random(#paths)
end
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %%d %%d %%f %%f %%f\\n", summary.requests,
    e.status + e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_wrk(label: str, base: str, paths: list[str], headers: dict[str, str],
             concurrency: int, seconds: float) -> Figures:
    """Load with wrk (C, epoll): the load generator then costs the shared CPUs little."""
    script = _WRK_SCRIPT % (", ".join(_lua(p) for p in paths),
                            ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in headers.items()))
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(script)
        f.flush()
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(concurrency), "-d", f"{int(seconds)}s",
             "--timeout", "60s", "-s", f.name, base], capture_output=True, text=True,
            check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    n, errors, duration_us, p50_us, p99_us = (float(v) for v in line.split()[1:])
    return Figures(label, n / (duration_us / 1e6), p50_us / 1000, p99_us / 1000, int(n),
                   int(errors))


def load(label: str, base: str, paths: list[str], headers: dict[str, str], concurrency: int,
         seconds: float) -> Figures:
    """Request ``paths`` round-robin from ``concurrency`` clients for ``seconds``."""
    pid = PIDS.get(base)
    before = cpu_seconds(pid) if pid else 0.0
    if shutil.which("wrk"):
        figures = load_wrk(label, base, paths, headers, concurrency, seconds)
    else:
        lat, errors, wall = asyncio.run(_load(base, paths, headers, concurrency, seconds))
        figures = Figures(label, len(lat) / wall, statistics.median(lat), percentile(lat, 99),
                          len(lat), errors)
    if pid and figures.n:
        figures.cpu_us = (cpu_seconds(pid) - before) / figures.n * 1e6
    return figures


def warm(base: str, paths: list[str], headers: dict[str, str]) -> None:
    """Request every path once."""
    with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
        for p in paths:
            c.get(p).raise_for_status()


def feature_counts(base: str, paths: list[str], headers: dict[str, str]) -> list[int]:
    """Return the number of features in each tile."""
    import mapbox_vector_tile

    out = []
    with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
        for p in paths:
            r = c.get(p)
            r.raise_for_status()
            tile = mapbox_vector_tile.decode(r.content) if r.content else {}
            out.append(sum(len(layer["features"]) for layer in tile.values()))
    return out


# --- the floor: pgbench -----------------------------------------------------------------------


def floor_figures(owner_url: str, tiles: list[tuple[int, int, int]], concurrency: int,
                  seconds: float) -> Figures:
    """Run the raw ST_AsMVT query over the tile list with pgbench; return its figures."""
    from sqlalchemy.engine import make_url

    url = make_url(owner_url)
    values = ", ".join(f"({i}, {z}, {x}, {y})" for i, (z, x, y) in enumerate(tiles))
    script = (
        f"\\set i random(0, {len(tiles) - 1})\n"
        "SELECT ST_AsMVT(t, 'buildings', 4096, 'geom', 'id') FROM ("
        "SELECT b.id, b.code, b.name, b.category::text AS category, b.floors, "
        "ST_AsMVTGeom(b.geom_3857, ST_TileEnvelope(v.z, v.x, v.y), 4096, 64, true) AS geom "
        f"FROM (SELECT * FROM (VALUES {values}) AS l(i, z, x, y) WHERE l.i = :i) v "
        "JOIN building b ON b.geom_3857 && ST_TileEnvelope(v.z, v.x, v.y) LIMIT 10000) t "
        "WHERE t.geom IS NOT NULL;\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tile.sql"
        path.write_text(script)
        env = {**os.environ, "PGPASSWORD": url.password or ""}
        cmd = [PGBENCH, "-n", "-M", "prepared", "-c", str(concurrency), "-j", "2",
               "-T", str(int(seconds)), "-l", "--log-prefix", str(Path(tmp) / "log"),
               "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
               "-U", url.username or "", "-f", str(path), url.database or ""]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        lat = [int(line.split()[2]) / 1000 for f in Path(tmp).glob("log*")
               for line in f.read_text().splitlines() if line.strip()]
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    return Figures("floor (pgbench SQL)", tps, statistics.median(lat), percentile(lat, 99),
                   len(lat))


# --- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    """Set up, measure every contender, print the figures and ratios."""
    from sqlalchemy import create_engine, text

    from geoserver.database.engine import sqlalchemy_url
    from tests.support.users import make_user

    python = tipg_python(args.tipg_python)
    with tiles_database(args.scale, args.database) as (owner_url, app_url):
        tiles = tile_list(owner_url)
        engine = create_engine(sqlalchemy_url(app_url), pool_size=1)
        with engine.connect() as conn:
            city = conn.execute(text("SELECT set_config('gridgov.scope', '{\"\"}', false), "
                                     "(SELECT code FROM region WHERE level = 'city' "
                                     "AND valid_to IS NULL LIMIT 1)")).one()[1]
            n_buildings = conn.execute(text("SELECT count(*) FROM building")).scalar()
            n_events = conn.execute(text("SELECT count(*) FROM event")).scalar()
        user = make_user(engine, f"bench_tiles_{os.getpid()}", roles=["city_commander"],
                         scope=[city])
        engine.dispose()
        ours = [f"/tiles/buildings/{z}/{x}/{y}.mvt" for z, x, y in tiles]
        theirs = [f"/collections/public.building/tiles/WebMercatorQuad/{z}/{x}/{y}"
                  f"?properties={PROPERTIES}" for z, x, y in tiles]
        headers = {**user.headers, "Accept-Encoding": "gzip"}
        print(f"\n{args.scale} scale: {n_buildings:,} buildings; {len(tiles)} tiles "
              f"(z12–16 over the densest areas); {args.concurrency} clients, "
              f"{args.seconds:.0f} s each; {args.workers} server worker(s); HTTP parser "
              f"{http_parser()}\n", flush=True)
        results: dict[str, Figures] = {}
        results["floor"] = floor_figures(owner_url, tiles, args.concurrency, args.seconds)
        print(results["floor"].line(), flush=True)
        with tipg_server(python, owner_url, args.workers) as base:
            warm(base, theirs[:3], {})
            tipg_counts = feature_counts(base, theirs, {})
            results["tipg"] = load("tipg", base, theirs, {"Accept-Encoding": "gzip"},
                                   args.concurrency, args.seconds)
        print(results["tipg"].line(), flush=True)
        with gridgov_server(owner_url, app_url, cached=False, workers=args.workers) as base:
            warm(base, ours[:3], headers)
            our_counts = feature_counts(base, ours, headers)
            results["uncached"] = load("gridgov uncached", base, ours, headers,
                                       args.concurrency, args.seconds)
        print(results["uncached"].line(), flush=True)
        for label, fast, consistency in (("gridgov cached", True, "notify"),
                                         ("cached, route only", False, "notify"),
                                         ("cached, strict", True, "strict")):
            with gridgov_server(owner_url, app_url, cached=True, workers=args.workers,
                                fast=fast, consistency=consistency) as base:
                for _ in range(args.workers * 2):  # each worker process has its own cache
                    warm(base, ours, headers)
                results[label] = load(label, base, ours, headers, args.concurrency,
                                      args.seconds)
            print(results[label].line(), flush=True)
        events = [f"/tiles/events/{z}/{x}/{y}.mvt?{EVENT_QUERY}" for z, x, y in tile_list(
            owner_url, "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat FROM event "
                       "WHERE geom IS NOT NULL")]
        for label, cached in (("events uncached", False), ("events cached", True)):
            with gridgov_server(owner_url, app_url, cached=cached, workers=args.workers) as base:
                for _ in range(args.workers * 2 if cached else 1):
                    warm(base, events, headers)
                event_features = sum(feature_counts(base, events, headers))
                results[label] = load(label, base, events, headers, args.concurrency,
                                      args.seconds)
            print(results[label].line(), flush=True)
    same = sum(a == b for a, b in zip(our_counts, tipg_counts, strict=True))
    print(f"\nfeatures per tile: {sum(our_counts):,} ours, {sum(tipg_counts):,} tipg; "
          f"equal in {same} of {len(tiles)} tiles; {event_features:,} in {len(events)} event "
          f"tiles ({n_events:,} events)")
    t, u, c, f = (results[k] for k in ("tipg", "uncached", "gridgov cached", "floor"))
    print(f"uncached / tipg   {u.rps / t.rps:6.2f}×   (goal ≥ 2×)")
    print(f"cached / tipg     {c.rps / t.rps:6.2f}×   (goal ≥ 20×)")
    print(f"cached p99        {c.p99:6.2f} ms  (goal < 50 ms at {args.concurrency} clients)")
    print(f"uncached / floor  {u.rps / f.rps:6.2f}×   (share of the database's own rate)")


def main() -> None:
    """Parse arguments and run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny", choices=("tiny", "demo", "city"))
    parser.add_argument("--database", help="keep (and reuse) the loaded database by this name")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tipg-python", help="a Python with tipg installed")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
