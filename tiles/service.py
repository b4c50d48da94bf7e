"""The tile service: look tiles up in the caches, render misses through the SQL tile functions.

Rendering runs ``tiles.<layer>(z, x, y, query)`` as the app role with the caller's scope set
for the statement, so row-level security decides what the tile shows. One round trip per tile:
the scope and the call go in one simple-query message, which PostgreSQL runs as one implicit
transaction (``set_config(…, true)`` lasts exactly that long).
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from geoserver.config import Settings
from geoserver.database.engine import scope_literal
from geoserver.errors import Unavailable
from tiles.cache import (
    ChangeListener,
    CredentialCache,
    DiskCache,
    MemoryCache,
    Tile,
    TileKey,
    VersionBook,
    etag_of,
)
from tiles.registry import REGISTRY, Registry, TileLayer
from tiles.settings import TileSettings, disk_dir_for
from tiles.tilemath import tiles_in_bbox

log = logging.getLogger("gridgov.tiles")

EMPTY_QUERY = "{}"
#: How long one audit row covers a user viewing an audited layer with one filter: a map view
#: fetches dozens of tiles, and the log should say who looked at whose tracks, not count tiles.
AUDIT_WINDOW_S = 600.0


def normalize_scope(scope: Sequence[str]) -> tuple[str, ...]:
    """Return a scope as sorted paths without those inside another (same rows, one cache key)."""
    paths = sorted(set(scope))
    if "" in paths:
        return ("",)
    kept: list[str] = []
    for p in paths:
        if not any(p.startswith(k + ".") for k in kept):
            kept.append(p)
    return tuple(kept)


class ConnectionPool:
    """A small blocking pool of autocommit connections for rendering."""

    def __init__(self, dsn: str, size: int, statement_timeout_ms: int) -> None:
        self.dsn = dsn
        self.options = f"-c statement_timeout={statement_timeout_ms} -c timezone=Asia/Shanghai"
        self._idle: list[psycopg2.extensions.connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(self.dsn, options=self.options, connect_timeout=5,
                                application_name="gridgov-tiles")
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """Lend a connection; one that failed at the connection level is dropped."""
        if not self._slots.acquire(timeout=30):
            raise Unavailable("every tile rendering connection is busy; try again")
        conn = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            if conn is not None:
                conn.close()
            raise
        finally:
            if conn is not None and not conn.closed:
                with self._lock:
                    self._idle.append(conn)
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._idle.clear()


@dataclass
class SeedResult:
    """What a seeding run did."""

    rendered: int = 0
    skipped: int = 0
    empty: int = 0
    bytes: int = 0


class TileService:
    """Tiles for one database: versions, caches, credentials and rendering connections."""

    def __init__(self, dsn: str, settings: TileSettings, *, disk_dir: Path | None = None,
                 registry: Registry = REGISTRY) -> None:
        self.settings = settings
        self.registry = registry
        self.book = VersionBook()
        self.memory = MemoryCache(settings.memory_mb * 1024 * 1024)
        self.credentials = CredentialCache(settings.credential_ttl_seconds)
        self.listener = ChangeListener(dsn, self.book, on_auth=self.credentials.clear,
                                       on_reset=self.credentials.clear)
        self.pool = ConnectionPool(dsn, settings.render_connections,
                                   settings.statement_timeout_ms)
        self.disk_dir = disk_dir
        self.disk: DiskCache | None = None
        self._inflight: dict[TileKey, threading.Event] = {}
        self._inflight_lock = threading.Lock()
        self._bounds: dict[tuple[str, ...], tuple[float, tuple[float, ...] | None]] = {}
        self._audited: dict[tuple[int | None, str, str], float] = {}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start listening for changes and open the disk cache."""
        self.listener.start()
        self._open_disk()

    def _open_disk(self) -> None:
        if self.disk_dir is None or self.disk is not None:
            return
        try:
            self.disk = DiskCache(self.disk_dir, self.namespace())
        except (psycopg2.Error, Unavailable) as e:
            log.warning("tile disk cache not opened yet: %s", e)

    def stop(self) -> None:
        """Stop listening and close the connections."""
        self.listener.stop()
        self.pool.close()

    def namespace(self) -> str:
        """Return the name of this database in the shared disk cache."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database(), d.oid, (SELECT token FROM tiles.cache_token) "
                        "FROM pg_database d WHERE d.datname = current_database()")
            name, oid, token = cur.fetchone()  # type: ignore[misc]
        return f"{name}-{oid}-{token[:12]}"

    # --- lookups (never the database) -----------------------------------------------------

    def key(self, layer: TileLayer, z: int, x: int, y: int, query: str,
            scope: Sequence[str]) -> TileKey:
        """Return the cache key of a tile as the versions stand now."""
        versions = self.book.versions(layer.tables, z, x, y)
        if layer.max_age:
            versions += (int(time.time() // layer.max_age),)
        return TileKey(layer.name, versions, z, x, y, query, normalize_scope(scope))

    async def refresh(self) -> None:
        """Bring the versions up to date before a request reads the caches."""
        if self.settings.consistency == "strict" and self.caching:
            try:
                await asyncio.wrap_future(self.listener.sync())
            except psycopg2.Error:
                pass  # the listener is down: caching stops until it reconnects
        else:
            self.listener.drain()

    @property
    def caching(self) -> bool:
        """Return whether cached tiles can be trusted (the change listener is connected)."""
        return self.listener.healthy

    def _on_disk(self, layer: TileLayer, key: TileKey) -> bool:
        return self.disk is not None and layer.public and key.query == EMPTY_QUERY

    def lookup(self, layer: TileLayer, key: TileKey) -> Tile | None:
        """Return the cached tile for ``key`` (memory, then disk), or None."""
        if not self.caching:
            return None
        tile = self.memory.get(key)
        if tile is None and self._on_disk(layer, key):
            tile = self.disk.get(key)  # type: ignore[union-attr]
            if tile is not None:
                self.memory.put(key, tile)
        return tile

    def store(self, layer: TileLayer, key: TileKey, tile: Tile) -> None:
        """Keep a rendered tile in memory (and on disk for public base layers)."""
        if not self.caching:
            return
        self.memory.put(key, tile)
        if self._on_disk(layer, key):
            try:
                self.disk.put(key, tile)  # type: ignore[union-attr]
            except OSError as e:
                log.warning("cannot write the tile disk cache: %s", e)

    # --- audited layers ---------------------------------------------------------------------

    def audit_due(self, user_id: int | None, layer: TileLayer, query: str) -> bool:
        """Return whether reading this audited layer with this filter must be audited now."""
        if layer.audit_action is None:
            return False
        seen = self._audited.get((user_id, layer.name, query))
        return seen is None or time.monotonic() - seen > AUDIT_WINDOW_S

    def audited(self, user_id: int | None, layer: TileLayer, query: str) -> None:
        """Note that the reading was audited (in this process, for AUDIT_WINDOW_S)."""
        if len(self._audited) > 50_000:
            self._audited = {}
        self._audited[(user_id, layer.name, query)] = time.monotonic()

    # --- rendering --------------------------------------------------------------------------

    def render(self, layer: TileLayer, z: int, x: int, y: int, query: str,
               scope: Sequence[str]) -> bytes:
        """Run the layer's SQL function under ``scope``; return the MVT bytes."""
        return self.render_expiring(layer, z, x, y, query, scope)[0]

    def render_expiring(self, layer: TileLayer, z: int, x: int, y: int, query: str,
                        scope: Sequence[str]) -> tuple[bytes, float | None]:
        """Render a tile; return its MVT bytes and the seconds it stays right.

        The seconds are None (right until a write) except for layers whose content changes with
        time (``TileLayer.expiring``).
        """
        if layer.expiring:
            stmt = sql.SQL("SELECT set_config('gridgov.scope', %s, true); "
                           "SELECT mvt, valid_for FROM {}(%s, %s, %s, %s::json)").format(
                sql.Identifier("tiles", layer.sql_function + "_expiring"))
        else:
            stmt = sql.SQL("SELECT set_config('gridgov.scope', %s, true); "
                           "SELECT {}(%s, %s, %s, %s::json), NULL").format(
                sql.Identifier("tiles", layer.sql_function))
        params = (scope_literal(normalize_scope(scope)), z, x, y, layer.sql_query(query))
        for attempt in (1, 2):
            try:
                with self.pool.connection() as conn, conn.cursor() as cur:
                    cur.execute(stmt, params)
                    row = cur.fetchone()
                    if row is None:
                        return b"", None
                    return (bytes(row[0]) if row[0] is not None else b"",
                            float(row[1]) if row[1] is not None else None)
            except psycopg2.errors.QueryCanceled:
                raise Unavailable(f"tile {layer.name}/{z}/{x}/{y} took too long to render") \
                    from None
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as e:
                # A connection dropped by a server restart: try once more on a fresh one.
                if attempt == 2:
                    raise Unavailable("the database is not reachable") from e
        raise AssertionError("unreachable")

    def _make_tile(self, raw: bytes, valid_for: float | None = None,
                   started: float = 0.0) -> Tile:
        # The clock is read before rendering: the tile expires no later than the SQL said.
        expires = None if valid_for is None else started + max(0.0, valid_for)
        return Tile(gzip.compress(raw, compresslevel=self.settings.gzip_level, mtime=0),
                    etag_of(raw), len(raw), expires)

    def _render_tile(self, layer: TileLayer, key: TileKey) -> Tile:
        started = time.monotonic()
        raw, valid_for = self.render_expiring(layer, key.z, key.x, key.y, key.query, key.scope)
        return self._make_tile(raw, valid_for, started)

    def fill(self, layer: TileLayer, key: TileKey) -> Tile:
        """Render a missing tile and cache it; concurrent requests for it wait for one render."""
        with self._inflight_lock:
            waiting = self._inflight.get(key)
            if waiting is None:
                self._inflight[key] = threading.Event()
        self._open_disk()
        if waiting is not None:
            waiting.wait(self.settings.statement_timeout_ms / 1000 + 5)
            tile = self.lookup(layer, key)
            if tile is not None:
                return tile
            return self._render_tile(layer, key)
        try:
            tile = self._render_tile(layer, key)
            self.store(layer, key, tile)
            return tile
        finally:
            with self._inflight_lock:
                self._inflight.pop(key).set()

    def get(self, layer: TileLayer, z: int, x: int, y: int, query: str,
            scope: Sequence[str]) -> Tile:
        """Return a tile from the cache or freshly rendered."""
        self.listener.drain()
        key = self.key(layer, z, x, y, query, scope)
        return self.lookup(layer, key) or self.fill(layer, key)

    # --- TileJSON bounds and seeding --------------------------------------------------------

    def bounds(self, scope: Sequence[str]) -> tuple[float, ...] | None:
        """Return the lon/lat extent of the regions in scope (cached for ten minutes)."""
        scope = normalize_scope(scope)
        hit = self._bounds.get(scope)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT set_config('gridgov.scope', %s, true); "
                        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                        "(SELECT ST_Extent(geom) AS e FROM region WHERE valid_to IS NULL) s",
                        (scope_literal(scope),))
            row = cur.fetchone()
        box = tuple(round(v, 6) for v in row) if row and row[0] is not None else None
        self._bounds[scope] = (time.monotonic() + 600, box)
        return box

    def seed(self, layers: Iterable[TileLayer], zooms: range,
             bbox: tuple[float, float, float, float], *, scope: Sequence[str] = ("",),
             workers: int = 4, progress: Callable[[int, int], None] | None = None) -> SeedResult:
        """Pre-render public layers into the disk cache for the zooms over ``bbox``."""
        self._open_disk()
        if self.disk is None:
            raise Unavailable("no tile disk cache: set GRIDGOV_TILES_DISK_DIR")
        self.listener.drain()
        jobs = [(layer, z, x, y) for layer in layers for z in zooms
                if layer.minzoom <= z <= layer.maxzoom for x, y in tiles_in_bbox(bbox, z)]
        result = SeedResult()
        lock = threading.Lock()

        def one(job: tuple[TileLayer, int, int, int]) -> None:
            layer, z, x, y = job
            key = self.key(layer, z, x, y, EMPTY_QUERY, scope)
            if self.disk.has(key):  # type: ignore[union-attr]
                with lock:
                    result.skipped += 1
                return
            tile = self._make_tile(self.render(layer, z, x, y, EMPTY_QUERY, scope))
            self.disk.put(key, tile)  # type: ignore[union-attr]
            with lock:
                result.rendered += 1
                result.empty += tile.empty
                result.bytes += len(tile.gzipped)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done, _ in enumerate(pool.map(one, jobs), start=1):
                if progress is not None:
                    progress(done, len(jobs))
        return result


def start_tile_service(settings: Settings) -> TileService:
    """Build and start the tile service of an app (called from the app's lifespan)."""
    import tiles.jobs  # noqa: F401  (registers the periodic tile jobs with the job runner)

    tile_settings = TileSettings()
    service = TileService(settings.database.app_database_url or "", tile_settings,
                          disk_dir=disk_dir_for(tile_settings, settings.database))
    service.start()
    return service
