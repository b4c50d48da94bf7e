"""Patrol tracks (巡查轨迹): clean a worker's GPS stream, find its gaps, split it into patrol
sessions and measure them. Pure numpy on arrays, no I/O.

A stream is time-ordered rows of one worker: fixes (lon/lat in storage CRS, accuracy in metres)
and markers the phone sends (patrol start/stop, "no fix" heartbeats, "page hidden"). Cleaning
never deletes a row: it returns, for each row, whether it is kept and why it was dropped.

Real phone tracks jump by hundreds of metres indoors (Wi-Fi and cell positioning) for a few
fixes and come back; a naive sum of steps counts each jump twice. Jumps are found as short
runs of fixes that are unreachable at a plausible speed from the fixes around them, while
those surrounding fixes are reachable from each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import numpy as np
import numpy.typing as npt
import shapely
from numpy.lib.stride_tricks import sliding_window_view
from shapely.geometry import LineString, MultiPolygon, Polygon

from geoserver.geo.h3cells import cells_for_points, polygon_cells
from geoserver.geo.measure import EARTH_MEAN_RADIUS_M, geodesic_length_m, haversine_m

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: H3 resolution of coverage cells (~15,000 m² hexagons, ~66 m edge).
COVERAGE_RES = 10


class PointKind(IntEnum):
    """What a stream row is: a position fix or a marker the phone sent (stored as smallint)."""

    FIX = 0
    START = 1
    STOP = 2
    NO_FIX = 3
    HIDDEN = 4


class DropReason(IntEnum):
    """Why cleaning dropped a fix (stored as smallint; NULL means kept or not a fix)."""

    POOR_ACCURACY = 1
    DUPLICATE = 2
    JUMP = 3
    JITTER = 4


class GapCause(StrEnum):
    """Likely cause of a gap between kept fixes: no_fix (the phone reported without a usable
    fix), app_hidden (the phone said the page went to the background), standing_still (the
    worker did not move), app_stopped (nothing heard: app closed or killed, cause unknown)."""

    NO_FIX = "no_fix"
    APP_HIDDEN = "app_hidden"
    STANDING_STILL = "standing_still"
    APP_STOPPED = "app_stopped"


class TravelMode(StrEnum):
    """How the worker moves on patrol: walk 步行, bicycle 自行车/电动车."""

    WALK = "walk"
    BICYCLE = "bicycle"


@dataclass(frozen=True)
class TrackRules:
    """Thresholds for cleaning, gaps, sessions and metrics."""

    max_accuracy_m: float = 50.0
    #: Highest plausible speed per mode; e-bikes in town rarely exceed 36 km/h.
    max_speed_mps: dict[TravelMode, float] = field(
        default_factory=lambda: {TravelMode.WALK: 3.0, TravelMode.BICYCLE: 10.0})
    #: Extra distance allowed on top of speed × time: two fixes each off by their error.
    jump_slack_m: float = 30.0
    #: Steps longer than this are gaps, not jumps: after minutes anyone may be anywhere.
    jump_max_gap_s: float = 300.0
    #: A run of fixes is trusted (an anchor) from this many points and this many seconds on.
    anchor_points: int = 5
    anchor_seconds: float = 90.0
    #: Standing still: fixes that stay within this radius for at least still_seconds.
    jitter_radius_m: float = 15.0
    still_seconds: float = 30.0
    #: A pause between kept fixes longer than this is reported as a gap.
    gap_seconds: float = 120.0
    #: A gap longer than this ends a patrol session.
    session_gap_seconds: float = 20 * 60.0
    min_session_points: int = 3
    min_session_seconds: float = 60.0
    #: A place or building is visited when the track passes within this distance.
    visit_radius_m: float = 30.0
    #: Coverage densifies steps longer than this before looking up H3 cells.
    densify_m: float = 20.0
    #: Mode used for jump speed limits; None picks it from the track's typical speed.
    mode: TravelMode | None = None
    #: Typical (75th percentile) step speed above which a track counts as ridden.
    riding_speed_mps: float = 2.5

    def speed_limit(self, mode: TravelMode) -> float:
        """Return the highest plausible speed for a mode in m/s."""
        return self.max_speed_mps[mode]


@dataclass(frozen=True)
class IngestLimits:
    """What a batch or a file of points may hold, and how far from now its times may lie."""

    max_points: int = 20_000
    max_file_bytes: int = 10 * 1024 * 1024
    max_file_points: int = 200_000
    max_past_days: float = 366.0
    max_future_seconds: float = 300.0


@dataclass(frozen=True)
class Stream:
    """One worker's time-ordered rows: times in epoch seconds, storage lon/lat (NaN for markers
    without a position), accuracy in metres (NaN unknown) and the row kind."""

    t: FloatArray
    lon: FloatArray
    lat: FloatArray
    accuracy: FloatArray
    kind: IntArray

    @classmethod
    def of(cls, t: npt.ArrayLike, lon: npt.ArrayLike, lat: npt.ArrayLike,
           accuracy: npt.ArrayLike | None = None, kind: npt.ArrayLike | None = None) -> Stream:
        """Build a stream from array-likes; raise ValueError unless sorted by time."""
        ta = np.asarray(t, dtype=np.float64)
        n = ta.size
        acc = np.full(n, np.nan) if accuracy is None else np.asarray(accuracy, dtype=np.float64)
        kd = np.zeros(n, np.int64) if kind is None else np.asarray(kind, dtype=np.int64)
        stream = cls(ta, np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64),
                     acc, kd)
        if any(a.shape != (n,) for a in (stream.lon, stream.lat, acc, kd)):
            raise ValueError("stream arrays must all have the same length")
        if n > 1 and bool(np.any(np.diff(ta) < 0)):
            raise ValueError("stream must be sorted by time")
        return stream

    def __len__(self) -> int:
        return int(self.t.size)


@dataclass(frozen=True)
class Cleaned:
    """Cleaning result per stream row: kept fixes, the drop reason (0 = not dropped), and
    whether the row's stretch of track was ridden (else walked)."""

    kept: BoolArray
    reasons: npt.NDArray[np.int8]
    ridden: BoolArray

    @property
    def mode(self) -> TravelMode:
        """Return the mode of most kept fixes."""
        return self.mode_of(np.flatnonzero(self.kept))

    def mode_of(self, rows: IntArray) -> TravelMode:
        """Return the mode of most of these rows."""
        ridden = bool(rows.size) and self.ridden[rows].mean() > 0.5
        return TravelMode.BICYCLE if ridden else TravelMode.WALK


