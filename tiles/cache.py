"""Tile caching: versions per (table, z10 tile), memory and disk caches, the change listener.

A cached tile is keyed by (layer, versions, z, x, y, query, scope). The versions are those of
the layer's tracked tables at the tile's z10 ancestor (or, below z10, summed over the z10 tiles
it covers), as stored in ``tiles.tile_version`` and bumped by the write that touched them
(migration 0010). Each process holds the versions in memory and keeps them current from
``NOTIFY gridgov_tiles``; answering from the cache therefore never touches the database, a write
invalidates only the tiles near it, and processes agree on versions (so the disk cache and
``gridgov tiles seed`` are shared).

Why a cached tile is never older than its key: the key's versions are read *before* rendering,
and the render's snapshot is taken after, so it holds at least that state. A write that lands
meanwhile bumps the version, and later requests miss the entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import psycopg2
import psycopg2.extensions

from geoserver.domain.principal import Principal
from tiles.tilemath import VERSION_ZOOM

log = logging.getLogger("gridgov.tiles")

CHANNEL = "gridgov_tiles"
#: Margin the SQL adds around a changed row before finding its z10 tiles, in z10 tile widths
#: (tiles.z10_margin() in migration 0010: an eighth of a tile).
Z10_MARGIN_TILES = 1 / 8
#: Tile buffer of the tile functions, as a share of the tile (64 of 4096 extent units).
TILE_BUFFER = 64 / 4096
_EPOCH = (-1, -1)


class VersionBook:
    """Versions per (table, z10 tile) and a table-wide epoch; safe to read from any thread."""

    def __init__(self) -> None:
        # Copy-on-write: readers take a reference to an immutable mapping, the listener swaps.
        self._tables: Mapping[str, Mapping[tuple[int, int], int]] = MappingProxyType({})
        self._lock = threading.Lock()
        # Below z10 a version sums many z10 entries: remembered per snapshot of the table's
        # mapping (a write swaps the mapping, which retires the remembered sums).
        self._sums: dict[tuple[str, int, int, int], tuple[object, int]] = {}

    def load(self, rows: Iterable[tuple[str, int, int, int]]) -> None:
        """Replace every version with ``rows`` of (table, x, y, version)."""
        tables: dict[str, dict[tuple[int, int], int]] = {}
        for tbl, x, y, version in rows:
            tables.setdefault(tbl, {})[(x, y)] = version
        with self._lock:
            self._tables = MappingProxyType(
                {t: MappingProxyType(v) for t, v in tables.items()})

    def apply(self, table: str, items: Iterable[tuple[int, int, int]]) -> None:
        """Merge announced versions of one table (versions only grow; keep the larger)."""
        with self._lock:
            current = dict(self._tables.get(table, {}))
            for x, y, version in items:
                if version > current.get((x, y), 0):
                    current[(x, y)] = version
            tables = dict(self._tables)
            tables[table] = MappingProxyType(current)
            self._tables = MappingProxyType(tables)

    def version(self, table: str, z: int, x: int, y: int) -> int:
        """Return the version of a table's data under tile z/x/y (grows with every change)."""
        entries = self._tables.get(table)
        if not entries:
            return 0
        epoch = entries.get(_EPOCH, 0)
        if z >= VERSION_ZOOM:
            shift = z - VERSION_ZOOM
            return epoch + entries.get((x >> shift, y >> shift), 0)
        memo_key = (table, z, x, y)
        memo = self._sums.get(memo_key)
        if memo is not None and memo[0] is entries:
            return memo[1]
        # Below z10 a tile covers many z10 tiles, plus its buffer and what rows drawn there can
        # reach; versions only grow, so their sum changes whenever one of them does.
        span = 1 << (VERSION_ZOOM - z)
        k = math.ceil(span * TILE_BUFFER + Z10_MARGIN_TILES)
        x0, x1 = x * span - k, (x + 1) * span - 1 + k
        y0, y1 = y * span - k, (y + 1) * span - 1 + k
        total = epoch + sum(v for (tx, ty), v in entries.items()
                            if x0 <= tx <= x1 and y0 <= ty <= y1 and (tx, ty) != _EPOCH)
        if len(self._sums) >= 50_000:
            self._sums = {}
        self._sums[memo_key] = (entries, total)
        return total

    def versions(self, tables: Iterable[str], z: int, x: int, y: int) -> tuple[int, ...]:
        """Return the versions of several tables under tile z/x/y."""
        return tuple(self.version(t, z, x, y) for t in tables)


