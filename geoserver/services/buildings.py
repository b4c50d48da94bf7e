"""Buildings (建筑物), residences (住所) and households (户): create and update.

A building's location comes from its footprint; a residence takes its building's location and a
household its residence's (database triggers copy the path, and move them when the building
moves). Reads, lists, exports and deletes are the generic ones in ``services.objects``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import ColumnElement, exists, func, select, text
from sqlalchemy.orm import Session

from geoserver.database.models.objects import (
    Building,
    BuildingCategory,
    Household,
    Residence,
    ResidenceUsage,
)
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound
from geoserver.services.objects import (
    KindSpec,
    Saved,
    changed,
    equals,
    geometry_location,
    insert_row,
    load_row,
    own_bbox,
    parse,
    refuse_clearing,
    register,
    require,
    saved,
    sort_keys_for,
    spec_for,
    table_of,
    update_row,
    updates_from,
)

CODE_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$"

_B = table_of(Building)
_R = table_of(Residence)
_H = table_of(Household)


# --- input models -------------------------------------------------------------------------


class BuildingCreate(BaseModel):
    """A new building: a footprint (Polygon or MultiPolygon) in a declared CRS."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: BuildingCategory = BuildingCategory.OTHER
    floors: int | None = Field(default=None, ge=1, le=200)
    households: int | None = Field(default=None, ge=0)
    address_id: int | None = None
    geometry: dict[str, Any]
    crs: str
    attributes: dict[str, Any] = Field(default_factory=dict)


class BuildingUpdate(BaseModel):
    """Changes to a building; only the fields sent change. ``version`` is the one you saw."""

    model_config = ConfigDict(extra="forbid")

    version: int
    code: str | None = Field(default=None, pattern=CODE_PATTERN)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: BuildingCategory | None = None
    floors: int | None = Field(default=None, ge=1, le=200)
    households: int | None = Field(default=None, ge=0)
    address_id: int | None = None
    geometry: dict[str, Any] | None = None
    crs: str | None = None
    attributes: dict[str, Any] | None = None


class ResidenceCreate(BaseModel):
    """A new residence (a unit/room) in a building the caller may see."""

    model_config = ConfigDict(extra="forbid")

    building_id: int
    address_id: int | None = None
    unit: str | None = Field(default=None, min_length=1, max_length=20)
    floor: int | None = Field(default=None, ge=-10, le=200)
    room: str = Field(min_length=1, max_length=20)
    usage: ResidenceUsage = ResidenceUsage.OWNER_OCCUPIED
    area_m2: Decimal | None = Field(default=None, gt=0, lt=100000, decimal_places=2)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ResidenceUpdate(BaseModel):
    """Changes to a residence; moving it to another building moves its location too."""

    model_config = ConfigDict(extra="forbid")

    version: int
    building_id: int | None = None
    address_id: int | None = None
    unit: str | None = Field(default=None, min_length=1, max_length=20)
    floor: int | None = Field(default=None, ge=-10, le=200)
    room: str | None = Field(default=None, min_length=1, max_length=20)
    usage: ResidenceUsage | None = None
    area_m2: Decimal | None = Field(default=None, gt=0, lt=100000, decimal_places=2)
    attributes: dict[str, Any] | None = None


class HouseholdCreate(BaseModel):
    """A new household (户) in a residence, optionally with its head (户主)."""

    model_config = ConfigDict(extra="forbid")

    household_no: str = Field(pattern=CODE_PATTERN)
    residence_id: int
    head_person_id: int | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class HouseholdUpdate(BaseModel):
    """Changes to a household."""

    model_config = ConfigDict(extra="forbid")

    version: int
    household_no: str | None = Field(default=None, pattern=CODE_PATTERN)
    residence_id: int | None = None
    head_person_id: int | None = None
    attributes: dict[str, Any] | None = None


# --- references -------------------------------------------------------------------------------


