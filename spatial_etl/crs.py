"""The input's coordinate system: from the file (.prj, GeoPackage, GeoJSON) or ``--crs``.

Accepted: any EPSG code PROJ knows (EPSG:4326, EPSG:4490, EPSG:4549 …), and the offset datums
GCJ-02 and BD-09, which no EPSG code describes. A file's own CRS wins; a ``--crs`` that
contradicts it is refused, except GCJ-02/BD-09 over a geographic WGS84/CGCS2000 label: such
files are routinely written with the base datum's .prj, and only the analyst knows better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from geoserver.geo.crs import STORAGE_SRID, InputCRS, to_storage
from spatial_etl.problems import EtlInputError

CRS_HELP = "EPSG:4326, EPSG:4490, EPSG:4549 (or any EPSG code), GCJ-02 or BD-09"
_OFFSETS = {"gcj-02": InputCRS.GCJ02, "gcj02": InputCRS.GCJ02, "gcj_02": InputCRS.GCJ02,
            "bd-09": InputCRS.BD09, "bd09": InputCRS.BD09, "bd_09": InputCRS.BD09,
            "bd09ll": InputCRS.BD09}
_ALIASES = {"wgs84": "EPSG:4326", "crs84": "EPSG:4326", "cgcs2000": "EPSG:4490"}
# Geographic CRSs whose lon/lat equal storage lon/lat at metre level (WGS84, CGCS2000).
_LONLAT_EPSG = (4326, 4490, 4479, 4480)


@dataclass(frozen=True)
class SourceCRS:
    """Where the input's coordinates live: an EPSG/PROJ CRS, or an offset datum."""

    label: str
    crs: CRS | None = None
    offset: InputCRS | None = None

    @property
    def is_lonlat(self) -> bool:
        """Return whether coordinates are WGS84/CGCS2000 degrees (no conversion needed)."""
        return self.offset is None and self.crs is not None and _is_lonlat(self.crs)

    def to_storage(self, geoms: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
        """Convert an array of shapely geometries to storage lon/lat (CGCS2000), 2D."""
        flat = shapely.force_2d(geoms)
        if self.offset is not None:
            offset = self.offset
            return shapely.transform(flat, lambda c: np.column_stack(
                to_storage(c[:, 0], c[:, 1], offset)))
        if self.is_lonlat:
            return flat
        assert self.crs is not None
        transformer = Transformer.from_crs(self.crs, CRS.from_epsg(STORAGE_SRID),
                                           always_xy=True)
        return shapely.transform(flat, lambda c: np.column_stack(
            transformer.transform(c[:, 0], c[:, 1])))

    def points_to_storage(self, lon: npt.ArrayLike, lat: npt.ArrayLike
                          ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Convert coordinate arrays (x/lon, y/lat) to storage lon/lat."""
        x = np.asarray(lon, dtype=np.float64)
        y = np.asarray(lat, dtype=np.float64)
        if self.offset is not None:
            sx, sy = to_storage(x, y, self.offset)
            return np.asarray(sx), np.asarray(sy)
        if self.is_lonlat:
            return x, y
        assert self.crs is not None
        t = Transformer.from_crs(self.crs, CRS.from_epsg(STORAGE_SRID), always_xy=True)
        sx, sy = t.transform(x, y)
        return np.asarray(sx), np.asarray(sy)


def _is_lonlat(crs: CRS) -> bool:
    """Return whether a CRS is geographic WGS84/CGCS2000 (any axis order)."""
    epsg = crs.to_epsg(min_confidence=70)
    if epsg in _LONLAT_EPSG:
        return True
    if not crs.is_geographic:
        return False
    name = (crs.datum.name if crs.datum else "").lower()
    return "wgs" in name and "84" in name or "2000" in name and "china" in name


def _describe(crs: CRS) -> str:
    epsg = crs.to_epsg(min_confidence=70)
    return f"EPSG:{epsg} ({crs.name})" if epsg else crs.name


def parse_crs_option(value: str) -> SourceCRS:
    """Parse ``--crs``; raise EtlInputError listing what is accepted."""
    key = value.strip().lower()
    if key in _OFFSETS:
        offset = _OFFSETS[key]
        return SourceCRS("GCJ-02" if offset is InputCRS.GCJ02 else "BD-09", offset=offset)
    spec = _ALIASES.get(key, value.strip())
    if spec.isdigit():
        spec = f"EPSG:{spec}"
    try:
        crs = CRS.from_user_input(spec)
    except CRSError:
        raise EtlInputError(f"--crs {value!r} is not a coordinate system; use {CRS_HELP}") \
            from None
    return SourceCRS(_describe(crs), crs=crs)


def resolve_crs(file_label: str, file_crs: str | None, option: str | None) -> tuple[SourceCRS,
                                                                                  str | None]:
    """Return the CRS to read a file in, and a note; refuse a missing or conflicting CRS."""
    given = parse_crs_option(option) if option else None
    if file_crs is None:
        if given is None:
            raise EtlInputError(
                f"{file_label} does not say its coordinate system (no .prj or CRS in the file): "
                f"give --crs ({CRS_HELP})")
        return given, None
    try:
        own = CRS.from_user_input(file_crs)
    except CRSError:
        raise EtlInputError(f"{file_label}: its CRS cannot be read ({file_crs[:80]!r}); fix the "
                            ".prj or remove it and give --crs") from None
    source = SourceCRS(_describe(own), crs=own)
    if given is None:
        return source, None
    if given.offset is not None:
        if _is_lonlat(own):
            return given, (f"{file_label} is labelled {source.label}; its coordinates are read "
                           f"as {given.label} as --crs says")
        raise EtlInputError(f"{file_label} is in {source.label}, which cannot hold {given.label} "
                            "coordinates; drop --crs or fix the file's CRS")
    assert given.crs is not None
    if own.equals(given.crs, ignore_axis_order=True) or (
            own.to_epsg(min_confidence=70) == given.crs.to_epsg(min_confidence=70) is not None):
        return source, None
    raise EtlInputError(f"{file_label} says it is in {source.label} but --crs says {given.label}; "
                        "drop --crs (the file's own CRS is used) or fix the .prj")
