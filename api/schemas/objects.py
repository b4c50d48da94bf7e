"""Response and query models of the base-data API, derived from each kind's table and spec.

Records are built from the table the service reads (``KindSpec.table``), so the schema the API
declares is the one the service returns, column for column, as the SQL evolves: plain columns
(nullable ones as ``T | None``), personal fields (masked unless revealed), ``geometry`` for
kinds that have one and ``revealed`` (the personal fields shown in clear).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import Column

from api.schemas.common import MAX_ID, NO_NUL
from geoserver.database.models.objects import SpecialCategory
from geoserver.services.objects import MAX_LIMIT, KindSpec

#: Columns a record never carries as they are (the service selects GeoJSON instead).
_GEOMETRY_COLUMNS = ("geom", "geom_3857", "centroid")
_PLAIN_TYPES = (bool, int, float, str, date, datetime)

Text = Annotated[str, Field(max_length=100, pattern=NO_NUL)]
Tag = Annotated[str, Field(min_length=1, max_length=20, pattern=NO_NUL)]
ParentId = Annotated[int | None, Field(ge=1, le=MAX_ID)]


def _column_type(column: Column[Any]) -> Any:
    """Return the Python type a record holds for a column (as ``objects.to_record`` shapes it)."""
    try:
        python = column.type.python_type
    except NotImplementedError:  # ltree and friends: records carry them as text
        python = str
    if isinstance(python, type) and issubclass(python, StrEnum):
        kind: Any = python
    elif python is Decimal:
        kind = float
    elif python is list:
        kind = list[str]
    elif python is dict or column.name == "attributes":
        kind = dict[str, Any]
    elif python in _PLAIN_TYPES:
        kind = python
    else:
        kind = str
    return kind | None if column.nullable else kind


def camel(kind: str) -> str:
    """Return ``key_place`` as ``KeyPlace``."""
    return "".join(part.capitalize() for part in kind.split("_"))


def record_model(spec: KindSpec, personal: tuple[str, ...]) -> type[BaseModel]:
    """Return the model of one record of a kind, as reads, lists and writes return it."""
    fields: dict[str, Any] = {}
    for column in spec.table.c:
        if column.name in spec.hidden or column.name in _GEOMETRY_COLUMNS:
            continue
        fields[column.name] = (_column_type(column), ...)
    for name in personal:
        fields[name] = (str | None, Field(description="masked unless listed in revealed"))
    if spec.has_geometry:
        fields["geometry"] = (dict[str, Any] | None, Field(description="GeoJSON geometry"))
    fields["revealed"] = (list[str], Field(description="personal fields shown in clear"))
    return create_model(f"{camel(spec.kind)}Record", **fields)


def saved_model(record: type[BaseModel]) -> type[BaseModel]:
    """Return the model of a write's answer: the record and the repair warnings."""
    name = record.__name__.removesuffix("Record") + "Saved"
    return create_model(name, __base__=record,
                        warnings=(list[str], Field(description="e.g. a repaired outline")))


def page_model(record: type[BaseModel]) -> type[BaseModel]:
    """Return the model of one page of a list."""
    name = record.__name__.removesuffix("Record") + "Page"
    return create_model(name, items=(list[record], ...),  # type: ignore[valid-type]
                        next_cursor=(str | None, Field(description="pass back as cursor")),
                        limit=(int, ...))


class FilterQuery(BaseModel):
    """Filters and sort every list and export takes."""

    model_config = ConfigDict(extra="forbid")

    region_code: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{2,24}$")
    text: str | None = Field(default=None, max_length=100, pattern=NO_NUL,
                             description="part of a name or code")
    sort: str = Field(default="id", pattern=r"^[-+]?[a-z_]{1,40}$",
                      description="id, created_at, updated_at or a name; '-' for descending")


def _filter_fields(spec: KindSpec, category: Any, status: Any) -> dict[str, Any]:
    """Return the query fields of the filters this kind supports."""
    fields: dict[str, Any] = {}
    if "category" in spec.filters:
        fields["category"] = (category | None, None)
    if "status" in spec.filters:
        fields["status"] = (status | None, None)
    if "tags" in spec.filters:
        fields["tags"] = (list[Tag] | None, Field(default=None, max_length=10,
                                                   description="all of these tags"))
    if "special_category" in spec.filters:
        fields["special_category"] = (SpecialCategory | None, None)
    for parent in ("building_id", "residence_id", "household_id"):
        if parent in spec.filters:
            fields[parent] = (ParentId, None)
    if spec.bbox_clause is not None:
        fields["bbox"] = (str | None, Field(
            default=None, max_length=120, pattern=r"^[-+0-9.eE]+(,[-+0-9.eE]+){3}$",
            description="west,south,east,north in bbox_crs"))
        fields["bbox_crs"] = (str, Field(default="WGS84", pattern=r"^[A-Za-z0-9:_-]{1,40}$"))
    return fields


_OUT_CRS = Field(default="WGS84", pattern=r"^[A-Za-z0-9:_-]{1,40}$",
                 description="output CRS of geometries: WGS84, CGCS2000, GCJ02 or BD09")


def query_models(spec: KindSpec, category: Any, status: Any,
                 export_formats: tuple[str, ...]) -> tuple[Any, Any]:
    """Return the query models (FilterQuery subclasses) of a kind's list and export."""
    fields = _filter_fields(spec, category, status)
    name = camel(spec.kind)
    paging: dict[str, Any] = {
        "limit": (int, Field(default=100, ge=1, le=MAX_LIMIT)),
        "offset": (int, Field(default=0, ge=0, le=1_000_000)),
        "cursor": (str | None, Field(default=None, max_length=500,
                                     pattern=r"^[A-Za-z0-9_=-]+$")),
    }
    if spec.has_geometry:
        paging["f"] = (Literal["json", "geojson"], Field(
            default="json", description="geojson: a FeatureCollection"))
        paging["crs"] = (str, _OUT_CRS)
    listing = create_model(f"{name}ListQuery", __base__=FilterQuery, **fields, **paging)
    fmt = Literal[export_formats]  # type: ignore[valid-type]
    export = create_model(f"{name}ExportQuery", __base__=FilterQuery, **fields,
                          format=(fmt, Field(default="csv")))
    return listing, export


GEOJSON_PAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": {"type": "array", "items": {"type": "object"}},
        "next_cursor": {"type": ["string", "null"]},
        "numberReturned": {"type": "integer"},
    },
}
