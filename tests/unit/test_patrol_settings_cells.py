"""Patrol settings (folded into config.Settings) and the grid cells a session keeps for coverage
over weeks and months (pure, no database)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from shapely.geometry import LineString, box

from geoserver.config import PatrolSettings, Settings
from geoserver.domain.tracks import GridArea, TravelMode, measure_session
from geoserver.geo.crs import from_metric, to_metric


def test_patrol_settings_are_nested_in_settings_and_read_with_their_prefix(monkeypatch) -> None:
    monkeypatch.setenv("GRIDGOV_PATROL_RETENTION_DAYS", "30")
    monkeypatch.setenv("GRIDGOV_PATROL_RETENTION_ACTION", "archive")
    monkeypatch.setenv("GRIDGOV_PATROL_WALK_MAX_SPEED_MPS", "2.5")
    s = Settings().patrol
    assert (s.retention_days, s.retention_action) == (30, "archive")
    assert s.rules().max_speed_mps[TravelMode.WALK] == 2.5
    assert s.rules().session_gap_seconds == s.session_gap_minutes * 60
    assert s.limits().max_points == s.max_batch_points
    monkeypatch.setenv("GRIDGOV_PATROL_RETENTION_ACTION", "shred")
    with pytest.raises(ValidationError):
        PatrolSettings()


def _grid() -> tuple[GridArea, LineString]:
    """A 300 m square grid near Wenzhou and a walk along its western half (lon/lat)."""
    x0, y0 = to_metric(LineString([(120.65, 28.01), (120.651, 28.011)])).coords[0]
    square = from_metric(box(x0, y0, x0 + 300, y0 + 300))
    walk = from_metric(LineString([(x0 + 20, y0 + 20), (x0 + 20, y0 + 280),
                                   (x0 + 120, y0 + 280), (x0 + 120, y0 + 20)]))
    return GridArea.of(square), walk


def test_a_session_keeps_the_grid_cells_it_visited() -> None:
    grid, walk = _grid()
    metric = to_metric(walk)
    d = np.arange(0, metric.length, 6.5)
    pts = [from_metric(metric.interpolate(v)) for v in d]
    lon, lat = np.array([p.x for p in pts]), np.array([p.y for p in pts])
    m = measure_session(np.arange(d.size) * 5.0, lon, lat, grid)
    assert m.grid_cell_count == len(grid.cells) > 0
    assert set(m.grid_cells) <= grid.cells and m.grid_cells == tuple(sorted(m.grid_cells))
    assert m.coverage_share == pytest.approx(len(m.grid_cells) / len(grid.cells))
    assert 0 < m.coverage_share < 1  # half the square
    none = measure_session(np.arange(d.size) * 5.0, lon, lat)
    assert none.grid_cells == () and none.grid_cell_count is None
