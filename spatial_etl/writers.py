"""Per-row upserts through the services the API uses (regions, addresses, key places,
enterprises, persons, events).

Each writer looks the row's key up (code, USCC, document number …) in the caller's scope and
calls the service's ``create_*`` or ``update_*`` with the service's own input model, so an
imported row passes exactly the checks an API request would: permissions, scope, nesting and
overlap of boundaries, document checksums, encryption of personal data. Geometry arrives
already converted to CGCS2000 and repaired, and is handed over as GeoJSON with ``crs``
CGCS2000.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services import addresses, enterprises, events, persons, places, regions
from spatial_etl.bulk import SAME_SHAPE_DEG

STORAGE = "CGCS2000"


def same_shape(a: BaseGeometry, b: BaseGeometry) -> bool:
    """Return whether two geometries are the same shape, give or take reprojection noise.

    A boundary file that went through EPSG:4549 and back differs from the stored outline by
    float noise only, and must not make a new version of every region it touches.
    """
    return bool(shapely.equals(a, b)) or float(shapely.hausdorff_distance(a, b)) < SAME_SHAPE_DEG


@dataclass
class RowInput:
    """One source row on its way in: our fields, its storage geometry, where it came from."""

    row: int
    values: dict[str, Any]
    geom: BaseGeometry | None = None


@dataclass(frozen=True)
class WriteContext:
    """What every writer needs: the transaction, who acts, the personal-data cipher."""

    session: Session
    actor: Principal
    crypto: PersonalDataCrypto


def _geojson(geom: BaseGeometry | None) -> dict[str, Any] | None:
    return None if geom is None else dict(mapping(geom))


def _given(values: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """Return the named fields that the row has (a missing column never clears a value)."""
    return {n: values[n] for n in names if n in values}


# --- regions and grids ---------------------------------------------------------------------------

_REGION_UPDATABLE = ("name", "households", "party_members", "leader_name", "leader_phone",
                     "intro", "grid_type")


def write_region(ctx: WriteContext, row: RowInput) -> str:
    """Create a region or grid, or update the current one with the same code."""
    v = row.values
    current = ctx.session.execute(text(
        "SELECT code, name, level::text AS level, parent_code, households, party_members, "
        "leader_name, leader_phone, intro, grid_type::text AS grid_type, version, "
        "ST_AsBinary(geom) AS wkb FROM region WHERE code = :c AND valid_to IS NULL"),
        {"c": v.get("code")}).mappings().first()
    if current is None:
        regions.create_region(ctx.session, actor=ctx.actor, data=regions.RegionCreate(
            **v, geometry=_geojson(row.geom) or {}, crs=STORAGE))
        return "inserted"
    for name in ("level", "parent_code"):
        if v.get(name) is not None and str(v[name]) != str(current[name]):
            raise InvalidInput(f"region {current['code']} exists with {name} {current[name]}; "
                               f"an import does not move it to {v[name]}", field=name)
    changes = {k: v[k] for k in _REGION_UPDATABLE
               if k in v and v[k] is not None and str(v[k]) != str(current[k])}
    old = shapely.from_wkb(bytes(current["wkb"]))
    if row.geom is not None and not same_shape(old, row.geom):
        changes.update(geometry=_geojson(row.geom), crs=STORAGE)
    if not changes:
        return "unchanged"
    regions.update_region(ctx.session, actor=ctx.actor, code=current["code"],
                          data=regions.RegionUpdate(version=current["version"], **changes))
    return "updated"


# --- standard addresses --------------------------------------------------------------------------

_ADDRESS_PARTS = ("road", "door_number", "building", "unit", "room", "village_code")


def write_address(ctx: WriteContext, row: RowInput) -> str:
    """Create a standard address, or move/rename the one with the same code."""
    v = row.values
    location = _geojson(row.geom)
    try:
        current = addresses.get_address(ctx.session, actor=ctx.actor, code=str(v.get("code")))
    except NotFound:
        addresses.create_address(ctx.session, actor=ctx.actor, data={
            **v, "location": location, "crs": STORAGE})
        return "inserted"
    moved = row.geom is not None and (abs(row.geom.x - current.lon) > 1e-9
                                      or abs(row.geom.y - current.lat) > 1e-9)
    update: dict[str, Any] = {"version": current.version, **_given(v, *_ADDRESS_PARTS)}
    if moved:
        update.update(location=location, crs=STORAGE)
    before = current
    after = addresses.update_address(ctx.session, actor=ctx.actor, code=current.code,
                                     data=update)
    return "updated" if after.version != before.version and (
        moved or after.full_text != before.full_text) else "unchanged"


# --- key places, enterprises ---------------------------------------------------------------------

_PLACE_FIELDS = ("name", "category", "address", "contact_name", "contact_phone", "risk_level")


def _location(row: RowInput) -> dict[str, Any]:
    return {"geometry": _geojson(row.geom), "crs": STORAGE} if row.geom is not None else {}


def write_key_place(ctx: WriteContext, row: RowInput) -> str:
    """Create a key place, or update the one whose attributes.code is the row's code."""
    v = dict(row.values)
    code = v.pop("code", None)
    attributes = dict(v.pop("attributes", None) or {})
    if code is not None:
        attributes["code"] = str(code)
    existing = ctx.session.execute(
        text("SELECT id, version FROM key_place WHERE attributes ->> 'code' = :c"),
        {"c": str(code)}).first() if code is not None else None
    if existing is None:
        places.create_key_place(ctx.session, actor=ctx.actor, crypto=ctx.crypto, data={
            **v, "attributes": attributes, **_location(row)})
        return "inserted"
    places.update_key_place(ctx.session, actor=ctx.actor, crypto=ctx.crypto,
                            key_place_id=existing.id, data={
                                "version": existing.version, **_given(v, *_PLACE_FIELDS),
                                "attributes": attributes, **_location(row)})
    return "updated"


