"""Bench: live push over SSE — N concurrent streams on one server process, latency from a
committed NOTIFY to its delivery, and server memory per open stream.

On a clone of the tiny demo template on the test cluster, one uvicorn process (the app as
``gridgov serve`` builds it, one LISTEN connection) and, in this process, ``--clients`` raw
asyncio HTTP/1.1 clients (light enough that the client side is not what is measured):

1. messages: each client is a different user on ``/api/v1/messages/stream``; each round one
   transaction NOTIFYs one message per user (``--clients`` notifications, keyed routing).
2. patrol fan-out: the same users (township commanders) on ``/api/v1/patrols/live/stream``;
   each round one move inside their township is NOTIFYed, and every stream gets it.

Latency is from just before the NOTIFYing transaction's COMMIT to the moment a client has
parsed the event (one clock: both sides run on this machine). Memory: the server's RSS after
start-up and once all streams of each kind are open, over the number of streams.

    .venv/bin/python bench/bench_sse.py [--clients 500] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import select
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    bench_database,
    gridgov_env,
    server_process,
    uvicorn_command,
)

TOWNSHIP = "330302006"
GRID = "330302006044001"


def server(owner_url: str, app_url: str) -> AbstractContextManager[tuple[str, int]]:
    """Run one uvicorn process (open streams end 5 s after the stop); yield its URL and pid."""
    return server_process(uvicorn_command(extra=("--timeout-graceful-shutdown", "5")),
                          gridgov_env(owner_url, app_url))


def rss_kib(pid: int) -> int:
    """Return a process's resident set size in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def make_users(owner_url: str, app_url: str, n: int) -> list[tuple[int, str]]:
    """Create ``n`` township commanders (bulk SQL) with an API token each."""

    from geoserver.config import SecuritySettings
    from geoserver.database.engine import SYSTEM_SCOPE, make_engine, scoped_session
    from geoserver.services import auth

    conn = psycopg2.connect(owner_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO app_user (username, display_name, home_region_code, path) "
            "SELECT 'bench_sse_' || i, '压测' || i, code, path FROM region, "
            "generate_series(1, %s) i WHERE code = %s AND valid_to IS NULL RETURNING id",
            (n, TOWNSHIP))
        ids = [r[0] for r in cur.fetchall()]
        cur.execute("INSERT INTO user_role (user_id, role_id) SELECT u, id FROM role, "
                    "unnest(%s::bigint[]) u WHERE name = 'township_commander'", (ids,))
        cur.execute("INSERT INTO user_scope (user_id, region_code) SELECT u, %s "
                    "FROM unnest(%s::bigint[]) u", (TOWNSHIP, ids))
    conn.close()
    engine = make_engine(app_url, pool_size=1)
    out = []
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        for uid in ids:
            principal = auth.principal_for(s, uid)
            assert principal is not None
            token = auth.create_api_token(s, actor=principal, name="bench", days=1,
                                          permissions=[], settings=SecuritySettings(),
                                          context=auth.AuditContext())
            out.append((uid, token.token))
    engine.dispose()
    return out


LON0 = 120.65


def round_of(event: str, data: dict[str, Any]) -> int:
    """Return the bench round an event belongs to (a move carries it in its longitude)."""
    if event == "message":
        return int(data["bench_round"])
    return round((data["geometry"]["coordinates"][0] - LON0) * 1e6)


class Stream:
    """One SSE client over a raw asyncio connection (HTTP/1.1, chunked)."""

    def __init__(self, received: list[tuple[float, int]]) -> None:
        self.received = received
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self, port: int, path: str, token: str, first: str) -> None:
        """Connect, then record every data line's arrival time until cancelled."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2 ** 22)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"{path}: {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        try:
            while True:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    return
                chunk = await reader.readexactly(size + 2)
                now = time.time()
                event = None
                for line in chunk.decode().splitlines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        if event == first:
                            self.ready.set()
                        elif event in ("message", "move"):
                            self.received.append((now, round_of(event, json.loads(line[6:]))))
        finally:
            writer.close()


async def open_streams(port: int, path: str, tokens: list[str], first: str,
                       received: list[tuple[float, int]]) -> list[Stream]:
    """Open a stream per token (a few at a time) and wait until each has its first event."""
    streams = []
    gate = asyncio.Semaphore(20)

    async def one(token: str) -> Stream:
        s = Stream(received)
        async with gate:
            s.task = asyncio.create_task(s.run(port, path, token, first))
            await asyncio.wait_for(s.ready.wait(), 60)
        return s

    streams = await asyncio.gather(*(one(t) for t in tokens))
    return list(streams)


def notify_rounds(app_url: str, rounds: int, payloads_of: Any,
                  received: list[tuple[float, int]], expect: int) -> dict[int, float]:
    """Run ``rounds`` NOTIFY transactions (each waits for its deliveries); return the time
    just before each round's COMMIT."""
    conn = psycopg2.connect(app_url)
    commits: dict[int, float] = {}
    try:
        for r in range(rounds):
            with conn.cursor() as cur:
                for channel, payload in payloads_of(r):
                    cur.execute("SELECT pg_notify(%s, %s)", (channel, json.dumps(payload)))
            commits[r] = time.time()
            conn.commit()
            deadline = time.monotonic() + 30
            while sum(1 for _, got in received if got == r) < expect:
                if time.monotonic() > deadline:
                    raise SystemExit(f"round {r}: only part of the deliveries arrived")
                time.sleep(0.002)
            time.sleep(0.2)
    finally:
        conn.close()
    return commits


