"""CRS parsing, GCJ-02/BD-09 conversions, projected transforms and geodesic measures."""

import math

import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon, box

from geoserver.geo import crs
from geoserver.geo.crs import InputCRS
from geoserver.geo.measure import geodesic_area_m2, geodesic_length_m, haversine_m

# Published reference values of the usual GCJ-02/BD-09 formulas at Tiananmen (116.404, 39.915).
BEIJING = (116.404, 39.915)
BEIJING_WGS_TO_GCJ = (116.41024449916938, 39.91640428150164)
BEIJING_GCJ_TO_BD = (116.41036949371029, 39.92133699351021)
BEIJING_WGS_TO_BD = (116.41662724378733, 39.922699552216216)
BEIJING_BD_TO_GCJ_ONE_STEP = (116.39762729119315, 39.90865673957631)

WENZHOU = (120.65, 28.0)


@pytest.fixture
def wenzhou_grid():
    """Points every ~5 km across Wenzhou, 119.6-121.3E, 27.0-28.6N."""
    lon, lat = np.meshgrid(np.linspace(119.6, 121.3, 35), np.linspace(27.0, 28.6, 33))
    return lon, lat


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("WGS84", InputCRS.WGS84),
        ("wgs84", InputCRS.WGS84),
        ("EPSG:4326", InputCRS.WGS84),
        ("epsg:4326", InputCRS.WGS84),
        ("4326", InputCRS.WGS84),
        ("CRS84", InputCRS.WGS84),
        ("OGC:CRS84", InputCRS.WGS84),
        ("http://www.opengis.net/def/crs/OGC/1.3/CRS84", InputCRS.WGS84),
        ("http://www.opengis.net/def/crs/EPSG/0/4326", InputCRS.WGS84),
        ("CGCS2000", InputCRS.CGCS2000),
        ("EPSG:4490", InputCRS.CGCS2000),
        ("GCJ-02", InputCRS.GCJ02),
        ("GCJ02", InputCRS.GCJ02),
        ("gcj02", InputCRS.GCJ02),
        ("BD-09", InputCRS.BD09),
        ("BD09", InputCRS.BD09),
        ("bd09ll", InputCRS.BD09),
        ("  Bd09LL ", InputCRS.BD09),
    ],
)
def test_parse_input_crs_accepts_common_spellings(spelling, expected):
    assert crs.parse_input_crs(spelling) is expected


@pytest.mark.parametrize("bad", ["EPSG:3857", "", "mars", "4549", "GCJ"])
def test_parse_input_crs_rejects_unknown_and_lists_accepted(bad):
    with pytest.raises(ValueError, match="accepted values: WGS84, EPSG:4326") as info:
        crs.parse_input_crs(bad)
    assert "bd09ll" in str(info.value)


def test_srids_are_the_house_choices():
    assert (crs.STORAGE_SRID, crs.METRIC_SRID, crs.WEB_SRID) == (4490, 4549, 3857)


def test_wgs84_to_gcj02_matches_published_reference():
    assert crs.wgs84_to_gcj02(*BEIJING) == pytest.approx(BEIJING_WGS_TO_GCJ, abs=1e-12)


def test_gcj02_to_bd09_matches_published_reference():
    assert crs.gcj02_to_bd09(*BEIJING) == pytest.approx(BEIJING_GCJ_TO_BD, abs=1e-12)
    assert crs.wgs84_to_bd09(*BEIJING) == pytest.approx(BEIJING_WGS_TO_BD, abs=1e-12)


def test_bd09_to_gcj02_refines_the_one_step_formula():
    lon, lat = crs.bd09_to_gcj02(*BEIJING)
    # Within ~0.1 m of the published closed form, and an exact inverse of gcj02_to_bd09.
    assert (lon, lat) == pytest.approx(BEIJING_BD_TO_GCJ_ONE_STEP, abs=1e-6)
    assert crs.gcj02_to_bd09(lon, lat) == pytest.approx(BEIJING, abs=1e-10)


