"""Sanity checks and repair for incoming coordinates and geometries.

Errors here are the common field mistakes: a swapped lon/lat pair, projected metres sent as
degrees, a point outside the service area, a self-intersecting hand-drawn grid outline. Each one
raises GeometryProblem naming the field and saying what looks wrong, so the caller can answer
with a message a grid worker or an analyst can act on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
import shapely
from shapely.geometry import GeometryCollection, MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

BBox = tuple[float, float, float, float]
"""(west, south, east, north) in degrees."""

CHINA_MAINLAND_BBOX: BBox = (73.0, 3.0, 136.0, 54.0)
"""Default service area: a rough box around China, islands of the South China Sea included."""

# Degrees never exceed 360; projected eastings/northings (EPSG:4549: ~5e5, ~3.1e6) always do.
_METRES_THRESHOLD = 1000.0
# A repair may drop slivers and spikes, not real territory.
_MIN_REPAIRED_AREA_SHARE = 0.99
_POLYGONAL = ("Polygon", "MultiPolygon")
_MULTI_OF = {
    "Point": "MultiPoint",
    "LineString": "MultiLineString",
    "Polygon": "MultiPolygon",
}
_GEOJSON_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)
_MAX_COLLECTION_NESTING = 4


class GeometryProblem(ValueError):
    """A coordinate or geometry in a request is unusable; says which field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# --- coordinates ---------------------------------------------------------------------------------


def _inside(lon: float, lat: float, area: BBox) -> bool:
    """Return whether lon/lat lies in the (west, south, east, north) box."""
    west, south, east, north = area
    return west <= lon <= east and south <= lat <= north


def _as_float(value: Any, name: str, field: str) -> float:
    """Return value as a finite float or raise GeometryProblem."""
    if isinstance(value, bool):
        raise GeometryProblem(field, f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GeometryProblem(field, f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise GeometryProblem(field, f"{name} must be a finite number, got {value!r}")
    return number


def check_lonlat(
    lon: Any,
    lat: Any,
    *,
    field: str = "location",
    service_area: BBox = CHINA_MAINLAND_BBOX,
) -> None:
    """Raise GeometryProblem unless lon/lat are plausible degrees inside the service area."""
    lon = _as_float(lon, "longitude", field)
    lat = _as_float(lat, "latitude", field)
    if abs(lon) > _METRES_THRESHOLD or abs(lat) > _METRES_THRESHOLD:
        raise GeometryProblem(
            field,
            f"({lon:.10g}, {lat:.10g}) look like projected metres, not degrees; "
            "send longitude/latitude in the declared crs",
        )
    # Checked before the range: a swapped Wenzhou point has latitude ~120, out of range anyway,
    # and "swapped" is the message that tells the sender what to fix.
    if not _inside(lon, lat, service_area) and _inside(lat, lon, service_area):
        raise GeometryProblem(
            field,
            f"lon/lat look swapped: got longitude {lon:.10g}, latitude {lat:.10g}; "
            "send [longitude, latitude]",
        )
    if abs(lon) > 180.0:
        raise GeometryProblem(field, f"longitude {lon:.10g} is outside -180..180")
    if abs(lat) > 90.0:
        raise GeometryProblem(field, f"latitude {lat:.10g} is outside -90..90")
    if not _inside(lon, lat, service_area):
        west, south, east, north = service_area
        raise GeometryProblem(
            field,
            f"({lon:.10g}, {lat:.10g}) is outside the service area "
            f"{west:.10g}..{east:.10g}E, {south:.10g}..{north:.10g}N",
        )


# --- geometries ----------------------------------------------------------------------------------


def as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    """Return a polygonal geometry as a MultiPolygon (region boundaries are stored that way)."""
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom]) if not geom.is_empty else MultiPolygon()
    if isinstance(geom, GeometryCollection):
        parts = [p for g in geom.geoms for p in as_multipolygon_parts(g)]
        return MultiPolygon(parts)
    raise TypeError(f"expected a polygonal geometry, got {geom.geom_type}")


def as_multipolygon_parts(geom: BaseGeometry) -> list[Polygon]:
    """Return the non-empty polygons inside geom, ignoring points and lines."""
    if isinstance(geom, Polygon):
        return [] if geom.is_empty else [geom]
    if isinstance(geom, MultiPolygon | GeometryCollection):
        return [p for g in geom.geoms for p in as_multipolygon_parts(g)]
    return []


def _check_type(geom: BaseGeometry, expected: Collection[str], field: str) -> None:
    """Raise unless geom's type, or its Multi- form, is expected."""
    kind = geom.geom_type
    if kind in expected or _MULTI_OF.get(kind) in expected:
        return
    wanted = " or ".join(sorted(expected))
    raise GeometryProblem(field, f"expected {wanted}, got {kind}")


