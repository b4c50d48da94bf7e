"""OGC API Features core: the collections registry and the items query (framework-free).

A collection is one registry entry (``register(CollectionSpec(...))``): table, id column,
geometry column, properties with types, datetime column and default sort. Entries whose table
does not exist (a migration not yet applied) are simply not listed. Every query runs in the
caller's transaction, whose scope row-level security applies; permissions are checked here
(``<kind>.read``), and a collection the caller may not read is NotFound, like one that does not
exist.

Paging is keyset (a ``next`` link carries the last row's sort key, so deep pages cost what the
first one does) whenever every sort key is non-null, else offset. ``numberMatched`` is exact when
it is cheap: the first page holds everything, or (on tables of at most ``COUNT_TABLE_ROWS``
rows by the planner's statistics) a count capped at ``COUNT_CAP`` rows finds fewer. It is worked
out once, on the first page, and carried in the cursor; other pages never count. Personal
fields are shown masked and are neither queryable nor sortable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    Select,
    TableClause,
    Text,
    and_,
    column,
    func,
    literal,
    or_,
    select,
    table,
    text,
    tuple_,
)
from sqlalchemy.orm import Session

from geoserver.domain.documents import mask_name, mask_phone
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound
from geoserver.services import cql2
from geoserver.services.feature_params import (
    CRS84,
    BBox,
    CrsDef,
    Cursor,
    SortItem,
    TimeRange,
    decode_cursor,
    parse_bbox,
    parse_crs,
    parse_datetime,
    parse_limit,
    parse_names,
    parse_offset,
    parse_sortby,
)

#: numberMatched is given when at most this many rows match (a capped count, never a full one).
COUNT_CAP = 10_000
#: ... and only on tables this small (pg_class.reltuples): on a big table even a capped count
#: costs the first page ~100 ms, so there numberMatched comes only when one page holds it all.
COUNT_TABLE_ROWS = 50_000
#: Query parameters of the items endpoint (besides queryable property names).
ITEM_PARAMS = frozenset({"f", "bbox", "bbox-crs", "datetime", "limit", "offset", "cursor",
                         "properties", "sortby", "filter", "filter-lang", "filter-crs", "crs"})
_SQL_TYPES: dict[str, Any] = {"string": Text, "integer": BigInteger, "number": Float,
                              "boolean": Boolean, "date-time": DateTime(timezone=True)}
_CHUNK_BYTES = 64 * 1024
#: Pages larger than this are read through a server-side cursor.
STREAM_ROWS_ABOVE = 1000


# --- registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prop:
    """A feature property: its JSON name and type, its column, and how it is shown."""

    name: str
    title: str
    type: str = "string"  # string | integer | number | boolean | date-time
    column: str | None = None
    enum: tuple[str, ...] = ()
    nullable: bool = True
    #: Personal data (PIPL): shown through ``mask`` only, never filtered or sorted on.
    personal: bool = False
    mask: Callable[[Any], Any] | None = None

    @property
    def source(self) -> str:
        """Return the column the property reads."""
        return self.column or self.name


@dataclass(frozen=True)
class CollectionSpec:
    """One feature collection: where its rows live and what a feature shows."""

    id: str
    title: str
    description: str
    table: str
    permission: str
    properties: tuple[Prop, ...]
    id_column: str = "id"
    id_type: str = "integer"
    geometry_type: str = "Geometry"
    geometry_column: str = "geom"
    #: Pre-projected copy for EPSG:3857 output and bbox filters (tiles keep it indexed).
    geometry_3857_column: str | None = "geom_3857"
    datetime_column: str | None = "updated_at"
    #: Sort when the request names none (the id column always ends the sort).
    default_sort: tuple[str, ...] = ()
    #: Fixed ``column = value`` conditions (e.g. a region level).
    where: tuple[tuple[str, str], ...] = ()
    #: Rows are current when this column IS NULL (versioned tables).
    current_column: str | None = None

    def prop(self, name: str) -> Prop | None:
        """Return the property called ``name``."""
        return next((p for p in self.properties if p.name == name), None)

    @property
    def id_name(self) -> str:
        """Return the name filters and sortby use for the feature id."""
        return "id" if self.prop(self.id_column) is None else self.id_column

    @property
    def public_names(self) -> tuple[str, ...]:
        """Return the names of the properties a feature shows."""
        return tuple(p.name for p in self.properties)

    @property
    def sortable(self) -> tuple[str, ...]:
        """Return the names sortby accepts."""
        names = tuple(p.name for p in self.properties if not p.personal)
        return names if self.id_name in names else (self.id_name, *names)


REGISTRY: dict[str, CollectionSpec] = {}


def register(spec: CollectionSpec) -> CollectionSpec:
    """Add a collection to the registry (one entry per collection)."""
    REGISTRY[spec.id] = spec
    return spec


@cache
def _table(spec: CollectionSpec) -> TableClause:
    cols: dict[str, Any] = {spec.id_column: _SQL_TYPES[spec.id_type],
                            spec.geometry_column: None}
    for extra in (spec.geometry_3857_column, spec.datetime_column, spec.current_column):
        if extra:
            cols.setdefault(extra, DateTime(timezone=True) if extra == spec.datetime_column
                            else None)
    for col, _ in spec.where:
        cols.setdefault(col, Text)
    for p in spec.properties:
        cols.setdefault(p.source, _SQL_TYPES[p.type])
    return table(spec.table, *(column(name, typ) for name, typ in cols.items()))


def _col(spec: CollectionSpec, name: str) -> ColumnElement[Any]:
    return _table(spec).c[name]


def existing_tables(session: Session, names: Sequence[str]) -> set[str]:
    """Return which of the named tables exist (a missing migration hides its collections)."""
    rows = session.execute(
        text("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') "
             "AND c.relname = ANY(:names)"), {"names": list(names)})
    return {r[0] for r in rows}


def visible_collections(session: Session, *, actor: Principal | None) -> list[CollectionSpec]:
    """Return the collections the actor may read whose tables exist, in registry order."""
    if actor is None:
        return []
    allowed = [s for s in REGISTRY.values() if actor.can(s.permission)]
    tables = existing_tables(session, sorted({s.table for s in allowed}))
    return [s for s in allowed if s.table in tables]


def collection_for(session: Session, *, actor: Principal, collection_id: str) -> CollectionSpec:
    """Return a readable collection, or NotFound (also when the actor may not read it)."""
    spec = REGISTRY.get(collection_id)
    if spec is None or not actor.can(spec.permission) or \
            spec.table not in existing_tables(session, [spec.table]):
        raise NotFound(f"no collection {collection_id!r}")
    return spec


def jurisdiction_extent(session: Session) -> list[float] | None:
    """Return [west, south, east, north] of the caller's jurisdiction (CRS84), or None."""
    row = session.execute(text(
        "WITH mine AS (SELECT ST_Extent(geom) AS e FROM region "
        "              WHERE valid_to IS NULL AND path = ANY (gridgov_meta.scope())), "
        "top AS (SELECT ST_Extent(geom) AS e FROM region "
        "        WHERE valid_to IS NULL AND level = 'city') "
        "SELECT ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) FROM "
        "(SELECT coalesce((SELECT e FROM mine), (SELECT e FROM top))::geometry AS x) s")).one()
    return None if row[0] is None else [round(float(v), 7) for v in row]


