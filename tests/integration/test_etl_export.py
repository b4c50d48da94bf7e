"""etl export (round trips, watermark, CRS, scope, audit) and etl report (offline HTML)."""

from __future__ import annotations

import csv
import json
import re

import pyogrio
import pytest
import shapely
from openpyxl import load_workbook

from geoserver.geo.crs import wgs84_to_gcj02

TOWNSHIP = "330302006"  # 五马街道


@pytest.fixture(scope="module")
def expected(etl) -> dict[str, tuple[str, float, float]]:
    """Buildings of the township: code → (name, x, y of the point on surface)."""
    rows = etl.rows("SELECT code, coalesce(name, ''), ST_X(p), ST_Y(p) FROM (SELECT code, name, "
                    "ST_PointOnSurface(geom) p FROM building WHERE path <@ "
                    "'330300.330302.330302006') s")
    assert rows
    return {c: (n, x, y) for c, n, x, y in rows}


def _export(etl, fmt: str, out, *extra) -> str:
    r = etl("export", "--layer", "buildings", "--format", fmt, "--out", out,
            "--region", TOWNSHIP, *extra)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("fmt", ["gpkg", "shp", "geojson"])
def test_gis_round_trip(etl, expected, tmp_path, fmt) -> None:
    out = tmp_path / f"b.{fmt}"
    _export(etl, fmt, out)
    frame = pyogrio.read_dataframe(out)
    assert sorted(frame["code"]) == sorted(expected)
    got = dict(zip(frame["code"], shapely.point_on_surface(frame.geometry.values), strict=True))
    for code, (_, x, y) in list(expected.items())[:50]:
        assert abs(got[code].x - x) < 1e-6 and abs(got[code].y - y) < 1e-6
    names = dict(zip(frame["code"], frame["name"], strict=True))
    assert all((names[c] or "") == n for c, (n, _, _) in expected.items())
    if fmt == "gpkg":
        meta = pyogrio.read_info(out)["layer_metadata"]
        assert "exported by etl:" in meta["WATERMARK"]
        assert pyogrio.read_info(out)["crs"] == "EPSG:4490"
    if fmt == "shp":
        assert out.with_suffix(".cpg").read_text() == "UTF-8"
        assert "exported by" in out.with_suffix(".txt").read_text("utf-8")
    if fmt == "geojson":
        assert "exported by" in json.loads(out.read_text("utf-8"))["watermark"]


def test_csv_and_xlsx_round_trip_with_watermark(etl, expected, tmp_path) -> None:
    out = tmp_path / "b.csv"
    _export(etl, "csv", out)
    lines = out.read_text("utf-8-sig").splitlines()
    assert lines[0].startswith("# gridgov 导出 / exported by etl:")
    rows = list(csv.DictReader(lines[1:]))
    assert sorted(r["code"] for r in rows) == sorted(expected)
    assert all(shapely.from_wkt(r["wkt"]).geom_type == "MultiPolygon" for r in rows)
    out = tmp_path / "b.xlsx"
    _export(etl, "xlsx", out)
    ws = load_workbook(out, read_only=True).worksheets[0]
    values = list(ws.iter_rows(values_only=True))
    assert "exported by etl:" in values[0][0]
    header = list(values[1])
    codes = [v[header.index("code")] for v in values[2:]]
    assert sorted(codes) == sorted(expected)


def test_gcj02_output_is_offset(etl, expected, tmp_path) -> None:
    out = tmp_path / "gcj.geojson"
    _export(etl, "geojson", out, "--crs", "GCJ-02")
    doc = json.loads(out.read_text("utf-8"))
    assert doc["coordinates"] == "GCJ02"
    feature = doc["features"][0]
    code = feature["properties"]["code"]
    p = shapely.point_on_surface(shapely.geometry.shape(feature["geometry"]))
    _, x, y = expected[code]
    gx, gy = wgs84_to_gcj02(x, y)
    assert abs(p.x - gx) < 1e-5 and abs(p.y - gy) < 1e-5


