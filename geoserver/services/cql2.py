"""CQL2 filters (OGC API Features Part 3) parsed by pygeofilter, evaluated into bound SQL.

The filter text is parsed into pygeofilter's AST and translated here, node by node, into a
SQLAlchemy expression over a whitelist of queryable columns: property names resolve only through
that whitelist (anything else is InvalidInput), and every literal becomes a bound parameter, so
request text never reaches the SQL string. Literal types are checked against the queryable's
type in Python, so a wrong type is a 400 and never a database error.

Supported: AND/OR/NOT, = <> < <= > >=, LIKE (CASEI for case-insensitive), BETWEEN, IN, IS NULL,
property-property comparisons, + - * / on numbers, CASEI/LOWER/UPPER on text, S_INTERSECTS,
S_EQUALS, S_DISJOINT, S_TOUCHES, S_WITHIN, S_OVERLAPS, S_CROSSES, S_CONTAINS (geometry literals
in ``filter-crs``, or an EWKT ``SRID=…;`` of a supported CRS), BBOX, and the temporal
predicates on date-time properties.

pygeofilter quirks handled here: the CQL2-JSON ``bbox`` literal arrives as an Envelope whose
fields are filled positionally (x1, x2, y1, y2 = minx, miny, maxx, maxy); CQL2-JSON ``between``
with three arguments is normalised to pygeofilter's ``[value, [low, high]]``; and pygeofilter
parses both T_INTERSECTS and T_OVERLAPS to one node, evaluated as T_INTERSECTS (our temporal
properties are instants, for which T_OVERLAPS in its strict sense never holds).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import shapely
from pygeofilter import ast, values
from shapely.geometry import shape
from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    cast,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    true,
)

from geoserver.config import GOVERNANCE_TZ
from geoserver.errors import InvalidInput
from geoserver.services.feature_params import CRS84, CrsDef, parse_crs

LANGS = ("cql2-text", "cql2-json")
MAX_FILTER_CHARS = 20_000
STORAGE_SRID = 4490
_NUMERIC = ("integer", "number")
_TEXTUAL = ("string",)
_TEMPORAL = ("date-time", "date")


@dataclass(frozen=True)
class Queryable:
    """A property filters may name: its SQL expression, JSON type, and allowed values."""

    name: str
    expr: ColumnElement[Any]
    type: str  # string | integer | number | boolean | date-time | date | geometry
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Typed:
    """A translated expression and what it evaluates to."""

    expr: ColumnElement[Any]
    type: str
    enum: tuple[str, ...] = ()
    #: The Python value of a literal (None for expressions over columns).
    value: Any = None
    is_literal: bool = False


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, field="filter")


# --- parsing ---------------------------------------------------------------------------------


def parse(text: str, lang: str = "cql2-text") -> ast.Node:
    """Parse a CQL2 filter in ``lang`` (cql2-text or cql2-json) into pygeofilter's AST."""
    if lang not in LANGS:
        raise InvalidInput(f"filter-lang must be one of {', '.join(LANGS)}", field="filter-lang")
    if len(text) > MAX_FILTER_CHARS:
        raise _bad(f"filter is longer than {MAX_FILTER_CHARS} characters")
    try:
        if lang == "cql2-text":
            from pygeofilter.parsers.cql2_text import parse as parse_text

            node = parse_text(text)
        else:
            from pygeofilter.parsers.cql2_json import parse as parse_json

            node = parse_json(_normalise_json(json.loads(text)))
    except InvalidInput:
        raise
    except RecursionError:
        raise _bad("filter is nested too deeply") from None
    except Exception as exc:  # lark, json and pygeofilter raise many kinds for bad input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _bad(f"malformed {lang} filter: {first[:200]}") from None
    if not isinstance(node, ast.Node) or isinstance(node, ast.Expression):
        raise _bad("filter must be a condition (a predicate), not a value")
    return node