def _check_coordinates(geom: BaseGeometry, field: str, service_area: BBox) -> None:
    """Raise unless every coordinate is finite and the bounds pass check_lonlat."""
    # x/y only: shapely reports a missing z as NaN in mixed 2D/3D collections.
    if not np.isfinite(shapely.get_coordinates(geom)).all():
        raise GeometryProblem(field, "coordinates must be finite numbers")
    # The service area is a box, so both bound corners inside means every vertex is inside.
    west, south, east, north = geom.bounds
    check_lonlat(west, south, field=field, service_area=service_area)
    check_lonlat(east, north, field=field, service_area=service_area)


_REASON_AT = re.compile(r"^(?P<what>.*?)\s*\[(?P<x>\S+) (?P<y>\S+)\]$")


def _short_number(text: str) -> str:
    """Format a coordinate from GEOS's validity reason with at most 6 decimals."""
    try:
        return f"{float(text):.6f}".rstrip("0").rstrip(".")
    except ValueError:
        return text


def describe_invalidity(geom: BaseGeometry) -> str:
    """Return GEOS's validity reason as human text: 'self-intersection at (120.65 28.01)'."""
    reason = shapely.is_valid_reason(geom) or "invalid geometry"
    match = _REASON_AT.match(reason)
    if not match:
        return reason[:1].lower() + reason[1:]
    what = match["what"]
    where = f"{_short_number(match['x'])} {_short_number(match['y'])}"
    return f"{what[:1].lower()}{what[1:]} at ({where})"


def _repair_polygonal(geom: BaseGeometry, field: str) -> tuple[BaseGeometry, str]:
    """Return a valid polygonal version of an invalid polygon and a warning, or raise."""
    problem = describe_invalidity(geom)
    if geom.geom_type not in _POLYGONAL:
        raise GeometryProblem(field, f"invalid {geom.geom_type}: {problem}")
    # "structure" rebuilds the area as shells minus holes (a spike or a ring repeated as its own
    # hole collapses away) instead of keeping every line of the original as a boundary.
    fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    parts = as_multipolygon_parts(fixed)
    repaired: BaseGeometry = parts[0] if len(parts) == 1 else MultiPolygon(parts)
    # Areas in degrees are fine here: only their ratio matters, over one small extent.
    if not parts or repaired.area < _MIN_REPAIRED_AREA_SHARE * geom.area:
        raise GeometryProblem(
            field, f"{problem}: cannot be repaired without losing area; fix the outline"
        )
    warning = f"{problem} repaired"
    if geom.geom_type == "Polygon" and len(parts) > 1:
        warning += f" into {len(parts)} parts"
    return repaired, warning


def validate_geometry(
    geom: BaseGeometry | None,
    *,
    expected: Collection[str],
    field: str = "geometry",
    service_area: BBox = CHINA_MAINLAND_BBOX,
) -> tuple[BaseGeometry, list[str]]:
    """Check and repair an input geometry; return it and human-readable warnings.

    Args:
        geom: the geometry, in storage lon/lat.
        expected: accepted geometry type names ("Point", "MultiPolygon" …); a single geometry
            is also accepted where only its Multi- form is expected, and promoted to it.
        field: the request field, used in error messages.
        service_area: (west, south, east, north) box every coordinate must lie in.

    Raises:
        GeometryProblem: empty, wrong type, implausible coordinates, or an invalid geometry
            that cannot be repaired without losing more than 1% of its area.
    """
    if geom is None or geom.is_empty:
        raise GeometryProblem(field, "geometry is empty")
    _check_type(geom, expected, field)
    _check_coordinates(geom, field, service_area)
    warnings: list[str] = []
    result = geom
    if not geom.is_valid:
        result, warning = _repair_polygonal(geom, field)
        warnings.append(warning)
    kind = result.geom_type
    if kind in expected:
        return result, warnings
    if _MULTI_OF.get(kind) in expected:
        return _as_multi(result), warnings
    # Only a repair gets here: make_valid split a Polygon into a MultiPolygon.
    raise GeometryProblem(
        field,
        f"{describe_invalidity(geom)}: repairing it gives a {kind}, "
        f"but {' or '.join(sorted(expected))} is expected",
    )


def _as_multi(geom: BaseGeometry) -> BaseGeometry:
    """Return a Point, LineString or Polygon wrapped as its Multi- form."""
    if geom.geom_type == "Polygon":
        return as_multipolygon(geom)
    if geom.geom_type == "Point":
        return shapely.multipoints([geom])
    return shapely.multilinestrings([geom])


# --- GeoJSON -------------------------------------------------------------------------------------


