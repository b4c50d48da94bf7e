"""Regions and grids: tree, 辖区信息, grid info, edits, exports, and "what's here"."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from api.deps import AuditContextDep, EngineDep, SessionDep, require, stream_rows
from api.exports import FORMATS, export_response
from geoserver.database.models.region import GridType, RegionLevel
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.services import regions
from geoserver.services.audit import audit

router = APIRouter(prefix="/api/v1", tags=["regions"])

Reader = Annotated[Principal, Depends(require("region.read"))]
Writer = Annotated[Principal, Depends(require("region.write"))]
GRID_COLUMNS = ("code", "name", "parent_code", "grid_type", "households", "party_members",
                "population", "leader_name", "leader_phone", "area_km2", "version")


def parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    """Parse ``minLon,minLat,maxLon,maxLat`` (CGCS2000/WGS84 degrees)."""
    if not bbox:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in bbox.split(","))
    except ValueError:
        raise InvalidInput("bbox must be minLon,minLat,maxLon,maxLat", field="bbox") from None
    if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
        raise InvalidInput("bbox corners are out of range or in the wrong order", field="bbox")
    return x0, y0, x1, y1


def feature(region: dict[str, Any]) -> dict[str, Any]:
    """Shape a region dict as a GeoJSON Feature."""
    props = {k: v for k, v in region.items() if k != "geometry"}
    return {"type": "Feature", "id": region["code"], "geometry": region.get("geometry"),
            "properties": props}


@router.get("/regions", summary="List regions (filter by parent, level, type, text, bbox)")
def list_regions(
    user: Reader, session: SessionDep,
    parent_code: str | None = None, level: RegionLevel | None = None,
    grid_type: GridType | None = None, q: Annotated[str | None, Query(max_length=50)] = None,
    bbox: str | None = None, sort: str = "code",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """List current regions inside your jurisdiction."""
    items, total = regions.list_regions(
        session, actor=user, parent_code=parent_code, level=level, grid_type=grid_type, q=q,
        bbox=parse_bbox(bbox), sort=sort, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/regions/{code}", summary="One region as a GeoJSON Feature")
def get_region(code: str, user: Reader, session: SessionDep,
               simplify: Annotated[float, Query(ge=0, le=0.01)] = 0.0) -> dict[str, Any]:
    """Return a region's current version with its outline."""
    return feature(regions.get_region(session, actor=user, code=code, tolerance=simplify))


@router.get("/regions/{code}/info", summary="辖区信息: counts, children, team, chain")
def region_info(code: str, user: Reader, session: SessionDep) -> dict[str, Any]:
    """Return jurisdiction info: base-data counts, children by level, leaders and grid team."""
    return feature(regions.region_info(session, actor=user, code=code))


@router.post("/regions", status_code=201, summary="Create a region under a parent")
def create_region(body: regions.RegionCreate, user: Writer, session: SessionDep,
                  context: AuditContextDep) -> dict[str, Any]:
    """Create a region; the path is derived from the parent; geometry repairs come back as
    warnings."""
    created, warnings = regions.create_region(session, actor=user, data=body, context=context)
    return {**feature(created), "warnings": warnings}


@router.patch("/regions/{code}", summary="Edit a region (a new boundary is a new version)")
def update_region(code: str, body: regions.RegionUpdate, user: Writer, session: SessionDep,
                  context: AuditContextDep) -> dict[str, Any]:
    """Edit attributes or the boundary; send the version you saw."""
    updated, warnings = regions.update_region(session, actor=user, code=code, data=body,
                                              context=context)
    return {**feature(updated), "warnings": warnings}


@router.get("/grids", summary="网格基本信息: list grids")
def list_grids(
    user: Reader, session: SessionDep, parent_code: str | None = None,
    grid_type: GridType | None = None, q: Annotated[str | None, Query(max_length=50)] = None,
    bbox: str | None = None, sort: str = "code",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """List grids with leader, households and party members."""
    items, total = regions.list_regions(
        session, actor=user, parent_code=parent_code, level=RegionLevel.GRID,
        grid_type=grid_type, q=q, bbox=parse_bbox(bbox), sort=sort, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/grids/export", summary="Export grids as csv, xlsx or GeoJSON")
def export_grids(
    user: Annotated[Principal, Depends(require("export"))], session: SessionDep,
    engine: EngineDep, context: AuditContextDep, format: str = "csv",
    parent_code: str | None = None,
) -> Any:
    """Stream grid info with a watermark; the export is audited."""
    if format not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field="format")
    if not user.can("region.read"):
        raise InvalidInput("exporting grids needs region.read", field="format")
    audit(session, actor=user, action="export", object_kind="grid", context=context,
          detail={"format": format, "parent_code": parent_code})
    rows = stream_rows(engine, user, lambda s: regions.iter_grids(s, actor=user,
                                                                   parent_code=parent_code))
    return export_response(format, rows, GRID_COLUMNS, user, "grids")


@router.get("/here", summary="What's here: regions, grid, building, address, places")
def what_is_here(
    user: Reader, session: SessionDep, lon: float, lat: float, crs: str,
    radius_m: Annotated[float, Query(gt=0, le=2000)] = 50,
) -> JSONResponse:
    """Return everything around a point (``crs`` is required: WGS84, CGCS2000, GCJ-02, BD-09)."""
    return JSONResponse(regions.what_is_here(session, actor=user, lon=lon, lat=lat, crs=crs,
                                             radius_m=radius_m))
