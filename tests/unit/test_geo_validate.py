"""Coordinate sanity checks, geometry validation and repair, GeoJSON parsing."""

import pytest
from shapely.geometry import (
    LineString,
    MultiPoint,
    MultiPolygon,
    Point,
    Polygon,
    box,
)

from geoserver.geo.validate import (
    CHINA_MAINLAND_BBOX,
    GeometryProblem,
    as_multipolygon,
    check_lonlat,
    parse_geojson_geometry,
    validate_geometry,
)

WENZHOU_BBOX = (119.6, 27.0, 121.3, 28.6)
POLYGONAL = {"Polygon", "MultiPolygon"}


@pytest.fixture
def bowtie_grid():
    """A hand-drawn grid outline whose edges cross at (120.65, 28.01)."""
    return Polygon([(120.6, 28.0), (120.7, 28.02), (120.7, 28.0), (120.6, 28.02), (120.6, 28.0)])


@pytest.fixture
def grid_with_spike():
    """A square grid with a zero-width spike drawn up from its top edge."""
    return Polygon(
        [(120.6, 28.0), (120.7, 28.0), (120.7, 28.1), (120.65, 28.1), (120.65, 28.2),
         (120.65, 28.1), (120.6, 28.1)]
    )  # fmt: skip


def reason_of(call):
    with pytest.raises(GeometryProblem) as info:
        call()
    return info.value


def test_plausible_wenzhou_point_passes():
    check_lonlat(120.65, 28.0)
    check_lonlat(120.65, 28.0, service_area=WENZHOU_BBOX)


def test_swapped_pair_is_named_swapped():
    problem = reason_of(lambda: check_lonlat(28.0, 120.65, field="event.location"))
    assert problem.field == "event.location"
    assert "lon/lat look swapped" in problem.reason
    assert str(problem).startswith("event.location: ")


@pytest.mark.parametrize(("lon", "lat"), [(563936.0, 3098612.0), (500000, 28.0), (120.6, 3.1e6)])
def test_projected_metres_are_detected(lon, lat):
    assert "projected metres" in reason_of(lambda: check_lonlat(lon, lat)).reason


@pytest.mark.parametrize(
    ("lon", "lat", "words"),
    [
        (190.0, 28.0, "longitude 190"),
        (-181.0, 28.0, "longitude -181"),
        (120.0, 95.0, "latitude 95"),
    ],
)
def test_out_of_range_values_are_rejected(lon, lat, words):
    problem = reason_of(lambda: check_lonlat(lon, lat))
    assert words in problem.reason and "outside" in problem.reason


def test_point_outside_the_service_area_is_rejected():
    problem = reason_of(lambda: check_lonlat(2.35, 48.85))
    assert "service area" in problem.reason
    assert CHINA_MAINLAND_BBOX == (73.0, 3.0, 136.0, 54.0)
    shanghai = (121.47, 31.23)
    check_lonlat(*shanghai)
    assert (
        "service area"
        in reason_of(lambda: check_lonlat(*shanghai, service_area=WENZHOU_BBOX)).reason
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "east", None, True])
def test_non_numbers_are_rejected(bad):
    problem = reason_of(lambda: check_lonlat(bad, 28.0))
    assert "longitude must be" in problem.reason


def test_swapped_check_follows_the_configured_area():
    whole_world = (-180.0, -90.0, 180.0, 90.0)
    assert (
        "swapped" in reason_of(lambda: check_lonlat(28.0, 120.65, service_area=whole_world)).reason
    )
    check_lonlat(2.35, 48.85, service_area=whole_world)


def test_valid_polygon_passes_unchanged():
    square = box(120.6, 28.0, 120.7, 28.1)
    geom, warnings = validate_geometry(square, expected=POLYGONAL)
    assert geom.equals(square) and warnings == []


def test_polygon_is_promoted_when_multipolygon_is_expected():
    geom, warnings = validate_geometry(box(120.6, 28.0, 120.7, 28.1), expected={"MultiPolygon"})
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 1 and warnings == []


def test_point_is_promoted_to_multipoint():
    geom, _ = validate_geometry(Point(120.65, 28.0), expected={"MultiPoint"})
    assert geom.equals(MultiPoint([(120.65, 28.0)]))


def test_bowtie_polygon_is_repaired_with_a_warning(bowtie_grid):
    geom, warnings = validate_geometry(bowtie_grid, expected={"MultiPolygon"}, field="grid.geom")
    assert geom.is_valid and geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    assert geom.area == pytest.approx(0.001, rel=1e-9)
    assert warnings == ["self-intersection at (120.65 28.01) repaired into 2 parts"]


