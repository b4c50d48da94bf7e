"""Live push over Server-Sent Events, fed by one LISTEN connection per server process.

``LiveHub`` keeps a single psycopg2 connection that LISTENs on the live channels
(``gridgov_messages``: new messages and read marks; ``gridgov_patrol_live``: workers' moves). A
thread waits on its socket with ``select`` (the pattern of ``tiles.cache.ChangeListener``),
parses each payload once and hands the batch to the event loop with ``call_soon_threadsafe``;
there the hub routes each message to the subscribers it concerns — by key (a message's
``user_id``) or by jurisdiction (a move's region ``path`` inside the subscriber's scope). Each
subscriber is one open SSE response with a bounded queue: a client that falls that far behind
is cut off (its EventSource reconnects and resynchronises) instead of holding memory or
slowing the others. When the connection drops the thread reconnects with back-off and tells
every subscriber to resynchronise, since notifications sent meanwhile are lost.

Watchers add what NOTIFY cannot say: ``PatrolWatcher`` names the workers in moves and, every
few seconds, announces those whose last fix has just become older than the online window
(online → offline happens by silence, so nobody NOTIFYs it).

``sse_response`` turns a subscriber's events into ``text/event-stream`` with ``id:``,
``event:`` and ``data:`` lines, a comment every ``heartbeat`` seconds (proxies and browsers
drop idle connections), and an end on client disconnect (Starlette cancels the body), at a
maximum age (so a revoked login does not keep a stream forever; EventSource reconnects and
authenticates again) and on server shutdown: the hub chains SIGINT/SIGTERM so open streams end
at once, and uvicorn's graceful shutdown does not wait for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Protocol

import psycopg2
import psycopg2.extensions
from starlette.requests import Request
from starlette.responses import StreamingResponse

from geoserver.config import Settings
from geoserver.errors import InvalidInput, Unavailable
from geoserver.services.notifications import MESSAGES_CHANNEL
from geoserver.services.patrol_store import LIVE_CHANNEL

#: Event changes (0105.event_changes.sql): id, action, state, version and the region path.
EVENTS_CHANNEL = "gridgov_events"

log = logging.getLogger("gridgov.live")

Message = dict[str, Any]
#: Queued to every subscriber after a reconnect: notifications may have been missed.
RESYNC: Message = {"resync": True}


class StreamClosed(Exception):
    """The subscription ended: the hub is stopping, or the client fell too far behind."""


class Subscription:
    """One client's bounded queue on one channel; used on the event loop only."""

    def __init__(self, hub: LiveHub, channel: str, key: Any, scope: tuple[str, ...] | None,
                 limit: int) -> None:
        self.hub = hub
        self.channel = channel
        self.key = key
        self.scope = scope
        self.limit = limit
        self.overflowed = False
        self.closed = False
        self._items: deque[Message] = deque()
        self._ready = asyncio.Event()

    def push(self, item: Message) -> None:
        """Queue one message; past the limit the subscription is cut off instead."""
        if self.closed:
            return
        if len(self._items) >= self.limit:
            self.overflowed = True
            self.hub.dropped += 1
            self.close()
            return
        self._items.append(item)
        self._ready.set()

    def close(self) -> None:
        """End the subscription; a waiting ``get`` raises StreamClosed."""
        self.closed = True
        self._items.clear()
        self._ready.set()

    async def get(self, timeout: float) -> list[Message]:
        """Return the messages queued so far, waiting up to ``timeout`` seconds for one."""
        if not self._items and not self.closed:
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                pass
        self._ready.clear()
        if self.closed:
            raise StreamClosed("the hub is stopping" if not self.overflowed
                               else "the client fell behind")
        items = list(self._items)
        self._items.clear()
        return items


class Watcher(Protocol):
    """Adds to a channel what NOTIFY alone does not carry (runs on the hub's thread)."""

    channel: str
    interval: float

    def on_connect(self, conn: psycopg2.extensions.connection) -> None:
        """Prepare a fresh connection (session settings, a starting point)."""

    def enrich(self, conn: psycopg2.extensions.connection, messages: list[Message]) -> None:
        """Complete messages received on the channel, in place."""

    def tick(self, conn: psycopg2.extensions.connection) -> list[Message]:
        """Return messages of the channel's own making (called every ``interval`` seconds)."""


def covers(scope: Sequence[str], path: str) -> bool:
    """Return whether a region path lies inside a scope (as the RLS policy decides it)."""
    return any(p == "" or path == p or path.startswith(p + ".") for p in scope)