@dataclass(frozen=True)
class Gap:
    """A pause between two consecutive kept fixes, with its likely cause."""

    start: float
    end: float
    cause: GapCause

    @property
    def seconds(self) -> float:
        """Return the gap's length in seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class Places:
    """Points of key places and buildings to check visits against (ids with their kind)."""

    kinds: tuple[str, ...]
    ids: IntArray
    lon: FloatArray
    lat: FloatArray

    @classmethod
    def empty(cls) -> Places:
        """Return no places."""
        return cls((), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))


@dataclass(frozen=True)
class GridArea:
    """The worker's grid: its outline (lon/lat), its H3 coverage cells and places in it."""

    polygon: Polygon | MultiPolygon
    cells: frozenset[int]
    places: Places

    @classmethod
    def of(cls, polygon: Polygon | MultiPolygon, places: Places | None = None) -> GridArea:
        """Build a grid area, computing its H3 cells at the coverage resolution."""
        return cls(polygon, frozenset(polygon_cells(polygon, COVERAGE_RES)),
                   places or Places.empty())


@dataclass(frozen=True)
class Visit:
    """A place or building the track passed within the visit radius."""

    kind: str
    object_id: int
    at: float
    distance_m: float


@dataclass(frozen=True)
class SessionMetrics:
    """Measures of one patrol session (shares are 0..1, None without a grid)."""

    started_at: float
    ended_at: float
    duration_s: float
    mileage_m: float
    in_grid_time_share: float | None
    in_grid_length_share: float | None
    coverage_share: float | None
    cells_visited: int
    visits: list[Visit]
    #: The grid's coverage cells this session visited, and how many cells the grid has: kept
    #: so that coverage over a week or a month is the union of its sessions' cells.
    grid_cells: tuple[int, ...] = ()
    grid_cell_count: int | None = None


# --- geometry helpers ----------------------------------------------------------------------------


