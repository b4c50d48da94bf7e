"""Bench: partner platforms — signed intake throughput and status-push delivery rate.

On a clone of the tiny demo template, with the app served in this process (jobs off) and the
stand-in partner server (tests/support/partner_server.py) as the callback:

1. Signed intake: ``--reports`` events reported by a 110 partner through
   ``POST /api/v1/partner/events`` (HMAC signature, nonce, Idempotency-Key) from ``--clients``
   threads: reports/s and latency p50/p99, next to the same reports by a commander through
   ``POST /api/v1/events`` with a bearer token (the ratio is the partner layer's cost).
2. Outbox delivery: one status change per event (受理) fills the outbox; the worker
   (``partner_outbox.deliver_due``) drains it into the stand-in: pushes/s, next to a floor of
   the same signed POSTs sent straight from Python without the database.

    .venv/bin/python bench/bench_partners.py [--reports 200] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

import tests.conftest  # noqa: E402,F401  (registers the tiny demo city as the template filler)
from bench.common import bench_clone, percentile  # noqa: E402
from geoserver.config import PartnerSettings, SecuritySettings  # noqa: E402
from geoserver.database.bootstrap import APP_ROLE  # noqa: E402
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session, sqlalchemy_url  # noqa: E402
from geoserver.domain.principal import SYSTEM  # noqa: E402
from geoserver.security.crypto import crypto_from_settings  # noqa: E402
from geoserver.services import auth, event_actions, event_types, partner_outbox, partners  # noqa: E402
from tests.conftest import make_settings  # noqa: E402
from tests.support.live import app_with, serve  # noqa: E402
from tests.support.partner_server import PartnerServer  # noqa: E402
from tests.support.users import make_user  # noqa: E402

GRID = "330302006045001"
TOWNSHIP = "330302006"
CRYPTO = crypto_from_settings(SecuritySettings())


def timed(n: int, clients: int, call: Any) -> tuple[float, list[float]]:
    """Run call(i) n times on ``clients`` threads; return (seconds, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t = time.perf_counter()
        call(i)
        with lock:
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - start, latencies


def setup(engine: Any, server: PartnerServer) -> tuple[partners.NewKey, Any, list[float]]:
    """Load the catalogue, register the partner with a key, make a commander."""
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        event_types.initialize_catalogue(s, actor=SYSTEM)
        partners.create_partner(s, actor=SYSTEM, data={
            "code": "police110", "name": "110", "kind": "police_110", "scope": ["330302"],
            "callback_url": server.url, "rate_limit_per_minute": 100_000})
        key = partners.create_key(s, actor=SYSTEM, code="police110", crypto=CRYPTO)
        row = s.execute(text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p "
                             "FROM region WHERE code = :c AND valid_to IS NULL) x"),
                        {"c": GRID}).one()
    server.add_key(key.key_id, key.secret)
    commander = make_user(engine, "bench_cmd", roles=["township_commander"], scope=[TOWNSHIP],
                          positions=[("command_centre_staff", TOWNSHIP)])
    return key, commander, [float(row[0]), float(row[1])]


def intake(url: str, key: partners.NewKey, commander: Any, point: list[float], n: int,
           clients: int) -> None:
    """Measure signed partner reports next to bearer-token reports."""
    base = {"type_code": "0301", "description": "楼道堆物", "crs": "WGS84",
            "location": {"type": "Point", "coordinates": point}}
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "c"):
            local.c = httpx.Client(base_url=url, timeout=60)
        return local.c

    def signed(i: int) -> None:
        raw = json.dumps({**base, "partner_ref": f"B-{i}"}).encode()
        headers = partners.signed_headers(key.key_id, key.secret, "POST",
                                          "/api/v1/partner/events", raw)
        r = client().post("/api/v1/partner/events", content=raw, headers={
            **headers, "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text

    def bearer(i: int) -> None:
        r = client().post("/api/v1/events", json=base, headers=commander.headers)
        assert r.status_code == 201, r.text

    for name, fn in (("bearer /api/v1/events", bearer), ("signed /api/v1/partner/events", signed)):
        fn(-1)                                                  # warm the pool and caches
        seconds, lat = timed(n, clients, fn)
        ms = [1000 * v for v in lat]
        print(f"{name:32s} {n / seconds:7.1f} reports/s  p50 {percentile(ms, 50):6.1f} ms  "
              f"p99 {percentile(ms, 99):6.1f} ms")
    t = time.perf_counter()
    for i in range(10_000):
        partners.sign(key.secret, "POST", "/api/v1/partner/events", "1", str(i), b"x" * 400)
    print(f"HMAC signature alone            {(time.perf_counter() - t) / 10_000 * 1e6:7.1f} µs")


def delivery(engine: Any, server: PartnerServer, key: partners.NewKey) -> None:
    """Measure the outbox drain rate next to plain signed POSTs."""
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        uid = s.execute(text("SELECT id FROM app_user WHERE username = :u"),
                        {"u": f"t{TOWNSHIP}"}).scalar_one()
        actor = auth.principal_for(s, uid)
        assert actor is not None
        ids = s.execute(text("SELECT event_id FROM partner_event ORDER BY event_id")).scalars()
        for eid in ids:
            event_actions.act(s, actor=actor, event_id=eid, action="accept",
                              data={"version": 1})
        pending = s.execute(text("SELECT count(*) FROM partner_outbox WHERE delivered_at IS NULL")
                            ).scalar_one()
    server.clear()
    settings = PartnerSettings(outbox_batch=10_000)
    t = time.perf_counter()
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        run = partner_outbox.deliver_due(s, crypto=CRYPTO, settings=settings)
    seconds = time.perf_counter() - t
    assert run.delivered == pending == len(server.accepted()), (run, pending)
    print(f"outbox worker                  {pending / seconds:7.1f} pushes/s  ({pending} pushes)")
    body = json.dumps(server.accepted()[0].json, ensure_ascii=False).encode()
    path = urlsplit(server.url).path
    t = time.perf_counter()
    with httpx.Client(timeout=10) as c:
        for _ in range(pending):
            c.post(server.url, content=body, headers={
                **partners.signed_headers(key.key_id, key.secret, "POST", path, body),
                "Content-Type": "application/json"})
    floor = pending / (time.perf_counter() - t)
    print(f"floor: signed POSTs, no database {floor:7.1f} pushes/s  "
          f"(worker at {pending / seconds / floor:.0%} of the floor)")


def run(n: int, clients: int) -> None:
    """Clone the tiny demo, serve the app, run both measurements."""
    with bench_clone("partners") as (pg, name), PartnerServer() as server:
        engine = create_engine(sqlalchemy_url(pg.url(APP_ROLE, name)))
        try:
            key, commander, point = setup(engine, server)
            with serve(app_with(make_settings(pg, name, jobs_enabled=False))) as url:
                intake(url, key, commander, point, n, clients)
            delivery(engine, server, key)
        finally:
            engine.dispose()


def main() -> None:
    """Parse arguments and run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    run(args.reports, args.clients)


if __name__ == "__main__":
    main()
