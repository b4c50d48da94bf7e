"""Region tree rules enforced in SQL: nesting, overlap, paths, locate, versions."""

from __future__ import annotations

import pytest
from shapely.geometry import MultiPolygon, box
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError


def _add(db, code, parent_code, path, geom, level="grid", grid_type="general"):
    db.execute(
        text("INSERT INTO region (code, name, level, parent_code, path, geom, grid_type) VALUES "
             "(:c, 'x', CAST(:l AS region_level), :p, CAST(:path AS ltree), "
             "ST_GeomFromText(:g, 4490), CAST(:gt AS grid_type))"),
        {"c": code, "l": level, "p": parent_code, "path": path,
         "g": MultiPolygon([geom]).wkt, "gt": grid_type},
    )


def _sqlstate(exc: DBAPIError) -> str:
    return exc.orig.pgcode  # type: ignore[union-attr]


def test_locate_finds_smallest_general_region(db, tree) -> None:
    row = db.execute(text(
        "SELECT code, level FROM gridgov_meta.locate(ST_SetSRID(ST_Point(120.22, 27.65), 4490))"
    )).one()
    # Inside the dedicated grid too, but located rows follow the general hierarchy.
    assert row.code == "330302006001001" and row.level == "grid"
    outside = db.execute(text(
        "SELECT count(*) FROM gridgov_meta.locate(ST_SetSRID(ST_Point(122, 27.65), 4490))"
    )).scalar()
    assert outside == 0


def test_child_outside_parent_is_refused_naming_parent(db, tree) -> None:
    v = "330302006001"
    with pytest.raises(DBAPIError) as err:
        with db.begin_nested():
            _add(db, v + "009", v, tree[v] + "." + v + "009", box(120.2, 27.5, 120.3, 27.6))
    assert _sqlstate(err.value) == "GG409"
    assert v in str(err.value)


def test_overlapping_general_grid_is_refused_naming_neighbour(db, tree) -> None:
    v = "330302006001"
    with pytest.raises(DBAPIError) as err:
        with db.begin_nested():
            _add(db, v + "009", v, tree[v] + "." + v + "009", box(120.0, 27.5, 120.1, 27.6))
    assert _sqlstate(err.value) == "GG409"
    assert "330302006001001" in str(err.value)


def test_sliver_within_tolerance_is_accepted(db, tree) -> None:
    # Move grid 001 of village 001 one micro-degree into its northern sibling (~0.1 m strip).
    db.execute(text(
        "UPDATE region SET geom = ST_Multi(ST_MakeEnvelope(120.0, 27.5, 120.25, 27.750001, 4490)) "
        "WHERE code = '330302006001001'"))


def test_dedicated_grid_may_overlap_village_grids(db, tree) -> None:
    t = "330302006"
    _add(db, t + "900002", t, tree[t] + "." + t + "900002", box(120.05, 27.55, 120.45, 27.6),
         grid_type="dedicated")


def test_path_must_follow_parent(db, tree) -> None:
    with pytest.raises(DBAPIError) as err:
        with db.begin_nested():
            _add(db, "330302006001009", "330302006001", "330300.330302006001009",
                 box(120.0, 27.5, 120.01, 27.51))
    assert _sqlstate(err.value) == "GG422"


def test_parent_cannot_shrink_away_from_children(db, tree) -> None:
    with pytest.raises(DBAPIError) as err:
        with db.begin_nested():
            db.execute(text(
                "UPDATE region SET geom = ST_Multi(ST_MakeEnvelope(120.0, 27.5, 120.25, 27.6, "
                "4490)) WHERE code = '330302006001'"))
    assert _sqlstate(err.value) == "GG409"


def test_scope_limits_regions(db, tree) -> None:
    from geoserver.database.engine import set_scope

    set_scope(db, [tree["330302006"]])
    codes = {r[0] for r in db.execute(text("SELECT code FROM region")).all()}
    assert codes and all(c.startswith("330302006") for c in codes)
    assert "330302006900001" in codes and "330302025" not in codes
    set_scope(db, [])
    assert db.execute(text("SELECT count(*) FROM region")).scalar() == 0
