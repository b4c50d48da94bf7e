"""Demo standard addresses (标准地址): roads in every village, doors along them, and buildings,
units and rooms behind the doors of urban compounds.

Each village gets its own random stream (seed, 3, village code), so its addresses do not depend
on which other villages are generated. Roads are straight lines through a point of the village
with doors on both sides, odd numbers on one side and even on the other, as Chinese door plates
run; rural villages also get doors with no road (油岙村12号). Building sites (building-level
addresses, and doors without buildings: single houses) are kept 34 m apart in towns and 24 m in
the countryside, so buildings placed on them do not overlap. Rows are streamed to COPY village
by village with ids assigned here, so millions of rows never sit in one Python list, and the
location (path, region_id, h3_r9) is computed here in bulk instead of by the per-row trigger.

Later steps find the sites in the table (level 'building', or 'door' with no children), or in
``ctx.shared["address_sites"]`` (AddressSites: numpy arrays of address id, point, floors and
units), and ``link_buildings`` sets standard_address.building_id on a site and everything below
it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geoserver.demo.geometry import RegionShape, random_points_in, settlement_points
from geoserver.domain.address import ParsedAddress, admin_stem, format_address
from geoserver.geo.h3cells import cells_for_points

__all__ = ["AddressSites", "PINNED", "link_buildings", "load"]

_STREAM = 3
_FLUSH_ROWS = 20_000
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON_EQUATOR = 111_320.0

#: The address of the example in the issue: it geocodes at every scale.
#: (township code, road, door number, building, unit, room)
PINNED = ("330302006", "解放街", 123, 3, 2, 302)

# Common Wenzhou urban road names; the first ones are real streets of the old city.
_URBAN_ROADS = (
    "解放街", "人民路", "学院路", "胜利路", "府前街", "公园路", "信河街", "广场路", "中山路",
    "车站大道", "锦绣路", "江滨路", "望江路", "南塘街", "大南路", "新华街", "建设路", "文化路",
    "朝阳路", "和平路", "黎明路", "勤奋路", "瓯江路", "百里路", "飞霞路", "蝉街", "仓桥街",
    "县前头", "纱帽河", "五马街", "东风巷", "花园巷", "书院巷", "墨池巷", "将军桥路", "小南路",
)
_PREFIXES = (
    "新河", "广化", "双屿", "水心", "黄龙", "金柳", "锦江", "丰收", "富强", "民主", "振兴",
    "前进", "光明", "幸福", "安居", "太平", "惠民", "春晖", "桂花", "紫薇", "桃花", "荷花",
    "柳川", "梧田", "府东", "府西", "学前", "桥头", "东风", "花园", "书院", "墨池", "将军",
    "横街", "马鞍", "灰桥", "九山", "蒲州", "上陡门", "双龙", "瓯浦", "江心", "兴业", "创业",
    "工业", "育英", "华盖", "积谷", "海坛", "杨府", "翠微", "南浦", "清明", "划龙", "葡萄",
    "田垟", "牛山", "景山", "茶山", "大桥", "河头", "岙底", "上塘", "下岸", "高岭", "新桥",
)
_SUFFIXES = ("路", "街", "巷", "大道", "东路", "西路", "南路", "北路")
_SUFFIX_WEIGHTS = (0.44, 0.18, 0.2, 0.04, 0.035, 0.035, 0.035, 0.035)


@dataclass(frozen=True)
class _Rule:
    """How many addresses a scale puts in a village."""

    roads_urban: tuple[int, int]
    roads_rural: tuple[int, int]
    doors_per_road: tuple[int, int]
    roadless_rural: tuple[int, int]  # doors without a road in a rural village
    compound_share_urban: float  # doors that are compounds with numbered buildings
    compound_share_rural: float
    buildings: tuple[int, int]
    units: tuple[int, int]
    floors: tuple[int, int]
    rooms_per_floor: int
    room_share: float  # buildings whose rooms get address rows


_RULES = {
    "tiny": _Rule((2, 4), (1, 2), (5, 10), (4, 10), 0.25, 0.05, (1, 3), (1, 3), (5, 12), 2, 0.05),
    "demo": _Rule((2, 4), (1, 3), (5, 12), (6, 14), 0.3, 0.05, (1, 4), (1, 3), (5, 14), 2, 0.0),
    "city": _Rule((4, 8), (2, 4), (10, 30), (20, 50), 0.4, 0.08, (2, 6), (1, 3), (4, 12), 2,
                  0.3),
}


@dataclass
class AddressSites:
    """Where buildings go: one site per building address and per door without buildings.

    Parallel numpy arrays (no per-site Python objects, so a city-scale load stays small):
    ``address_id`` of the site, its point (``lon``, ``lat``), ``floors`` and ``units`` the
    building should have (0 units for a single house), ``urban`` whether its village is urban,
    and ``village_code``.
    """

    address_id: list[np.ndarray] = field(default_factory=list)
    lon: list[np.ndarray] = field(default_factory=list)
    lat: list[np.ndarray] = field(default_factory=list)
    floors: list[np.ndarray] = field(default_factory=list)
    units: list[np.ndarray] = field(default_factory=list)
    urban: list[np.ndarray] = field(default_factory=list)
    village_code: list[np.ndarray] = field(default_factory=list)

    def add(self, sites: Sequence[tuple[int, float, float, int, int]], urban: bool,
            village_code: str) -> None:
        """Append one village's sites: (address_id, lon, lat, floors, units)."""
        if not sites:
            return
        arr = np.asarray(sites, dtype=np.float64)
        self.address_id.append(arr[:, 0].astype(np.int64))
        self.lon.append(arr[:, 1])
        self.lat.append(arr[:, 2])
        self.floors.append(arr[:, 3].astype(np.int16))
        self.units.append(arr[:, 4].astype(np.int16))
        self.urban.append(np.full(len(sites), urban))
        self.village_code.append(np.full(len(sites), village_code))

    def arrays(self) -> dict[str, np.ndarray]:
        """Return every column as one concatenated array."""
        names = ("address_id", "lon", "lat", "floors", "units", "urban", "village_code")
        return {n: np.concatenate(getattr(self, n)) if getattr(self, n) else np.empty(0)
                for n in names}

    def __len__(self) -> int:
        return sum(len(a) for a in self.address_id)