# --- schemas ---------------------------------------------------------------------------------


_GEOMETRY_FORMAT = {"Point": "geometry-point", "MultiPolygon": "geometry-multipolygon",
                    "Geometry": "geometry-any"}


def _json_type(p: Prop) -> dict[str, Any]:
    if p.type == "date-time":
        return {"type": "string", "format": "date-time"}
    out: dict[str, Any] = {"type": p.type}
    if p.enum:
        out["enum"] = list(p.enum)
    return out


def queryables(spec: CollectionSpec) -> dict[str, cql2.Queryable]:
    """Return the whitelist filters may name: non-personal properties, id and geometry."""
    out = {p.name: cql2.Queryable(p.name, _col(spec, p.source), p.type, p.enum)
           for p in spec.properties if not p.personal}
    out.setdefault(spec.id_name, cql2.Queryable(spec.id_name, _col(spec, spec.id_column),
                                                spec.id_type))
    out["geometry"] = cql2.Queryable("geometry", _col(spec, spec.geometry_column), "geometry")
    return out


def queryables_schema(spec: CollectionSpec, *, url: str) -> dict[str, Any]:
    """Return the Queryables JSON Schema (OGC API Features Part 3) of a collection."""
    props: dict[str, Any] = {"geometry": {"format": _GEOMETRY_FORMAT[spec.geometry_type],
                                          "x-ogc-role": "primary-geometry"}}
    if spec.id_name not in spec.public_names:
        props[spec.id_name] = {"title": "标识", "type": spec.id_type, "x-ogc-role": "id"}
    for p in spec.properties:
        if p.personal:
            continue
        entry = {"title": p.title, **_json_type(p)}
        if p.source == spec.datetime_column:
            entry["x-ogc-role"] = "primary-instant"
        props[p.name] = entry
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": url,
            "type": "object", "title": spec.title, "properties": props,
            "additionalProperties": False}