def _normalise_json(node: Any) -> Any:
    """Rewrite standard CQL2-JSON forms pygeofilter reads differently (see module docstring)."""
    if isinstance(node, list):
        return [_normalise_json(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _normalise_json(v) for k, v in node.items()}
    args = out.get("args")
    if out.get("op") == "between" and isinstance(args, list) and len(args) == 3:
        out["args"] = [args[0], [args[1], args[2]]]
    return out


# --- translation -----------------------------------------------------------------------------


def to_sql(node: ast.Node, queryables: Mapping[str, Queryable], *,
           crs: CrsDef = CRS84) -> ColumnElement[bool]:
    """Translate a parsed filter into a boolean SQL expression over ``queryables``."""
    return _Translator(queryables, crs).condition(node)


def filter_clause(text: str, lang: str, queryables: Mapping[str, Queryable], *,
                  crs: CrsDef = CRS84) -> ColumnElement[bool]:
    """Parse and translate a filter in one step."""
    return to_sql(parse(text, lang), queryables, crs=crs)


_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Equal: lambda a, b: a == b,
    ast.NotEqual: lambda a, b: a != b,
    ast.LessThan: lambda a, b: a < b,
    ast.LessEqual: lambda a, b: a <= b,
    ast.GreaterThan: lambda a, b: a > b,
    ast.GreaterEqual: lambda a, b: a >= b,
}

_SPATIAL: dict[type, Any] = {
    ast.GeometryIntersects: func.ST_Intersects,
    ast.GeometryDisjoint: func.ST_Disjoint,
    ast.GeometryContains: func.ST_Contains,
    ast.GeometryWithin: func.ST_Within,
    ast.GeometryTouches: func.ST_Touches,
    ast.GeometryCrosses: func.ST_Crosses,
    ast.GeometryOverlaps: func.ST_Overlaps,
    ast.GeometryEquals: func.ST_Equals,
}

@dataclass(frozen=True)
class _Infinity:
    """An open interval end: a stored instant is always after -inf and before +inf."""

    positive: bool

    def holds(self, op: str) -> bool:
        """Return whether ``instant <op> self`` is true."""
        return op in (("<", "<=") if self.positive else (">", ">="))


_NEG_INF = _Infinity(positive=False)
_POS_INF = _Infinity(positive=True)


def _temporal_rules() -> dict[type, Callable[[Any, Any, Any, Any], list[Any]]]:
    """Interval relations of CQL2 (a = [a1, a2] the property, b = [b1, b2] the literal)."""
    return {
        ast.TimeAfter: lambda a1, a2, b1, b2: [(">", a1, b2)],
        ast.TimeBefore: lambda a1, a2, b1, b2: [("<", a2, b1)],
        ast.TimeContains: lambda a1, a2, b1, b2: [("<", a1, b1), (">", a2, b2)],
        ast.TimeDuring: lambda a1, a2, b1, b2: [(">", a1, b1), ("<", a2, b2)],
        ast.TimeEquals: lambda a1, a2, b1, b2: [("=", a1, b1), ("=", a2, b2)],
        ast.TimeEndedBy: lambda a1, a2, b1, b2: [("<", a1, b1), ("=", a2, b2)],
        ast.TimeEnds: lambda a1, a2, b1, b2: [(">", a1, b1), ("=", a2, b2)],
        ast.TimeMeets: lambda a1, a2, b1, b2: [("=", a2, b1)],
        ast.TimeMetBy: lambda a1, a2, b1, b2: [("=", a1, b2)],
        ast.TimeOverlappedBy: lambda a1, a2, b1, b2: [(">", a1, b1), ("<", a1, b2),
                                                      (">", a2, b2)],
        ast.TimeBegunBy: lambda a1, a2, b1, b2: [("=", a1, b1), (">", a2, b2)],
        ast.TimeBegins: lambda a1, a2, b1, b2: [("=", a1, b1), ("<", a2, b2)],
        # T_INTERSECTS (pygeofilter's node for both T_INTERSECTS and T_OVERLAPS)
        ast.TimeOverlaps: lambda a1, a2, b1, b2: [("<=", a1, b2), (">=", a2, b1)],
        ast.TimeBeforeOrDuring: lambda a1, a2, b1, b2: [("<=", a2, b2)],
        ast.TimeDuringOrAfter: lambda a1, a2, b1, b2: [(">=", a1, b1)],
    }


_TEMPORAL_RULES = _temporal_rules()
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": lambda x, y: x < y, ">": lambda x, y: x > y, "=": lambda x, y: x == y,
    "<=": lambda x, y: x <= y, ">=": lambda x, y: x >= y,
}