def test_bowtie_is_rejected_where_only_a_polygon_is_allowed(bowtie_grid):
    problem = reason_of(lambda: validate_geometry(bowtie_grid, expected={"Polygon"}))
    assert "self-intersection at (120.65 28.01)" in problem.reason
    assert "MultiPolygon" in problem.reason


def test_spike_is_removed_without_losing_area(grid_with_spike):
    geom, warnings = validate_geometry(grid_with_spike, expected=POLYGONAL)
    assert geom.is_valid and geom.geom_type == "Polygon"
    assert geom.area == pytest.approx(grid_with_spike.area, rel=1e-9)
    assert warnings == ["self-intersection at (120.65 28.2) repaired"]


def test_repair_that_loses_area_is_refused():
    square = box(120.6, 28.0, 120.7, 28.1)
    # Two parts overlapping by a quarter: the union has 12.5% less area than the parts.
    overlapping = MultiPolygon([square, box(120.65, 28.05, 120.75, 28.15)])
    problem = reason_of(lambda: validate_geometry(overlapping, expected={"MultiPolygon"}))
    assert "without losing area" in problem.reason


def test_ring_that_cancels_itself_is_refused():
    ring = list(box(120.6, 28.0, 120.7, 28.1).exterior.coords)
    shell_as_its_own_hole = Polygon(ring, [ring])
    problem = reason_of(lambda: validate_geometry(shell_as_its_own_hole, expected=POLYGONAL))
    assert "cannot be repaired" in problem.reason


def test_sliver_overlap_between_parts_is_repaired():
    parts = MultiPolygon([box(120.6, 28.0, 120.7, 28.1), box(120.69999, 28.0, 120.8, 28.1)])
    geom, warnings = validate_geometry(parts, expected={"MultiPolygon"})
    assert geom.is_valid and len(warnings) == 1
    assert geom.area == pytest.approx(box(120.6, 28.0, 120.8, 28.1).area, rel=1e-9)


@pytest.mark.parametrize("empty", [Polygon(), MultiPolygon(), Point(), None])
def test_empty_geometry_is_rejected(empty):
    assert reason_of(lambda: validate_geometry(empty, expected=POLYGONAL)).reason == (
        "geometry is empty"
    )


def test_wrong_geometry_type_is_rejected():
    problem = reason_of(
        lambda: validate_geometry(
            LineString([(120.6, 28.0), (120.7, 28.0)]), expected=POLYGONAL, field="grid.geom"
        )
    )
    assert problem.field == "grid.geom"
    assert problem.reason == "expected MultiPolygon or Polygon, got LineString"


def test_multipolygon_is_not_demoted_to_polygon():
    parts = MultiPolygon([box(120.6, 28.0, 120.7, 28.1), box(120.8, 28.0, 120.9, 28.1)])
    assert (
        "got MultiPolygon"
        in reason_of(lambda: validate_geometry(parts, expected={"Polygon"})).reason
    )


def test_geometry_coordinates_get_the_point_checks():
    swapped = Polygon([(28.0, 120.6), (28.0, 120.7), (28.1, 120.7)])
    assert "swapped" in reason_of(lambda: validate_geometry(swapped, expected=POLYGONAL)).reason
    metres = box(563_000, 3_098_000, 564_000, 3_099_000)
    assert "metres" in reason_of(lambda: validate_geometry(metres, expected=POLYGONAL)).reason
    abroad = box(2.3, 48.8, 2.4, 48.9)
    assert "service area" in reason_of(lambda: validate_geometry(abroad, expected=POLYGONAL)).reason
    half_abroad = box(120.6, 28.0, 140.0, 28.1)
    assert (
        "service area"
        in reason_of(lambda: validate_geometry(half_abroad, expected=POLYGONAL)).reason
    )


def test_non_finite_coordinates_are_rejected():
    problem = reason_of(lambda: validate_geometry(Point(120.6, float("nan")), expected={"Point"}))
    assert "finite" in problem.reason


def test_as_multipolygon():
    square = box(120.6, 28.0, 120.7, 28.1)
    assert as_multipolygon(square).equals(MultiPolygon([square]))
    multi = MultiPolygon([square])
    assert as_multipolygon(multi) is multi
    with pytest.raises(TypeError):
        as_multipolygon(Point(120.6, 28.0))


def test_parse_geojson_polygon():
    geom = parse_geojson_geometry(
        {
            "type": "Polygon",
            "coordinates": [[[120.6, 28.0], [120.7, 28.0], [120.7, 28.1], [120.6, 28.0]]],
        }
    )
    assert geom.geom_type == "Polygon" and geom.bounds == (120.6, 28.0, 120.7, 28.1)


