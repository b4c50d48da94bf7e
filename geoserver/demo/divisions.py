"""Wenzhou's administrative divisions and county facts, read from the packaged reference CSVs."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources

CITY_CODE = "330300"

_DATA_PACKAGE = "geoserver.demo"
_DIVISIONS_CSV = "wenzhou_divisions_2023.csv"
_FACTS_CSV = "wenzhou_counties_facts.csv"

# 统计用区划代码 reserves township numbers 198–199 for "直辖村级区划": a virtual township that only
# exists so that villages directly under a county (龙港's communities) still have a parent.
_VIRTUAL_TOWNSHIP_NUMBERS = range(198, 200)
_VIRTUAL_NAME_MARKS = ("直辖", "林场", "虚拟")


class RegionLevel(StrEnum):
    """区划层级: city 市, county 县(区、市), township 乡镇(街道), village 村(社区), grid 网格."""

    CITY = "city"
    COUNTY = "county"
    TOWNSHIP = "township"
    VILLAGE = "village"
    GRID = "grid"


@dataclass(frozen=True, slots=True)
class Division:
    """One administrative division (行政区划) as published in the statistical code table."""

    code: str
    name: str
    level: RegionLevel
    parent_code: str

    @property
    def virtual(self) -> bool:
        """Tell whether this is a statistical quasi-unit rather than a real place."""
        return is_virtual(self.code, self.name, self.level)


@dataclass(frozen=True, slots=True)
class CountyFacts:
    """Approximate facts about one county: centroid and bbox in lon/lat (WGS84), area in km²."""

    code: str
    name: str
    centroid_lon: float
    centroid_lat: float
    area_km2: float
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


@dataclass(frozen=True)
class DivisionTree:
    """All divisions in file order, with lookups by code and by parent."""

    divisions: tuple[Division, ...]
    _by_code: dict[str, Division] = field(init=False, repr=False)
    _children: dict[str, tuple[Division, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        children: dict[str, list[Division]] = {}
        for division in self.divisions:
            children.setdefault(division.parent_code, []).append(division)
        object.__setattr__(self, "_by_code", {d.code: d for d in self.divisions})
        object.__setattr__(
            self, "_children", {code: tuple(kids) for code, kids in children.items()}
        )

    def __iter__(self) -> Iterator[Division]:
        return iter(self.divisions)

    def __len__(self) -> int:
        return len(self.divisions)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    def get(self, code: str) -> Division:
        """Return the division with this code; raise KeyError if there is none."""
        return self._by_code[code]

    def children(self, code: str) -> tuple[Division, ...]:
        """Return the direct children of a division, in code-table order."""
        return self._children.get(code, ())

    def at_level(self, level: RegionLevel | str) -> tuple[Division, ...]:
        """Return every division of one level, in code-table order."""
        return tuple(d for d in self.divisions if d.level == level)

    @property
    def root(self) -> Division:
        """Return the city, the root of the tree."""
        return self._by_code[CITY_CODE]


def is_virtual(code: str, name: str, level: RegionLevel | str) -> bool:
    """Tell whether a division is virtual: a 直辖 placeholder, a 林场 or a 虚拟 statistical unit."""
    if any(mark in name for mark in _VIRTUAL_NAME_MARKS):
        return True
    return level == RegionLevel.TOWNSHIP and int(code[6:9]) in _VIRTUAL_TOWNSHIP_NUMBERS


def _read_csv(filename: str) -> list[dict[str, str]]:
    data = resources.files(_DATA_PACKAGE).joinpath("data")
    text = data.joinpath(filename).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@cache
def load_division_tree() -> DivisionTree:
    """Load Wenzhou's city, counties, townships and villages (统计用区划代码 2023)."""
    return DivisionTree(
        tuple(
            Division(
                code=row["code"],
                name=row["name"],
                level=RegionLevel(row["level"]),
                parent_code=row["parent_code"],
            )
            for row in _read_csv(_DIVISIONS_CSV)
        )
    )


@cache
def load_county_facts() -> dict[str, CountyFacts]:
    """Load the approximate centroid, area and bbox of each county, keyed by county code."""
    facts = {}
    for row in _read_csv(_FACTS_CSV):
        numbers = {key: float(value) for key, value in row.items() if key not in ("code", "name")}
        facts[row["code"]] = CountyFacts(code=row["code"], name=row["name"], **numbers)
    return facts
