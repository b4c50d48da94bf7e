"""Track cleaning, gaps, sessions and metrics on synthetic Wenzhou tracks."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import LineString, box

from geoserver.domain.tracks import (
    Cleaned,
    DropReason,
    GapCause,
    GridArea,
    Places,
    PointKind,
    Stream,
    TrackRules,
    TravelMode,
    clean,
    find_gaps,
    measure_session,
    simplify,
    split_sessions,
)
from geoserver.geo.h3cells import cells_for_points
from geoserver.geo.measure import geodesic_length_m, haversine_m

LON0, LAT0 = 120.655, 28.015  # 五马街道, 鹿城区
M_PER_DEG_LAT = 110_950.0
M_PER_DEG_LON = M_PER_DEG_LAT * np.cos(np.radians(LAT0))
T0 = 1_767_225_600.0  # 2026-01-01 08:00 Shanghai


def to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return LON0 + x / M_PER_DEG_LON, LAT0 + y / M_PER_DEG_LAT


def walk(waypoints_m: list[tuple[float, float]], *, speed: float = 1.3, every: float = 5.0,
         noise_m: float = 1.0, seed: int = 7, t0: float = T0):
    """Walk a polyline at constant speed with a fix every `every` seconds; return t, x, y and
    the true length in metres."""
    pts = np.asarray(waypoints_m, dtype=float)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    cum = np.concatenate([[0], np.cumsum(seg)])
    s = np.arange(0, cum[-1], speed * every)
    x = np.interp(s, cum, pts[:, 0])
    y = np.interp(s, cum, pts[:, 1])
    rng = np.random.default_rng(seed)
    x = x + rng.normal(0, noise_m, x.size)
    y = y + rng.normal(0, noise_m, y.size)
    t = t0 + np.arange(s.size) * every
    return t, x, y, float(cum[-1])


def stream_of(t, x, y, accuracy=None, kind=None) -> Stream:
    lon, lat = to_lonlat(np.asarray(x), np.asarray(y))
    return Stream.of(t, lon, lat, accuracy if accuracy is not None else np.full(len(t), 8.0),
                     kind)


def kept_mileage(stream: Stream, cleaned: Cleaned) -> float:
    k = cleaned.kept
    return geodesic_length_m(LineString(np.column_stack([stream.lon[k], stream.lat[k]])))


def raw_mileage(stream: Stream) -> float:
    fix = stream.kind == PointKind.FIX
    return geodesic_length_m(LineString(np.column_stack([stream.lon[fix], stream.lat[fix]])))


STREET_LOOP = [(0, 0), (400, 0), (400, 300), (0, 300), (0, 600), (500, 600)]


def test_indoor_jump_of_300_m_and_back_does_not_inflate_mileage() -> None:
    t, x, y, true_len = walk(STREET_LOOP)
    # Four fixes (20 s) inside a shop: Wi-Fi positioning puts them 300 m away, then back.
    jumped = slice(60, 64)
    x[jumped] += 300.0
    y[jumped] += 20.0
    s = stream_of(t, x, y)
    cleaned = clean(s, TrackRules(mode=TravelMode.WALK))
    assert raw_mileage(s) > true_len + 500  # the naive sum counts the jump twice
    assert (cleaned.reasons[jumped] == DropReason.JUMP).all()
    assert cleaned.kept[59] and cleaned.kept[64]
    assert kept_mileage(s, cleaned) == pytest.approx(true_len, rel=0.04)


def test_jump_at_the_very_start_and_two_detours_in_a_row_are_dropped() -> None:
    t, x, y, true_len = walk(STREET_LOOP, seed=3)
    x[0:2] += 350.0  # first fixes still indoors
    x[80:83] -= 280.0  # a detour west …
    y[83:85] += 250.0  # … straight into another one north
    cleaned = clean(stream_of(t, x, y), TrackRules(mode=TravelMode.WALK))
    assert (cleaned.reasons[[0, 1, 80, 81, 82, 83, 84]] == DropReason.JUMP).all()
    assert kept_mileage(stream_of(t, x, y), cleaned) == pytest.approx(true_len, rel=0.05)


def test_riding_is_detected_and_fast_real_movement_is_kept() -> None:
    t, x, y, true_len = walk(STREET_LOOP * 2, speed=6.0, every=5.0)
    x[30:32] += 400.0  # an e-bike rider still gets jumpy fixes under a flyover
    s = stream_of(t, x, y)
    cleaned = clean(s)
    assert cleaned.mode is TravelMode.BICYCLE
    assert np.flatnonzero(cleaned.reasons == DropReason.JUMP).tolist() == [30, 31]
    assert kept_mileage(s, cleaned) == pytest.approx(true_len, rel=0.04)


def test_standing_still_jitter_collapses_to_the_runs_ends() -> None:
    t1, x1, y1, _ = walk([(0, 0), (300, 0)])
    rng = np.random.default_rng(11)
    n_still = 60  # five minutes at a fix every 5 s, scattered by 4 m
    t2 = t1[-1] + 5 + np.arange(n_still) * 5.0
    x2 = 300 + rng.normal(0, 4, n_still)
    y2 = rng.normal(0, 4, n_still)
    t3, x3, y3, _ = walk([(300, 0), (300, 300)], t0=t2[-1] + 5)
    s = stream_of(np.concatenate([t1, t2, t3]), np.concatenate([x1, x2, x3]),
                  np.concatenate([y1, y2, y3]))
    cleaned = clean(s, TrackRules(mode=TravelMode.WALK))
    still = slice(t1.size, t1.size + n_still)
    assert (cleaned.reasons[still] == DropReason.JITTER).sum() >= n_still - 4
    assert raw_mileage(s) > 800  # 600 m walked plus ~300 m of jitter
    assert kept_mileage(s, cleaned) == pytest.approx(600, rel=0.04)
    gaps = find_gaps(s, cleaned)
    assert [g.cause for g in gaps] == [GapCause.STANDING_STILL]
    assert gaps[0].seconds > 240


def test_slow_strolling_along_shops_is_not_taken_for_standing_still() -> None:
    # 0.6 m/s with a fix every 5 s along an L: collapsing it would cut the corner.
    t, x, y, true_len = walk([(0, 0), (150, 0), (150, 150)], speed=0.6, noise_m=1.0)
    s = stream_of(t, x, y)
    cleaned = clean(s, TrackRules(mode=TravelMode.WALK))
    # Cutting the corner would give ~212 m; 1 m noise on 3 m steps adds a little instead.
    assert true_len * 0.97 < kept_mileage(s, cleaned) <= raw_mileage(s)


def test_duplicates_and_poor_accuracy_are_dropped_with_their_reason() -> None:
    t = T0 + np.array([0, 5, 5, 10, 15, 20, 25.0])
    x = np.array([0, 6, 6, 12, 18, 24, 30.0])
    acc = np.array([5, 5, 5, 120, 5, 5, 5.0])
    s = stream_of(t, x, np.zeros(7), accuracy=acc)
    cleaned = clean(s)
    assert cleaned.reasons.tolist() == [0, 0, DropReason.DUPLICATE, DropReason.POOR_ACCURACY,
                                        0, 0, 0]
    assert cleaned.kept.tolist() == [True, True, False, False, True, True, True]


def test_unknown_accuracy_is_kept() -> None:
    s = stream_of(T0 + np.arange(5) * 5.0, np.arange(5) * 6.0, np.zeros(5),
                  accuracy=np.full(5, np.nan))
    assert clean(s).kept.all()


def _with_pause(kind_between: list[int], *, pause: float = 600.0, moved: float = 400.0):
    """A walk, a pause with marker rows inside it, then a walk elsewhere."""
    t1, x1, y1, _ = walk([(0, 0), (200, 0)])
    t_mid = t1[-1] + np.linspace(10, pause - 10, max(1, len(kind_between)))[:len(kind_between)]
    t2, x2, y2, _ = walk([(200 + moved, 0), (400 + moved, 0)], t0=t1[-1] + pause)
    t = np.concatenate([t1, t_mid, t2])
    x = np.concatenate([x1, np.full(len(kind_between), np.nan), x2])
    y = np.concatenate([y1, np.full(len(kind_between), np.nan), y2])
    kind = np.concatenate([np.zeros(t1.size), kind_between, np.zeros(t2.size)]).astype(int)
    lon, lat = to_lonlat(x, y)
    return Stream.of(t, lon, lat, np.full(t.size, 8.0), kind)


@pytest.mark.parametrize(("markers", "cause"), [
    ([PointKind.NO_FIX] * 5, GapCause.NO_FIX),
    ([PointKind.HIDDEN], GapCause.APP_HIDDEN),
    ([], GapCause.APP_STOPPED),
])
def test_gaps_are_classified_by_what_the_phone_said(markers, cause) -> None:
    s = _with_pause(markers)
    cleaned = clean(s, TrackRules(mode=TravelMode.WALK))
    gaps = find_gaps(s, cleaned)
    assert len(gaps) == 1 and gaps[0].cause is cause
    assert gaps[0].seconds == pytest.approx(600, abs=6)


def test_a_long_gap_splits_sessions_and_a_short_one_does_not() -> None:
    rules = TrackRules(mode=TravelMode.WALK, session_gap_seconds=900)
    short = _with_pause([], pause=600)
    assert len(split_sessions(short, clean(short, rules), rules)) == 1
    long = _with_pause([], pause=1800, moved=100)
    sessions = split_sessions(long, clean(long, rules), rules)
    assert len(sessions) == 2
    assert long.t[sessions[1][0]] - long.t[sessions[0][-1]] == pytest.approx(1800, abs=6)


def test_start_and_stop_markers_split_and_exclude_off_patrol_fixes() -> None:
    t, x, y, _ = walk([(0, 0), (900, 0)])
    n = t.size
    kind = np.zeros(n, int)
    # start … stop, then fixes off patrol, then start again
    kind[[0, 40, 60]] = [PointKind.START, PointKind.STOP, PointKind.START]
    s = stream_of(t, x, y, kind=kind)
    sessions = split_sessions(s, clean(s, TrackRules(mode=TravelMode.WALK)))
    assert len(sessions) == 2
    assert sessions[0][0] == 1 and sessions[0][-1] == 39
    assert sessions[1][0] == 61 and sessions[1][-1] == n - 1


def test_metrics_shares_coverage_and_visits() -> None:
    # Walk 600 m east; the grid is the western half (0..300 m) of a 600 m × 200 m box.
    t, x, y, true_len = walk([(0, 0), (600, 0)], noise_m=0.0)
    lon, lat = to_lonlat(x, y)
    w, s_ = to_lonlat(np.array([-50.0, 300.0]), np.array([-100.0, 100.0]))
    grid_poly = box(w[0], s_[0], w[1], s_[1])
    plon, plat = to_lonlat(np.array([100.0, 150.0, 250.0]), np.array([10.0, 80.0, -25.0]))
    places = Places(("key_place", "building", "building"), np.array([7, 8, 9]), plon, plat)
    grid = GridArea.of(grid_poly, places)
    m = measure_session(t, lon, lat, grid)
    assert m.mileage_m == pytest.approx(true_len, rel=0.01)
    assert m.duration_s == pytest.approx(t[-1] - t[0])
    assert m.in_grid_time_share == pytest.approx(0.5, abs=0.03)
    assert m.in_grid_length_share == pytest.approx(0.5, abs=0.03)
    # Coverage: the grid's cells that the path (sampled every metre) passes through.
    fine = np.arange(0, 600, 1.0)
    passed = set(cells_for_points(*to_lonlat(fine, np.zeros(fine.size)), 10).tolist())
    assert m.coverage_share == pytest.approx(len(passed & grid.cells) / len(grid.cells))
    assert 0 < m.coverage_share < 1
    assert {(v.kind, v.object_id) for v in m.visits} == {("key_place", 7), ("building", 9)}
    near = next(v for v in m.visits if v.object_id == 7)
    assert near.distance_m == pytest.approx(10, abs=1.5)
    assert near.at == pytest.approx(T0 + 100 / 1.3, abs=6)


def test_metrics_without_a_grid_have_no_shares() -> None:
    t, x, y, _ = walk([(0, 0), (100, 0)])
    m = measure_session(t, *to_lonlat(x, y))
    assert m.in_grid_time_share is None and m.coverage_share is None and m.visits == []


def test_simplify_keeps_ends_and_corners_and_maps_back_to_times() -> None:
    t, x, y, _ = walk(STREET_LOOP, noise_m=0.3)
    lon, lat = to_lonlat(x, y)
    keep = simplify(t, lon, lat, 5.0)
    assert keep[0] == 0 and keep[-1] == t.size - 1
    assert 5 <= keep.size < 20
    assert (np.diff(keep) > 0).all()
    # every original fix lies within the tolerance (plus noise) of the simplified line
    line = LineString(np.column_stack(to_lonlat(x[keep], y[keep])))
    far = [haversine_m(p[0], p[1], *line.interpolate(line.project(
        __import__("shapely").Point(p))).coords[0]) for p in zip(lon, lat, strict=True)]
    assert max(far) < 7.0


def test_stream_must_be_sorted() -> None:
    with pytest.raises(ValueError, match="sorted"):
        Stream.of([2.0, 1.0], [LON0, LON0], [LAT0, LAT0])
