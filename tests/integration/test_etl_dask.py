"""etl import, h3 and claim on a dask.distributed LocalCluster of 2 workers."""

from __future__ import annotations

import re

import geopandas as gpd
import pyogrio
import pytest
import shapely

from tests.support.places import point_in

pytest.importorskip("dask_geopandas")
pytestmark = pytest.mark.slow
GRID = "330302006109001"


@pytest.fixture(scope="module")
def small_file(etl, tmp_path_factory):
    """25 footprints in a grid (row 17 outside the city), as a GeoPackage."""
    x, y = point_in(etl.owner, GRID)
    geoms = [shapely.box(x + i * 8e-5, y, x + i * 8e-5 + 4e-5, y + 4e-5) for i in range(25)]
    geoms[16] = shapely.box(121.5, 29.5, 121.5001, 29.5001)
    path = tmp_path_factory.mktemp("dask") / "small.gpkg"
    pyogrio.write_dataframe(gpd.GeoDataFrame(
        {"code": [f"DSK{i:02d}" for i in range(25)], "name": [f"楼{i}" for i in range(25)]},
        geometry=geoms, crs="EPSG:4490"), path)
    return path


def test_distributed_import_matches_the_single_process(etl, small_file) -> None:
    r = etl("import", small_file, "--target", "buildings", "--workers", "2", "--chunk", "5",
            "--keep-going", "--dry-run")
    assert r.exit_code == 0, r.output
    assert etl.scalar("SELECT count(*) FROM building WHERE code LIKE 'DSK%'") == 0
    assert etl.scalar("SELECT count(*) FROM etl_stage") == 0  # the workers' rows are gone
    r = etl("import", small_file, "--target", "buildings", "--workers", "2", "--chunk", "5",
            "--keep-going")
    assert r.exit_code == 0, r.output
    rows = etl.rows("SELECT code, name, path::text, h3_r9 FROM building WHERE code LIKE 'DSK%' "
                    "ORDER BY code")
    assert len(rows) == 24 and "DSK16" not in {r_[0] for r_ in rows}
    assert all(r_[2].endswith(GRID) and r_[3] is not None for r_ in rows)
    report = (etl.workdir / "small.report.csv").read_text("utf-8-sig")
    assert "small.gpkg,17,geometry,reject,lies outside the city" in report
    assert etl.scalar("SELECT count(*) FROM etl_stage") == 0
    # The same file in one process: every row unchanged.
    r = etl("import", small_file, "--target", "buildings", "--keep-going")
    assert r.exit_code == 0 and re.search(r"unchanged\s*│\s*24\s*│", r.output), r.output


def test_distributed_all_or_nothing(etl, small_file) -> None:
    etl.execute("DELETE FROM building WHERE code LIKE 'DSK%'")
    r = etl("import", small_file, "--target", "buildings", "--workers", "2", "--chunk", "5")
    assert r.exit_code == 1
    assert etl.scalar("SELECT count(*) FROM building WHERE code LIKE 'DSK%'") == 0
    assert etl.scalar("SELECT count(*) FROM etl_stage") == 0


def test_distributed_h3_and_claim(etl) -> None:
    before = etl.rows("SELECT id, h3_r7, h3_r8, h3_r9 FROM building ORDER BY id")
    etl.execute("UPDATE building SET h3_r8 = NULL")
    r = etl("h3", "--kind", "buildings", "--workers", "2", "--no-statistics")
    assert r.exit_code == 0, r.output
    assert [tuple(a) for a in etl.rows("SELECT id, h3_r7, h3_r8, h3_r9 FROM building "
                                       "ORDER BY id")] == [tuple(b) for b in before]
    r = etl("claim", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert re.search(r"township partitions \(dask\)\s*│\s*4\s*│", r.output), r.output
    held = etl.rows("SELECT path::text FROM claim_item WHERE subject_kind IS NOT NULL")
    assert held
