"""The demo patrol generator makes tracks that look like phone tracks to the cleaner."""

from __future__ import annotations

import numpy as np
from shapely.geometry import box

from geoserver.demo.steps.tracks import _rows, patrol
from geoserver.domain.tracks import DropReason, PointKind, Stream, clean, find_gaps, split_sessions


def test_a_demo_patrol_has_a_jump_a_stop_and_markers_and_makes_one_session() -> None:
    area = box(500_000, 3_100_000, 500_350, 3_100_300)  # a 350 m × 300 m grid, in EPSG:4549
    rows = _rows(patrol(area, 1_767_225_600.0, np.random.default_rng(5)))
    s = Stream.of(rows["t"], rows["lon"], rows["lat"], rows["acc"], rows["kind"])
    assert rows["kind"][0] == PointKind.START and rows["kind"][-1] == PointKind.STOP
    cleaned = clean(s)
    assert 3 <= (cleaned.reasons == DropReason.JUMP).sum() <= 5
    assert (cleaned.reasons == DropReason.JITTER).sum() > 20  # the stop at a household
    assert len(split_sessions(s, cleaned)) == 1
    assert any(g.cause == "standing_still" for g in find_gaps(s, cleaned))
    assert 60 * 60 <= rows["t"][-1] - rows["t"][0] <= 100 * 60
