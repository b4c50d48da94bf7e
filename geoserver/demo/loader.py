"""Load a deterministic demo Wenzhou: regions first, then each step in ``geoserver/demo/steps``.

Everything is written by the owner role in one transaction, so a failed load leaves nothing
behind. Steps are modules with ``load(conn, ctx) -> dict[str, int]`` (counts of rows written);
later work (events, tracks …) adds its own step module and a line in ``STEPS``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg2
from psycopg2.extras import execute_values

from geoserver.demo.geometry import RegionShape, generate_regions
from geoserver.errors import Conflict
from geoserver.security.crypto import PersonalDataCrypto

Progress = Callable[[str, int, int], None]

#: Step modules under geoserver.demo.steps, in order; a missing module is skipped.
STEPS = ("addresses", "objects", "staff", "tracks", "events")

SCALES = ("tiny", "demo", "city")

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"  # noqa: E501
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红春晓文斌海波玉兰云飞燕鹏辉俊宇浩然子涵梓萱雨欣佳怡晨阳思远"  # noqa: E501


def _noop(label: str, done: int, total: int) -> None:
    return None


@dataclass
class DemoContext:
    """What every demo step gets."""

    scale: str
    seed: int
    regions: list[RegionShape]
    crypto: PersonalDataCrypto
    progress: Progress = _noop
    #: Steps may leave things here for later steps (e.g. address points for buildings).
    shared: dict[str, Any] = field(default_factory=dict)

    def rng(self, stream: int) -> np.random.Generator:
        """Return a generator for one purpose, independent of every other step's draws."""
        return np.random.default_rng([self.seed, stream])

    @property
    def paths(self) -> dict[str, str]:
        """Return region code → ltree path."""
        if "paths" not in self.shared:
            self.shared["paths"] = region_paths(self.regions)
        return self.shared["paths"]  # type: ignore[no-any-return]


def person_name(rng: np.random.Generator) -> str:
    """Return a plausible Chinese name."""
    given = "".join(rng.choice(list(_GIVEN), size=int(rng.integers(1, 3))))
    return str(rng.choice(list(_SURNAMES))) + given


def synthetic_phone(rng: np.random.Generator) -> str:
    """Return a plausible mainland mobile number."""
    return "1" + str(rng.choice(["35", "38", "39", "58", "59", "77", "86", "88"])) + "".join(
        str(d) for d in rng.integers(0, 10, size=8))


def region_paths(regions: list[RegionShape]) -> dict[str, str]:
    """Compute each region's ltree path from the parent chain."""
    by_code = {r.code: r for r in regions}
    paths: dict[str, str] = {}

    def path(code: str) -> str:
        if code not in paths:
            r = by_code[code]
            parent = r.parent_code if r.parent_code in by_code else None
            paths[code] = code if parent is None else f"{path(parent)}.{code}"
        return paths[code]

    for r in regions:
        path(r.code)
    return paths


def _insert_regions(conn: Any, ctx: DemoContext) -> int:
    rng = ctx.rng(1)
    paths = ctx.paths
    order = {"city": 0, "county": 1, "township": 2, "village": 3, "grid": 4, "micro_grid": 5}
    rows = []
    for r in sorted(ctx.regions, key=lambda x: (order[x.level], x.code)):
        lower = r.level in ("village", "grid", "micro_grid")
        households = int(rng.integers(150, 900) if r.urban else rng.integers(60, 400)) if lower \
            else None
        rows.append((
            r.code, r.name, r.level, r.parent_code if r.level != "city" else None, paths[r.code],
            r.geom.wkb_hex, r.virtual, r.grid_type, households,
            int(households * rng.uniform(0.03, 0.08)) if households else None,
            int(households * rng.uniform(2.4, 3.1)) if households else None,
            person_name(rng) if r.level != "city" else None,
            synthetic_phone(rng) if r.level != "city" else None,
            f"{r.name}（演示数据）",
        ))
    with conn.cursor() as cur:
        cur.execute("SET LOCAL gridgov.skip_region_checks = 'on'")
        for i in range(0, len(rows), 2000):
            execute_values(
                cur,
                "INSERT INTO region (code, name, level, parent_code, path, geom, virtual, "
                "grid_type, households, party_members, population, leader_name, leader_phone, "
                "intro) VALUES %s",
                rows[i:i + 2000],
                template="(%s, %s, %s::region_level, %s, %s::ltree, "
                         "ST_Multi(ST_GeomFromWKB(decode(%s, 'hex'), 4490)), %s, "
                         "%s::grid_type, %s, %s, %s, %s, %s, %s)",
            )
            ctx.progress("regions", min(i + 2000, len(rows)), len(rows))
        cur.execute("SET LOCAL gridgov.skip_region_checks = 'off'")
    return len(rows)


def regions_loaded(owner_url: str) -> int:
    """Return how many current regions the database holds."""
    conn = psycopg2.connect(owner_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM region WHERE valid_to IS NULL")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def load_demo(
    owner_url: str,
    *,
    scale: str,
    seed: int,
    crypto: PersonalDataCrypto,
    progress: Progress = _noop,
) -> dict[str, Any]:
    """Generate and load the demo city in one transaction; return counts and timings.

    Raises:
        Conflict: the database already holds regions.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}")
    started = time.perf_counter()
    regions = generate_regions(scale, seed)
    ctx = DemoContext(scale=scale, seed=seed, regions=regions, crypto=crypto, progress=progress)
    timings = {"generate_regions": time.perf_counter() - started}
    counts: dict[str, int] = {}
    conn = psycopg2.connect(owner_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM region")
            if cur.fetchone()[0]:
                raise Conflict("the database already holds regions: demo data loads only "
                               "into an empty database")
            t = time.perf_counter()
            counts["region"] = _insert_regions(conn, ctx)
            timings["regions"] = time.perf_counter() - t
            for name in STEPS:
                try:
                    module = importlib.import_module(f"geoserver.demo.steps.{name}")
                except ModuleNotFoundError as e:
                    if e.name != f"geoserver.demo.steps.{name}":
                        raise
                    continue
                t = time.perf_counter()
                counts.update(module.load(conn, ctx))
                timings[name] = time.perf_counter() - t
            cur.execute("ANALYZE")
    finally:
        conn.close()
    return {"counts": counts, "timings": timings, "logins": ctx.shared.get("logins", [])}
