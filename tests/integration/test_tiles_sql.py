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


# --- events --------------------------------------------------------------------------------------

WUMA_PATH = f"{LUCHENG}.{WUMA}"
OPEN = {"state": ["accepted", "dispatched", "handled", "reported", "return_requested",
                  "returned", "signed", "verified"]}


def _add_event(session, code: str, lon: float, lat: float, *, state: str = "reported",
               type_code: str = "0301", amber: str | None = None, deadline: str | None = None,
               reported: str = "now()", source: str = "patrol", severity: str = "normal") -> int:
    """Insert an event; amber/deadline/reported are SQL expressions (now() is the transaction's)."""
    return session.execute(text(
        "INSERT INTO event (code, event_type_id, source, severity, state, title, description, "
        "geom, h3_r7, h3_r8, h3_r9, amber_at, deadline_at, reported_at) VALUES (:code, "
        "(SELECT id FROM event_type WHERE code = :t), :src, :sev, :st, '测试事件', '测试', "
        "ST_SetSRID(ST_Point(:x, :y), 4490), :r7, :r8, :r9, "
        f"{amber or 'NULL'}, {deadline or 'NULL'}, {reported}) RETURNING id"),
        {"code": code, "t": type_code, "src": source, "sev": severity, "st": state, "x": lon,
         "y": lat, "r7": cell_int(lon, lat, 7), "r8": cell_int(lon, lat, 8),
         "r9": cell_int(lon, lat, 9)}).scalar_one()


def _add_type(session, code: str, parent: str | None = None) -> None:
    session.execute(text(
        "INSERT INTO event_type (code, name, parent_id) VALUES (:c, :n, "
        "(SELECT id FROM event_type WHERE code = :p))"), {"c": code, "n": f"类型{code}",
                                                          "p": parent})


def _expiring(session, z: int, x: int, y: int, query: dict) -> tuple[dict, float | None]:
    q = REGISTRY.get("events").sql_query(json.dumps(query))
    row = session.execute(text("SELECT mvt, valid_for FROM tiles.events_expiring(:z, :x, :y, "
                               "CAST(:q AS json))"), {"z": z, "x": x, "y": y, "q": q}).one()
    return (mapbox_vector_tile.decode(bytes(row.mvt)) if row.mvt else {}), row.valid_for


def _by_code(tile: dict, layer: str = "events") -> dict[str, dict]:
    return {f["properties"]["code"]: f for f in _features(tile, layer)}


