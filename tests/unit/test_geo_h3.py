"""H3 cell ids: signed bigint storage, vectorised indexing, boundaries and polygon fills."""

import h3
import numpy as np
import pytest
from shapely.geometry import MultiPolygon, Point, Polygon, box

from geoserver.geo import h3cells
from geoserver.geo.h3cells import (
    H3_RESOLUTIONS,
    cell_boundary,
    cell_center,
    cell_int,
    cells_at_resolutions,
    cells_for_points,
    parent,
    parents,
    polygon_cells,
    to_signed,
    to_unsigned,
)

WENZHOU = (120.65, 28.0)


@pytest.fixture
def wenzhou_points():
    """2,000 random points across Wenzhou."""
    rng = np.random.default_rng(20240607)
    return rng.uniform(119.6, 121.3, 2000), rng.uniform(27.0, 28.6, 2000)


def test_stored_resolutions():
    assert H3_RESOLUTIONS == (7, 8, 9, 10)


def test_cell_int_matches_h3_and_uses_lat_lng_order_correctly():
    for res in H3_RESOLUTIONS:
        cell = cell_int(*WENZHOU, res)
        assert cell == h3.str_to_int(h3.latlng_to_cell(WENZHOU[1], WENZHOU[0], res))
        assert h3.get_resolution(h3.int_to_str(cell)) == res
        assert cell_boundary(cell).contains(Point(*WENZHOU))


def test_signed_storage_two_complement():
    assert to_signed(2**64 - 1) == -1
    assert to_signed(2**63) == -(2**63)
    assert to_signed(2**63 - 1) == 2**63 - 1
    assert to_unsigned(-1) == 2**64 - 1
    for value in (0, 1, 2**59, 2**63 - 1, 2**63, 2**64 - 1):
        assert to_unsigned(to_signed(value)) == value
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            to_signed(bad)
    with pytest.raises(ValueError):
        to_unsigned(2**63)


def test_cell_ids_fit_a_signed_bigint_unchanged():
    # The reserved top bit is 0 and a cell has mode 1, so ids lie in [2**59, 2**60).
    base_cells = [h3.str_to_int(c) for c in h3.get_res0_cells()]
    finest = [h3.str_to_int(h3.cell_to_center_child(h3.int_to_str(c), 15)) for c in base_cells]
    for cell in base_cells + finest:
        assert 2**59 <= cell < 2**60
        assert to_signed(cell) == cell
    assert 2**59 <= cell_int(*WENZHOU, 15) < 2**60


def test_cells_for_points_matches_per_point_cells(wenzhou_points):
    lons, lats = wenzhou_points
    for res in H3_RESOLUTIONS:
        cells = cells_for_points(lons, lats, res)
        assert cells.dtype == np.int64 and cells.shape == lons.shape
        assert cells.tolist() == [
            cell_int(lon, lat, res) for lon, lat in zip(lons, lats, strict=True)
        ]


def test_cells_at_resolutions_are_the_containing_cells(wenzhou_points):
    lons, lats = wenzhou_points
    by_res = cells_at_resolutions(lons, lats)
    assert sorted(by_res) == list(H3_RESOLUTIONS)
    for res, cells in by_res.items():
        np.testing.assert_array_equal(cells, cells_for_points(lons, lats, res))


def test_parent_of_fine_cell_is_not_always_the_containing_cell(wenzhou_points):
    # Why cells_at_resolutions indexes each resolution: H3 children do not tile their parent.
    lons, lats = wenzhou_points
    rolled_up = parents(cells_for_points(lons, lats, 10), 9)
    containing = cells_for_points(lons, lats, 9)
    assert 0 < np.count_nonzero(rolled_up != containing) < lons.size * 0.2


def test_vectorised_parents_match_h3(wenzhou_points):
    lons, lats = wenzhou_points
    fine = cells_for_points(lons, lats, 10)
    for res in (0, 5, 7, 8, 9, 10):
        expected = [h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), res)) for c in fine]
        assert parents(fine, res).tolist() == expected
    with pytest.raises(ValueError):
        parents(fine, 11)


def test_scalar_parent():
    cell = cell_int(*WENZHOU, 10)
    assert parent(cell, 7) == h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell), 7))
    assert parent(cell, 7) == int(parents([cell], 7)[0])


def test_cells_for_points_accepts_lists_and_rejects_bad_input():
    assert cells_for_points([WENZHOU[0]], [WENZHOU[1]], 9).tolist() == [cell_int(*WENZHOU, 9)]
    assert cells_for_points([], [], 9).shape == (0,)
    with pytest.raises(ValueError):
        cells_for_points([120.6, float("nan")], [28.0, 28.0], 9)
    with pytest.raises(ValueError):
        cells_for_points([120.6, 120.7], [28.0], 9)
    with pytest.raises(ValueError):
        cells_for_points([120.6], [28.0], 16)
    with pytest.raises(ValueError):
        cell_int(float("inf"), 28.0, 9)


def test_cell_boundary_is_a_lon_lat_hexagon():
    cell = cell_int(*WENZHOU, 9)
    hexagon = cell_boundary(cell)
    assert hexagon.is_valid and len(hexagon.exterior.coords) == 7
    minx, miny, maxx, maxy = hexagon.bounds
    assert 120.6 < minx < maxx < 120.7 and 27.9 < miny < maxy < 28.1
    lon, lat = cell_center(cell)
    assert hexagon.centroid.distance(Point(lon, lat)) < 1e-4


def test_cell_boundary_round_trips_through_its_centre():
    for res in H3_RESOLUTIONS:
        cell = cell_int(*WENZHOU, res)
        assert cell_int(*cell_center(cell), res) == cell


def test_polygon_cells_are_those_with_centres_inside():
    square = box(120.6, 28.0, 120.7, 28.05)
    cells = polygon_cells(square, 9)
    assert cells == sorted(cells) and len(cells) == len(set(cells))
    assert all(square.contains(Point(*cell_center(c))) for c in cells)
    assert cell_int(*square.centroid.coords[0], 9) in cells
    # Coverage: the cells' total area is close to the square's.
    covered = sum(cell_boundary(c).area for c in cells)
    assert covered == pytest.approx(square.area, rel=0.05)


def test_polygon_cells_respects_holes_and_multipolygons():
    outer = box(120.6, 28.0, 120.7, 28.05)
    hole = box(120.62, 28.01, 120.68, 28.04)
    with_hole = Polygon(outer.exterior.coords, [hole.exterior.coords])
    cells = polygon_cells(with_hole, 9)
    assert cells and not any(hole.contains(Point(*cell_center(c))) for c in cells)
    second = box(120.8, 28.0, 120.9, 28.05)
    both = polygon_cells(MultiPolygon([outer, second]), 9)
    assert set(both) == set(polygon_cells(outer, 9)) | set(polygon_cells(second, 9))
    assert polygon_cells(Polygon(), 9) == []


def test_module_keeps_lat_lng_swaps_inside():
    # Public functions take and give lon first: a swapped call lands nowhere near Wenzhou.
    assert h3cells.cell_center(cell_int(*WENZHOU, 10))[0] == pytest.approx(WENZHOU[0], abs=0.01)
