"""Patrols in the commander's map: live positions, playing back a track, and the heat layers."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.geo.crs import from_metric
from geoserver.services import patrols
from geoserver.services.patrol_sessions import build_pending_sessions
from tests.e2e.browser import idle, login, rendered, wait_rendered
from tests.e2e.conftest import axe_violations, screenshot
from tests.support.places import ring_inside
from tests.support.users import grid_worker

pytestmark = pytest.mark.e2e

TOWNSHIP = "330302006"
GRID = "330302006071001"
COMMANDER = f"t{TOWNSHIP}"


def _walk(engine, start: datetime) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A walk round the inside of the grid, a fix every 5 s (times in epoch seconds)."""
    ring = ring_inside(engine, GRID, inset_m=20)
    d = np.arange(0, ring.length, 6.0)
    pts = [from_metric(ring.interpolate(x)) for x in d]
    return (start.timestamp() + np.arange(d.size) * 5.0, np.array([p.x for p in pts]),
            np.array([p.y for p in pts]))


@pytest.fixture(scope="module")
def session_id(module_engine, http) -> int:
    """Points sent through the patrol API by a grid worker, built into a record by the job."""
    worker = grid_worker(module_engine, "e2e_pt_worker", GRID)
    start = datetime.now(GOVERNANCE_TZ) - timedelta(hours=2)
    t, lon, lat = _walk(module_engine, start)
    body = {"batch_id": "e2e-walk", "crs": "WGS84", "points": [
        {"t": int(a * 1000), "lon": b, "lat": c, "accuracy": 6.0}
        for a, b, c in zip(t.tolist(), lon.tolist(), lat.tolist(), strict=True)]}
    r = http.post("/api/v1/patrols/points", json=body, headers=worker.headers)
    assert r.status_code == 201, r.text
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        build_pending_sessions(s, rules=patrols.DEFAULT_SETTINGS.rules())
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        sid = s.execute(text("SELECT id FROM patrol_session WHERE user_id = :u"),
                        {"u": worker.id}).scalar()
    assert sid is not None
    return int(sid)


def _head(page) -> list[float]:
    return page.evaluate("() => window.gridgov.playback.head")


def test_play_back_a_track(page, live_server, session_id) -> None:
    login(page, live_server, COMMANDER)
    page.click("#tab-patrols")
    day = datetime.now(GOVERNANCE_TZ) - timedelta(hours=2)
    page.fill("#p-date", day.date().isoformat())
    page.dispatch_event("#p-date", "change")
    page.click(f"#session-list button[data-id='{session_id}']", timeout=20_000)
    page.wait_for_selector("#playback:not([hidden])")
    idle(page)
    # The whole track is drawn; the metrics are the record's.
    assert page.evaluate(
        "() => window.gridgov.map.queryRenderedFeatures({layers: ['track-line']}).length") > 0
    metrics = page.inner_text("#pb-metrics")
    assert "里程" in metrics and "网格覆盖率" in metrics and "km" in metrics
    start = _head(page)
    # Drag the slider to the middle: the head moves along the track.
    page.fill("#pb-slider", "500")
    page.dispatch_event("#pb-slider", "input")
    middle = _head(page)
    assert middle != start
    clock_mid = page.inner_text("#pb-clock")
    # Play at 60× for a moment, then pause: time went on and stays put once paused.
    page.select_option("#pb-speed", "60")
    page.click("#pb-play")
    page.wait_for_function("(c) => document.getElementById('pb-clock').textContent !== c",
                           arg=clock_mid)
    page.click("#pb-play")
    assert page.inner_text("#pb-play") == "播放"
    paused = page.evaluate("() => window.gridgov.playback.t")
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.gridgov.playback.t") == paused
    idle(page)
    assert page.evaluate("""() => window.gridgov.map
        .queryRenderedFeatures({layers: ['track-done-line', 'track-head']}).length""") >= 2
    screenshot(page, "patrol_playback")
    assert axe_violations(page) == []
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_live_positions_and_heat(page, live_server, session_id, http) -> None:
    login(page, live_server, COMMANDER)
    # The worker's last fix is a live position on the map.
    worker_ids = page.evaluate("""() => window.gridgov.playback.live.features
        .map(f => f.properties.username)""")
    assert "e2e_pt_worker" in worker_ids
    wait_rendered(page, ["live-workers"], "username", "e2e_pt_worker")
    # Coverage heat from the day's tracks.
    page.click("#tab-patrols")
    day = (datetime.now(GOVERNANCE_TZ) - timedelta(hours=2)).date().isoformat()
    page.fill("#p-date", day)
    page.dispatch_event("#p-date", "change")
    page.wait_for_selector(f"#session-list button[data-id='{session_id}']")
    page.check("#coverage-heat")
    page.wait_for_function("() => window.gridgov.playback.coveragePoints > 50")
    visibility = "() => window.gridgov.map.getLayoutProperty('coverage-heat', 'visibility')"
    assert page.evaluate(visibility) == "visible"
    # Building density heat (tiles) toggled from the layer switcher: hexagons drawn, then gone.
    page.click("#tab-layers")
    page.check("#layer-heat_buildings")
    idle(page)
    # Cells whose hexagon the tile job has not written yet are drawn as dots.
    heat = ["heat-buildings", "heat-buildings-points"]
    cells = rendered(page, heat, "h3")
    assert len(cells) >= 3
    screenshot(page, "patrol_heat")
    page.uncheck("#layer-heat_buildings")
    idle(page)
    assert rendered(page, heat, "h3") == set()
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_patrol_tracks_tile_layer_opens_playback(page, live_server, session_id) -> None:
    login(page, live_server, COMMANDER)
    assert "巡查轨迹·已结束" not in page.inner_text("#legend")
    # The day of the record, then the tile layer of that day's tracks from the switcher.
    page.click("#tab-patrols")
    day = (datetime.now(GOVERNANCE_TZ) - timedelta(hours=2)).date().isoformat()
    page.fill("#p-date", day)
    page.dispatch_event("#p-date", "change")
    page.click("#tab-layers")
    page.check("#layer-patrol_tracks")
    page.wait_for_function("""(id) => window.gridgov.map
        .queryRenderedFeatures({layers: ['patrol-tracks']}).some(f => f.id === id)""",
                           arg=session_id, timeout=20_000)
    assert "巡查轨迹·已结束" in page.inner_text("#legend")
    screenshot(page, "patrol_tracks_layer")
    # A click on the track plays it back.
    point = page.evaluate("""(id) => {
        const m = window.gridgov.map;
        const f = m.queryRenderedFeatures({layers: ['patrol-tracks']}).find(x => x.id === id);
        const line = f.geometry.type === 'LineString' ? f.geometry.coordinates
                                                      : f.geometry.coordinates[0];
        const p = m.project(line[Math.floor(line.length / 2)]);
        const box = m.getCanvas().getBoundingClientRect();
        return {x: p.x + box.left, y: p.y + box.top};
    }""", session_id)
    page.mouse.click(point["x"], point["y"])
    page.wait_for_selector("#playback:not([hidden])")
    page.wait_for_function("(id) => window.gridgov.playback.session?.id === id", arg=session_id)
    assert page.is_visible("#pane-patrols")
    assert page.console_errors == []  # type: ignore[attr-defined]