def visible_parent(session: Session, actor: Principal, kind: str, object_id: int,
                   field_name: str) -> Any:
    """Load a referenced object the actor may see, or raise InvalidInput naming the field."""
    try:
        return load_row(session, spec_for(kind), actor, object_id)
    except NotFound:
        raise InvalidInput(f"no {kind} {object_id} in your jurisdiction",
                           field=field_name) from None


def check_address(session: Session, address_id: int | None, field_name: str = "address_id") -> None:
    """Raise InvalidInput unless the standard address exists and the caller may see it."""
    if address_id is None:
        return
    found = session.execute(
        text("SELECT 1 FROM standard_address WHERE id = :id"), {"id": address_id}
    ).first()
    if found is None:
        raise InvalidInput(f"no standard address {address_id}", field=field_name)


# --- buildings --------------------------------------------------------------------------------

_BUILDING_COLUMNS = ("code", "name", "category", "floors", "households", "address_id",
                     "attributes")


def create_building(session: Session, *, actor: Principal,
                    data: BuildingCreate | dict[str, Any]) -> Saved:
    """Create a building; its path and H3 cells come from its footprint."""
    require(actor, "building.write")
    data = parse(BuildingCreate, data)
    location, warnings = geometry_location(session, actor, data.geometry, data.crs,
                                           ("MultiPolygon",), resolutions=(7, 8, 9))
    check_address(session, data.address_id)
    values = {c: getattr(data, c) for c in _BUILDING_COLUMNS} | location
    new_id = insert_row(session, BUILDING, values)
    return saved(session, BUILDING, actor, new_id, warnings)


def update_building(session: Session, *, actor: Principal, building_id: int,
                    data: BuildingUpdate | dict[str, Any]) -> Saved:
    """Update a building; a new footprint moves it, and its residences and people with it."""
    require(actor, "building.write")
    data = parse(BuildingUpdate, data)
    row = load_row(session, BUILDING, actor, building_id, for_update=True)
    values = updates_from(data, _BUILDING_COLUMNS)
    refuse_clearing(values, "code", "category", "attributes")
    if "address_id" in values:
        check_address(session, values["address_id"])
    warnings: list[str] = []
    if changed(data, "geometry", "crs"):
        location, warnings = geometry_location(session, actor, data.geometry, data.crs,
                                               ("MultiPolygon",), resolutions=(7, 8, 9))
        values |= location
    update_row(session, BUILDING, row, data.version, values)
    return saved(session, BUILDING, actor, building_id, warnings)


# --- residences -------------------------------------------------------------------------------

_RESIDENCE_COLUMNS = ("building_id", "address_id", "unit", "floor", "room", "usage", "area_m2",
                      "attributes")


def create_residence(session: Session, *, actor: Principal,
                     data: ResidenceCreate | dict[str, Any]) -> Saved:
    """Create a residence in a building; it takes the building's location."""
    require(actor, "building.write")
    data = parse(ResidenceCreate, data)
    visible_parent(session, actor, "building", data.building_id, "building_id")
    check_address(session, data.address_id)
    new_id = insert_row(session, RESIDENCE, {c: getattr(data, c) for c in _RESIDENCE_COLUMNS})
    return saved(session, RESIDENCE, actor, new_id, [])


def update_residence(session: Session, *, actor: Principal, residence_id: int,
                     data: ResidenceUpdate | dict[str, Any]) -> Saved:
    """Update a residence; a new building moves it (and its households and people)."""
    require(actor, "building.write")
    data = parse(ResidenceUpdate, data)
    row = load_row(session, RESIDENCE, actor, residence_id, for_update=True)
    values = updates_from(data, _RESIDENCE_COLUMNS)
    refuse_clearing(values, "building_id", "room", "usage", "attributes")
    if "building_id" in values:
        visible_parent(session, actor, "building", values["building_id"], "building_id")
    if "address_id" in values:
        check_address(session, values["address_id"])
    update_row(session, RESIDENCE, row, data.version, values)
    return saved(session, RESIDENCE, actor, residence_id, [])


