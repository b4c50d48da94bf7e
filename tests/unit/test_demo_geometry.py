"""Generated demo geometry: deterministic, nested, tiling, plausible (tiny and demo scales)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon

from geoserver.demo.divisions import (
    RegionLevel,
    is_virtual,
    load_county_facts,
    load_division_tree,
)
from geoserver.demo.geometry import (
    SCALES,
    TINY_TOWNSHIPS,
    GridType,
    RegionShape,
    generate_regions,
    random_points_in,
    settlement_points,
)

SEED = 20240611
OUTSIDE_TOLERANCE_DEG2 = 1e-9
UNION_TOLERANCE = 1e-3  # relative area difference between a parent and its children's union
GEOD = Geod(ellps="GRS80")  # CGCS2000's ellipsoid, to the millimetre
LONGGANG_VIRTUAL_TOWNSHIP = "330383198"
DONGTOU = "330305"


def _digest(regions: list[RegionShape]) -> str:
    h = hashlib.sha256()
    for r in regions:
        h.update(f"{r.code}|{r.name}|{r.level}|{r.parent_code}|{r.grid_type}|{r.urban}".encode())
        h.update(shapely.to_wkb(r.geom))
    return h.hexdigest()


def _geodesic_km2(geom) -> float:
    return abs(GEOD.geometry_area_perimeter(geom)[0]) / 1e6


def _by_code(regions: list[RegionShape]) -> dict[str, RegionShape]:
    return {r.code: r for r in regions}


def _tiling_children(regions: list[RegionShape]) -> dict[str, list[RegionShape]]:
    """Children that must tile their parent: everything but dedicated grids."""
    children = defaultdict(list)
    for r in regions:
        if r.parent_code is not None and r.grid_type != GridType.DEDICATED:
            children[r.parent_code].append(r)
    return children


def _assert_children_tile(parent: RegionShape, children: list[RegionShape]) -> None:
    geoms = [c.geom for c in children]
    union = shapely.union_all(geoms)
    overlap = sum(g.area for g in geoms) - union.area
    assert overlap < OUTSIDE_TOLERANCE_DEG2, f"children of {parent.code} overlap by {overlap}"
    gap = abs(union.area - parent.geom.area) / parent.geom.area
    assert gap < UNION_TOLERANCE, f"children of {parent.code} miss {gap:.2%} of it"


@pytest.fixture(scope="module")
def tiny() -> list[RegionShape]:
    return generate_regions("tiny", SEED)


@pytest.fixture(scope="module")
def demo() -> list[RegionShape]:
    return generate_regions("demo", SEED)


# --- divisions --------------------------------------------------------------------------------


def test_division_tree_has_wenzhou_levels_and_children():
    tree = load_division_tree()
    counts = {level: len(tree.at_level(level)) for level in RegionLevel}
    assert counts == {"city": 1, "county": 12, "township": 191, "village": 3685, "grid": 0}
    assert tree.root.name == "温州市"
    assert [d.code for d in tree.children("330300")][:2] == ["330302", "330303"]
    assert len(tree.children(LONGGANG_VIRTUAL_TOWNSHIP)) == 103
    assert tree.get("330302006").name == "五马街道"


def test_virtual_units_are_flagged():
    tree = load_division_tree()
    assert tree.get(LONGGANG_VIRTUAL_TOWNSHIP).virtual
    assert tree.get("330324401").virtual  # 四海山林场
    assert tree.get("330324401598").virtual  # 四海山林场虚拟生活区
    assert not tree.get("330302006").virtual  # 五马街道
    assert not tree.get("330383198001").virtual  # a real community under the virtual township
    assert is_virtual("330381199", "某某街道", RegionLevel.TOWNSHIP)  # the 198-199 number range
    assert not is_virtual("330381197", "某某镇", RegionLevel.TOWNSHIP)


def test_county_facts_cover_every_county():
    facts = load_county_facts()
    counties = {d.code for d in load_division_tree().at_level(RegionLevel.COUNTY)}
    assert set(facts) == counties
    assert facts[DONGTOU].name == "洞头区"
    assert all(f.min_lon < f.centroid_lon < f.max_lon for f in facts.values())


# --- tiny: determinism ------------------------------------------------------------------------


def test_same_seed_gives_identical_geometry(tiny):
    again = generate_regions("tiny", SEED)
    assert [r.code for r in again] == [r.code for r in tiny]
    assert [shapely.to_wkb(r.geom) for r in again] == [shapely.to_wkb(r.geom) for r in tiny]
    assert _digest(again) == _digest(tiny)


def test_other_seed_gives_other_geometry(tiny):
    other = generate_regions("tiny", SEED + 1)
    assert [r.code for r in other if r.level != RegionLevel.GRID] == [
        r.code for r in tiny if r.level != RegionLevel.GRID
    ]
    assert _digest(other) != _digest(tiny)


def test_geometry_does_not_depend_on_hash_randomisation(tiny):
    script = (
        "import hashlib, shapely, sys\n"
        "from geoserver.demo.geometry import generate_regions\n"
        "h = hashlib.sha256()\n"
        f"for r in generate_regions('tiny', {SEED}):\n"
        "    h.update(r.code.encode()); h.update(shapely.to_wkb(r.geom))\n"
        "print(h.hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    expected = hashlib.sha256()
    for r in tiny:
        expected.update(r.code.encode())
        expected.update(shapely.to_wkb(r.geom))
    assert digests == {expected.hexdigest()}


def test_unknown_scale_is_refused():
    assert SCALES == ("tiny", "demo", "city")
    with pytest.raises(ValueError, match="unknown scale"):
        generate_regions("province", SEED)


# --- tiny: codes, nesting, tiling -------------------------------------------------------------


def test_tiny_is_four_lucheng_streets_with_their_villages(tiny):
    tree = load_division_tree()
    non_grid = [r for r in tiny if r.level != RegionLevel.GRID]
    expected = {"330300", "330302", *TINY_TOWNSHIPS}
    expected |= {v.code for t in TINY_TOWNSHIPS for v in tree.children(t)}
    assert {r.code for r in non_grid} == expected
    for r in non_grid:
        division = tree.get(r.code)
        assert (r.name, r.level) == (division.name, division.level)
        assert r.parent_code == (None if r.code == "330300" else division.parent_code)
        assert r.virtual == division.virtual
        assert r.grid_type is None


def test_tiny_has_about_sixty_grids_and_some_dedicated(tiny):
    villages = [r for r in tiny if r.level == RegionLevel.VILLAGE]
    general = [r for r in tiny if r.level == RegionLevel.GRID and r.grid_type != "dedicated"]
    dedicated = [r for r in tiny if r.grid_type == GridType.DEDICATED]
    assert len(villages) == 48
    assert 48 <= len(general) <= 90
    assert len(dedicated) >= 2
    assert all(r.urban for r in tiny if r.level == RegionLevel.TOWNSHIP)  # all 街道


def test_all_geometries_are_valid_nonempty_multipolygons(tiny):
    for r in tiny:
        assert isinstance(r.geom, MultiPolygon), r.code
        assert r.geom.is_valid, r.code
        assert r.geom.area > 0, r.code
        minx, miny, maxx, maxy = r.geom.bounds  # lon/lat, in Wenzhou
        assert 119.5 < minx < maxx < 121.5 and 26.9 < miny < maxy < 28.7, r.code


def test_every_region_lies_within_its_parent(tiny):
    regions = _by_code(tiny)
    for r in tiny:
        if r.parent_code is None:
            continue
        parent = regions[r.parent_code]
        assert shapely.difference(r.geom, parent.geom).area < OUTSIDE_TOLERANCE_DEG2, r.code


def test_children_tile_their_parent(tiny):
    regions = _by_code(tiny)
    children = _tiling_children(tiny)
    assert set(children) == {
        r.code for r in tiny if r.level in ("county", "township", "village", "city")
    }
    for code, kids in children.items():
        _assert_children_tile(regions[code], kids)


def test_grid_codes_extend_village_codes(tiny):
    regions = _by_code(tiny)
    for grid in (r for r in tiny if r.level == RegionLevel.GRID):
        parent = regions[grid.parent_code]
        assert len(grid.code) == 15 and grid.code.isdigit()
        if grid.grid_type == GridType.DEDICATED:
            assert parent.level == RegionLevel.TOWNSHIP
            assert grid.code[:9] == parent.code and grid.code[9] == "9"
        else:
            assert grid.grid_type in (GridType.GENERAL, GridType.KEY)
            assert parent.level == RegionLevel.VILLAGE
            assert grid.code[:12] == parent.code and grid.code[12:] != "000"
    assert len({r.code for r in tiny}) == len(tiny)


def test_dedicated_grids_sit_in_townships_over_village_grids(tiny):
    general_by_township = defaultdict(list)
    regions = _by_code(tiny)
    for r in tiny:
        if r.level == RegionLevel.GRID and r.grid_type != GridType.DEDICATED:
            general_by_township[regions[r.parent_code].parent_code].append(r.geom)
    for grid in (r for r in tiny if r.grid_type == GridType.DEDICATED):
        township = regions[grid.parent_code]
        assert shapely.difference(grid.geom, township.geom).area < OUTSIDE_TOLERANCE_DEG2
        covered = shapely.union_all(general_by_township[township.code])
        assert shapely.intersection(grid.geom, covered).area > 0.99 * grid.geom.area
        assert "专属网格" in grid.name


# --- points -----------------------------------------------------------------------------------


def test_random_points_fall_inside_and_repeat_with_the_seed(tiny):
    village = next(r for r in tiny if r.level == RegionLevel.VILLAGE)
    points = random_points_in(village.geom, 200, np.random.default_rng(3))
    assert points.shape == (200, 2)
    assert shapely.contains_xy(village.geom, points[:, 0], points[:, 1]).all()
    assert np.array_equal(points, random_points_in(village.geom, 200, np.random.default_rng(3)))


def test_settlement_points_cluster_inside_the_region(tiny):
    village = max((r for r in tiny if r.level == RegionLevel.VILLAGE), key=lambda r: r.geom.area)
    rural = replace(village, urban=False)  # a countryside village: a few tight hamlets
    clustered = settlement_points(rural, 150, np.random.default_rng(5))
    uniform = random_points_in(village.geom, 150, np.random.default_rng(5))
    assert clustered.shape == (150, 2)
    assert shapely.contains_xy(village.geom, clustered[:, 0], clustered[:, 1]).all()

    def mean_nearest_distance(points: np.ndarray) -> float:
        d = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(d, np.inf)
        return float(d.min(axis=1).mean())

    assert mean_nearest_distance(clustered) < 0.6 * mean_nearest_distance(uniform)


# --- demo: the whole city ---------------------------------------------------------------------


def test_demo_has_every_division_with_its_code_and_name(demo):
    tree = load_division_tree()
    divisions = {(d.code, d.name, d.level) for d in tree}
    generated = {(r.code, r.name, r.level) for r in demo if r.level != RegionLevel.GRID}
    assert generated == divisions


def test_demo_county_areas_match_the_facts(demo):
    facts = load_county_facts()
    for county in (r for r in demo if r.level == RegionLevel.COUNTY):
        ratio = _geodesic_km2(county.geom) / facts[county.code].area_km2
        assert 0.65 < ratio < 1.35, (county.name, ratio)


def test_demo_levels_tile_their_parents(demo):
    regions = _by_code(demo)
    for code, kids in _tiling_children(demo).items():
        if regions[code].level != RegionLevel.VILLAGE:  # grids are covered by the tiny tests
            _assert_children_tile(regions[code], kids)
    for r in demo:
        assert r.geom.is_valid and isinstance(r.geom, MultiPolygon), r.code


def test_dongtou_is_islands_apart_from_the_mainland(demo):
    counties = [r for r in demo if r.level == RegionLevel.COUNTY]
    dongtou = next(c for c in counties if c.code == DONGTOU)
    assert len(dongtou.geom.geoms) >= 2
    mainland = shapely.union_all([c.geom for c in counties if c.code != DONGTOU])
    assert not dongtou.geom.intersects(mainland)
    assert dongtou.geom.distance(mainland) > 0.005  # degrees: roughly 500 m of sea at least
    assert dongtou.geom.centroid.x > mainland.centroid.x  # east of the mainland


def test_demo_longgang_communities_hang_under_the_virtual_township(demo):
    regions = _by_code(demo)
    township = regions[LONGGANG_VIRTUAL_TOWNSHIP]
    assert township.virtual and township.parent_code == "330383"
    assert township.geom.equals(regions["330383"].geom)
    communities = [r for r in demo if r.parent_code == LONGGANG_VIRTUAL_TOWNSHIP]
    assert len(communities) == 103
    assert not any(c.virtual for c in communities)


def test_demo_urban_units_are_small_and_mountain_ones_large(demo):
    villages = [r for r in demo if r.level == RegionLevel.VILLAGE]

    def median_km2(prefix: str) -> float:
        return float(np.median([_geodesic_km2(v.geom) for v in villages if v.code[:6] == prefix]))

    lucheng, wencheng, taishun = median_km2("330302"), median_km2("330328"), median_km2("330329")
    assert lucheng * 3 < wencheng and lucheng * 3 < taishun
    urban = [_geodesic_km2(v.geom) for v in villages if v.urban]
    rural = [_geodesic_km2(v.geom) for v in villages if not v.urban]
    assert np.median(urban) * 3 < np.median(rural)


def test_demo_grid_counts_follow_urban_density(demo):
    villages = {r.code: r for r in demo if r.level == RegionLevel.VILLAGE}
    per_village = defaultdict(int)
    grids = [r for r in demo if r.level == RegionLevel.GRID and r.grid_type != "dedicated"]
    for grid in grids:
        per_village[grid.parent_code] += 1
    assert set(per_village) == set(villages)
    assert set(per_village.values()) <= {1, 2, 3}
    urban = np.mean([n for code, n in per_village.items() if villages[code].urban])
    rural = np.mean([n for code, n in per_village.items() if not villages[code].urban])
    assert rural < 1.3 < urban
    key_share = sum(g.grid_type == GridType.KEY for g in grids) / len(grids)
    assert 0.05 < key_share < 0.3
    assert sum(r.grid_type == GridType.DEDICATED for r in demo) > 10
