"""Bench: bulk auto-claim (point-in-polygon assignment) against a shapely 2 STRtree floor.

Generates N random points inside the loaded general grids, stores them as geocoded pooled
records whose open claim items have no candidates yet (what address-only records look like after
geocoding), then times ``geoserver.services.claims.auto_claim`` (point-in-polygon, decision,
claim, history, subject sync) and its point-in-polygon step alone, and, on the same points and
polygons in the same run, a raw SQL point-in-polygon count and a shapely
``STRtree.query(points, predicate="within")``. Prints figures and ratios; no thresholds.

Database: ``GRIDGOV_DATABASE_URL`` (the owner role; everything runs in one transaction that is
rolled back, and since the owner bypasses row-level security the figures omit RLS), else the
test cluster: a clone of the tiny demo template (``--scale tiny``) or of the empty template
loaded with a larger demo city, where the timed run uses the app role as the server does.

    .venv/bin/python bench/bench_claim.py [--points 200000] [--scale tiny|demo] [--seed 7]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import given_or_bench_database  # noqa: E402
from geoserver.database.engine import SYSTEM_SCOPE, set_scope, sqlalchemy_url  # noqa: E402
from geoserver.demo.geometry import random_points_in  # noqa: E402
from geoserver.domain.principal import Principal  # noqa: E402
from geoserver.services import claims  # noqa: E402

GRIDS_SQL = (
    "SELECT code, ST_AsBinary(geom) FROM region WHERE valid_to IS NULL AND level = 'grid' "
    "AND grid_type IS DISTINCT FROM 'dedicated' ORDER BY code"
)
# The same point-in-polygon join auto_claim runs, without writing anything.
PIP_FLOOR_SQL = """
SELECT count(*) FROM pooled_record p
JOIN region g ON g.valid_to IS NULL AND g.level = 'grid'
     AND g.grid_type IS DISTINCT FROM 'dedicated'
     AND g.geom && p.geom AND ST_Intersects(g.geom, p.geom)
WHERE p.source_department = 'bench'
"""
ACTOR = Principal(user_id=None, username="bench", scope=SYSTEM_SCOPE,
                  permissions=frozenset({"*"}))


def load_grids(conn: Connection) -> tuple[list[str], np.ndarray]:
    """Return grid codes and shapely polygons."""
    rows = conn.execute(text(GRIDS_SQL)).all()
    return [r[0] for r in rows], shapely.from_wkb([bytes(r[1]) for r in rows])


def seed_points(conn: Connection, coords: np.ndarray) -> None:
    """Store points as geocoded pooled records with candidate-less open items (untimed)."""
    city = conn.execute(text(
        "SELECT path::text FROM region WHERE level = 'city' AND valid_to IS NULL LIMIT 1"
    )).scalar_one()
    buf = io.StringIO()
    for i, (x, y) in enumerate(coords.tolist()):
        buf.write(f"bench\t{i}\tperson\tSRID=4490;POINT({x!r} {y!r})\tgeocoded\t{city}\n")
    buf.seek(0)
    # The location trigger would run locate() per row; the bench measures auto_claim, not that.
    conn.execute(text("ALTER TABLE pooled_record DISABLE TRIGGER pooled_record_location"))
    raw = conn.connection.dbapi_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.copy_expert(
            "COPY pooled_record (source_department, source_record_id, target_kind, geom, "
            "location_source, path) FROM STDIN", buf)
    conn.execute(text("ALTER TABLE pooled_record ENABLE TRIGGER pooled_record_location"))
    conn.execute(text(
        "INSERT INTO claim_item (reason, origin_reason, pooled_record_id, path) "
        "SELECT 'address_only', 'address_only', id, path FROM pooled_record "
        "WHERE source_department = 'bench'"))
    conn.execute(text("ANALYZE pooled_record; ANALYZE claim_item; ANALYZE claim_candidate"))


def time_auto_claim(session: Session) -> tuple[float, claims.AutoClaimReport]:
    """Run auto_claim once; return seconds and its report."""
    t = time.perf_counter()
    report = claims.auto_claim(session, actor=ACTOR)
    return time.perf_counter() - t, report


def time_locate_step(session: Session) -> tuple[float, int]:
    """Run only auto-claim's point-in-polygon step (candidates for items lacking them)."""
    t = time.perf_counter()
    added = session.execute(text("SELECT gridgov_meta.claim_locate_open(NULL)")).scalar_one()
    return time.perf_counter() - t, int(added)


