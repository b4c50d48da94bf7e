"""etl import: formats, encodings, CRSs, mapping, bad input (against the tiny demo city)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
import shapely

from geoserver.geo.crs import gcj02_to_wgs84, wgs84_to_gcj02
from geoserver.geo.measure import haversine_m
from tests.support.places import point_in

GRID = "330302006109001"  # a grid of 五马街道 in the tiny city


@pytest.fixture(scope="module")
def spot(etl) -> tuple[float, float]:
    """A point well inside GRID (CGCS2000 lon/lat)."""
    return point_in(etl.owner, GRID)


def boxes(spot: tuple[float, float], n: int, size: float = 0.00004) -> list[shapely.Polygon]:
    x, y = spot
    return [shapely.box(x + i * 2 * size, y, x + i * 2 * size + size, y + size) for i in range(n)]


def frame(codes: list[str], geoms: list, **cols) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"code": codes, **cols}, geometry=geoms, crs="EPSG:4490")


def test_gbk_shapefile_with_cpg(etl, spot, tmp_path) -> None:
    path = tmp_path / "gbk.shp"
    pyogrio.write_dataframe(frame(["SHPA1", "SHPA2"], boxes(spot, 2),
                                  name=["鹿城区大楼", "五马街道一号"]), path, encoding="GBK")
    assert path.with_suffix(".cpg").read_text() == "GBK"
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 0, r.output
    names = dict(etl.rows("SELECT code, name FROM building WHERE code LIKE 'SHPA%'"))
    assert names == {"SHPA1": "鹿城区大楼", "SHPA2": "五马街道一号"}
    assert "read as GBK" not in r.output
    path_of = etl.scalar("SELECT path::text FROM building WHERE code = 'SHPA1'")
    assert path_of.endswith(GRID)


def test_gbk_shapefile_without_cpg_is_detected_and_said(etl, spot, tmp_path) -> None:
    path = tmp_path / "nocpg.shp"
    pyogrio.write_dataframe(frame(["SHPB1"], boxes(spot, 1), name=["松台街道楼"]), path,
                            encoding="GBK")
    path.with_suffix(".cpg").unlink()
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 0, r.output
    assert "no .cpg" in r.output and "read as GBK" in r.output
    assert etl.scalar("SELECT name FROM building WHERE code = 'SHPB1'") == "松台街道楼"


def _latin_shapefile(tmp_path: Path, spot, bad: bytes, cpg: str | None) -> Path:
    path = tmp_path / "bad.shp"
    pyogrio.write_dataframe(frame(["SHPC1", "SHPC2"], boxes(spot, 2), name=["ok", "XXXX"]),
                            path, encoding="UTF-8")
    dbf = path.with_suffix(".dbf")
    dbf.write_bytes(dbf.read_bytes().replace(b"XXXX", bad))
    if cpg is None:
        path.with_suffix(".cpg").unlink()
    else:
        path.with_suffix(".cpg").write_text(cpg)
    return path


def test_text_neither_utf8_nor_gbk_names_row_and_column(etl, spot, tmp_path) -> None:
    path = _latin_shapefile(tmp_path, spot, b"\xff\xfe\xff\xfe", None)
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 1
    assert "bad.dbf row 2, column name" in r.output and "neither UTF-8 nor GBK" in r.output
    assert etl.scalar("SELECT count(*) FROM building WHERE code LIKE 'SHPC%'") == 0


def test_cpg_that_lies_is_refused(etl, spot, tmp_path) -> None:
    path = _latin_shapefile(tmp_path, spot, "鹿城".encode("gbk"), "UTF-8")
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 1
    assert "row 2, column name" in r.output and "not valid UTF-8" in r.output


def test_geopackage_layer_must_be_named_when_several(etl, spot, tmp_path) -> None:
    path = tmp_path / "two.gpkg"
    pyogrio.write_dataframe(frame(["GPKA1"], boxes(spot, 1)), path, layer="buildings")
    pyogrio.write_dataframe(frame(["OTHER"], boxes(spot, 1)), path, layer="other", append=True)
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 1 and "several layers" in r.output
    r = etl("import", path, "--target", "buildings", "--layer", "buildings")
    assert r.exit_code == 0, r.output
    assert etl.scalar("SELECT count(*) FROM building WHERE code IN ('GPKA1', 'OTHER')") == 1


def test_geojson_components(etl, spot, tmp_path) -> None:
    x, y = spot
    path = tmp_path / "lamps.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x + i * 1e-4, y]},
         "properties": {"code": f"LAMP{i}", "category": "street_lamp"}} for i in range(3)]}))
    r = etl("import", path, "--target", "components")
    assert r.exit_code == 0, r.output
    rows = etl.rows("SELECT code, category, path::text, h3_r9 FROM city_component "
                    "WHERE code LIKE 'LAMP%' ORDER BY code")
    assert [r_[0] for r_ in rows] == ["LAMP0", "LAMP1", "LAMP2"]
    assert all(r_[1] == "street_lamp" and r_[3] is not None for r_ in rows)


def test_csv_lonlat_in_gcj02_is_converted(etl, spot, tmp_path) -> None:
    gx, gy = wgs84_to_gcj02(*spot)
    path = tmp_path / "gcj.csv"
    path.write_text(f"code,category,经度,纬度\nGCJ1,fire_hydrant,{gx:.8f},{gy:.8f}\n",
                    encoding="utf-8")
    r = etl("import", path, "--target", "components", "--crs", "GCJ-02")
    assert r.exit_code == 0, r.output
    x, y = etl.rows("SELECT ST_X(geom), ST_Y(geom) FROM city_component WHERE code = 'GCJ1'")[0]
    # Stored where the thing is (WGS84/CGCS2000), ~500 m from the GCJ-02 numbers in the file.
    assert 300 < haversine_m(gx, gy, x, y) < 800
    assert haversine_m(x, y, *spot) < 0.05
    ex, ey = gcj02_to_wgs84(gx, gy)
    assert abs(ex - x) < 1e-8 and abs(ey - y) < 1e-8


def test_csv_lonlat_without_crs_names_the_file(etl, spot, tmp_path) -> None:
    path = tmp_path / "nocrs.csv"
    path.write_text(f"code,category,lon,lat\nNOCRS,camera,{spot[0]},{spot[1]}\n")
    r = etl("import", path, "--target", "components")
    assert r.exit_code == 1 and "nocrs.csv" in r.output and "--crs" in r.output


def test_shapefile_without_prj_needs_crs(etl, spot, tmp_path) -> None:
    path = tmp_path / "noprj.shp"
    pyogrio.write_dataframe(frame(["NOPRJ"], boxes(spot, 1)), path)
    path.with_suffix(".prj").unlink()
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 1 and "noprj.shp does not say its coordinate system" in r.output
    r = etl("import", path, "--target", "buildings", "--crs", "EPSG:4490")
    assert r.exit_code == 0, r.output


def test_conflicting_crs_is_refused(etl, spot, tmp_path) -> None:
    path = tmp_path / "conflict.shp"
    pyogrio.write_dataframe(frame(["CONF1"], boxes(spot, 1)), path)
    r = etl("import", path, "--target", "buildings", "--crs", "EPSG:4549")
    assert r.exit_code == 1
    assert "EPSG:4490" in r.output and "--crs says EPSG:4549" in r.output


def test_wkt_column_in_projected_metres(etl, spot, tmp_path) -> None:
    from geoserver.geo.crs import to_metric

    square = to_metric(boxes(spot, 1, size=0.0001)[0])
    path = tmp_path / "wkt.csv"
    path.write_text(f'code,name,wkt\nWKT1,投影楼,"{square.wkt}"\n', encoding="utf-8")
    r = etl("import", path, "--target", "buildings", "--crs", "EPSG:4549")
    assert r.exit_code == 0, r.output
    x, y = etl.rows("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(geom) c FROM building "
                    "WHERE code = 'WKT1') s")[0]
    assert haversine_m(x, y, spot[0] + 0.00005, spot[1] + 0.00005) < 0.5


def test_address_text_is_geocoded(etl, tmp_path) -> None:
    text_, x, y = etl.rows("SELECT full_text, ST_X(geom), ST_Y(geom) FROM standard_address "
                           "WHERE level = 'door' ORDER BY code LIMIT 1")[0]
    path = tmp_path / "places.csv"
    path.write_text(f"code,name,category,address\nKP1,测试学校,school,{text_}\n",
                    encoding="utf-8")
    r = etl("import", path, "--target", "places")
    assert r.exit_code == 0, r.output
    px, py = etl.rows("SELECT ST_X(geom), ST_Y(geom) FROM key_place "
                      "WHERE attributes ->> 'code' = 'KP1'")[0]
    assert haversine_m(px, py, x, y) < 0.01
    assert "geocoded" in (etl.workdir / "places.report.csv").read_text("utf-8-sig")


def test_unknown_column_is_named_and_a_mapping_fixes_it(etl, spot, tmp_path) -> None:
    path = tmp_path / "mapped.shp"
    pyogrio.write_dataframe(gpd.GeoDataFrame(
        {"BLDG_NO": ["MAP1", "MAP2"], "MC": ["甲楼", "乙楼"], "JZLB": ["住宅", "商业"],
         "OLD": ["x1", "x2"]}, geometry=boxes(spot, 2), crs="EPSG:4490"), path,
        encoding="UTF-8")
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 1 and "unknown column(s) 'BLDG_NO'" in r.output
    mapping = tmp_path / "m.yaml"
    mapping.write_text("columns:\n  BLDG_NO: code\n  MC: name\n  JZLB: category\n"
                       "  OLD: attributes.old_id\nvalues:\n  category: {住宅: residential, "
                       "商业: commercial}\n", encoding="utf-8")
    r = etl("import", path, "--target", "buildings", "--mapping", mapping)
    assert r.exit_code == 0, r.output
    rows = etl.rows("SELECT code, name, category::text, attributes ->> 'old_id' FROM building "
                    "WHERE code LIKE 'MAP%' ORDER BY code")
    assert [tuple(r_) for r_ in rows] == [("MAP1", "甲楼", "residential", "x1"),
                                         ("MAP2", "乙楼", "commercial", "x2")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns:\n  NOPE: code\n")
    r = etl("import", path, "--target", "buildings", "--mapping", bad)
    assert r.exit_code == 1 and "names column 'NOPE'" in r.output


def test_broken_geometry_rejected_and_repair_reported(etl, spot, tmp_path) -> None:
    x, y = spot
    bowtie = shapely.Polygon([(x, y), (x + 1e-4, y + 1e-4), (x + 1e-4, y), (x, y + 1e-4)])
    path = tmp_path / "broken.gpkg"
    collapsed = shapely.Polygon([(x, y), (x + 1e-4, y), (x + 2e-4, y), (x, y)])
    pyogrio.write_dataframe(frame(["BRK1", "BRK2", "BRK3"], [boxes(spot, 1)[0], bowtie,
                                                              collapsed]), path,
                            geometry_type="Unknown")
    report = tmp_path / "broken.csv"
    r = etl("import", path, "--target", "buildings", "--report", report)
    assert r.exit_code == 1, r.output  # row 3 cannot be repaired: nothing is written
    assert "broken.gpkg row 3, column geometry" in r.output
    text_ = report.read_text("utf-8-sig")
    assert "broken.gpkg,2,geometry,repair,self-intersection" in text_
    assert "broken.gpkg,3,geometry,reject," in text_
    assert etl.scalar("SELECT count(*) FROM building WHERE code LIKE 'BRK%'") == 0


def test_mixed_geometry_types_are_named(etl, spot, tmp_path) -> None:
    x, y = spot
    path = tmp_path / "mixed.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": "MIX1"},
         "geometry": shapely.geometry.mapping(boxes(spot, 1)[0])},
        {"type": "Feature", "properties": {"code": "MIX2"},
         "geometry": {"type": "Point", "coordinates": [x, y]}}]}))
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 1
    assert "mixed.geojson row 2, column geometry" in r.output
    assert "mixes Point and Polygon" in r.output


def test_dry_run_writes_nothing(etl, spot, tmp_path) -> None:
    path = tmp_path / "dry.gpkg"
    pyogrio.write_dataframe(frame(["DRY1", "DRY2"], boxes(spot, 2)), path)
    before = etl.scalar("SELECT count(*) FROM building")
    audits = etl.scalar("SELECT count(*) FROM audit_log")
    r = etl("import", path, "--target", "buildings", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "dry run: nothing written" in r.output and "inserted" in r.output
    assert etl.scalar("SELECT count(*) FROM building") == before
    assert etl.scalar("SELECT count(*) FROM audit_log") == audits
    assert etl.scalar("SELECT count(*) FROM etl_stage") == 0


def _with_one_outside(spot, tmp_path: Path, name: str) -> Path:
    far = shapely.box(121.5, 29.5, 121.5001, 29.5001)  # in China, far outside the tiny city
    path = tmp_path / f"{name}.gpkg"
    pyogrio.write_dataframe(frame([f"{name}1", f"{name}2", f"{name}3"],
                                  [*boxes(spot, 1), far, *boxes(spot, 1)]), path)
    return path


def test_all_or_nothing(etl, spot, tmp_path) -> None:
    path = _with_one_outside(spot, tmp_path, "AON")
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 1
    assert "AON.gpkg row 2, column geometry: lies outside the city" in r.output
    assert "NOTHING WRITTEN" in r.output
    assert etl.scalar("SELECT count(*) FROM building WHERE code LIKE 'AON%'") == 0


def test_keep_going_writes_the_rest_and_lists_rejects(etl, spot, tmp_path) -> None:
    path = _with_one_outside(spot, tmp_path, "KG")
    rejects = tmp_path / "kg-rejects.csv"
    r = etl("import", path, "--target", "buildings", "--keep-going", "--rejects", rejects)
    assert r.exit_code == 0, r.output
    assert sorted(c for (c,) in etl.rows("SELECT code FROM building WHERE code LIKE 'KG%'")) \
        == ["KG1", "KG3"]
    lines = rejects.read_text("utf-8-sig").splitlines()
    assert len(lines) == 2 and lines[1].startswith("KG.gpkg,2,geometry,lies outside the city")
    assert "KG2" in lines[1]


def test_upsert_by_code_updates_changed_rows_only(etl, spot, tmp_path) -> None:
    path = tmp_path / "up.gpkg"
    pyogrio.write_dataframe(frame(["UP1", "UP2"], boxes(spot, 2), name=["一", "二"]), path)
    assert etl("import", path, "--target", "buildings").exit_code == 0
    pyogrio.write_dataframe(frame(["UP1", "UP2"], boxes(spot, 2), name=["一", "二改"]), path)
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 0, r.output
    rows = dict(etl.rows("SELECT code, version FROM building WHERE code LIKE 'UP%'"))
    assert rows == {"UP1": 1, "UP2": 2}
    assert etl.scalar("SELECT name FROM building WHERE code = 'UP2'") == "二改"


def test_reprojected_file_of_the_same_shapes_changes_nothing(etl, spot, tmp_path) -> None:
    path = tmp_path / "same.gpkg"
    pyogrio.write_dataframe(frame(["SAME1", "SAME2"], boxes(spot, 2)), path)
    assert etl("import", path, "--target", "buildings").exit_code == 0
    # The same footprints after a trip through EPSG:4549: float noise, not an update.
    metric = tmp_path / "same4549.gpkg"
    pyogrio.write_dataframe(frame(["SAME1", "SAME2"], boxes(spot, 2)).to_crs("EPSG:4549"),
                            metric)
    r = etl("import", metric, "--target", "buildings")
    assert r.exit_code == 0, r.output
    assert re.search(r"unchanged\s*│\s*2\s*│", r.output), r.output
    assert dict(etl.rows("SELECT code, version FROM building WHERE code LIKE 'SAME%'")) == {
        "SAME1": 1, "SAME2": 1}


def test_gbk_csv_without_a_final_newline(etl, spot, tmp_path) -> None:
    from spatial_etl.sources import open_source

    gx, gy = wgs84_to_gcj02(*spot)
    lines = [f"LMP{i},street_lamp,鹿城区综合行政执法局,{gx + i * 1e-4:.8f},{gy:.8f}"
             for i in range(3)]
    path = tmp_path / "lamps.csv"
    path.write_bytes("\n".join(["code,category,owner_department,经度,纬度", *lines]).encode("gbk"))
    assert open_source(path, crs_option="GCJ-02").rows == 3
    r = etl("import", path, "--target", "components", "--crs", "GCJ-02")
    assert r.exit_code == 0, r.output
    assert "lamps.csv is not UTF-8 (header, column 经度): read as GBK" in r.output
    assert etl.scalar("SELECT count(*) FROM city_component WHERE code LIKE 'LMP%' "
                      "AND owner_department = '鹿城区综合行政执法局'") == 3


def test_duplicate_codes_in_a_file(etl, spot, tmp_path) -> None:
    path = tmp_path / "dup.gpkg"
    pyogrio.write_dataframe(frame(["DUP1", "DUP1"], boxes(spot, 2)), path)
    r = etl("import", path, "--target", "buildings")
    assert r.exit_code == 1 and "row 2, column code: code DUP1 is also on row 1" in r.output


def test_scope_limits_where_rows_may_go(etl, spot, tmp_path) -> None:
    path = tmp_path / "scoped.gpkg"
    pyogrio.write_dataframe(frame(["SCP1"], boxes(spot, 1)), path)
    r = etl("import", path, "--target", "buildings", "--scope", "330302024")
    assert r.exit_code == 1 and "outside your jurisdiction" in r.output
    r = etl("import", path, "--target", "buildings", "--as-user", "t330302006")
    assert r.exit_code == 0, r.output
    assert etl.scalar("SELECT count(*) FROM building WHERE code = 'SCP1'") == 1


def test_chunks_keep_row_numbers(etl, spot, tmp_path) -> None:
    geoms = boxes(spot, 7)
    geoms[5] = shapely.Polygon()  # row 6: empty
    path = tmp_path / "chunked.gpkg"
    pyogrio.write_dataframe(frame([f"CH{i}" for i in range(7)], geoms), path)
    r = etl("import", path, "--target", "buildings", "--chunk", "2", "--keep-going")
    assert r.exit_code == 0, r.output
    report = (etl.workdir / "chunked.report.csv").read_text("utf-8-sig")
    assert "chunked.gpkg,6,geometry,reject" in report
    assert etl.scalar("SELECT count(*) FROM building WHERE code LIKE 'CH%'") == 6


def test_rows_match_the_building_service(etl, spot, tmp_path, demo) -> None:
    """The set-based path stores what create_building would: path, region, H3 cells."""
    from geoserver.domain.principal import SYSTEM
    from geoserver.services.buildings import create_building

    box = boxes((spot[0], spot[1] + 0.0002), 1)[0]
    saved = create_building(demo, actor=SYSTEM, data={
        "code": "SVC1", "geometry": shapely.geometry.mapping(box), "crs": "CGCS2000"}).record
    path = tmp_path / "svc.gpkg"
    pyogrio.write_dataframe(frame(["SVC2"], [box]), path)
    assert etl("import", path, "--target", "buildings").exit_code == 0
    row = etl.rows("SELECT path::text, region_id, h3_r7, h3_r8, h3_r9 FROM building "
                   "WHERE code = 'SVC2'")[0]
    assert tuple(row) == (saved["path"], saved["region_id"], saved["h3_r7"], saved["h3_r8"],
                          saved["h3_r9"])


def test_xlsx_with_lonlat(etl, spot, tmp_path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["code", "category", "status", "lon", "lat"])
    ws.append(["XL1", "manhole_cover", "damaged", spot[0], spot[1]])
    ws.append([1002, "manhole_cover", "intact", spot[0] + 1e-4, spot[1]])  # a numeric code
    path = tmp_path / "parts.xlsx"
    wb.save(path)
    r = etl("import", path, "--target", "components", "--crs", "WGS84")
    assert r.exit_code == 0, r.output
    assert sorted(c for (c,) in etl.rows("SELECT code FROM city_component "
                                         "WHERE code IN ('XL1', '1002')")) == ["1002", "XL1"]


def test_kml(etl, spot, tmp_path) -> None:
    path = tmp_path / "pts.kml"
    g = gpd.GeoDataFrame({"Name": ["KML1"], "code": ["KML1"], "category": ["camera"]},
                         geometry=[shapely.Point(*spot)], crs="EPSG:4326")
    pyogrio.write_dataframe(g, path, driver="KML")
    mapping = tmp_path / "kml.json"
    mapping.write_text(json.dumps({"unmapped": "ignore"}))
    r = etl("import", path, "--target", "components", "--mapping", mapping)
    assert r.exit_code == 0, r.output
    assert etl.scalar("SELECT count(*) FROM city_component WHERE code = 'KML1'") == 1


def test_bad_file_type_and_missing_file(etl, tmp_path) -> None:
    bad = tmp_path / "x.dwg"
    bad.write_bytes(b"\0")
    r = etl("import", bad, "--target", "buildings")
    assert r.exit_code == 1 and "unknown file type '.dwg'" in r.output
    r = etl("import", tmp_path / "missing.gpkg", "--target", "buildings")
    assert r.exit_code == 1 and "no such file" in r.output