class _Translator:
    """Walk one filter's AST; holds the whitelist and the filter CRS."""

    def __init__(self, queryables: Mapping[str, Queryable], crs: CrsDef) -> None:
        self.queryables = queryables
        self.crs = crs

    # conditions -------------------------------------------------------------------------
    def condition(self, node: Any) -> ColumnElement[bool]:
        """Translate a node that must be a predicate."""
        if isinstance(node, ast.And):
            return and_(self.condition(node.lhs), self.condition(node.rhs))
        if isinstance(node, ast.Or):
            return or_(self.condition(node.lhs), self.condition(node.rhs))
        if isinstance(node, ast.Not):
            return not_(self.condition(node.sub_node))
        if isinstance(node, ast.Include):
            return false() if node.not_ else true()
        handler = self._handlers().get(type(node))
        if handler is None:
            if type(node) in _TEMPORAL_RULES:
                return self.temporal(node)
            raise _bad(f"{type(node).__name__} is not supported in filters")
        return handler(node)

    def _handlers(self) -> dict[type, Callable[[Any], ColumnElement[bool]]]:
        handlers: dict[type, Callable[[Any], ColumnElement[bool]]] = {
            ast.Between: self.between, ast.Like: self.like, ast.In: self.in_,
            ast.IsNull: self.is_null, ast.BBox: self.bbox_predicate,
        }
        handlers.update(dict.fromkeys(_COMPARE, self.compare))
        handlers.update(dict.fromkeys(_SPATIAL, self.spatial))
        return handlers

    def compare(self, node: ast.Comparison) -> ColumnElement[bool]:
        """Translate = <> < <= > >=."""
        lhs, rhs = self.value(node.lhs), self.value(node.rhs)
        self._check_comparable(lhs, rhs, type(node) is ast.Equal or type(node) is ast.NotEqual)
        a, b = _harmonise(lhs, rhs)
        return _COMPARE[type(node)](a, b)  # type: ignore[no-any-return]

    def between(self, node: ast.Between) -> ColumnElement[bool]:
        """Translate BETWEEN (inclusive) and NOT BETWEEN."""
        value, low, high = self.value(node.lhs), self.value(node.low), self.value(node.high)
        self._check_comparable(value, low, False)
        self._check_comparable(value, high, False)
        expr, low_expr = _harmonise(value, low)
        clause = expr.between(low_expr, _harmonise(value, high)[1])
        return not_(clause) if node.not_ else clause

    def like(self, node: ast.Like) -> ColumnElement[bool]:
        """Translate LIKE with CQL2's ``%``/``_`` wildcards and ``\\`` escape."""
        lhs, pattern = self.value(node.lhs), self.value(node.pattern)
        if lhs.type not in _TEXTUAL or pattern.type not in _TEXTUAL:
            raise _bad("LIKE compares text with a text pattern")
        expr = cast(lhs.expr, Text) if lhs.enum else lhs.expr
        clause = expr.ilike(pattern.expr, escape="\\") if node.nocase else \
            expr.like(pattern.expr, escape="\\")
        return not_(clause) if node.not_ else clause

    def in_(self, node: ast.In) -> ColumnElement[bool]:
        """Translate IN (list) and NOT IN."""
        lhs = self.value(node.lhs)
        if not node.sub_nodes:
            raise _bad("IN needs at least one value")
        items = [self.value(v) for v in node.sub_nodes]
        for item in items:
            self._check_comparable(lhs, item, True)
        expr = _harmonise(lhs, items[0])[0] if any(not i.is_literal for i in items) \
            else lhs.expr
        clause = expr.in_([_harmonise(lhs, i)[1] for i in items])
        return not_(clause) if node.not_ else clause

    def is_null(self, node: ast.IsNull) -> ColumnElement[bool]:
        """Translate IS NULL and IS NOT NULL."""
        lhs = self.value(node.lhs)
        return lhs.expr.is_not(None) if node.not_ else lhs.expr.is_(None)

    def spatial(self, node: ast.SpatialComparisonPredicate) -> ColumnElement[bool]:
        """Translate S_INTERSECTS and the other spatial predicates."""
        lhs, rhs = self.value(node.lhs), self.value(node.rhs)
        if lhs.type != "geometry" or rhs.type != "geometry":
            raise _bad("spatial predicates compare two geometries")
        return _SPATIAL[type(node)](lhs.expr, rhs.expr)  # type: ignore[no-any-return]

    def bbox_predicate(self, node: ast.BBox) -> ColumnElement[bool]:
        """Translate ``BBOX(geometry, minx, miny, maxx, maxy[, crs])``."""
        lhs = self.value(node.lhs)
        if lhs.type != "geometry":
            raise _bad("BBOX applies to the geometry")
        crs = parse_crs(node.crs, param="filter-crs") if node.crs else self.crs
        box = self._envelope([node.minx, node.miny, node.maxx, node.maxy], crs)
        return func.ST_Intersects(lhs.expr, box.expr)  # type: ignore[no-any-return]

    def temporal(self, node: ast.TemporalPredicate) -> ColumnElement[bool]:
        """Translate T_AFTER, T_DURING … with open interval ends as ±infinity."""
        lhs = self.value(node.lhs)
        if lhs.type not in _TEMPORAL:
            raise _bad("temporal predicates apply to date-time properties")
        b1, b2 = self._time_bounds(node.rhs)
        parts = [_OPS[op](left, right) if not isinstance(right, _Infinity)
                 else (true() if right.holds(op) else false())
                 for op, left, right in _TEMPORAL_RULES[type(node)](lhs.expr, lhs.expr, b1, b2)]
        return and_(*parts)

    def _time_bounds(self, node: Any) -> tuple[Any, Any]:
        if isinstance(node, values.Interval):
            start = _NEG_INF if node.start in (None, "..") else self._time_literal(node.start)
            end = _POS_INF if node.end in (None, "..") else self._time_literal(node.end)
            return start, end
        value = self.value(node)
        if value.type not in _TEMPORAL:
            raise _bad("temporal predicates need a TIMESTAMP, DATE or INTERVAL")
        return value.expr, value.expr

    def _time_literal(self, value: Any) -> ColumnElement[Any]:
        if not isinstance(value, date):
            raise _bad("interval ends must be dates or timestamps")
        return self._literal(value).expr

    # values -------------------------------------------------------------------------------
    def value(self, node: Any) -> _Typed:
        """Translate an expression: property, literal, function or arithmetic."""
        if isinstance(node, ast.Attribute):
            return self.attribute(node.name)
        if isinstance(node, ast.Function):
            return self.function(node)
        if isinstance(node, ast.Arithmetic):
            return self.arithmetic(node)
        if isinstance(node, values.Geometry | values.Envelope):
            return self.geometry(node)
        if isinstance(node, ast.Node):
            raise _bad(f"{type(node).__name__} cannot be used as a value")
        return self._literal(node)

    def attribute(self, name: str) -> _Typed:
        """Resolve a property name through the whitelist."""
        q = self.queryables.get(name)
        if q is None:
            known = ", ".join(sorted(self.queryables))
            raise InvalidInput(f"unknown property {name!r} in filter; queryables: {known}",
                               field="filter")
        return _Typed(q.expr, q.type, q.enum)

    def _literal(self, value: Any) -> _Typed:
        if isinstance(value, bool):
            return _Typed(literal(value), "boolean", value=value, is_literal=True)
        if isinstance(value, int):
            return _Typed(literal(value), "integer", value=value, is_literal=True)
        if isinstance(value, float):
            return _Typed(literal(value), "number", value=value, is_literal=True)
        if isinstance(value, str):
            return _Typed(literal(value, Text), "string", value=value, is_literal=True)
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=GOVERNANCE_TZ)
            return _Typed(literal(value), "date-time", value=value, is_literal=True)
        if isinstance(value, date):
            return _Typed(literal(value), "date", value=value, is_literal=True)
        if value is None:
            return _Typed(null(), "null", is_literal=True)
        raise _bad(f"unsupported value {value!r}")

    def function(self, node: ast.Function) -> _Typed:
        """Translate CASEI (parsed as lower), LOWER, UPPER and the BBOX geometry literal."""
        name = node.name.lower()
        if name == "bbox":
            return self._envelope(list(node.arguments), self.crs)
        if name in ("lower", "upper", "casei") and len(node.arguments) == 1:
            arg = self.value(node.arguments[0])
            if arg.type not in _TEXTUAL:
                raise _bad(f"{node.name.upper()} applies to text")
            expr = cast(arg.expr, Text) if arg.enum else arg.expr
            fn = func.upper if name == "upper" else func.lower
            return _Typed(fn(expr), "string")
        raise _bad(f"function {node.name!r} is not supported")

    def arithmetic(self, node: ast.Arithmetic) -> _Typed:
        """Translate + - * / on numbers (division by zero yields NULL, never an error)."""
        lhs, rhs = self.value(node.lhs), self.value(node.rhs)
        if lhs.type not in _NUMERIC or rhs.type not in _NUMERIC:
            raise _bad("arithmetic applies to numbers")
        kind = "number" if "number" in (lhs.type, rhs.type) or isinstance(node, ast.Div) \
            else "integer"
        if isinstance(node, ast.Div):
            return _Typed(cast(lhs.expr, _float()) / func.nullif(rhs.expr, 0), kind)
        ops: dict[type, Callable[[Any, Any], Any]] = {
            ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
            ast.Mul: lambda a, b: a * b,
        }
        return _Typed(ops[type(node)](lhs.expr, rhs.expr), kind)

    def geometry(self, node: values.Geometry | values.Envelope) -> _Typed:
        """Turn a geometry literal into bound GeoJSON transformed to storage CRS."""
        if isinstance(node, values.Envelope):
            # pygeofilter fills Envelope positionally from [minx, miny, maxx, maxy].
            return self._envelope([node.x1, node.x2, node.y1, node.y2], self.crs)
        geojson = dict(node.geometry)
        crs = self.crs
        named = geojson.pop("crs", None)
        if named:
            crs = parse_crs(str(named.get("properties", {}).get("name", "")), param="filter-crs")
        try:
            geom = shape(geojson)
        except Exception:
            raise _bad("geometry literal is malformed") from None
        if geom.is_empty or not geom.is_valid:
            raise _bad("geometry literal is empty or invalid")
        b = geom.bounds
        self._check_range((b[1], b[0], b[3], b[2]) if crs.flip else b, crs)
        return _Typed(_from_geojson(shapely.to_geojson(geom), crs), "geometry")

    def _envelope(self, corners: list[Any], crs: CrsDef) -> _Typed:
        if len(corners) != 4 or not all(isinstance(c, int | float) and not isinstance(c, bool)
                                        for c in corners):
            raise _bad("BBOX needs four numbers: minx, miny, maxx, maxy")
        a0, b0, a1, b1 = (float(c) for c in corners)
        x0, y0, x1, y1 = (b0, a0, b1, a1) if crs.flip else (a0, b0, a1, b1)
        if x0 > x1 or y0 > y1:
            raise _bad("BBOX lower corner must not exceed the upper corner")
        self._check_range((x0, y0, x1, y1), crs)
        box = func.ST_MakeEnvelope(x0, y0, x1, y1, crs.srid)
        return _Typed(_to_storage(box, crs.srid), "geometry")

    @staticmethod
    def _check_range(bounds: tuple[float, ...], crs: CrsDef) -> None:
        x0, y0, x1, y1 = bounds
        if crs.geographic and not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
            raise _bad("geometry lies outside longitude/latitude range (check filter-crs "
                       "axis order)")

    @staticmethod
    def _check_comparable(a: _Typed, b: _Typed, equality: bool) -> None:
        kinds = {a.type, b.type}
        if "null" in kinds:
            raise _bad("compare with NULL using IS NULL")
        ok = (kinds <= set(_NUMERIC) or kinds <= set(_TEXTUAL) or kinds <= set(_TEMPORAL)
              or kinds == {"boolean"})
        if not ok:
            raise _bad(f"cannot compare {a.type} with {b.type}")
        for column, lit in ((a, b), (b, a)):
            if column.enum and lit.is_literal and lit.value not in column.enum:
                # an unknown enum label would be a database error, not an empty result
                raise _bad(f"{lit.value!r} is not one of {', '.join(column.enum)}")


def _harmonise(a: _Typed, b: _Typed) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Cast enum columns to text when compared with anything but a literal of their labels."""
    if a.enum and b.enum and a.enum == b.enum:
        return a.expr, b.expr
    left = cast(a.expr, Text) if a.enum and not b.is_literal else a.expr
    right = cast(b.expr, Text) if b.enum and not a.is_literal else b.expr
    return left, right


def _float() -> Any:
    from sqlalchemy import Float

    return Float()


def _from_geojson(geojson: str, crs: CrsDef) -> ColumnElement[Any]:
    geom = func.ST_GeomFromGeoJSON(literal(geojson, Text))
    if crs.flip:
        geom = func.ST_FlipCoordinates(geom)
    return _to_storage(func.ST_SetSRID(geom, crs.srid), crs.srid)


def _to_storage(geom: ColumnElement[Any], srid: int) -> ColumnElement[Any]:
    return geom if srid == STORAGE_SRID else func.ST_Transform(geom, STORAGE_SRID)
