"""Base data (基础数据库) services: the machinery every kind shares, and the generic read side.

Kinds: building, residence, household, person, organization, key_place, city_component,
enterprise. Each kind module (buildings, persons, places, enterprises) registers a KindSpec
and offers typed ``create_<kind>`` / ``update_<kind>``; reading, listing, exporting and
deleting are generic here (``get_object``, ``list_objects``, ``iter_rows``, ``delete_object``).

Rules every service follows:

- Permissions (as seeded by migration 0006): ``<p>.read`` to read or list, ``<p>.write`` to
  create, update or delete, where <p> is building (buildings, residences), person (persons,
  households), place (key places, city components), enterprise (enterprises, organizations);
  ``person.read_sensitive`` to see personal fields unmasked. Scope: rows are filtered by RLS
  *and* checked against ``actor.covers(path)`` of the loaded row; out of scope is NotFound.
- Locations come from the server: geometry → ``gridgov_meta.locate`` (the trigger stores it);
  rows without geometry take the path of a region code the caller may see.
- Personal fields (document numbers, phones, contact and representative names) are masked.
  Passing ``reveal=True`` (which needs ``person.read_sensitive`` and a ``crypto``) shows them in
  clear; every record then lists the fields shown in clear under ``"revealed"`` and, if given,
  ``on_reveal(kind, id, fields)`` is called once per such record, so the API can audit each
  unmasked read (PIPL; 等保) in the same transaction.
- Updates name the version they saw; a stale version is a Conflict.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from typing import cast as typing_cast

import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    Table,
    cast,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Text

from geoserver.database.models.region import LTree
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, FieldProblem, InvalidInput, NotFound, PermissionDenied
from geoserver.geo.crs import STORAGE_SRID, InputCRS, parse_input_crs, transform_geometry
from geoserver.geo.h3cells import cell_int
from geoserver.geo.validate import (
    GeometryProblem,
    check_lonlat,
    parse_geojson_geometry,
    validate_geometry,
)
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services.dberrors import translate

Record = dict[str, Any]
"""One object as the API shows it: plain columns, ``geometry`` (GeoJSON), personal fields
(masked unless revealed), ``revealed`` (the personal fields shown in clear)."""

RevealHook = Callable[[str, int, list[str]], None]
"""Called as ``on_reveal(kind, object_id, fields)`` for each record shown with fields in clear."""

KIND_NAMES = ("building", "residence", "household", "person", "organization", "key_place",
              "city_component", "enterprise")
SENSITIVE_PERMISSION = "person.read_sensitive"
MAX_LIMIT = 1000
_GEOJSON_DIGITS = 7  # ~1 cm in degrees


# --- results and filters --------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    """The result of a write: the object as a record, and warnings (e.g. a repaired outline)."""

    record: Record
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[Record]
    next_cursor: str | None


class ListFilters(BaseModel):
    """Filters, sort and paging for lists and exports (unsupported filters are InvalidInput).

    ``category`` filters each kind's main classification (building and key place category,
    residence usage, person type, component category, organization category, enterprise
    industry); ``status`` its state (component status, enterprise credit grade, key place risk
    level). ``bbox`` is (west, south, east, north) in ``bbox_crs``. ``sort`` is a whitelisted
    key, ``-`` in front for descending. Paging: ``cursor`` (keyset, stable under inserts) or
    ``offset``.
    """

    model_config = ConfigDict(extra="forbid")

    region_code: str | None = None
    category: str | None = None
    status: str | None = None
    text: str | None = Field(default=None, max_length=100)
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str = "WGS84"
    tags: list[str] | None = None
    special_category: str | None = None
    building_id: int | None = None
    residence_id: int | None = None
    household_id: int | None = None
    sort: str = "id"
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0)
    cursor: str | None = None


FILTER_NAMES = ("category", "status", "tags", "special_category", "building_id",
                "residence_id", "household_id")


# --- kind specifications --------------------------------------------------------------------

Masker = Callable[[Mapping[str, Any]], dict[str, Any]]
Revealer = Callable[[Mapping[str, Any], PersonalDataCrypto], dict[str, Any]]


@dataclass(frozen=True)
class SortKey:
    """A sortable expression that is never NULL, and its SQL type for keyset cursors."""

    expr: ColumnElement[Any]
    sql_type: Any


@dataclass(frozen=True)
class KindSpec:
    """What the generic services need to know about one kind of base object."""

    kind: str
    #: Permission prefix: ``<permission>.read`` / ``.write`` (several kinds share one).
    permission: str
    table: Table
    #: Source columns never shown as they are (ciphertexts, hashes, masked copies, geometry).
    hidden: frozenset[str]
    #: Geometry column, if the kind has one of its own.
    has_geometry: bool
    #: Columns searched by the ``text`` filter (LIKE, served by the trigram indexes).
    text_columns: tuple[str, ...]
    #: Filter name → function of the value → WHERE clause.
    filters: Mapping[str, Callable[[Any], ColumnElement[bool]]]
    #: Sort key name → expression.
    sort_keys: Mapping[str, SortKey]
    #: Clause selecting the rows bbox-intersecting an envelope (for kinds without geometry,
    #: through their building).
    bbox_clause: Callable[[ColumnElement[Any]], ColumnElement[bool]] | None = None
    #: Extra restriction from the actor beyond scope (special populations).
    visibility: Callable[[Principal], ColumnElement[bool]] | None = None
    #: Personal fields: masked values from a row, and clear values (needs crypto).
    masked: Masker | None = None
    revealed: Revealer | None = None
    #: Column or constraint name → request field, for database errors.
    error_fields: Mapping[str, str] = field(default_factory=dict)


_SPECS: dict[str, KindSpec] = {}
_KIND_MODULES = ("buildings", "persons", "places", "enterprises")


def table_of(model: type[Any]) -> Table:
    """Return the Table of an ORM model (typed, for Core statements)."""
    return typing_cast(Table, model.__table__)


def register(spec: KindSpec) -> KindSpec:
    """Register a kind (called by the kind modules at import)."""
    _SPECS[spec.kind] = spec
    return spec


def spec_for(kind: str) -> KindSpec:
    """Return the spec of a kind, or raise InvalidInput naming ``kind``."""
    if len(_SPECS) < len(KIND_NAMES):
        # The kind modules import this one; importing them here, late, avoids the cycle.
        for module in _KIND_MODULES:
            importlib.import_module(f"geoserver.services.{module}")
    try:
        return _SPECS[kind]
    except KeyError:
        raise InvalidInput(
            f"unknown kind {kind!r}; expected one of {', '.join(sorted(_SPECS))}", field="kind"
        ) from None


def kinds() -> list[str]:
    """Return the names of every base-data kind."""
    return sorted(KIND_NAMES)


# --- input helpers ------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Mapping[str, Any] | M) -> M:
    """Validate raw input into a model; turn pydantic errors into InvalidInput naming fields."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            FieldProblem(".".join(str(p) for p in err["loc"]) or "body", err["msg"])
            for err in exc.errors()
        ]
        raise InvalidInput(
            "; ".join(f"{p.field}: {p.message}" for p in problems), problems=problems
        ) from None


