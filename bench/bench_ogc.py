"""Bench: OGC API Features items on buildings with bbox + CQL2 filter, and GeoJSON streaming.

Times, through ``geoserver.services.features`` (parse → SQL → GeoJSON text, as the route runs
it) on the app role with a city scope (row-level security applied):

- the first page and a deep page (keyset cursor) of ``bbox`` + ``filter`` (p50/p99), the same
  deep page cut by OFFSET (the fallback, for the ratio) and a hand-written SQL floor that reads
  the same rows with ST_AsGeoJSON and builds no JSON;
- streaming: pages of 10 000 through the GeoJSON writer (MB/s, features/s), and the same over
  HTTP from a uvicorn server process following the ``next`` links (``--http``, test cluster).

Database: ``GRIDGOV_DATABASE_URL`` (an owner URL; read only, RLS bypassed, whatever scale is
loaded), else a clone of the tiny demo template on the test cluster topped up with synthetic
buildings inside the grids (``--buildings``).

    .venv/bin/python bench/bench_ogc.py [--buildings 200000] [--repeat 60] [--limit 100] [--http]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    given_or_bench_database,
    gridgov_env,
    percentile,
    server_process,
    timed,
    uvicorn_command,
)
from geoserver.database.engine import set_scope, sqlalchemy_url  # noqa: E402
from geoserver.services import features  # noqa: E402
from geoserver.services.feature_params import Cursor  # noqa: E402

FILTER = "category = 'residential' AND floors >= 5"
SEED_SQL = """
INSERT INTO building (code, name, category, floors, households, geom, path, region_id)
SELECT 'BENCH-' || g.code || '-' || p.n, '楼' || p.n,
       (ARRAY['residential', 'residential', 'commercial', 'office', 'industrial', 'public']
        )[1 + p.n % 6]::building_category,
       1 + (p.n * 7) % 30, (p.n * 13) % 120,
       ST_Multi(ST_Expand(p.geom, 0.00008)), g.path, g.id
FROM region g
CROSS JOIN LATERAL (
    SELECT row_number() OVER () AS n, d.geom
    FROM ST_Dump(ST_GeneratePoints(g.geom, :per_grid, 7)) d) p
WHERE g.level = 'grid' AND g.valid_to IS NULL AND g.grid_type <> 'dedicated'
"""


def seed_buildings(owner: Engine, wanted: int) -> None:
    """Top the building table up to ``wanted`` synthetic rows inside the general grids."""
    with owner.begin() as c:
        have = c.execute(text("SELECT count(*) FROM building")).scalar_one()
        grids = c.execute(text("SELECT count(*) FROM region WHERE level = 'grid' AND "
                               "valid_to IS NULL AND grid_type <> 'dedicated'")).scalar_one()
        if have >= wanted or not grids:
            return
        print(f"adding {wanted - have:,} synthetic buildings in {grids} grids …", flush=True)
        t = time.perf_counter()
        # path and region_id come from the grid in bulk; one locate() per row would dominate
        c.execute(text("SET LOCAL gridgov.trusted_location = 'on'"))
        c.execute(text(SEED_SQL), {"per_grid": max(1, (wanted - have) // grids)})
        c.execute(text("ANALYZE building"))
        print(f"  done in {time.perf_counter() - t:.1f} s", flush=True)
    owner.dispose()


def window(session: Session) -> str:
    """Return a bbox (CRS84) of the middle quarter of the buildings' extent."""
    x0, y0, x1, y1 = session.execute(text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
        "(SELECT ST_Extent(centroid)::geometry AS e FROM building) s")).one()
    dx, dy = (x1 - x0) / 4, (y1 - y0) / 4
    return f"{x0 + dx:.6f},{y0 + dy:.6f},{x1 - dx:.6f},{y1 - dy:.6f}"


