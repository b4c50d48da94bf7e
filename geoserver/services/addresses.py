"""Standard addresses (标准地址, 四标四实): create, read, update, list and delete.

A door (门牌) names its township, village and road; a building (幢), unit (单元) or room (室) names
its parent and copies everything above it from there. Every level has its own point, which must
lie in the village (or township) the address names, within REGION_TOLERANCE_M for slivers in the
boundary files. Reads and writes run under the caller's scope (RLS); geocoding lives in
``geoserver.services.geocode``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.database.models.address import AddressLevel
from geoserver.domain.address import (
    GazetteerEntry,
    ParsedAddress,
    format_address,
    normalize_address_text,
)
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, FieldProblem, InvalidInput, NotFound, PermissionDenied
from geoserver.geo.crs import parse_input_crs, to_storage
from geoserver.geo.h3cells import cell_int
from geoserver.geo.validate import GeometryProblem, check_lonlat, parse_geojson_geometry
from geoserver.services.dberrors import sqlstate, translate

__all__ = [
    "ADDRESS_READ",
    "ADDRESS_WRITE",
    "REGION_TOLERANCE_M",
    "AddressCreate",
    "AddressPage",
    "AddressPublic",
    "AddressUpdate",
    "create_address",
    "delete_address",
    "get_address",
    "list_addresses",
    "load_addresses",
    "storage_point",
    "update_address",
]

ADDRESS_READ = "address.read"
ADDRESS_WRITE = "address.write"
#: How far (metres) a point may lie outside the village or township its address names: generated
#: and surveyed boundaries disagree by slivers of this order along shared edges.
REGION_TOLERANCE_M = 30.0
MAX_PAGE_SIZE = 500

_CODE_RE = r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$"
_REGION_CODE_RE = re.compile(r"^[0-9A-Za-z]{2,24}$")
_DOOR_RE = re.compile(r"^[0-9A-Z]{1,8}(-[0-9A-Z]{1,4})?$")
_BUILDING_RE = re.compile(r"^[0-9A-Z]{1,4}$")
_UNIT_RE = re.compile(r"^[0-9]{1,3}$")
_ROOM_RE = re.compile(r"^[A-Z]?[0-9]{1,5}$")
# Which component each level adds, and which parent levels it may hang under.
_OWN_COMPONENT = {"door": "door_number", "building": "building", "unit": "unit", "room": "room"}
_PARENT_LEVELS = {"building": ("door",), "unit": ("building",), "room": ("unit", "building")}
_INHERITED = ("county_code", "township_code", "village_code", "road", "door_number", "building",
              "unit")
_DUPLICATE_FIELDS = {"standard_address_code_key": "code"}

M = TypeVar("M", bound=BaseModel)


# --- input and output models ----------------------------------------------------------------------


def _component(value: str | None, marker: str, pattern: re.Pattern[str], what: str) -> str | None:
    """Normalise one address component (３栋 → 3, 三幢 → 3, 302室 → 302) or raise ValueError."""
    if value is None:
        return None
    raw = normalize_address_text(str(value))
    # The marker lets the normaliser read Chinese numerals (三幢) and variants (栋, 号楼).
    normalized = normalize_address_text(raw if raw.endswith(marker) else raw + marker)
    normalized = normalized.removesuffix(marker)
    if not pattern.match(normalized):
        raise ValueError(f"{value!r} is not a valid {what}")
    return normalized


class _AddressComponents(BaseModel):
    """Road, door number, building, unit and room, normalised on input."""

    road: str | None = None
    door_number: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None

    @field_validator("road")
    @classmethod
    def _road(cls, value: str | None) -> str | None:
        if value is None:
            return None
        road = normalize_address_text(value)
        if not 2 <= len(road) <= 60 or road.isdigit():
            raise ValueError("a road name has 2 to 60 characters and is not a number")
        return road

    @field_validator("door_number")
    @classmethod
    def _door(cls, value: str | None) -> str | None:
        return _component(value, "号", _DOOR_RE, "door number (123, 123-1)")

    @field_validator("building")
    @classmethod
    def _building(cls, value: str | None) -> str | None:
        return _component(value, "幢", _BUILDING_RE, "building (3, 三幢, 3栋, A)")

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str | None) -> str | None:
        return _component(value, "单元", _UNIT_RE, "unit (2, 二单元)")

    @field_validator("room")
    @classmethod
    def _room(cls, value: str | None) -> str | None:
        return _component(value, "室", _ROOM_RE, "room (302, B1203)")


class AddressCreate(_AddressComponents):
    """A new standard address. A door names its regions and road; other levels their parent.

    ``location`` is a GeoJSON Point in ``crs`` (required: WGS84, CGCS2000, GCJ02 or BD09).
    """

    code: str = Field(pattern=_CODE_RE)
    level: AddressLevel
    parent_code: str | None = None
    county_code: str | None = None
    township_code: str | None = None
    village_code: str | None = None
    location: dict[str, Any]
    crs: str


class AddressUpdate(_AddressComponents):
    """Changes to an address: its point and the component its own level adds.

    A door may also change its road and village; children follow. ``version`` is the version
    the caller saw (optimistic locking).
    """

    version: int
    village_code: str | None = None
    location: dict[str, Any] | None = None
    crs: str | None = None


class AddressPublic(BaseModel):
    """A standard address as services return it; lon/lat in CGCS2000 (= CRS84 numbers)."""

    model_config = ConfigDict(frozen=True)

    id: int
    code: str
    level: AddressLevel
    parent_code: str | None
    county_code: str
    township_code: str
    village_code: str | None
    road: str | None
    door_number: str
    building: str | None
    unit: str | None
    room: str | None
    full_text: str
    lon: float
    lat: float
    path: str
    building_id: int | None
    version: int
    created_at: datetime
    updated_at: datetime


class AddressPage(BaseModel):
    """One page of a list; ``next_offset`` is None on the last page."""

    items: list[AddressPublic]
    limit: int
    offset: int
    next_offset: int | None


def _validated(model: type[M], data: M | Mapping[str, Any]) -> M:
    """Return data as the model, turning pydantic errors into InvalidInput naming the fields."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            FieldProblem(".".join(str(p) for p in err["loc"]) or "body", err["msg"])
            for err in exc.errors()
        ]
        raise InvalidInput(problems[0].message, problems=problems) from None


