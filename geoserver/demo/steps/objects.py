"""Demo base data: buildings clustered in settlements, their residences, households and people,
and organizations, key places, city components and enterprises.

Everything is generated grid by grid (deterministic per grid code and seed) and written one
township at a time with COPY, so memory stays bounded at city scale (2.5M buildings, 9.6M
people). Locations are computed here, not by the triggers: each row is generated inside a known
grid (a building's point on surface, which for a rectangle is its centre, is checked to lie in
that grid), so path and region_id are the grid's; ``gridgov.trusted_location = 'on'`` makes the
location triggers stand aside, as the standard-address step does (one locate() per row would
dominate the load).

Standard addresses, when the addresses step wrote any, are reused: building- and door-level
addresses (doors without building rows) become buildings at exactly their points, their room
addresses become residences, and both sides are linked (building.address_id,
standard_address.building_id, residence.address_id).
"""

from __future__ import annotations

import io
import math
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import shapely

from geoserver.demo.geometry import RegionShape, settlement_points
from geoserver.demo.loader import DemoContext
from geoserver.domain.documents import mask_id_number, mask_phone, synthetic_uscc
from geoserver.geo.crs import METRIC_SRID, STORAGE_SRID, transformer
from geoserver.geo.h3cells import cells_at_resolutions

#: (buildings, persons) per scale.
SIZES = {"tiny": (4_000, 15_000), "demo": (100_000, 400_000), "city": (2_500_000, 9_600_000)}
DOCUMENT_CONTEXT = "person.document_number"
PHONE_CONTEXT = "person.phone"
CONTACT_PHONE_CONTEXT = "key_place.contact_phone"
_STREAM = 20
# Birth dates are drawn against a fixed day, so a seed gives the same people every year.
_REFERENCE_DAY = date(2025, 6, 30)
_EPOCH = date(1915, 1, 1)

_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘"
                 "袁蔡蒋余于杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦"
                 "邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
# Wenzhou's own common surnames get extra weight.
_LOCAL = set("陈林黄王张李周郑吴潘徐金胡叶朱杨")
_SURNAME_P = np.array([3.0 if s in _LOCAL else 1.0 for s in _SURNAMES])
_SURNAME_P /= _SURNAME_P.sum()
_GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国志红春晓文斌海波玉云飞"
              "燕鹏辉俊宇浩然子涵梓萱雨欣佳怡晨阳思远婷雪琳嘉豪振宏德福荣瑞")
# Registered residents carry the county's code; migrants come from these counties.
_MIGRANT_REGIONS = ("522401", "362321", "412727", "511621", "430524", "340827", "421127",
                    "500236", "452127", "350583")
_HOUSEHOLD_SIZES = (np.arange(1, 7), np.array([0.15, 0.30, 0.25, 0.18, 0.08, 0.04]))
_SPECIAL = ("community_correction", "drug_rehab", "mental_illness", "released_prisoner",
            "petition_key")
_GB11643_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_GB11643_CHECK = np.array(list("10X98765432"))

# Building categories: (urban share, rural share, width m, length m, floors).
_CATEGORIES = {
    "residential": (0.62, 0.80, (10, 16), (18, 30), (4, 26)),
    "commercial": (0.15, 0.05, (12, 22), (15, 26), (1, 5)),
    "office": (0.08, 0.01, (15, 22), (18, 28), (5, 25)),
    "industrial": (0.05, 0.08, (18, 26), (22, 32), (1, 3)),
    "public": (0.05, 0.03, (14, 22), (18, 26), (2, 6)),
    "other": (0.05, 0.03, (6, 12), (8, 14), (1, 2)),
}
_RURAL_HOUSE = ((7, 10), (9, 14), (2, 4))

# Key places: (category, weight, label, polygon side m or 0 for a point, risk).
_PLACES = (
    ("school", 6, "小学", 120, "low"), ("kindergarten", 6, "幼儿园", 60, "low"),
    ("hospital", 2, "医院", 110, "medium"), ("market", 5, "农贸市场", 70, "medium"),
    ("gas_station", 3, "加油站", 0, "high"), ("entertainment", 4, "KTV", 0, "medium"),
    ("religious", 2, "寺", 60, "low"), ("elderly_care", 3, "居家养老服务中心", 50, "medium"),
    ("hazardous_chemicals", 1, "化工仓库", 80, "high"), ("hotel", 5, "宾馆", 0, "low"),
    ("internet_cafe", 3, "网吧", 0, "medium"), ("construction_site", 3, "工地", 90, "medium"),
)
# City components: (category, weight, code prefix, owner department).
_COMPONENTS = (
    ("manhole_cover", 35, "JG", "市政设施管理中心"), ("street_lamp", 30, "LD", "市政设施管理中心"),
    ("trash_bin", 15, "LJ", "环境卫生管理处"), ("fire_hydrant", 8, "XH", "消防救援支队"),
    ("camera", 8, "JK", "公安局"), ("bus_stop", 2, "GJ", "公交集团"),
    ("public_toilet", 2, "GC", "环境卫生管理处"),
)
_INDUSTRIES = ("制鞋业", "服装制造", "电气机械", "汽摩配件", "泵阀制造", "眼镜制造", "批发零售",
               "餐饮业", "住宿业", "软件信息", "建筑业", "印刷包装")


