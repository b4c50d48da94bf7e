"""Organizations (组织机构), key places (重点场所) and city components (城市部件).

An organization has an optional point and is otherwise located by a region code; a key place
is a point or the outline of its premises; a city component is a point. Reads, lists, exports
and deletes are the generic ones in ``services.objects``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from geoserver.database.models.objects import (
    CityComponent,
    ComponentStatus,
    KeyPlace,
    Organization,
    RiskLevel,
)
from geoserver.domain.documents import (
    DocumentInvalid,
    mask_name,
    mask_phone,
    normalize_phone,
    validate_uscc,
)
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services.buildings import CODE_PATTERN
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
    point_or_region,
    refuse_clearing,
    register,
    require,
    saved,
    sort_keys_for,
    table_of,
    update_row,
    updates_from,
)

CONTACT_PHONE_CONTEXT = "key_place.contact_phone"

_O = table_of(Organization)
_K = table_of(KeyPlace)
_C = table_of(CityComponent)


class OrganizationCategory(StrEnum):
    """组织机构类别: party 党组织, government 党政机关, public_institution 事业单位,
    social_organization 社会组织, mass_organization 群团组织, village_organization 村(居)委会,
    other 其他."""

    PARTY = "party"
    GOVERNMENT = "government"
    PUBLIC_INSTITUTION = "public_institution"
    SOCIAL_ORGANIZATION = "social_organization"
    MASS_ORGANIZATION = "mass_organization"
    VILLAGE_ORGANIZATION = "village_organization"
    OTHER = "other"


class KeyPlaceCategory(StrEnum):
    """重点场所类别: school 学校, kindergarten 幼儿园, hospital 医院, market 市场,
    gas_station 加油站, entertainment 娱乐场所, religious 宗教场所, elderly_care 养老机构,
    hazardous_chemicals 危化品企业, hotel 旅馆, internet_cafe 网吧, construction_site 工地,
    other 其他."""

    SCHOOL = "school"
    KINDERGARTEN = "kindergarten"
    HOSPITAL = "hospital"
    MARKET = "market"
    GAS_STATION = "gas_station"
    ENTERTAINMENT = "entertainment"
    RELIGIOUS = "religious"
    ELDERLY_CARE = "elderly_care"
    HAZARDOUS_CHEMICALS = "hazardous_chemicals"
    HOTEL = "hotel"
    INTERNET_CAFE = "internet_cafe"
    CONSTRUCTION_SITE = "construction_site"
    OTHER = "other"


class ComponentCategory(StrEnum):
    """城市部件类别: manhole_cover 井盖, street_lamp 路灯, fire_hydrant 消防栓, trash_bin 垃圾桶,
    camera 监控, bus_stop 公交站, public_toilet 公厕, billboard 广告牌, bench 座椅, other 其他."""

    MANHOLE_COVER = "manhole_cover"
    STREET_LAMP = "street_lamp"
    FIRE_HYDRANT = "fire_hydrant"
    TRASH_BIN = "trash_bin"
    CAMERA = "camera"
    BUS_STOP = "bus_stop"
    PUBLIC_TOILET = "public_toilet"
    BILLBOARD = "billboard"
    BENCH = "bench"
    OTHER = "other"


# --- organizations ----------------------------------------------------------------------------


class OrganizationCreate(BaseModel):
    """A new organization: a point in a declared CRS, or else a region code."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    category: OrganizationCategory = OrganizationCategory.OTHER
    uscc: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=300)
    geometry: dict[str, Any] | None = None
    crs: str | None = None
    region_code: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class OrganizationUpdate(BaseModel):
    """Changes to an organization; a new point or region code moves it."""

    model_config = ConfigDict(extra="forbid")

    version: int
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: OrganizationCategory | None = None
    uscc: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=300)
    geometry: dict[str, Any] | None = None
    crs: str | None = None
    region_code: str | None = None
    attributes: dict[str, Any] | None = None


def checked_uscc(value: str | None) -> str | None:
    """Validate an optional USCC (GB 32100 check character), or raise InvalidInput on uscc."""
    if value is None:
        return None
    try:
        return validate_uscc(value)
    except DocumentInvalid as exc:
        raise InvalidInput(exc.reason, field=exc.field) from None


_ORG_COLUMNS = ("name", "category", "address", "attributes")


def create_organization(session: Session, *, actor: Principal,
                        data: OrganizationCreate | dict[str, Any]) -> Saved:
    """Create an organization located by its point, else by a region code."""
    require(actor, "enterprise.write")
    data = parse(OrganizationCreate, data)
    values = {c: getattr(data, c) for c in _ORG_COLUMNS} | {"uscc": checked_uscc(data.uscc)}
    location, warnings = point_or_region(session, actor, data.geometry, data.crs,
                                         data.region_code)
    new_id = insert_row(session, ORGANIZATION, values | location)
    return saved(session, ORGANIZATION, actor, new_id, warnings)