def feature_schema(spec: CollectionSpec, *, url: str) -> dict[str, Any]:
    """Return a JSON Schema of one GeoJSON feature (the collection's ``describedby``)."""
    props = {p.name: {"title": p.title, **_json_type(p)} for p in spec.properties}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": url,
            "title": spec.title, "type": "object", "required": ["type", "geometry", "properties"],
            "properties": {
                "type": {"type": "string", "enum": ["Feature"]},
                "id": {"type": spec.id_type},
                "geometry": {"type": ["object", "null"],
                             "format": _GEOMETRY_FORMAT[spec.geometry_type]},
                "properties": {"type": "object", "properties": props}}}


# --- the items query -------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """A resolved sort key."""

    name: str
    expr: ColumnElement[Any]
    type: str
    descending: bool
    nullable: bool


@dataclass(frozen=True)
class ItemsQuery:
    """A validated items request, ready to run."""

    spec: CollectionSpec
    limit: int
    crs: CrsDef
    properties: tuple[str, ...]
    sort: tuple[SortKey, ...]
    conditions: tuple[ColumnElement[bool], ...]
    cursor: Cursor | None = None
    offset: int = 0

    @property
    def keyset(self) -> bool:
        """Return whether pages can be cut by sort key (no sort key may be NULL)."""
        return not any(k.nullable for k in self.sort)


def parse_items_query(spec: CollectionSpec, params: Mapping[str, str]) -> ItemsQuery:
    """Validate the items parameters of ``spec``; any bad value is InvalidInput (a 400)."""
    qmap = queryables(spec)
    unknown = [k for k in params if k not in ITEM_PARAMS and k not in qmap]
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(sorted(unknown))}",
                           field=unknown[0])
    conditions: list[ColumnElement[bool]] = [*_fixed_conditions(spec)]
    bbox = parse_bbox(params.get("bbox"), parse_crs(params.get("bbox-crs"), param="bbox-crs"))
    if bbox is not None:
        conditions.append(_bbox_condition(spec, bbox))
    period = parse_datetime(params.get("datetime"))
    if period is not None and spec.datetime_column:
        conditions.extend(_time_conditions(_col(spec, spec.datetime_column), period))
    if params.get("filter"):
        conditions.append(cql2.filter_clause(
            params["filter"], params.get("filter-lang") or "cql2-text", qmap,
            crs=parse_crs(params.get("filter-crs"), param="filter-crs")))
    elif params.get("filter-lang") and params["filter-lang"] not in cql2.LANGS:
        raise InvalidInput(f"filter-lang must be one of {', '.join(cql2.LANGS)}",
                           field="filter-lang")
    for name, value in params.items():
        if name in qmap and name not in ITEM_PARAMS:
            conditions.append(_property_condition(qmap[name], value))
    names = parse_names(params.get("properties"), spec.public_names, param="properties")
    return ItemsQuery(
        spec=spec, limit=parse_limit(params.get("limit")), crs=parse_crs(params.get("crs")),
        properties=spec.public_names if names is None else names,
        sort=_sort_keys(spec, parse_sortby(params.get("sortby"), spec.sortable)),
        conditions=tuple(conditions), cursor=decode_cursor(params.get("cursor")),
        offset=parse_offset(params.get("offset")))


