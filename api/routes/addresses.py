"""Standard addresses (标准地址, 四标四实): CRUD and lists, geocoding and reverse geocoding."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel

from api.deps import AuditContextDep, SessionDep, require
from api.schemas.common import NO_NUL, BBoxText, RegionCode, Version, check_storable, parse_bbox
from geoserver.database.models.address import AddressLevel
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.services import addresses, geocode
from geoserver.services.addresses import AddressCreate, AddressPage, AddressPublic, AddressUpdate
from geoserver.services.audit import audit
from geoserver.services.geocode import GeocodeHit, ReverseGeocodeResult

router = APIRouter(prefix="/api/v1", tags=["addresses"])

Reader = Annotated[Principal, Depends(require(addresses.ADDRESS_READ))]
Writer = Annotated[Principal, Depends(require(addresses.ADDRESS_WRITE))]
Code = Annotated[str, Path(pattern=r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")]
Crs = Annotated[str, Query(pattern=r"^[A-Za-z0-9:_-]{1,40}$",
                           description="WGS84, CGCS2000, GCJ02 or BD09 (required)")]
Coordinate = Annotated[float, Query(allow_inf_nan=False)]


class GeocodeResult(BaseModel):
    """The standard addresses a text may mean, best first; empty when nothing matches."""

    q: str
    hits: list[GeocodeHit]


def _audit(session: Any, user: Principal, context: Any, action: str, code: str,
           before: AddressPublic | None = None, after: AddressPublic | None = None) -> None:
    audit(session, actor=user, action=f"address.{action}", object_kind="standard_address",
          object_id=code, before=jsonable_encoder(before), after=jsonable_encoder(after),
          context=context)


@router.get("/addresses", response_model=AddressPage, summary="List standard addresses")
def list_addresses(
    user: Reader, session: SessionDep, region_code: RegionCode = None,
    road: Annotated[str | None, Query(max_length=60, pattern=NO_NUL)] = None,
    q: Annotated[str | None, Query(max_length=100, pattern=NO_NUL)] = None,
    bbox: BBoxText = None, level: AddressLevel | None = None,
    limit: Annotated[int, Query(ge=1, le=addresses.MAX_PAGE_SIZE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AddressPage:
    """List addresses in your jurisdiction; bbox is west,south,east,north in CGCS2000/WGS84."""
    return addresses.list_addresses(session, actor=user, region_code=region_code, road=road,
                                    text_query=q, bbox=parse_bbox(bbox), level=level,
                                    limit=limit, offset=offset)


@router.get("/addresses/{code}", response_model=AddressPublic,
            summary="One standard address by code")
def get_address(code: Code, user: Reader, session: SessionDep) -> AddressPublic:
    """Return an address; out of your jurisdiction is 404."""
    return addresses.get_address(session, actor=user, code=code)


@router.post("/addresses", status_code=201, response_model=AddressPublic,
             summary="Create a standard address (door, building, unit or room)")
def create_address(body: AddressCreate, user: Writer, session: SessionDep,
                   context: AuditContextDep) -> AddressPublic:
    """Create an address; its point must lie in the regions it names and in your jurisdiction."""
    check_storable(body)
    created = addresses.create_address(session, actor=user, data=body)
    _audit(session, user, context, "create", created.code, after=created)
    return created


@router.patch("/addresses/{code}", response_model=AddressPublic,
              summary="Move an address or change its own component (version required)")
def update_address(code: Code, body: AddressUpdate, user: Writer, session: SessionDep,
                   context: AuditContextDep) -> AddressPublic:
    """Update an address; addresses below it follow the new text."""
    check_storable(body)
    before = addresses.get_address(session, actor=user, code=code)
    updated = addresses.update_address(session, actor=user, code=code, data=body)
    _audit(session, user, context, "update", code, before=before, after=updated)
    return updated


@router.delete("/addresses/{code}", status_code=204, response_class=Response,
               summary="Delete an address nothing hangs under (version required)")
def delete_address(code: Code, version: Version, user: Writer, session: SessionDep,
                   context: AuditContextDep) -> Response:
    """Delete an address; child addresses make it a conflict."""
    before = addresses.get_address(session, actor=user, code=code)
    addresses.delete_address(session, actor=user, code=code, version=version)
    _audit(session, user, context, "delete", code, before=before)
    return Response(status_code=204)


def _near(near: str | None) -> tuple[float, float] | None:
    """Parse ``lon,lat``."""
    if near is None:
        return None
    try:
        lon, lat = (float(v) for v in near.split(","))
    except ValueError:
        raise InvalidInput("near is lon,lat", field="near") from None
    return lon, lat


@router.get("/geocode", response_model=GeocodeResult,
            summary="Geocode free address text to standard addresses, with scores")
def geocode_text(
    user: Reader, session: SessionDep,
    q: Annotated[str, Query(min_length=1, max_length=200, pattern=NO_NUL)],
    limit: Annotated[int, Query(ge=1, le=geocode.MAX_HITS)] = 5,
    near: Annotated[str | None, Query(pattern=r"^[-+0-9.eE]+,[-+0-9.eE]+$", max_length=60,
                                      description="lon,lat in near_crs: breaks ties")] = None,
    near_crs: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9:_-]{1,40}$")] = None,
) -> GeocodeResult:
    """Return the best standard addresses for a text (an empty list when nothing matches)."""
    hits = geocode.geocode(session, text=q, limit=limit, near=_near(near), near_crs=near_crs)
    return GeocodeResult(q=q, hits=hits)


@router.get("/reverse-geocode", response_model=ReverseGeocodeResult,
            summary="The standard addresses nearest a point, and the regions holding it")
def reverse_geocode(
    user: Reader, session: SessionDep, lon: Coordinate, lat: Coordinate, crs: Crs,
    radius_m: Annotated[float, Query(gt=0, le=geocode.MAX_RADIUS_M)] = 100.0,
    limit: Annotated[int, Query(ge=1, le=geocode.MAX_HITS)] = 5,
) -> ReverseGeocodeResult:
    """Return visible addresses within radius_m (closest first) and the region chain."""
    return geocode.reverse_geocode(session, lon=lon, lat=lat, crs=crs, radius_m=radius_m,
                                   limit=limit)
