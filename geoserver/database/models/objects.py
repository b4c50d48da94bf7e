"""Base data (基础数据库): buildings, residences, households, persons, organizations, key places,
city components and enterprises (migration 0004.base_objects)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Computed, Enum, ForeignKey, LargeBinary, SmallInteger, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Numeric

from geoserver.database.models.base import Base
from geoserver.database.models.region import LTree
from geoserver.domain.documents import DocumentType, Gender


def _enum(cls: type[StrEnum], name: str) -> Enum:
    """Map a StrEnum onto an existing PostgreSQL enum type by value."""
    return Enum(cls, name=name, values_callable=lambda e: [x.value for x in e], create_type=False)


class BuildingCategory(StrEnum):
    """建筑类别: residential 住宅, commercial 商业, office 办公, industrial 工业, public 公共,
    other 其他."""

    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"
    OFFICE = "office"
    INDUSTRIAL = "industrial"
    PUBLIC = "public"
    OTHER = "other"


class ResidenceUsage(StrEnum):
    """住所用途: owner_occupied 自住, rented 出租, vacant 空置, business 经营."""

    OWNER_OCCUPIED = "owner_occupied"
    RENTED = "rented"
    VACANT = "vacant"
    BUSINESS = "business"


class PersonType(StrEnum):
    """人口类型: registered 户籍, floating 流动, overseas 境外."""

    REGISTERED = "registered"
    FLOATING = "floating"
    OVERSEAS = "overseas"


class SpecialCategory(StrEnum):
    """特殊人群 category; each needs its own permission to be seen.

    community_correction 社区矫正, drug_rehab 戒毒 (社区戒毒/康复), mental_illness 严重精神障碍,
    released_prisoner 刑满释放, petition_key 重点信访, aids_risk 艾滋病危险行为人员,
    key_youth 重点青少年.
    """

    COMMUNITY_CORRECTION = "community_correction"
    DRUG_REHAB = "drug_rehab"
    MENTAL_ILLNESS = "mental_illness"
    RELEASED_PRISONER = "released_prisoner"
    PETITION_KEY = "petition_key"
    AIDS_RISK = "aids_risk"
    KEY_YOUTH = "key_youth"


class ComponentStatus(StrEnum):
    """部件状态: intact 完好, damaged 损坏, missing 丢失."""

    INTACT = "intact"
    DAMAGED = "damaged"
    MISSING = "missing"


class CreditGrade(StrEnum):
    """企业信用等级 A–D (A best)."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"


