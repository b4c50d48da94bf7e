"""Bench: login latency (argon2id as configured) and the cost of row-level security.

(a) argon2id: the parameters, the time of one hash and one verify; then N password logins
    over HTTP (``POST /api/v1/auth/login``), p50/p99.
(b) RLS on vs off, side by side in one run (alternating ABBA):
    - HTTP: the same list requests (``GET /api/v1/regions?level=grid&limit=100``, and the
      building list when the app serves one) against two servers built by the same factory
      from the same code, one connecting as the app role (RLS applies), one as the owner
      (table owner: RLS bypassed). The caller's scope is the whole city, so both return the
      same rows and the difference is the policy alone.
    - service: ``regions.list_regions`` (the code behind that request) in an app-role session
      vs an owner session, the same scope set in both; no HTTP noise.
    - SQL: the list queries as the app role with a township scope (RLS filters) against the
      owner running the same SQL with the hand-written filter ``path <@ ANY(scope)``.
    Prints the overhead in percent (goal: under 10 %). No thresholds.

Database: a clone of the tiny demo template on the test cluster (``--scale tiny``), or of the
empty template loaded with a larger demo city (``--scale demo``).

    .venv/bin/python bench/bench_access.py [--logins 100] [--requests 300] [--scale tiny|demo]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_database, percentile, timed  # noqa: E402
from geoserver.config import DatabaseSettings, ServerSettings, Settings  # noqa: E402
from geoserver.database.engine import scoped_session, sqlalchemy_url  # noqa: E402
from geoserver.security.passwords import (  # noqa: E402
    DEFAULT_PARAMS,
    hash_password,
    verify_password,
)

PASSWORD = "Bench-Wenzhou-2026!"
#: The list requests compared; ones the app does not serve (404) are skipped.
HTTP_LISTS = (("/api/v1/regions", {"level": "grid", "limit": 100}),
              ("/api/v1/buildings", {"limit": 100}),
              ("/ogc/collections/buildings/items", {"limit": 100, "f": "json"}))
#: Table → list query; ``{extra}`` takes the owner's hand-written scope filter.
SQL_LISTS = {
    "region": "SELECT id, code, name, path FROM region WHERE valid_to IS NULL AND level = 'grid' "
              "{extra} ORDER BY code LIMIT 100",
    "building": "SELECT id, path FROM building WHERE true {extra} ORDER BY id LIMIT 100",
}


def interleaved(on: Callable[[], Any], off: Callable[[], Any],
                n: int) -> tuple[list[float], list[float]]:
    """Time on and off alternately (ABBA), so drift and order effects hit both alike."""
    t_on: list[float] = []
    t_off: list[float] = []
    for i in range(n):
        if i % 2:
            t_off += timed(off, 1)
            t_on += timed(on, 1)
        else:
            t_on += timed(on, 1)
            t_off += timed(off, 1)
    return t_on, t_off


def settings_for(owner_url: str, connect_url: str) -> Settings:
    """Settings whose request connections use ``connect_url``."""
    return Settings(database=DatabaseSettings(database_url=owner_url,
                                              app_database_url=connect_url),
                    server=ServerSettings(env="test", jobs_enabled=False))


def argon2_figures(n: int = 20) -> None:
    """Print the argon2id parameters and the median hash and verify times."""
    p = DEFAULT_PARAMS
    hashes = timed(lambda: hash_password(PASSWORD), n)
    stored = hash_password(PASSWORD)
    verifies = timed(lambda: verify_password(PASSWORD, stored), n)
    print(f"argon2id: time_cost={p.time_cost} memory_cost={p.memory_cost} KiB "
          f"parallelism={p.parallelism}; hash p50 {statistics.median(hashes):.1f} ms, "
          f"verify p50 {statistics.median(verifies):.1f} ms")


def login_figures(http: httpx.Client, username: str, n: int) -> None:
    """Print p50/p99 of n password logins over HTTP."""
    def login() -> None:
        r = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text

    login()
    ms = timed(login, n)
    print(f"login over HTTP ×{n}: p50 {percentile(ms, 50):.1f} ms, "
          f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms")


def overhead_line(label: str, on: list[float], off: list[float]) -> str:
    """Format RLS on vs off: p50s and the overhead at p50 and at the minimum.

    The minimum is the least disturbed by other load on a shared machine.
    """
    p_on, p_off = statistics.median(on), statistics.median(off)
    low = 100 * (min(on) / min(off) - 1)
    return (f"{label:<46} RLS on p50 {p_on:7.2f} ms | off p50 {p_off:7.2f} ms | "
            f"overhead p50 {100 * (p_on / p_off - 1):+6.1f} %, min {low:+6.1f} %")


def row_ids(response: httpx.Response) -> list[Any]:
    """Return the ids of a list answer (``items`` or GeoJSON ``features``)."""
    body = response.json()
    rows = body.get("items") or body.get("features") or []
    return [r.get("id", r.get("code")) for r in rows]


def http_figures(on: httpx.Client, off: httpx.Client, headers: dict[str, str], n: int) -> None:
    """Time the same list requests against the RLS and the owner server, interleaved."""
    for path, params in HTTP_LISTS:
        first_on = on.get(path, params=params, headers=headers)
        if first_on.status_code == 404:
            print(f"HTTP GET {path}: not served by this app, skipped")
            continue
        first_off = off.get(path, params=params, headers=headers)
        assert first_on.status_code == first_off.status_code == 200, first_on.text
        assert row_ids(first_on) == row_ids(first_off), "RLS on and off must answer the same rows"
        t_on, t_off = interleaved(partial(on.get, path, params=params, headers=headers),
                                  partial(off.get, path, params=params, headers=headers), n)
        print(overhead_line(f"HTTP GET {path} ({len(row_ids(first_on))} rows)", t_on, t_off))


def service_figures(app: Engine, owner: Engine, city: str, n: int) -> None:
    """Time the regions service's grid list under RLS (app role) and as the owner (bypass)."""
    from geoserver.database.models.region import RegionLevel
    from geoserver.domain.principal import Principal
    from geoserver.services import regions

    actor = Principal(user_id=None, username="bench", scope=(city,),
                      permissions=frozenset({"region.read"}))
    call = partial(regions.list_regions, actor=actor, level=RegionLevel.GRID, limit=100)
    with scoped_session(app, (city,)) as s_on, scoped_session(owner, (city,)) as s_off:
        assert call(s_on) == call(s_off), "RLS on and off must list the same grids"
        t_on, t_off = interleaved(partial(call, s_on), partial(call, s_off), n)
        rows = len(call(s_on)[0])
    print(overhead_line(f"service list_regions, whole city ({rows} rows)", t_on, t_off))