# --- COPY -------------------------------------------------------------------------------------

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _cell(value: Any) -> str:
    """Render one value in COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    if isinstance(value, list | tuple):
        return "{" + ",".join(f'"{v}"' for v in value) + "}"
    return str(value)


@dataclass
class _Table:
    """Rows waiting to be COPYed into one table."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    written: int = 0
    #: Seconds spent in COPY (PostgreSQL: parsing, generated columns, indexes, keys).
    seconds: float = 0.0

    def take(self) -> list[tuple[Any, ...]]:
        """Return the waiting rows and start a new list."""
        rows, self.rows = self.rows, []
        return rows

    def copy(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        """COPY rows into the table."""
        if not rows:
            return
        started = time.perf_counter()
        buf = io.StringIO()
        for row in rows:
            buf.write("\t".join(map(_cell, row)))
            buf.write("\n")
        buf.seek(0)
        cur.copy_expert(f"COPY {self.name} ({', '.join(self.columns)}) FROM STDIN", buf)
        self.written += len(rows)
        self.seconds += time.perf_counter() - started


def _tables() -> dict[str, _Table]:
    located = ("path", "region_id")
    return {t.name: t for t in (
        _Table("building", ("id", "code", "name", "category", "floors", "households",
                            "address_id", "geom", "h3_r7", "h3_r8", "h3_r9") + located),
        _Table("residence", ("id", "building_id", "address_id", "unit", "floor", "room",
                             "usage", "area_m2") + located),
        _Table("household", ("id", "household_no", "residence_id", "head_person_id")
               + located),
        _Table("person", ("id", "name", "document_type", "document_number_enc",
                          "document_number_hash", "document_number_masked", "phone_enc",
                          "phone_hash", "phone_masked", "gender", "birth_date", "person_type",
                          "household_id", "relation_to_head", "residence_id", "tags",
                          "special_category") + located),
        _Table("key_place", ("name", "category", "contact_name", "contact_phone_enc",
                             "contact_phone_masked", "risk_level", "geom", "h3_r9") + located),
        _Table("city_component", ("code", "category", "status", "owner_department", "geom",
                                  "h3_r9") + located),
        _Table("enterprise", ("name", "uscc", "credit_grade", "legal_representative",
                              "industry", "staff_count", "geom", "h3_r9") + located),
        _Table("organization", ("name", "category", "geom", "h3_r9") + located),
    )}


# Order matters: parents before children; households' heads are checked at the batch end.
_FLUSH_ORDER = ("building", "residence", "household", "person", "key_place", "city_component",
                "enterprise", "organization")
#: Rows generated before they are handed to the writer (bounds memory: ~1 kB a person row).
_BATCH_ROWS = 50_000


class _Writer:
    """COPYs batches on a thread of its own, so PostgreSQL works while Python generates more.

    psycopg2 releases the GIL while it waits for the server, but a COPY must not be
    interleaved with other commands on the connection (it lets go of the connection while it
    reads the data): every use of the connection, here and on the main thread, holds
    ``lock``. At most one batch waits in the queue, so memory stays bounded.
    """

    def __init__(self, conn: Any, tables: dict[str, _Table]) -> None:
        self._conn = conn
        self._tables = tables
        self._queue: queue.Queue[dict[str, list[tuple[Any, ...]]] | None] = queue.Queue(1)
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="demo-objects-copy",
                                        daemon=True)
        self._thread.start()

    def pending(self) -> int:
        """Return how many rows wait to be handed over."""
        return sum(len(t.rows) for t in self._tables.values())

    def submit(self) -> None:
        """Hand every waiting row to the writer thread (blocks while it is a batch behind)."""
        if self.error is not None:
            raise self.error
        self._queue.put({name: t.take() for name, t in self._tables.items() if t.rows})

    def _run(self) -> None:
        with self._conn.cursor() as cur:
            while (batch := self._queue.get()) is not None:
                if self.error is None:
                    try:
                        with self.lock:
                            self._write(cur, batch)
                    except BaseException as exc:  # re-raised by submit() or close()
                        self.error = exc

    def _write(self, cur: Any, batch: dict[str, list[tuple[Any, ...]]]) -> None:
        cur.execute("SET CONSTRAINTS household_head_person_id_fkey DEFERRED")
        for name in _FLUSH_ORDER:
            self._tables[name].copy(cur, batch.get(name, []))
        # Checks the batch's household heads now, while the batch is small.
        cur.execute("SET CONSTRAINTS household_head_person_id_fkey IMMEDIATE")

    def close(self) -> None:
        """Write what is left, wait for the thread, and raise its error if it had one."""
        if self.error is None:
            self._queue.put({name: t.take() for name, t in self._tables.items() if t.rows})
        self.abandon()
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """Stop the thread without writing what still waits (the load failed)."""
        self._queue.put(None)
        self._thread.join()


class _Ids:
    """Hands out ids from the tables' sequences in blocks (one owner, one transaction)."""

    def __init__(self, cur: Any, lock: threading.Lock) -> None:
        self.cur = cur
        self.lock = lock
        self.next: dict[str, int] = {}
        self.left: dict[str, int] = defaultdict(int)

    def take(self, table: str, n: int = 1) -> int:
        """Return the first of n consecutive fresh ids of a table."""
        if self.left[table] < n:
            # Large blocks: each one waits for the COPY in progress (see _Writer).
            block = max(n, 200_000)
            with self.lock:
                self.cur.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id'))", (table,))
                start = self.cur.fetchone()[0]
                self.cur.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                                 (table, start + block - 1))
            self.next[table], self.left[table] = start, block
        first = self.next[table]
        self.next[table] += n
        self.left[table] -= n
        return first


# --- people -----------------------------------------------------------------------------------


