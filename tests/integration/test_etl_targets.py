"""etl import through the per-row services: regions/grids, addresses, enterprises, persons,
historic events and GPX tracks (against the tiny demo city)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pyogrio
import pytest
import shapely
from sqlalchemy.orm import Session
from stdnum.cn import ric, uscc

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.engine import SYSTEM_SCOPE, set_scope
from geoserver.domain.principal import SYSTEM
from geoserver.geo.crs import from_metric, to_metric
from tests.support.places import point_in

GRID = "330302006109001"


@pytest.fixture(scope="module")
def centre(etl) -> shapely.Point:
    """The point on surface of GRID, in metres (EPSG:4549)."""
    wkb = etl.scalar("SELECT ST_AsBinary(ST_PointOnSurface(geom)) FROM region "
                     "WHERE code = :c AND valid_to IS NULL", c=GRID)
    return to_metric(shapely.from_wkb(bytes(wkb)))


def square(centre: shapely.Point, dx: float, dy: float, size: float) -> shapely.Polygon:
    """A square of ``size`` metres whose corner is ``dx, dy`` metres from the centre."""
    x, y = centre.x + dx, centre.y + dy
    return from_metric(shapely.box(x, y, x + size, y + size))


def micro_grids(path, rows) -> None:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(geom), "properties": {
            "code": code, "name": name, "level": "micro_grid", "parent_code": GRID,
            "grid_type": "general"}} for code, name, geom in rows]}, ensure_ascii=False),
        encoding="utf-8")


def test_regions_create_update_and_overlap(etl, centre, tmp_path) -> None:
    path = tmp_path / "micro.geojson"
    micro_grids(path, [(f"{GRID}01", "微网格一", square(centre, -20, -20, 40))])
    r = etl("import", path, "--target", "regions")
    assert r.exit_code == 0, r.output
    assert etl.scalar("SELECT path::text FROM region WHERE code = :c AND valid_to IS NULL",
                      c=f"{GRID}01").endswith(f"{GRID}.{GRID}01")
    micro_grids(path, [(f"{GRID}01", "微网格一号", square(centre, -20, -20, 40))])
    r = etl("import", path, "--target", "regions")
    assert r.exit_code == 0 and "updated" in r.output, r.output
    assert etl.scalar("SELECT name FROM region WHERE code = :c AND valid_to IS NULL",
                      c=f"{GRID}01") == "微网格一号"
    # A sibling covering half of it: the database's overlap check names the other micro grid.
    micro_grids(path, [(f"{GRID}02", "微网格二", square(centre, 0, -20, 40))])
    r = etl("import", path, "--target", "regions")
    assert r.exit_code == 1
    assert f"micro.geojson row 1, column geometry: {GRID}02" in r.output
    assert f"overlaps {GRID}01" in r.output
    assert etl.scalar("SELECT count(*) FROM region WHERE code = :c", c=f"{GRID}02") == 0


def test_sliver_tolerance_is_an_option(etl, centre, tmp_path) -> None:
    path = tmp_path / "sliver.geojson"
    # 1 m × 40 m = 40 m² over micro grid 01 (made above): a sliver by the default tolerance.
    micro_grids(path, [(f"{GRID}03", "微网格三", square(centre, 19, -20, 40))])
    r = etl("import", path, "--target", "regions", "--sliver-m2", "1", "--sliver-share", "0")
    assert r.exit_code == 1, r.output
    r = etl("import", path, "--target", "regions")
    assert r.exit_code == 0, r.output


def test_exported_grids_come_back_unchanged_but_never_masked(etl, tmp_path) -> None:
    village = GRID[:12]
    out = tmp_path / "grids.gpkg"
    r = etl("export", "--layer", "grids", "--format", "gpkg", "--out", out, "--region", village)
    assert r.exit_code == 0, r.output
    exported = pyogrio.read_dataframe(out)
    # The village's grids only (micro grids made above hang off GRID).
    exported = exported[exported["parent_code"] == village]
    pyogrio.write_dataframe(exported, out)
    assert exported["leader_phone"].str.contains("*", regex=False).any()
    before = dict(etl.rows("SELECT code, version FROM region WHERE valid_to IS NULL "
                           "AND parent_code = :v AND level = 'grid'", v=village))
    phones = dict(etl.rows("SELECT code, leader_phone FROM region WHERE valid_to IS NULL "
                           "AND parent_code = :v AND level = 'grid'", v=village))
    ignore = tmp_path / "ignore.yaml"
    ignore.write_text("unmapped: ignore\n", encoding="utf-8")
    # Written back as is, the masked phones (138****5678) would replace the real numbers.
    r = etl("import", out, "--target", "grids", "--mapping", ignore)
    assert r.exit_code == 1
    assert "column leader_phone" in r.output and "is masked" in r.output
    drop = tmp_path / "drop.yaml"
    drop.write_text("columns:\n  leader_phone: null\nunmapped: ignore\n", encoding="utf-8")
    # Through EPSG:4549 and back, the outlines differ by float noise only: no new versions.
    metric = tmp_path / "grids4549.gpkg"
    pyogrio.write_dataframe(exported.to_crs("EPSG:4549"), metric)
    r = etl("import", metric, "--target", "grids", "--mapping", drop)
    assert r.exit_code == 0, r.output
    assert re.search(rf"unchanged\s*│\s*{len(before)}\s*│", r.output), r.output
    assert dict(etl.rows("SELECT code, version FROM region WHERE valid_to IS NULL "
                         "AND parent_code = :v AND level = 'grid'", v=village)) == before
    assert dict(etl.rows("SELECT code, leader_phone FROM region WHERE valid_to IS NULL "
                         "AND parent_code = :v AND level = 'grid'", v=village)) == phones


def test_addresses_are_written_parents_first(etl, tmp_path) -> None:
    door = etl.rows("SELECT township_code, village_code, road, ST_X(geom), ST_Y(geom) "
                    "FROM standard_address WHERE level = 'door' ORDER BY code LIMIT 1")[0]
    township, village, road, x, y = door
    path = tmp_path / "addr.csv"
    path.write_text(
        "code,level,parent_code,township_code,village_code,road,door_number,building,lon,lat\n"
        f"ETLD1-1,building,ETLD1,,,,,1,{x},{y}\n"
        f"ETLD1,door,,{township},{village},{road},999,,{x},{y}\n", encoding="utf-8")
    r = etl("import", path, "--target", "addresses", "--crs", "CGCS2000")
    assert r.exit_code == 0, r.output
    texts = dict(etl.rows("SELECT code, full_text FROM standard_address "
                          "WHERE code IN ('ETLD1', 'ETLD1-1')"))
    assert texts["ETLD1"].endswith(f"{road}999号")
    assert texts["ETLD1-1"] == texts["ETLD1"] + "1幢"


def test_enterprises_by_uscc(etl, tmp_path) -> None:
    body = "91330302MA2C8X7Y1"
    code = next(body + c for c in "0123456789ABCDEFGHJKLMNPQRTUWXY" if uscc.is_valid(body + c))
    path = tmp_path / "ent.csv"
    path.write_text(f"name,uscc,industry,staff_count,region_code\n温州测试有限公司,{code},制造业,"
                    f"12,{GRID}\n", encoding="utf-8")
    assert etl("import", path, "--target", "enterprises").exit_code == 0
    path.write_text(f"name,uscc,industry,staff_count,region_code\n温州测试有限公司,{code},制造业,"
                    f"30,{GRID}\n", encoding="utf-8")
    r = etl("import", path, "--target", "enterprises")
    assert r.exit_code == 0, r.output
    assert etl.rows("SELECT staff_count, version FROM enterprise WHERE uscc = :u", u=code) \
        == [(30, 2)]
    bad = tmp_path / "badent.csv"
    bad.write_text(f"name,uscc\n坏公司,{body}X\n", encoding="utf-8")
    r = etl("import", bad, "--target", "enterprises")
    assert r.exit_code == 1 and "badent.csv row 1, column uscc" in r.output


def test_persons_are_encrypted_and_upserted_by_document(etl, tmp_path) -> None:
    body = "33030219900101123"
    number = next(body + c for c in "0123456789X" if ric.is_valid(body + c))
    path = tmp_path / "people.csv"
    path.write_text("name,document_type,document_number,phone,region_code,tags\n"
                    f"张三,resident_id,{number},13812345678,{GRID},党员;退役军人\n",
                    encoding="utf-8")
    assert etl("import", path, "--target", "persons").exit_code == 0
    r = etl("import", path, "--target", "persons")
    assert r.exit_code == 0, r.output
    rows = etl.rows("SELECT document_number_masked, document_number_enc IS NOT NULL, tags, "
                    "version, birth_date::text FROM person WHERE name = '张三' "
                    "AND path::text LIKE :p", p=f"%{GRID}")
    assert len(rows) == 1
    masked, encrypted, tags, version, birth = rows[0]
    assert number not in masked and encrypted and tags == ["党员", "退役军人"]
    assert version == 2 and birth == "1990-01-01"


@pytest.fixture(scope="module")
def event_type(etl) -> str:
    from geoserver.services import event_types

    with Session(etl.owner) as s, s.begin():
        set_scope(s, SYSTEM_SCOPE)
        event_types.create_type(s, actor=SYSTEM, data=event_types.EventTypeCreate(
            code="ETLT", name="ETL测试事件"))
    return "ETLT"


def test_historic_events_keep_their_time_once(etl, event_type, tmp_path) -> None:
    x, y = point_in(etl.owner, GRID)
    path = tmp_path / "events.csv"
    path.write_text("type_code,description,source,external_ref,reported_at,lon,lat\n"
                    f"{event_type},路灯不亮,hotline_12345,H-2026-1,2026-03-01 08:30,{x},{y}\n",
                    encoding="utf-8")
    r = etl("import", path, "--target", "events", "--crs", "WGS84")
    assert r.exit_code == 0, r.output
    assert etl("import", path, "--target", "events", "--crs", "WGS84").exit_code == 0
    rows = etl.rows("SELECT reported_at, grid_code FROM event WHERE external_ref = 'H-2026-1'")
    assert len(rows) == 1
    assert rows[0][0] == datetime(2026, 3, 1, 8, 30, tzinfo=GOVERNANCE_TZ)
    # Routed to a grid holding the point (a dedicated grid 专属网格 may take it).
    assert rows[0][1] in {c for (c,) in etl.rows(
        "SELECT code FROM region WHERE level = 'grid' AND valid_to IS NULL "
        "AND ST_Intersects(geom, ST_SetSRID(ST_Point(:x, :y), 4490))", x=x, y=y)}


def _gpx(lon: float, lat: float, start: float, n: int = 30) -> bytes:
    pts = "".join(
        f'<trkpt lat="{lat + i * 2e-5:.8f}" lon="{lon:.8f}"><time>'
        f"{datetime.fromtimestamp(start + i * 10, GOVERNANCE_TZ).isoformat()}</time></trkpt>"
        for i in range(n))
    return ('<?xml version="1.0"?><gpx version="1.1" creator="t" '
            'xmlns="http://www.topografix.com/GPX/1/1">'
            f"<trk><trkseg>{pts}</trkseg></trk></gpx>").encode()


def test_gpx_folder_of_tracks(etl, tmp_path) -> None:
    x, y = point_in(etl.owner, GRID)
    folder = tmp_path / "tracks"
    folder.mkdir()
    worker = f"w{GRID}"
    (folder / f"{worker}_1.gpx").write_bytes(_gpx(x, y, time.time() - 3600))
    uid = etl.scalar("SELECT id FROM app_user WHERE username = :u", u=worker)
    before = etl.scalar("SELECT count(*) FROM gps_point WHERE user_id = :u", u=uid)
    r = etl("import", folder, "--target", "tracks")
    assert r.exit_code == 0, r.output
    assert etl.scalar("SELECT count(*) FROM gps_point WHERE user_id = :u", u=uid) == before + 30
    r = etl("import", folder, "--target", "tracks")
    assert r.exit_code == 0 and "unchanged" in r.output
    (folder / "nobody_2.gpx").write_bytes(_gpx(x, y, time.time() - 1800))
    r = etl("import", folder, "--target", "tracks")
    assert r.exit_code == 1 and "nobody" in r.output