def _fixed_conditions(spec: CollectionSpec) -> list[ColumnElement[bool]]:
    out = [_col(spec, c) == literal(v, Text) for c, v in spec.where]
    if spec.current_column:
        out.append(_col(spec, spec.current_column).is_(None))
    return out


def _bbox_condition(spec: CollectionSpec, bbox: BBox) -> ColumnElement[bool]:
    box = func.ST_MakeEnvelope(bbox.minx, bbox.miny, bbox.maxx, bbox.maxy, bbox.crs.srid)
    if bbox.crs.srid == 3857 and spec.geometry_3857_column:
        # the pre-projected column has its own GiST index: no transform at all
        return func.ST_Intersects(_col(spec, spec.geometry_3857_column), box)  # type: ignore
    if bbox.crs.srid != cql2.STORAGE_SRID:
        box = func.ST_Transform(box, cql2.STORAGE_SRID)
    return func.ST_Intersects(_col(spec, spec.geometry_column), box)  # type: ignore


def _time_conditions(col: ColumnElement[Any], period: TimeRange) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if period.start is not None:
        out.append(col >= period.start)
    if period.end is not None:
        out.append(col < period.end if period.end_exclusive else col <= period.end)
    return out


def _property_condition(q: cql2.Queryable, value: str) -> ColumnElement[bool]:
    """``name=value`` (OGC API Features Part 1 property filter): equality, typed."""
    if q.type == "geometry":
        raise InvalidInput("filter the geometry with bbox or filter", field=q.name)
    return q.expr == _typed_value(q.type, value, q.name, q.enum)


def _typed_value(kind: str, value: Any, name: str, enum: tuple[str, ...] = ()) -> Any:
    try:
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError
            return int(value)
        if kind == "number":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            return {"true": True, "false": False}[str(value).lower()]
        if kind == "date-time":
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError
            return moment
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"{name} must be a {kind}", field=name) from None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=name)
    if enum and value not in enum:
        raise InvalidInput(f"{name} must be one of {', '.join(enum)}", field=name)
    return value


def _sort_keys(spec: CollectionSpec, items: tuple[SortItem, ...]) -> tuple[SortKey, ...]:
    chosen = items or tuple(SortItem(n) for n in spec.default_sort)
    keys = []
    for item in chosen:
        p = spec.prop(item.name)
        if p is None:  # the id, when it is not a property
            keys.append(SortKey(item.name, _col(spec, spec.id_column), spec.id_type,
                                item.descending, False))
        else:
            nullable = p.nullable and p.source != spec.id_column
            keys.append(SortKey(p.name, _col(spec, p.source), p.type, item.descending, nullable))
    if not any(k.name == spec.id_name for k in keys):
        # the id makes the order total, so pages never overlap or skip
        keys.append(SortKey(spec.id_name, _col(spec, spec.id_column), spec.id_type, False, False))
    return tuple(keys)


# --- running it ------------------------------------------------------------------------------


Feature = tuple[Any, str | None, dict[str, Any]]
"""(id, geometry as GeoJSON text or None, properties)."""