def run_page(session: Session, params: dict[str, str]) -> tuple[int, features.PageResult]:
    """Run one items request as the route does; return GeoJSON bytes and the page result."""
    q = features.parse_items_query(features.REGISTRY["buildings"], params)
    result = features.PageResult()
    rows = features.iter_items(session, q, result)
    size = sum(len(c) for c in features.geojson_chunks(rows, result, time_stamp="t",
                                                      links=lambda r: []))
    return size, result


def describe(label: str, fn: Callable[[], Any], repeat: int) -> float:
    """Time ``repeat`` runs of ``fn`` after one warm-up; print p50/p99; return p50."""
    ms = timed(fn, repeat, warmup=1)
    p50 = statistics.median(ms)
    print(f"  {label:<44} p50 {p50:7.2f} ms   p99 {percentile(ms, 99):7.2f} ms")
    return p50


def deep_key(session: Session, params: dict[str, str], depth: int) -> int:
    """Return the id at position ``depth`` of the filtered, id-ordered result."""
    spec = features.REGISTRY["buildings"]
    q = features.parse_items_query(spec, params)
    col = features._col(spec, "id")
    stmt = select(col).select_from(features._table(spec)).where(*q.conditions) \
        .order_by(col).offset(depth).limit(1)
    return int(session.execute(stmt).scalar_one())


def floor_sql(session: Session, bbox: str, key: int, limit: int) -> None:
    """Read the deep page's rows with GeoJSON geometry straight from SQL (no JSON building)."""
    x0, y0, x1, y1 = (float(v) for v in bbox.split(","))
    session.execute(text(
        "SELECT id, ST_AsGeoJSON(geom, 7, 0), code, name, category, floors, households, "
        "address_id, updated_at, version FROM building "
        "WHERE ST_Intersects(geom, ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)) "
        "AND category = 'residential' AND floors >= 5 AND id > :key ORDER BY id LIMIT :n"),
        {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "key": key, "n": limit + 1}).fetchall()


def stream_all(session: Session, params: dict[str, str], cap: int) -> tuple[int, int, float]:
    """Page through up to ``cap`` features 10 000 at a time; return bytes, features, seconds."""
    total_bytes = total = 0
    cursor: Cursor | None = None
    t = time.perf_counter()
    while total < cap:
        page = {**params, "limit": "10000"}
        if cursor is not None:
            page["cursor"] = cursor.encode()
        size, result = run_page(session, page)
        total_bytes += size
        total += result.number_returned
        cursor = result.next_cursor
        if cursor is None:
            break
    return total_bytes, total, time.perf_counter() - t


def stream_http(owner_url: str, app_url: str, params: dict[str, str],
                cap: int) -> tuple[int, int, float]:
    """Follow next links over HTTP from a server process; return bytes, features, seconds."""
    import json

    import httpx

    from tests.support.users import make_user

    app = create_engine(sqlalchemy_url(app_url))
    user = make_user(app, f"bench_ogc_{os.getpid()}", roles=["analyst"], scope=["330300"])
    app.dispose()
    # the API in its own process, one worker, as ``gridgov serve`` would run it; GeoJSON
    # uncompressed (the app gzips by default), so the tail below parses and MB/s is GeoJSON's
    with server_process(uvicorn_command(), gridgov_env(owner_url, app_url)) as (base, _), \
            httpx.Client(headers={**user.headers, "Accept-Encoding": "identity"},
                         timeout=120) as client:
        url: str | None = f"{base}/ogc/collections/buildings/items"
        # warm-up: the first filter loads pygeofilter's grammar (~0.9 s, once per process)
        client.get(url, params={**params, "limit": "10"}).raise_for_status()
        query: dict[str, str] | None = {**params, "limit": "10000"}
        total_bytes = total = 0
        t = time.perf_counter()
        while url and total < cap:
            size, tail = 0, b""
            with client.stream("GET", url, params=query) as r:
                r.raise_for_status()
                for chunk in r.iter_raw():
                    size += len(chunk)
                    tail = (tail + chunk)[-65536:]
            # parse only the members after the features: counts and links
            doc = json.loads(b"{" + tail[tail.rindex(b'"numberReturned"'):])
            total_bytes += size
            total += doc["numberReturned"]
            url = next((lk["href"] for lk in doc["links"] if lk["rel"] == "next"
                        and lk["type"] == "application/geo+json"), None)
            query = None
        return total_bytes, total, time.perf_counter() - t