def test_filter_region_and_scope_of_a_user(etl, tmp_path) -> None:
    out = tmp_path / "tall.csv"
    _export(etl, "csv", out, "--filter", "floors > 10")
    floors = [int(r["floors"]) for r in csv.DictReader(out.read_text("utf-8-sig").splitlines()[1:])]
    assert floors and all(f > 10 for f in floors)
    # A township commander exports their own township only, and may not ask for another.
    out = tmp_path / "mine.csv"
    r = etl("export", "--layer", "buildings", "--format", "csv", "--out", out,
            "--as-user", "t330302024")
    assert r.exit_code == 0, r.output
    n = etl.scalar("SELECT count(*) FROM building WHERE path <@ '330300.330302.330302024'")
    assert len(out.read_text("utf-8-sig").splitlines()) - 2 == n
    r = etl("export", "--layer", "buildings", "--format", "csv", "--out", out,
            "--as-user", "t330302024", "--region", TOWNSHIP)
    assert r.exit_code == 1 and "not in t330302024's jurisdiction" in r.output


def test_export_is_audited(etl, tmp_path) -> None:
    before = etl.scalar("SELECT count(*) FROM audit_log WHERE action = 'export'")
    _export(etl, "csv", tmp_path / "a.csv")
    row = etl.rows("SELECT actor_username, object_kind, detail FROM audit_log "
                   "WHERE action = 'export' ORDER BY id DESC LIMIT 1")[0]
    assert etl.scalar("SELECT count(*) FROM audit_log WHERE action = 'export'") == before + 1
    assert row[0].startswith("etl:") and row[1] == "buildings" and row[2]["format"] == "csv"


def test_shapefile_refuses_mixed_geometry(etl, tmp_path) -> None:
    r = etl("export", "--layer", "places", "--format", "shp", "--out", tmp_path / "p.shp")
    assert r.exit_code == 1 and "one geometry type" in r.output


def test_report_opens_offline(etl, tmp_path) -> None:
    out = tmp_path / "report.html"
    r = etl("report", "--region", TOWNSHIP, "--out", out)
    assert r.exit_code == 0, r.output
    page = out.read_text("utf-8")
    # No script, stylesheet or image from the network, and no CDN named anywhere.
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)\s*=\s*["']?(https?:)?//""", page,
                         re.I)
    for cdn in ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "code.jquery.com", "unpkg.com",
                "bootstrapcdn", "fonts.googleapis"):
        assert cdn not in page
    assert "Leaflet 1.9.4" in page and "L.heatLayer" in page and "simpleheat" in page
    assert "五马街道" in page and "exported by etl:" in page
    assert page.count("<tr>") >= 2  # the sub-regions' table


def test_report_heat_and_table_share_one_period(etl, tmp_path) -> None:
    from geoserver.services.statistics import make_period

    period = make_period(None, None)  # the statistics' default: the last 30 Shanghai days
    out = tmp_path / "period.html"
    r = etl("report", "--region", TOWNSHIP, "--out", out)
    assert r.exit_code == 0, r.output
    assert f"{period.start} – {period.end}" in out.read_text("utf-8")
    drawn = etl.scalar(
        "SELECT count(*) FROM event WHERE geom IS NOT NULL AND path <@ '330300.330302.330302006' "
        "AND (reported_at AT TIME ZONE 'Asia/Shanghai')::date BETWEEN :a AND :b",
        a=period.start, b=period.end)
    assert re.search(rf"events \(heat\)\s*│\s*{drawn:,}\s*│", r.output), (drawn, r.output)
    old = etl.scalar("SELECT count(*) FROM event WHERE path <@ '330300.330302.330302006' "
                     "AND (reported_at AT TIME ZONE 'Asia/Shanghai')::date < :a", a=period.start)
    assert old > 0, "the demo has older events, which the heat must leave out"