def latencies(commits: dict[int, float], received: list[tuple[float, int]]) -> np.ndarray:
    """Return the milliseconds from each round's COMMIT to each of its deliveries."""
    return np.array([(t - commits[r]) * 1000 for t, r in received if r in commits])


@contextmanager
def raw_listener(app_url: str, received: list[tuple[float, int]]) -> Iterator[None]:
    """The floor: one plain LISTEN connection in this process, no HTTP, no fan-out."""
    stop = threading.Event()
    conn = psycopg2.connect(app_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("LISTEN gridgov_messages; LISTEN gridgov_patrol_live")

    def run() -> None:
        while not stop.is_set():
            select.select([conn], [], [], 0.05)
            conn.poll()
            now = time.time()
            for note in conn.notifies:
                data = json.loads(note.payload)
                if note.channel == "gridgov_messages":
                    received.append((now, round_of("message", data)))
                else:
                    received.append((now, round((data["lon"] - LON0) * 1e6)))
            conn.notifies.clear()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        conn.close()


def figures(name: str, ms: np.ndarray, floor: np.ndarray | None = None) -> str:
    """Format latency percentiles."""
    line = (f"{name:<24} {ms.size:>7,} deliveries  p50 {np.percentile(ms, 50):7.1f} ms  "
            f"p99 {np.percentile(ms, 99):7.1f} ms  max {ms.max():7.1f} ms")
    if floor is not None:
        line += (f"   (raw LISTEN floor p50 {np.percentile(floor, 50):.1f} ms, p99 "
                 f"{np.percentile(floor, 99):.1f} ms)")
    return line


async def bench(port: int, pid: int, app_url: str, users: list[tuple[int, str]],
                rounds: int, worker_id: int, path: str) -> None:
    """Open the streams, run the rounds, print the figures."""
    loop = asyncio.get_running_loop()
    n = len(users)
    tokens = [t for _, t in users]
    base_rss = rss_kib(pid)
    got: list[tuple[float, int]] = []
    t0 = time.monotonic()
    streams = await open_streams(port, "/api/v1/messages/stream", tokens, "unread", got)
    opened = time.monotonic() - t0
    msg_rss = rss_kib(pid)
    print(f"opened {n} message streams in {opened:.1f} s; server RSS {base_rss / 1024:.0f} MiB "
          f"→ {msg_rss / 1024:.0f} MiB: {(msg_rss - base_rss) / n:.1f} KiB per stream")

    def personal(r: int) -> list[tuple[str, dict[str, Any]]]:
        return [("gridgov_messages", {"user_id": uid, "id": 10 ** 12 + r * 100_000 + i,
                                      "kind": "broadcast", "title": "压测", "bench_round": r})
                for i, (uid, _) in enumerate(users)]

    floor: list[tuple[float, int]] = []
    with raw_listener(app_url, floor):
        commits = await loop.run_in_executor(None, notify_rounds, app_url, rounds, personal,
                                             got, n)
    print(figures("messages (1 per user)", latencies(commits, got), latencies(commits, floor)))

    moved: list[tuple[float, int]] = []
    t0 = time.monotonic()
    patrol = await open_streams(port, "/api/v1/patrols/live/stream", tokens, "snapshot", moved)
    opened = time.monotonic() - t0
    both_rss = rss_kib(pid)
    print(f"opened {n} patrol streams in {opened:.1f} s; server RSS → {both_rss / 1024:.0f} MiB "
          f"({2 * n} streams open): {(both_rss - base_rss) / (2 * n):.1f} KiB per stream")

    def fan_out(r: int) -> list[tuple[str, dict[str, Any]]]:
        return [("gridgov_patrol_live", {
            "user_id": worker_id, "ts": time.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
            "lon": LON0 + r * 1e-6, "lat": 28.01, "path": path})]

    floor = []
    with raw_listener(app_url, floor):
        commits = await loop.run_in_executor(None, notify_rounds, app_url, rounds, fan_out,
                                             moved, n)
    print(figures(f"patrol move (→ {n})", latencies(commits, moved), latencies(commits, floor)))
    for s in streams + patrol:
        assert s.task is not None
        s.task.cancel()
    await asyncio.gather(*(s.task for s in streams + patrol if s.task), return_exceptions=True)


def run(clients: int, rounds: int) -> None:
    """Set up, run, print."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * clients + 256)), hard))
    with bench_database("sse") as (owner_url, app_url):
        users = make_users(owner_url, app_url, clients)
        conn = psycopg2.connect(owner_url)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT u.id, r.path::text FROM app_user u JOIN region r "
                        "ON r.code = %s AND r.valid_to IS NULL WHERE u.username = %s",
                        (GRID, f"w{GRID}"))
            worker_id, path = cur.fetchone()
        conn.close()
        print(f"{clients} clients, {rounds} rounds; {os.cpu_count()} CPUs (server and clients "
              "share them)")
        with server(owner_url, app_url) as (base, pid):
            port = int(base.rsplit(":", 1)[1])
            asyncio.run(bench(port, pid, app_url, users, rounds, worker_id, path))


def main() -> None:
    """Parse arguments and run the bench."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    run(args.clients, args.rounds)


if __name__ == "__main__":
    main()
