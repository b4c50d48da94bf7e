"""Regions and grids: the tree, 辖区信息 (jurisdiction info), grid info, edits with versioning,
and "what's here" at a point. Everything runs under the caller's scope (RLS)."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator
from typing import Any

from pydantic import BaseModel, Field
from shapely import wkb
from shapely.geometry import mapping
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.database.models.region import GridType, RegionLevel
from geoserver.domain.documents import mask_phone
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.geo.crs import InputCRS, parse_input_crs, to_storage
from geoserver.geo.validate import GeometryProblem, check_lonlat, parse_geojson_geometry
from geoserver.geo.validate import validate_geometry as _validate_geometry
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.dberrors import translate

#: Columns a list may sort by (whitelisted: sort keys never reach SQL text from the client).
SORTABLE = {"code": "code", "name": "name", "level": "level", "area": "area_km2",
            "households": "households"}
_BASE_COLUMNS = (
    "id, code, name, level::text AS level, parent_code, path::text AS path, virtual, "
    "grid_type::text AS grid_type, households, party_members, population, leader_name, "
    "leader_phone, intro, area_km2, version, valid_from, valid_to, updated_at"
)
#: Tables whose rows count in 辖区信息, if the migration that creates them has run.
_COUNTED = {"person": "persons", "residence": "residences", "building": "buildings",
            "key_place": "key_places", "enterprise": "enterprises",
            "city_component": "city_components", "standard_address": "addresses"}


class RegionUpdate(BaseModel):
    """Editable region fields; a new ``geometry`` makes a new version of the boundary."""

    version: int = Field(ge=1, description="The version you saw (optimistic locking).")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    households: int | None = Field(default=None, ge=0)
    party_members: int | None = Field(default=None, ge=0)
    population: int | None = Field(default=None, ge=0)
    leader_name: str | None = Field(default=None, max_length=50)
    leader_phone: str | None = Field(default=None, max_length=30)
    intro: str | None = Field(default=None, max_length=4000)
    grid_type: GridType | None = None
    geometry: dict[str, Any] | None = None
    crs: str | None = None


class RegionCreate(BaseModel):
    """A new region under an existing parent; the path is derived, never sent."""

    code: str = Field(pattern=r"^[0-9A-Za-z]{2,24}$")
    name: str = Field(min_length=1, max_length=100)
    level: RegionLevel
    parent_code: str
    geometry: dict[str, Any]
    crs: str
    grid_type: GridType | None = None
    virtual: bool = False
    households: int | None = Field(default=None, ge=0)
    party_members: int | None = Field(default=None, ge=0)
    leader_name: str | None = Field(default=None, max_length=50)
    leader_phone: str | None = Field(default=None, max_length=30)
    intro: str | None = Field(default=None, max_length=4000)


def _public(row: Any, actor: Principal) -> dict[str, Any]:
    d = dict(row._mapping)
    d.pop("geom_wkb", None)
    if d.get("leader_phone") and not actor.can("person.read_sensitive"):
        d["leader_phone"] = mask_phone(d["leader_phone"])
    return d


def get_region(session: Session, *, actor: Principal, code: str,
               with_geometry: bool = True, tolerance: float = 0.0) -> dict[str, Any]:
    """Return the current version of a region as a dict (geometry as GeoJSON).

    Raises:
        NotFound: no such region, or not in the caller's scope.
    """
    geom_sql = ", ST_AsBinary(ST_SimplifyPreserveTopology(geom, :tol)) AS geom_wkb" \
        if with_geometry else ""
    row = session.execute(
        text(f"SELECT {_BASE_COLUMNS}, ST_X(label_point) AS label_lon, "
             f"ST_Y(label_point) AS label_lat{geom_sql} FROM region "
             "WHERE code = :c AND valid_to IS NULL"),
        {"c": code, "tol": tolerance},
    ).first()
    if row is None:
        raise NotFound(f"no region {code}")
    out = _public(row, actor)
    if with_geometry:
        out["geometry"] = mapping(wkb.loads(bytes(row.geom_wkb)))
    return out


def list_regions(
    session: Session,
    *,
    actor: Principal,
    parent_code: str | None = None,
    level: RegionLevel | None = None,
    grid_type: GridType | None = None,
    q: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    sort: str = "code",
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """List current regions with filters; return (rows, total matching)."""
    order = SORTABLE.get(sort.lstrip("-"))
    if order is None:
        raise InvalidInput(f"sort by one of {', '.join(SORTABLE)}", field="sort")
    direction = "DESC" if sort.startswith("-") else "ASC"
    where, params = _filters(parent_code, level, grid_type, q, bbox)
    params.update(limit=max(1, min(limit, 1000)), offset=max(0, offset))
    rows = session.execute(
        text(f"SELECT {_BASE_COLUMNS}, count(*) OVER () AS total FROM region WHERE {where} "
             f"ORDER BY {order} {direction}, code LIMIT :limit OFFSET :offset"),
        params,
    ).all()
    total = rows[0].total if rows else 0
    return [{k: v for k, v in _public(r, actor).items() if k != "total"} for r in rows], total


def _filters(parent_code: str | None, level: RegionLevel | None, grid_type: GridType | None,
             q: str | None, bbox: tuple[float, float, float, float] | None
             ) -> tuple[str, dict[str, Any]]:
    clauses = ["valid_to IS NULL"]
    params: dict[str, Any] = {}
    if parent_code:
        clauses.append("parent_code = :parent")
        params["parent"] = parent_code
    if level:
        clauses.append("level = CAST(:level AS region_level)")
        params["level"] = level.value
    if grid_type:
        clauses.append("grid_type = CAST(:gt AS grid_type)")
        params["gt"] = grid_type.value
    if q:
        clauses.append("(name LIKE :q ESCAPE '\\' OR code LIKE :qc ESCAPE '\\')")
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.update(q=f"%{escaped}%", qc=f"{escaped}%")
    if bbox:
        clauses.append("geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)")
        params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
    return " AND ".join(clauses), params


def _table_exists(session: Session, name: str) -> bool:
    return bool(session.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": name}).scalar())


def region_info(session: Session, *, actor: Principal, code: str) -> dict[str, Any]:
    """Return 辖区信息: the region, its children by level, base-data counts and its team."""
    region = get_region(session, actor=actor, code=code, tolerance=0.0001)
    children = session.execute(
        text("SELECT level::text AS level, count(*) AS n FROM region WHERE valid_to IS NULL "
             "AND path <@ CAST(:p AS ltree) AND code <> :c GROUP BY level"),
        {"p": region["path"], "c": code},
    ).all()
    counts: dict[str, int] = {}
    for table, label in _COUNTED.items():
        if _table_exists(session, table):
            counts[label] = int(session.execute(
                text(f"SELECT count(*) FROM {table} WHERE path <@ CAST(:p AS ltree)"),
                {"p": region["path"]},
            ).scalar_one())
    region["children"] = {r.level: r.n for r in children}
    region["counts"] = counts
    region["team"] = region_team(session, actor=actor, code=code)
    region["chain"] = region_chain_of(session, path=region["path"])
    return region


def region_team(session: Session, *, actor: Principal, code: str) -> list[dict[str, Any]]:
    """Return the staff assigned at this region (leaders, grid team, command centre)."""
    rows = session.execute(
        text("SELECT u.id AS user_id, u.display_name, u.phone_enc IS NOT NULL AS has_phone, "
             "u.phone_masked, sa.position::text AS position FROM staff_assignment sa "
             "JOIN app_user u ON u.id = sa.user_id WHERE sa.region_code = :c "
             "AND sa.valid_to IS NULL ORDER BY sa.position, u.display_name LIMIT 200"),
        {"c": code},
    ).all()
    return [{"user_id": r.user_id, "name": r.display_name, "position": r.position,
             "phone": r.phone_masked} for r in rows]


def region_chain_of(session: Session, *, path: str) -> list[dict[str, Any]]:
    """Return the ancestors of a path (city first) that the caller may see."""
    rows = session.execute(
        text("SELECT code, name, level::text AS level FROM region WHERE valid_to IS NULL "
             "AND path @> CAST(:p AS ltree) ORDER BY nlevel(path)"),
        {"p": path},
    ).all()
    return [dict(r._mapping) for r in rows]


def _storage_geometry(geometry: dict[str, Any], crs: str | None) -> tuple[Any, list[str]]:
    if not crs:
        raise InvalidInput("crs is required: WGS84, CGCS2000, GCJ-02 or BD-09", field="crs")
    try:
        in_crs = parse_input_crs(crs)
        geom = parse_geojson_geometry(geometry, field="geometry")
        if in_crs not in (InputCRS.WGS84, InputCRS.CGCS2000):
            from geoserver.geo.crs import transform_geometry

            geom = transform_geometry(geom, in_crs, InputCRS.CGCS2000)
        geom, warnings = _validate_geometry(geom, expected={"Polygon", "MultiPolygon"},
                                            field="geometry")
    except GeometryProblem as e:
        raise InvalidInput(e.reason, field=e.field) from None
    except ValueError as e:
        raise InvalidInput(str(e), field="crs") from None
    from geoserver.geo.validate import as_multipolygon

    return as_multipolygon(geom), warnings


def create_region(session: Session, *, actor: Principal, data: RegionCreate,
                  context: AuditContext = NO_CONTEXT) -> tuple[dict[str, Any], list[str]]:
    """Create a region under a visible parent; return it and any geometry repair warnings.

    Raises:
        InvalidInput: bad geometry or crs, unknown parent, a level that cannot sit there.
        Conflict: duplicate code, overlap with a sibling or outside the parent (names it).
    """
    if not actor.can("region.write"):
        raise PermissionDenied("editing regions needs region.write")
    parent = session.execute(text("SELECT path::text AS path FROM region WHERE code = :c "
                                  "AND valid_to IS NULL"), {"c": data.parent_code}).first()
    if parent is None:
        raise InvalidInput(f"no parent region {data.parent_code} in your jurisdiction",
                           field="parent_code")
    is_grid = data.level in (RegionLevel.GRID, RegionLevel.MICRO_GRID)
    if is_grid != (data.grid_type is not None):
        raise InvalidInput("grids (and only grids) have a grid_type", field="grid_type")
    geom, warnings = _storage_geometry(data.geometry, data.crs)
    _write(session, "INSERT INTO region (code, name, level, parent_code, path, geom, grid_type, "
           "virtual, households, party_members, leader_name, leader_phone, intro) VALUES (:code, "
           ":name, CAST(:level AS region_level), :parent, CAST(:path AS ltree), "
           "ST_GeomFromWKB(:g, 4490), CAST(:gt AS grid_type), :virtual, :hh, :pm, :ln, :lp, "
           ":intro)",
           {"code": data.code, "name": data.name, "level": data.level.value,
            "parent": data.parent_code, "path": f"{parent.path}.{data.code}", "g": geom.wkb,
            "gt": data.grid_type.value if data.grid_type else None, "virtual": data.virtual,
            "hh": data.households, "pm": data.party_members, "ln": data.leader_name,
            "lp": data.leader_phone, "intro": data.intro})
    created = get_region(session, actor=actor, code=data.code, with_geometry=False)
    audit(session, actor=actor, action="region.create", object_kind="region",
          object_id=data.code, after=created, context=context)
    return get_region(session, actor=actor, code=data.code), warnings


def _write(session: Session, sql: str, params: dict[str, Any]) -> None:
    try:
        with session.begin_nested():
            session.execute(text(sql), params)
    except DBAPIError as e:
        raise translate(e, fields={"region_code_current": "code"}) from None


def update_region(session: Session, *, actor: Principal, code: str, data: RegionUpdate,
                  context: AuditContext = NO_CONTEXT) -> tuple[dict[str, Any], list[str]]:
    """Edit a region; a new boundary closes the current version and starts the next one.

    Raises:
        NotFound: not in the caller's scope. Conflict: stale version, or the new boundary
        overlaps a neighbour / leaves its parent / loses a child (the other region is named).
    """
    if not actor.can("region.write"):
        raise PermissionDenied("editing regions needs region.write")
    current = session.execute(text("SELECT * FROM region WHERE code = :c AND valid_to IS NULL "
                                   "FOR UPDATE"), {"c": code}).first()
    if current is None:
        raise NotFound(f"no region {code}")
    if current.version != data.version:
        raise Conflict(f"region {code} changed since version {data.version} "
                       f"(now {current.version}); reload it", field="version")
    before = get_region(session, actor=actor, code=code, with_geometry=False)
    fields = data.model_dump(exclude_unset=True, exclude={"version", "geometry", "crs"})
    if "grid_type" in fields and current.level not in ("grid", "micro_grid"):
        raise InvalidInput("only grids have a grid_type", field="grid_type")
    warnings: list[str] = []
    if data.geometry is not None:
        geom, warnings = _storage_geometry(data.geometry, data.crs)
        _new_version(session, current=current, geom_wkb=geom.wkb, fields=fields)
    elif fields:
        sets = ", ".join(f"{k} = :{k}" if k != "grid_type" else "grid_type = CAST(:grid_type "
                         "AS grid_type)" for k in fields)
        params = {k: (v.value if isinstance(v, GridType) else v) for k, v in fields.items()}
        _write(session, f"UPDATE region SET {sets}, version = version + 1, updated_at = now() "
               "WHERE id = :id", {**params, "id": current.id})
    after = get_region(session, actor=actor, code=code, with_geometry=False)
    audit(session, actor=actor, action="region.update", object_kind="region", object_id=code,
          before=before, after=after, context=context)
    return get_region(session, actor=actor, code=code), warnings


def _new_version(session: Session, *, current: Any, geom_wkb: bytes,
                 fields: dict[str, Any]) -> None:
    """Close the current version and insert the next with the new boundary (same code/path)."""
    values = {k: getattr(current, k) for k in (
        "name", "households", "party_members", "population", "leader_name", "leader_phone",
        "intro", "virtual")}
    values.update({k: v for k, v in fields.items() if k != "grid_type"})
    grid_type = fields.get("grid_type", current.grid_type)
    # clock_timestamp, not now(): a version created and replaced in one transaction still
    # gets valid_to > valid_from.
    _write(session, "UPDATE region SET valid_to = clock_timestamp() WHERE id = :id",
           {"id": current.id})
    _write(session,
           "INSERT INTO region (code, name, level, parent_code, path, geom, grid_type, virtual, "
           "households, party_members, population, leader_name, leader_phone, intro, "
           "attributes, version, valid_from) VALUES (:code, :name, CAST(:level AS region_level), "
           ":parent, CAST(:path AS ltree), ST_GeomFromWKB(:g, 4490), CAST(:gt AS grid_type), "
           ":virtual, :households, :party_members, :population, :leader_name, :leader_phone, "
           ":intro, CAST(:attrs AS jsonb), :version, clock_timestamp())",
           {**values, "code": current.code, "level": current.level,
            "parent": current.parent_code, "path": current.path, "g": geom_wkb,
            "gt": grid_type.value if isinstance(grid_type, GridType) else grid_type,
            "attrs": json.dumps(current.attributes), "version": current.version + 1})
    relocate_rows(session, code=current.code)


#: Located tables whose path/region_id follow the regions (recomputed when boundaries change).
LOCATED_TABLES = ("building", "standard_address", "key_place", "city_component", "enterprise",
                  "organization")


def relocate_rows(session: Session, *, code: str) -> int:
    """Recompute path/region_id of located rows around a changed region (old and new shape)."""
    moved = 0
    for table in LOCATED_TABLES:
        if not _table_exists(session, table):
            continue
        # Every version of the code matches, so rows under the old and the new shape move.
        moved += len(session.execute(text(
            f"UPDATE {table} t SET path = m.path, region_id = m.region_id FROM ("
            f"  SELECT DISTINCT x.id, loc.path, loc.region_id FROM {table} x"
            f"  JOIN region r ON r.code = :c AND x.geom && r.geom"
            f"  CROSS JOIN LATERAL gridgov_meta.locate(x.geom) loc"
            f"  WHERE x.region_id IS DISTINCT FROM loc.region_id) m "
            f"WHERE t.id = m.id RETURNING t.id"),
            {"c": code}).all())
    return moved


def what_is_here(session: Session, *, actor: Principal, lon: float, lat: float, crs: str,
                 radius_m: float = 50, kinds: Collection[str] | None = None) -> dict[str, Any]:
    """Return the region chain, grids (dedicated ones too), building, address and places
    around a point.

    ``kinds`` names the tables of _NEARBY to list (default: DEFAULT_NEARBY); the caller checks
    the read permission of any other kind it asks for (search.nearby does).
    """
    try:
        in_crs = parse_input_crs(crs)
        check_lonlat(lon, lat, field="lon")
    except GeometryProblem as e:
        raise InvalidInput(e.reason, field=e.field) from None
    except ValueError as e:
        raise InvalidInput(str(e), field="crs") from None
    if not 0 < radius_m <= 2000:
        raise InvalidInput("radius_m must be in (0, 2000]", field="radius_m")
    x, y = to_storage(lon, lat, in_crs)
    pt = {"x": float(x), "y": float(y)}
    near = {"dx": radius_m / (111_320 * math.cos(math.radians(float(y)))) * 1.01,
            "dy": radius_m / 110_540 * 1.01}
    regions = session.execute(text(
        "SELECT code, name, level::text AS level, grid_type::text AS grid_type FROM region "
        "WHERE valid_to IS NULL AND geom && ST_SetSRID(ST_Point(:x, :y), 4490) "
        "AND ST_Intersects(geom, ST_SetSRID(ST_Point(:x, :y), 4490)) "
        "ORDER BY region_level_rank(level), grid_type NULLS FIRST"), pt).all()
    out: dict[str, Any] = {
        "point": {"lon": pt["x"], "lat": pt["y"], "crs": "CGCS2000"},
        "regions": [dict(r._mapping) for r in regions],
        "grid": next((dict(r._mapping) for r in regions
                      if r.level == "grid" and r.grid_type != "dedicated"), None),
        "dedicated_grids": [dict(r._mapping) for r in regions if r.grid_type == "dedicated"],
    }
    tables = DEFAULT_NEARBY if kinds is None else tuple(kinds)
    for key, sql in _NEARBY.items():
        table = key.split(":")[0]
        if table in tables and _table_exists(session, table):
            rows = session.execute(text(sql), {**pt, **near, "r": radius_m}).mappings().all()
            out[key.split(":")[1]] = [dict(r) for r in rows]
    return out


_POINT = "ST_SetSRID(ST_Point(:x, :y), 4490)"
# A bounding-box prefilter in degrees (:dx, :dy from the radius) lets the GiST index on geom
# work; the exact distance is then measured on the spheroid.
_NEAR = f"geom && ST_Expand({_POINT}, :dx, :dy) AND "
_DISTANCE = (f"round(ST_Distance(geom::geography, {_POINT}::geography)::numeric, 1)::float8 "
             "AS distance_m, ST_X(ST_PointOnSurface(geom)) AS lon, "
             "ST_Y(ST_PointOnSurface(geom)) AS lat ")
_WITHIN = f"{_NEAR}ST_DWithin(geom::geography, {_POINT}::geography, :r)"
#: Tables listed by default (what the /here endpoint has always shown).
DEFAULT_NEARBY = ("building", "standard_address", "key_place", "city_component")
_NEARBY = {
    "building:buildings": (
        f"SELECT id, code, name, category::text AS category, {_DISTANCE}"
        f"FROM building WHERE {_WITHIN} ORDER BY distance_m LIMIT 10"),
    "standard_address:addresses": (
        f"SELECT id, code, full_text, level::text AS level, {_DISTANCE}"
        f"FROM standard_address WHERE {_WITHIN} ORDER BY distance_m LIMIT 10"),
    "key_place:places": (
        f"SELECT id, name, category::text AS category, {_DISTANCE}"
        f"FROM key_place WHERE {_WITHIN} ORDER BY distance_m LIMIT 20"),
    "city_component:components": (
        f"SELECT id, code, category::text AS category, {_DISTANCE}"
        f"FROM city_component WHERE {_WITHIN} ORDER BY distance_m LIMIT 20"),
    "enterprise:enterprises": (
        f"SELECT id, name, uscc, industry, {_DISTANCE}"
        f"FROM enterprise WHERE {_WITHIN} ORDER BY distance_m LIMIT 20"),
    "organization:organizations": (
        f"SELECT id, name, category, {_DISTANCE}"
        f"FROM organization WHERE {_WITHIN} ORDER BY distance_m LIMIT 20"),
    "event:events": (
        f"SELECT id, code, title AS name, state, to_json(reported_at) #>> '{{}}' AS reported_at, "
        f"{_DISTANCE}"
        f"FROM event WHERE {_WITHIN} AND state <> 'merged' ORDER BY distance_m LIMIT 20"),
}


def iter_grids(session: Session, *, actor: Principal, parent_code: str | None = None
               ) -> Iterator[dict[str, Any]]:
    """Stream grid info rows (网格基本信息) with geometry, for exports."""
    where, params = _filters(parent_code, None, None, None, None)
    result = session.execute(
        text(f"SELECT {_BASE_COLUMNS}, ST_AsBinary(geom) AS geom_wkb FROM region WHERE {where} "
             "AND level IN ('grid', 'micro_grid') ORDER BY code"),
        params,
        execution_options={"yield_per": 500},
    )
    for row in result:
        d = _public(row, actor)
        d["geometry"] = mapping(wkb.loads(bytes(row.geom_wkb)))
        yield d
