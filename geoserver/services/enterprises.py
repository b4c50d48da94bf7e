"""Enterprises (企业): create and update, with the USCC checked (GB 32100) and unique.

The legal representative's name is shown masked unless revealed. Reads, lists, exports and
deletes are the generic ones in ``services.objects``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from geoserver.database.models.objects import CreditGrade, Enterprise
from geoserver.domain.documents import mask_name
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services.objects import (
    KindSpec,
    Saved,
    changed,
    equals,
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
from geoserver.services.places import checked_uscc

_E = table_of(Enterprise)


class EnterpriseCreate(BaseModel):
    """A new enterprise: located by its point (declared CRS), else by a region code."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    uscc: str = Field(max_length=40)
    credit_grade: CreditGrade | None = None
    legal_representative: str | None = Field(default=None, min_length=1, max_length=100)
    industry: str | None = Field(default=None, min_length=1, max_length=100)
    address: str | None = Field(default=None, max_length=300)
    staff_count: int | None = Field(default=None, ge=0)
    geometry: dict[str, Any] | None = None
    crs: str | None = None
    region_code: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class EnterpriseUpdate(BaseModel):
    """Changes to an enterprise; a new point or region code moves it."""

    model_config = ConfigDict(extra="forbid")

    version: int
    name: str | None = Field(default=None, min_length=1, max_length=200)
    uscc: str | None = Field(default=None, max_length=40)
    credit_grade: CreditGrade | None = None
    legal_representative: str | None = Field(default=None, min_length=1, max_length=100)
    industry: str | None = Field(default=None, min_length=1, max_length=100)
    address: str | None = Field(default=None, max_length=300)
    staff_count: int | None = Field(default=None, ge=0)
    geometry: dict[str, Any] | None = None
    crs: str | None = None
    region_code: str | None = None
    attributes: dict[str, Any] | None = None


_COLUMNS = ("name", "credit_grade", "legal_representative", "industry", "address",
            "staff_count", "attributes")


def create_enterprise(session: Session, *, actor: Principal,
                      data: EnterpriseCreate | dict[str, Any]) -> Saved:
    """Create an enterprise; a USCC that fails its check character or exists already is refused."""
    require(actor, "enterprise.write")
    data = parse(EnterpriseCreate, data)
    values = {c: getattr(data, c) for c in _COLUMNS} | {"uscc": checked_uscc(data.uscc)}
    location, warnings = point_or_region(session, actor, data.geometry, data.crs,
                                         data.region_code)
    new_id = insert_row(session, ENTERPRISE, values | location)
    return saved(session, ENTERPRISE, actor, new_id, warnings)


def update_enterprise(session: Session, *, actor: Principal, enterprise_id: int,
                      data: EnterpriseUpdate | dict[str, Any]) -> Saved:
    """Update an enterprise; sending a point or a region code moves it."""
    require(actor, "enterprise.write")
    data = parse(EnterpriseUpdate, data)
    row = load_row(session, ENTERPRISE, actor, enterprise_id, for_update=True)
    values = updates_from(data, _COLUMNS)
    refuse_clearing(values, "name", "attributes")
    if changed(data, "uscc"):
        if data.uscc is None:
            raise InvalidInput("uscc cannot be cleared", field="uscc")
        values["uscc"] = checked_uscc(data.uscc)
    warnings: list[str] = []
    if changed(data, "geometry", "crs", "region_code"):
        location, warnings = point_or_region(session, actor, data.geometry, data.crs,
                                             data.region_code)
        values |= location
    update_row(session, ENTERPRISE, row, data.version, values)
    return saved(session, ENTERPRISE, actor, enterprise_id, warnings)


def _masked(row: Mapping[str, Any]) -> dict[str, Any]:
    name = row["legal_representative"]
    return {"legal_representative": mask_name(name) if name else None}


def _revealed(row: Mapping[str, Any], crypto: PersonalDataCrypto) -> dict[str, Any]:
    return {"legal_representative": row["legal_representative"]}


ENTERPRISE = register(KindSpec(
    kind="enterprise",
    permission="enterprise",
    table=_E,
    hidden=frozenset({"legal_representative"}),
    has_geometry=True,
    text_columns=("name",),
    filters={"category": equals(_E, "industry"), "status": equals(_E, "credit_grade")},
    sort_keys=sort_keys_for(_E, "name", "uscc"),
    bbox_clause=own_bbox(_E),
    masked=_masked,
    revealed=_revealed,
    error_fields={"enterprise_uscc_key": "uscc"},
))
