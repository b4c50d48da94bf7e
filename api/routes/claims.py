"""Claim queue (数据认领) and pooled records (归集): list, claim, decline, transfer, auto-claim,
ingest a batch, and queue base-data rows near grid boundaries."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import AuditContextDep, SessionDep, require
from api.schemas.common import NO_NUL, Id, RegionCode, check_storable
from geoserver.database.models.claims import ClaimReason, ClaimStatus
from geoserver.domain.principal import Principal
from geoserver.errors import TooLarge
from geoserver.services import claims
from geoserver.services.audit import AuditContext, audit
from geoserver.services.claims import (
    AutoClaimReport,
    ClaimItemsPage,
    ClaimOutcome,
    EnqueueReport,
    IngestReport,
    PooledRecordIn,
)

router = APIRouter(prefix="/api/v1", tags=["claims"])

Reader = Annotated[Principal, Depends(require("claim.read"))]
Actor = Annotated[Principal, Depends(require("claim.write"))]
Manager = Annotated[Principal, Depends(require("claim.manage"))]
Ingester = Annotated[Principal, Depends(require("pooled_record.write"))]
#: Records per ingest request: bigger batches go in several requests (or through the ETL).
MAX_BATCH = 5000
CLAIMABLE_KINDS = ("building", "key_place", "city_component", "enterprise", "organization",
                   "standard_address")
GridCode = Annotated[str, Field(pattern=r"^[0-9A-Za-z]{2,24}$")]
Note = Annotated[str | None, Field(default=None, max_length=500, pattern=NO_NUL)]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1, description="the version you saw")
    note: Note = None


class ClaimIn(_Action):
    """Claim an item for a grid in your jurisdiction under the region holding it."""

    grid_code: GridCode


class DeclineIn(_Action):
    """Decline an item (退回): the holder sends it up; a candidate grid strikes itself off."""


class TransferIn(_Action):
    """Transfer an item (转交) to another region in your jurisdiction."""

    to_region_code: GridCode


class AutoClaimIn(BaseModel):
    """Auto-claim the open items in your jurisdiction (oldest first, up to ``limit``)."""

    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(default=None, ge=1, le=1_000_000)
    min_share: float = Field(default=claims.DOMINANT_SHARE, gt=0, le=1, allow_inf_nan=False)


class IngestIn(BaseModel):
    """A batch of pooled records (归集) from departments, at most MAX_BATCH per request."""

    model_config = ConfigDict(extra="forbid")

    records: list[PooledRecordIn] = Field(json_schema_extra={"maxItems": MAX_BATCH})
    boundary_m: float = Field(default=0.0, ge=0, le=claims.MAX_BOUNDARY_M, allow_inf_nan=False,
                              description="points this close to another grid are 'boundary'")


class EnqueueIn(BaseModel):
    """Queue rows of a kind lying within distance_m of a grid boundary or outside every grid."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[CLAIMABLE_KINDS]  # type: ignore[valid-type]
    distance_m: float = Field(gt=0, le=claims.MAX_BOUNDARY_M, allow_inf_nan=False)


def _audit(session: Session, user: Principal, context: AuditContext, action: str,
           item_id: int | None, detail: Any) -> None:
    audit(session, actor=user, action=f"claim.{action}", object_kind="claim_item",
          object_id=None if item_id is None else str(item_id), detail=detail, context=context)


@router.get("/claims", response_model=ClaimItemsPage,
            summary="The claim queue you can see, with counts by reason")
def list_claims(
    user: Reader, session: SessionDep, status: ClaimStatus | None = None,
    reason: ClaimReason | None = None, region_code: RegionCode = None,
    limit: Annotated[int, Query(ge=1, le=claims.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ClaimItemsPage:
    """List unsettled items (or those of ``status``); counts ignore the ``reason`` filter."""
    return claims.list_items(session, actor=user, status=status, reason=reason,
                             region_code=region_code, limit=limit, offset=offset)


@router.post("/claims/{item_id}/claim", response_model=ClaimOutcome, summary="认领: claim")
def claim_item(item_id: Id, body: ClaimIn, user: Actor, session: SessionDep,
               context: AuditContextDep) -> ClaimOutcome:
    """Claim an item for a grid; the record or row takes that grid's location."""
    check_storable(body)
    outcome = claims.claim(session, actor=user, item_id=item_id, grid_code=body.grid_code,
                           version=body.version, note=body.note)
    _audit(session, user, context, "claim", item_id, asdict(outcome))
    return outcome


@router.post("/claims/{item_id}/decline", response_model=ClaimOutcome, summary="退回: decline")
def decline_item(item_id: Id, body: DeclineIn, user: Actor, session: SessionDep,
                 context: AuditContextDep) -> ClaimOutcome:
    """Decline an item: it goes up to the parent region, or a candidate grid drops out."""
    check_storable(body)
    outcome = claims.decline(session, actor=user, item_id=item_id, note=body.note,
                             version=body.version)
    _audit(session, user, context, "decline", item_id, asdict(outcome))
    return outcome


@router.post("/claims/{item_id}/transfer", response_model=ClaimOutcome,
             summary="转交: transfer within your jurisdiction")
def transfer_item(item_id: Id, body: TransferIn, user: Actor, session: SessionDep,
                  context: AuditContextDep) -> ClaimOutcome:
    """Hand an item to another region you hold; for a neighbour's, decline it instead."""
    check_storable(body)
    outcome = claims.transfer(session, actor=user, item_id=item_id,
                              to_region_code=body.to_region_code, note=body.note,
                              version=body.version)
    _audit(session, user, context, "transfer", item_id, asdict(outcome))
    return outcome


@router.post("/claims/auto", response_model=AutoClaimReport, summary="自动认领: auto-claim")
def auto_claim(body: AutoClaimIn, user: Manager, session: SessionDep,
               context: AuditContextDep) -> AutoClaimReport:
    """Geocode address-only records, locate, and claim items with one clear grid."""
    report = claims.auto_claim(session, actor=user, limit=body.limit, min_share=body.min_share)
    _audit(session, user, context, "auto", None, asdict(report))
    return report


@router.post("/claims/enqueue-boundary", response_model=EnqueueReport,
             summary="Queue rows near grid boundaries or outside every grid")
def enqueue_boundary(body: EnqueueIn, user: Manager, session: SessionDep,
                     context: AuditContextDep) -> EnqueueReport:
    """Queue a kind's rows within distance_m of a boundary; running it again adds nothing."""
    report = claims.enqueue_boundary_rows(session, actor=user, kind=body.kind,
                                          distance_m=body.distance_m)
    _audit(session, user, context, "enqueue", None, asdict(report))
    return report


@router.post("/pooled-records", status_code=201, response_model=IngestReport,
             summary=f"归集: ingest pooled records (at most {MAX_BATCH} per request)")
def ingest(body: IngestIn, user: Ingester, session: SessionDep,
           context: AuditContextDep) -> IngestReport:
    """Store records and queue each for claiming; re-pushed records are skipped."""
    if len(body.records) > MAX_BATCH:
        raise TooLarge(f"at most {MAX_BATCH} records per request; split the batch")
    check_storable(body)
    report = claims.ingest_pooled(session, actor=user, records=body.records,
                                  boundary_m=body.boundary_m)
    _audit(session, user, context, "ingest", None,
           {"created": report.created, "duplicates": report.duplicates,
            "by_reason": report.by_reason})
    return report