def test_events_points_carry_state_sla_type_source_and_their_id(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    green = _add_event(demo, "TT-EV-G", lon, lat, amber="now() + interval '1 hour'",
                       deadline="now() + interval '2 hours'", severity="urgent")
    _add_event(demo, "TT-EV-A", lon + 0.0001, lat, amber="now() - interval '1 hour'",
               deadline="now() + interval '1 hour'", state="dispatched", source="hotline_12345")
    _add_event(demo, "TT-EV-R", lon, lat + 0.0001, amber="now() - interval '2 hours'",
               deadline="now() - interval '1 hour'", state="signed")
    _add_event(demo, "TT-EV-C", lon + 0.0001, lat + 0.0001, state="closed")
    xy = tile_of(lon, lat, 16)
    tile = _render(demo, "events", 16, *xy, OPEN)
    assert set(tile) == {"events"}
    feats = _by_code(tile)
    assert {feats[c]["properties"]["sla"] for c in ("TT-EV-G", "TT-EV-A", "TT-EV-R")} == {
        "green", "amber", "red"}
    assert feats["TT-EV-G"]["properties"]["sla"] == "green"
    assert feats["TT-EV-A"]["properties"]["state"] == "dispatched"
    assert "TT-EV-C" not in feats  # open events only
    props = feats["TT-EV-G"]["properties"]
    assert set(props) == {"code", "type", "type_name", "state", "source", "severity", "sla",
                          "reported_at"}
    assert (props["type"], props["type_name"], props["source"], props["severity"]) == (
        "0301", demo.execute(text("SELECT name FROM event_type WHERE code = '0301'")).scalar(),
        "patrol", "urgent")
    assert feats["TT-EV-G"]["id"] == green and feats["TT-EV-G"]["geometry"]["type"] == "Point"
    closed = _by_code(_render(demo, "events", 16, *xy, {"state": ["closed"]}))
    assert "sla" not in closed["TT-EV-C"]["properties"]  # no clock runs
    assert {f["properties"]["state"] for f in closed.values()} == {"closed"}


def test_event_tiles_expire_at_the_next_colour_change_among_their_events(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    _add_type(demo, "TTX")
    _add_event(demo, "TT-X1", lon, lat, type_code="TTX", amber="now() + interval '1 hour'",
               deadline="now() + interval '2 hours'")
    _add_event(demo, "TT-X2", lon + 0.0001, lat, type_code="TTX",
               amber="now() - interval '1 hour'", deadline="now() + interval '30 minutes'")
    only = {"type": ["TTX"], **OPEN}
    for z in (16, 12):  # points and clusters alike
        _, valid_for = _expiring(demo, z, *tile_of(lon, lat, z), only)
        assert valid_for == pytest.approx(1800)  # X2 turns red first
    # Filtered out by colour now, but X1 turns red later and X2 in 30 minutes: they join then.
    tile, valid_for = _expiring(demo, 16, *tile_of(lon, lat, 16), {**only, "sla": ["red"]})
    assert tile == {} and valid_for == pytest.approx(1800)
    # Red or finished events change no more by time alone: kept until the next write.
    demo.execute(text("UPDATE event SET deadline_at = now() - interval '1 minute' "
                      "WHERE code IN ('TT-X1', 'TT-X2')"))
    assert _expiring(demo, 16, *tile_of(lon, lat, 16), only)[1] is None


def test_events_cluster_below_z14_without_counting_an_event_twice(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    for i in range(3):
        _add_event(demo, f"TT-CL{i}", lon + i * 0.0001, lat, amber="now() + interval '1 hour'",
                   deadline="now() + interval '2 hours'")
    z, (x, y) = 12, tile_of(lon, lat, 12)
    tile = _render(demo, "events", z, x, y, OPEN)
    assert set(tile) == {"event_clusters"}
    clusters = _features(tile, "event_clusters")
    assert 0 < len(clusters) <= 64
    expected = demo.execute(text(
        "SELECT count(*) FROM event e, ST_TileEnvelope(:z, :x, :y) t WHERE e.state = ANY(:s) "
        "AND ST_X(e.geom_3857) >= ST_XMin(t) AND ST_X(e.geom_3857) < ST_XMax(t) "
        "AND ST_Y(e.geom_3857) > ST_YMin(t) AND ST_Y(e.geom_3857) <= ST_YMax(t)"),
        {"z": z, "x": x, "y": y, "s": OPEN["state"]}).scalar()
    assert sum(c["properties"]["count"] for c in clusters) == expected >= 3
    for c in clusters:
        p = c["properties"]
        assert p["red"] + p["amber"] + p["green"] <= p["count"]
        assert set(p) <= {"count", "red", "amber", "green", "sla"}
    assert any(c["properties"]["green"] >= 3 for c in clusters)
    # The four children share out the parent's events: none counted twice, none lost.
    children = [_features(_render(demo, "events", z + 1, 2 * x + i, 2 * y + j, OPEN),
                          "event_clusters") for i in (0, 1) for j in (0, 1)]
    assert sum(c["properties"]["count"] for cs in children for c in cs) == expected


def test_event_tiles_apply_the_callers_scope(demo) -> None:
    _, lon_a, lat_a = _grid_point(demo, WUMA)
    _, lon_b, lat_b = _grid_point(demo, OTHER)
    _add_event(demo, "TT-SC-A", lon_a, lat_a)
    _add_event(demo, "TT-SC-B", lon_b, lat_b)
    set_scope(demo, [WUMA_PATH])
    assert "TT-SC-A" in _by_code(_render(demo, "events", 16, *tile_of(lon_a, lat_a, 16), OPEN))
    assert "TT-SC-B" not in _by_code(_render(demo, "events", 16, *tile_of(lon_b, lat_b, 16),
                                             OPEN))
    z, (x, y) = 10, tile_of(lon_a, lat_a, 10)
    counted = sum(c["properties"]["count"] for c in _features(
        _render(demo, "events", z, x, y, OPEN), "event_clusters"))
    assert counted == demo.execute(text(
        "SELECT count(*) FROM event WHERE state = ANY(:s) AND path <@ CAST(:p AS ltree) "
        "AND geom_3857 && ST_TileEnvelope(:z, :x, :y)"),
        {"s": OPEN["state"], "p": WUMA_PATH, "z": z, "x": x, "y": y}).scalar()
    cell = cell_int(lon_b, lat_b, 9)

    def heat_count() -> int:
        heat = _features(_render(demo, "heat_events", 13, *tile_of(lon_b, lat_b, 13)),
                         "heat_events")
        return sum(f["properties"]["count"] for f in heat if f["id"] == cell)

    mine = heat_count()
    set_scope(demo, SYSTEM_SCOPE)
    assert "TT-SC-B" in _by_code(_render(demo, "events", 16, *tile_of(lon_b, lat_b, 16), OPEN))
    assert heat_count() == mine + demo.execute(text(
        "SELECT count(*) FROM event WHERE h3_r9 = :c AND state <> 'merged' "
        "AND NOT path <@ CAST(:p AS ltree)"), {"c": cell, "p": WUMA_PATH}).scalar() > mine


def test_event_filters_type_with_subtypes_state_source_severity_and_time(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    _add_type(demo, "TTP")
    _add_type(demo, "TTP01", parent="TTP")
    _add_event(demo, "TT-F1", lon, lat, type_code="TTP01", source="police_110",
               reported="'2026-03-01T10:00:00+08:00'")
    _add_event(demo, "TT-F2", lon + 0.0001, lat, type_code="TTP", state="accepted",
               severity="major", reported="'2026-03-05T10:00:00+08:00'")
    xy = tile_of(lon, lat, 16)

    def codes(**query: object) -> set[str]:
        return {c for c in _by_code(_render(demo, "events", 16, *xy, {**OPEN, **query}))
                if c.startswith("TT-F")}

    assert codes(type=["TTP"]) == {"TT-F1", "TT-F2"}  # a type takes its sub-types
    assert codes(type=["TTP01"]) == {"TT-F1"}
    assert codes(type=["0101"]) == set()
    assert codes(state=["accepted"]) == {"TT-F2"}
    assert codes(source=["police_110"]) == {"TT-F1"}
    assert codes(severity=["major"]) == {"TT-F2"}
    assert codes(time_from="2026-03-04T00:00:00+08:00", time_to=None) == {"TT-F2"}
    assert codes(time_from=None, time_to="2026-03-01T10:00:00+08:00") == {"TT-F1"}
    heat = _features(_render(demo, "heat_events", 13, *tile_of(lon, lat, 13),
                             {"type": ["TTP"]}), "heat_events")
    assert sum(f["properties"]["count"] for f in heat) == 2


def test_event_writes_bump_the_event_tiles_they_touch(demo) -> None:
    _, lon, lat = _grid_point(demo, WUMA)
    demo.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    before = _versions(demo, "event")
    eid = _add_event(demo, "TT-EVV", lon, lat)
    home = tile_of(lon, lat, 10)
    after = _versions(demo, "event")
    assert after[home] == before.get(home, 0) + 1
    changed = {k for k in after if after[k] != before.get(k)}
    assert all(abs(x - home[0]) <= 1 and abs(y - home[1]) <= 1 for x, y in changed)
    demo.execute(text("UPDATE event SET state = 'accepted' WHERE id = :i"), {"i": eid})
    assert _versions(demo, "event")[home] == after[home] + 1
    # Renaming an event type changes every event tile: the layer's epoch.
    epoch = after.get((-1, -1), 0)
    demo.execute(text("UPDATE event_type SET name = name || '*' WHERE code = '0301'"))
    assert _versions(demo, "event")[(-1, -1)] == epoch + 1


# --- patrols -------------------------------------------------------------------------------------


def _demo_session(session) -> object:
    return session.execute(text(
        "SELECT s.id, s.user_id, s.grid_code, s.path::text AS path, "
        "(s.started_at AT TIME ZONE 'Asia/Shanghai')::date AS day, "
        "ST_X(ST_StartPoint(s.track)) AS lon, ST_Y(ST_StartPoint(s.track)) AS lat "
        "FROM patrol_session s WHERE s.deleted_at IS NULL AND s.grid_code LIKE :t || '%' "
        "ORDER BY s.id LIMIT 1"), {"t": WUMA}).one()


def test_patrol_tracks_of_a_day_worker_and_grid(demo) -> None:
    s = _demo_session(demo)
    xy = tile_of(s.lon, s.lat, 15)
    day = s.day.isoformat()

    def ids(**query: object) -> set[int]:
        return {f["id"] for f in _features(_render(demo, "patrol_tracks", 15, *xy, query),
                                           "patrol_tracks")}

    feats = {f["id"]: f for f in _features(
        _render(demo, "patrol_tracks", 15, *xy, {"date": day}), "patrol_tracks")}
    assert s.id in feats and feats[s.id]["geometry"]["type"] in ("LineString", "MultiLineString")
    props = feats[s.id]["properties"]
    assert props["worker"] == s.user_id and props["grid"] == s.grid_code
    assert set(props) == {"worker", "grid", "state", "mode", "started_at", "ended_at",
                          "mileage_m"}
    assert ids() == set()  # no day, no tracks
    assert s.id not in ids(date="2020-01-01")
    assert ids(date=day, worker=[str(s.user_id)]) >= {s.id}
    assert s.id not in ids(date=day, worker=["999999999"])
    assert s.id in ids(date=day, grid=[s.grid_code]) and s.id not in ids(date=day,
                                                                          grid=["330302999"])
    set_scope(demo, [f"{LUCHENG}.{OTHER}"])
    assert s.id not in ids(date=day)
    set_scope(demo, SYSTEM_SCOPE)


def test_patrol_tracks_are_simplified_by_zoom(demo) -> None:
    s = _demo_session(demo)
    day = s.day.isoformat()

    def vertices(z: int) -> int:
        f = next(f for f in _features(_render(demo, "patrol_tracks", z, *tile_of(s.lon, s.lat, z),
                                              {"date": day}), "patrol_tracks") if f["id"] == s.id)
        coords = f["geometry"]["coordinates"]
        return len(coords) if f["geometry"]["type"] == "LineString" else sum(map(len, coords))

    assert vertices(11) < vertices(18)


def test_patrol_cells_count_kept_fixes_per_h3_cell_and_follow_the_session(demo) -> None:
    import h3.api.basic_int as h3

    s = _demo_session(demo)
    cells = demo.execute(text("SELECT h3_r9, h3_r8, h3_r7, points FROM tiles.patrol_cell "
                              "WHERE session_id = :i"), {"i": s.id}).all()
    kept = demo.execute(text(
        "SELECT count(*) FROM gps_point p JOIN patrol_session s ON s.user_id = p.user_id "
        "AND p.ts BETWEEN s.started_at AND s.ended_at WHERE s.id = :i "
        "AND p.dropped_reason IS NULL AND p.event <> 3 AND p.h3_r10 IS NOT NULL"),
        {"i": s.id}).scalar()
    assert cells and sum(c.points for c in cells) == kept
    for c in cells:  # parents by bit arithmetic in SQL, as the h3 library has them
        assert h3.get_resolution(c.h3_r9) == 9
        assert (c.h3_r8, c.h3_r7) == (h3.cell_to_parent(c.h3_r9, 8), h3.cell_to_parent(c.h3_r9, 7))
    z = 13
    xy = tile_of(s.lon, s.lat, z)
    heat = _features(_render(demo, "heat_patrols", z, *xy), "heat_patrols")
    assert heat and all(f["properties"]["res"] == 9 and f["properties"]["workers"] >= 1
                        for f in heat)
    # Closing a session leaves its cells; deleting it (soft) takes them away.
    demo.execute(text("UPDATE patrol_session SET state = 'closed' WHERE id = :i"), {"i": s.id})
    assert demo.execute(text("SELECT count(*) FROM tiles.patrol_cell WHERE session_id = :i"),
                        {"i": s.id}).scalar() == len(cells)
    demo.execute(text("UPDATE patrol_session SET deleted_at = now(), version = version + 1 "
                      "WHERE id = :i"), {"i": s.id})
    assert demo.execute(text("SELECT count(*) FROM tiles.patrol_cell WHERE session_id = :i"),
                        {"i": s.id}).scalar() == 0


def test_session_writes_bump_track_tiles(demo) -> None:
    s = _demo_session(demo)
    demo.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    before = _versions(demo, "patrol_session")
    demo.execute(text("UPDATE patrol_session SET deleted_at = now(), version = version + 1 "
                      "WHERE id = :i"), {"i": s.id})
    home = tile_of(s.lon, s.lat, 10)
    assert _versions(demo, "patrol_session")[home] == before.get(home, 0) + 1
    assert _versions(demo, "patrol_cell")[home] >= 1


def test_heat_cells_of_events_and_patrols_get_their_outlines(demo) -> None:
    s = _demo_session(demo)
    _, lon, lat = _grid_point(demo, WUMA)
    _add_event(demo, "TT-HC", lon, lat)
    demo.execute(text("DELETE FROM tiles.h3_cell"))
    assert fill_cells(demo) > 0
    for layer, (x, y) in (("heat_events", tile_of(lon, lat, 13)),
                          ("heat_patrols", tile_of(s.lon, s.lat, 13))):
        feats = _features(_render(demo, layer, 13, x, y), layer)
        assert feats and {f["geometry"]["type"] for f in feats} == {"Polygon"}, layer
    assert fill_cells(demo) == 0