def test_gcj02_offset_in_wenzhou_is_about_half_a_kilometre():
    lon, lat = crs.wgs84_to_gcj02(*WENZHOU)
    assert lon - WENZHOU[0] == pytest.approx(0.0039637, abs=1e-6)
    assert lat - WENZHOU[1] == pytest.approx(-0.0033734, abs=1e-6)
    assert 450 < haversine_m(*WENZHOU, lon, lat) < 650


def test_gcj02_round_trip_across_wenzhou_within_a_centimetre(wenzhou_grid):
    lon, lat = wenzhou_grid
    gcj_lon, gcj_lat = crs.wgs84_to_gcj02(lon, lat)
    back_lon, back_lat = crs.gcj02_to_wgs84(gcj_lon, gcj_lat)
    assert np.max(haversine_m(lon, lat, gcj_lon, gcj_lat)) > 400  # the offset is really applied
    assert np.max(haversine_m(lon, lat, back_lon, back_lat)) < 0.01


def test_gcj02_inverse_beats_the_one_step_approximation(wenzhou_grid):
    lon, lat = wenzhou_grid
    gcj_lon, gcj_lat = crs.wgs84_to_gcj02(lon, lat)
    # The one-step inverse subtracts the offset evaluated at the GCJ point.
    fwd_lon, fwd_lat = crs.wgs84_to_gcj02(gcj_lon, gcj_lat)
    one_lon, one_lat = 2 * gcj_lon - fwd_lon, 2 * gcj_lat - fwd_lat
    assert np.max(haversine_m(lon, lat, one_lon, one_lat)) > 0.05
    back_lon, back_lat = crs.gcj02_to_wgs84(gcj_lon, gcj_lat)
    assert np.max(haversine_m(lon, lat, back_lon, back_lat)) < 0.01


def test_bd09_round_trip_across_wenzhou_within_a_centimetre(wenzhou_grid):
    lon, lat = wenzhou_grid
    bd_lon, bd_lat = crs.wgs84_to_bd09(lon, lat)
    back_lon, back_lat = crs.bd09_to_wgs84(bd_lon, bd_lat)
    assert np.max(haversine_m(lon, lat, bd_lon, bd_lat)) > 800
    assert np.max(haversine_m(lon, lat, back_lon, back_lat)) < 0.01
    gcj_lon, gcj_lat = crs.bd09_to_gcj02(*crs.gcj02_to_bd09(lon, lat))
    assert np.max(haversine_m(lon, lat, gcj_lon, gcj_lat)) < 0.01


@pytest.mark.parametrize("point", [(2.3522, 48.8566), (139.69, 35.69), (-74.0, 40.7), (100.5, 0.5)])
def test_points_outside_china_are_not_offset(point):
    assert crs.wgs84_to_gcj02(*point) == point
    assert crs.gcj02_to_wgs84(*point) == point


def test_scalars_give_floats_and_arrays_give_arrays():
    lon, lat = crs.wgs84_to_gcj02(*WENZHOU)
    assert type(lon) is float and type(lat) is float
    lons, lats = crs.gcj02_to_wgs84(np.array([[120.6, 120.7]]), np.array([[28.0, 28.1]]))
    assert lons.shape == lats.shape == (1, 2)
    lons, lats = crs.wgs84_to_gcj02([120.6, 120.7], 28.0)  # broadcasts a scalar latitude
    assert lons.shape == lats.shape == (2,) and np.all(lats != 28.0)


@pytest.mark.parametrize("input_crs", list(InputCRS))
def test_to_storage_and_from_storage_are_inverse(input_crs):
    lon, lat = crs.from_storage(*WENZHOU, input_crs)
    assert crs.to_storage(lon, lat, input_crs) == pytest.approx(WENZHOU, abs=1e-9)


def test_to_storage_converts_offset_datums_and_keeps_cgcs2000():
    assert crs.to_storage(*WENZHOU, InputCRS.CGCS2000) == WENZHOU
    assert crs.to_storage(*WENZHOU, InputCRS.WGS84) == WENZHOU
    assert crs.to_storage(*WENZHOU, InputCRS.GCJ02) == crs.gcj02_to_wgs84(*WENZHOU)
    assert crs.to_storage(*WENZHOU, InputCRS.BD09) == crs.bd09_to_wgs84(*WENZHOU)
    assert crs.to_storage(*WENZHOU, "GCJ02") == crs.gcj02_to_wgs84(*WENZHOU)