# --- geometry helpers ----------------------------------------------------------------------------


def _deg_per_m(lat: float) -> np.ndarray:
    """Return degrees of longitude and latitude per metre at a latitude."""
    return np.array([1.0 / (_M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat))),
                     1.0 / _M_PER_DEG_LAT])


class _Spacing:
    """Building sites already placed in a village, kept a minimum distance apart.

    The buildings step puts a footprint of up to ~25 × 30 m on every site, so sites closer than
    that would give overlapping buildings.
    """

    def __init__(self, lat0: float, min_m: float) -> None:
        self._scale = 1.0 / _deg_per_m(lat0)  # metres per degree (lon, lat)
        self._min2 = min_m * min_m
        self._xy = np.empty((64, 2))
        self._n = 0

    def free(self, point: np.ndarray) -> bool:
        """Return whether a lon/lat point keeps its distance from every site taken."""
        if self._n == 0:
            return True
        d = (self._xy[: self._n] - point * self._scale) ** 2
        return bool((d.sum(axis=1) >= self._min2).all())

    def take(self, point: np.ndarray) -> None:
        """Record a site."""
        if self._n == len(self._xy):
            self._xy = np.concatenate([self._xy, np.empty_like(self._xy)])
        self._xy[self._n] = point * self._scale
        self._n += 1


@dataclass(frozen=True)
class _Side:
    """Doors on one side of a road, ordered along it, and the road's frame at them."""

    points: np.ndarray  # (n, 2) lon/lat
    along: np.ndarray  # degrees per metre along the road
    away: np.ndarray  # degrees per metre away from the road, on this side


def _inside(village: BaseGeometry, points: np.ndarray) -> np.ndarray:
    return shapely.contains_xy(village, points[:, 0], points[:, 1])


# --- names ---------------------------------------------------------------------------------------


def _road_name(rng: np.random.Generator, village: RegionShape, used: set[str]) -> str:
    """Return a road name not yet used in the township."""
    stem = admin_stem(village.name, "village")
    for attempt in range(40):
        roll = rng.random()
        if village.urban and roll < 0.5:
            name = str(_URBAN_ROADS[int(rng.integers(len(_URBAN_ROADS)))])
        elif not village.urban and roll < 0.35 and len(stem) >= 2:
            name = stem + ("路" if rng.random() < 0.6 else "村路")
        else:
            prefix = str(_PREFIXES[int(rng.integers(len(_PREFIXES)))])
            suffix = str(rng.choice(_SUFFIXES, p=_SUFFIX_WEIGHTS))
            name = prefix + suffix
        if attempt > 20:
            name = name[:-1] + "二" + name[-1]
        if name not in used and name != PINNED[1]:  # the pinned road is placed on purpose
            used.add(name)
            return name
    raise RuntimeError(f"no free road name in the township of {village.code}")


