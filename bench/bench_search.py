"""Bench: unified search latency for 2-, 4- and 8-character queries, and statistics endpoints.

One run, one database (a demo city loaded with ``gridgov demo load --scale demo|city`` in a
data directory; it is migrated to the current SQL first, which adds 0040.search if missing):

- ``search``: ``services.search.search`` in a fresh app-role transaction per query (as a
  request runs it: scope set, RLS on), for a city-wide and a township-wide caller, over
  queries cut from real names (regions, roads, buildings, places, enterprises, persons): p50,
  p95 per query length (goal p95 < 100 ms); pinyin queries (2 and 4 initials of a real name's
  pinyin, e.g. wm, wmjd); typos (4 characters with one replaced, so nothing matches exactly
  and the trigram pass runs); and 8 characters with every bigram in the GIN condition (no
  bigram statistics: how search ran before 0095) — the ratio is printed;
- ``floor``: the bare bigram lookup behind it (one GIN query on standard_address, same role
  and scope) and ``peer``: the same 2-character lookup through pg_trgm (``LIKE '%q%'`` on the
  trigram index, what there was before the bigram columns) — ratios printed;
- ``statistics``: distribution, trend, ranking, region table and hot spots (services, app
  role, fresh transaction each) p50 and p99, over ``--events`` events (synthetic events are
  added with COPY when the database has fewer; triggers off, location computed here), after
  one refresh of the aggregate tables (its duration is printed too; ``--skip-refresh`` keeps
  the tables as they are); hot spots also counted live from the events, as before 0095.

No thresholds: these machines are shared and small; read the ratios and the order of magnitude.

    .venv/bin/python bench/bench_search.py --data-dir /tmp/srch-demo [--events 1000000]
        [--queries 60] [--runs 30] [--skip-refresh]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics as stats
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile  # noqa: E402
from geoserver.config import GOVERNANCE_TZ  # noqa: E402
from geoserver.database import migrate  # noqa: E402
from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE  # noqa: E402
from geoserver.database.cluster import SUPERUSER, EmbeddedCluster  # noqa: E402
from geoserver.database.engine import scoped_session, sqlalchemy_url  # noqa: E402
from geoserver.domain.principal import Principal  # noqa: E402
from geoserver.geo.h3cells import cells_for_points  # noqa: E402
from geoserver.services import search, statistics  # noqa: E402

READ_ALL = frozenset({"region.read", "address.read", "building.read", "place.read",
                      "enterprise.read", "person.read", "event.read", "statistics.read"})
_MATTERS = ("占道经营", "垃圾堆放", "违章停车", "噪音扰民", "路灯损坏", "井盖缺失", "违法建筑",
            "消防通道堵塞", "私拉电线", "污水外溢", "广告乱贴", "树木倒伏")


def timed(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[float]:
    """Run fn on every item; return the durations in milliseconds."""
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    return out


def line(label: str, ms: list[float], hi: float = 95) -> str:
    """Format p50 and a high percentile."""
    return (f"  {label:<44} n={len(ms):<4} p50 {stats.median(ms):7.1f} ms   "
            f"p{hi:g} {percentile(ms, hi):7.1f} ms")


# --- data -------------------------------------------------------------------------------------


def top_up_events(super_url: str, target: int, seed: int = 9) -> int:
    """Add synthetic events (COPY, triggers off) until the database holds ``target``."""
    conn = psycopg2.connect(super_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM event")
            have = int(cur.fetchone()[0])
            if have >= target:
                return have
            types = _event_types(cur)
            cur.execute("SELECT code, name, path::text, id, ST_X(label_point), "
                        "ST_Y(label_point), split_part(path::text, '.', 3) FROM region "
                        "WHERE level = 'grid' AND valid_to IS NULL "
                        "AND grid_type IS DISTINCT FROM 'dedicated'")
            grids = cur.fetchall()
            cur.execute("SET LOCAL session_replication_role = replica")  # no triggers
            rng = np.random.default_rng(seed)
            done = have
            while done < target:
                n = min(100_000, target - done)
                cur.copy_expert(
                    "COPY event (code, event_type_id, source, severity, state, title, "
                    "description, geom, path, region_id, grid_code, township_code, h3_r7, "
                    "h3_r8, h3_r9, reported_at, updated_at) FROM STDIN",
                    _event_rows(rng, grids, types, n, done, (
                        (done - have) / (target - have), (done + n - have) / (target - have))))
                done += n
                print(f"  events: {done:,}", flush=True)
        with conn.cursor() as cur:
            conn.autocommit = True
            cur.execute("VACUUM ANALYZE event")
        return done
    finally:
        conn.close()


def _event_types(cur: Any) -> list[int]:
    cur.execute("SELECT id FROM event_type")
    ids = [r[0] for r in cur.fetchall()]
    if not ids:
        for i, name in enumerate(_MATTERS):
            cur.execute("INSERT INTO event_type (code, name) VALUES (%s, %s) RETURNING id",
                        (f"bench_{i}", name))
            ids.append(cur.fetchone()[0])
    return ids


def _event_rows(rng: np.random.Generator, grids: list[tuple], types: list[int], n: int,
                offset: int, share: tuple[float, float]) -> io.StringIO:
    pick = rng.integers(0, len(grids), n)
    lon = np.array([grids[i][4] for i in pick]) + rng.normal(0, 0.0006, n)
    lat = np.array([grids[i][5] for i in pick]) + rng.normal(0, 0.0006, n)
    cells = {r: cells_for_points(lon, lat, r) for r in (7, 8, 9)}
    now = datetime.now(GOVERNANCE_TZ)
    # Oldest first: real events arrive in time order, so a month is a run of heap pages. This
    # batch covers its share of the year.
    year = 365 * 86400
    ages = np.sort(rng.uniform((1 - share[1]) * year, (1 - share[0]) * year, n))[::-1]
    states = rng.choice(["closed", "closed", "closed", "evaluated", "reported", "dispatched",
                         "signed", "handled"], n)
    sources = rng.choice(["patrol", "public", "hotline_12345", "police_110"], n)
    buf = io.StringIO()
    for k in range(n):
        code, name, path, region_id, _, _, township = grids[pick[k]]
        at = (now - timedelta(seconds=float(ages[k]))).isoformat()
        matter = _MATTERS[k % len(_MATTERS)]
        buf.write("\t".join((
            f"BENCH{offset + k}", str(types[k % len(types)]), str(sources[k]), "normal",
            str(states[k]), f"{name}{matter}", matter,
            f"SRID=4490;POINT({lon[k]:.7f} {lat[k]:.7f})", path, str(region_id), code,
            township, str(cells[7][k]), str(cells[8][k]), str(cells[9][k]), at, at)) + "\n")
    buf.seek(0)
    return buf


def queries(engine: Engine, length: int, count: int, seed: int = 5) -> list[str]:
    """Return ``count`` distinct substrings of ``length`` characters cut from real names."""
    with scoped_session(engine, ("",)) as conn:
        names = [r[0] for r in conn.execute(text(
            "(SELECT name FROM region WHERE valid_to IS NULL ORDER BY random() LIMIT 300) "
            "UNION ALL (SELECT name FROM road ORDER BY random() LIMIT 300) "
            "UNION ALL (SELECT name FROM building WHERE name IS NOT NULL ORDER BY random() "
            "LIMIT 300) UNION ALL (SELECT name FROM key_place ORDER BY random() LIMIT 200) "
            "UNION ALL (SELECT name FROM enterprise ORDER BY random() LIMIT 200) "
            "UNION ALL (SELECT full_text FROM standard_address ORDER BY random() LIMIT 300) "
            "UNION ALL (SELECT name FROM person ORDER BY random() LIMIT 200)"))]
    rng = random.Random(seed + length)
    out: list[str] = []
    pool = [n for n in names if len(n) >= length]
    while len(out) < count and pool:
        name = rng.choice(pool)
        start = rng.randrange(0, len(name) - length + 1)
        q = name[start:start + length]
        if sum(ch.isalnum() for ch in q) >= 2 and q not in out:
            out.append(q)
    return out


def pinyin_queries(engine: Engine, letters: int, count: int) -> list[str]:
    """Return ``count`` distinct prefixes of the initials of real names (五马街道 → wmjd)."""
    with scoped_session(engine, ("",)) as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT left(split_part(p, ' ', 2), :n) FROM (("
            "SELECT search_pinyin AS p FROM region WHERE valid_to IS NULL ORDER BY random() "
            "LIMIT 400) UNION ALL (SELECT search_pinyin FROM building ORDER BY random() "
            "LIMIT 400) UNION ALL (SELECT search_pinyin FROM key_place ORDER BY random() "
            "LIMIT 200) UNION ALL (SELECT search_pinyin FROM enterprise ORDER BY random() "
            "LIMIT 200)) x WHERE length(split_part(p, ' ', 2)) >= :n"), {"n": letters})
        found = sorted(r[0] for r in rows)
    random.Random(letters).shuffle(found)
    return found[:count]


def typos(queries_: list[str], seed: int = 7) -> list[str]:
    """Return the queries with one character each replaced by a common one that breaks them."""
    rng = random.Random(seed)
    out = []
    for q in queries_:
        i = rng.randrange(len(q))
        out.append(q[:i] + rng.choice("去味鬼扰浅") + q[i + 1:])
    return out


# --- runs -------------------------------------------------------------------------------------


def bench_search(engine: Engine, actors: dict[str, Principal], n: int) -> None:
    """Print search p50/p95 per query length and caller, with the floor and the peer."""
    print("search (services.search.search, limit 20, app role, one transaction each):")
    for length in (2, 4, 8):
        qs = queries(engine, length, n)
        for label, actor in actors.items():
            def run(q: str, actor: Principal = actor) -> None:
                with scoped_session(engine, actor.scope) as s:
                    search.search(s, actor=actor, q=q, limit=20)
            run(qs[0])  # warm the connection pool
            print(line(f"{length}-char, {label}", timed(run, qs)))
    city = actors["city"]

    def run_city(q: str) -> None:
        with scoped_session(engine, city.scope) as s:
            search.search(s, actor=city, q=q, limit=20)

    for letters in (2, 4):
        print(line(f"pinyin {letters} initials, city",
                   timed(run_city, pinyin_queries(engine, letters, n))))
    print(line("4-char with a typo (trigram pass), city", timed(run_city, typos(
        queries(engine, 4, n)))))
    long_ones = queries(engine, 8, n, seed=8)
    rare = timed(run_city, long_ones)
    real_stats = search.gram_stats
    search.gram_stats = lambda s: {}  # type: ignore[assignment]  # every bigram in the index
    try:
        every = timed(run_city, long_ones)
    finally:
        search.gram_stats = real_stats  # type: ignore[assignment]
    print(line("8-char, rare bigrams in the index, city", rare))
    print(line("8-char, every bigram in the index, city", every))
    print(f"  every / rare p95: {percentile(every, 95) / percentile(rare, 95):.1f}x")
    qs = queries(engine, 2, n)
    scope = city.scope

    def floor(q: str) -> None:
        with scoped_session(engine, scope) as s:
            s.execute(text("SELECT id FROM standard_address WHERE search_grams @> "
                           "search_bigrams(:q) LIMIT 100"), {"q": q}).all()

    def peer(q: str) -> None:
        with scoped_session(engine, scope) as s:
            s.execute(text("SELECT id FROM standard_address WHERE full_text LIKE :p LIMIT 100"),
                      {"p": f"%{q}%"}).all()

    f, p = timed(floor, qs), timed(peer, qs)
    print(line("floor: bigram GIN, standard_address, 2-char", f))
    print(line("peer: pg_trgm LIKE, standard_address, 2-char", p))
    print(f"  peer / floor p50: {stats.median(p) / stats.median(f):.1f}x")


def bench_statistics(engine: Engine, actors: dict[str, Principal], runs: int) -> None:
    """Print p50/p99 of each statistics call for each caller."""
    today = datetime.now(GOVERNANCE_TZ).date()
    month, year = today - timedelta(days=29), today - timedelta(days=364)
    # Each call gets the run's number: hot spots shift their period by it, so that every run
    # computes (answers from the aggregate are kept until its next refresh: "repeated").
    calls: dict[str, Callable[[Any, Principal, int], Any]] = {
        "distribution person by region": lambda s, a, i: statistics.distribution(
            s, actor=a, subject="person"),
        "distribution events by region (30 d)": lambda s, a, i: statistics.distribution(
            s, actor=a, subject="event", date_from=month),
        "distribution events by type (365 d)": lambda s, a, i: statistics.distribution(
            s, actor=a, subject="event", by="category", date_from=year),
        "trend events by day (30 d)": lambda s, a, i: statistics.trend(
            s, actor=a, subject="event", date_from=month),
        "trend events by month (365 d)": lambda s, a, i: statistics.trend(
            s, actor=a, subject="event", unit="month", date_from=year),
        "ranking events per 1,000 (30 d)": lambda s, a, i: statistics.ranking(
            s, actor=a, subject="event", date_from=month),
        "region table (children, 30 d)": lambda s, a, i: list(statistics.region_table(
            s, actor=a, date_from=month)),
        "hotspots r8 (30 d)": lambda s, a, i: statistics.hotspots(
            s, actor=a, resolution=8, date_from=month - timedelta(days=i + 1),
            date_to=today - timedelta(days=i + 1)),
        "hotspots r8 (30 d), repeated": lambda s, a, i: statistics.hotspots(
            s, actor=a, resolution=8, date_from=month),
        "hotspots r8 (30 d), counted live": live_hotspots(month),
    }
    print(f"statistics ({runs} runs each, app role, one transaction each):")
    for label, actor in actors.items():
        for name, call in calls.items():
            def run(i: int, call: Callable[[Any, Principal, int], Any] = call,
                    actor: Principal = actor) -> None:
                with scoped_session(engine, actor.scope) as s:
                    call(s, actor, i)
            try:
                run(runs)
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                print(f"  {name}, {label}: {type(exc).__name__}: {exc}")
                continue
            print(line(f"{name}, {label}", timed(run, range(runs)), hi=99))


def live_hotspots(since: Any) -> Callable[[Any, Principal, int], Any]:
    """Return a call of hot spots with the events counted live (as before 0095)."""
    def call(s: Any, a: Principal, i: int) -> Any:
        saved = statistics.HEAT_SOURCES["event"]
        statistics.HEAT_SOURCES["event"] = replace(saved, daily=None)
        try:
            return statistics.hotspots(s, actor=a, resolution=8, date_from=since)
        finally:
            statistics.HEAT_SOURCES["event"] = saved
    return call


def refresh(engine: Engine) -> None:
    """Refresh both aggregates once and print how long it took."""
    for name, fn in (("objects", statistics.refresh_objects),
                     ("events", lambda s: statistics.refresh_events(s, full=True))):
        t = time.perf_counter()
        with scoped_session(engine, ("",)) as s:
            out = fn(s)
        print(f"refresh {name}: {time.perf_counter() - t:.1f} s, {out}")
    t = time.perf_counter()
    with scoped_session(engine, ("",)) as s:
        out = statistics.refresh_events(s)
    print(f"refresh events (incremental, nothing changed): {time.perf_counter() - t:.2f} s")


def main() -> None:
    """Run the bench."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="GRIDGOV_DATA_DIR holding a demo city")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--skip-refresh", action="store_true",
                    help="keep the aggregate tables as they are (refreshed by an earlier run)")
    ap.add_argument("--skip-statistics", action="store_true")
    args = ap.parse_args()
    info, _ = EmbeddedCluster(Path(args.data_dir)).start()
    migrate.migrate(info.url(OWNER_ROLE))
    print(f"events: {top_up_events(info.url(SUPERUSER), args.events):,}")
    engine = create_engine(sqlalchemy_url(info.url(APP_ROLE)), pool_size=2,
                           connect_args={"options": "-c timezone=Asia/Shanghai"})
    with scoped_session(engine, ("",)) as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()
                  for t in ("region", "standard_address", "building", "person", "event")}
        township = conn.execute(text(
            "SELECT path::text FROM region WHERE level = 'township' AND valid_to IS NULL "
            "ORDER BY code LIMIT 1")).scalar_one()
    print("rows:", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    city = Principal(None, "bench-city", ("",), READ_ALL)
    town = Principal(None, "bench-township", (township,), READ_ALL)
    if not args.skip_refresh:
        refresh(engine)
    bench_search(engine, {"city": city, "township": town}, args.queries)
    if args.skip_statistics:
        return
    county = township.rsplit(".", 1)[0]
    bench_statistics(engine, {
        "city": Principal(None, "bench-city", (county.split(".")[0],), READ_ALL),
        "county": Principal(None, "bench-county", (county,), READ_ALL),
        "township": town,
    }, args.runs)


if __name__ == "__main__":
    main()
