"""The tile SQL: layer functions (decoded), scope inside them, simplified outlines, H3 heat,
and the change tracking the tile cache keys on."""

from __future__ import annotations

import gzip
import json

import mapbox_vector_tile
import pytest
from sqlalchemy import text

from geoserver.database.engine import SYSTEM_SCOPE, set_scope
from geoserver.geo.h3cells import cell_int
from tiles.h3grid import fill_cells
from tiles.registry import REGISTRY
from tiles.tilemath import tile_of

WUMA = "330302006"  # 五马街道
OTHER = "330302024"
LUCHENG = "330300.330302"


def _render(session, layer: str, z: int, x: int, y: int, query: dict | None = None) -> dict:
    spec = REGISTRY.get(layer)
    q = spec.sql_query(json.dumps(query or {}))
    raw = session.execute(text(f"SELECT tiles.{spec.sql_function}(:z, :x, :y, CAST(:q AS json))"),
                          {"z": z, "x": x, "y": y, "q": q}).scalar()
    return mapbox_vector_tile.decode(bytes(raw)) if raw else {}


def _features(tile: dict, layer: str) -> list[dict]:
    return tile.get(layer, {}).get("features", [])


def _grid_point(session, township: str) -> tuple[str, float, float]:
    row = session.execute(text(
        "SELECT code, ST_X(label_point), ST_Y(label_point) FROM region WHERE valid_to IS NULL "
        "AND level = 'grid' AND grid_type <> 'dedicated' AND code LIKE :t || '%' "
        "ORDER BY code LIMIT 1"), {"t": township}).one()
    return row[0], row[1], row[2]


def _add_building(session, code: str, lon: float, lat: float, *, category: str = "residential",
                  size: float = 0.0001) -> int:
    return session.execute(text(
        "INSERT INTO building (code, name, category, floors, geom, h3_r7, h3_r8, h3_r9) "
        "VALUES (:code, :name, CAST(:cat AS building_category), 6, "
        "ST_Multi(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)), :r7, :r8, :r9) RETURNING id"),
        {"code": code, "name": f"楼{code}", "cat": category, "x0": lon - size, "y0": lat - size,
         "x1": lon + size, "y1": lat + size, "r7": cell_int(lon, lat, 7),
         "r8": cell_int(lon, lat, 8), "r9": cell_int(lon, lat, 9)}).scalar_one()


def test_tile_functions_are_stable_parallel_safe_invoker(demo) -> None:
    rows = demo.execute(text(
        "SELECT p.proname, p.provolatile, p.proparallel, p.prosecdef FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'tiles' "
        "AND p.proname = ANY(:names)"), {"names": [x.sql_function for x in REGISTRY]}).all()
    assert {r.proname for r in rows} == {x.sql_function for x in REGISTRY}
    for r in rows:
        # invoker (prosecdef false): row-level security of the caller applies inside
        assert (r.provolatile, r.proparallel, r.prosecdef) == ("s", "s", False), r.proname


@pytest.mark.parametrize(("z", "levels"), [
    (7, {"city", "county"}),
    (10, {"county", "township"}),
    (12, {"township", "village"}),
    (14, {"village", "grid"}),
    (16, {"grid"}),
])
def test_regions_draw_the_levels_of_the_zoom(demo, z, levels) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    tile = _render(demo, "regions", z, *tile_of(lon, lat, z))
    shapes = _features(tile, "regions")
    assert shapes and {f["properties"]["level"] for f in shapes} == levels
    labels = _features(tile, "region_labels")
    assert labels and {f["properties"]["level"] for f in labels} <= levels
    props = shapes[0]["properties"]
    assert set(props) >= {"code", "name", "level"} and props["name"]
    grids = [f for f in shapes if f["properties"]["level"] == "grid"]
    assert all(f["properties"]["grid_type"] in ("general", "key", "dedicated") for f in grids)


