"""Base data: shared fixtures for the test_objects_* modules, and schema-level rules.

The test region tree (tests/support/regions.py): township 330302006 (五马, 120.0–120.5E,
27.5–28.0N) with villages 330302006001 (west) / 330302006002 (east), each with grids 001
(south) / 002 (north); township 330302025 (南汇) north of it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from geoserver.config import SecuritySettings
from geoserver.database.engine import set_scope
from geoserver.domain.principal import Principal
from geoserver.security.crypto import crypto_from_settings
from tests.support.regions import build_test_tree

KINDS = ("building", "residence", "household", "person", "organization", "key_place",
         "city_component", "enterprise")
WRITE_ALL = frozenset(f"{p}.{a}" for p in ("building", "person", "place", "enterprise")
                      for a in ("read", "write"))

# Points well inside known grids of the test tree.
IN_GRID_W_S = (120.1, 27.6)    # 330302006001001
IN_GRID_W_N = (120.1, 27.9)    # 330302006001002
IN_GRID_E_S = (120.4, 27.6)    # 330302006002001
IN_NANHUI = (120.1, 28.2)      # township 330302025
OUTSIDE_CITY = (122.0, 27.6)


def make_actor(scope: Iterable[str] = ("",), *, permissions: Iterable[str] = WRITE_ALL,
               categories: Iterable[str] = ()) -> Principal:
    return Principal(user_id=1, username="tester", scope=tuple(scope),
                     permissions=frozenset(permissions),
                     special_categories=frozenset(categories))


def square(lon: float, lat: float, d: float = 0.0004) -> dict:
    return {"type": "Polygon", "coordinates": [[
        [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d],
        [lon - d, lat - d]]]}


def point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


def scoped(db, *paths: str) -> Principal:
    """Narrow the session's RLS scope and return an actor with the same scope."""
    set_scope(db, list(paths))
    return make_actor(paths)


def system_actor() -> Principal:
    """Everything, everywhere, every special population, unmasked reads allowed."""
    return make_actor(("",), categories=("*",),
                      permissions=WRITE_ALL | {"person.read_sensitive"})


def make_crypto():
    return crypto_from_settings(SecuritySettings())

# Each test_objects_* module declares these three fixtures (pytest cannot share fixtures
# between sibling modules without a conftest, which this work may not add).


@pytest.fixture
def tree(db):
    return build_test_tree(db)


@pytest.fixture
def crypto():
    return make_crypto()


@pytest.fixture
def system():
    return system_actor()


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