def require(actor: Principal, permission: str) -> None:
    """Raise PermissionDenied unless the actor holds the permission."""
    if not actor.can(permission):
        raise PermissionDenied(f"needs the permission {permission}")


def input_crs(value: str | None, *, field_name: str = "crs") -> InputCRS:
    """Parse a required input CRS, or raise InvalidInput naming the field."""
    if value is None:
        raise InvalidInput("say which crs the coordinates are in", field=field_name)
    try:
        return parse_input_crs(value)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field_name) from None


@dataclass(frozen=True)
class Located:
    """A validated geometry in storage lon/lat, where it lies, and repair warnings."""

    geom: BaseGeometry
    region_id: int
    path: str
    warnings: list[str]

    def h3(self, res: int) -> int:
        """Return the H3 cell of the geometry's point on surface at a resolution."""
        point = shapely.point_on_surface(self.geom)
        return cell_int(point.x, point.y, res)


def read_geometry(geometry: Any, crs: str | None, *, expected: Sequence[str],
                  field_name: str = "geometry") -> tuple[BaseGeometry, list[str]]:
    """Parse, check and repair input GeoJSON in a declared CRS; return storage lon/lat."""
    source = input_crs(crs)
    try:
        geom = parse_geojson_geometry(geometry, field=field_name)
        # Checked in the input CRS: a swapped or projected pair is reported as sent.
        geom, warnings = validate_geometry(geom, expected=expected, field=field_name)
    except GeometryProblem as exc:
        raise InvalidInput(exc.reason, field=exc.field) from None
    # Heights (a GPS fix's z) are dropped: storage columns are 2D.
    return shapely.force_2d(transform_geometry(geom, source, InputCRS.CGCS2000)), warnings