def test_transform_geometry_moves_every_vertex_and_keeps_z():
    square = box(120.6, 28.0, 120.7, 28.1)
    moved = crs.transform_geometry(square, InputCRS.WGS84, InputCRS.GCJ02)
    expected = np.array(crs.wgs84_to_gcj02(*np.array(square.exterior.coords).T)).T
    np.testing.assert_allclose(np.array(moved.exterior.coords), expected, atol=1e-12)

    point_z = crs.transform_geometry(Point(120.65, 28.0, 12.5), "BD09", "WGS84")
    assert point_z.has_z and point_z.z == 12.5
    assert (point_z.x, point_z.y) == pytest.approx(crs.bd09_to_wgs84(120.65, 28.0), abs=1e-12)
    assert crs.transform_geometry(square, InputCRS.GCJ02, InputCRS.GCJ02) is square


def test_metric_projection_axis_order_through_epsg_4549():
    projected = crs.to_metric(Point(*WENZHOU))
    # Easting first (false easting 500 km + 0.65° east of CM 120°E), northing second.
    assert projected.x == pytest.approx(563_936.0, abs=1.0)
    assert projected.y == pytest.approx(3_098_612.0, abs=1.0)
    back = crs.from_metric(projected)
    assert (back.x, back.y) == pytest.approx(WENZHOU, abs=1e-9)


def test_metric_distances_agree_with_geodesic_ones():
    line = LineString([(120.6, 27.9), (120.8, 28.1)])
    planar = crs.to_metric(line).length
    assert planar == pytest.approx(geodesic_length_m(line), rel=1e-3)


def test_web_mercator_matches_the_closed_form():
    web = crs.to_web(Point(*WENZHOU))
    radius = 6378137.0
    assert web.x == pytest.approx(radius * math.radians(WENZHOU[0]), abs=0.01)
    expected_y = radius * math.log(math.tan(math.pi / 4 + math.radians(WENZHOU[1]) / 2))
    assert web.y == pytest.approx(expected_y, abs=0.01)


def test_transformers_are_cached():
    assert crs.transformer(4490, 4549) is crs.transformer(4490, 4549)


def test_geodesic_length_along_the_equator():
    # On the equator the geodesic is the equator itself: a * Δλ on GRS80.
    line = LineString([(0.0, 0.0), (0.1, 0.0), (0.2, 0.0)])
    assert geodesic_length_m(line) == pytest.approx(6378137.0 * math.radians(0.2), rel=1e-9)


def test_geodesic_area_matches_metric_projection_and_ignores_winding():
    square = box(120.6, 28.0, 120.7, 28.1)
    reversed_square = Polygon(list(square.exterior.coords)[::-1])
    area = geodesic_area_m2(square)
    assert area == pytest.approx(crs.to_metric(square).area, rel=1e-3)
    assert geodesic_area_m2(reversed_square) == pytest.approx(area, rel=1e-12)


def test_geodesic_area_subtracts_holes():
    outer = box(120.6, 28.0, 120.7, 28.1)
    inner = box(120.62, 28.02, 120.65, 28.05)
    with_hole = Polygon(outer.exterior.coords, [list(inner.exterior.coords)[::-1]])
    expected = geodesic_area_m2(outer) - geodesic_area_m2(inner)
    assert geodesic_area_m2(with_hole) == pytest.approx(expected, rel=1e-9)


def test_measures_reject_wrong_geometry_types():
    with pytest.raises(TypeError):
        geodesic_length_m(Point(120.6, 28.0))
    with pytest.raises(TypeError):
        geodesic_area_m2(LineString([(120.6, 28.0), (120.7, 28.0)]))


def test_haversine_is_vectorised():
    one_degree = 6371008.7714 * math.pi / 180
    assert haversine_m(120.0, 28.0, 120.0, 29.0) == pytest.approx(one_degree, rel=1e-12)
    distances = haversine_m(np.array([120.0, 120.0]), 28.0, np.array([120.0, 121.0]), 28.0)
    assert distances.shape == (2,)
    assert distances[0] == 0.0 and distances[1] > 90_000
