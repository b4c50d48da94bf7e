"""Bench: ``etl import`` of N generated buildings from a GeoPackage (rows/s, peak memory), in one
process (then the same file again, every row unchanged) and on a Dask LocalCluster of 2
workers; then claim points/s against the shapely STRtree floor (bench_claim.py, run side by
side).

Each import runs in a child process, so its peak resident memory (``ru_maxrss``) is its own;
the Dask workers report theirs through ``client.run``. Between the two imports the buildings
are deleted and the table vacuumed, so both insert the same rows into the same table.

Database: ``GRIDGOV_DATABASE_URL`` and ``GRIDGOV_APP_DATABASE_URL`` (owner and app role; the
bench inserts and deletes rows coded BENCH…), else a clone of the tiny demo template on the test
cluster, dropped afterwards.

    .venv/bin/python bench/bench_etl.py [--rows 1000000] [--chunk 10000] [--workers 2]
                                        [--claim-points 200000]

``--workers 0`` skips the Dask import, ``--claim-points 0`` the claim bench.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _maxrss_mb() -> float:
    """Return this process's peak resident memory in MiB.

    VmHWM, not ``ru_maxrss``: Linux carries ru_maxrss across fork and exec, so a child started
    by a big parent would report the parent's size; VmHWM starts afresh with the new program.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, n: int, owner_url: str) -> float:
    """Write n small square footprints inside the city's grids to a GeoPackage; return seconds."""
    import geopandas as gpd
    import pyogrio
    import shapely
    from sqlalchemy import create_engine, text

    from geoserver.database.engine import sqlalchemy_url
    from geoserver.demo.geometry import random_points_in

    t = time.perf_counter()
    engine = create_engine(sqlalchemy_url(owner_url))
    with engine.connect() as c:
        polys = shapely.from_wkb([bytes(r[0]) for r in c.execute(text(
            "SELECT ST_AsBinary(geom) FROM region WHERE level = 'grid' AND valid_to IS NULL "
            "AND grid_type IS DISTINCT FROM 'dedicated'"))])
    engine.dispose()
    # 20 m inside the grids: every footprint lies in the city.
    area = shapely.union_all(polys).buffer(-0.0002)
    pts = random_points_in(area, n, np.random.default_rng(1))
    d = 0.00008  # ~8 m
    rng = np.random.default_rng(2)
    frame = gpd.GeoDataFrame(
        {"code": [f"BENCH{i:08d}" for i in range(n)], "name": ["住宅楼"] * n,
         "floors": rng.integers(1, 30, n)},
        geometry=shapely.box(pts[:, 0], pts[:, 1], pts[:, 0] + d, pts[:, 1] + d),
        crs="EPSG:4490")
    pyogrio.write_dataframe(frame, path, layer="buildings")
    return time.perf_counter() - t


def phase(kind: str, file: Path, chunk: int, workers: int) -> dict[str, object]:
    """Run one import in this (child) process; return its figures."""
    from spatial_etl.db import connect
    from spatial_etl.importer import ImportOptions, open_input, run_import

    options = ImportOptions(target="buildings", chunk=chunk)
    with connect() as env:
        if kind == "single":
            result = run_import(env, file, options)
            return {"seconds": result.seconds, "rows": result.read,
                    "inserted": result.inserted, "unchanged": result.unchanged,
                    "rejected": result.rejected, "maxrss_mb": _maxrss_mb()}
        from spatial_etl.distributed import DistributedStage, client_for

        with client_for(workers=workers) as client:
            source, _, resolved = open_input(file, options)
            stage = DistributedStage(client, env, file, source, resolved, options)
            try:
                result = run_import(env, file, options, stage=stage)
            finally:
                stage.cleanup()
            workers_rss = client.run(_maxrss_mb)
        return {"seconds": result.seconds, "rows": result.read, "inserted": result.inserted,
                "rejected": result.rejected, "maxrss_mb": _maxrss_mb(),
                "workers_maxrss_mb": sorted(workers_rss.values())}


def _child(kind: str, file: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", kind, "--file", str(file), "--chunk",
         str(args.chunk), "--workers", str(args.workers)],
        env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} import failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reset(owner_url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(owner_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DELETE FROM building WHERE code LIKE 'BENCH%'")
        cur.execute("VACUUM ANALYZE building")
    conn.close()


def run(args: argparse.Namespace) -> None:
    """Set up the database and the file, time both imports, then the claim bench."""
    from contextlib import ExitStack

    from bench.common import bench_database

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        if os.environ.get("GRIDGOV_DATABASE_URL"):
            owner_url = os.environ["GRIDGOV_DATABASE_URL"]
            app_url = os.environ["GRIDGOV_APP_DATABASE_URL"]
        else:
            owner_url, app_url = stack.enter_context(bench_database("etl"))
        env = {**os.environ, "GRIDGOV_DATABASE_URL": owner_url,
               "GRIDGOV_APP_DATABASE_URL": str(app_url), "GRIDGOV_DATA_DIR": tmp}
        file = Path(tmp) / "buildings.gpkg"
        made = generate(file, args.rows, owner_url)
        size = file.stat().st_size / 2**20
        print(f"generated {args.rows:,} buildings in {made:.1f} s ({size:,.0f} MiB GeoPackage)",
              flush=True)
        _reset(owner_url)
        single = _child("single", file, args, env)
        print(f"single process: {single['seconds']:.1f} s, "
              f"{single['rows'] / single['seconds']:,.0f} rows/s, inserted {single['inserted']:,}"
              f", peak RSS {single['maxrss_mb']:,.0f} MiB (chunk {args.chunk:,})", flush=True)
        # The same file again: every row is unchanged, as in a refreshed file of mostly old rows.
        again = _child("single", file, args, env)
        print(f"single process, same file again: {again['seconds']:.1f} s, "
              f"{again['rows'] / again['seconds']:,.0f} rows/s, unchanged "
              f"{again['unchanged']:,}", flush=True)
        _reset(owner_url)
        if args.workers:
            dask = _child("dask", file, args, env)
            print(f"dask, {args.workers} workers: {dask['seconds']:.1f} s, "
                  f"{dask['rows'] / dask['seconds']:,.0f} rows/s, inserted "
                  f"{dask['inserted']:,}, driver peak RSS {dask['maxrss_mb']:,.0f} MiB, workers "
                  f"{', '.join(f'{m:,.0f}' for m in dask['workers_maxrss_mb'])} MiB", flush=True)
            print(f"ratio dask / single (time): {dask['seconds'] / single['seconds']:.2f}x")
            _reset(owner_url)
    if args.claim_points:
        print(f"claim: bench_claim.py --points {args.claim_points} (auto_claim vs STRtree)",
              flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "bench_claim.py"), "--points",
                        str(args.claim_points)], check=True)


def main() -> None:
    """Parse arguments; run the bench, or one import phase (in a child process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2,
                        help="Dask workers; 0 skips the Dask import")
    parser.add_argument("--claim-points", type=int, default=200_000)
    parser.add_argument("--phase", choices=("single", "dask"))
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.file, args.chunk, args.workers)))
    else:
        run(args)


if __name__ == "__main__":
    main()