def locate_in_scope(session: Session, actor: Principal, geom: BaseGeometry, warnings: list[str],
                    *, field_name: str = "geometry") -> Located:
    """Find the region a geometry lies in; refuse one outside the city or the actor's scope."""
    row = session.execute(
        text("SELECT region_id, path::text AS path FROM gridgov_meta.locate("
             "ST_GeomFromWKB(:wkb, 4490))"),
        {"wkb": shapely.to_wkb(geom)},
    ).first()
    if row is None:
        raise InvalidInput("the location lies outside the city (in no region)", field=field_name)
    if not actor.covers(row.path):
        # Never say which region: the caller may not know its neighbours exist.
        raise InvalidInput("the location is outside your jurisdiction", field=field_name)
    return Located(geom, row.region_id, row.path, warnings)


def region_in_scope(session: Session, actor: Principal, code: str | None,
                    *, field_name: str = "region_code") -> tuple[int, str]:
    """Return (id, path) of a current region the actor may see, or raise InvalidInput."""
    if not code:
        raise InvalidInput("give a location or a region code", field=field_name)
    row = session.execute(
        text("SELECT id, path::text AS path FROM region WHERE code = :c AND valid_to IS NULL"),
        {"c": code},
    ).first()
    if row is None or not actor.covers(row.path):
        raise InvalidInput("unknown region code, or outside your jurisdiction", field=field_name)
    return row.id, row.path


def geometry_value(geom: BaseGeometry) -> ColumnElement[Any]:
    """Return a SQL expression for a storage geometry (bound WKB, SRID 4490)."""
    return func.ST_GeomFromWKB(literal(shapely.to_wkb(geom)), STORAGE_SRID)


# --- reading ----------------------------------------------------------------------------------


def _geometry_column(spec: KindSpec) -> list[ColumnElement[Any]]:
    if not spec.has_geometry:
        return []
    return [func.ST_AsGeoJSON(spec.table.c.geom, _GEOJSON_DIGITS).label("geometry")]


def in_actor_scope(spec: KindSpec, actor: Principal) -> ColumnElement[bool]:
    """Return a clause keeping rows under one of the actor's scope paths (GiST-indexable)."""
    # RLS already applies the session's scope; this keeps a service honest when the session
    # was opened with a wider scope than the actor's (jobs, tests, a misconfigured caller).
    return or_(*(spec.table.c.path.op("<@")(cast(literal(p), LTree())) for p in actor.scope),
               false())


def base_select(spec: KindSpec, actor: Principal) -> Select[Any]:
    """Select a kind's rows the actor may see: RLS, the actor's scope, visibility."""
    cols = [c for c in spec.table.c if c.name not in ("geom", "geom_3857", "centroid")]
    stmt = select(*cols, *_geometry_column(spec)).where(in_actor_scope(spec, actor))
    if spec.visibility is not None:
        stmt = stmt.where(spec.visibility(actor))
    return stmt


def _plain(value: Any) -> Any:
    """Return a JSON-friendly value (Decimal → float, ltree/enums → str)."""
    if isinstance(value, Decimal):
        return float(value)
    return value


