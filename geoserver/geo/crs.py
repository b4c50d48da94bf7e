"""Coordinate reference systems: storage, metric and web SRIDs, and the Chinese offset datums.

Every upload says which CRS its coordinates are in; the server converts to CGCS2000 (EPSG:4490)
before storing. GCJ-02 (国测局, "Mars coordinates", used by Amap, Tencent and the 浙政钉 JSAPI) and
BD-09 (Baidu) are obfuscated WGS84: a non-linear offset of ~500 m in Wenzhou that no EPSG code
describes, so they are converted here with the published formulas rather than through PROJ.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

STORAGE_SRID = 4490
"""CGCS2000 geographic: the national standard datum for government geodata."""
METRIC_SRID = 4549
"""CGCS2000 / 3-degree Gauss-Kruger CM 120E: metres, covers Wenzhou."""
WEB_SRID = 3857
"""Web Mercator, for tiles."""

G = TypeVar("G", bound=BaseGeometry)
Coord = float | npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


class InputCRS(StrEnum):
    """Coordinate system of incoming lon/lat (坐标系), which every upload must name.

    WGS84: raw GPS. CGCS2000: national datum, numerically WGS84 at metre level. GCJ02: 国测局
    offset used by Amap/Tencent and the 浙政钉 JSAPI. BD09: Baidu's further offset of GCJ-02.
    """

    WGS84 = "WGS84"
    CGCS2000 = "CGCS2000"
    GCJ02 = "GCJ02"
    BD09 = "BD09"


_CRS84_URI = "http://www.opengis.net/def/crs/ogc/1.3/crs84"
_EPSG4326_URI = "http://www.opengis.net/def/crs/epsg/0/4326"
_EPSG4490_URI = "http://www.opengis.net/def/crs/epsg/0/4490"

_ACCEPTED_CRS = (
    "WGS84, EPSG:4326, 4326, CRS84, OGC:CRS84, http://www.opengis.net/def/crs/OGC/1.3/CRS84, "
    "http://www.opengis.net/def/crs/EPSG/0/4326, CGCS2000, EPSG:4490, GCJ-02, GCJ02, BD-09, BD09, "
    "bd09ll"
)

_CRS_SPELLINGS: dict[str, InputCRS] = {
    "wgs84": InputCRS.WGS84,
    "wgs-84": InputCRS.WGS84,
    "wgs 84": InputCRS.WGS84,
    "epsg:4326": InputCRS.WGS84,
    "4326": InputCRS.WGS84,
    "crs84": InputCRS.WGS84,
    "ogc:crs84": InputCRS.WGS84,
    "urn:ogc:def:crs:ogc:1.3:crs84": InputCRS.WGS84,
    "urn:ogc:def:crs:epsg::4326": InputCRS.WGS84,
    _CRS84_URI: InputCRS.WGS84,
    _EPSG4326_URI: InputCRS.WGS84,
    "cgcs2000": InputCRS.CGCS2000,
    "epsg:4490": InputCRS.CGCS2000,
    "4490": InputCRS.CGCS2000,
    "urn:ogc:def:crs:epsg::4490": InputCRS.CGCS2000,
    _EPSG4490_URI: InputCRS.CGCS2000,
    "gcj02": InputCRS.GCJ02,
    "gcj-02": InputCRS.GCJ02,
    "gcj_02": InputCRS.GCJ02,
    "bd09": InputCRS.BD09,
    "bd-09": InputCRS.BD09,
    "bd_09": InputCRS.BD09,
    "bd09ll": InputCRS.BD09,
}


def parse_input_crs(value: str) -> InputCRS:
    """Return the InputCRS named by a common spelling (case-insensitive), else raise ValueError."""
    key = value.strip().lower() if isinstance(value, str) else ""
    # OGC URIs are often sent with https:// too; they name the same CRS.
    key = key.replace("https://", "http://", 1)
    try:
        return _CRS_SPELLINGS[key]
    except KeyError:
        raise ValueError(f"unknown crs {value!r}; accepted values: {_ACCEPTED_CRS}") from None


# --- GCJ-02 / BD-09 ------------------------------------------------------------------------------
# GCJ-02 shifts WGS84 by an offset computed on the Krasovsky 1940 ellipsoid.
_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
# BD-09 perturbs the polar radius and angle of GCJ-02 with terms of this frequency.
_X_PI = np.pi * 3000.0 / 180.0
# The offset is only applied inside this rough box around China; outside it GCJ-02 == WGS84.
_CHINA_BOX = (72.004, 0.8293, 137.8347, 55.8271)
# 1e-10 degree is ~0.01 mm: far below the 0.01 m the inverse must reach.
_INVERSE_TOLERANCE_DEG = 1e-10
_INVERSE_MAX_ITERATIONS = 30


def _arrays(lon: Coord, lat: Coord) -> tuple[FloatArray, FloatArray, bool]:
    """Return lon/lat as float arrays broadcast together, and whether both inputs were scalars."""
    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    lon_a, lat_a = np.broadcast_arrays(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    return lon_a.astype(np.float64), lat_a.astype(np.float64), scalar


def _result(lon: FloatArray, lat: FloatArray, scalar: bool) -> tuple[Any, Any]:
    """Return floats for scalar input, arrays otherwise."""
    if scalar:
        return float(lon), float(lat)
    return lon, lat


def _in_china(lon: FloatArray, lat: FloatArray) -> npt.NDArray[np.bool_]:
    """Return where the GCJ-02 offset applies."""
    west, south, east, north = _CHINA_BOX
    return (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)


def _gcj_offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the GCJ-02 offset (dlon, dlat) in degrees at WGS84 lon/lat, zero outside China."""
    x, y = lon - 105.0, lat - 35.0
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    dlat += common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    dlon += common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    rad_lat = np.radians(lat)
    magic = 1.0 - _KRASOVSKY_EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_KRASOVSKY_A * (1.0 - _KRASOVSKY_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_KRASOVSKY_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    inside = _in_china(lon, lat)
    return np.where(inside, dlon, 0.0), np.where(inside, dlat, 0.0)


def _invert(
    forward: Any, lon: FloatArray, lat: FloatArray, guess: tuple[FloatArray, FloatArray]
) -> tuple[FloatArray, FloatArray]:
    """Solve forward(x) == (lon, lat) for x by fixed-point iteration from a first guess.

    The offsets vary slowly (their derivative is far below 1), so subtracting the residual
    converges geometrically; the one-step inverse usually quoted is off by up to ~1 m.
    """
    x_lon, x_lat = guess
    for _ in range(_INVERSE_MAX_ITERATIONS):
        f_lon, f_lat = forward(x_lon, x_lat)
        r_lon, r_lat = f_lon - lon, f_lat - lat
        x_lon, x_lat = x_lon - r_lon, x_lat - r_lat
        if np.all(np.abs(r_lon) < _INVERSE_TOLERANCE_DEG) and np.all(
            np.abs(r_lat) < _INVERSE_TOLERANCE_DEG
        ):
            break
    return x_lon, x_lat


def _wgs_to_gcj(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Apply the GCJ-02 offset to WGS84 arrays."""
    dlon, dlat = _gcj_offset(lon, lat)
    return lon + dlon, lat + dlat


def _gcj_to_wgs(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Remove the GCJ-02 offset from GCJ-02 arrays (iterative inverse)."""
    dlon, dlat = _gcj_offset(lon, lat)
    x_lon, x_lat = _invert(_wgs_to_gcj, lon, lat, (lon - dlon, lat - dlat))
    # Points whose GCJ-02 value lies outside the box were never offset.
    outside = ~_in_china(lon, lat)
    return np.where(outside, lon, x_lon), np.where(outside, lat, x_lat)


def _gcj_to_bd(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Apply Baidu's BD-09 transform to GCJ-02 arrays."""
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd_to_gcj(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Undo BD-09 to GCJ-02 arrays: the usual closed form, refined iteratively."""
    x, y = lon - 0.0065, lat - 0.006
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return _invert(_gcj_to_bd, lon, lat, (z * np.cos(theta), z * np.sin(theta)))


def wgs84_to_gcj02(lon: Coord, lat: Coord) -> tuple[Any, Any]:
    """Convert WGS84 lon/lat (scalars or arrays) to GCJ-02; points outside China are unchanged."""
    lon_a, lat_a, scalar = _arrays(lon, lat)
    return _result(*_wgs_to_gcj(lon_a, lat_a), scalar)


def gcj02_to_wgs84(lon: Coord, lat: Coord) -> tuple[Any, Any]:
    """Convert GCJ-02 lon/lat (scalars or arrays) to WGS84, accurate to well under 1 cm."""
    lon_a, lat_a, scalar = _arrays(lon, lat)
    return _result(*_gcj_to_wgs(lon_a, lat_a), scalar)


def gcj02_to_bd09(lon: Coord, lat: Coord) -> tuple[Any, Any]:
    """Convert GCJ-02 lon/lat (scalars or arrays) to BD-09."""
    lon_a, lat_a, scalar = _arrays(lon, lat)
    return _result(*_gcj_to_bd(lon_a, lat_a), scalar)


def bd09_to_gcj02(lon: Coord, lat: Coord) -> tuple[Any, Any]:
    """Convert BD-09 lon/lat (scalars or arrays) to GCJ-02."""
    lon_a, lat_a, scalar = _arrays(lon, lat)
    return _result(*_bd_to_gcj(lon_a, lat_a), scalar)


def wgs84_to_bd09(lon: Coord, lat: Coord) -> tuple[Any, Any]:
    """Convert WGS84 lon/lat (scalars or arrays) to BD-09."""
    lon_a, lat_a, scalar = _arrays(lon, lat)
    return _result(*_gcj_to_bd(*_wgs_to_gcj(lon_a, lat_a)), scalar)


def bd09_to_wgs84(lon: Coord, lat: Coord) -> tuple[Any, Any]:
    """Convert BD-09 lon/lat (scalars or arrays) to WGS84."""
    lon_a, lat_a, scalar = _arrays(lon, lat)
    return _result(*_gcj_to_wgs(*_bd_to_gcj(lon_a, lat_a)), scalar)


# --- storage conversions -------------------------------------------------------------------------


def _to_storage_arrays(lon: FloatArray, lat: FloatArray, crs: InputCRS) -> tuple[Any, Any]:
    """Convert arrays in crs to storage lon/lat."""
    # CGCS2000 and WGS84 differ by a few centimetres: numerically the same lon/lat for us.
    if crs is InputCRS.GCJ02:
        return _gcj_to_wgs(lon, lat)
    if crs is InputCRS.BD09:
        return _gcj_to_wgs(*_bd_to_gcj(lon, lat))
    return lon, lat


def _from_storage_arrays(lon: FloatArray, lat: FloatArray, crs: InputCRS) -> tuple[Any, Any]:
    """Convert storage lon/lat arrays to crs."""
    if crs is InputCRS.GCJ02:
        return _wgs_to_gcj(lon, lat)
    if crs is InputCRS.BD09:
        return _gcj_to_bd(*_wgs_to_gcj(lon, lat))
    return lon, lat


def to_storage(lon: Coord, lat: Coord, crs: InputCRS) -> tuple[Any, Any]:
    """Convert lon/lat given in crs to storage (CGCS2000) lon/lat."""
    lon_a, lat_a, scalar = _arrays(lon, lat)
    return _result(*_to_storage_arrays(lon_a, lat_a, InputCRS(crs)), scalar)


def from_storage(lon: Coord, lat: Coord, crs: InputCRS) -> tuple[Any, Any]:
    """Convert storage (CGCS2000) lon/lat to crs for output."""
    lon_a, lat_a, scalar = _arrays(lon, lat)
    return _result(*_from_storage_arrays(lon_a, lat_a, InputCRS(crs)), scalar)


def _apply_xy(geom: G, func: Any) -> G:
    """Return geom with func((x, y)) -> (x, y) applied to its coordinates, keeping any z."""
    has_z = bool(shapely.has_z(geom))

    def transform(coords: FloatArray) -> FloatArray:
        out = coords.copy()
        out[:, 0], out[:, 1] = func(coords[:, 0], coords[:, 1])
        return out

    return shapely.transform(geom, transform, include_z=has_z)


def transform_geometry(geom: G, from_crs: InputCRS, to_crs: InputCRS) -> G:
    """Convert any shapely geometry between input CRSs (through storage lon/lat)."""
    from_crs, to_crs = InputCRS(from_crs), InputCRS(to_crs)
    if from_crs is to_crs:
        return geom
    return _apply_xy(
        geom,
        lambda x, y: _from_storage_arrays(*_to_storage_arrays(x, y, from_crs), to_crs),
    )


# --- projected CRSs ------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def transformer(from_srid: int, to_srid: int) -> Transformer:
    """Return a cached lon/lat-ordered (always_xy) pyproj Transformer between two EPSG codes."""
    # always_xy: EPSG:4490 is lat,lon and EPSG:4549 is northing,easting by the book; we always
    # pass lon/lat and easting/northing, the order PostGIS and GeoJSON use.
    return Transformer.from_crs(f"EPSG:{from_srid}", f"EPSG:{to_srid}", always_xy=True)


def project(geom: G, from_srid: int, to_srid: int) -> G:
    """Reproject a shapely geometry between two EPSG codes."""
    return _apply_xy(geom, transformer(from_srid, to_srid).transform)


def to_metric(geom: G) -> G:
    """Project a storage (EPSG:4490) geometry to metres in EPSG:4549."""
    return project(geom, STORAGE_SRID, METRIC_SRID)


def from_metric(geom: G) -> G:
    """Project an EPSG:4549 geometry back to storage lon/lat (EPSG:4490)."""
    return project(geom, METRIC_SRID, STORAGE_SRID)


def to_web(geom: G) -> G:
    """Project a storage (EPSG:4490) geometry to Web Mercator (EPSG:3857)."""
    return project(geom, STORAGE_SRID, WEB_SRID)