@dataclass
class PageResult:
    """What a page turned out to hold; filled in once its features have been iterated."""

    number_returned: int = 0
    number_matched: int | None = None
    next_cursor: Cursor | None = None
    prev_cursor: Cursor | None = None
    done: bool = False
    keys: list[tuple[Any, ...]] = field(default_factory=list)


def geometry_json(spec: CollectionSpec, crs: CrsDef) -> ColumnElement[Any]:
    """Return the SQL that writes a row's geometry as GeoJSON in ``crs`` and its axis order."""
    if crs.srid == 3857 and spec.geometry_3857_column:
        geom = _col(spec, spec.geometry_3857_column)
    else:
        geom = _col(spec, spec.geometry_column)
        if crs.srid != cql2.STORAGE_SRID:
            geom = func.ST_Transform(geom, crs.srid)
    if crs.flip:
        geom = func.ST_FlipCoordinates(geom)
    # options 0: no "crs" member (RFC 7946 has none; GDAL would act on it)
    return func.ST_AsGeoJSON(geom, crs.digits, 0)  # type: ignore[no-any-return]


def _select(q: ItemsQuery, *, backward: bool, keys: tuple[Any, ...] | None,
            offset: int) -> Select[Any]:
    spec = q.spec
    shown = [spec.prop(n) for n in q.properties]
    stmt = select(
        _col(spec, spec.id_column).label("_id"),
        geometry_json(spec, q.crs).label("_geom"),
        *(_col(spec, p.source).label(f"_p{i}") for i, p in enumerate(shown) if p),
        *(k.expr.label(f"_k{i}") for i, k in enumerate(q.sort)),
    ).select_from(_table(spec)).where(*q.conditions)
    if keys is not None:
        stmt = stmt.where(_after(q.sort, keys, backward))
    order = [(k.expr.asc() if k.descending == backward else k.expr.desc()) for k in q.sort]
    stmt = stmt.order_by(*order).limit(q.limit + 1)
    return stmt.offset(offset) if offset else stmt


def _after(sort: tuple[SortKey, ...], keys: tuple[Any, ...],
           backward: bool) -> ColumnElement[bool]:
    """Rows strictly after ``keys`` in the sort order (before it when ``backward``)."""
    values = [literal(v, _SQL_TYPES[k.type]) for k, v in zip(sort, keys, strict=True)]
    if len({k.descending for k in sort}) == 1:
        # one direction: a row comparison the index can serve
        ahead = sort[0].descending == backward
        lhs, rhs = tuple_(*(k.expr for k in sort)), tuple_(*values)
        return lhs > rhs if ahead else lhs < rhs
    parts = []
    for i, k in enumerate(sort):
        ahead = k.descending == backward
        step = k.expr > values[i] if ahead else k.expr < values[i]
        parts.append(and_(*(s.expr == values[j] for j, s in enumerate(sort[:i])), step))
    return or_(*parts)


def _cursor_keys(q: ItemsQuery) -> tuple[Any, ...] | None:
    if q.cursor is None or q.cursor.keys is None:
        return None
    if not q.keyset or len(q.cursor.keys) != len(q.sort):
        raise InvalidInput("cursor does not match this sortby", field="cursor")
    return tuple(_typed_value(k.type, v, "cursor") for k, v in zip(q.sort, q.cursor.keys,
                                                                      strict=True))