def test_parse_geojson_point_with_z_and_collections():
    assert parse_geojson_geometry({"type": "Point", "coordinates": [120.6, 28.0, 5]}).has_z
    collection = parse_geojson_geometry(
        {
            "type": "GeometryCollection",
            "geometries": [
                {"type": "Point", "coordinates": [120.6, 28.0]},
                {"type": "LineString", "coordinates": [[120.6, 28.0], [120.7, 28.1]]},
            ],
        }
    )
    assert [g.geom_type for g in collection.geoms] == ["Point", "LineString"]


def test_parse_then_validate_rejects_empty_coordinates():
    geom = parse_geojson_geometry({"type": "Polygon", "coordinates": []})
    assert reason_of(lambda: validate_geometry(geom, expected=POLYGONAL)).reason == (
        "geometry is empty"
    )


RING = [[120.6, 28.0], [120.7, 28.0], [120.7, 28.1], [120.6, 28.0]]


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        (None, "expected a GeoJSON geometry object"),
        ("POINT (120 28)", "expected a GeoJSON geometry object"),
        ({}, "missing 'type'"),
        ({"coordinates": [120.6, 28.0]}, "missing 'type'"),
        ({"type": "point", "coordinates": [120.6, 28.0]}, "unknown geometry type 'point'"),
        ({"type": ["Point"], "coordinates": [120.6, 28.0]}, "unknown geometry type"),
        ({"type": "Feature", "geometry": None}, "got a Feature"),
        ({"type": "Point"}, "missing 'coordinates'"),
        ({"type": "Point", "coordinates": [120.6]}, "[lon, lat]"),
        ({"type": "Point", "coordinates": [120.6, 28.0, 1.0, 2.0]}, "[lon, lat]"),
        ({"type": "Point", "coordinates": ["120.6", 28.0]}, "finite numbers"),
        ({"type": "Point", "coordinates": [True, 28.0]}, "finite numbers"),
        ({"type": "Point", "coordinates": [float("nan"), 28.0]}, "finite numbers"),
        ({"type": "Point", "coordinates": {"lon": 120.6}}, "expected a position"),
        ({"type": "Point", "coordinates": [[120.6, 28.0]]}, "too deeply nested for a Point"),
        ({"type": "LineString", "coordinates": [[120.6, 28.0]]}, "at least 2 positions"),
        ({"type": "LineString", "coordinates": [120.6, 28.0]}, "not nested deeply enough"),
        ({"type": "Polygon", "coordinates": RING}, "not nested deeply enough for a Polygon"),
        ({"type": "Polygon", "coordinates": [RING[:3]]}, "at least 4 positions"),
        ({"type": "Polygon", "coordinates": [[*RING[:3], [120.6, 28.1]]]}, "not closed"),
        ({"type": "MultiPolygon", "coordinates": [RING]}, "for a MultiPolygon"),
        ({"type": "MultiPolygon", "coordinates": [[]]}, "at least its outer ring"),
        ({"type": "MultiPolygon", "coordinates": [[[RING]]]}, "too deeply nested"),
        ({"type": "MultiPoint", "coordinates": [[120.6, 28.0], "x"]}, "coordinates[1]"),
        ({"type": "GeometryCollection"}, "'geometries' list"),
        ({"type": "GeometryCollection", "geometries": [{"type": "Nope"}]}, "unknown"),
    ],
)
def test_malformed_geojson_gives_a_clear_geometry_problem(obj, words):
    problem = reason_of(lambda: parse_geojson_geometry(obj, field="event.geometry"))
    assert problem.field == "event.geometry"
    assert words in problem.reason


def test_deeply_nested_collections_are_refused():
    obj = {"type": "Point", "coordinates": [120.6, 28.0]}
    for _ in range(50):
        obj = {"type": "GeometryCollection", "geometries": [obj]}
    assert "nested too deeply" in reason_of(lambda: parse_geojson_geometry(obj)).reason


@pytest.mark.parametrize(
    "junk",
    [
        0,
        b"{}",
        [],
        {"type": "Polygon", "coordinates": [[RING[0], None, *RING[1:]]]},
        {"type": "MultiLineString", "coordinates": [[[120.6, 28.0]], 5]},
        {"type": "LineString", "coordinates": "abc"},
        {"type": None, "coordinates": []},
        {"type": "GeometryCollection", "geometries": "abc"},
        {"type": "GeometryCollection", "geometries": [None]},
    ],
)
def test_garbage_only_ever_raises_geometry_problem(junk):
    with pytest.raises(GeometryProblem):
        parse_geojson_geometry(junk)