# --- points --------------------------------------------------------------------------------------


def storage_point(lon: Any, lat: Any, crs: str | None, *, field: str = "location") -> tuple[
    float, float
]:
    """Check lon/lat given in ``crs`` and return them in storage CRS (CGCS2000).

    Raises:
        InvalidInput: no or unknown crs (field ``crs``), or implausible coordinates such as a
            swapped pair or projected metres (field ``field``).
    """
    if not crs:
        raise InvalidInput("crs is required: WGS84, CGCS2000, GCJ02 or BD09", field="crs")
    try:
        input_crs = parse_input_crs(crs)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="crs") from None
    try:
        check_lonlat(lon, lat, field=field)
    except GeometryProblem as exc:
        raise InvalidInput(exc.reason, field=exc.field) from None
    x, y = to_storage(float(lon), float(lat), input_crs)
    return float(x), float(y)


def _location_point(location: Mapping[str, Any], crs: str | None) -> tuple[float, float]:
    """Return a GeoJSON Point's storage lon/lat, or raise InvalidInput naming the field."""
    try:
        geom = parse_geojson_geometry(location, field="location")
    except GeometryProblem as exc:
        raise InvalidInput(exc.reason, field=exc.field) from None
    if geom.geom_type != "Point" or geom.is_empty:
        raise InvalidInput(f"expected a Point, got {geom.geom_type}", field="location")
    return storage_point(geom.x, geom.y, crs)


# --- regions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NamedRegions:
    """The divisions an address names, checked against its point."""

    county: GazetteerEntry
    township: GazetteerEntry
    village: GazetteerEntry | None


def _region_rows(session: Session, codes: Sequence[str], lon: float, lat: float) -> dict[str, Any]:
    """Return the named current regions (any scope) with the point's distance outside each."""
    rows = session.execute(
        text("SELECT code, name, level, parent_code, distance_m FROM "
             "gridgov_meta.region_distances(CAST(:codes AS text[]), "
             "ST_SetSRID(ST_Point(:lon, :lat), 4490))"),
        {"codes": list(codes), "lon": lon, "lat": lat},
    ).all()
    return {r.code: r for r in rows}


def _entry(row: Any) -> GazetteerEntry:
    return GazetteerEntry(row.code, row.name, row.level, row.parent_code)


def _expect(rows: Mapping[str, Any], code: str | None, level: str, field: str) -> Any:
    """Return the region row for code if it exists at level, else raise InvalidInput."""
    row = rows.get(code or "")
    if row is None or row.level != level:
        raise InvalidInput(f"no {level} with code {code}", field=field)
    return row