def update_organization(session: Session, *, actor: Principal, organization_id: int,
                        data: OrganizationUpdate | dict[str, Any]) -> Saved:
    """Update an organization; sending a point or a region code moves it."""
    require(actor, "enterprise.write")
    data = parse(OrganizationUpdate, data)
    row = load_row(session, ORGANIZATION, actor, organization_id, for_update=True)
    values = updates_from(data, _ORG_COLUMNS)
    refuse_clearing(values, "name", "category", "attributes")
    if changed(data, "uscc"):
        values["uscc"] = checked_uscc(data.uscc)
    warnings: list[str] = []
    if changed(data, "geometry", "crs", "region_code"):
        location, warnings = point_or_region(session, actor, data.geometry, data.crs,
                                             data.region_code)
        values |= location
    update_row(session, ORGANIZATION, row, data.version, values)
    return saved(session, ORGANIZATION, actor, organization_id, warnings)


# --- key places -------------------------------------------------------------------------------

_PLACE_TYPES = ("Point", "Polygon", "MultiPolygon")


class KeyPlaceCreate(BaseModel):
    """A new key place: a point or the outline of its premises, in a declared CRS."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    category: KeyPlaceCategory
    address: str | None = Field(default=None, max_length=300)
    contact_name: str | None = Field(default=None, min_length=1, max_length=100)
    contact_phone: str | None = Field(default=None, max_length=30)
    risk_level: RiskLevel = RiskLevel.LOW
    geometry: dict[str, Any]
    crs: str
    attributes: dict[str, Any] = Field(default_factory=dict)


class KeyPlaceUpdate(BaseModel):
    """Changes to a key place."""

    model_config = ConfigDict(extra="forbid")

    version: int
    name: str | None = Field(default=None, min_length=1, max_length=200)
    category: KeyPlaceCategory | None = None
    address: str | None = Field(default=None, max_length=300)
    contact_name: str | None = Field(default=None, min_length=1, max_length=100)
    contact_phone: str | None = Field(default=None, max_length=30)
    risk_level: RiskLevel | None = None
    geometry: dict[str, Any] | None = None
    crs: str | None = None
    attributes: dict[str, Any] | None = None


def contact_phone_columns(crypto: PersonalDataCrypto, phone: str | None) -> dict[str, Any]:
    """Validate a contact phone and return its encrypted and masked columns."""
    if phone is None:
        return {"contact_phone_enc": None, "contact_phone_masked": None}
    try:
        normal = normalize_phone(phone)
    except DocumentInvalid:
        raise InvalidInput("not a mainland mobile or landline number",
                           field="contact_phone") from None
    return {"contact_phone_enc": crypto.encrypt(normal, context=CONTACT_PHONE_CONTEXT),
            "contact_phone_masked": mask_phone(normal)}


_PLACE_COLUMNS = ("name", "category", "address", "contact_name", "risk_level", "attributes")


def create_key_place(session: Session, *, actor: Principal, crypto: PersonalDataCrypto,
                     data: KeyPlaceCreate | dict[str, Any]) -> Saved:
    """Create a key place; the contact phone is stored encrypted and masked."""
    require(actor, "place.write")
    data = parse(KeyPlaceCreate, data)
    location, warnings = geometry_location(session, actor, data.geometry, data.crs,
                                            _PLACE_TYPES)
    values = {c: getattr(data, c) for c in _PLACE_COLUMNS} | location
    values |= contact_phone_columns(crypto, data.contact_phone)
    new_id = insert_row(session, KEY_PLACE, values)
    return saved(session, KEY_PLACE, actor, new_id, warnings)


def update_key_place(session: Session, *, actor: Principal, crypto: PersonalDataCrypto,
                     key_place_id: int, data: KeyPlaceUpdate | dict[str, Any]) -> Saved:
    """Update a key place; a new geometry moves it."""
    require(actor, "place.write")
    data = parse(KeyPlaceUpdate, data)
    row = load_row(session, KEY_PLACE, actor, key_place_id, for_update=True)
    values = updates_from(data, _PLACE_COLUMNS)
    refuse_clearing(values, "name", "category", "risk_level", "attributes")
    if changed(data, "contact_phone"):
        values |= contact_phone_columns(crypto, data.contact_phone)
    warnings: list[str] = []
    if changed(data, "geometry", "crs"):
        location, warnings = geometry_location(session, actor, data.geometry, data.crs,
                                            _PLACE_TYPES)
        values |= location
    update_row(session, KEY_PLACE, row, data.version, values)
    return saved(session, KEY_PLACE, actor, key_place_id, warnings)


# --- city components --------------------------------------------------------------------------


class CityComponentCreate(BaseModel):
    """A new city component: a point in a declared CRS."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    category: ComponentCategory
    status: ComponentStatus = ComponentStatus.INTACT
    owner_department: str | None = Field(default=None, min_length=1, max_length=100)
    geometry: dict[str, Any]
    crs: str
    attributes: dict[str, Any] = Field(default_factory=dict)


