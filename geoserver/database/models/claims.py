"""Pooled records (归集) and the claim queue (数据认领): items, candidate grids, history."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Computed, Enum, ForeignKey, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from geoserver.database.models.base import Base
from geoserver.database.models.region import LTree


def _enum(cls: type[StrEnum], name: str) -> Enum:
    """Map a StrEnum onto an existing PostgreSQL enum type by value."""
    return Enum(cls, name=name, values_callable=lambda e: [x.value for x in e], create_type=False)


class PooledRecordStatus(StrEnum):
    """归集记录状态: pending 待认领, claimed 已认领, declined 已退回, transferred 已转交,
    imported 已入库 (became an object of its target kind)."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DECLINED = "declined"
    TRANSFERRED = "transferred"
    IMPORTED = "imported"


class ClaimReason(StrEnum):
    """Why an item waits in the claim queue (认领原因)."""

    NO_LOCATION = "no_location"
    BOUNDARY = "boundary"
    OUTSIDE_GRIDS = "outside_grids"
    ADDRESS_ONLY = "address_only"
    DECLINED = "declined"
    IN_GRID = "in_grid"


class ClaimStatus(StrEnum):
    """认领状态: open 待认领, claimed 已认领, declined 已退回 (waiting higher up),
    transferred 已转交 (waiting at the target)."""

    OPEN = "open"
    CLAIMED = "claimed"
    DECLINED = "declined"
    TRANSFERRED = "transferred"


#: States in which an item still waits for someone to act.
UNSETTLED_STATES = frozenset({ClaimStatus.OPEN, ClaimStatus.DECLINED, ClaimStatus.TRANSFERRED})


class ClaimActionKind(StrEnum):
    """认领操作: claim 认领, decline 退回, transfer 转交, auto_claim 自动认领."""

    CLAIM = "claim"
    DECLINE = "decline"
    TRANSFER = "transfer"
    AUTO_CLAIM = "auto_claim"


class PooledRecord(Base):
    """One record gathered from a department (归集), located by its point when it has one."""

    __tablename__ = "pooled_record"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source_department: Mapped[str] = mapped_column(Text)
    source_record_id: Mapped[str] = mapped_column(Text)
    target_kind: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    address: Mapped[str | None] = mapped_column(Text)
    source_region_code: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=4490, spatial_index=False))
    geom_3857: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=3857, spatial_index=False), Computed("x"))
    location_source: Mapped[str | None] = mapped_column(Text)
    h3_r9: Mapped[int | None] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(LTree())
    region_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("region.id"))
    status: Mapped[PooledRecordStatus] = mapped_column(
        _enum(PooledRecordStatus, "pooled_record_status"), default=PooledRecordStatus.PENDING)
    imported_kind: Mapped[str | None] = mapped_column(Text)
    imported_id: Mapped[int | None] = mapped_column(BigInteger)
    ingested_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)


class ClaimItem(Base):
    """One entry of the claim queue: a base-data row (kind, id) or a pooled record."""

    __tablename__ = "claim_item"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reason: Mapped[ClaimReason] = mapped_column(_enum(ClaimReason, "claim_reason"))
    origin_reason: Mapped[ClaimReason] = mapped_column(_enum(ClaimReason, "claim_reason"))
    subject_kind: Mapped[str | None] = mapped_column(Text)
    subject_id: Mapped[int | None] = mapped_column(BigInteger)
    pooled_record_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("pooled_record.id"))
    #: The region that must act now (持有区域).
    path: Mapped[str] = mapped_column(LTree())
    status: Mapped[ClaimStatus] = mapped_column(
        _enum(ClaimStatus, "claim_status"), default=ClaimStatus.OPEN)
    claimed_region_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("region.id"))
    claimed_code: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[int | None] = mapped_column(BigInteger)
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)


class ClaimCandidate(Base):
    """A grid that may take an item, with how much of it (polygons) or how far (points)."""

    __tablename__ = "claim_candidate"

    claim_item_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("claim_item.id", ondelete="CASCADE"), primary_key=True)
    region_code: Mapped[str] = mapped_column(Text, primary_key=True)
    region_id: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(LTree())
    overlap_share: Mapped[float | None]
    distance_m: Mapped[float | None]


class ClaimAction(Base):
    """One append-only history row: who moved an item from where to where, and why."""

    __tablename__ = "claim_action"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    claim_item_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("claim_item.id"))
    action: Mapped[ClaimActionKind] = mapped_column(_enum(ClaimActionKind, "claim_action_kind"))
    from_path: Mapped[str] = mapped_column(LTree())
    to_path: Mapped[str] = mapped_column(LTree())
    region_code: Mapped[str | None] = mapped_column(Text)
    actor_user_id: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]
