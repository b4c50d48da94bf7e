"""Base data: schema-level rules (helpers in tests/support/objects.py, fixtures in conftest)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.support.objects import KINDS

# --- schema rules ---------------------------------------------------------------------------


def _sqlstate(exc: DBAPIError) -> str:
    return exc.orig.pgcode  # type: ignore[union-attr]


def test_every_base_table_has_scope_rls(db) -> None:
    rows = db.execute(text(
        "SELECT c.relname, c.relrowsecurity FROM pg_class c WHERE c.relname = ANY(:t)"),
        {"t": list(KINDS)}).all()
    assert {r.relname: r.relrowsecurity for r in rows} == dict.fromkeys(KINDS, True)


def test_building_trigger_derives_path_and_residence_copies_it(db, tree) -> None:
    bid = db.execute(text(
        "INSERT INTO building (code, geom) VALUES ('B1', ST_Multi(ST_Buffer("
        "ST_SetSRID(ST_Point(120.1, 27.6), 4490), 0.0003))) RETURNING id")).scalar()
    rid = db.execute(text(
        "INSERT INTO residence (building_id, room) VALUES (:b, '101') RETURNING id"),
        {"b": bid}).scalar()
    paths = db.execute(text(
        "SELECT b.path::text AS b, r.path::text AS r, b.region_id = r.region_id AS same "
        "FROM building b JOIN residence r ON r.building_id = b.id WHERE r.id = :r"),
        {"r": rid}).one()
    assert paths.b == tree["330302006001001"] and paths.r == paths.b and paths.same


def test_residence_of_unknown_building_is_gg422_naming_building_id(db, tree) -> None:
    with pytest.raises(DBAPIError) as err:
        with db.begin_nested():
            db.execute(text("INSERT INTO residence (building_id, room) VALUES (-1, '1')"))
    assert _sqlstate(err.value) == "GG422"
    assert err.value.orig.diag.message_detail == "building_id"  # type: ignore[union-attr]


def test_key_place_refuses_lines(db, tree) -> None:
    with pytest.raises(DBAPIError) as err:
        with db.begin_nested():
            db.execute(text(
                "INSERT INTO key_place (name, category, geom) VALUES ('x', 'school', "
                "ST_GeomFromText('LINESTRING(120.1 27.6, 120.2 27.6)', 4490))"))
    assert _sqlstate(err.value) == "23514"


def test_standard_address_building_key_sets_null_on_delete(db, tree) -> None:
    bid = db.execute(text(
        "INSERT INTO building (code, geom) VALUES ('B2', ST_Multi(ST_Buffer("
        "ST_SetSRID(ST_Point(120.1, 27.6), 4490), 0.0003))) RETURNING id")).scalar()
    fk = db.execute(text(
        "SELECT confdeltype FROM pg_constraint WHERE conname = "
        "'standard_address_building_id_fkey'")).scalar()
    assert fk == "n"  # ON DELETE SET NULL
    db.execute(text("DELETE FROM building WHERE id = :b"), {"b": bid})