class RiskLevel(StrEnum):
    """风险等级: low 低, medium 中, high 高."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def _geom(kind: str) -> Geometry:
    return Geometry(kind, srid=4490, spatial_index=False)


def _geom_3857(kind: str) -> Geometry:
    return Geometry(kind, srid=3857, spatial_index=False)


class _Located:
    """Columns every base-data table shares: location path, region, bookkeeping."""

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    path: Mapped[str] = mapped_column(LTree())
    region_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("region.id"))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)


class Building(_Located, Base):
    """建筑物: a building footprint; its centroid carries H3 cells."""

    __tablename__ = "building"

    code: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(_enum(BuildingCategory, "building_category"))
    floors: Mapped[int | None] = mapped_column(SmallInteger)
    households: Mapped[int | None]
    address_id: Mapped[int | None] = mapped_column(BigInteger)
    geom: Mapped[Any] = mapped_column(_geom("MULTIPOLYGON"))
    geom_3857: Mapped[Any] = mapped_column(_geom_3857("MULTIPOLYGON"), Computed("x"))
    centroid: Mapped[Any] = mapped_column(_geom("POINT"), Computed("x"))
    h3_r7: Mapped[int | None] = mapped_column(BigInteger)
    h3_r8: Mapped[int | None] = mapped_column(BigInteger)
    h3_r9: Mapped[int | None] = mapped_column(BigInteger)


class Residence(_Located, Base):
    """住所: a unit or room in a building; located where its building is."""

    __tablename__ = "residence"

    building_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("building.id"))
    address_id: Mapped[int | None] = mapped_column(BigInteger)
    unit: Mapped[str | None] = mapped_column(Text)
    floor: Mapped[int | None] = mapped_column(SmallInteger)
    room: Mapped[str] = mapped_column(Text)
    usage: Mapped[str] = mapped_column(_enum(ResidenceUsage, "residence_usage"))
    area_m2: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))


class Household(_Located, Base):
    """户: a household living in a residence, with its head (户主)."""

    __tablename__ = "household"

    household_no: Mapped[str] = mapped_column(Text)
    residence_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("residence.id"))
    head_person_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("person.id"))


class Person(_Located, Base):
    """实有人口: a person; documents and phones stored encrypted, hashed and masked."""

    __tablename__ = "person"

    name: Mapped[str] = mapped_column(Text)
    document_type: Mapped[str | None] = mapped_column(_enum(DocumentType, "document_type"))
    document_number_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    document_number_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    document_number_masked: Mapped[str | None] = mapped_column(Text)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_masked: Mapped[str | None] = mapped_column(Text)
    gender: Mapped[str | None] = mapped_column(_enum(Gender, "gender"))
    birth_date: Mapped[date | None]
    person_type: Mapped[str] = mapped_column(_enum(PersonType, "person_type"))
    household_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("household.id"))
    relation_to_head: Mapped[str | None] = mapped_column(Text)
    residence_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("residence.id"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    special_category: Mapped[str | None] = mapped_column(Text)


class Organization(_Located, Base):
    """组织机构: an organisation, optionally with a point."""

    __tablename__ = "organization"

    name: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text)
    uscc: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any | None] = mapped_column(_geom("POINT"))
    geom_3857: Mapped[Any | None] = mapped_column(_geom_3857("POINT"), Computed("x"))
    h3_r9: Mapped[int | None] = mapped_column(BigInteger)


class KeyPlace(_Located, Base):
    """重点场所: a school, hospital, market … as a point or the premises' outline."""

    __tablename__ = "key_place"

    name: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    contact_name: Mapped[str | None] = mapped_column(Text)
    contact_phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    contact_phone_masked: Mapped[str | None] = mapped_column(Text)
    risk_level: Mapped[str] = mapped_column(_enum(RiskLevel, "risk_level"))
    geom: Mapped[Any] = mapped_column(_geom("GEOMETRY"))
    geom_3857: Mapped[Any] = mapped_column(_geom_3857("GEOMETRY"), Computed("x"))
    h3_r9: Mapped[int | None] = mapped_column(BigInteger)


class CityComponent(_Located, Base):
    """城市部件: a manhole cover, street lamp, hydrant … with its state."""

    __tablename__ = "city_component"

    code: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(_enum(ComponentStatus, "component_status"))
    owner_department: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(_geom("POINT"))
    geom_3857: Mapped[Any] = mapped_column(_geom_3857("POINT"), Computed("x"))
    h3_r9: Mapped[int | None] = mapped_column(BigInteger)


class Enterprise(_Located, Base):
    """企业: an enterprise with its USCC (统一社会信用代码) and credit grade."""

    __tablename__ = "enterprise"

    name: Mapped[str] = mapped_column(Text)
    uscc: Mapped[str] = mapped_column(Text)
    credit_grade: Mapped[str | None] = mapped_column(_enum(CreditGrade, "credit_grade"))
    legal_representative: Mapped[str | None] = mapped_column(Text)
    industry: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    staff_count: Mapped[int | None]
    geom: Mapped[Any | None] = mapped_column(_geom("POINT"))
    geom_3857: Mapped[Any | None] = mapped_column(_geom_3857("POINT"), Computed("x"))
    h3_r9: Mapped[int | None] = mapped_column(BigInteger)