def iter_items(session: Session, q: ItemsQuery, result: PageResult) -> Iterator[Feature]:
    """Yield one page of features (streamed from a server-side cursor); fill ``result``."""
    keys = _cursor_keys(q)
    backward = bool(q.cursor and q.cursor.backward)
    offset = q.cursor.offset if q.cursor and q.cursor.keys is None else q.offset
    if keys is not None:
        offset = 0
    stmt = _select(q, backward=backward, keys=keys, offset=offset)
    if q.limit > STREAM_ROWS_ABOVE:
        # a server-side cursor keeps big pages out of memory; small ones skip its round trips
        stmt = stmt.execution_options(stream_results=True, max_row_buffer=1000)
    rows = session.execute(stmt)
    shown = [p for p in (q.spec.prop(n) for n in q.properties) if p]
    nkeys = len(q.sort)
    more = False
    page = []
    for i, row in enumerate(rows):
        if i == q.limit:
            more = True
            break
        if backward:
            page.append(row)
            continue
        result.keys.append(tuple(row[-nkeys:]))
        yield _feature(row, shown)
    rows.close()
    if backward:
        page.reverse()
        for row in page:
            result.keys.append(tuple(row[-nkeys:]))
            yield _feature(row, shown)
    _finish(session, q, result, more=more, backward=backward, keys=keys, offset=offset)


def _feature(row: Any, shown: list[Prop]) -> Feature:
    props = {}
    for i, p in enumerate(shown):
        value = row[2 + i]
        if p.mask is not None and value is not None:
            value = p.mask(value)
        props[p.name] = value
    return row[0], row[1], props


def _finish(session: Session, q: ItemsQuery, result: PageResult, *, more: bool, backward: bool,
            keys: tuple[Any, ...] | None, offset: int) -> None:
    result.number_returned = len(result.keys)
    if q.cursor is not None:
        result.number_matched = q.cursor.matched
    elif offset == 0 and not more:
        result.number_matched = result.number_returned
    elif small_table(session, q.spec.table):
        result.number_matched = count_capped(session, q)
    m = result.number_matched
    if q.keyset and result.keys:
        after_last = Cursor(keys=result.keys[-1], matched=m)
        before_first = Cursor(keys=result.keys[0], backward=True, matched=m)
        result.next_cursor = after_last if (more or backward) else None
        if backward:
            result.prev_cursor = before_first if more else None
        elif keys is not None:
            result.prev_cursor = before_first
        elif offset:
            result.prev_cursor = Cursor(offset=max(0, offset - q.limit), matched=m)
    elif not q.keyset:
        result.next_cursor = Cursor(offset=offset + q.limit, matched=m) if more else None
        result.prev_cursor = Cursor(offset=max(0, offset - q.limit), matched=m) \
            if offset else None
    result.done = True


def small_table(session: Session, name: str) -> bool:
    """Return whether the planner thinks ``name`` small enough to count (unanalysed: yes)."""
    rows = session.execute(text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"),
                           {"t": name}).scalar()
    return rows is None or rows < 0 or rows <= COUNT_TABLE_ROWS


def count_capped(session: Session, q: ItemsQuery) -> int | None:
    """Count matching rows up to COUNT_CAP; None when more match (never a full count)."""
    inner = select(literal(1)).select_from(_table(q.spec)).where(*q.conditions) \
        .limit(COUNT_CAP + 1).subquery()
    n = session.execute(select(func.count()).select_from(inner)).scalar_one()
    return int(n) if n <= COUNT_CAP else None


def get_feature(session: Session, spec: CollectionSpec, feature_id: str, *,
                crs: CrsDef = CRS84) -> Feature:
    """Return one feature by id, or NotFound (also outside the caller's scope)."""
    try:
        fid: Any = int(feature_id) if spec.id_type == "integer" else feature_id
    except ValueError:
        raise NotFound(f"no feature {feature_id!r} in {spec.id}") from None
    shown = list(spec.properties)
    stmt = select(
        _col(spec, spec.id_column), geometry_json(spec, crs),
        *(_col(spec, p.source) for p in shown),
    ).select_from(_table(spec)).where(
        *_fixed_conditions(spec), _col(spec, spec.id_column) == literal(fid, _SQL_TYPES[
            spec.id_type]))
    row = session.execute(stmt).first()
    if row is None:
        raise NotFound(f"no feature {feature_id!r} in {spec.id}")
    return _feature(row, shown)