def run(args: argparse.Namespace) -> None:
    """Set up, time and print."""
    with given_or_bench_database("ogc") as (owner_url, app_url):
        if app_url is not None:
            seed_buildings(create_engine(sqlalchemy_url(owner_url)), args.buildings)
        engine = create_engine(sqlalchemy_url(app_url or owner_url))
        with Session(engine) as session, session.begin():
            set_scope(session, ("330300",) if app_url else ("",))
            n_all = session.execute(text("SELECT count(*) FROM building")).scalar_one()
            if not n_all:
                raise SystemExit("no buildings loaded")
            bbox = window(session)
            params = {"bbox": bbox, "filter": FILTER, "limit": str(args.limit)}
            _, first = run_page(session, params)
            matched = session.execute(text(
                "SELECT count(*) FROM building WHERE ST_Intersects(geom, ST_MakeEnvelope("
                + bbox + ", 4490)) AND category = 'residential' AND floors >= 5")).scalar_one()
            role = "app role, city scope (RLS applied)" if app_url else "owner (RLS bypassed)"
            print(f"buildings: {n_all:,}; bbox {bbox} + filter \"{FILTER}\" matches {matched:,}"
                  f" (numberMatched on page 1: {first.number_matched}); as {role}")
            depth = max(0, min(args.depth, matched - args.limit))
            key = deep_key(session, params, depth) if matched > args.limit else 0
            deep = {**params, "cursor": Cursor(keys=(key,)).encode()}
            print(f"limit {args.limit}, deep page at row {depth:,}, {args.repeat} runs each:")
            p_first = describe("first page", lambda: run_page(session, params), args.repeat)
            p_deep = describe("deep page, keyset cursor (next link)",
                              lambda: run_page(session, deep), args.repeat)
            p_off = describe("deep page, OFFSET (fallback)",
                             lambda: run_page(session, {**params, "offset": str(depth)}),
                             args.repeat)
            p_sql = describe("deep page, SQL floor (rows only, no JSON)",
                             lambda: floor_sql(session, bbox, key, args.limit), args.repeat)
            print(f"  ratios: deep/first {p_deep / p_first:.2f}x, OFFSET/keyset "
                  f"{p_off / p_deep:.2f}x, keyset/SQL floor {p_deep / p_sql:.2f}x")
            size, rows, secs = stream_all(session, {"bbox": bbox, "filter": FILTER},
                                          args.stream_rows)
            print(f"streamed (service, GeoJSON writer): {rows:,} features, {size / 1e6:.1f} MB "
                  f"in {secs:.2f} s = {size / 1e6 / secs:.1f} MB/s, {rows / secs:,.0f} "
                  f"features/s")
        engine.dispose()
        if args.http and app_url is not None:
            size, rows, secs = stream_http(owner_url, app_url, {"bbox": bbox, "filter": FILTER},
                                           args.stream_rows)
            print(f"streamed over HTTP (uvicorn, 1 worker, own process): {rows:,} features, "
                  f"{size / 1e6:.1f} MB in {secs:.2f} s = {size / 1e6 / secs:.1f} MB/s, "
                  f"{rows / secs:,.0f} features/s")


def main() -> None:
    """Parse arguments and run the bench."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--buildings", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--depth", type=int, default=20_000)
    parser.add_argument("--stream-rows", type=int, default=100_000)
    parser.add_argument("--http", action="store_true")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
