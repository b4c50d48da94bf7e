"""Row geometries of a chunk: read (GIS geometry, lon/lat or WKT columns), converted to storage
lon/lat, checked and repaired with ``geoserver.geo.validate``.

The checks are vectorised (type, validity, coordinates inside the service area); only rows that
fail one go through ``validate_geometry`` one by one, which repairs what it can (the repair is
reported) and names what it cannot. A valid row is returned as it is: ``validate_geometry``
would return it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import shapely

from geoserver.geo.validate import CHINA_MAINLAND_BBOX, GeometryProblem, validate_geometry
from spatial_etl.mapping import Resolved
from spatial_etl.sources import Chunk, SourceInfo

Geoms = npt.NDArray[np.object_]
_MULTI = {"Point": "MultiPoint", "LineString": "MultiLineString", "Polygon": "MultiPolygon"}
_BASE = {"MultiPoint": "Point", "MultiLineString": "LineString", "MultiPolygon": "Polygon"}


@dataclass
class ChunkGeometry:
    """Storage geometries of a chunk's rows (None: none given) and what happened to them."""

    geoms: Geoms
    column: str
    #: Row index in the chunk → reason the geometry was refused.
    rejected: dict[int, str] = field(default_factory=dict)
    #: Row index → repairs made.
    repaired: dict[int, list[str]] = field(default_factory=dict)


def _numbers(chunk: Chunk, column: str, rejected: dict[int, str]) -> npt.NDArray[np.float64]:
    """Return a column as floats; rows that are not numbers are refused naming the column."""
    out = np.full(len(chunk.frame), np.nan)
    for i, value in enumerate(chunk.frame[column].tolist()):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            rejected.setdefault(i, f"{value!r} is not a number")
    return out


def _raw(chunk: Chunk, source: SourceInfo, resolved: Resolved) -> tuple[Geoms, str,
                                                                         dict[int, str]]:
    """Return the chunk's geometries in the source CRS, the column they came from, problems."""
    rejected: dict[int, str] = {}
    n = len(chunk.frame)
    roles = resolved.roles
    if "wkt" in roles:
        column = roles["wkt"]
        texts = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                 for v in chunk.frame[column].tolist()]
        geoms = np.asarray(shapely.from_wkt(texts, on_invalid="ignore"), dtype=object)
        for i, (t, g) in enumerate(zip(texts, geoms, strict=True)):
            if t and t.strip() and g is None:
                rejected[i] = f"not valid WKT: {t[:40]!r}"
        return geoms, column, rejected
    if "lon" in roles:
        lon = _numbers(chunk, roles["lon"], rejected)
        lat = _numbers(chunk, roles["lat"], rejected)
        both = np.isfinite(lon) & np.isfinite(lat)
        geoms = np.full(n, None, dtype=object)
        geoms[both] = shapely.points(lon[both], lat[both])
        return geoms, f"{roles['lon']}/{roles['lat']}", rejected
    if chunk.geometry is not None:
        return chunk.geometry, "geometry", rejected
    return np.full(n, None, dtype=object), "geometry", rejected


def _type_ok(kinds: npt.NDArray[np.object_], expected: tuple[str, ...]) -> npt.NDArray[np.bool_]:
    accepted = set(expected) | {k for k, m in _MULTI.items() if m in expected}
    return np.isin(kinds, list(accepted))


def _describe_types(seen: set[str]) -> str:
    return " and ".join(sorted(seen))


def chunk_geometry(chunk: Chunk, source: SourceInfo, resolved: Resolved, *,
                   expected: tuple[str, ...], seen_types: set[str]) -> ChunkGeometry:
    """Read, convert, check and repair the geometries of a chunk's rows.

    ``seen_types`` collects the base geometry types met so far in the file, to say "the file
    mixes Point and Polygon" when a row has the wrong type.
    """
    raw, column, rejected = _raw(chunk, source, resolved)
    present = np.array([g is not None and not shapely.is_empty(g) for g in raw], dtype=bool)
    geoms = np.full(len(raw), None, dtype=object)
    if present.any():
        geoms[present] = source.crs.to_storage(raw[present])
    out = ChunkGeometry(geoms, column, rejected)
    idx = np.flatnonzero(present)
    if not len(idx):
        return out
    kinds = np.asarray(shapely.get_type_id(geoms[idx]))
    names = np.array([_TYPE_NAMES.get(int(k), "Geometry") for k in kinds], dtype=object)
    seen_types.update(_BASE.get(n, n) for n in set(names.tolist()))
    good_type = _type_ok(names, expected)
    for i, name in zip(idx[~good_type], names[~good_type], strict=True):
        mixed = (f" (the file mixes {_describe_types(seen_types)})" if len(seen_types) > 1
                 else "")
        out.rejected[int(i)] = f"expected {' or '.join(expected)}, got {name}{mixed}"
        geoms[i] = None
    idx = idx[good_type]
    if not len(idx):
        return out
    west, south, east, north = CHINA_MAINLAND_BBOX
    bounds = shapely.bounds(geoms[idx])
    inside = ((bounds[:, 0] >= west) & (bounds[:, 2] <= east) & (bounds[:, 1] >= south)
              & (bounds[:, 3] <= north) & np.isfinite(bounds).all(axis=1))
    suspect = idx[~(np.asarray(shapely.is_valid(geoms[idx])) & inside)]
    for i in suspect:
        try:
            fixed, warnings = validate_geometry(geoms[i], expected=expected, field=column)
        except GeometryProblem as exc:
            out.rejected[int(i)] = exc.reason
            geoms[i] = None
            continue
        geoms[i] = fixed
        if warnings:
            out.repaired[int(i)] = warnings
    return out


_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}