def _check_regions(
    session: Session, codes: Mapping[str, str | None], lon: float, lat: float
) -> _NamedRegions:
    """Check that the codes name a county › township › village chain holding the point."""
    for field, code in codes.items():
        if code is not None and not _REGION_CODE_RE.match(code):
            raise InvalidInput(f"{code!r} is not a region code", field=field)
    if codes.get("township_code") is None:
        raise InvalidInput("a door names its township", field="township_code")
    rows = _region_rows(session, [c for c in codes.values() if c], lon, lat)
    township = _expect(rows, codes["township_code"], "township", "township_code")
    county_code = codes.get("county_code") or township.parent_code
    if county_code not in rows:
        rows.update(_region_rows(session, [county_code], lon, lat))
    county = _expect(rows, county_code, "county", "county_code")
    if township.parent_code != county.code:
        raise InvalidInput(f"township {township.code} is not in county {county.code}",
                           field="county_code")
    village = None
    if codes.get("village_code") is not None:
        village = _expect(rows, codes["village_code"], "village", "village_code")
        if village.parent_code != township.code:
            raise InvalidInput(f"village {village.code} is not in township {township.code}",
                               field="village_code")
    holder = village or township
    if holder.distance_m > REGION_TOLERANCE_M:
        raise InvalidInput(
            f"the point lies {holder.distance_m:.0f} m outside {holder.name} ({holder.code}), "
            f"more than the {REGION_TOLERANCE_M:.0f} m tolerated",
            field="location",
        )
    return _NamedRegions(_entry(county), _entry(township), village and _entry(village))


def _check_jurisdiction(session: Session, actor: Principal, lon: float, lat: float) -> None:
    """Raise InvalidInput unless the point lies in a region inside the actor's scope."""
    path = session.execute(
        text("SELECT path::text FROM gridgov_meta.locate(ST_SetSRID(ST_Point(:lon, :lat), 4490))"),
        {"lon": lon, "lat": lat},
    ).scalar()
    if path is None:
        raise InvalidInput("the point lies in no region", field="location")
    if not actor.covers(path):
        raise InvalidInput("the point lies outside your jurisdiction", field="location")


def _full_text(regions: _NamedRegions, parts: Mapping[str, str | None]) -> str:
    """Return the canonical text of an address (format_address over the division names)."""
    return format_address(ParsedAddress(
        county=regions.county.address_name,
        township=regions.township.address_name,
        village=regions.village.address_name if regions.village else None,
        road=parts.get("road"),
        door_number=parts.get("door_number"),
        building=parts.get("building"),
        unit=parts.get("unit"),
        room=parts.get("room"),
    ))


# --- reading -------------------------------------------------------------------------------------

_PUBLIC_SELECT = """
SELECT a.id, a.code, a.level::text AS level, p.code AS parent_code, a.county_code,
       a.township_code, a.village_code, a.road, a.door_number, a.building, a.unit, a.room,
       a.full_text, ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat, a.path::text AS path,
       a.building_id, a.version, a.created_at, a.updated_at
FROM standard_address a
LEFT JOIN standard_address p ON p.id = a.parent_id
"""


def load_addresses(session: Session, ids: Sequence[int]) -> dict[int, AddressPublic]:
    """Return the addresses with these ids that the caller's scope shows, by id."""
    if not ids:
        return {}
    rows = session.execute(text(_PUBLIC_SELECT + "WHERE a.id = ANY(CAST(:ids AS bigint[]))"),
                           {"ids": list(ids)}).mappings().all()
    return {r["id"]: AddressPublic.model_validate(dict(r)) for r in rows}


def _require(actor: Principal, permission: str) -> None:
    if not actor.can(permission):
        raise PermissionDenied(f"this needs the {permission} permission")


def _find(session: Session, code: str, *, lock: bool = False) -> Any:
    """Return the raw row of a visible address, or raise NotFound."""
    row = session.execute(
        text("SELECT a.*, ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat, a.path::text AS path_text "
             "FROM standard_address a WHERE a.code = :code" + (" FOR UPDATE" if lock else "")),
        {"code": code},
    ).first()
    if row is None:
        raise NotFound(f"no standard address {code}")
    return row


