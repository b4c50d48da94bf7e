"""Web Mercator tile arithmetic (the OGC WebMercatorQuad / XYZ scheme, y counted from the north)."""

from __future__ import annotations

import math
from collections.abc import Iterator

#: Deepest zoom the tile endpoints accept (clients overzoom past a layer's maxzoom).
MAX_ZOOM = 22
#: Zoom whose tiles carry the cache versions (see tiles/cache.py).
VERSION_ZOOM = 10
_MAX_LAT = 85.0511287798066


def valid_tile(z: int, x: int, y: int) -> bool:
    """Return whether z/x/y names a tile of the pyramid."""
    return 0 <= z <= MAX_ZOOM and 0 <= x < (1 << z) and 0 <= y < (1 << z)


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """Return the x, y of the tile at zoom z containing lon/lat."""
    lat = max(-_MAX_LAT, min(_MAX_LAT, lat))
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    r = math.radians(lat)
    y = int((1.0 - math.asinh(math.tan(r)) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """Return a tile's lon/lat bounds (west, south, east, north)."""
    n = 1 << z

    def lat(yy: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * yy / n))))

    return x / n * 360.0 - 180.0, lat(y + 1), (x + 1) / n * 360.0 - 180.0, lat(y)


def tiles_in_bbox(bbox: tuple[float, float, float, float], z: int) -> Iterator[tuple[int, int]]:
    """Yield x, y of the tiles at zoom z covering a lon/lat bbox (west, south, east, north)."""
    west, south, east, north = bbox
    x0, y0 = tile_of(west, north, z)
    x1, y1 = tile_of(east, south, z)
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            yield x, y
