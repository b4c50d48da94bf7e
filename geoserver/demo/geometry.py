"""Plausible, deterministic generated boundaries for a demo Wenzhou.

There are no real boundaries in the reference data, only codes, names and rough county facts, so
every level is generated: counties tile a city outline with their areas fitted to the facts, and
each level below tiles its parent. Each partition assigns the cells of a fine square lattice (in
metres, EPSG:4549) to the nearest seed in a smoothly warped space, turns the cells into faces with
shared, edge-matched boundaries, simplifies them as one coverage (so neighbours keep the same wiggly
edge) and clips them to the parent. Clipping happens in lon/lat, the storage CRS, so that
children nest in their parent exactly as stored: a straight edge in metres is not quite straight
in degrees, and clipping in metres would leave slivers of hundreds of m² after reprojection.

Randomness comes from ``numpy.random.default_rng`` seeded per region from (seed, code, purpose), so
a region's shape does not depend on which other regions are generated or in what order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import nearest_points

from geoserver.demo.divisions import (
    CITY_CODE,
    CountyFacts,
    Division,
    DivisionTree,
    RegionLevel,
    load_county_facts,
    load_division_tree,
)
from geoserver.geo.crs import METRIC_SRID, STORAGE_SRID

ISLAND_COUNTY = "330305"  # 洞头区
# The tiny scale: four streets of 鹿城区 (五马, 南汇, 松台, 滨江).
TINY_TOWNSHIPS = ("330302006", "330302025", "330302026", "330302024")

Progress = Callable[[str, int, int], None]


class GridType(StrEnum):
    """网格类型: general 一般, key 重点, dedicated 专属."""

    GENERAL = "general"
    KEY = "key"
    DEDICATED = "dedicated"


@dataclass(frozen=True, slots=True)
class RegionShape:
    """One generated region: a division or grid with its boundary in lon/lat (EPSG:4490)."""

    code: str
    name: str
    level: RegionLevel
    parent_code: str | None
    geom: MultiPolygon
    virtual: bool = False
    grid_type: GridType | None = None
    urban: bool = False


@dataclass(frozen=True)
class _ScaleRule:
    """How much of Wenzhou a scale generates and how many grids it puts in a village."""

    townships: tuple[str, ...] | None  # None: every township of every county
    grid_base: float  # extra grids per village = floor((base + urban * density) * U(0, 1))
    grid_urban: float
    grid_cap: int
    dedicated_share: float  # share of townships that get dedicated grids
    dedicated_max: int


# Grid counts are tuned for ≈60 grids (tiny), ≈1 per rural and 1–3 per urban village (demo) and
# ≈10,000 grids in all (city, ≈2.7 per village).
_SCALES = {
    "tiny": _ScaleRule(
        townships=TINY_TOWNSHIPS,
        grid_base=0.0,
        grid_urban=1.4,
        grid_cap=3,
        dedicated_share=1.0,
        dedicated_max=2,
    ),
    "demo": _ScaleRule(
        townships=None,
        grid_base=0.0,
        grid_urban=3.0,
        grid_cap=3,
        dedicated_share=0.3,
        dedicated_max=2,
    ),
    "city": _ScaleRule(
        townships=None,
        grid_base=2.0,
        grid_urban=7.0,
        grid_cap=12,
        dedicated_share=0.6,
        dedicated_max=3,
    ),
}
SCALES = tuple(_SCALES)

# Purposes salted into the per-region random streams.
_OUTLINE, _COUNTIES, _ISLANDS, _TOWNSHIPS, _VILLAGES, _GRIDS, _GRID_COUNT, _GRID_KIND = range(8)
_DEDICATED = 8

# A rough coastline (lon, lat), north to south, with the sea to its east: the facts hold no
# coast, and without one the counties would spread evenly into the East China Sea.
_COAST = (
    (121.40, 28.75), (121.24, 28.42), (121.13, 28.22), (121.00, 28.03), (120.93, 27.93),
    (120.86, 27.83), (120.76, 27.74), (120.69, 27.62), (120.66, 27.50), (120.61, 27.34),
    (120.53, 27.19), (120.40, 27.05), (120.25, 26.90),
)  # fmt: skip

# Urban seats per county: (pull from the county's centroid toward the tri-district core,
# intensity, radius in km). The core districts' seats meet in the middle, as Wenzhou's do.
_URBAN_SEATS = {
    "330302": (0.7, 1.0, 6.0),
    "330303": (0.5, 0.9, 5.0),
    "330304": (0.6, 0.9, 5.0),
    "330305": (0.0, 0.5, 2.5),
    "330324": (0.8, 0.55, 3.5),
    "330326": (0.3, 0.6, 3.5),
    "330327": (0.2, 0.6, 3.5),
    "330328": (0.0, 0.4, 2.0),
    "330329": (0.0, 0.4, 2.0),
    "330381": (0.3, 0.85, 5.0),
    "330382": (0.3, 0.85, 5.0),
    "330383": (0.0, 0.9, 4.0),
}
_CORE_DISTRICTS = ("330302", "330303", "330304")
_URBAN_COUNTIES = (*_CORE_DISTRICTS, "330383")  # the core districts and 龙港, all 城区

# Township kinds: (name mark, rank for seed pairing, town-centre intensity).
_TOWNSHIP_KINDS = (("街道", 0, 0.6), ("开发区", 1, 0.5), ("镇", 2, 0.45), ("乡", 3, 0.25))
_URBAN_VILLAGE_MARKS = ("社区", "居委会", "居民区", "管理区")

# Dedicated grids (专属网格): (label, min radius m, max radius m).
_DEDICATED_KINDS = (("农贸市场", 60.0, 110.0), ("学校", 80.0, 170.0), ("工业园区", 250.0, 700.0))

_COUNTY_CELL_M = 400.0
_SOFTNESS = 3.0
_SIMPLIFY = 1.5  # coverage simplification tolerance, in cells
_SEAT_MARGIN_M = 600.0  # urban seats sit this far inside their county
_JITTER = 0.3  # lattice corner displacement, in cells: below 0.5 so cells never fold
_MIN_CELLS_PER_CHILD = 400
_MAX_CELLS = 400_000
# A detached part smaller than this share of its child goes to the neighbour it touches most.
_FRAGMENT_SHARE = 0.35


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_regions(scale: str, seed: int, progress: Progress | None = None) -> list[RegionShape]:
    """Generate city, counties, townships, villages and grids for one scale (tiny, demo, city)."""
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    rule = _SCALES[scale]
    report = progress or _no_progress
    tree = load_division_tree()
    world = _build_world(tree, load_county_facts(), seed)
    report("counties", 1, 1)
    return _generate(tree, world, rule, seed, report)


def random_points_in(geom: BaseGeometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return n uniformly random (x, y) points inside a polygonal geometry, as an (n, 2) array."""
    if n <= 0:
        return np.empty((0, 2))
    if geom.is_empty or geom.area <= 0:
        raise ValueError("cannot place points in an empty geometry")
    minx, miny, maxx, maxy = geom.bounds
    shapely.prepare(geom)
    found: list[np.ndarray] = []
    count = 0
    batch = max(64, 2 * n)
    while count < n:
        xs = rng.uniform(minx, maxx, batch)
        ys = rng.uniform(miny, maxy, batch)
        inside = shapely.contains_xy(geom, xs, ys)
        found.append(np.column_stack([xs[inside], ys[inside]]))
        count += int(inside.sum())
    return np.concatenate(found)[:n]