def _out_geometry(raw: str | None, out_crs: InputCRS) -> dict[str, Any] | None:
    if raw is None:
        return None
    geo = json.loads(raw)
    if out_crs in (InputCRS.WGS84, InputCRS.CGCS2000):
        return geo  # type: ignore[no-any-return]
    return mapping(transform_geometry(shape(geo), InputCRS.CGCS2000, out_crs))


@dataclass(frozen=True)
class ReadOptions:
    """How records are shown: in clear or masked, and in which output CRS."""

    reveal: bool = False
    crypto: PersonalDataCrypto | None = None
    on_reveal: RevealHook | None = None
    out_crs: InputCRS = InputCRS.WGS84


def read_options(actor: Principal, *, reveal: bool, crypto: PersonalDataCrypto | None,
                 on_reveal: RevealHook | None, out_crs: str | InputCRS) -> ReadOptions:
    """Check a request to reveal personal fields and build the read options."""
    if reveal:
        require(actor, SENSITIVE_PERMISSION)
        if crypto is None:
            raise ValueError("reveal=True needs the crypto object")
    target = out_crs if isinstance(out_crs, InputCRS) else input_crs(out_crs, field_name="crs")
    return ReadOptions(reveal, crypto, on_reveal, target)


def to_record(spec: KindSpec, row: Mapping[Any, Any], options: ReadOptions) -> Record:
    """Turn a selected row into a record, masking or revealing personal fields."""
    record: Record = {
        k: _plain(v) for k, v in row.items()
        if k not in spec.hidden and k != "geometry" and not k.startswith("_")
    }
    if "path" in record and record["path"] is not None:
        record["path"] = str(record["path"])
    if spec.has_geometry:
        record["geometry"] = _out_geometry(row.get("geometry"), options.out_crs)
    shown: list[str] = []
    if spec.masked is not None:
        record.update(spec.masked(row))
        if options.reveal and spec.revealed is not None and options.crypto is not None:
            clear = {k: v for k, v in spec.revealed(row, options.crypto).items() if v is not None}
            record.update(clear)
            shown = sorted(clear)
    record["revealed"] = shown
    if shown and options.on_reveal is not None:
        options.on_reveal(spec.kind, row["id"], shown)
    return record


def load_row(session: Session, spec: KindSpec, actor: Principal, object_id: int,
             *, for_update: bool = False) -> Mapping[Any, Any]:
    """Load one visible row by id, or raise NotFound (also when out of scope or hidden)."""
    stmt = base_select(spec, actor).where(spec.table.c.id == object_id)
    if for_update:
        stmt = stmt.with_for_update(of=spec.table)
    row = session.execute(stmt).mappings().first()
    if row is None or not actor.covers(str(row["path"])):
        raise NotFound(f"no {spec.kind} {object_id}")
    return row


def get_object(
    session: Session,
    *,
    actor: Principal,
    kind: str,
    object_id: int,
    reveal: bool = False,
    crypto: PersonalDataCrypto | None = None,
    on_reveal: RevealHook | None = None,
    out_crs: str | InputCRS = InputCRS.WGS84,
) -> Record:
    """Return one object as a record; NotFound if absent, out of scope or hidden."""
    spec = spec_for(kind)
    require(actor, f"{spec.permission}.read")
    options = read_options(actor, reveal=reveal, crypto=crypto, on_reveal=on_reveal,
                           out_crs=out_crs)
    return to_record(spec, load_row(session, spec, actor, object_id), options)


# --- lists ------------------------------------------------------------------------------------


def _like_pattern(value: str) -> str:
    """Return a LIKE pattern matching value anywhere, with its wildcards escaped."""
    escaped = re.sub(r"([\\%_])", r"\\\1", value.strip())
    return f"%{escaped}%"