class _People:
    """Names and checksum-valid, never repeated ID numbers."""

    def __init__(self, ctx: DemoContext) -> None:
        self.crypto = ctx.crypto
        counties = sorted({r.code[:6] for r in ctx.regions if r.level == "county"})
        self.region_index = {code: i for i, code in enumerate(counties + list(_MIGRANT_REGIONS))}
        days = (_REFERENCE_DAY - _EPOCH).days + 1
        # Issued sequence halves per (region, birth day, gender): numbers never repeat.
        self.issued = np.zeros((len(self.region_index), days, 2), dtype=np.uint16)
        self.passports = 0

    def names(self, rng: np.random.Generator, n: int) -> list[str]:
        """Return n plausible names (surname + one or two given characters)."""
        surnames = rng.choice(_SURNAMES, size=n, p=_SURNAME_P)
        given = rng.choice(_GIVEN, size=(n, 2))
        two = rng.random(n) < 0.7
        return [s + g[0] + (g[1] if t else "") for s, g, t in zip(surnames, given, two,
                                                                  strict=True)]

    def resident_ids(self, regions: Sequence[str], births: np.ndarray,
                     males: np.ndarray) -> list[str]:
        """Return resident ID numbers (GB 11643) that were never handed out before.

        ``births`` are numpy days; each (region, birth day, gender) hands out sequence numbers
        in turn, from a start that differs per day so that numbers do not all end in 001.
        """
        n = len(regions)
        if n == 0:
            return []
        r = np.array([self.region_index[x] for x in regions], dtype=np.int64)
        d = (births - np.datetime64(_EPOCH, "D")).astype(np.int64)
        g = males.astype(np.int64)
        flat = np.ravel_multi_index((r, d, g), self.issued.shape)
        # Rank of each person among the batch's people with the same key.
        order = np.argsort(flat, kind="stable")
        keys = flat[order]
        starts = np.maximum.accumulate(np.where(np.r_[True, keys[1:] != keys[:-1]],
                                                np.arange(n), 0))
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - starts
        issued = self.issued.reshape(-1)
        count = issued[flat].astype(np.int64) + rank + 1
        if int(count.max()) > 499:
            raise RuntimeError("more people born on one day in one county than IDs allow")
        np.add.at(issued, flat, 1)
        half = (count + r * 7919 + d * 104_729 + g * 31) % 499 + 1
        sequence = np.where(males, 2 * half - 1, 2 * half)
        days = np.datetime_as_string(births, unit="D")
        bodies = [f"{reg}{day[:4]}{day[5:7]}{day[8:]}{seq:03d}"
                  for reg, day, seq in zip(regions, days, sequence.tolist(), strict=True)]
        digits = np.frombuffer("".join(bodies).encode(), dtype=np.uint8).reshape(-1, 17) - 48
        checks = _GB11643_CHECK[(digits.astype(np.int64) @ _GB11643_WEIGHTS) % 11]
        return [body + check for body, check in zip(bodies, checks.tolist(), strict=True)]

    def passport(self) -> str:
        """Return a fresh passport-shaped number."""
        self.passports += 1
        return f"P{self.passports:08d}"

    def document(self, doc_type: str, number: str) -> tuple[Any, ...]:
        """Return (type, enc, hash, masked) for a person row."""
        return (doc_type, self.crypto.encrypt(number, context=DOCUMENT_CONTEXT),
                self.crypto.blind_index(number), mask_id_number(number))

    def phone(self, number: str | None) -> tuple[Any, ...]:
        """Return (enc, hash, masked) for a phone, or Nones."""
        if number is None:
            return None, None, None
        # Generated numbers are 11-digit mobiles, masked as mask_phone would (138****5678).
        return (self.crypto.encrypt(number, context=PHONE_CONTEXT),
                self.crypto.blind_index(number), f"{number[:3]}****{number[-4:]}")


def _phones(rng: np.random.Generator, n: int) -> list[str]:
    """Return n plausible mainland mobile numbers."""
    prefixes = rng.choice(["35", "38", "39", "58", "59", "77", "86", "88"], size=n)
    return [f"1{p}{d:08d}" for p, d in zip(prefixes, rng.integers(0, 10**8, size=n),
                                           strict=True)]


@dataclass
class _Members:
    """A grid's people as arrays, one entry per person, grouped by household."""

    household: np.ndarray  # index of the person's home
    rank: np.ndarray  # 0 head (户主), 1 spouse, 2+ children or parents
    age: np.ndarray
    male: np.ndarray
    birth: np.ndarray  # numpy days


def _members(rng: np.random.Generator, sizes: np.ndarray) -> _Members:
    """Draw plausible families: a head, a spouse of about the same age, children, parents."""
    n = int(sizes.sum())
    household = np.repeat(np.arange(len(sizes)), sizes)
    rank = np.arange(n) - (np.cumsum(sizes) - sizes)[household]
    head = np.clip(rng.normal(48, 15, len(sizes)), 20, 92)[household]
    spouse = np.clip(head + rng.normal(-1.5, 3, n), 18, 95)
    parent = np.clip(head + rng.uniform(22, 30, n), 0, 100)
    child = np.clip(head - rng.uniform(22, 36, n), 0, 60)
    # The fifth member onward of a younger head's household is a parent, else a child.
    age = np.select([rank == 0, rank == 1, (rank >= 4) & (head < 60)], [head, spouse, parent],
                    child)
    head_male = (rng.random(len(sizes)) < 0.5)[household]
    male = np.select([rank == 0, rank == 1], [head_male, ~head_male], rng.random(n) < 0.5)
    days = (age * 365.25).astype(np.int64) + rng.integers(0, 365, n)
    birth = np.maximum(np.datetime64(_REFERENCE_DAY, "D") - days.astype("timedelta64[D]"),
                       np.datetime64(_EPOCH, "D"))
    return _Members(household, rank, age, male.astype(bool), birth)


# --- geometry ---------------------------------------------------------------------------------