class CityComponentUpdate(BaseModel):
    """Changes to a city component (often just its status)."""

    model_config = ConfigDict(extra="forbid")

    version: int
    code: str | None = Field(default=None, pattern=CODE_PATTERN)
    category: ComponentCategory | None = None
    status: ComponentStatus | None = None
    owner_department: str | None = Field(default=None, min_length=1, max_length=100)
    geometry: dict[str, Any] | None = None
    crs: str | None = None
    attributes: dict[str, Any] | None = None


_COMPONENT_COLUMNS = ("code", "category", "status", "owner_department", "attributes")


def create_city_component(session: Session, *, actor: Principal,
                          data: CityComponentCreate | dict[str, Any]) -> Saved:
    """Create a city component at a point."""
    require(actor, "place.write")
    data = parse(CityComponentCreate, data)
    location, warnings = geometry_location(session, actor, data.geometry, data.crs,
                                            ("Point",))
    values = {c: getattr(data, c) for c in _COMPONENT_COLUMNS} | location
    new_id = insert_row(session, CITY_COMPONENT, values)
    return saved(session, CITY_COMPONENT, actor, new_id, warnings)


def update_city_component(session: Session, *, actor: Principal, city_component_id: int,
                          data: CityComponentUpdate | dict[str, Any]) -> Saved:
    """Update a city component; a new point moves it."""
    require(actor, "place.write")
    data = parse(CityComponentUpdate, data)
    row = load_row(session, CITY_COMPONENT, actor, city_component_id, for_update=True)
    values = updates_from(data, _COMPONENT_COLUMNS)
    refuse_clearing(values, "code", "category", "status", "attributes")
    warnings: list[str] = []
    if changed(data, "geometry", "crs"):
        location, warnings = geometry_location(session, actor, data.geometry, data.crs,
                                            ("Point",))
        values |= location
    update_row(session, CITY_COMPONENT, row, data.version, values)
    return saved(session, CITY_COMPONENT, actor, city_component_id, warnings)


# --- specs ------------------------------------------------------------------------------------


def _place_masked(row: Mapping[str, Any]) -> dict[str, Any]:
    name = row["contact_name"]
    return {"contact_name": mask_name(name) if name else None,
            "contact_phone": row["contact_phone_masked"]}


def _place_revealed(row: Mapping[str, Any], crypto: PersonalDataCrypto) -> dict[str, Any]:
    out: dict[str, Any] = {"contact_name": row["contact_name"]}
    if row["contact_phone_enc"] is not None:
        out["contact_phone"] = crypto.decrypt(row["contact_phone_enc"],
                                              context=CONTACT_PHONE_CONTEXT)
    return out


ORGANIZATION = register(KindSpec(
    kind="organization",
    permission="enterprise",
    table=_O,
    hidden=frozenset(),
    has_geometry=True,
    text_columns=("name",),
    filters={"category": equals(_O, "category")},
    sort_keys=sort_keys_for(_O, "name"),
    bbox_clause=own_bbox(_O),
    error_fields={"organization_uscc_key": "uscc"},
))

KEY_PLACE = register(KindSpec(
    kind="key_place",
    permission="place",
    table=_K,
    hidden=frozenset({"contact_name", "contact_phone_enc", "contact_phone_masked"}),
    has_geometry=True,
    text_columns=("name",),
    filters={"category": equals(_K, "category"), "status": equals(_K, "risk_level")},
    sort_keys=sort_keys_for(_K, "name"),
    bbox_clause=own_bbox(_K),
    masked=_place_masked,
    revealed=_place_revealed,
    error_fields={"key_place_geom_check": "geometry"},
))

CITY_COMPONENT = register(KindSpec(
    kind="city_component",
    permission="place",
    table=_C,
    hidden=frozenset(),
    has_geometry=True,
    text_columns=("code",),
    filters={"category": equals(_C, "category"), "status": equals(_C, "status")},
    sort_keys=sort_keys_for(_C, "code"),
    bbox_clause=own_bbox(_C),
    error_fields={"city_component_code_key": "code"},
))