def _envelope(bbox: tuple[float, float, float, float], crs_name: str) -> ColumnElement[Any]:
    """Return the storage envelope of a bbox given in some CRS (checked for plausibility)."""
    crs = input_crs(crs_name, field_name="bbox_crs")
    west, south, east, north = bbox
    try:
        check_lonlat(west, south, field="bbox")
        check_lonlat(east, north, field="bbox")
    except GeometryProblem as exc:
        raise InvalidInput(exc.reason, field="bbox") from None
    if west >= east or south >= north:
        raise InvalidInput("bbox must be west < east and south < north", field="bbox")
    corners = shapely.box(west, south, east, north)
    # GCJ-02/BD-09 offsets vary across the box: convert the corners, take their envelope.
    sw_ne = transform_geometry(corners, crs, InputCRS.CGCS2000).bounds
    return func.ST_MakeEnvelope(*sw_ne, STORAGE_SRID)


def _filter_clauses(session: Session, spec: KindSpec, actor: Principal,
                    filters: ListFilters) -> list[ColumnElement[bool]]:
    """Return the WHERE clauses for the filters; InvalidInput for an unsupported one."""
    clauses: list[ColumnElement[bool]] = []
    if filters.region_code is not None:
        _, path = region_in_scope(session, actor, filters.region_code)
        clauses.append(spec.table.c.path.op("<@")(cast(literal(path), LTree())))
    for name in FILTER_NAMES:
        value = getattr(filters, name)
        if value is None:
            continue
        if name not in spec.filters:
            raise InvalidInput(f"a {spec.kind} list cannot be filtered by {name}", field=name)
        clauses.append(spec.filters[name](value))
    if filters.text:
        pattern = _like_pattern(filters.text)
        clauses.append(or_(*(spec.table.c[c].ilike(pattern, escape="\\")
                             for c in spec.text_columns)))
    if filters.bbox is not None:
        if spec.bbox_clause is None:
            raise InvalidInput(f"a {spec.kind} list has no bbox filter", field="bbox")
        clauses.append(spec.bbox_clause(_envelope(filters.bbox, filters.bbox_crs)))
    return clauses


def _sort(spec: KindSpec, sort: str) -> tuple[SortKey, bool]:
    """Return the whitelisted sort key and whether it is descending."""
    descending = sort.startswith("-")
    name = sort.lstrip("-+")
    key = spec.sort_keys.get(name)
    if key is None:
        raise InvalidInput(
            f"cannot sort {spec.kind} by {name!r}; use one of {', '.join(sorted(spec.sort_keys))}",
            field="sort",
        )
    return key, descending


