"""Import targets: which of our fields each takes, what geometry, how a row is written.

Fields come from the service's own input model (``BuildingCreate``, ``RegionCreate`` …), so a
column is checked against exactly what the API accepts. Buildings and city components, the kinds
that come by the million, are merged set-based (``spatial_etl.bulk``) after every row passed that
model; the others go row by row through the services' ``create_*``/``update_*``.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from geoserver.services import addresses, buildings, enterprises, events, persons, places, regions
from spatial_etl import writers
from spatial_etl.bulk import BulkSpec
from spatial_etl.mapping import FieldSpec
from spatial_etl.problems import EtlInputError

Writer = Callable[[writers.WriteContext, writers.RowInput], str]
_GEOMETRY_FIELDS = ("geometry", "crs", "location")
_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class Target:
    """One kind of row an import can write."""

    name: str
    title: str
    model: type[BaseModel]
    #: Accepted geometry types; () means the rows have none of their own.
    geometry: tuple[str, ...] = ()
    geometry_required: bool = False
    #: Field whose key identifies an existing row (for the summary and duplicate checks).
    key: str | None = "code"
    #: Values for fields the rows leave empty (a grid file need not say level = grid).
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Fields that are ours but not the model's (written by the writer itself).
    extra_fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    #: Set-based merge (big kinds) or a per-row writer through the services.
    bulk: BulkSpec | None = None
    write: Writer | None = None
    #: A text field that places a row without geometry (geocoded to a standard address).
    geocode_field: str | None = None
    #: Rows are written in passes over this field's values, in this order (parents first).
    passes: tuple[str, tuple[str, ...]] | None = None

    @property
    def fields(self) -> dict[str, FieldSpec]:
        """Return our fields for this target (the model's, without its geometry fields)."""
        out = {n: _field_spec(n, f.annotation, f.is_required() and n not in self.defaults)
               for n, f in self.model.model_fields.items() if n not in _GEOMETRY_FIELDS}
        out.update(self.extra_fields)
        return out

    @property
    def implied(self) -> tuple[str, ...]:
        """Return the fields the importer fills itself."""
        return tuple(self.defaults)


def _kind(annotation: Any) -> str:
    """Return the mapping kind of a model field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and args:
        return _kind(args[0])
    if origin is typing.Annotated and args:
        return _kind(args[0])
    if origin in (list, tuple, set):
        return "list"
    if origin is dict or annotation is dict:
        return "dict"
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return "bool"
        if issubclass(annotation, enum.Enum) or issubclass(annotation, str):
            return "str"
        if issubclass(annotation, int):
            return "int"
        if issubclass(annotation, float | Decimal):
            return "float"
        if issubclass(annotation, dt.datetime):
            return "datetime"
        if issubclass(annotation, dt.date):
            return "date"
    return "any"


def _field_spec(name: str, annotation: Any, required: bool) -> FieldSpec:
    return FieldSpec(name, required, _kind(annotation))


def field_model(model: type[BaseModel]) -> type[BaseModel]:
    """Return a model with the service model's fields except geometry (for staged rows)."""
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in model.model_fields.items()
                              if n not in _GEOMETRY_FIELDS}
    return create_model(f"{model.__name__}Fields",  # type: ignore[call-overload,no-any-return]
                        __config__=ConfigDict(extra="forbid"), **fields)


_REGION_LEVELS = ("city", "county", "township", "village", "grid", "micro_grid")
_ADDRESS_LEVELS = ("door", "building", "unit", "room")

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("regions", "regions (区划)", regions.RegionCreate, _POLYGONAL, True,
           write=writers.write_region, passes=("level", _REGION_LEVELS)),
    Target("grids", "grids (网格)", regions.RegionCreate, _POLYGONAL, True,
           defaults={"level": "grid", "grid_type": "general"}, write=writers.write_region),
    Target("addresses", "standard addresses (标准地址)", addresses.AddressCreate, ("Point",), True,
           write=writers.write_address, passes=("level", _ADDRESS_LEVELS)),
    Target("buildings", "buildings (建筑物)", buildings.BuildingCreate, _POLYGONAL, True,
           bulk=BulkSpec("building", "building.write",
                         {"name": "text", "category": "building_category",
                          "floors": "smallint", "households": "integer",
                          "address_id": "bigint"}, multi=True, resolutions=(7, 8, 9))),
    Target("components", "city components (城市部件)", places.CityComponentCreate, ("Point",),
           True, bulk=BulkSpec("city_component", "place.write",
                               {"category": "text", "status": "component_status",
                                "owner_department": "text"}, multi=False, resolutions=(9,))),
    Target("places", "key places (重点场所)", places.KeyPlaceCreate, ("Point", *_POLYGONAL),
           True, extra_fields={"code": FieldSpec("code")}, write=writers.write_key_place,
           geocode_field="address"),
    Target("enterprises", "enterprises (企业)", enterprises.EnterpriseCreate, ("Point",),
           key="uscc", write=writers.write_enterprise, geocode_field="address"),
    Target("persons", "persons (实有人口)", persons.PersonCreate, ("Point",), key=None,
           write=writers.write_person),
    Target("events", "historic events (事件)", events.EventCreate, ("Point",), key="external_ref",
           extra_fields={"reported_at": FieldSpec("reported_at", kind="datetime")},
           write=writers.write_event),
)}
TRACKS = "tracks"
NAMES = (*TARGETS, TRACKS)


def target(name: str) -> Target:
    """Return the target called ``name``, or raise EtlInputError listing them."""
    try:
        return TARGETS[name]
    except KeyError:
        raise EtlInputError(f"--target must be one of {', '.join(NAMES)}") from None