def get_address(session: Session, *, actor: Principal, code: str) -> AddressPublic:
    """Return one standard address by code.

    Raises:
        PermissionDenied: the actor lacks address.read.
        NotFound: no such address, or not in the actor's scope.
    """
    _require(actor, ADDRESS_READ)
    row = _find(session, code)
    if not actor.covers(row.path_text):
        raise NotFound(f"no standard address {code}")
    return load_addresses(session, [row.id])[row.id]


def _like_pattern(value: str) -> str:
    """Return a LIKE pattern matching value anywhere, with wildcards in it escaped."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _bbox_filter(bbox: Sequence[float]) -> dict[str, float]:
    """Check a (west, south, east, north) box in CGCS2000 lon/lat; return its bind values."""
    if len(bbox) != 4:
        raise InvalidInput("bbox is west,south,east,north", field="bbox")
    west, south, east, north = (float(v) for v in bbox)
    try:
        check_lonlat(west, south, field="bbox")
        check_lonlat(east, north, field="bbox")
    except GeometryProblem as exc:
        raise InvalidInput(exc.reason, field="bbox") from None
    if not (west < east and south < north):
        raise InvalidInput("bbox must have west < east and south < north", field="bbox")
    return {"west": west, "south": south, "east": east, "north": north}


def list_addresses(
    session: Session,
    *,
    actor: Principal,
    region_code: str | None = None,
    road: str | None = None,
    text_query: str | None = None,
    bbox: Sequence[float] | None = None,
    level: AddressLevel | str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> AddressPage:
    """List visible standard addresses, filtered, in a stable order, one page at a time.

    ``region_code`` keeps addresses located in that region (any level), ``road`` one road,
    ``text_query`` addresses whose full text contains it, ``bbox`` (west, south, east, north in
    CGCS2000 lon/lat) those inside the box.
    """
    _require(actor, ADDRESS_READ)
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE_SIZE}", field="limit")
    if offset < 0:
        raise InvalidInput("offset must not be negative", field="offset")
    where, params = _list_filters(region_code, road, text_query, bbox, level)
    params.update(limit=limit + 1, offset=offset)
    sql = _PUBLIC_SELECT + where + " ORDER BY a.id LIMIT :limit OFFSET :offset"
    rows = session.execute(text(sql), params).mappings().all()
    items = [AddressPublic.model_validate(dict(r)) for r in rows[:limit]]
    return AddressPage(items=items, limit=limit, offset=offset,
                       next_offset=offset + limit if len(rows) > limit else None)


def _list_filters(
    region_code: str | None,
    road: str | None,
    text_query: str | None,
    bbox: Sequence[float] | None,
    level: AddressLevel | str | None,
) -> tuple[str, dict[str, Any]]:
    """Return the WHERE clause and bind values of list_addresses' filters."""
    clauses: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    if region_code is not None:
        if not _REGION_CODE_RE.match(region_code):
            raise InvalidInput(f"{region_code!r} is not a region code", field="region_code")
        # Paths are dotted region codes: '*.<code>.*' is every row in that region.
        clauses.append("a.path ~ CAST(:region_q AS lquery)")
        params["region_q"] = f"*.{region_code}.*"
    if road:
        clauses.append("a.road = :road")
        params["road"] = normalize_address_text(road)
    if text_query:
        clauses.append("a.full_text LIKE :text_q")
        params["text_q"] = _like_pattern(normalize_address_text(text_query))
    if bbox is not None:
        clauses.append("a.geom && ST_MakeEnvelope(:west, :south, :east, :north, 4490)")
        params.update(_bbox_filter(bbox))
    if level is not None:
        try:
            params["level"] = AddressLevel(level).value
        except ValueError:
            raise InvalidInput(f"unknown level {level!r}", field="level") from None
        clauses.append("a.level = CAST(:level AS address_level)")
    return "WHERE " + " AND ".join(clauses), params


# --- writing -------------------------------------------------------------------------------------