def _village_address_name(name: str) -> str:
    """Return a village name as written in addresses (油岙村委会 → 油岙村)."""
    for suffix, written in (("村民委员会", "村"), ("村委会", "村"), ("居民委员会", "社区"),
                            ("居委会", "社区")):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)] + written
    return name


# --- rows ----------------------------------------------------------------------------------------

# Row layout: id, code, level, parent_id, county, township, village, road, door, building, unit,
# room, full_text, lon, lat (then path, region_id, h3_r9, added by _locate).
_ID, _CODE, _ROAD, _DOOR, _BUILDING, _UNIT, _TEXT, _LON = 0, 1, 7, 8, 9, 10, 12, 13


class _Ids:
    """Hands out the ids of new rows from a block reserved in the table's sequence."""

    def __init__(self, first: int) -> None:
        self.next = first

    def take(self) -> int:
        value = self.next
        self.next += 1
        return value


@dataclass(frozen=True)
class _Place:
    """A village with its township and county."""

    county: RegionShape
    township: RegionShape
    village: RegionShape

    def prefix(self, road: str | None) -> str:
        """Return the canonical text down to the road."""
        return format_address(ParsedAddress(
            county=self.county.name, township=self.township.name,
            village=_village_address_name(self.village.name), road=road))


class _VillageBuilder:
    """Generates one village's roads, doors, compounds, units and rooms."""

    def __init__(self, place: _Place, rule: _Rule, seed: int, ids: _Ids) -> None:
        self.place, self.rule, self.ids = place, rule, ids
        self.rng = np.random.default_rng([seed % 2**63, _STREAM, int(place.village.code)])
        self.urban = place.village.urban
        self.geom = place.village.geom
        lat0 = float(self.geom.centroid.y)
        self.spacing_m = 34.0 if self.urban else 24.0
        self.sites_taken = _Spacing(lat0, self.spacing_m)
        self.rows: list[list[Any]] = []
        self.sites: list[tuple[int, float, float, int, int]] = []

    # rows

    def _row(self, code: str, level: str, parent: int | None, road: str | None,
             parts: tuple[str | None, str | None, str | None, str | None], text: str,
             point: np.ndarray) -> list[Any]:
        row = [self.ids.take(), code, level, parent, self.place.county.code,
               self.place.township.code, self.place.village.code, road, *parts, text,
               float(point[0]), float(point[1])]
        self.rows.append(row)
        return row

    def _site(self, row: list[Any], floors: int, units: int) -> None:
        self.sites.append((row[_ID], row[_LON], row[_LON + 1], floors, units))

    # roads and doors

    def road(self, name: str, pin: tuple[int, int, int, int] | None = None) -> None:
        """Add a straight road with doors on both sides (odd left, even right)."""
        wanted = int(self.rng.integers(self.rule.doors_per_road[0],
                                       self.rule.doors_per_road[1] + 1))
        left, right = self._road_sides(max(wanted, 4) if pin else wanted)
        # A road often runs on from the neighbouring village, numbering and all.
        first = 1 if self.rng.random() < 0.6 else 2 * int(self.rng.integers(5, 80)) + 1
        if pin is not None:
            first = max(1, pin[0] - 2 * (len(left.points) // 2))
        self.doors(name, left, range(first, first + 2 * len(left.points), 2), pin)
        self.doors(name, right, range(first + 1, first + 1 + 2 * len(right.points), 2), None)

    def _road_sides(self, wanted: int) -> tuple[_Side, _Side]:
        """Return free door points on both sides of the best of a few lines through the village."""
        best: tuple[_Side, _Side] | None = None
        best_count = -1
        for _ in range(6):  # a line through a thin village may leave it at once: try a few
            sides = self._line(wanted)
            count = sum(len(s.points) for s in sides)
            if count > best_count:
                best, best_count = sides, count
            if count >= wanted:
                break
        assert best is not None
        per_side = max(1, (wanted + 1) // 2)
        taken = []
        for side in best:
            keep: list[np.ndarray] = []
            for point in side.points:
                if len(keep) < per_side and self.sites_taken.free(point):
                    self.sites_taken.take(point)
                    keep.append(point)
            taken.append(_Side(np.array(keep).reshape(-1, 2), side.along, side.away))
        return taken[0], taken[1]

    def _line(self, wanted: int) -> tuple[_Side, _Side]:
        """Return candidate door points on both sides of one random line."""
        centre = random_points_in(self.geom, 1, self.rng)[0]
        angle = self.rng.uniform(0, math.pi)
        scale = _deg_per_m(float(centre[1]))
        along = np.array([math.cos(angle), math.sin(angle)]) * scale
        across = np.array([-math.sin(angle), math.cos(angle)]) * scale
        step = self.spacing_m * (1.0 + 0.3 * self.rng.random())
        line = centre + (np.arange(-2 * wanted, 2 * wanted + 1) * step)[:, None] * along
        sides = []
        for away in (across, -across):
            # Opposite doors a little more than the spacing apart (rounding must not join them).
            points = line + away * (self.spacing_m * 0.51)
            points = points[_inside(self.geom, points)]
            free = np.array([self.sites_taken.free(p) for p in points], dtype=bool)
            sides.append(_Side(points[free] if len(points) else points, along, away))
        return sides[0], sides[1]

    def doors(self, road: str | None, side: _Side, numbers: Iterable[int],
              pin: tuple[int, int, int, int] | None) -> None:
        """Add doors; some become compounds with numbered buildings, the rest single houses."""
        prefix = self.place.prefix(road)
        share = (self.rule.compound_share_urban if self.urban
                 else self.rule.compound_share_rural)
        for point, number in zip(side.points, numbers, strict=False):
            code = f"{self.place.village.code}{len(self.rows) + 1:06d}"
            door = self._row(code, "door", None, road, (str(number), None, None, None),
                             f"{prefix}{number}号", point)
            pinned = pin is not None and number == pin[0]
            if pinned or self.rng.random() < share:
                self.compound(door, side, pin[1:] if pinned and pin is not None else None)
            else:
                self._site(door, self._floors(single=True), 0)

    def _floors(self, *, single: bool) -> int:
        if single and not self.urban:
            return int(self.rng.integers(2, 5))
        return int(self.rng.integers(self.rule.floors[0], self.rule.floors[1] + 1))

    # compounds

    def compound(self, door: list[Any], side: _Side, pin: tuple[int, int, int] | None) -> None:
        """Add numbered buildings behind a door, with units and (for some) rooms."""
        n = int(self.rng.integers(self.rule.buildings[0], self.rule.buildings[1] + 1))
        n = max(n, pin[0]) if pin is not None else n
        door_point = np.array(door[_LON : _LON + 2])
        for b in range(1, n + 1):
            point = self._building_spot(door_point, side)
            units = int(self.rng.integers(self.rule.units[0], self.rule.units[1] + 1))
            floors = self._floors(single=False)
            with_rooms = self.rng.random() < self.rule.room_share
            if pin is not None and b == pin[0]:
                units, floors, with_rooms = max(units, pin[1]), max(floors, pin[2] // 100), True
            building = self._row(f"{door[_CODE]}-{b:02d}", "building", door[_ID], door[_ROAD],
                                 (door[_DOOR], str(b), None, None), f"{door[_TEXT]}{b}幢",
                                 point)
            self._site(building, floors, units)
            for u in range(1, units + 1):
                unit = self._row(f"{building[_CODE]}-{u:02d}", "unit", building[_ID],
                                 door[_ROAD], (door[_DOOR], str(b), str(u), None),
                                 f"{building[_TEXT]}{u}单元", point)
                if with_rooms:
                    self.rooms(unit, floors)

    def _building_spot(self, door_point: np.ndarray, side: _Side) -> np.ndarray:
        """Return a free point behind the door (rows away from the road), else nearby."""
        d = self.spacing_m
        for row in range(1, 6):
            for column in (0, 1, -1, 2, -2, 3, -3):
                point = door_point + side.away * (d * row) + side.along * (d * column)
                if self._claim(point):
                    return point
        # A crowded or narrow spot: anywhere free within 300 m, else anywhere in the village.
        for radius in (300.0, None):
            for _ in range(60):
                if radius is None:
                    point = random_points_in(self.geom, 1, self.rng)[0]
                else:
                    offset = self.rng.uniform(-radius, radius, 2)
                    point = door_point + offset * _deg_per_m(float(door_point[1]))
                if self._claim(point):
                    return point
        return door_point  # the village is full: share the door's point

    def _claim(self, point: np.ndarray) -> bool:
        """Take the point for a site if it lies in the village and keeps its distance."""
        if _inside(self.geom, point[None, :])[0] and self.sites_taken.free(point):
            self.sites_taken.take(point)
            return True
        return False

    def rooms(self, unit: list[Any], floors: int) -> None:
        """Add rooms 101…N0k under a unit (floor × 100 + index, as plates read)."""
        point = np.array(unit[_LON : _LON + 2])
        for floor in range(1, floors + 1):
            for k in range(1, self.rule.rooms_per_floor + 1):
                room = str(floor * 100 + k)
                self._row(f"{unit[_CODE]}-{room}", "room", unit[_ID], unit[_ROAD],
                          (unit[_DOOR], unit[_BUILDING], unit[_UNIT], room),
                          f"{unit[_TEXT]}{room}室", point)

    # rural doors without a road

    def hamlet_doors(self) -> None:
        """Add doors named by the village alone (油岙村12号), clustered in hamlets."""
        low, high = self.rule.roadless_rural
        count = int(self.rng.integers(low, high + 1))
        candidates = settlement_points(self.place.village, 3 * count, self.rng)
        keep: list[np.ndarray] = []
        for p in candidates:
            if len(keep) < count and self.sites_taken.free(p):
                self.sites_taken.take(p)
                keep.append(p)
        scale = _deg_per_m(float(self.geom.centroid.y))
        side = _Side(np.array(keep).reshape(-1, 2), np.array([1.0, 0.0]) * scale,
                     np.array([0.0, 1.0]) * scale)
        self.doors(None, side, range(1, len(keep) + 1), None)


def _village_addresses(place: _Place, rule: _Rule, seed: int, ids: _Ids, used: set[str],
                       pin_road: bool) -> _VillageBuilder:
    """Generate the roads, doors and compounds of one village."""
    builder = _VillageBuilder(place, rule, seed, ids)
    low, high = rule.roads_urban if builder.urban else rule.roads_rural
    names = [_road_name(builder.rng, place.village, used)
             for _ in range(int(builder.rng.integers(low, high + 1)))]
    if pin_road:
        used.add(PINNED[1])
        builder.road(PINNED[1], PINNED[2:])
    for name in names:
        builder.road(name)
    if not builder.urban:
        builder.hamlet_doors()
    return builder


# --- location and output ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Regions:
    """Region ids and paths, and each village's general grids."""

    ids: dict[str, int]
    paths: dict[str, str]
    grids: dict[str, list[RegionShape]]


def _read_regions(conn: Any, regions: Sequence[RegionShape]) -> _Regions:
    with conn.cursor() as cur:
        cur.execute("SELECT code, id, path::text FROM region WHERE valid_to IS NULL "
                    "AND level IN ('village', 'grid', 'micro_grid')")
        rows = cur.fetchall()
    grids: dict[str, list[RegionShape]] = {}
    for r in regions:
        if r.level == "grid" and r.grid_type != "dedicated":
            grids.setdefault(r.parent_code or "", []).append(r)
    return _Regions({c: i for c, i, _ in rows}, {c: p for c, _, p in rows}, grids)


def _locate(rows: list[list[Any]], village: RegionShape, regions: _Regions) -> Iterator[list[Any]]:
    """Yield rows with path, region_id and h3_r9 added, as the location trigger would set them."""
    lon = np.array([r[13] for r in rows])
    lat = np.array([r[14] for r in rows])
    holder = np.full(len(rows), village.code, dtype=object)
    for grid in regions.grids.get(village.code, ()):
        holder[shapely.contains_xy(grid.geom, lon, lat)] = grid.code
    cells = cells_for_points(lon, lat, 9)
    for row, code, cell in zip(rows, holder, cells, strict=True):
        yield [*row, regions.paths[code], regions.ids[code], int(cell)]


_COLUMNS = ("id", "code", "level", "parent_id", "county_code", "township_code", "village_code",
            "road", "door_number", "building", "unit", "room", "full_text", "geom", "path",
            "region_id", "h3_r9")


def _copy_line(row: list[Any]) -> str:
    """Return one COPY text line (no value contains tabs, newlines or backslashes)."""
    values = [*row[:13], f"SRID=4490;POINT({row[13]:.8f} {row[14]:.8f})", *row[15:]]
    return "\t".join(r"\N" if v is None else str(v) for v in values) + "\n"


class _Copier:
    """Buffers COPY lines and sends them in batches."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.buffer = io.StringIO()
        self.pending = 0
        self.total = 0

    def add(self, rows: Iterable[list[Any]]) -> None:
        for row in rows:
            self.buffer.write(_copy_line(row))
            self.pending += 1
        if self.pending >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.buffer.seek(0)
        with self.conn.cursor() as cur:
            cur.copy_expert(f"COPY standard_address ({', '.join(_COLUMNS)}) FROM STDIN",
                            self.buffer)
        self.total += self.pending
        self.buffer, self.pending = io.StringIO(), 0


def _places(regions: Sequence[RegionShape]) -> list[_Place]:
    """Return every village with its township and county, in code order."""
    by_code = {r.code: r for r in regions}
    places = []
    for village in sorted((r for r in regions if r.level == "village"), key=lambda r: r.code):
        township = by_code.get(village.parent_code or "")
        county = by_code.get(township.parent_code or "") if township else None
        if township is not None and county is not None:
            places.append(_Place(county, township, village))
    return places


def _pinned_villages(places: Sequence[_Place]) -> set[str]:
    """Return the village that carries the pinned road: the largest of its township."""
    candidates = [p for p in places if p.township.code == PINNED[0]]
    if not candidates:
        return set()
    return {max(candidates, key=lambda p: (p.village.geom.area, p.village.code)).village.code}


def load(conn: Any, ctx: Any) -> dict[str, int]:
    """Generate and COPY the demo standard addresses; share building sites with later steps."""
    rule = _RULES[ctx.scale]
    regions = _read_regions(conn, ctx.regions)
    places = _places(ctx.regions)
    pinned = _pinned_villages(places)
    with conn.cursor() as cur:
        cur.execute("SELECT nextval(pg_get_serial_sequence('standard_address', 'id'))")
        ids = _Ids(int(cur.fetchone()[0]))
        # Path and region_id come with the rows (computed in bulk below), not per row.
        cur.execute("SET LOCAL gridgov.trusted_location = 'on'")
    copier, sites = _Copier(conn), AddressSites()
    used_roads: dict[str, set[str]] = {}
    for i, place in enumerate(places):
        used = used_roads.setdefault(place.township.code, set())
        generated = _village_addresses(place, rule, ctx.seed, ids, used,
                                       place.village.code in pinned)
        if generated.rows:
            copier.add(_locate(generated.rows, place.village, regions))
        sites.add(generated.sites, place.village.urban, place.village.code)
        ctx.progress("addresses", i + 1, len(places))
    copier.flush()
    with conn.cursor() as cur:
        cur.execute("SET LOCAL gridgov.trusted_location = 'off'")
        cur.execute("SELECT setval(pg_get_serial_sequence('standard_address', 'id'), %s)",
                    (ids.next,))
        cur.execute("SELECT count(*) FROM road")
        roads = int(cur.fetchone()[0])
    ctx.shared["address_sites"] = sites
    return {"standard_address": copier.total, "road": roads}


def link_buildings(conn: Any, address_ids: Sequence[int] | np.ndarray,
                   building_ids: Sequence[int] | np.ndarray) -> int:
    """Set building_id on each site address and every address below it; return rows updated.

    For the buildings step: after inserting one building per site of
    ``ctx.shared["address_sites"]``, pass the site address ids and the new building ids.
    """
    buffer = io.StringIO("".join(f"{a}\t{b}\n" for a, b in zip(address_ids, building_ids,
                                                                 strict=True)))
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE demo_site_building (address_id bigint PRIMARY KEY, "
                    "building_id bigint NOT NULL) ON COMMIT DROP")
        cur.copy_expert("COPY demo_site_building FROM STDIN", buffer)
        updated = 0
        for sql in (
            # The site itself, then what hangs under it (units, rooms of a building), then rooms
            # under those units.
            "UPDATE standard_address a SET building_id = m.building_id FROM demo_site_building m "
            "WHERE a.id = m.address_id",
            "UPDATE standard_address a SET building_id = m.building_id FROM demo_site_building m "
            "WHERE a.parent_id = m.address_id",
            "UPDATE standard_address a SET building_id = u.building_id FROM standard_address u "
            "JOIN demo_site_building m ON u.parent_id = m.address_id WHERE a.parent_id = u.id",
        ):
            cur.execute(sql)
            updated += cur.rowcount
        cur.execute("DROP TABLE demo_site_building")
    return updated
