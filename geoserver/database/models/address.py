"""Standard addresses (标准地址, 四标四实) and the roads they name, as in migration 0003."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Computed, Enum, FetchedValue, ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from geoserver.database.models.base import Base
from geoserver.database.models.region import LTree


class AddressLevel(StrEnum):
    """地址层级: door 门牌, building 幢, unit 单元, room 室."""

    DOOR = "door"
    BUILDING = "building"
    UNIT = "unit"
    ROOM = "room"


class Road(Base):
    """A road (路/街/巷/弄) known in a township; registered from the addresses that name it."""

    __tablename__ = "road"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    township_code: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(LTree())
    region_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("region.id"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)


class StandardAddress(Base):
    """One standard address (标准地址) at one level, with its point."""

    __tablename__ = "standard_address"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(
        Enum(AddressLevel, name="address_level", values_callable=lambda e: [x.value for x in e],
             create_type=False))
    parent_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("standard_address.id"))
    county_code: Mapped[str] = mapped_column(Text)
    township_code: Mapped[str] = mapped_column(Text)
    village_code: Mapped[str | None] = mapped_column(Text)
    road: Mapped[str | None] = mapped_column(Text)
    door_number: Mapped[str] = mapped_column(Text)
    door_base: Mapped[int | None] = mapped_column(Computed("x"))
    building: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(Text)
    room: Mapped[str | None] = mapped_column(Text)
    full_text: Mapped[str] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=4490, spatial_index=False))
    geom_3857: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=3857, spatial_index=False), Computed("x"))
    # Derived from the point by the location trigger; never set by a service.
    path: Mapped[str] = mapped_column(
        LTree(), server_default=FetchedValue(), server_onupdate=FetchedValue())
    region_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("region.id"), server_default=FetchedValue(),
        server_onupdate=FetchedValue())
    h3_r9: Mapped[int | None] = mapped_column(BigInteger)
    building_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=FetchedValue())
    updated_at: Mapped[datetime] = mapped_column(server_default=FetchedValue())
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"eager_defaults": True}