def _child_parts(session: Session, data: AddressCreate) -> tuple[Any, dict[str, str | None]]:
    """Return a child's parent row and the components it inherits, checked against the input."""
    if data.parent_code is None:
        raise InvalidInput(f"a {data.level} address names its parent", field="parent_code")
    parent = session.execute(
        text("SELECT * FROM standard_address WHERE code = :c"), {"c": data.parent_code}
    ).first()
    if parent is None:
        raise InvalidInput(f"no standard address {data.parent_code}", field="parent_code")
    if parent.level not in _PARENT_LEVELS[data.level]:
        raise InvalidInput(f"a {data.level} cannot hang under a {parent.level}",
                           field="parent_code")
    own = _OWN_COMPONENT[data.level]
    parts: dict[str, str | None] = {name: getattr(parent, name) for name in _INHERITED}
    for name, inherited in parts.items():
        given = getattr(data, name)
        if name != own and given is not None and given != inherited:
            raise InvalidInput(f"{name} {given} differs from the parent's {inherited}",
                               field=name)
    if getattr(data, own) is None:
        raise InvalidInput(f"a {data.level} address needs its {own}", field=own)
    parts[own] = getattr(data, own)
    return parent, parts


def _door_parts(data: AddressCreate) -> dict[str, str | None]:
    """Return a door's components, checked for completeness."""
    if data.parent_code is not None:
        raise InvalidInput("a door has no parent address", field="parent_code")
    if data.door_number is None:
        raise InvalidInput("a door needs its door_number", field="door_number")
    if data.road is None and data.village_code is None:
        raise InvalidInput("a door names its road, or its village if it has none", field="road")
    for name in ("building", "unit", "room"):
        if getattr(data, name) is not None:
            raise InvalidInput(f"a door has no {name}: create a {name} under it", field=name)
    return {"county_code": data.county_code, "township_code": data.township_code,
            "village_code": data.village_code, "road": data.road,
            "door_number": data.door_number}


def _duplicate(exc: DBAPIError, level: str) -> Exception:
    """Return the Conflict for a duplicate code or a duplicate address text."""
    constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if constraint == "standard_address_components_key":
        field = _OWN_COMPONENT.get(level, "door_number")
        return Conflict("this address already exists under another code", field=field)
    return translate(exc, fields=_DUPLICATE_FIELDS)


def _write(session: Session, sql: str, params: Mapping[str, Any], level: str) -> Any:
    """Run one write in a savepoint, mapping database errors to domain errors."""
    try:
        with session.begin_nested():
            return session.execute(text(sql), params).first()
    except DBAPIError as exc:
        if sqlstate(exc) == "23505":
            raise _duplicate(exc, level) from None
        raise translate(exc, fields=_DUPLICATE_FIELDS) from None


_INSERT = """
INSERT INTO standard_address (code, level, parent_id, county_code, township_code, village_code,
    road, door_number, building, unit, room, full_text, geom, h3_r9)
VALUES (:code, CAST(:level AS address_level), :parent_id, :county_code, :township_code,
    :village_code, :road, :door_number, :building, :unit, :room, :full_text,
    ST_SetSRID(ST_Point(:lon, :lat), 4490), :h3_r9)
RETURNING id
"""


def create_address(
    session: Session, *, actor: Principal, data: AddressCreate | Mapping[str, Any]
) -> AddressPublic:
    """Create a standard address.

    Raises:
        PermissionDenied: the actor lacks address.write.
        InvalidInput: a missing or unknown crs, implausible coordinates, region codes that do
            not nest or do not hold the point (beyond REGION_TOLERANCE_M), a point outside the
            actor's jurisdiction, a parent that does not fit the level; ``field`` says which.
        Conflict: the code, or the same address text, exists already.
    """
    _require(actor, ADDRESS_WRITE)
    data = _validated(AddressCreate, data)
    lon, lat = _location_point(data.location, data.crs)
    parent = None
    if data.level == AddressLevel.DOOR:
        parts = _door_parts(data)
    else:
        parent, parts = _child_parts(session, data)
    codes = {k: parts[k] for k in ("county_code", "township_code", "village_code")}
    regions = _check_regions(session, codes, lon, lat)
    _check_jurisdiction(session, actor, lon, lat)
    parts["county_code"] = regions.county.code
    params = {**dict.fromkeys(("building", "unit", "room")), **parts,
              "code": data.code, "level": data.level.value,
              "parent_id": parent.id if parent is not None else None,
              "full_text": _full_text(regions, parts), "lon": lon, "lat": lat,
              "h3_r9": cell_int(lon, lat, 9)}
    row = _write(session, _INSERT, params, data.level.value)
    return load_addresses(session, [row.id])[row.id]