def _encode_cursor(value: Any, object_id: int) -> str:
    if isinstance(value, datetime | date):
        value = value.isoformat()
    elif isinstance(value, Decimal):
        value = str(value)
    raw = json.dumps([value, object_id], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, object_id = json.loads(raw)
        if not isinstance(object_id, int):
            raise ValueError
        return value, object_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("not a cursor from this list", field="cursor") from None


def _keyset(spec: KindSpec, key: SortKey, descending: bool, cursor: str) -> ColumnElement[bool]:
    value, last_id = _decode_cursor(cursor)
    bound = cast(literal(value), key.sql_type)
    left = tuple_(key.expr, spec.table.c.id)
    right = tuple_(bound, literal(last_id, BigInteger))
    return left < right if descending else left > right


def list_statement(session: Session, spec: KindSpec, actor: Principal,
                   filters: ListFilters) -> tuple[Select[Any], SortKey]:
    """Build the filtered, sorted statement for a list or an export (no paging)."""
    key, descending = _sort(spec, filters.sort)
    stmt = base_select(spec, actor).add_columns(key.expr.label("_sort"))
    for clause in _filter_clauses(session, spec, actor, filters):
        stmt = stmt.where(clause)
    order = (key.expr.desc(), spec.table.c.id.desc()) if descending else (key.expr,
                                                                           spec.table.c.id)
    return stmt.order_by(*order), key


def list_objects(
    session: Session,
    *,
    actor: Principal,
    kind: str,
    filters: ListFilters | Mapping[str, Any] | None = None,
    reveal: bool = False,
    crypto: PersonalDataCrypto | None = None,
    on_reveal: RevealHook | None = None,
    out_crs: str | InputCRS = InputCRS.WGS84,
) -> Page:
    """Return one page of a kind's objects the actor may see, filtered and sorted."""
    spec = spec_for(kind)
    require(actor, f"{spec.permission}.read")
    flt = parse(ListFilters, filters or {})
    options = read_options(actor, reveal=reveal, crypto=crypto, on_reveal=on_reveal,
                           out_crs=out_crs)
    stmt, key = list_statement(session, spec, actor, flt)
    descending = flt.sort.startswith("-")
    if flt.cursor:
        stmt = stmt.where(_keyset(spec, key, descending, flt.cursor))
    elif flt.offset:
        stmt = stmt.offset(flt.offset)
    rows = session.execute(stmt.limit(flt.limit + 1)).mappings().all()
    more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    items = [to_record(spec, row, options) for row in rows]
    cursor = _encode_cursor(rows[-1]["_sort"], rows[-1]["id"]) if more and rows else None
    return Page(items, cursor)


def iter_rows(
    session: Session,
    *,
    actor: Principal,
    kind: str,
    filters: ListFilters | Mapping[str, Any] | None = None,
    reveal: bool = False,
    crypto: PersonalDataCrypto | None = None,
    on_reveal: RevealHook | None = None,
    out_crs: str | InputCRS = InputCRS.WGS84,
    batch_size: int = 2000,
) -> Iterator[Record]:
    """Return an iterator over every matching record (no paging), for CSV/xlsx/GeoJSON exports.

    Permissions and filters are checked at once (errors raise here, before any row); rows come
    from a server-side cursor ``batch_size`` at a time, so memory stays bounded whatever the
    size. Consume it inside the caller's transaction; ``limit``/``offset``/``cursor`` in the
    filters are ignored.
    """
    spec = spec_for(kind)
    require(actor, f"{spec.permission}.read")
    flt = parse(ListFilters, filters or {})
    options = read_options(actor, reveal=reveal, crypto=crypto, on_reveal=on_reveal,
                           out_crs=out_crs)
    stmt, _ = list_statement(session, spec, actor, flt)
    # Checked above, eagerly; rows are only fetched as the caller iterates.
    return _stream(session, spec, stmt.execution_options(yield_per=batch_size), options)


def _stream(session: Session, spec: KindSpec, stmt: Select[Any],
            options: ReadOptions) -> Iterator[Record]:
    result = session.execute(stmt).mappings()
    try:
        for row in result:
            yield to_record(spec, row, options)
    finally:
        result.close()


# --- writing ----------------------------------------------------------------------------------


def insert_row(session: Session, spec: KindSpec, values: Mapping[str, Any]) -> int:
    """Insert a row in a savepoint and return its id; database errors become domain errors."""
    try:
        with session.begin_nested():
            new_id = session.execute(
                insert(spec.table).values(**values).returning(spec.table.c.id)
            ).scalar_one()
    except DBAPIError as exc:
        raise translate(exc, fields=spec.error_fields) from exc
    return int(new_id)


def check_version(spec: KindSpec, row: Mapping[str, Any], version: int) -> None:
    """Raise Conflict unless the caller saw the current version."""
    if row["version"] != version:
        raise Conflict(
            f"{spec.kind} {row['id']} was changed by someone else (now version "
            f"{row['version']}, you saw {version}); reload and retry",
            field="version",
        )


def update_row(session: Session, spec: KindSpec, row: Mapping[str, Any], version: int,
               values: Mapping[str, Any]) -> None:
    """Update a loaded row if it still has the version the caller saw; bump the version."""
    check_version(spec, row, version)
    stmt = (
        update(spec.table)
        .where(spec.table.c.id == row["id"], spec.table.c.version == version)
        .values(**values, version=spec.table.c.version + 1, updated_at=func.now())
        .returning(spec.table.c.id)
    )
    try:
        with session.begin_nested():
            done = session.execute(stmt).first()
    except DBAPIError as exc:
        raise translate(exc, fields=spec.error_fields) from exc
    if done is None:  # changed between our read and our write
        check_version(spec, {**row, "version": version + 1}, version)


def saved(session: Session, spec: KindSpec, actor: Principal, object_id: int,
          warnings: list[str]) -> Saved:
    """Re-read a written row (with trigger-set location) as a masked record."""
    row = session.execute(
        base_select(spec, actor).where(spec.table.c.id == object_id)
    ).mappings().one()
    return Saved(to_record(spec, row, ReadOptions()), warnings)


def delete_object(
    session: Session, *, actor: Principal, kind: str, object_id: int, version: int | None = None
) -> None:
    """Delete an object the actor may write; Conflict if still referenced or stale."""
    spec = spec_for(kind)
    require(actor, f"{spec.permission}.write")
    row = load_row(session, spec, actor, object_id, for_update=True)
    if version is not None:
        check_version(spec, row, version)
    try:
        with session.begin_nested():
            session.execute(delete(spec.table).where(spec.table.c.id == object_id))
    except DBAPIError as exc:
        raise translate(exc, fields=spec.error_fields) from exc


def changed(data: BaseModel, *names: str) -> bool:
    """Return whether any of the fields was set in an update."""
    return any(n in data.model_fields_set for n in names)


def updates_from(data: BaseModel, columns: Sequence[str]) -> dict[str, Any]:
    """Return {column: value} for the plain columns the update set (None clears a value)."""
    return {c: getattr(data, c) for c in columns if c in data.model_fields_set}


# --- common spec pieces -----------------------------------------------------------------------


def sort_keys_for(table: Table, *text_columns: str) -> dict[str, SortKey]:
    """Return sort keys: id, created_at, updated_at and the given NOT NULL text columns."""
    stamp = DateTime(timezone=True)
    keys = {"id": SortKey(table.c.id, BigInteger()),
            "created_at": SortKey(table.c.created_at, stamp),
            "updated_at": SortKey(table.c.updated_at, stamp)}
    keys.update({n: SortKey(table.c[n], Text()) for n in text_columns})
    return keys


def nullable_sort_key(table: Table, name: str, fallback: Any, sql_type: Any) -> SortKey:
    """Return a sort key for a nullable column, with NULL sorted as ``fallback``."""
    return SortKey(func.coalesce(table.c[name], cast(literal(fallback), sql_type)), sql_type)


def equals(table: Table, column: str) -> Callable[[Any], ColumnElement[bool]]:
    """Return a filter comparing a column with the value."""
    return lambda value: table.c[column] == value


def own_bbox(table: Table) -> Callable[[ColumnElement[Any]], ColumnElement[bool]]:
    """Return a bbox clause for a kind with its own geometry (uses the GiST index)."""
    return lambda env: func.ST_Intersects(table.c.geom, env)


def geometry_location(session: Session, actor: Principal, geometry: Any, crs: str | None,
                      expected: Sequence[str],
                      resolutions: Sequence[int] = (9,)) -> tuple[dict[str, Any], list[str]]:
    """Return location columns (geom, path, region_id, h3_r*) for input geometry, and warnings."""
    geom, warnings = read_geometry(geometry, crs, expected=expected)
    loc = locate_in_scope(session, actor, geom, warnings)
    values = {"geom": geometry_value(loc.geom), "path": loc.path, "region_id": loc.region_id}
    return values | {f"h3_r{r}": loc.h3(r) for r in resolutions}, warnings


def point_or_region(session: Session, actor: Principal, geometry: Any, crs: str | None,
                    region_code: str | None) -> tuple[dict[str, Any], list[str]]:
    """Return location columns from an optional point, else from a region code."""
    if geometry is not None:
        return geometry_location(session, actor, geometry, crs, ("Point",))
    region_id, path = region_in_scope(session, actor, region_code)
    return {"geom": None, "path": path, "region_id": region_id, "h3_r9": None}, []


def refuse_clearing(values: Mapping[str, Any], *names: str) -> None:
    """Raise InvalidInput if an update sets one of these required fields to None."""
    for name in names:
        if name in values and values[name] is None:
            raise InvalidInput(f"{name} cannot be cleared", field=name)