def sql_figures(app: Engine, owner: Engine, scope: str, n: int) -> None:
    """Time list SQL as the app role under RLS vs the owner with the equivalent filter."""
    for name, sql in SQL_LISTS.items():
        with owner.connect() as conn:
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": name}).scalar() is None:
                print(f"SQL {name}: no such table, skipped")
                continue
        rls_sql = text(sql.format(extra=""))
        own_sql = text(sql.format(extra="AND path <@ ANY(CAST(:scope AS ltree[]))"))
        bound = {"scope": "{" + scope + "}"}
        with scoped_session(app, (scope,)) as s_on, scoped_session(owner, ()) as s_off:
            rows_on = s_on.execute(rls_sql).all()
            rows_off = s_off.execute(own_sql, bound).all()
            assert rows_on == rows_off, "RLS and the hand-written filter must agree"
            t_on, t_off = interleaved(partial(s_on.execute, rls_sql),
                                      partial(s_off.execute, own_sql, bound), n)
        print(overhead_line(f"SQL {name} in one township ({len(rows_on)} rows)", t_on, t_off))


def check_owner_bypasses(owner: Engine) -> None:
    """Refuse to report figures if the 'off' side is filtered too (owner must bypass RLS)."""
    with scoped_session(owner, ()) as s:
        if not s.execute(text("SELECT count(*) FROM region")).scalar():
            raise SystemExit("the owner role does not bypass RLS here: no 'off' side to compare")


def run(logins: int, requests: int, scale: str) -> None:
    """Set up, then print the argon2, login and RLS figures."""
    from tests.support.live import app_with, serve
    from tests.support.users import make_user

    argon2_figures()
    with bench_database("access", scale=scale) as (owner_url, app_url), ExitStack() as stack:
        app_engine = stack.enter_context(_engine(app_url))
        owner_engine = stack.enter_context(_engine(owner_url))
        check_owner_bypasses(owner_engine)
        with owner_engine.connect() as conn:
            city, city_path, township = conn.execute(text(
                "SELECT code, path::text, (SELECT path::text FROM region WHERE level = "
                "'township' AND valid_to IS NULL ORDER BY code LIMIT 1) FROM region "
                "WHERE level = 'city' AND valid_to IS NULL LIMIT 1")).one()
        user = make_user(app_engine, "bench_commander", roles=["city_commander"], scope=[city])
        _set_password(app_engine, user.id)
        base_on = stack.enter_context(serve(app_with(settings_for(owner_url, app_url))))
        base_off = stack.enter_context(serve(app_with(settings_for(owner_url, owner_url))))
        on = stack.enter_context(httpx.Client(base_url=base_on, timeout=30))
        off = stack.enter_context(httpx.Client(base_url=base_off, timeout=30))
        login_figures(on, "bench_commander", logins)
        http_figures(on, off, user.headers, requests)
        service_figures(app_engine, owner_engine, city_path, requests)
        sql_figures(app_engine, owner_engine, township, requests)


def _set_password(engine: Engine, user_id: int) -> None:
    """Give the bench user the bench password (make_user's is the tests')."""
    with scoped_session(engine, ("",)) as s:
        s.execute(text("UPDATE app_user SET password_hash = :h WHERE id = :u"),
                  {"h": hash_password(PASSWORD), "u": user_id})


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    e = create_engine(sqlalchemy_url(url), pool_size=2)
    try:
        yield e
    finally:
        e.dispose()


def main() -> None:
    """Parse arguments and run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--scale", default="tiny", choices=("tiny", "demo", "city"))
    args = parser.parse_args()
    run(args.logins, args.requests, args.scale)


if __name__ == "__main__":
    main()
