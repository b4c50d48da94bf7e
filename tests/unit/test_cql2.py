"""CQL2 → SQL translation and OGC parameter parsing, without a database."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import DateTime, Integer, Text, column
from sqlalchemy.dialects import postgresql

from geoserver.errors import InvalidInput
from geoserver.services import cql2
from geoserver.services.feature_params import (
    EPSG3857,
    EPSG4490,
    EPSG4549,
    Cursor,
    decode_cursor,
    parse_bbox,
    parse_crs,
    parse_datetime,
    parse_limit,
    parse_sortby,
)

Q = {
    "name": cql2.Queryable("name", column("name", Text), "string"),
    "floors": cql2.Queryable("floors", column("floors", Integer), "integer"),
    "category": cql2.Queryable("category", column("category", Text), "string",
                               ("residential", "office")),
    "updated_at": cql2.Queryable("updated_at", column("updated_at", DateTime(timezone=True)),
                                 "date-time"),
    "geometry": cql2.Queryable("geometry", column("geom"), "geometry"),
}


def sql(text: str, lang: str = "cql2-text", **kw) -> tuple[str, dict]:
    compiled = cql2.filter_clause(text, lang, Q, **kw).compile(dialect=postgresql.dialect())
    return str(compiled), compiled.params


def test_values_are_bound_never_pasted() -> None:
    evil = "x; DROP TABLE building; --"
    text, params = sql(f"name = '{evil}' OR floors > 3")
    assert "DROP" not in text and evil in params.values()
    assert "name = %(" in text and "floors > %(" in text


def test_unknown_property_and_wrong_types_are_invalid_input() -> None:
    for bad in ("nosuch = 1", "floors = 'high'", "category = 'castle'", "name > 3",
                "S_INTERSECTS(floors, POINT(1 2))", "floors LIKE '1%'"):
        with pytest.raises(InvalidInput):
            sql(bad)


def test_malformed_filters_are_invalid_input() -> None:
    for bad, lang in (("name = ", "cql2-text"), ("[1,", "cql2-json"), ("5", "cql2-json"),
                      ('{"op": "nosuch", "args": []}', "cql2-json"), ("name = 'x'", "ecql")):
        with pytest.raises(InvalidInput):
            sql(bad, lang)


def test_json_between_with_three_args_and_bbox_literal() -> None:
    text, params = sql(json.dumps({"op": "between", "args": [{"property": "floors"}, 2, 5]}),
                       "cql2-json")
    assert "BETWEEN" in text and set(params.values()) == {2, 5}
    text, params = sql(json.dumps({"op": "s_intersects", "args": [
        {"property": "geometry"}, {"bbox": [120.1, 28.0, 120.2, 28.1]}]}), "cql2-json")
    assert "ST_MakeEnvelope" in text
    assert [params[k] for k in sorted(params) if isinstance(params[k], float)] == \
        [120.1, 28.0, 120.2, 28.1]


def test_filter_crs_flips_and_transforms_geometry_literals() -> None:
    text, _ = sql("S_INTERSECTS(geometry, POINT(28 120))", crs=EPSG4490)
    assert "ST_FlipCoordinates" in text and "ST_Transform" not in text
    text, _ = sql("S_WITHIN(geometry, POINT(13400000 3250000))", crs=EPSG3857)
    assert "ST_Transform" in text and "ST_FlipCoordinates" not in text
    with pytest.raises(InvalidInput):
        sql("S_INTERSECTS(geometry, POINT(120 28))", crs=EPSG4490)  # lat 120: axis swapped


def test_temporal_predicates_with_open_intervals() -> None:
    text, params = sql("updated_at T_AFTER TIMESTAMP('2024-01-01T00:00:00Z')")
    assert "updated_at >" in text
    assert list(params.values())[0] == datetime.fromisoformat("2024-01-01T00:00:00+00:00")
    text, _ = sql(json.dumps({"op": "t_during", "args": [
        {"property": "updated_at"}, {"interval": ["2024-01-01T00:00:00Z", ".."]}]}),
        "cql2-json")
    assert "updated_at >" in text and "<" not in text  # the open end holds for every row
    text, _ = sql(json.dumps({"op": "t_before", "args": [
        {"property": "updated_at"}, {"interval": ["..", "2024-01-01T00:00:00Z"]}]}),
        "cql2-json")
    assert "false" in text.lower()  # nothing is before an interval that starts at -infinity


def test_enum_compared_with_a_column_is_cast_to_text() -> None:
    text, _ = sql("category = name")
    assert "CAST(category AS TEXT)" in text


def test_parse_crs_bbox_and_datetime() -> None:
    assert parse_crs("EPSG:4490") is EPSG4490 and parse_crs("[EPSG:4549]") is EPSG4549
    with pytest.raises(InvalidInput):
        parse_crs("EPSG:32650")
    box = parse_bbox("28.0,120.6,28.1,120.7", EPSG4490)
    assert (box.minx, box.miny, box.maxx, box.maxy) == (120.6, 28.0, 120.7, 28.1)
    day = parse_datetime("2026-01-01")
    assert day.end_exclusive and (day.end - day.start).days == 1
    assert day.start.utcoffset().total_seconds() == 8 * 3600  # a Shanghai day
    open_start = parse_datetime("../2026-01-01T00:00:00Z")
    assert open_start.start is None and open_start.end.year == 2026
    for bad in ("2026-13-01", "2026-02-01/2026-01-01", "a/b/c"):
        with pytest.raises(InvalidInput):
            parse_datetime(bad)


def test_limit_sortby_and_cursor() -> None:
    assert parse_limit(None) == 10 and parse_limit("20000") == 10_000
    with pytest.raises(InvalidInput):
        parse_limit("0")
    items = parse_sortby("+name,-updated_at", ("name", "updated_at"))
    assert [(i.name, i.descending) for i in items] == [("name", False), ("updated_at", True)]
    with pytest.raises(InvalidInput):
        parse_sortby("name,name", ("name",))
    token = Cursor(keys=("a", 3), backward=True, matched=7).encode()
    back = decode_cursor(token)
    assert back == Cursor(keys=("a", 3), backward=True, matched=7)
    with pytest.raises(InvalidInput):
        decode_cursor("!!!")