_ENTERPRISE_FIELDS = ("name", "credit_grade", "legal_representative", "industry", "address",
                      "staff_count", "region_code", "attributes")


def write_enterprise(ctx: WriteContext, row: RowInput) -> str:
    """Create an enterprise, or update the one with the same USCC (统一社会信用代码)."""
    v = row.values
    uscc = places.checked_uscc(v.get("uscc"))
    existing = ctx.session.execute(text("SELECT id, version FROM enterprise WHERE uscc = :u"),
                                   {"u": uscc}).first()
    located = _location(row) or ({"region_code": v["region_code"]} if v.get("region_code")
                                 else {})
    if existing is None:
        enterprises.create_enterprise(ctx.session, actor=ctx.actor,
                                      data={**v, "uscc": uscc, **located})
        return "inserted"
    data = {"version": existing.version, **_given(v, *_ENTERPRISE_FIELDS), **located}
    if "geometry" in located:
        data.pop("region_code", None)
    enterprises.update_enterprise(ctx.session, actor=ctx.actor, enterprise_id=existing.id,
                                  data=data)
    return "updated"


# --- persons -------------------------------------------------------------------------------------

_PERSON_FIELDS = ("name", "document_type", "document_number", "phone", "gender", "birth_date",
                  "person_type", "relation_to_head", "tags", "special_category", "attributes")


def region_code_at(session: Session, geom: BaseGeometry) -> str:
    """Return the code of the smallest region holding a point (what set_location would pick)."""
    code = session.execute(
        text("SELECT code FROM gridgov_meta.locate(ST_GeomFromWKB(:g, 4490))"),
        {"g": shapely.to_wkb(geom)}).scalar()
    if code is None:
        raise InvalidInput("the location lies outside the city (in no region)",
                           field="geometry")
    return str(code)


def write_person(ctx: WriteContext, row: RowInput) -> str:
    """Register a person, or update the one with the same document number (blind index)."""
    v = dict(row.values)
    if row.geom is not None and not v.get("region_code") and not v.get("residence_id"):
        v["region_code"] = region_code_at(ctx.session, row.geom)
    found = []
    if v.get("document_number"):
        found = persons.find_persons(ctx.session, actor=ctx.actor, crypto=ctx.crypto,
                                     document_number=str(v["document_number"]),
                                     document_type=v.get("document_type"))
    if not found:
        persons.create_person(ctx.session, actor=ctx.actor, crypto=ctx.crypto, data=v)
        return "inserted"
    current = found[0]
    data: dict[str, Any] = {"version": current["version"], **_given(v, *_PERSON_FIELDS)}
    if v.get("region_code") and v["region_code"] != current.get("region_code"):
        data["region_code"] = v["region_code"]
    persons.update_person(ctx.session, actor=ctx.actor, crypto=ctx.crypto,
                          person_id=current["id"], data=data)
    return "updated"


# --- historic events -----------------------------------------------------------------------------


def _reported_at(value: Any) -> datetime | None:
    """Return a report time; a time without zone is Shanghai's (the governance clock)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("/", "-"))
        except ValueError:
            raise InvalidInput(f"{value!r} is not a date and time (2026-03-01 08:30)",
                               field="reported_at") from None
    if not isinstance(value, datetime):
        raise InvalidInput(f"{value!r} is not a date and time", field="reported_at")
    return value if value.tzinfo else value.replace(tzinfo=GOVERNANCE_TZ)


def write_event(ctx: WriteContext, row: RowInput) -> str:
    """Take in a historic event once (source + external_ref identify it), at its report time."""
    v = dict(row.values)
    at = _reported_at(v.pop("reported_at", None))
    source = v.get("source") or "patrol"
    if v.get("external_ref"):
        seen = ctx.session.execute(
            text("SELECT id FROM event WHERE source = :s AND external_ref = :e"),
            {"s": str(source), "e": v["external_ref"]}).first()
        if seen is not None:
            return "unchanged"
    if row.geom is not None:
        v.update(location=_geojson(row.geom), crs=STORAGE)
    events.report_event(ctx.session, actor=ctx.actor, data=v, crypto=ctx.crypto, at=at)
    return "inserted"
