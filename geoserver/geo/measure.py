"""Lengths, areas and distances in metres on the CGCS2000 ellipsoid (never in degrees)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from pyproj import Geod
from shapely.geometry import LinearRing, LineString, MultiLineString, MultiPolygon, Polygon
from shapely.geometry.polygon import orient

# CGCS2000's ellipsoid differs from GRS80 only in the 9th significant digit of the flattening.
_GEOD = Geod(ellps="GRS80")
# IUGG mean radius R1 of GRS80, the usual choice for spherical distances.
EARTH_MEAN_RADIUS_M = 6371008.7714


def geodesic_length_m(line: LineString | MultiLineString | LinearRing) -> float:
    """Return the geodesic length in metres of a lon/lat line."""
    if not isinstance(line, LineString | MultiLineString):
        raise TypeError(f"expected a LineString or MultiLineString, got {line.geom_type}")
    return float(_GEOD.geometry_length(line))


def geodesic_area_m2(polygon: Polygon | MultiPolygon) -> float:
    """Return the geodesic area in square metres of a lon/lat polygon, holes excluded."""
    if isinstance(polygon, Polygon):
        parts = [polygon]
    elif isinstance(polygon, MultiPolygon):
        parts = list(polygon.geoms)
    else:
        raise TypeError(f"expected a Polygon or MultiPolygon, got {polygon.geom_type}")
    # pyproj signs areas by ring orientation; orienting shells counter-clockwise and holes
    # clockwise makes shells count positive and holes negative whatever the input's winding.
    return float(sum(_GEOD.geometry_area_perimeter(orient(p, 1.0))[0] for p in parts))


def haversine_m(
    lon1: npt.ArrayLike, lat1: npt.ArrayLike, lon2: npt.ArrayLike, lat2: npt.ArrayLike
) -> Any:
    """Return great-circle distances in metres (float for scalars, array otherwise)."""
    lon1, lat1, lon2, lat2 = (
        np.radians(np.asarray(v, dtype=np.float64)) for v in (lon1, lat1, lon2, lat2)
    )
    a = (
        np.sin((lat2 - lat1) / 2.0) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2.0) ** 2
    )
    # clip: rounding can push a just above 1 for antipodal points.
    distance = 2.0 * EARTH_MEAN_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(distance) if np.ndim(distance) == 0 else distance