def _brief(value: Any) -> str:
    """Return a short repr of a bad input value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_sequence(value: Any) -> bool:
    """Return whether value is a JSON array (list or tuple)."""
    return isinstance(value, list | tuple)


def _is_number(value: Any) -> bool:
    """Return whether value is a finite JSON number (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_position(value: Any, where: str, kind: str, field: str) -> None:
    """Raise unless value is [lon, lat] or [lon, lat, z] numbers."""
    if _is_sequence(value) and value and _is_sequence(value[0]):
        raise GeometryProblem(
            field, f"{where}: expected a position, got a list: too deeply nested for a {kind}"
        )
    if not _is_sequence(value):
        raise GeometryProblem(
            field,
            f"{where}: expected a position [lon, lat], got {_brief(value)} "
            f"(coordinates not nested deeply enough for a {kind}?)",
        )
    if len(value) not in (2, 3) or not all(_is_number(v) for v in value):
        raise GeometryProblem(
            field,
            f"{where}: a position must be [lon, lat] or [lon, lat, z] finite numbers, "
            f"got {_brief(value)}",
        )


def _check_list(value: Any, where: str, kind: str, field: str, what: str) -> Sequence[Any]:
    """Return value if it is a JSON array, else raise saying what was expected."""
    if not _is_sequence(value):
        raise GeometryProblem(
            field, f"{where}: expected a list of {what} for a {kind}, got {_brief(value)}"
        )
    return value


def _check_positions(value: Any, where: str, kind: str, field: str, minimum: int) -> None:
    """Raise unless value is a list of at least minimum positions."""
    items = _check_list(value, where, kind, field, "positions")
    for i, item in enumerate(items):
        _check_position(item, f"{where}[{i}]", kind, field)
    if len(items) < minimum:
        raise GeometryProblem(
            field, f"{where}: needs at least {minimum} positions, got {len(items)}"
        )


def _check_ring(value: Any, where: str, kind: str, field: str) -> None:
    """Raise unless value is a closed linear ring of at least 4 positions."""
    _check_positions(value, where, kind, field, minimum=4)
    if list(value[0]) != list(value[-1]):
        raise GeometryProblem(
            field, f"{where}: ring is not closed; the first and last positions must be equal"
        )


def _check_polygon(value: Any, where: str, kind: str, field: str) -> None:
    """Raise unless value is a non-empty list of rings."""
    rings = _check_list(value, where, kind, field, "rings")
    if not rings:
        raise GeometryProblem(field, f"{where}: a polygon needs at least its outer ring")
    for i, ring in enumerate(rings):
        _check_ring(ring, f"{where}[{i}]", kind, field)


def _check_coordinates_member(kind: str, coords: Any, field: str) -> None:
    """Raise unless coords has the nesting and sizes RFC 7946 requires for kind."""
    where = "coordinates"
    if _is_sequence(coords) and not coords:
        return  # an empty geometry; validate_geometry rejects it with a clearer message
    if kind == "Point":
        _check_position(coords, where, kind, field)
    elif kind == "LineString":
        _check_positions(coords, where, kind, field, minimum=2)
    else:
        check_part = _PART_CHECKS[kind]
        parts = _check_list(coords, where, kind, field, "parts")
        for i, part in enumerate(parts):
            check_part(part, f"{where}[{i}]", kind, field)


_PART_CHECKS: dict[str, Callable[[Any, str, str, str], None]] = {
    "MultiPoint": _check_position,
    "MultiLineString": lambda v, where, kind, field: _check_positions(v, where, kind, field, 2),
    "Polygon": _check_ring,
    "MultiPolygon": _check_polygon,
}


def _parse(obj: Any, field: str, nesting: int) -> BaseGeometry:
    """Parse one GeoJSON geometry object, raising GeometryProblem on any defect."""
    if not isinstance(obj, Mapping):
        raise GeometryProblem(field, f"expected a GeoJSON geometry object, got {_brief(obj)}")
    kind = obj.get("type")
    if kind is None:
        raise GeometryProblem(field, "GeoJSON geometry is missing 'type'")
    if kind in ("Feature", "FeatureCollection"):
        raise GeometryProblem(field, f"expected a geometry, got a {kind}; send its geometry")
    if kind not in _GEOJSON_TYPES:
        raise GeometryProblem(
            field,
            f"unknown geometry type {_brief(kind)}; expected one of {', '.join(_GEOJSON_TYPES)}",
        )
    if kind == "GeometryCollection":
        if nesting >= _MAX_COLLECTION_NESTING:
            raise GeometryProblem(field, "GeometryCollections are nested too deeply")
        members = obj.get("geometries")
        if not isinstance(members, list | tuple):
            raise GeometryProblem(field, "GeometryCollection needs a 'geometries' list")
        return GeometryCollection([_parse(m, field, nesting + 1) for m in members])
    if "coordinates" not in obj:
        raise GeometryProblem(field, f"{kind} is missing 'coordinates'")
    coords = obj["coordinates"]
    _check_coordinates_member(kind, coords, field)
    return shape({"type": kind, "coordinates": coords})


def parse_geojson_geometry(obj: Any, *, field: str = "geometry") -> BaseGeometry:
    """Turn a GeoJSON geometry dict into a shapely geometry; raise only GeometryProblem."""
    try:
        return _parse(obj, field, nesting=0)
    except GeometryProblem:
        raise
    except Exception as exc:  # a shapely/GEOS failure we did not foresee: still the caller's input
        raise GeometryProblem(field, f"malformed GeoJSON geometry: {exc}") from exc