# --- GeoJSON ---------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# one encoder for every feature: json.dumps with options builds a new one per call
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default).encode


def feature_json(feature: Feature, links: Sequence[Mapping[str, Any]] = ()) -> str:
    """Return one feature as GeoJSON text (the geometry text is spliced in unparsed)."""
    fid, geom, props = feature
    tail = f',"links":{_dumps(list(links))}' if links else ""
    fid_json = str(fid) if type(fid) is int else _dumps(fid)
    return (f'{{"type":"Feature","id":{fid_json},"geometry":{geom or "null"},'
            f'"properties":{_dumps(props)}{tail}}}')


def geojson_chunks(features: Iterator[Feature], result: PageResult, *, time_stamp: str,
                   links: Callable[[PageResult], list[dict[str, Any]]]) -> Iterator[bytes]:
    """Write a FeatureCollection incrementally; the counts and links come after the features."""
    buf = [f'{{"type":"FeatureCollection","timeStamp":"{time_stamp}","features":[']
    size = 0
    first = True
    for feature in features:
        piece = ("" if first else ",") + feature_json(feature)
        first = False
        buf.append(piece)
        size += len(piece)
        if size >= _CHUNK_BYTES:
            yield "".join(buf).encode()
            buf, size = [], 0
    tail = f'],"numberReturned":{result.number_returned}'
    if result.number_matched is not None:
        tail += f',"numberMatched":{result.number_matched}'
    buf.append(tail + f',"links":{_dumps(links(result))}}}')
    yield "".join(buf).encode()


# --- the collections ---------------------------------------------------------------------------


def _region_props(*, grids: bool) -> tuple[Prop, ...]:
    props = [
        Prop("code", "区划代码", nullable=False),
        Prop("name", "名称", nullable=False),
        Prop("parent_code", "上级代码"),
    ]
    if grids:
        props.append(Prop("grid_type", "网格类型", enum=("general", "key", "dedicated"),
                          nullable=False))
    props += [
        Prop("households", "户数", "integer"),
        Prop("party_members", "党员数", "integer"),
        Prop("population", "人口", "integer"),
        Prop("leader_name", "负责人"),
        Prop("leader_phone", "负责人电话", personal=True, mask=mask_phone),
        Prop("area_km2", "面积(平方公里)", "number", nullable=False),
        Prop("virtual", "虚拟单元", "boolean", nullable=False),
        Prop("updated_at", "更新时间", "date-time", nullable=False),
        Prop("version", "版本", "integer", nullable=False),
    ]
    return tuple(props)


for _cid, _level, _title in (("counties", "county", "县(市、区)"),
                             ("townships", "township", "乡镇(街道)"),
                             ("villages", "village", "村(社区)"),
                             ("grids", "grid", "网格")):
    register(CollectionSpec(
        id=_cid, title=_title, description=f"当前有效的{_title}边界", table="region",
        permission="region.read", properties=_region_props(grids=_level == "grid"),
        id_column="code", id_type="string", geometry_type="MultiPolygon",
        default_sort=("code",), where=(("level", _level),), current_column="valid_to"))

_STAMPS = (Prop("updated_at", "更新时间", "date-time", nullable=False),
           Prop("version", "版本", "integer", nullable=False))

register(CollectionSpec(
    id="buildings", title="建筑物", description="建筑物轮廓(基础数据库)", table="building",
    permission="building.read", geometry_type="MultiPolygon", properties=(
        Prop("code", "编码", nullable=False), Prop("name", "名称"),
        Prop("category", "类别", enum=("residential", "commercial", "office", "industrial",
                                       "public", "other"), nullable=False),
        Prop("floors", "层数", "integer"), Prop("households", "户数", "integer"),
        Prop("address_id", "标准地址", "integer"), *_STAMPS)))

