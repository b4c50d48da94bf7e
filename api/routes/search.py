"""Unified search (统一搜索) and nearby: GeoJSON with the kind of every hit."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import CryptoDep, CurrentUser, SessionDep, require
from api.routes.regions import parse_bbox
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.services import search

router = APIRouter(prefix="/api/v1", tags=["search"])


def parse_kinds(kinds: str | None) -> list[str] | None:
    """Parse a comma-separated list of kinds (None: every kind)."""
    if kinds is None or not kinds.strip():
        return None
    return [k.strip() for k in kinds.split(",") if k.strip()]


def parse_near(lon: float | None, lat: float | None) -> tuple[float, float] | None:
    """Return the map centre, or None; one coordinate without the other is InvalidInput."""
    if lon is None and lat is None:
        return None
    if lon is None or lat is None:
        raise InvalidInput("give both lon and lat for the map centre, or neither",
                           field="lon" if lon is None else "lat")
    return lon, lat


@router.get("/search", summary="统一搜索: one query across every kind you may read")
def search_everything(
    user: CurrentUser, session: SessionDep, crypto: CryptoDep,
    q: Annotated[str, Query(max_length=1000,
                            description="2 to 64 characters; Latin letters match pinyin too")]
    = "",
    kinds: Annotated[str | None, Query(description="comma-separated, e.g. region,building")]
    = None,
    lon: float | None = None, lat: float | None = None,
    bbox: Annotated[str | None, Query(description="west,south,east,north")] = None,
    crs: Annotated[str, Query(description="crs of lon/lat and bbox")] = "WGS84",
    region_code: str | None = None,
    limit: Annotated[int, Query(ge=1, le=search.MAX_LIMIT)] = 20,
) -> dict[str, Any]:
    """Return hits as a FeatureCollection ranked by text match and distance to lon/lat.

    Each feature has ``properties.kind``, ``title``, ``subtitle``, ``score`` and ``match``;
    regions and grids carry ``code``, other kinds ``object_code``. Persons are masked. An
    18-digit ID number finds its person exactly (blind index); Latin letters also match the
    pinyin of names (``wmjd`` or ``wumajiedao`` → 五马街道; ``match`` is then ``pinyin``).
    """
    result = search.search(
        session, actor=user, q=q, kinds=parse_kinds(kinds), near=parse_near(lon, lat),
        bbox=parse_bbox(bbox), region_code=region_code, limit=limit, crs=crs, crypto=crypto)
    return search.to_feature_collection(result)


@router.get("/nearby", summary="Nearby: everything within radius_m of a point, by kind")
def nearby(
    user: Annotated[Principal, Depends(require("region.read"))], session: SessionDep,
    lon: float, lat: float, crs: str,
    radius_m: Annotated[float, Query(gt=0, le=2000)] = 200,
    kinds: Annotated[str | None, Query(description="comma-separated kinds")] = None,
) -> dict[str, Any]:
    """Return the region chain and the objects around a point as a FeatureCollection.

    ``crs`` is required (WGS84, CGCS2000, GCJ-02, BD-09); each feature has ``kind`` and
    ``distance_m`` (on the spheroid).
    """
    return search.nearby(session, actor=user, lon=lon, lat=lat, crs=crs, radius_m=radius_m,
                         kinds=parse_kinds(kinds))
