"""Base-data figures (issue 3): demo load time and rows/s per table, database size, point →
region chain lookups p50/p99, geocoding p50/p99. Bulk auto-claim against a shapely STRtree floor
is `bench_claim.py`.

    .venv/bin/python bench/bench_base_data.py --scale tiny|demo|city [--data-dir DIR] [--reuse]

Without --reuse a fresh data directory is created and the scale is loaded into it (timed); with
--reuse an already loaded data directory is measured as it is.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile  # noqa: E402
from geoserver.config import DatabaseSettings, SecuritySettings  # noqa: E402
from geoserver.database.engine import SYSTEM_SCOPE, make_engine, scoped_session  # noqa: E402
from geoserver.database.migrate import migrate  # noqa: E402
from geoserver.database.runtime import open_database  # noqa: E402
from geoserver.demo.loader import load_demo  # noqa: E402
from geoserver.security.crypto import crypto_from_settings  # noqa: E402
from geoserver.services.geocode import geocode  # noqa: E402


def report(name: str, samples: list[float]) -> None:
    print(f"{name:<34} n={len(samples):>5}  p50 {statistics.median(samples):7.2f} ms"
          f"  p99 {percentile(samples, 99):7.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", default="tiny", choices=("tiny", "demo", "city"))
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--geocodes", type=int, default=500)
    args = ap.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="gridgov-bench-"))
    data_dir.chmod(0o755)
    target = open_database(DatabaseSettings(data_dir=data_dir))
    try:
        if not args.reuse:
            migrate(target.owner_url)
            t0 = time.perf_counter()
            result = load_demo(target.owner_url, scale=args.scale, seed=2026,
                               crypto=crypto_from_settings(SecuritySettings()))
            total = time.perf_counter() - t0
            print(f"== load {args.scale}: {total:.1f} s in all")
            for step, seconds in result["timings"].items():
                print(f"   {step:<20} {seconds:8.1f} s")
            for table, n in result["counts"].items():
                print(f"   {table:<20} {n:>12,} rows")
        conn = psycopg2.connect(target.owner_url)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            print(f"== database size: {cur.fetchone()[0]}")
            cur.execute("SELECT relname, n_live_tup FROM pg_stat_user_tables "
                        "WHERE n_live_tup > 0 ORDER BY n_live_tup DESC LIMIT 12")
            for name, n in cur.fetchall():
                print(f"   {name:<24} {n:>12,}")
            cur.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ("
                        "SELECT ST_Extent(geom) e FROM region WHERE level = 'grid') x")
            x0, y0, x1, y1 = cur.fetchone()
            cur.execute("SELECT full_text FROM standard_address ORDER BY random() LIMIT %s",
                        (args.geocodes,))
            texts = [r[0] for r in cur.fetchall()]
        conn.close()
        engine = make_engine(target.app_url, pool_size=2)
        rng = random.Random(7)
        chain = []
        with scoped_session(engine, SYSTEM_SCOPE) as s:
            from sqlalchemy import text

            q = text("SELECT r.code FROM gridgov_meta.locate(ST_SetSRID(ST_Point(:x, :y), 4490)) l "
                     "JOIN region r ON r.path @> l.path AND r.valid_to IS NULL "
                     "ORDER BY nlevel(r.path)")
            for _ in range(args.lookups):
                t0 = time.perf_counter()
                s.execute(q, {"x": rng.uniform(x0, x1), "y": rng.uniform(y0, y1)}).all()
                chain.append((time.perf_counter() - t0) * 1000)
        report("point → region chain", chain)
        variants = []
        for t in texts:
            # The variants people type: no county, spaces, full-width digits.
            v = t[3:] if rng.random() < 0.5 else t
            variants.append(v.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
                            if rng.random() < 0.3 else v)
        times, found = [], 0
        with scoped_session(engine, SYSTEM_SCOPE) as s:
            for v in variants:
                t0 = time.perf_counter()
                hits = geocode(s, text=v, limit=3)
                times.append((time.perf_counter() - t0) * 1000)
                found += bool(hits)
        if times:
            report("geocode (free text variants)", times)
            print(f"   found a standard address for {found}/{len(variants)} queries")
        engine.dispose()
    finally:
        target.close()
        if not args.data_dir and not args.reuse:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