def local_xy(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return metres east/north on a plane tangent at the points' mean latitude.

    Good to ~0.1% across a city; used for thresholds (jumps, jitter, visits), never for
    reported lengths, which are geodesic.
    """
    finite = np.isfinite(lat)
    lat0 = float(np.mean(lat[finite])) if finite.any() else 0.0
    k = np.pi / 180.0 * EARTH_MEAN_RADIUS_M
    return lon * k * np.cos(np.radians(lat0)), lat * k


def _implausible(dt: FloatArray, dist: FloatArray, vmax: float, slack: float) -> BoolArray:
    """Return where covering dist metres in dt seconds needs more than vmax (plus slack)."""
    return dist > vmax * np.abs(dt) + slack


def _dist(x: FloatArray, y: FloatArray, i: IntArray, j: IntArray) -> FloatArray:
    return np.hypot(x[j] - x[i], y[j] - y[i])


def detect_mode(t: FloatArray, x: FloatArray, y: FloatArray, rules: TrackRules) -> TravelMode:
    """Guess walking or riding from the typical speed of a stretch of track.

    Speeds are taken over ~30 s baselines: over one 5 s step, 4 m of GPS noise alone looks
    like 1–2 m/s, over 30 s it fades against real movement.
    """
    if rules.mode is not None:
        return rules.mode
    if t.size < 4:
        return TravelMode.WALK
    dts = np.diff(t)
    step = float(np.median(dts[dts > 0])) if (dts > 0).any() else 1.0
    k = int(np.clip(np.ceil(30.0 / step), 1, t.size - 1))
    dt = t[k:] - t[:-k]
    ok = (dt > 0) & (dt <= max(rules.gap_seconds, 60.0))
    if ok.sum() < 3:
        return TravelMode.WALK
    speed = np.hypot(x[k:] - x[:-k], y[k:] - y[:-k])[ok] / dt[ok]
    # The 75th percentile ignores the few huge "speeds" of jumps and the many still fixes.
    fast = float(np.percentile(speed, 75)) > rules.riding_speed_mps
    return TravelMode.BICYCLE if fast else TravelMode.WALK


# --- cleaning ------------------------------------------------------------------------------------


def _segments(brk: BoolArray, m: int) -> tuple[IntArray, IntArray, IntArray]:
    """Split m points at breaks (brk[i] breaks between i and i+1): segment ids, starts, ends."""
    seg = np.concatenate([[0], np.cumsum(brk)]).astype(np.int64)
    starts = np.flatnonzero(np.concatenate([[True], brk]))
    ends = np.concatenate([starts[1:] - 1, [m - 1]])
    return seg, starts, ends


def _neighbour_anchors(anchor: BoolArray) -> tuple[IntArray, IntArray]:
    """For each segment, the nearest anchor segment before it (-1) and after it (n)."""
    n = anchor.size
    ids = np.arange(n)
    before = np.maximum.accumulate(np.where(anchor, ids, -1))
    prev = np.concatenate([[-1], before[:-1]])
    after = np.minimum.accumulate(np.where(anchor, ids, n)[::-1])[::-1]
    nxt = np.concatenate([after[1:], [n]])
    return prev, nxt


def _jump_pass(t: FloatArray, x: FloatArray, y: FloatArray, vmax: float,
               rules: TrackRules) -> BoolArray:
    """Return, for time-ordered fixes, the short runs that are jumps (one pass)."""
    m = t.size
    steps = np.hypot(np.diff(x), np.diff(y))
    dts = np.diff(t)
    brk = _implausible(dts, steps, vmax, rules.jump_slack_m) & (dts <= rules.jump_max_gap_s)
    if not brk.any():
        return np.zeros(m, bool)
    seg, starts, ends = _segments(brk, m)
    npts = ends - starts + 1
    anchor = (npts >= rules.anchor_points) & (t[ends] - t[starts] >= rules.anchor_seconds)
    if not anchor.any():
        anchor[int(np.argmax(npts))] = True  # trust the longest run when none is long enough
    prev, nxt = _neighbour_anchors(anchor)
    nseg = anchor.size
    has_prev, has_next = prev >= 0, nxt < nseg
    prev_end = ends[np.clip(prev, 0, None)]
    next_start = starts[np.clip(nxt, None, nseg - 1)]

    def bad(i: IntArray, j: IntArray) -> BoolArray:
        return _implausible(t[j] - t[i], _dist(x, y, i, j), vmax, rules.jump_slack_m)

    bad_in = has_prev & bad(prev_end, starts)
    bad_out = has_next & bad(ends, next_start)
    # Jumping over the run must be plausible: the worker's own fixes before and after it
    # connect, so the run was a detour of the fix, not of the worker.
    skip_ok = ~(has_prev & has_next) | ~bad(prev_end, next_start)
    drop_seg = ~anchor & (bad_in | bad_out) & (skip_ok | (bad_in & bad_out))
    return drop_seg[seg]


def _jumps(t: FloatArray, x: FloatArray, y: FloatArray, vmax: float,
           rules: TrackRules) -> BoolArray:
    """Return which fixes are jumps, re-segmenting after each pass (nested detours)."""
    drop = np.zeros(t.size, bool)
    for _ in range(4):
        idx = np.flatnonzero(~drop)
        if idx.size < 3:
            break
        found = _jump_pass(t[idx], x[idx], y[idx], vmax, rules)
        if not found.any():
            break
        drop[idx[found]] = True
    return drop


def _jitter(t: FloatArray, x: FloatArray, y: FloatArray, rules: TrackRules) -> BoolArray:
    """Return the fixes inside standing-still runs except each run's first and last."""
    n = t.size
    if n < 3:
        return np.zeros(n, bool)
    dts = np.diff(t)
    step = float(np.median(dts[dts > 0])) if (dts > 0).any() else 1.0
    w = int(np.clip(np.ceil(rules.still_seconds / step) + 1, 3, 120))
    if n < w:
        return np.zeros(n, bool)
    wx, wy = sliding_window_view(x, w), sliding_window_view(y, w)
    # Radius of each window around its centroid: robust to one fix scattered to the side.
    radius = np.hypot(wx - wx.mean(axis=1)[:, None], wy - wy.mean(axis=1)[:, None]).max(axis=1)
    # Drift between the first and last thirds tells slow walking (steady) from jitter (none).
    third = max(1, w // 3)
    drift = np.hypot(wx[:, -third:].mean(axis=1) - wx[:, :third].mean(axis=1),
                     wy[:, -third:].mean(axis=1) - wy[:, :third].mean(axis=1))
    span = t[w - 1:] - t[:n - w + 1]
    still_win = ((radius <= rules.jitter_radius_m) & (drift <= rules.jitter_radius_m / 2)
                 & (span >= rules.still_seconds / 2))
    # A point is still when any still window covers it: count window starts minus ends.
    cover = np.zeros(n + 1, np.int64)
    starts = np.flatnonzero(still_win)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + w, -1)
    still = np.cumsum(cover)[:n] > 0
    prev = np.concatenate([[False], still[:-1]])
    nxt = np.concatenate([still[1:], [False]])
    # Keep each still run's first and last fix: time is kept, distance is not invented.
    return still & prev & nxt


def clean(stream: Stream, rules: TrackRules = TrackRules()) -> Cleaned:
    """Clean a stream: drop poor, duplicate, jumping and jittering fixes, saying why."""
    n = len(stream)
    reasons = np.zeros(n, np.int8)
    fix = (stream.kind == PointKind.FIX) & np.isfinite(stream.lon) & np.isfinite(stream.lat)
    poor = fix & (stream.accuracy > rules.max_accuracy_m)  # NaN (unknown) compares False
    reasons[poor] = DropReason.POOR_ACCURACY
    cand = np.flatnonzero(fix & ~poor)
    # Same timestamp as the previous fix: the phone resent it (milliseconds decide).
    dup = np.concatenate([[False], np.diff(np.round(stream.t[cand], 3)) == 0])
    reasons[cand[dup]] = DropReason.DUPLICATE
    cand = cand[~dup]
    x, y = local_xy(stream.lon, stream.lat)
    ridden = np.zeros(n, bool)
    # Each stretch between long pauses is cleaned on its own, with its own mode: a worker
    # may walk in the morning and ride in the afternoon.
    for part in np.split(cand, np.flatnonzero(np.diff(stream.t[cand]) >
                                              rules.session_gap_seconds) + 1):
        if part.size:
            ridden[part] = _clean_stretch(stream.t, x, y, part, reasons, rules)
    return Cleaned(kept=fix & (reasons == 0), reasons=reasons, ridden=ridden)


def _clean_stretch(t: FloatArray, x: FloatArray, y: FloatArray, cand: IntArray,
                   reasons: npt.NDArray[np.int8], rules: TrackRules) -> bool:
    """Drop jumps and jitter among one stretch's fixes (into reasons); return if ridden."""
    mode = detect_mode(t[cand], x[cand], y[cand], rules)
    jump = _jumps(t[cand], x[cand], y[cand], rules.speed_limit(mode), rules)
    reasons[cand[jump]] = DropReason.JUMP
    cand = cand[~jump]
    jitter = _jitter(t[cand], x[cand], y[cand], rules)
    reasons[cand[jitter]] = DropReason.JITTER
    return mode is TravelMode.BICYCLE


# --- gaps and sessions ---------------------------------------------------------------------------


def _between(flags: BoolArray, a: IntArray, b: IntArray) -> IntArray:
    """Count flagged rows strictly between row indices a and b (a < b)."""
    cs = np.concatenate([[0], np.cumsum(flags)])
    return cs[b] - cs[a + 1]


def find_gaps(stream: Stream, cleaned: Cleaned, rules: TrackRules = TrackRules()) -> list[Gap]:
    """Return the pauses between kept fixes longer than the gap threshold, with their cause."""
    k = np.flatnonzero(cleaned.kept)
    if k.size < 2:
        return []
    dt = np.diff(stream.t[k])
    i = np.flatnonzero(dt > rules.gap_seconds)
    if i.size == 0:
        return []
    a, b = k[i], k[i + 1]
    hidden = _between(stream.kind == PointKind.HIDDEN, a, b) > 0
    jitter = _between(cleaned.reasons == DropReason.JITTER, a, b) > 0
    unusable = (stream.kind == PointKind.NO_FIX) | np.isin(
        cleaned.reasons, [DropReason.POOR_ACCURACY, DropReason.JUMP])
    no_fix = _between(unusable, a, b) > 0
    close = haversine_m(stream.lon[a], stream.lat[a], stream.lon[b],
                        stream.lat[b]) <= rules.jitter_radius_m
    cause = np.where(hidden, 1, np.where(jitter | (close & ~no_fix), 2, np.where(no_fix, 0, 3)))
    names = (GapCause.NO_FIX, GapCause.APP_HIDDEN, GapCause.STANDING_STILL, GapCause.APP_STOPPED)
    return [Gap(float(stream.t[p]), float(stream.t[q]), names[c])
            for p, q, c in zip(a.tolist(), b.tolist(), cause.tolist(), strict=True)]


def split_sessions(stream: Stream, cleaned: Cleaned,
                   rules: TrackRules = TrackRules()) -> list[IntArray]:
    """Split kept fixes into patrol sessions; return each session's row indices.

    A session ends at an explicit stop, a new start, or a gap longer than the session gap;
    fixes after a stop and before the next start are off patrol and belong to no session.
    """
    k = np.flatnonzero(cleaned.kept)
    if k.size == 0:
        return []
    marker = np.isin(stream.kind, [PointKind.START, PointKind.STOP])
    last_marker = np.maximum.accumulate(np.where(marker, np.arange(len(stream)), -1))
    lm = last_marker[k]
    off = (lm >= 0) & (stream.kind[np.clip(lm, 0, None)] == PointKind.STOP)
    boundary = np.zeros(k.size, bool)
    boundary[1:] = (np.diff(stream.t[k]) > rules.session_gap_seconds) | (lm[1:] > k[:-1])
    sid = np.cumsum(boundary)
    sessions = []
    for s in np.unique(sid[~off]):
        rows = k[(sid == s) & ~off]
        long_enough = stream.t[rows[-1]] - stream.t[rows[0]] >= rules.min_session_seconds
        if rows.size >= rules.min_session_points and long_enough:
            sessions.append(rows)
    return sessions


# --- metrics -------------------------------------------------------------------------------------


def _densify(t: FloatArray, lon: FloatArray, lat: FloatArray,
             rules: TrackRules) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Interpolate points along steps longer than densify_m (not across gaps)."""
    if t.size < 2:
        return t, lon, lat
    step = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
    moving = np.diff(t) <= rules.gap_seconds
    parts = np.where(moving, np.ceil(step / rules.densify_m), 1).astype(np.int64).clip(1, 500)
    seg = np.repeat(np.arange(t.size - 1), parts)
    frac = (np.arange(seg.size) - np.repeat(np.cumsum(parts) - parts, parts)) / parts[seg]

    def interp(v: FloatArray) -> FloatArray:
        return np.concatenate([v[seg] + (v[seg + 1] - v[seg]) * frac, v[-1:]])

    return interp(t), interp(lon), interp(lat)


def _visits(t: FloatArray, lon: FloatArray, lat: FloatArray, places: Places,
            radius: float) -> list[Visit]:
    """Return places whose nearest track point lies within radius, with when and how near."""
    if places.ids.size == 0 or t.size == 0:
        return []
    lat0 = np.concatenate([lat, places.lat])
    x, y = local_xy(np.concatenate([lon, places.lon]), lat0)
    tx, ty, px, py = x[:t.size], y[:t.size], x[t.size:], y[t.size:]
    visits = []
    # Chunks keep the place × point distance matrix around a few million cells.
    chunk = max(1, 4_000_000 // max(1, t.size))
    for s in range(0, px.size, chunk):
        d = np.hypot(px[s:s + chunk, None] - tx[None, :], py[s:s + chunk, None] - ty[None, :])
        nearest = np.argmin(d, axis=1)
        dmin = d[np.arange(nearest.size), nearest]
        for j in np.flatnonzero(dmin <= radius).tolist():
            visits.append(Visit(places.kinds[s + j], int(places.ids[s + j]),
                                float(t[nearest[j]]), float(dmin[j])))
    return visits


def _shares(t: FloatArray, lon: FloatArray, lat: FloatArray,
            polygon: Polygon | MultiPolygon) -> tuple[float, float]:
    """Return the shares of time and of length spent inside a polygon.

    Each step counts half for each end inside: exact for steps wholly in or out, and the
    error of a crossing step is at most half a step.
    """
    inside = shapely.contains_xy(polygon, lon, lat).astype(np.float64)
    weight = (inside[:-1] + inside[1:]) / 2.0
    dt = np.diff(t)
    step = haversine_m(lon[:-1], lat[:-1], lon[1:], lat[1:])
    time_share = float((weight * dt).sum() / dt.sum()) if dt.sum() > 0 else 0.0
    length_share = float((weight * step).sum() / step.sum()) if step.sum() > 0 else 0.0
    return time_share, length_share


def measure_session(t: FloatArray, lon: FloatArray, lat: FloatArray,
                    grid: GridArea | None = None,
                    rules: TrackRules = TrackRules()) -> SessionMetrics:
    """Measure a session's kept fixes: duration, geodesic mileage, in-grid shares, coverage
    and visits."""
    if t.size == 0:
        raise ValueError("a session needs at least one fix")
    mileage = geodesic_length_m(LineString(np.column_stack([lon, lat]))) if t.size > 1 else 0.0
    dt_, dlon, dlat = _densify(t, lon, lat, rules)
    cells = set(cells_for_points(dlon, dlat, COVERAGE_RES).tolist())
    time_share = length_share = coverage = None
    visits: list[Visit] = []
    inside: set[int] = set()
    if grid is not None:
        time_share, length_share = (
            _shares(t, lon, lat, grid.polygon) if t.size > 1 else (0.0, 0.0))
        inside = cells & grid.cells
        coverage = len(inside) / len(grid.cells) if grid.cells else 0.0
        visits = _visits(dt_, dlon, dlat, grid.places, rules.visit_radius_m)
    return SessionMetrics(
        started_at=float(t[0]), ended_at=float(t[-1]), duration_s=float(t[-1] - t[0]),
        mileage_m=float(mileage), in_grid_time_share=time_share,
        in_grid_length_share=length_share, coverage_share=coverage,
        cells_visited=len(cells), visits=visits, grid_cells=tuple(sorted(inside)),
        grid_cell_count=None if grid is None else len(grid.cells),
    )


def simplify(t: FloatArray, lon: FloatArray, lat: FloatArray,
             tolerance_m: float) -> IntArray:
    """Return the indices of the fixes a Douglas-Peucker simplification keeps.

    Times ride along as the Z coordinate, which GEOS keeps for the vertices it retains.
    """
    if t.size < 3 or tolerance_m <= 0:
        return np.arange(t.size)
    x, y = local_xy(lon, lat)
    line = LineString(np.column_stack([x, y, np.arange(t.size, dtype=np.float64)]))
    kept = shapely.simplify(line, tolerance_m, preserve_topology=False)
    idx = shapely.get_coordinates(kept, include_z=True)[:, 2]
    return np.unique(np.round(idx).astype(np.int64))