register(CollectionSpec(
    id="standard_addresses", title="标准地址",
    description="标准地址(四标四实)门牌、楼栋、单元、户室",
    table="standard_address", permission="address.read", geometry_type="Point", properties=(
        Prop("code", "地址编码", nullable=False),
        Prop("level", "层级", enum=("door", "building", "unit", "room"), nullable=False),
        Prop("full_text", "标准地址", nullable=False),
        Prop("county_code", "县(市、区)代码", nullable=False),
        Prop("township_code", "乡镇(街道)代码", nullable=False),
        Prop("village_code", "村(社区)代码"), Prop("road", "路(街、巷)"),
        Prop("door_number", "门牌号", nullable=False), Prop("building", "楼栋"),
        Prop("unit", "单元"), Prop("room", "户室"), Prop("building_id", "建筑物", "integer"),
        *_STAMPS)))

register(CollectionSpec(
    id="key_places", title="重点场所", description="重点场所(点或范围)", table="key_place",
    permission="place.read", geometry_type="Geometry", properties=(
        Prop("name", "名称", nullable=False), Prop("category", "类别", nullable=False),
        Prop("address", "地址"),
        Prop("risk_level", "风险等级", enum=("low", "medium", "high"), nullable=False),
        Prop("contact_name", "联系人", personal=True, mask=mask_name),
        Prop("contact_phone", "联系电话", column="contact_phone_masked", personal=True),
        *_STAMPS)))

register(CollectionSpec(
    id="city_components", title="城市部件", description="城市部件(井盖、路灯、消防栓……)",
    table="city_component", permission="place.read", geometry_type="Point", properties=(
        Prop("code", "部件编码", nullable=False), Prop("category", "类别", nullable=False),
        Prop("status", "状态", enum=("intact", "damaged", "missing"), nullable=False),
        Prop("owner_department", "权属部门"), *_STAMPS)))

register(CollectionSpec(
    id="enterprises", title="企业", description="企业(统一社会信用代码、信用等级)",
    table="enterprise", permission="enterprise.read", geometry_type="Point", properties=(
        Prop("name", "名称", nullable=False), Prop("uscc", "统一社会信用代码", nullable=False),
        Prop("credit_grade", "信用等级", enum=("A", "B", "C", "D")),
        Prop("legal_representative", "法定代表人", personal=True, mask=mask_name),
        Prop("industry", "行业"), Prop("address", "地址"),
        Prop("staff_count", "从业人数", "integer"), *_STAMPS)))

register(CollectionSpec(
    id="events", title="事件", description="上报的事件(标题、来源、等级、状态、时限)",
    table="event", permission="event.read", geometry_type="Point",
    datetime_column="reported_at", properties=(
        Prop("code", "事件编号", nullable=False), Prop("title", "标题", nullable=False),
        Prop("event_type_id", "事件类型", "integer", nullable=False),
        Prop("source", "来源", enum=("patrol", "commander", "public", "hotline_12345",
                                     "police_110", "external"), nullable=False),
        Prop("severity", "紧急程度", enum=("normal", "major", "urgent"), nullable=False),
        Prop("state", "状态", enum=("reported", "refused", "accepted", "dispatched", "signed",
                                    "return_requested", "returned", "handled", "verified",
                                    "closed", "evaluated", "merged"), nullable=False),
        Prop("level", "层级", enum=("township", "county", "city"), nullable=False),
        Prop("address", "地址"), Prop("grid_code", "网格"), Prop("township_code", "乡镇(街道)"),
        Prop("supervised", "督办", "boolean", nullable=False),
        Prop("resolved_on_spot", "就地解决", "boolean", nullable=False),
        Prop("reporter_name", "上报人", personal=True, mask=mask_name),
        Prop("reporter_phone", "上报人电话", column="reporter_phone_masked", personal=True),
        Prop("reported_at", "上报时间", "date-time", nullable=False),
        Prop("deadline_at", "时限", "date-time"), Prop("closed_at", "办结时间", "date-time"),
        *_STAMPS)))
