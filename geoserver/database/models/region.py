"""Regions: city › county › township › village › grid › micro-grid, versioned."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import Computed, Enum, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from geoserver.database.models.base import Base


class LTree(UserDefinedType[str]):
    """PostgreSQL ``ltree`` (region paths such as ``330300.330302.330302006``)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        """Return the SQL type name."""
        return "ltree"


class RegionLevel(StrEnum):
    """区划层级: city 市, county 县(区、市), township 乡镇(街道), village 村(社区), grid 网格,
    micro_grid 微网格."""

    CITY = "city"
    COUNTY = "county"
    TOWNSHIP = "township"
    VILLAGE = "village"
    GRID = "grid"
    MICRO_GRID = "micro_grid"


class GridType(StrEnum):
    """网格类型: general 一般, key 重点, dedicated 专属 (market, school, park under a township)."""

    GENERAL = "general"
    KEY = "key"
    DEDICATED = "dedicated"


LEVEL_ORDER = [lv.value for lv in RegionLevel]


class Region(Base):
    """One version of a region; the current version has ``valid_to`` NULL."""

    __tablename__ = "region"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(Enum(RegionLevel, name="region_level",
                                            values_callable=lambda e: [x.value for x in e],
                                            create_type=False))
    parent_code: Mapped[str | None] = mapped_column(Text)
    path: Mapped[str] = mapped_column(LTree())
    geom: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=4490, spatial_index=False))
    geom_3857: Mapped[Any] = mapped_column(
        Geometry("MULTIPOLYGON", srid=3857, spatial_index=False), Computed("x"))
    label_point: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=4490, spatial_index=False), Computed("x"))
    area_km2: Mapped[float] = mapped_column(Computed("x"))
    virtual: Mapped[bool] = mapped_column(default=False)
    grid_type: Mapped[str | None] = mapped_column(
        Enum(GridType, name="grid_type", values_callable=lambda e: [x.value for x in e],
             create_type=False))
    households: Mapped[int | None]
    party_members: Mapped[int | None]
    population: Mapped[int | None]
    leader_name: Mapped[str | None] = mapped_column(Text)
    leader_phone: Mapped[str | None] = mapped_column(Text)
    intro: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
