"""Tile service settings (prefix ``GRIDGOV_TILES_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from geoserver.config import DatabaseSettings


class TileSettings(BaseSettings):
    """Caches, rendering connections and the optional raster base map of the style."""

    model_config = SettingsConfigDict(env_prefix="GRIDGOV_TILES_", extra="ignore")

    #: Memory for cached tiles (gzip-compressed) per server process.
    memory_mb: int = Field(default=256, ge=0)
    #: Directory of the shared on-disk cache (seeded public tiles). Unset: ``<data_dir>/tile-cache``
    #: when gridgov runs its own cluster, no disk cache with an external database.
    disk_dir: Path | None = None
    #: Database connections for rendering per server process.
    render_connections: int = Field(default=8, ge=1, le=200)
    statement_timeout_ms: int = Field(default=20_000, ge=100)
    #: How long a resolved credential is reused without asking the database; revocations,
    #: deactivations and role or scope changes clear it at once through NOTIFY.
    credential_ttl_seconds: float = Field(default=30.0, ge=0, le=600)
    gzip_level: int = Field(default=3, ge=1, le=9)
    #: "notify": a cached tile is answered with no database contact at all; a write elsewhere
    #: is seen once its NOTIFY arrives (a fraction of a millisecond after it commits).
    #: "strict": before answering from the cache, one round trip on the LISTEN connection
    #: (``SELECT 1``, shared by concurrent requests) guarantees that every commit before the
    #: request is seen — no stale tile even for a request racing the notification.
    consistency: Literal["notify", "strict"] = "notify"
    #: Raster base map under our layers in style.json: an XYZ URL template (an intranet 天地图
    #: mirror, say). Unset: no base map, our layers on a plain background (works offline).
    basemap_url: str | None = None
    basemap_attribution: str = ""
    basemap_maxzoom: int = Field(default=18, ge=0, le=22)


def disk_dir_for(tiles: TileSettings, database: DatabaseSettings) -> Path | None:
    """Return the disk cache directory, or None when there is none."""
    if tiles.disk_dir is not None:
        return tiles.disk_dir
    if database.database_url is None:
        return database.data_dir / "tile-cache"
    return None