@dataclass
class _Grid:
    """One grid to fill, with what the database knows of it."""

    shape: RegionShape
    path: str
    region_id: int
    buildings: int
    addresses: list[tuple[int, float, float]]


def _to_metric(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = transformer(STORAGE_SRID, METRIC_SRID).transform(lon, lat)
    return np.asarray(x), np.asarray(y)


def _to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = transformer(METRIC_SRID, STORAGE_SRID).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def _building_sites(grid: _Grid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return lon/lat centres for the grid's buildings: address points, then free cells.

    Generated centres are snapped to the centres of a square lattice whose cell holds the
    largest footprint's circle, and one building takes a cell: buildings cluster like the
    settlement points but rarely overlap.
    """
    cell = 34.0 if grid.shape.urban else 28.0
    taken = np.array([(a[1], a[2]) for a in grid.addresses], dtype=float).reshape(-1, 2)
    need = max(grid.buildings - len(taken), 0)
    if need == 0:
        return taken[:, 0], taken[:, 1]
    used = _cells(taken[:, 0], taken[:, 1], cell)
    lon, lat = np.empty(0), np.empty(0)
    # Dense settlements put many points in one cell: draw again until the grid is full.
    for attempt in range(6):
        raw = settlement_points(grid.shape, int(need * (2 + 2 * attempt)) + 8, rng)
        keys = _cells(raw[:, 0], raw[:, 1], cell)
        keys = keys[~np.isin(keys, used)]
        keys = keys[np.sort(np.unique(keys, return_index=True)[1])]
        cx, cy = _to_lonlat((keys // _ROW + 0.5) * cell, (keys % _ROW + 0.5) * cell)
        inside = shapely.contains_xy(grid.shape.geom, cx, cy)
        lon, lat = np.concatenate([lon, cx[inside]]), np.concatenate([lat, cy[inside]])
        used = np.concatenate([used, keys])
        if len(lon) >= need:
            break
    lon, lat = lon[:need], lat[:need]
    return np.concatenate([taken[:, 0], lon]), np.concatenate([taken[:, 1], lat])


_ROW = 10_000_000  # cell key = column * _ROW + row; rows (northing / cell) stay far below


def _cells(lon: np.ndarray, lat: np.ndarray, cell: float) -> np.ndarray:
    """Return the lattice cell key of each point (metric, EPSG:4549)."""
    x, y = _to_metric(lon, lat)
    return np.floor(x / cell).astype(np.int64) * _ROW + np.floor(y / cell).astype(np.int64)


def _footprints(lon: np.ndarray, lat: np.ndarray, widths: np.ndarray, lengths: np.ndarray,
                angles: np.ndarray) -> np.ndarray:
    """Return hex EWKB MultiPolygons: rotated rectangles centred on the points."""
    x, y = _to_metric(lon, lat)
    corners = np.array([(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5), (-0.5, -0.5)])
    dx = corners[None, :, 0] * widths[:, None]
    dy = corners[None, :, 1] * lengths[:, None]
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    cx, cy = x[:, None] + dx * cos - dy * sin, y[:, None] + dx * sin + dy * cos
    clon, clat = _to_lonlat(cx.ravel(), cy.ravel())
    rings = np.stack([clon, clat], axis=1).reshape(len(lon), 5, 2)
    polys = shapely.multipolygons(shapely.polygons(rings), indices=np.arange(len(lon)))
    return shapely.to_wkb(shapely.set_srid(polys, STORAGE_SRID), hex=True, include_srid=True)


def _points_wkb(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    points = shapely.set_srid(shapely.points(lon, lat), STORAGE_SRID)
    return shapely.to_wkb(points, hex=True, include_srid=True)


def _squares_wkb(lon: np.ndarray, lat: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Return hex EWKB Polygons (squares of the given side in metres) centred on the points."""
    x, y = _to_metric(lon, lat)
    h = sides / 2
    xs = np.stack([x - h, x + h, x + h, x - h, x - h], axis=1)
    ys = np.stack([y - h, y - h, y + h, y + h, y - h], axis=1)
    clon, clat = _to_lonlat(xs.ravel(), ys.ravel())
    rings = np.stack([clon, clat], axis=1).reshape(len(lon), 5, 2)
    polys = shapely.set_srid(shapely.polygons(rings), STORAGE_SRID)
    return shapely.to_wkb(polys, hex=True, include_srid=True)


# --- one grid -------------------------------------------------------------------------------


@dataclass
class _Built:
    """What a grid's buildings are, for the rows that hang off them."""

    ids: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    category: list[str]
    floors: np.ndarray
    address_ids: list[int | None]
    #: Index of the grid's first row in the building table's waiting rows.
    row_start: int


@dataclass
class _Placed:
    """Centres (metric) and circle radii of the buildings already placed in a township."""

    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    r: list[np.ndarray] = field(default_factory=list)

    def add(self, x: np.ndarray, y: np.ndarray, r: np.ndarray) -> None:
        """Remember a grid's buildings."""
        self.x.append(x)
        self.y.append(y)
        self.r.append(r)

    def room(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Return, per point, the radius left before touching an earlier grid's building."""
        if not self.x:
            return np.full(len(x), np.inf)
        px, py, pr = (np.concatenate(a) for a in (self.x, self.y, self.r))
        (index, nearest), distance = shapely.STRtree(shapely.points(px, py)).query_nearest(
            shapely.points(x, y), return_distance=True, all_matches=False)
        room = np.full(len(x), np.inf)
        room[index] = distance - pr[nearest] - 0.5
        return room


def _distinct_sites(sites: list[tuple[int, float, float]],
                    min_gap_m: float = 5.0) -> list[tuple[int, float, float]]:
    """Drop address sites within min_gap_m of an earlier one (no room for two buildings).

    Compound buildings are scattered behind their door and sometimes land on one spot; those
    addresses stay without a building rather than get one that overlaps its neighbour.
    """
    if len(sites) < 2:
        return sites
    x, y = _to_metric(np.array([s[1] for s in sites]), np.array([s[2] for s in sites]))
    pairs = shapely.STRtree(shapely.points(x, y)).query(
        shapely.points(x, y), predicate="dwithin", distance=min_gap_m)
    close: dict[int, list[int]] = defaultdict(list)
    for i, j in zip(*pairs.tolist(), strict=True):
        if j < i:
            close[i].append(j)
    kept: set[int] = set()
    for i in range(len(sites)):
        if not any(j in kept for j in close.get(i, ())):
            kept.add(i)
    return [sites[i] for i in sorted(kept)]


def _fit_to_neighbours(lon: np.ndarray, lat: np.ndarray, widths: np.ndarray,
                       lengths: np.ndarray, placed: _Placed) -> None:
    """Shrink footprints (in place) so that they do not reach their neighbours; remember them.

    Lattice sites are a cell apart and keep their size; address sites (doors every 12 m along
    a road, compound buildings scattered behind a door) come closer, and their buildings get
    smaller rather than overlapping: each keeps within half the gap to its nearest neighbour
    in the grid, and clear of the buildings of grids placed before.
    """
    x, y = _to_metric(lon, lat)
    limit = placed.room(x, y)
    if len(lon) > 1:
        points = shapely.points(x, y)
        (index, _), distance = shapely.STRtree(points).query_nearest(
            points, exclusive=True, return_distance=True, all_matches=False)
        limit[index] = np.minimum(limit[index], 0.48 * distance)
    radius = np.hypot(widths, lengths) / 2
    factor = np.clip(limit / radius, 0.0, 1.0)
    np.maximum(widths * factor, 4.0, out=widths)
    np.maximum(lengths * factor, 4.0, out=lengths)
    placed.add(x, y, np.hypot(widths, lengths) / 2)


def _grid_buildings(grid: _Grid, rng: np.random.Generator, ids: _Ids,
                    homes: dict[int, int], placed: _Placed, out: dict[str, _Table]) -> _Built:
    """Write the grid's buildings; those on addresses with rooms are dwellings.

    ``homes`` maps such a building address to the highest floor its room numbers name.
    """
    lon, lat = _building_sites(grid, rng)
    n = len(lon)
    urban = grid.shape.urban
    names = list(_CATEGORIES)
    share = np.array([_CATEGORIES[c][0 if urban else 1] for c in names])
    cats = [names[i] for i in rng.choice(len(names), size=n, p=share / share.sum())]
    for i, (address_id, _, _) in enumerate(grid.addresses[:n]):
        if address_id in homes:
            cats[i] = "residential"
    widths, lengths, floors = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64)
    for i, c in enumerate(cats):
        w, length, f = (_RURAL_HOUSE if c == "residential" and not urban
                        else _CATEGORIES[c][2:])
        widths[i], lengths[i] = rng.uniform(*w), rng.uniform(*length)
        floors[i] = rng.integers(f[0], f[1] + 1)
    for i, (address_id, _, _) in enumerate(grid.addresses[:n]):
        floors[i] = max(floors[i], homes.get(address_id, 0))
    _fit_to_neighbours(lon, lat, widths, lengths, placed)
    base = rng.uniform(0, math.pi / 2)
    angles = base + rng.normal(0, 0.12, n)
    wkb = _footprints(lon, lat, widths, lengths, angles)
    cells = cells_at_resolutions(lon, lat, (7, 8, 9))
    first = ids.take("building", n)
    address_ids: list[int | None] = [a[0] for a in grid.addresses[:n]]
    address_ids += [None] * (n - len(address_ids))
    short = grid.shape.name.removesuffix("网格")
    rows = out["building"].rows
    row_start = len(rows)
    for i in range(n):
        name = f"{short}{i + 1}幢" if cats[i] == "residential" else f"{short}{cats[i]}-{i + 1}"
        rows.append((first + i, f"B{grid.shape.code}{i + 1:05d}", name, cats[i],
                     int(floors[i]), None, address_ids[i], wkb[i], int(cells[7][i]),
                     int(cells[8][i]), int(cells[9][i]), grid.path, grid.region_id))
    return _Built(np.arange(first, first + n), lon, lat, cats, floors, address_ids, row_start)


def _room_slots(count: int, floors: int, urban: bool) -> list[tuple[str | None, int, str]]:
    """Return (unit, floor, room) for count residences in a building."""
    if not urban:
        return [(None, 1, str(j + 1)) for j in range(count)]
    units = max(1, math.ceil(count / (max(floors, 1) * 2)))
    slots: list[tuple[str | None, int, str]] = []
    for j in range(count):
        unit, rest = j % units + 1, j // units
        floor, room = rest // 2 + 1, rest % 2 + 1
        slots.append((str(unit), floor, f"{floor}{room:02d}"))
    return slots


@dataclass
class _Home:
    """A residence to fill with a household."""

    residence_id: int
    usage: str
    #: Index of the building in the grid's _Built.
    building: int


def _grid_residences(grid: _Grid, built: _Built, households: int, rng: np.random.Generator,
                     ids: _Ids, rooms: dict[int, list[tuple[int, str | None, str]]],
                     out: dict[str, _Table]) -> list[_Home]:
    """Write residences in the grid's residential buildings; return those to live in."""
    homes: list[_Home] = []
    residential = [i for i, c in enumerate(built.category) if c == "residential"]
    if not residential:
        return homes
    urban = grid.shape.urban
    weights = np.array([float(built.floors[i]) if urban else 1.0 for i in residential])
    target = max(len(residential), round(households / 0.88))
    per_building = rng.multinomial(target - len(residential), weights / weights.sum()) + 1
    rented = 0.30 if urban else 0.10
    for i, count in zip(residential, per_building, strict=True):
        address = built.address_ids[i]
        known = rooms.get(address, []) if address is not None else []
        slots: list[tuple[int | None, str | None, int | None, str]] = [
            (aid, unit, None, room) for aid, unit, room in known]
        occupied = {(unit, room) for _, unit, room in known}
        generated = [(None, u, f, r) for u, f, r in
                     _room_slots(int(count) + len(known), int(built.floors[i]), urban)
                     if (u, r) not in occupied]
        slots += generated[: max(int(count) - len(known), 0)]
        first = ids.take("residence", len(slots))
        draws = rng.random(len(slots))
        for k, (aid, unit, floor, room) in enumerate(slots):
            usage = ("vacant" if draws[k] < 0.10 else "business" if draws[k] < 0.12
                     else "rented" if draws[k] < 0.12 + rented else "owner_occupied")
            area = round(float(rng.uniform(45, 140) if urban else rng.uniform(80, 220)), 2)
            out["residence"].rows.append((first + k, int(built.ids[i]), aid, unit, floor, room,
                                          usage, area, grid.path, grid.region_id))
            if usage in ("owner_occupied", "rented"):
                homes.append(_Home(first + k, usage, i))
    return homes


def _count_households(built: _Built, homes: list[_Home], table: _Table) -> None:
    """Fill in the households column of the grid's waiting building rows (one per home)."""
    counts = np.bincount([h.building for h in homes], minlength=len(built.ids))
    for i in np.flatnonzero(counts):
        row = table.rows[built.row_start + i]
        table.rows[built.row_start + i] = row[:5] + (int(counts[i]),) + row[6:]


_TAG_NAMES = ("党员", "退役军人", "低保", "独居老人")
#: Tag lists by bit set (party 1, veteran 2, subsistence 4, living alone 8).
_TAG_SETS = [[t for bit, t in enumerate(_TAG_NAMES) if mask >> bit & 1] for mask in range(16)]


def _tags(rng: np.random.Generator, people: _Members, sizes: np.ndarray) -> list[list[str]]:
    n = len(people.age)
    bits = ((people.age >= 18) & (rng.random(n) < 0.02)).astype(np.int64)
    bits |= (people.male & (people.age >= 25) & (rng.random(n) < 0.006)) << 1
    bits |= (rng.random(len(sizes)) < 0.008)[people.household] << 2
    bits |= ((sizes[people.household] == 1) & (people.age >= 70)) << 3
    return [_TAG_SETS[b] for b in bits.tolist()]


def _relations(people: _Members) -> np.ndarray:
    head_age = people.age[people.rank == 0][people.household]
    return np.select([people.rank == 0, people.rank == 1, people.age > head_age],
                     ["户主", "配偶", "父母"], "子女")


def _grid_people(grid: _Grid, homes: list[_Home], persons: int, rng: np.random.Generator,
                 ids: _Ids, registry: _People, out: dict[str, _Table]) -> None:
    """Write a household per home and its members, about the grid's share of the people."""
    if not homes:
        return
    sizes = rng.choice(_HOUSEHOLD_SIZES[0], size=len(homes), p=_HOUSEHOLD_SIZES[1])
    # Scale household sizes so the grid holds about its share of the population.
    scale = min(persons / max(int(sizes.sum()), 1), 2.0)
    sizes = np.maximum(1, np.round(sizes * scale)).astype(np.int64)
    people = _members(rng, sizes)
    n = len(people.age)
    rented = np.array([h.usage == "rented" for h in homes])
    floating = (rng.random(len(homes)) < np.where(rented, 0.75, 0.04))[people.household]
    overseas = (rng.random(len(homes)) < 0.004)[people.household]
    regions = np.where(floating, rng.choice(_MIGRANT_REGIONS, size=n), grid.shape.code[:6])
    numbers = registry.resident_ids(regions.tolist(), people.birth, people.male)
    has_phone = (people.age >= 14) & (rng.random(n) < 0.8)
    phones = _phones(rng, n)
    special = np.where((people.age >= 16) & (rng.random(n) < 0.002),
                       rng.choice(_SPECIAL, size=n), "")
    kinds = np.where(overseas, "overseas", np.where(floating, "floating", "registered"))
    pid = ids.take("person", n)
    hid = ids.take("household", len(homes))
    heads = pid + np.flatnonzero(people.rank == 0)
    for h, home in enumerate(homes):
        out["household"].rows.append((hid + h, f"{grid.shape.code}{h + 1:05d}",
                                      home.residence_id, int(heads[h]), grid.path,
                                      grid.region_id))
    names = registry.names(rng, n)
    columns = zip(names, numbers, overseas.tolist(), has_phone.tolist(), phones,
                  people.male.tolist(), np.datetime_as_string(people.birth).tolist(),
                  kinds.tolist(), people.household.tolist(), _relations(people).tolist(),
                  _tags(rng, people, sizes), special.tolist(), strict=True)
    rows = out["person"].rows
    for k, (name, number, abroad, phoned, phone, male, birth, kind, h, relation, tags,
            category) in enumerate(columns):
        doc = (registry.document("passport", registry.passport()) if abroad
               else registry.document("resident_id", number))
        rows.append((pid + k, name, *doc, *registry.phone(phone if phoned else None),
                     "male" if male else "female", birth, kind, hid + h, relation,
                     homes[h].residence_id, tags, category or None, grid.path,
                     grid.region_id))


def _grid_places(grid: _Grid, built: _Built, rng: np.random.Generator, people: _People,
                 usccs: set[str], out: dict[str, _Table]) -> None:
    """Write the grid's key places, city components and enterprises."""
    n = len(built.ids)
    short = grid.shape.name.removesuffix("网格")
    count = int(rng.poisson(max(n / 50, 0.3)))
    if count:
        pts = settlement_points(grid.shape, count, rng)
        pick = rng.choice(len(_PLACES), size=count, p=_weights(p[1] for p in _PLACES))
        sides = np.array([_PLACES[i][3] for i in pick], dtype=float)
        polys = _squares_wkb(pts[:, 0], pts[:, 1], np.maximum(sides, 1.0))
        points = _points_wkb(pts[:, 0], pts[:, 1])
        cells = cells_at_resolutions(pts[:, 0], pts[:, 1], (9,))[9]
        contacts = people.names(rng, count)
        phones = _phones(rng, count)
        for j, i in enumerate(pick):
            category, _, label, side, risk = _PLACES[i]
            phone = phones[j]
            out["key_place"].rows.append((
                f"{short}{label}{j + 1}" if side else f"{short}{label}", category, contacts[j],
                people.crypto.encrypt(phone, context=CONTACT_PHONE_CONTEXT), mask_phone(phone),
                risk, polys[j] if side else points[j], int(cells[j]), grid.path,
                grid.region_id))
    _grid_components(grid, n, rng, out)
    _grid_enterprises(grid, built, rng, people, usccs, out)


def _weights(values: Iterable[float]) -> np.ndarray:
    w = np.array(list(values), dtype=float)
    return w / w.sum()


def _grid_components(grid: _Grid, buildings: int, rng: np.random.Generator,
                     out: dict[str, _Table]) -> None:
    count = int(rng.poisson(max(buildings * 0.4, 1)))
    pts = settlement_points(grid.shape, count, rng)
    pick = rng.choice(len(_COMPONENTS), size=count, p=_weights(c[1] for c in _COMPONENTS))
    status = rng.choice(["intact", "damaged", "missing"], size=count, p=[0.92, 0.06, 0.02])
    points = _points_wkb(pts[:, 0], pts[:, 1])
    cells = cells_at_resolutions(pts[:, 0], pts[:, 1], (9,))[9]
    for j, i in enumerate(pick):
        category, _, prefix, owner = _COMPONENTS[i]
        out["city_component"].rows.append((
            f"{prefix}{grid.shape.code}{j + 1:05d}", category, str(status[j]), owner, points[j],
            int(cells[j]), grid.path, grid.region_id))


def _grid_enterprises(grid: _Grid, built: _Built, rng: np.random.Generator, people: _People,
                      usccs: set[str], out: dict[str, _Table]) -> None:
    sites = [i for i, c in enumerate(built.category) if c in ("commercial", "office",
                                                               "industrial")]
    count = min(len(sites), int(rng.poisson(len(built.ids) * 0.05)))
    if not count:
        return
    chosen = rng.choice(sites, size=count, replace=False)
    points = _points_wkb(built.lon[chosen], built.lat[chosen])
    cells = cells_at_resolutions(built.lon[chosen], built.lat[chosen], (9,))[9]
    bosses = people.names(rng, count)
    brands = people.names(rng, count)
    for j in range(count):
        uscc = synthetic_uscc(rng, grid.shape.code[:6])
        while uscc in usccs:
            uscc = synthetic_uscc(rng, grid.shape.code[:6])
        usccs.add(uscc)
        industry = str(rng.choice(_INDUSTRIES))
        out["enterprise"].rows.append((
            f"温州{brands[j][1:]}{industry.removesuffix('业')}有限公司", uscc,
            str(rng.choice(["A", "B", "C", "D"], p=[0.3, 0.5, 0.15, 0.05])), bosses[j],
            industry, int(rng.lognormal(2.5, 1.0)), points[j], int(cells[j]), grid.path,
            grid.region_id))


# --- organizations ----------------------------------------------------------------------------


def _organizations(ctx: DemoContext, region_ids: dict[str, int], out: dict[str, _Table]) -> None:
    """Write a party body and an administration per township and per village (by region)."""
    paths = ctx.paths
    for r in ctx.regions:
        if r.level == "township":
            rows = [(f"{r.name}党工委", "party"), (f"{r.name}办事处" if "街道" in r.name
                                                   else f"{r.name}人民政府", "government")]
        elif r.level == "village":
            rows = [(f"{r.name}党组织", "party"), (f"{r.name}委员会", "village_organization")]
        else:
            continue
        for name, category in rows:
            out["organization"].rows.append((name, category, None, None, paths[r.code],
                                             region_ids[r.code]))


# --- addresses ------------------------------------------------------------------------------


def _township_addresses(cur: Any, path: str) -> tuple[dict[str, list[tuple[int, float, float]]],
                                                      dict[int, list[tuple[int, str | None,
                                                                           str]]]]:
    """Return a township's building sites by grid code, and room addresses by building address.

    Sites are building-level addresses and door-level ones without building rows beneath.
    """
    cur.execute(
        "SELECT a.id, ST_X(a.geom), ST_Y(a.geom), subpath(a.path, -1)::text FROM "
        "standard_address a WHERE a.path <@ %s::ltree AND (a.level = 'building' OR "
        "(a.level = 'door' AND NOT EXISTS (SELECT 1 FROM standard_address c "
        "WHERE c.parent_id = a.id AND c.level = 'building'))) AND a.building_id IS NULL "
        "ORDER BY a.id", (path,))
    sites: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for aid, lon, lat, code in cur.fetchall():
        sites[code].append((aid, lon, lat))
    cur.execute(
        "SELECT CASE WHEN p.level = 'unit' THEN p.parent_id ELSE p.id END, r.id, r.unit, "
        "r.room FROM standard_address r JOIN standard_address p ON p.id = r.parent_id "
        "WHERE r.level = 'room' AND r.path <@ %s::ltree ORDER BY r.id", (path,))
    rooms: dict[int, list[tuple[int, str | None, str]]] = defaultdict(list)
    for building_address, aid, unit, room in cur.fetchall():
        rooms[building_address].append((aid, unit, room))
    return sites, rooms


def _floor_of(room: str) -> int:
    """Return the floor a room plate names (302 → 3), or 0 if it does not say."""
    digits = room.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return int(digits) // 100 if digits.isdigit() else 0


def _link_addresses(cur: Any) -> int:
    """Point standard addresses back at the buildings made on them; return the sites linked.

    The site first, then its units and rooms (and rooms under units): what the addresses
    step's link_buildings does, set-based from building.address_id so no id lists are kept.
    """
    cur.execute("UPDATE standard_address a SET building_id = b.id FROM building b "
                "WHERE b.address_id = a.id AND a.building_id IS NULL")
    sites = int(cur.rowcount)
    for _ in range(2):
        cur.execute("UPDATE standard_address a SET building_id = p.building_id "
                    "FROM standard_address p WHERE a.parent_id = p.id AND a.level IN "
                    "('unit', 'room') AND p.building_id IS NOT NULL AND a.building_id IS NULL")
    return sites


# --- the step -------------------------------------------------------------------------------


def _plan(ctx: DemoContext, region_ids: dict[str, int],
          rng: np.random.Generator) -> dict[str, list[_Grid]]:
    """Return the grids to fill by township code, each with its share of the buildings."""
    buildings, _ = SIZES[ctx.scale]
    by_code = {r.code: r for r in ctx.regions}
    grids = [r for r in ctx.regions if r.level == "grid" and r.grid_type != "dedicated"]
    weights = np.array([(3.0 if g.urban else 1.0) * rng.uniform(0.6, 1.4) for g in grids])
    shares = rng.multinomial(buildings, weights / weights.sum())
    plan: dict[str, list[_Grid]] = defaultdict(list)
    for g, n in zip(grids, shares, strict=True):
        township = by_code[g.parent_code] if g.parent_code else g
        while township.level != "township" and township.parent_code in by_code:
            township = by_code[township.parent_code]
        plan[township.code].append(_Grid(g, ctx.paths[g.code], region_ids[g.code], int(n), []))
    return plan


def _fill_township(cur: Any, ctx: DemoContext, township: str, grids: list[_Grid], ids: _Ids,
                   people: _People, usccs: set[str], writer: _Writer,
                   out: dict[str, _Table]) -> None:
    """Generate one township's grids, handing rows to the writer as batches fill."""
    buildings_total, persons_total = SIZES[ctx.scale]
    with writer.lock:
        sites, rooms = _township_addresses(cur, ctx.paths[township])
    # Room 302 is on floor 3: a building must be as tall as its room plates say.
    dwellings = {a: max((_floor_of(r[2]) for r in listed), default=0)
                 for a, listed in rooms.items()}
    placed = _Placed()
    for grid in grids:
        planned = grid.buildings
        grid.addresses = _distinct_sites(sites.get(grid.shape.code, []))
        grid.addresses = grid.addresses[: 2 * max(planned, 1)]
        # Every address site gets its building, even beyond the planned number.
        grid.buildings = max(planned, len(grid.addresses))
        rng = np.random.default_rng([ctx.seed, _STREAM, int(grid.shape.code)])
        built = _grid_buildings(grid, rng, ids, dwellings, placed, out)
        # People follow the planned share, not the buildings: where the addresses step made
        # more sites than planned, the extra buildings stand emptier.
        persons = round(planned * persons_total / buildings_total)
        homes = _grid_residences(grid, built, round(persons / 2.8), rng, ids, rooms, out)
        _grid_people(grid, homes, persons, rng, ids, people, out)
        _count_households(built, homes, out["building"])
        _grid_places(grid, built, rng, people, usccs, out)
        if writer.pending() >= _BATCH_ROWS:
            writer.submit()


def load(conn: Any, ctx: DemoContext) -> dict[str, int]:
    """Generate and COPY the base data of the demo city; return rows written per table."""
    out = _tables()
    with conn.cursor() as cur:
        cur.execute("SELECT code, id FROM region WHERE valid_to IS NULL")
        region_ids = dict(cur.fetchall())
        cur.execute("SET LOCAL gridgov.trusted_location = 'on'")
        plan = _plan(ctx, region_ids, ctx.rng(_STREAM))
        writer = _Writer(conn, out)
        ids, people, usccs = _Ids(cur, writer.lock), _People(ctx), set[str]()
        try:
            for done, code in enumerate(sorted(plan), start=1):
                _fill_township(cur, ctx, code, plan[code], ids, people, usccs, writer, out)
                ctx.progress("base data", done, len(plan))
            _organizations(ctx, region_ids, out)
        except BaseException:
            writer.abandon()
            raise
        writer.close()
        linked = _link_addresses(cur)
        cur.execute("SET LOCAL gridgov.trusted_location = 'off'")
    # Where the time went, for bench/ and the loader's report (COPY includes the indexes).
    ctx.shared["objects_copy_seconds"] = {name: round(t.seconds, 2) for name, t in out.items()}
    counts = {name: t.written for name, t in out.items()}
    counts["building_address_link"] = linked
    return counts