def test_regions_level_parameter_filters_but_not_below_the_zoom(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    tile = _render(demo, "regions", 15, *tile_of(lon, lat, 15), {"level": ["township"]})
    assert {f["properties"]["level"] for f in _features(tile, "regions")} == {"township"}
    # Grids over a whole z9 tile would be too many: fine levels are left out at low zoom.
    assert _render(demo, "regions", 9, *tile_of(lon, lat, 9), {"level": ["grid"]}) == {}


def test_outlines_are_presimplified_per_band_and_follow_writes(demo) -> None:
    rows = demo.execute(text(
        "SELECT o.band, ST_NPoints(o.geom_3857) AS n, ST_NPoints(r.geom_3857) AS raw "
        "FROM tiles.region_outline o JOIN region r ON r.id = o.region_id "
        "WHERE r.code = '330302' ORDER BY o.band")).all()
    assert [r.band for r in rows] == [0, 1, 2]  # a county is drawn from z6 to z11
    assert rows[0].n < rows[-1].n <= rows[0].raw
    # Renaming a region renames its outlines (same transaction, trigger-maintained).
    demo.execute(text("UPDATE region SET name = '新名字' WHERE code = :c AND valid_to IS NULL"),
                 {"c": WUMA})
    names = demo.execute(text("SELECT DISTINCT o.name FROM tiles.region_outline o "
                              "JOIN region r ON r.id = o.region_id WHERE r.code = :c"),
                         {"c": WUMA}).scalars().all()
    assert names == ["新名字"]
    demo.execute(text("UPDATE region SET valid_to = now() + interval '1 second' "
                      "WHERE code = :c AND valid_to IS NULL"), {"c": WUMA})
    left = demo.execute(text("SELECT count(*) FROM tiles.region_outline o JOIN region r "
                             "ON r.id = o.region_id WHERE r.code = :c"), {"c": WUMA}).scalar()
    assert left == 0


def test_scope_applies_inside_tile_functions(demo) -> None:
    _, lon_a, lat_a = _grid_point(demo, WUMA)
    _, lon_b, lat_b = _grid_point(demo, OTHER)
    _add_building(demo, "TT-A", lon_a, lat_a)
    _add_building(demo, "TT-B", lon_b, lat_b)
    # The same transaction, now as a 五马街道 user: RLS applies inside the invoker functions.
    set_scope(demo, [f"{LUCHENG}.{WUMA}"])
    z = 12
    for lon, lat in ((lon_a, lat_a), (lon_b, lat_b)):
        tile = _render(demo, "regions", z, *tile_of(lon, lat, z))
        codes = {f["properties"]["code"] for f in _features(tile, "regions")}
        assert all(c.startswith(WUMA) for c in codes), codes
    own = _render(demo, "buildings", 16, *tile_of(lon_a, lat_a, 16))
    own_codes = {f["properties"]["code"] for f in _features(own, "buildings")}
    assert "TT-A" in own_codes
    other = _render(demo, "buildings", 16, *tile_of(lon_b, lat_b, 16))
    assert "TT-B" not in {f["properties"]["code"] for f in _features(other, "buildings")}
    set_scope(demo, [])
    assert _render(demo, "regions", z, *tile_of(lon_a, lat_a, z)) == {}
    assert _render(demo, "buildings", 16, *tile_of(lon_a, lat_a, 16)) == {}


def test_buildings_layer_properties_and_category_filter(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    _add_building(demo, "TT-R", lon, lat, category="residential")
    _add_building(demo, "TT-C", lon + 0.0003, lat, category="commercial")
    xy = tile_of(lon, lat, 16)
    feats = {f["properties"]["code"]: f for f in _features(_render(demo, "buildings", 16, *xy),
                                                           "buildings")}
    assert {"TT-R", "TT-C"} <= set(feats)
    props = feats["TT-R"]["properties"]
    assert props == {"code": "TT-R", "name": "楼TT-R", "category": "residential", "floors": 6}
    assert feats["TT-R"]["geometry"]["type"] == "Polygon"
    assert isinstance(feats["TT-R"]["id"], int)
    only = _render(demo, "buildings", 16, *xy, {"category": ["commercial"]})
    cats = {f["properties"]["category"] for f in _features(only, "buildings")}
    assert cats == {"commercial"}


def test_feature_limit_bounds_a_tile(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    for i in range(5):
        _add_building(demo, f"TT-L{i}", lon + i * 0.0002, lat, size=0.00005)
    xy = tile_of(lon, lat, 15)
    spec = REGISTRY.get("buildings")
    raw = demo.execute(text("SELECT tiles.buildings(15, :x, :y, CAST(:q AS json))"),
                       {"x": xy[0], "y": xy[1], "q": json.dumps({"limit": 3})}).scalar()
    assert len(mapbox_vector_tile.decode(bytes(raw))["buildings"]["features"]) == 3
    # A caller cannot raise the limit beyond the function's ceiling.
    assert spec.limit <= 20000


def test_heat_counts_buildings_per_h3_cell_and_uses_outlines_once_filled(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    for i in range(3):
        _add_building(demo, f"TT-H{i}", lon + i * 0.00005, lat, size=0.00002)
    z = 13  # r9
    xy = tile_of(lon, lat, z)
    cell = cell_int(lon, lat, 9)
    expected = demo.execute(text("SELECT count(*) FROM building WHERE h3_r9 = :c"),
                            {"c": cell}).scalar()
    demo.execute(text("DELETE FROM tiles.h3_cell"))
    before = {f["properties"]["h3"]: f for f in _features(_render(demo, "heat_buildings", z, *xy),
                                                          "heat_buildings")}
    mine = before[format(cell, "x")]
    assert mine["properties"]["count"] == expected >= 3 and mine["properties"]["res"] == 9
    assert mine["geometry"]["type"] == "Point"  # no outline known yet
    assert fill_cells(demo) > 0
    after = {f["properties"]["h3"]: f for f in _features(_render(demo, "heat_buildings", z, *xy),
                                                         "heat_buildings")}
    assert after[format(cell, "x")]["geometry"]["type"] == "Polygon"
    assert after[format(cell, "x")]["properties"]["count"] == expected
    assert fill_cells(demo) == 0  # written once
    low = _features(_render(demo, "heat_buildings", 10, *tile_of(lon, lat, 10)), "heat_buildings")
    assert {f["properties"]["res"] for f in low} == {7}


def test_places_and_components_layers(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    demo.execute(text(
        "INSERT INTO key_place (name, category, risk_level, geom) VALUES "
        "('测试网吧', 'internet_cafe', 'high', ST_SetSRID(ST_Point(:x, :y), 4490))"),
        {"x": lon, "y": lat})
    demo.execute(text(
        "INSERT INTO city_component (code, category, status, geom) VALUES "
        "('TT-MH1', 'manhole', 'damaged', ST_SetSRID(ST_Point(:x, :y), 4490))"),
        {"x": lon, "y": lat})
    places = _features(_render(demo, "key_places", 16, *tile_of(lon, lat, 16),
                               {"risk_level": ["high"]}), "key_places")
    assert any(f["properties"] == {"name": "测试网吧", "category": "internet_cafe",
                                   "risk_level": "high"} for f in places)
    assert all(f["properties"]["risk_level"] == "high" for f in places)
    parts = _features(_render(demo, "city_components", 16, *tile_of(lon, lat, 16),
                              {"status": ["damaged"]}), "city_components")
    assert any(f["properties"]["code"] == "TT-MH1" and f["geometry"]["type"] == "Point"
               for f in parts)


def _versions(session, tbl: str) -> dict[tuple[int, int], int]:
    rows = session.execute(text("SELECT x, y, version FROM tiles.tile_version WHERE tbl = :t"),
                           {"t": tbl}).all()
    return {(r.x, r.y): r.version for r in rows}


def test_writes_bump_the_versions_of_the_z10_tiles_they_touch(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    before = _versions(demo, "building")
    bid = _add_building(demo, "TT-V", lon, lat)
    pending = demo.execute(text("SELECT x, y FROM tiles.pending WHERE tbl = 'building' "
                                "AND xid = pg_current_xact_id()")).all()
    home = tile_of(lon, lat, 10)
    assert home in {(r.x, r.y) for r in pending}
    assert _versions(demo, "building") == before  # bumped at commit, not before
    # The bump is deferred to commit; SET CONSTRAINTS fires it now, as commit would.
    demo.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    after = _versions(demo, "building")
    assert after[home] == before.get(home, 0) + 1
    assert demo.execute(text("SELECT count(*) FROM tiles.pending")).scalar() == 0
    # Far-away z10 tiles are untouched: a write invalidates only the tiles near it.
    changed = {k for k in after if after[k] != before.get(k)}
    assert all(abs(x - home[0]) <= 1 and abs(y - home[1]) <= 1 for x, y in changed)
    demo.execute(text("UPDATE building SET name = '改名' WHERE id = :i"), {"i": bid})
    assert _versions(demo, "building")[home] == after[home] + 1
    demo.execute(text("DELETE FROM building WHERE id = :i"), {"i": bid})
    assert _versions(demo, "building")[home] == after[home] + 2


def test_a_row_near_a_z10_edge_bumps_both_sides(demo) -> None:
    set_scope(demo, SYSTEM_SCOPE)
    _, lon, lat = _grid_point(demo, WUMA)
    x10, _ = tile_of(lon, lat, 10)
    edge_lon = x10 / 1024 * 360 - 180  # the western edge of the z10 tile
    demo.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    before = _versions(demo, "building")
    demo.execute(text(
        "INSERT INTO building (code, category, geom, path) VALUES ('TT-E', 'other', "
        "ST_Multi(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4490)), :p)"),
        {"x0": edge_lon + 0.001, "y0": lat, "x1": edge_lon + 0.0012, "y1": lat + 0.0002,
         "p": LUCHENG})
    after = _versions(demo, "building")
    changed = {k for k in after if after[k] != before.get(k)}
    assert {(x10, tile_of(lon, lat, 10)[1]), (x10 - 1, tile_of(lon, lat, 10)[1])} <= changed


def test_seed_fills_a_disk_cache_another_service_reads(pg, demo_db, tmp_path) -> None:
    from geoserver.database.bootstrap import APP_ROLE
    from tiles.service import TileService
    from tiles.settings import TileSettings

    settings = TileSettings(memory_mb=16, render_connections=2)
    seeder = TileService(pg.url(APP_ROLE, demo_db), settings, disk_dir=tmp_path)
    seeder.start()
    try:
        bounds = seeder.bounds(SYSTEM_SCOPE)
        assert bounds is not None
        regions = REGISTRY.get("regions")
        done = seeder.seed([regions], range(11, 13), bounds, workers=2)
        assert done.rendered > 0 and done.rendered == len(list(tmp_path.rglob("*.mvt.gz")))
        again = seeder.seed([regions], range(11, 13), bounds, workers=2)
        assert again.rendered == 0 and again.skipped == done.rendered
    finally:
        seeder.stop()
    server = TileService(pg.url(APP_ROLE, demo_db), settings, disk_dir=tmp_path)
    server.start()
    try:
        x, y = tile_of((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 12)
        key = server.key(regions, 12, x, y, "{}", SYSTEM_SCOPE)
        hit = server.lookup(regions, key)  # from disk: this process rendered nothing
        assert hit is not None and server.memory.get(key) == hit
        raw = server.render(regions, 12, x, y, "{}", SYSTEM_SCOPE)
        assert mapbox_vector_tile.decode(raw) == mapbox_vector_tile.decode(
            gzip.decompress(hit.gzipped))
        # Another scope is another tile: never served from the seeded slot.
        other = server.key(regions, 12, x, y, "{}", [f"{LUCHENG}.{WUMA}"])
        assert server.lookup(regions, other) is None
    finally:
        server.stop()


def test_tiles_seed_command(pg, demo_db, tmp_path) -> None:
    from typer.testing import CliRunner

    from geoserver.database.bootstrap import APP_ROLE, OWNER_ROLE
    from tiles.cli import app

    env = {"GRIDGOV_DATABASE_URL": pg.url(OWNER_ROLE, demo_db),
           "GRIDGOV_APP_DATABASE_URL": pg.url(APP_ROLE, demo_db)}
    runner = CliRunner()
    ok = runner.invoke(app, ["seed", "--layer", "regions", "--min-zoom", "11", "--max-zoom", "11",
                             "--dir", str(tmp_path), "--scope", WUMA], env=env)
    assert ok.exit_code == 0, ok.output
    assert "rendered" in ok.output and list(tmp_path.rglob("*.mvt.gz"))
    refused = runner.invoke(app, ["seed", "--layer", "heat_buildings", "--dir", str(tmp_path)],
                            env=env)
    assert refused.exit_code == 1 and "not a public tile layer" in refused.output
    unknown = runner.invoke(app, ["seed", "--scope", "999999", "--dir", str(tmp_path)], env=env)
    assert unknown.exit_code == 1 and "999999" in unknown.output