def settlement_points(region: RegionShape, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return n lon/lat points clustered in settlements inside a region, as an (n, 2) array.

    Rural villages get a few tight hamlets; urban ones many looser clusters, so buildings placed
    on these points look like a town or a countryside.
    """
    if n <= 0:
        return np.empty((0, 2))
    geom = region.geom
    area_m2 = _area_m2(geom)
    clusters = max(1, round(n / (8 if region.urban else 25)))
    clusters = min(clusters, 40 if region.urban else 6)
    centres = random_points_in(geom, clusters, rng)
    sigma_m = math.sqrt(area_m2 / clusters) * (0.25 if region.urban else 0.12)
    return _scatter_around(geom, centres, sigma_m, n, rng)


# --------------------------------------------------------------------------------------------
# Projection
# --------------------------------------------------------------------------------------------


@cache
def _transformer(source: int, target: int) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def _lonlat_to_metres(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _transformer(STORAGE_SRID, METRIC_SRID).transform(lon, lat)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def _reproject(geoms: Any, source: int, target: int) -> Any:
    forward = _transformer(source, target)

    def convert(coords: np.ndarray) -> np.ndarray:
        x, y = forward.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, convert)


def _to_metres(geoms: Any) -> Any:
    """Reproject geometries (one or an array) from lon/lat to EPSG:4549 metres."""
    return _reproject(geoms, STORAGE_SRID, METRIC_SRID)


def _to_lonlat(geoms: Any) -> Any:
    """Reproject geometries (one or an array) from EPSG:4549 metres to lon/lat."""
    return _reproject(geoms, METRIC_SRID, STORAGE_SRID)


def _area_m2(geom: BaseGeometry) -> float:
    return float(_to_metres(geom).area)


def _scatter_around(
    geom: BaseGeometry, centres: np.ndarray, sigma_m: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    lat0 = float(np.mean(centres[:, 1]))
    sigma = np.array([sigma_m / (111_320.0 * math.cos(math.radians(lat0))), sigma_m / 110_570.0])
    shapely.prepare(geom)
    found: list[np.ndarray] = []
    count = 0
    while count < n:
        picks = centres[rng.integers(0, len(centres), 2 * n)]
        points = picks + rng.normal(size=picks.shape) * sigma
        inside = shapely.contains_xy(geom, points[:, 0], points[:, 1])
        found.append(points[inside])
        count += int(inside.sum())
    return np.concatenate(found)[:n]


# --------------------------------------------------------------------------------------------
# Random fields: a smooth domain warp (wiggly boundaries) and an urban density
# --------------------------------------------------------------------------------------------


def _rng(seed: int, code: str, purpose: int) -> np.random.Generator:
    # SeedSequence needs non-negative entropy; hashing is avoided on purpose (PYTHONHASHSEED).
    return np.random.default_rng([seed % 2**63, int(code), purpose])


@dataclass(frozen=True)
class _Warp:
    """A smooth displacement field: a sum of sine waves over a few octaves."""

    wave: np.ndarray  # (k, 2) wave vectors in rad/m
    phase: np.ndarray  # (k,)
    shift: np.ndarray  # (k, 2) displacement amplitudes in m

    def apply(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the warped coordinates of points."""
        waves = np.sin(np.outer(x, self.wave[:, 0]) + np.outer(y, self.wave[:, 1]) + self.phase)
        return x + waves @ self.shift[:, 0], y + waves @ self.shift[:, 1]


def _make_warp(
    rng: np.random.Generator, wavelength: float, strength: float, octaves: int = 4, modes: int = 3
) -> _Warp:
    """Return a random warp whose longest waves have the given wavelength (m)."""
    waves, phases, shifts = [], [], []
    for octave in range(octaves):
        length = wavelength / 2**octave
        for _ in range(modes):
            heading, push, phase = rng.uniform(0, 2 * math.pi, 3)
            waves.append((math.cos(heading), math.sin(heading), 2 * math.pi / length))
            phases.append(phase)
            # Amplitude proportional to wavelength keeps the warp's slope bounded, so it folds
            # space rarely; the rare fold only makes a fragment that is absorbed later.
            shifts.append((strength * length * math.cos(push), strength * length * math.sin(push)))
    wave = np.array(waves)
    return _Warp(wave[:, :2] * wave[:, 2:], np.array(phases), np.array(shifts))


@dataclass(frozen=True)
class _Density:
    """Urban density in [0, 1]: the strongest of several Gaussian centres."""

    x: np.ndarray
    y: np.ndarray
    intensity: np.ndarray
    radius: np.ndarray

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return the density at points."""
        best = np.zeros(np.shape(x))
        for cx, cy, peak, radius in zip(self.x, self.y, self.intensity, self.radius, strict=True):
            d2 = (x - cx) ** 2 + (y - cy) ** 2
            best = np.maximum(best, peak * np.exp(-d2 / (2 * radius**2)))
        return best

    def with_centre(self, x: float, y: float, intensity: float, radius: float) -> _Density:
        """Return this density with one more centre."""
        return _Density(
            np.append(self.x, x),
            np.append(self.y, y),
            np.append(self.intensity, intensity),
            np.append(self.radius, radius),
        )


# --------------------------------------------------------------------------------------------
# Lattice partition: cells -> nearest warped seed -> edge-matched faces -> clipped children
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lattice:
    """A square lattice of cells; cell (row, col) spans x0 + col*h .. x0 + (col+1)*h."""

    x0: float
    y0: float
    h: float
    nx: int
    ny: int

    @classmethod
    def around(cls, bounds: Sequence[float], h: float, pad_cells: int = 3) -> _Lattice:
        """Return a lattice covering bounds with a margin of a few cells."""
        minx, miny, maxx, maxy = bounds
        nx = math.ceil((maxx - minx) / h) + 2 * pad_cells
        ny = math.ceil((maxy - miny) / h) + 2 * pad_cells
        return cls(minx - pad_cells * h, miny - pad_cells * h, h, nx, ny)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the cell centres, row-major, as flat arrays."""
        xs = self.x0 + (np.arange(self.nx) + 0.5) * self.h
        ys = self.y0 + (np.arange(self.ny) + 0.5) * self.h
        gx, gy = np.meshgrid(xs, ys)
        return gx.ravel(), gy.ravel()

    def to_metres(self, geoms: np.ndarray) -> np.ndarray:
        """Scale geometries from cell units to metres (the same map for every shared vertex)."""
        return shapely.transform(geoms, lambda c: c * self.h + (self.x0, self.y0))


def _nearest(
    x: np.ndarray, y: np.ndarray, seeds: np.ndarray, power: np.ndarray | None = None
) -> np.ndarray:
    """Label points with their nearest seed in the power distance |p - s|² - w."""
    best = np.full(x.shape, np.inf)
    labels = np.zeros(x.shape, dtype=np.int32)
    for i, (sx, sy) in enumerate(seeds):
        d = (x - sx) ** 2 + (y - sy) ** 2
        if power is not None:
            d -= power[i]
        closer = d < best
        best[closer] = d[closer]
        labels[closer] = i
    return labels


def _runs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Find maximal runs along axis 1 where a != b with the same (a, b) pair.

    Returns (line index, run start, run end) in cell units. Runs end wherever the label pair
    changes, which is exactly where another boundary meets, so the linework comes out noded.
    """
    diff = a != b
    continues = np.zeros_like(diff)
    continues[:, 1:] = diff[:, :-1] & (a[:, 1:] == a[:, :-1]) & (b[:, 1:] == b[:, :-1])
    start = diff & ~continues
    ends_here = np.zeros_like(diff)
    ends_here[:, :-1] = continues[:, 1:]
    end = diff & ~ends_here
    lines, starts = np.nonzero(start)
    _, ends = np.nonzero(end)
    return lines, starts, ends + 1


def _label_faces(
    labels: np.ndarray, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Turn a label raster into polygon faces in cell units and the label of each face.

    With rng, every lattice corner moves by a random offset below a third of a cell: staircase
    edges turn into irregular lines, and a corner shared by several faces moves the same way in
    all of them, so the faces still form an edge-matched coverage.
    """
    padded = np.pad(labels, 1, constant_values=-1)  # the border becomes an edge to "outside"
    # Vertical edges: between padded columns C and C+1, at x = C, rows R-1 .. R.
    col, r0, r1 = _runs(padded[:, :-1].T, padded[:, 1:].T)
    vertical = np.stack([np.column_stack([col, r0 - 1]), np.column_stack([col, r1 - 1])], axis=1)
    # Horizontal edges: between padded rows R and R+1, at y = R, columns C-1 .. C.
    row, c0, c1 = _runs(padded[:-1, :], padded[1:, :])
    horizontal = np.stack([np.column_stack([c0 - 1, row]), np.column_stack([c1 - 1, row])], axis=1)
    segments = np.concatenate([vertical, horizontal]).astype(float)
    faces = shapely.get_parts(shapely.polygonize(shapely.linestrings(segments)))
    inner = shapely.point_on_surface(faces)
    cols = np.floor(shapely.get_x(inner)).astype(int)
    rows = np.floor(shapely.get_y(inner)).astype(int)
    if rng is not None:
        jitter = rng.uniform(-_JITTER, _JITTER, (labels.shape[0] + 1, labels.shape[1] + 1, 2))

        def shake(coords: np.ndarray) -> np.ndarray:
            corner = np.rint(coords).astype(int)
            return coords + jitter[corner[:, 1], corner[:, 0]]

        faces = shapely.transform(faces, shake)
    return faces, labels[rows, cols]


def _polygons_of(geom: BaseGeometry) -> list[Polygon]:
    """Return the polygons with area inside any geometry, collections included."""
    if isinstance(geom, Polygon):
        return [geom] if geom.area > 0 else []
    return [polygon for part in getattr(geom, "geoms", ()) for polygon in _polygons_of(part)]


def _as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    multi = MultiPolygon(_polygons_of(geom))
    if not multi.is_valid:
        multi = MultiPolygon(_polygons_of(shapely.make_valid(multi)))
    return multi


def _partition(
    parent: BaseGeometry,
    parent_m: BaseGeometry,
    seeds: np.ndarray,
    warp: _Warp,
    h: float,
    rng: np.random.Generator,
    power: np.ndarray | None = None,
) -> list[MultiPolygon]:
    """Split a lon/lat parent among metric seeds on a lattice of cell size h (m).

    The children tile the parent exactly: the faces tile the lattice, which covers the parent.
    """
    lattice = _Lattice.around(parent_m.bounds, h)
    cx, cy = lattice.centres()
    wx, wy = warp.apply(cx, cy)
    sx, sy = warp.apply(seeds[:, 0], seeds[:, 1])
    labels = _nearest(wx, wy, np.column_stack([sx, sy]), power).reshape(lattice.ny, lattice.nx)
    faces, face_labels = _label_faces(labels, rng)
    # One coverage simplification: shared edges are simplified once, for both neighbours.
    faces = shapely.coverage_simplify(faces, _SIMPLIFY, simplify_boundary=False)
    faces = _to_lonlat(lattice.to_metres(faces))
    children = []
    for i in range(len(seeds)):
        own = faces[face_labels == i]
        merged = MultiPolygon(list(own)) if len(own) else MultiPolygon()
        if not merged.is_valid:
            merged = shapely.union_all(own)
        children.append(_as_multipolygon(shapely.intersection(merged, parent)))
    return _absorb_fragments(children)


def _absorb_fragments(children: list[MultiPolygon]) -> list[MultiPolygon]:
    """Hand small detached parts of a child to the sibling they share the longest edge with."""
    geoms: list[BaseGeometry] = list(children)
    for i in range(len(geoms)):
        own = sorted(_polygons_of(geoms[i]), key=lambda p: -p.area)
        total = sum(p.area for p in own)
        keep = own[:1]
        for part in own[1:]:
            small = part.area < _FRAGMENT_SHARE * total
            target = _longest_neighbour(part, geoms, i) if small else None
            if target is None:
                keep.append(part)
            else:
                geoms[target] = shapely.union(geoms[target], part)
        geoms[i] = MultiPolygon(keep)
    return [_as_multipolygon(g) for g in geoms]


def _longest_neighbour(part: Polygon, geoms: list[BaseGeometry], own: int) -> int | None:
    best, best_length = None, 0.0
    edge = part.boundary
    for j, other in enumerate(geoms):
        if j == own or not part.intersects(other):
            continue
        length = shapely.intersection(edge, other).length
        if length > best_length:
            best, best_length = j, length
    return best


def _inside_cells(parent: BaseGeometry, h: float) -> tuple[np.ndarray, np.ndarray]:
    cx, cy = _Lattice.around(parent.bounds, h, pad_cells=0).centres()
    shapely.prepare(parent)
    inside = shapely.contains_xy(parent, cx, cy)
    return cx[inside], cy[inside]


def _place_seeds(
    cx: np.ndarray, cy: np.ndarray, weight: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Place n seeds by weighted k-means over cell centres, snapped to distinct cells."""
    points = np.column_stack([cx, cy])
    start = rng.choice(len(points), size=n, replace=False, p=weight / weight.sum())
    seeds = points[start].copy()
    for _ in range(10):
        labels = _nearest(cx, cy, seeds)
        mass = np.bincount(labels, weights=weight, minlength=n)
        mx = np.bincount(labels, weights=weight * cx, minlength=n)
        my = np.bincount(labels, weights=weight * cy, minlength=n)
        moved = mass > 0
        seeds[moved] = np.column_stack([mx[moved] / mass[moved], my[moved] / mass[moved]])
    # Snap to cell centres inside the parent: a centroid of a bent cluster can lie outside it.
    taken: set[int] = set()
    for i in range(n):
        order = np.argsort((cx - seeds[i, 0]) ** 2 + (cy - seeds[i, 1]) ** 2, kind="stable")
        pick = next(int(j) for j in order if int(j) not in taken)
        taken.add(pick)
        seeds[i] = points[pick]
    return seeds


def _split(
    parent: BaseGeometry,
    n: int,
    rng: np.random.Generator,
    density: _Density,
    beta: float,
) -> tuple[list[MultiPolygon], np.ndarray]:
    """Split a lon/lat parent into n children sized by density; densest seed (in m) first."""
    parent_m = _to_metres(parent)
    if n == 1:
        point = parent_m.representative_point()
        return [_as_multipolygon(parent)], np.array([[point.x, point.y]])
    area = parent_m.area
    h0 = math.sqrt(area / min(max(40 * n, 1500), 6000))
    cx, cy = _inside_cells(parent_m, h0)
    while len(cx) < 8 * n:
        h0 /= 2
        cx, cy = _inside_cells(parent_m, h0)
    seeds = _place_seeds(cx, cy, np.exp(beta * density(cx, cy)), n, rng)
    seeds = seeds[np.argsort(-density(seeds[:, 0], seeds[:, 1]), kind="stable")]
    warp = _make_warp(rng, 2.5 * math.sqrt(area / n), 0.04)
    wx, wy = warp.apply(cx, cy)
    sx, sy = warp.apply(seeds[:, 0], seeds[:, 1])
    counts = np.bincount(_nearest(wx, wy, np.column_stack([sx, sy])), minlength=n)
    h = _fine_cell_size(parent_m, h0, max(int(counts.min()), 1) * h0 * h0)
    for _ in range(4):
        children = _partition(parent, parent_m, seeds, warp, h, rng)
        if min(child.area for child in children) > 0:
            return children, seeds
        h /= 2  # a child squeezed out by its neighbours: retry finer
    raise RuntimeError("lattice partition lost a child")


def _fine_cell_size(parent: BaseGeometry, h0: float, smallest_child_area: float) -> float:
    minx, miny, maxx, maxy = parent.bounds
    floor = math.sqrt((maxx - minx) * (maxy - miny) / _MAX_CELLS)
    wanted = math.sqrt(smallest_child_area / _MIN_CELLS_PER_CHILD)
    return min(h0, max(wanted, floor))


# --------------------------------------------------------------------------------------------
# City: mainland outline, counties fitted to the facts, 洞头's islands, urban seats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _World:
    """The city outline and county geometries (lon/lat) and the urban density (metres)."""

    outline: MultiPolygon
    counties: dict[str, MultiPolygon]
    density: _Density


def _facts_xy(facts: CountyFacts) -> tuple[float, float]:
    x, y = _lonlat_to_metres(np.array([facts.centroid_lon]), np.array([facts.centroid_lat]))
    return float(x[0]), float(y[0])


def _bbox_metres(facts: CountyFacts) -> tuple[float, float, float, float]:
    x, y = _lonlat_to_metres(
        np.array([facts.min_lon, facts.max_lon, facts.min_lon, facts.max_lon]),
        np.array([facts.min_lat, facts.min_lat, facts.max_lat, facts.max_lat]),
    )
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def _build_world(tree: DivisionTree, facts: dict[str, CountyFacts], seed: int) -> _World:
    mainland = [d.code for d in tree.children(CITY_CODE) if d.code != ISLAND_COUNTY]
    outline = _mainland_outline([facts[c] for c in mainland], _rng(seed, CITY_CODE, _OUTLINE))
    counties = _fit_counties(outline, [facts[c] for c in mainland], seed)
    island_rng = _rng(seed, ISLAND_COUNTY, _ISLANDS)
    counties[ISLAND_COUNTY] = _islands(facts[ISLAND_COUNTY], outline, island_rng)
    density = _urban_density(counties)
    city = _as_multipolygon(MultiPolygon([*outline.geoms, *counties[ISLAND_COUNTY].geoms]))
    return _World(city, counties, density)


def _mainland_outline(facts: list[CountyFacts], rng: np.random.Generator) -> MultiPolygon:
    """Shape the mainland (lon/lat) as a noisy soft union of county ellipses, cut by the coast."""
    boxes = np.array([_bbox_metres(f) for f in facts])
    bounds = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    lattice = _Lattice.around(bounds, _COUNTY_CELL_M, pad_cells=80)
    cx, cy = lattice.centres()
    wx, wy = _make_warp(rng, 60_000.0, 0.05, octaves=5).apply(cx, cy)
    roughness = _make_warp(rng, 30_000.0, 1.0, octaves=5, modes=2)
    bumps = (roughness.apply(cx, cy)[0] - cx) / 30_000.0  # a scalar field of order 1
    reach = _ellipse_reach(facts, wx, wy) * (1.0 + 0.12 * bumps)
    sea = _sea_polygon()
    land_ok = ~shapely.contains_xy(sea, wx, wy)
    target = sum(f.area_km2 for f in facts) * 1e6 / _COUNTY_CELL_M**2
    low, high = 0.2, 4.0
    for _ in range(40):  # bisect the ellipse scale until the land has the counties' total area
        mid = (low + high) / 2
        if np.count_nonzero(land_ok & (reach <= mid)) < target:
            low = mid
        else:
            high = mid
    land = (land_ok & (reach <= high)).reshape(lattice.ny, lattice.nx)
    land = _fill_holes(_keep_connected(land, lattice, facts))
    faces, labels = _label_faces(land.astype(np.int32), rng)
    faces = shapely.coverage_simplify(faces, _SIMPLIFY, simplify_boundary=False)
    return _as_multipolygon(shapely.union_all(_to_lonlat(lattice.to_metres(faces[labels == 1]))))


def _sea_polygon() -> Polygon:
    coast_x, coast_y = _lonlat_to_metres(*np.array(_COAST).T)
    offshore = [(coast_x[-1] + 3e5, coast_y[-1]), (coast_x[0] + 3e5, coast_y[0])]
    sea = Polygon([*zip(coast_x, coast_y, strict=True), *offshore])
    shapely.prepare(sea)
    return sea


def _ellipse_reach(facts: list[CountyFacts], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return, per point, a soft minimum of ellipse-normalised distances to the county centres.

    A soft minimum fills the necks between neighbouring ellipses, so the city comes out compact.
    """
    total = np.zeros(x.shape)
    for f in facts:
        fx, fy = _facts_xy(f)
        minx, miny, maxx, maxy = _bbox_metres(f)
        aspect = min(max((maxx - minx) / (maxy - miny), 0.5), 2.0)
        a = math.sqrt(f.area_km2 * 1e6 / math.pi * aspect)
        b = math.sqrt(f.area_km2 * 1e6 / math.pi / aspect)
        total += np.exp(-_SOFTNESS * np.hypot((x - fx) / a, (y - fy) / b))
    return -np.log(np.maximum(total, 1e-300)) / _SOFTNESS


def _grow(reached: np.ndarray, passable: np.ndarray) -> np.ndarray:
    """Flood-fill 4-connected from reached through passable cells."""
    reached = reached & passable
    while True:
        grown = reached.copy()
        grown[1:, :] |= reached[:-1, :]
        grown[:-1, :] |= reached[1:, :]
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown &= passable
        if np.array_equal(grown, reached):
            return reached
        reached = grown


def _keep_connected(land: np.ndarray, lattice: _Lattice, facts: list[CountyFacts]) -> np.ndarray:
    """Drop detached bits of land: keep what connects to the counties' centres."""
    start = np.zeros_like(land)
    for f in facts:
        fx, fy = _facts_xy(f)
        col = int((fx - lattice.x0) // lattice.h)
        row = int((fy - lattice.y0) // lattice.h)
        start[row, col] = True
    return _grow(start, land)


def _fill_holes(land: np.ndarray) -> np.ndarray:
    border = np.zeros_like(land)
    border[0, :] = border[-1, :] = True
    border[:, 0] = border[:, -1] = True
    return ~_grow(border, ~land)


def _fit_counties(
    outline: MultiPolygon, facts: list[CountyFacts], seed: int
) -> dict[str, MultiPolygon]:
    """Tile the outline with counties whose areas match the facts (a fitted power diagram)."""
    rng = _rng(seed, CITY_CODE, _COUNTIES)
    seeds = np.array([_facts_xy(f) for f in facts])
    warp = _make_warp(rng, 50_000.0, 0.05, octaves=5, modes=2)
    outline_m = _to_metres(outline)
    cx, cy = _inside_cells(outline_m, _COUNTY_CELL_M)
    wx, wy = warp.apply(cx, cy)
    sx, sy = warp.apply(seeds[:, 0], seeds[:, 1])
    warped_seeds = np.column_stack([sx, sy])
    targets = np.array([f.area_km2 * 1e6 for f in facts])
    targets *= len(cx) * _COUNTY_CELL_M**2 / targets.sum()
    power = np.zeros(len(facts))
    for _ in range(120):
        areas = np.bincount(_nearest(wx, wy, warped_seeds, power), minlength=len(facts))
        power += 0.8 * (targets - areas * _COUNTY_CELL_M**2) / math.pi
    children = _partition(outline, outline_m, seeds, warp, _COUNTY_CELL_M, rng, power)
    return {f.code: child for f, child in zip(facts, children, strict=True)}


def _islands(facts: CountyFacts, mainland: MultiPolygon, rng: np.random.Generator) -> MultiPolygon:
    """Scatter a few blob-shaped islands in the sea around the island county's centroid."""
    total = facts.area_km2 * 1e6 * rng.uniform(0.85, 1.0)
    shares = np.sort(rng.dirichlet([8.0, 4.0, 2.5, 1.5, 1.0, 1.0]))[::-1]
    minx, miny, maxx, maxy = _bbox_metres(facts)
    cx, cy = _facts_xy(facts)
    shore = _to_metres(mainland).buffer(2_000.0)
    placed: list[Polygon] = []
    for share in shares:
        area = total * share
        for attempt in range(400):
            spread = min(1.0, 0.25 + attempt / 100)  # start near the centroid, then wander
            x = cx + rng.uniform(-1, 1) * spread * (maxx - minx) / 2
            y = cy + rng.uniform(-1, 1) * spread * (maxy - miny) / 2
            blob = _blob(x, y, area * (0.97 ** (attempt // 50)), rng)
            if blob.intersects(shore) or any(blob.distance(p) < 800.0 for p in placed):
                continue
            placed.append(blob)
            break
    return _as_multipolygon(_to_lonlat(MultiPolygon(placed)))


def _blob(x: float, y: float, area: float, rng: np.random.Generator) -> Polygon:
    """Return an irregular star-shaped polygon of the given area centred on (x, y)."""
    theta = np.linspace(0, 2 * math.pi, 97)[:-1]
    radius = np.ones_like(theta)
    for k in range(2, 9):
        radius += rng.uniform(0, 0.3 / k**0.8) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    radius = np.clip(radius, 0.35, None)
    ring = np.column_stack([np.cos(theta) * radius, np.sin(theta) * radius])
    scale = math.sqrt(area / Polygon(ring).area)
    return Polygon(ring * scale + (x, y))


def _urban_density(counties: dict[str, MultiPolygon]) -> _Density:
    """Place each county's urban seat; the core districts' seats meet where they touch."""
    metric = {code: _to_metres(geom) for code, geom in counties.items()}
    core = _core_point([metric[c] for c in _CORE_DISTRICTS])
    xs, ys, peaks, radii = [], [], [], []
    for code, (pull, peak, radius_km) in _URBAN_SEATS.items():
        geom = metric[code]
        centre = _centre(geom)
        target = core if code in _CORE_DISTRICTS else centre + pull * (core - centre)
        x, y = _inside_point(geom, target, margin=_SEAT_MARGIN_M)
        xs.append(x)
        ys.append(y)
        peaks.append(peak)
        radii.append(radius_km * 1000.0)
    return _Density(np.array(xs), np.array(ys), np.array(peaks), np.array(radii))


def _core_point(districts: list[MultiPolygon]) -> np.ndarray:
    """Return the point of the first district's boundary nearest to all the other districts."""
    corners = shapely.points(shapely.get_coordinates(districts[0].boundary))
    farthest = np.max([shapely.distance(corners, other) for other in districts[1:]], axis=0)
    best = corners[int(np.argmin(farthest))]
    return np.array([best.x, best.y])


def _centre(geom: BaseGeometry) -> np.ndarray:
    biggest = max(_polygons_of(geom), key=lambda p: p.area)
    return np.array([biggest.centroid.x, biggest.centroid.y])


def _inside_point(geom: BaseGeometry, target: np.ndarray, margin: float) -> tuple[float, float]:
    """Return the point at least margin inside geom that is nearest to target."""
    room = geom.buffer(-margin)
    if room.is_empty:
        room = geom
    near = nearest_points(room, shapely.Point(target))[0]
    return near.x, near.y


# --------------------------------------------------------------------------------------------
# Townships, villages, grids
# --------------------------------------------------------------------------------------------


def _township_kind(name: str) -> tuple[int, float]:
    for mark, rank, intensity in _TOWNSHIP_KINDS:
        if name.endswith(mark) or (mark == "开发区" and mark in name):
            return rank, intensity
    return 4, 0.1  # 林场, 自然保护区, 特产场: remote quasi-townships


def _township_order(division: Division) -> tuple[int, str]:
    # The tiny scale's four streets take the densest seeds so that they sit together downtown.
    if division.code in TINY_TOWNSHIPS:
        return -1, division.code
    return _township_kind(division.name)[0], division.code


def _village_order(division: Division) -> tuple[int, str]:
    if any(mark in division.name for mark in _URBAN_VILLAGE_MARKS):
        return 0, division.code
    return (2 if "场" in division.name else 1), division.code


def _region(division: Division, geom: BaseGeometry, urban: bool) -> RegionShape:
    parent = None if division.level == RegionLevel.CITY else division.parent_code
    return RegionShape(
        code=division.code,
        name=division.name,
        level=division.level,
        parent_code=parent,
        geom=_as_multipolygon(geom),
        virtual=division.virtual,
        urban=urban,
    )


def _generate(
    tree: DivisionTree, world: _World, rule: _ScaleRule, seed: int, report: Progress
) -> list[RegionShape]:
    counties = tree.children(CITY_CODE)
    if rule.townships is not None:
        counties = tuple(c for c in counties if any(t.startswith(c.code) for t in rule.townships))
    townships: list[RegionShape] = []
    villages: list[RegionShape] = []
    grids: list[RegionShape] = []
    county_shapes = []
    for index, county in enumerate(counties):
        kept = _townships_of(tree, county, world, seed, rule)
        for township, geom, density in kept:
            shape = _region(township, geom, urban=township.name.endswith("街道"))
            townships.append(shape)
            for village, vgeom in _villages_of(tree, township, geom, density, seed):
                vshape = _region(village, vgeom, urban=_village_order(village)[0] == 0)
                villages.append(vshape)
                grids.extend(_grids_of(vshape, density, rule, seed))
            grids.extend(_dedicated_grids(shape, rule, seed))
        geom = world.counties[county.code]
        if rule.townships is not None:
            geom = shapely.union_all([t.geom for t in townships if t.parent_code == county.code])
        county_shapes.append(_region(county, geom, urban=county.code in _URBAN_COUNTIES))
        report("townships", index + 1, len(counties))
    city_geom = world.outline
    if rule.townships is not None:
        city_geom = shapely.union_all([c.geom for c in county_shapes])
    city = _region(tree.root, city_geom, urban=False)
    return [city, *county_shapes, *townships, *villages, *grids]


def _townships_of(
    tree: DivisionTree, county: Division, world: _World, seed: int, rule: _ScaleRule
) -> list[tuple[Division, MultiPolygon, _Density]]:
    ranked = sorted(tree.children(county.code), key=_township_order)
    rng = _rng(seed, county.code, _TOWNSHIPS)
    parts, seeds = _split(world.counties[county.code], len(ranked), rng, world.density, beta=5.0)
    kept = []
    for township, geom, (sx, sy) in zip(ranked, parts, seeds, strict=True):
        if rule.townships is not None and township.code not in rule.townships:
            continue
        intensity = _township_kind(township.name)[1]
        radius = 0.15 * math.sqrt(_area_m2(geom))
        kept.append((township, geom, world.density.with_centre(sx, sy, intensity, radius)))
    return sorted(kept, key=lambda item: item[0].code)


def _villages_of(
    tree: DivisionTree, township: Division, geom: MultiPolygon, density: _Density, seed: int
) -> list[tuple[Division, MultiPolygon]]:
    ranked = sorted(tree.children(township.code), key=_village_order)
    rng = _rng(seed, township.code, _VILLAGES)
    parts, _ = _split(geom, len(ranked), rng, density, beta=6.0)
    return sorted(zip(ranked, parts, strict=True), key=lambda item: item[0].code)


def _point_density(geom: BaseGeometry, density: _Density) -> float:
    point = geom.representative_point()
    x, y = _lonlat_to_metres(np.array([point.x]), np.array([point.y]))
    return float(density(x, y)[0])


def _grids_of(
    village: RegionShape, density: _Density, rule: _ScaleRule, seed: int
) -> list[RegionShape]:
    urbanity = _point_density(village.geom, density)
    count_rng = _rng(seed, village.code, _GRID_COUNT)
    extra = math.floor((rule.grid_base + rule.grid_urban * urbanity) * count_rng.random())
    count = 1 + min(extra, rule.grid_cap - 1)
    rng = _rng(seed, village.code, _GRIDS)
    parts, _ = _split(village.geom, count, rng, density, beta=2.0)
    kind_rng = _rng(seed, village.code, _GRID_KIND)
    grids = []
    for number, part in enumerate(parts, start=1):
        key = kind_rng.random() < 0.04 + 0.25 * _point_density(part, density)
        grids.append(
            RegionShape(
                code=f"{village.code}{number:03d}",
                name=f"{village.name}第{number}网格",
                level=RegionLevel.GRID,
                parent_code=village.code,
                geom=part,
                grid_type=GridType.KEY if key else GridType.GENERAL,
                urban=village.urban,
            )
        )
    return grids


def _dedicated_grids(township: RegionShape, rule: _ScaleRule, seed: int) -> list[RegionShape]:
    """Place 专属网格 (market, school, industrial park) inside a township, over village grids."""
    rng = _rng(seed, township.code, _DEDICATED)
    if township.virtual or rng.random() >= rule.dedicated_share:
        return []
    count = int(rng.integers(1, rule.dedicated_max + 1))
    kinds = [_DEDICATED_KINDS[int(i)] for i in rng.permutation(len(_DEDICATED_KINDS))[:count]]
    township_m = _to_metres(township.geom)
    size_cap = 0.2 * math.sqrt(township_m.area)
    grids = []
    for number, (label, low, high) in enumerate(kinds, start=1):
        radius = min(rng.uniform(low, high), size_cap)
        room = township_m.buffer(-radius)
        where = room if room.area > 0 else township_m
        x, y = random_points_in(where, 1, rng)[0]
        blob = _to_lonlat(_blob(x, y, math.pi * radius**2, rng))
        geom = shapely.intersection(blob, township.geom)
        grids.append(
            RegionShape(
                code=f"{township.code}9{number:05d}",
                name=f"{township.name}{label}专属网格",
                level=RegionLevel.GRID,
                parent_code=township.code,
                geom=_as_multipolygon(geom),
                grid_type=GridType.DEDICATED,
                urban=township.urban,
            )
        )
    return grids


def _no_progress(stage: str, done: int, total: int) -> None:
    """Ignore progress reports."""