def _changed_parts(row: Any, data: AddressUpdate) -> dict[str, str | None]:
    """Return the components an update changes, refusing those the row's level does not own."""
    allowed = {_OWN_COMPONENT[row.level]} | ({"road", "village_code"} if row.level == "door"
                                             else set())
    changes: dict[str, str | None] = {}
    for name in ("road", "village_code", "door_number", "building", "unit", "room"):
        value = getattr(data, name)
        if value is None or value == getattr(row, name):
            continue
        if name not in allowed:
            raise InvalidInput(f"a {row.level} address cannot change its {name}", field=name)
        changes[name] = value
    return changes


_UPDATE = """
UPDATE standard_address SET village_code = :village_code, road = :road,
    door_number = :door_number, building = :building, unit = :unit, room = :room,
    full_text = :full_text, geom = ST_SetSRID(ST_Point(:lon, :lat), 4490), h3_r9 = :h3_r9,
    version = version + 1, updated_at = now()
WHERE id = :id AND version = :version
RETURNING id
"""


def update_address(
    session: Session, *, actor: Principal, code: str, data: AddressUpdate | Mapping[str, Any]
) -> AddressPublic:
    """Move an address or change the component its level owns; descendants follow the text.

    Raises:
        PermissionDenied: the actor lacks address.write.
        NotFound: no such address in the actor's scope.
        InvalidInput: as for create_address, or a component the level does not own.
        Conflict: ``version`` is stale, or the new text duplicates another address.
    """
    _require(actor, ADDRESS_WRITE)
    data = _validated(AddressUpdate, data)
    row = _find(session, code, lock=True)
    if not actor.covers(row.path_text):
        raise NotFound(f"no standard address {code}")
    if data.version != row.version:
        raise Conflict(f"address {code} changed since version {data.version} (now {row.version})",
                       field="version")
    lon, lat = (row.lon, row.lat) if data.location is None else _location_point(data.location,
                                                                               data.crs)
    parts = {name: getattr(row, name) for name in (*_INHERITED, "room")}
    changes = _changed_parts(row, data)
    parts.update(changes)
    codes = {k: parts[k] for k in ("county_code", "township_code", "village_code")}
    regions = _check_regions(session, codes, lon, lat)
    if data.location is not None:
        _check_jurisdiction(session, actor, lon, lat)
    params = {**parts, "id": row.id, "version": row.version, "lon": lon, "lat": lat,
              "full_text": _full_text(regions, parts), "h3_r9": cell_int(lon, lat, 9)}
    _write(session, _UPDATE, params, row.level)
    if changes:
        _cascade(session, row.id, changes, regions)
    return load_addresses(session, [row.id])[row.id]


def _cascade(
    session: Session, root_id: int, changes: Mapping[str, str | None], regions: _NamedRegions
) -> None:
    """Copy changed components to the visible descendants of an address and redo their text."""
    rows = session.execute(text(
        "WITH RECURSIVE d AS (SELECT id FROM standard_address WHERE parent_id = :root "
        "UNION ALL SELECT a.id FROM standard_address a JOIN d ON a.parent_id = d.id) "
        "SELECT a.* FROM standard_address a JOIN d USING (id)"), {"root": root_id}).all()
    for child in rows:
        parts = {name: getattr(child, name) for name in (*_INHERITED, "room")}
        parts.update(changes)
        _write(session,
               "UPDATE standard_address SET village_code = :village_code, road = :road, "
               "door_number = :door_number, building = :building, unit = :unit, "
               "full_text = :full_text, version = version + 1, updated_at = now() "
               "WHERE id = :id RETURNING id",
               {**parts, "id": child.id, "full_text": _full_text(regions, parts)}, child.level)


def delete_address(session: Session, *, actor: Principal, code: str, version: int) -> None:
    """Delete a standard address that nothing hangs under.

    Raises:
        PermissionDenied: the actor lacks address.write.
        NotFound: no such address in the actor's scope.
        Conflict: a stale version, or child addresses (or other rows) still refer to it.
    """
    _require(actor, ADDRESS_WRITE)
    row = _find(session, code, lock=True)
    if not actor.covers(row.path_text):
        raise NotFound(f"no standard address {code}")
    if version != row.version:
        raise Conflict(f"address {code} changed since version {version} (now {row.version})",
                       field="version")
    child = session.execute(text("SELECT code FROM standard_address WHERE parent_id = :id LIMIT 1"),
                            {"id": row.id}).scalar()
    if child is not None:
        raise Conflict(f"address {code} still has child addresses such as {child}", other=child)
    _write(session, "DELETE FROM standard_address WHERE id = :id RETURNING id", {"id": row.id},
           row.level)