def time_sql_floor(conn: Connection) -> tuple[float, int]:
    """Run the bare point-in-polygon join; return seconds and matches."""
    t = time.perf_counter()
    n = conn.execute(text(PIP_FLOOR_SQL)).scalar_one()
    return time.perf_counter() - t, int(n)


def time_shapely(polygons: np.ndarray, coords: np.ndarray) -> tuple[float, int]:
    """Assign points to polygons with an STRtree; return seconds and uniquely placed points."""
    points = shapely.points(coords)
    t = time.perf_counter()
    tree = shapely.STRtree(polygons)
    point_idx, _ = tree.query(points, predicate="within")
    unique = int(np.count_nonzero(np.bincount(point_idx, minlength=len(coords)) == 1))
    return time.perf_counter() - t, unique


def run(n: int, scale: str, seed: int) -> None:
    """Set up, time the three assignments and print the figures."""
    with given_or_bench_database("claim", scale=scale) as (owner_url, app_url):
        owner = create_engine(sqlalchemy_url(owner_url))
        app = create_engine(sqlalchemy_url(app_url)) if app_url else None
        with owner.connect() as conn:
            trans = conn.begin()
            codes, polygons = load_grids(conn)
            if not codes:
                raise SystemExit("no grids loaded: load a demo city first")
            coords = random_points_in(shapely.union_all(polygons), n, np.random.default_rng(seed))
            t = time.perf_counter()
            seed_points(conn, coords)
            setup = time.perf_counter() - t
            if app is not None:
                trans.commit()  # the app role must see the points
                with app.connect() as app_conn, app_conn.begin() as app_trans:
                    session = Session(bind=app_conn, join_transaction_mode="create_savepoint")
                    set_scope(session, SYSTEM_SCOPE)
                    locate_s, located = time_locate_step(session)
                    app_trans.rollback()
                with app.connect() as app_conn, app_conn.begin() as app_trans:
                    session = Session(bind=app_conn, join_transaction_mode="create_savepoint")
                    set_scope(session, SYSTEM_SCOPE)
                    seconds, report = time_auto_claim(session)
                    app_trans.rollback()
                role = "app role (RLS applied)"
            else:
                session = Session(bind=conn, join_transaction_mode="create_savepoint")
                set_scope(session, SYSTEM_SCOPE)
                with session.begin_nested() as step:
                    locate_s, located = time_locate_step(session)
                    step.rollback()
                seconds, report = time_auto_claim(session)
                role = "owner (RLS bypassed)"
            sql_s, sql_n = time_sql_floor(conn)
            if app is None:
                trans.rollback()
        shp_s, shp_unique = time_shapely(polygons, coords)
        vertices = int(shapely.get_num_coordinates(polygons).sum())
        print(f"grids: {len(codes)} ({vertices} vertices), points: {n}, setup {setup:.1f} s")
        print(f"auto_claim as {role}: {seconds:.2f} s, {n / seconds:,.0f} points/s, "
              f"claimed {report.claimed}, ambiguous {report.ambiguous}, "
              f"unlocated {report.unlocated}")
        print(f"  of which the point-in-polygon step (candidates written): {locate_s:.2f} s, "
              f"{n / locate_s:,.0f} points/s, {located} candidates; the rest is the claim "
              "(item update, history row, subject sync)")
        print(f"SQL point-in-polygon join only: {sql_s:.2f} s, {n / sql_s:,.0f} points/s, "
              f"{sql_n} matches")
        print(f"shapely STRtree floor: {shp_s:.2f} s, {n / shp_s:,.0f} points/s, "
              f"{shp_unique} in exactly one grid")
        print(f"ratio auto_claim / shapely: {seconds / shp_s:.1f}x; "
              f"point-in-polygon step / shapely: {locate_s / shp_s:.1f}x; "
              f"SQL join / shapely: {sql_s / shp_s:.1f}x")
        owner.dispose()
        if app is not None:
            app.dispose()


def main() -> None:
    """Parse arguments and run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--scale", default="tiny", choices=("tiny", "demo", "city"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    run(args.points, args.scale, args.seed)


if __name__ == "__main__":
    main()