class LiveHub:
    """One LISTEN connection per process, fanning notifications out to SSE subscribers."""

    def __init__(self, dsn: str, channels: Sequence[str], *,
                 key_fields: Mapping[str, str] | None = None,
                 watchers: Sequence[Watcher] = (), queue_limit: int = 1000,
                 heartbeat: float = 15.0, max_stream_seconds: float = 900.0) -> None:
        self.dsn = dsn
        self.channels = tuple(channels)
        self.key_fields = dict(key_fields or {})
        self.watchers = list(watchers)
        self.queue_limit = queue_limit
        self.heartbeat = heartbeat
        self.max_stream_seconds = max_stream_seconds
        self.healthy = False
        self.delivered = 0
        self.dropped = 0
        self._plain: dict[str, set[Subscription]] = {c: set() for c in self.channels}
        self._keyed: dict[str, dict[Any, set[Subscription]]] = {c: {} for c in self.channels}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._conn: psycopg2.extensions.connection | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread: threading.Thread | None = None
        self._due = {id(w): 0.0 for w in self.watchers}
        self._signals: dict[int, Any] = {}

    # --- life cycle (event loop) ------------------------------------------------------------

    def start(self, *, listen: bool = True) -> None:
        """Start listening (from the running event loop: the lifespan); retries if need be.

        ``listen=False`` only attaches the hub to the loop (tests dispatch by hand).
        """
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        if not listen:
            return
        self._thread = threading.Thread(target=self._run, name="gridgov-live-listener",
                                        daemon=True)
        self._thread.start()

    @property
    def closing(self) -> bool:
        """Return whether the hub is stopping (no new subscriptions)."""
        return self._closing is None or self._closing.is_set()

    def begin_close(self) -> None:
        """End every open stream now and refuse new ones (on the event loop)."""
        if self._closing is not None:
            self._closing.set()
        for sub in self._all():
            sub.close()

    def stop(self) -> None:
        """End every stream, stop the thread and close the connection (lifespan shutdown)."""
        self.begin_close()
        for sig, previous in self._signals.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        self._close_conn()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def chain_signals(self) -> None:
        """End open streams as soon as the server is told to stop (SIGINT/SIGTERM).

        uvicorn waits for open responses before it shuts the app down; without this an idle
        stream would hold shutdown until its graceful timeout. Only the main thread may set
        signal handlers (a server run in a test thread has none to chain).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._signals[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def request_close(self) -> None:
        """Ask the event loop to end every open stream (from any thread or a signal handler)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.begin_close)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.request_close()
        previous = self._signals.get(sig)
        if callable(previous):
            previous(sig, frame)

    # --- subscribers (event loop) -----------------------------------------------------------

    def subscribe(self, channel: str, *, key: Any = None,
                  scope: Sequence[str] | None = None) -> Subscription:
        """Subscribe to a channel: messages whose key field equals ``key``, or whose ``path``
        lies in ``scope``, or all of them.

        Raises:
            Unavailable: the hub is stopping or not started.
        """
        if self.closing:
            raise Unavailable("live updates are stopping; try again shortly")
        if key is None and channel in self.key_fields:
            # Keyed channels carry private messages: never subscribe to all of them.
            raise ValueError(f"subscribing to {channel} needs a key")
        sub = Subscription(self, channel, key, tuple(scope) if scope is not None else None,
                           self.queue_limit)
        if key is not None:
            self._keyed[channel].setdefault(key, set()).add(sub)
        else:
            self._plain[channel].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a subscription (idempotent)."""
        sub.closed = True
        if sub.key is not None:
            subs = self._keyed[sub.channel].get(sub.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._keyed[sub.channel][sub.key]
        else:
            self._plain[sub.channel].discard(sub)

    @property
    def subscribers(self) -> int:
        """Return the number of open subscriptions."""
        return sum(1 for _ in self._all())

    def _all(self) -> Iterable[Subscription]:
        for channel in self.channels:
            yield from list(self._plain[channel])
            for subs in list(self._keyed[channel].values()):
                yield from list(subs)

    def _dispatch(self, batch: list[tuple[str, Message]] | None) -> None:
        """Route a batch of messages to their subscribers (None: everyone must resync)."""
        if batch is None:
            for sub in list(self._all()):
                sub.push(RESYNC)
            return
        for channel, message in batch:
            targets: list[Subscription] = []
            field = self.key_fields.get(channel)
            if field is not None:
                targets.extend(self._keyed[channel].get(message.get(field), ()))
            plain = self._plain.get(channel)
            if plain:
                path = message.get("path")
                decided: dict[tuple[str, ...], bool] = {}  # one decision per distinct scope
                for sub in plain:
                    if sub.scope is None:
                        targets.append(sub)
                        continue
                    ok = decided.get(sub.scope)
                    if ok is None:
                        ok = decided[sub.scope] = isinstance(path, str) and covers(sub.scope, path)
                    if ok:
                        targets.append(sub)
            for sub in targets:
                sub.push(message)
            self.delivered += len(targets)

    # --- the listening thread ---------------------------------------------------------------

    def _post(self, batch: list[tuple[str, Message]] | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._dispatch, batch)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    def _connect(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name="gridgov-live",
                                options="-c timezone=Asia/Shanghai", keepalives=1,
                                keepalives_idle=30, keepalives_interval=10,
                                keepalives_count=3, connect_timeout=5)
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            for channel in self.channels:
                cur.execute(f'LISTEN "{channel}"')
        for watcher in self.watchers:
            watcher.on_connect(conn)
        self._conn = conn
        self.healthy = True

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        self.healthy = False
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    def _run(self) -> None:
        backoff, connected_before = 0.5, False
        while not self._stop.is_set():
            if self._conn is None:
                try:
                    self._connect()
                except (psycopg2.Error, OSError) as e:
                    log.warning("live listener cannot connect (%s); retrying", e)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30)
                    continue
                backoff = 0.5
                if connected_before:
                    log.info("live listener reconnected; streams resynchronise")
                    self._post(None)
                connected_before = True
            try:
                self._step()
            except (psycopg2.Error, OSError, ValueError) as e:
                if not self._stop.is_set():
                    log.warning("live listener lost its connection (%s); reconnecting", e)
                self._close_conn()

    def _step(self) -> None:
        """Wait for notifications (or a watcher's turn) and post what arrived."""
        conn = self._conn
        assert conn is not None
        now = time.monotonic()
        wait = min([self._due[id(w)] - now for w in self.watchers] + [30.0])
        select.select([conn, self._wake_r], [], [], max(0.0, wait))
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        if self._stop.is_set():
            return
        conn.poll()
        notes, conn.notifies[:] = list(conn.notifies), []
        batch = [item for note in notes if (item := _parse(note)) is not None]
        for watcher in self.watchers:
            mine = [m for c, m in batch if c == watcher.channel]
            try:
                if mine:
                    watcher.enrich(conn, mine)
                if time.monotonic() >= self._due[id(watcher)]:
                    self._due[id(watcher)] = time.monotonic() + watcher.interval
                    batch += [(watcher.channel, m) for m in watcher.tick(conn)]
            except psycopg2.Error as e:
                if conn.closed:
                    raise
                # A failing query (not a lost connection) must not stop the notifications.
                log.warning("live watcher %s failed: %s", type(watcher).__name__, e)
        if batch:
            self._post(batch)


def _parse(note: Any) -> tuple[str, Message] | None:
    try:
        message = json.loads(note.payload)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        log.warning("ignoring a malformed live notification on %s: %.200s", note.channel,
                    note.payload)
        return None
    return note.channel, message


class PatrolWatcher:
    """Names the workers in moves, says whether each is online, and announces who went
    offline (no fix for ``online_seconds``) — for the live patrol view."""

    channel = LIVE_CHANNEL

    def __init__(self, online_seconds: float, interval: float = 15.0) -> None:
        self.online = timedelta(seconds=online_seconds)
        # Look at least twice per online window, so an offline change is late by at most half.
        self.interval = min(interval, online_seconds / 2)
        self._names: dict[int, tuple[str | None, str | None]] = {}
        self._since: datetime | None = None

    def on_connect(self, conn: psycopg2.extensions.connection) -> None:
        """Read every jurisdiction (the streams filter per subscriber) from now on."""
        with conn.cursor() as cur:
            cur.execute("""SELECT set_config('gridgov.scope', '{""}', false), now()""")
            self._since = cur.fetchone()[1]

    def enrich(self, conn: psycopg2.extensions.connection, messages: list[Message]) -> None:
        """Add the worker's names and the online flag to each move."""
        unknown = {m["user_id"] for m in messages
                   if isinstance(m.get("user_id"), int) and m["user_id"] not in self._names}
        if unknown:
            if len(self._names) > 100_000:
                self._names.clear()
            with conn.cursor() as cur:
                cur.execute("SELECT id, username, display_name FROM app_user WHERE id = ANY(%s)",
                            (sorted(unknown),))
                for uid, username, display_name in cur.fetchall():
                    self._names[uid] = (username, display_name)
        cutoff = datetime.now(UTC) - self.online
        for m in messages:
            uid = m.get("user_id")
            m["username"], m["display_name"] = (
                self._names.get(uid, (None, None)) if isinstance(uid, int) else (None, None))
            try:
                m["online"] = datetime.fromisoformat(m["ts"]) > cutoff
            except (KeyError, TypeError, ValueError):
                m["online"] = False
            m["change"] = "move"

    def tick(self, conn: psycopg2.extensions.connection) -> list[Message]:
        """Return the workers whose last fix left the online window since the last tick."""
        with conn.cursor() as cur:
            cur.execute("SELECT now()")
            now = cur.fetchone()[0]
            since = self._since or now
            cur.execute(
                "SELECT l.user_id, l.ts, l.lon, l.lat, l.path::text, u.username, "
                "u.display_name FROM patrol_live l LEFT JOIN app_user u ON u.id = l.user_id "
                "WHERE l.ts > %s AND l.ts <= %s ORDER BY l.ts LIMIT 20000",
                (since - self.online, now - self.online))
            rows = cur.fetchall()
        self._since = now
        return [{"user_id": uid, "ts": ts.isoformat(), "lon": lon, "lat": lat, "path": path,
                 "username": username, "display_name": name, "online": False,
                 "change": "offline"} for uid, ts, lon, lat, path, username, name in rows]


# --- Server-Sent Events --------------------------------------------------------------------


@dataclass(frozen=True)
class SseEvent:
    """One event of a stream: ``data`` is sent as JSON."""

    data: Any
    event: str | None = None
    id: int | str | None = None

    def encode(self) -> bytes:
        """Render the event in the text/event-stream format."""
        # json.dumps escapes newlines inside strings, so the data is one line.
        lines = [] if self.id is None else [f"id: {self.id}"]
        if self.event:
            lines.append(f"event: {self.event}")
        lines.append("data: " + json.dumps(self.data, ensure_ascii=False, default=str))
        return ("\n".join(lines) + "\n\n").encode()


def sse_response(hub: LiveHub, events: AsyncGenerator[SseEvent | None, None], *,
                 retry_ms: int = 3000) -> StreamingResponse:
    """Stream ``events`` (None: nothing new) as text/event-stream with heartbeats.

    Ends when ``events`` ends or raises StreamClosed, at the hub's maximum stream age, on
    shutdown, and when the client goes away (Starlette cancels the body).
    """

    async def body() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        last = start = loop.time()
        yield f"retry: {retry_ms}\n\n".encode()
        try:
            async for item in events:
                now = loop.time()
                if hub.closing or now - start > hub.max_stream_seconds:
                    break
                if item is not None:
                    yield item.encode()
                    last = now
                elif now - last >= hub.heartbeat:
                    yield b": keep-alive\n\n"
                    last = now
        except StreamClosed:
            pass
        finally:
            await events.aclose()

    return StreamingResponse(body(), media_type="text/event-stream", headers={
        "Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"})


def hub_of(request: Request) -> LiveHub:
    """Return the app's live hub.

    Raises:
        Unavailable: the hub is not running (or is stopping).
    """
    hub: LiveHub | None = getattr(request.app.state, "live_hub", None)
    if hub is None or hub.closing:
        raise Unavailable("live updates are not running; try again shortly")
    return hub


def parse_last_event_id(raw: str | None) -> int | None:
    """Return the ``Last-Event-ID`` a reconnecting EventSource sent (an id we gave), if any.

    Raises:
        InvalidInput: it is not one of our ids.
    """
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip()
    if not value.isdigit() or len(value) > 18:
        raise InvalidInput("Last-Event-ID must be a message id (digits)", field="Last-Event-ID")
    return int(value)


def start_hub(settings: Settings) -> LiveHub:
    """Start the process's live hub for the app's database (call from the lifespan)."""
    hub = LiveHub(settings.database.app_database_url or "",
                  channels=(MESSAGES_CHANNEL, LIVE_CHANNEL, EVENTS_CHANNEL),
                  key_fields={MESSAGES_CHANNEL: "user_id"},
                  watchers=[PatrolWatcher(settings.patrol.online_minutes * 60)])
    hub.start()
    hub.chain_signals()
    return hub