@dataclass(frozen=True)
class TileKey:
    """What a cached tile depends on."""

    layer: str
    versions: tuple[int, ...]
    z: int
    x: int
    y: int
    query: str
    scope: tuple[str, ...]

    def digest(self) -> str:
        """Return a stable hash of everything but the versions (names a disk cache slot)."""
        text = json.dumps([self.layer, self.z, self.x, self.y, self.query, list(self.scope)],
                          ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Tile:
    """A rendered tile: gzip-compressed MVT bytes and the ETag of the uncompressed content."""

    gzipped: bytes
    etag: str
    size: int
    #: ``time.monotonic()`` after which the content may be wrong by the clock alone (an SLA
    #: colour changed); None: right until a write bumps its version.
    expires: float | None = None

    @property
    def empty(self) -> bool:
        """Return whether the tile holds no features."""
        return self.size == 0

    def fresh(self, now: float | None = None) -> bool:
        """Return whether the tile has not expired."""
        return self.expires is None or (now if now is not None else time.monotonic()) \
            < self.expires


def etag_of(raw: bytes) -> str:
    """Return the strong ETag (quoted) of tile content: equal bytes, equal tag, any process."""
    return '"' + hashlib.blake2b(raw, digest_size=12).hexdigest() + '"'


class MemoryCache:
    """A least-recently-used cache of tiles bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[TileKey, Tile] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: TileKey) -> Tile | None:
        """Return the cached tile, or None."""
        with self._lock:
            tile = self._entries.get(key)
            if tile is not None and not tile.fresh():
                del self._entries[key]
                self._bytes -= len(tile.gzipped) + 200
                tile = None
            if tile is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return tile

    def put(self, key: TileKey, tile: Tile) -> None:
        """Store a tile, evicting the least recently used beyond the byte budget."""
        cost = len(tile.gzipped) + 200
        if cost > self.max_bytes or not tile.fresh():
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old.gzipped) + 200
            self._entries[key] = tile
            self._bytes += cost
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped.gzipped) + 200

    def clear(self) -> None:
        """Forget every tile."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


class DiskCache:
    """Tiles on disk, shared by the server processes and the seeder of one database.

    ``root/<namespace>/<layer>/<z>/<x>/<y>-<digest>-<versions>.mvt.gz``; the namespace names
    the database (see TileService.namespace), a newer version replaces the older file.
    """

    def __init__(self, root: Path, namespace: str) -> None:
        self.root = root / namespace

    def _dir(self, key: TileKey) -> Path:
        return self.root / key.layer / str(key.z) / str(key.x)

    def _name(self, key: TileKey) -> tuple[str, str]:
        prefix = f"{key.y}-{key.digest()}-"
        return prefix, prefix + "-".join(map(str, key.versions)) + ".mvt.gz"

    def get(self, key: TileKey) -> Tile | None:
        """Return the stored tile, or None."""
        _, name = self._name(key)
        try:
            blob = (self._dir(key) / name).read_bytes()
        except OSError:
            return None
        head, _, body = blob.partition(b"\n")
        etag, _, size = head.decode().partition(" ")
        return Tile(body, etag, int(size or 0))

    def put(self, key: TileKey, tile: Tile) -> None:
        """Store a tile atomically and remove the older versions of its slot."""
        folder = self._dir(key)
        prefix, name = self._name(key)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}"
        tmp.write_bytes(f"{tile.etag} {tile.size}\n".encode() + tile.gzipped)
        os.replace(tmp, folder / name)
        for old in folder.glob(prefix + "*.mvt.gz"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def has(self, key: TileKey) -> bool:
        """Return whether the tile is stored."""
        return (self._dir(key) / self._name(key)[1]).exists()


class CredentialCache:
    """Principals of recently resolved credentials, so a cached tile needs no database at all.

    Entries live ``ttl`` seconds; any revocation, deactivation or role, scope or grant change
    clears them through NOTIFY (migration 0010). ``generation`` guards the race where a change
    lands while a credential is being resolved: such a result is not kept.
    """

    def __init__(self, ttl: float, max_entries: int = 20_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self.generation = 0

    @staticmethod
    def key_for(bearer: str | None, cookie: str | None) -> str | None:
        """Return the cache key of a request's credential (a hash; never the secret)."""
        if bearer:
            return "b" + hashlib.sha256(bearer.encode()).hexdigest()
        if cookie:
            return "c" + hashlib.sha256(cookie.encode()).hexdigest()
        return None

    def get(self, key: str) -> Principal | None:
        """Return the principal for a credential still fresh in the cache, or None."""
        hit = self._entries.get(key)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, key: str, principal: Principal, generation: int) -> None:
        """Remember a principal resolved while the cache was at ``generation``."""
        if self.ttl <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {}
        self._entries[key] = (principal, time.monotonic() + self.ttl)

    def clear(self) -> None:
        """Forget every credential."""
        self.generation += 1
        self._entries = {}


class ChangeListener:
    """One LISTEN connection per process keeping a VersionBook current.

    A thread waits on the socket with ``select``; request handlers call ``drain()`` to apply
    notifications already received (no query, a non-blocking read). That leaves one window: a
    commit's NOTIFY reaches this process a fraction of a millisecond after the commit returns.
    ``sync()`` closes it: a round trip on this connection (``SELECT 1``, no table read) makes
    PostgreSQL deliver every notification of transactions committed before it started, and
    all requests waiting meanwhile share one round trip.

    While the connection is down the listener is not ``healthy`` and the service renders without
    the cache; after a reconnect it reloads every version, so missed notifications do no harm.
    """

    def __init__(self, dsn: str, book: VersionBook, *, on_auth: Callable[[], None],
                 on_reset: Callable[[], None]) -> None:
        self.dsn = dsn
        self.book = book
        self.on_auth = on_auth
        self.on_reset = on_reset
        self.healthy = False
        self._conn: psycopg2.extensions.connection | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread: threading.Thread | None = None
        self._next_sync: Future[None] | None = None
        self._sync_lock = threading.Lock()

    def start(self) -> None:
        """Connect, LISTEN, load the versions and start the thread (which retries if need be)."""
        try:
            self._connect()
        except (psycopg2.Error, OSError) as e:
            log.warning("tile change listener cannot connect yet (%s); tiles go uncached", e)
        self._thread = threading.Thread(target=self._run, name="gridgov-tiles-listener",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the connection."""
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            self._close()
        self._serve_sync()  # fails any waiter: there is no connection any more
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _connect(self) -> None:
        conn = psycopg2.connect(self.dsn, application_name="gridgov-tiles-listener",
                                keepalives=1, keepalives_idle=30, keepalives_interval=10,
                                keepalives_count=3, connect_timeout=5)
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            # LISTEN before reading the versions: a commit in between is then both in the
            # snapshot and announced, never in neither.
            cur.execute(f"LISTEN {CHANNEL}")
            cur.execute("SELECT tbl, x, y, version FROM tiles.tile_version")
            rows = cur.fetchall()
        with self._lock:
            self._close()
            self._conn = conn
        self.book.load(rows)
        self.on_reset()
        self.healthy = True

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg2.Error:
                pass
            self._conn = None

    def drain(self) -> None:
        """Apply the notifications received so far (never blocks, never queries)."""
        # Applied under the lock: a request draining while the thread holds notifications it
        # has read but not yet applied waits for them instead of going on with old versions.
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            try:
                conn.poll()
            except psycopg2.Error:
                self.healthy = False
                return
            notes, conn.notifies[:] = list(conn.notifies), []
            for note in notes:
                self._handle(note.payload)

    def sync(self) -> Future[None]:
        """Return a future resolved once every commit before this call has been applied."""
        if self._stop.is_set():
            stopped: Future[None] = Future()
            stopped.set_exception(psycopg2.InterfaceError("the tile change listener stopped"))
            return stopped
        with self._sync_lock:
            if self._next_sync is None:
                self._next_sync = Future()
            waiter = self._next_sync
        os.write(self._wake_w, b"s")
        return waiter

    def _serve_sync(self) -> None:
        with self._sync_lock:
            waiter, self._next_sync = self._next_sync, None
        if waiter is None:
            return
        try:
            with self._lock:
                if self._conn is None:
                    raise psycopg2.InterfaceError("the tile change listener is not connected")
                with self._conn.cursor() as cur:
                    # Notifications of earlier commits arrive before this round trip's end.
                    cur.execute("SELECT 1")
                notes, self._conn.notifies[:] = list(self._conn.notifies), []
                for note in notes:
                    self._handle(note.payload)
        except psycopg2.Error as e:
            self.healthy = False
            waiter.set_exception(e)
            return
        waiter.set_result(None)

    def _handle(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("auth"):
                self.on_auth()
            if "t" in message:
                items = [tuple(int(n) for n in item.split(",")) for item in message["v"]]
                self.book.apply(message["t"], items)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed tile notification: %.200s", payload)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            conn = self._conn
            if conn is None or not self.healthy:
                self._serve_sync()  # waiters fail over to rendering while disconnected
                try:
                    self._connect()
                    backoff = 0.5
                    log.info("tile change listener connected")
                except (psycopg2.Error, OSError) as e:
                    log.warning("tile change listener cannot connect (%s); retrying", e)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 30)
                continue
            try:
                select.select([conn, self._wake_r], [], [], 30)
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
            except (OSError, ValueError):
                self.healthy = False
                continue
            if self._stop.is_set():
                break
            self.drain()
            self._serve_sync()