# --- households -------------------------------------------------------------------------------

_HOUSEHOLD_COLUMNS = ("household_no", "residence_id", "head_person_id", "attributes")


def create_household(session: Session, *, actor: Principal,
                     data: HouseholdCreate | dict[str, Any]) -> Saved:
    """Create a household in a residence; it takes the residence's location."""
    require(actor, "person.write")
    data = parse(HouseholdCreate, data)
    visible_parent(session, actor, "residence", data.residence_id, "residence_id")
    if data.head_person_id is not None:
        visible_parent(session, actor, "person", data.head_person_id, "head_person_id")
    new_id = insert_row(session, HOUSEHOLD, {c: getattr(data, c) for c in _HOUSEHOLD_COLUMNS})
    return saved(session, HOUSEHOLD, actor, new_id, [])


def update_household(session: Session, *, actor: Principal, household_id: int,
                     data: HouseholdUpdate | dict[str, Any]) -> Saved:
    """Update a household (number, residence, head)."""
    require(actor, "person.write")
    data = parse(HouseholdUpdate, data)
    row = load_row(session, HOUSEHOLD, actor, household_id, for_update=True)
    values = updates_from(data, _HOUSEHOLD_COLUMNS)
    refuse_clearing(values, "household_no", "residence_id", "attributes")
    if "residence_id" in values:
        visible_parent(session, actor, "residence", values["residence_id"], "residence_id")
    if values.get("head_person_id") is not None:
        visible_parent(session, actor, "person", values["head_person_id"], "head_person_id")
    update_row(session, HOUSEHOLD, row, data.version, values)
    return saved(session, HOUSEHOLD, actor, household_id, [])


# --- specs ------------------------------------------------------------------------------------


def in_buildings(building_id_column: ColumnElement[Any]) -> Any:
    """Return a bbox clause for rows located by a building id column."""
    def clause(env: ColumnElement[Any]) -> ColumnElement[bool]:
        return exists().where(_B.c.id == building_id_column,
                              func.ST_Intersects(_B.c.geom, env))
    return clause


def residences_in(env: ColumnElement[Any]) -> Any:
    """Return a sub-select of the ids of residences whose building meets an envelope."""
    return (select(_R.c.id).join(_B, _B.c.id == _R.c.building_id)
            .where(func.ST_Intersects(_B.c.geom, env)))


BUILDING = register(KindSpec(
    kind="building",
    permission="building",
    table=_B,
    hidden=frozenset(),
    has_geometry=True,
    text_columns=("name", "code"),
    filters={"category": equals(_B, "category")},
    sort_keys=sort_keys_for(_B, "code"),
    bbox_clause=own_bbox(_B),
    error_fields={"building_code_key": "code", "building_address_id_fkey": "address_id",
                  "building_geom_check": "geometry"},
))

RESIDENCE = register(KindSpec(
    kind="residence",
    permission="building",
    table=_R,
    hidden=frozenset(),
    has_geometry=False,
    text_columns=("room",),
    filters={"category": equals(_R, "usage"), "building_id": equals(_R, "building_id")},
    sort_keys=sort_keys_for(_R, "room"),
    bbox_clause=in_buildings(_R.c.building_id),
    error_fields={"residence_room_key": "room", "residence_building_id_fkey": "building_id"},
))

HOUSEHOLD = register(KindSpec(
    kind="household",
    permission="person",
    table=_H,
    hidden=frozenset(),
    has_geometry=False,
    text_columns=("household_no",),
    filters={"residence_id": equals(_H, "residence_id")},
    sort_keys=sort_keys_for(_H, "household_no"),
    bbox_clause=lambda env: _H.c.residence_id.in_(residences_in(env)),
    error_fields={"household_household_no_key": "household_no"},
))
