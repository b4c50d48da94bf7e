"""The commander's grid map in headless Chromium: login, jurisdiction, drill-down, search."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import axe_violations, screenshot

pytestmark = pytest.mark.e2e

PASSWORD = "Demo-Wenzhou-2026"
WUMA = "330302006"


def _login(page, base: str, username: str) -> None:
    page.goto(base + "/")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#map canvas", timeout=30_000)
    page.wait_for_function("() => window.gridgov.map && window.gridgov.map.loaded()",
                           timeout=60_000)
    _idle(page)


def _idle(page) -> None:
    page.evaluate("""() => new Promise((resolve) => {
        const m = window.gridgov.map;
        if (m.loaded() && m.areTilesLoaded()) { setTimeout(resolve, 300); return; }
        m.once('idle', () => resolve());
    })""")


def _rendered_codes(page, level: str | None = None) -> set[str]:
    return set(page.evaluate("""(level) => window.gridgov.map
        .queryRenderedFeatures({layers: ['regions-line']})
        .filter(f => !level || f.properties.level === level)
        .map(f => f.properties.code)""", level))


def test_login_opens_jurisdiction_and_draws_grids(page, live_server) -> None:
    page.goto(live_server + "/")
    page.wait_for_selector("#login-form")
    page.fill("#username", f"t{WUMA}")
    page.fill("#password", "wrong-password")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.getElementById('login-error').textContent.length > 0")
    # The refused login is logged by the browser as a failed (401) resource: expected here.
    page.console_errors.clear()  # type: ignore[attr-defined]
    _login(page, live_server, f"t{WUMA}")
    grids = _rendered_codes(page, "grid")
    assert len(grids) >= 5, grids
    assert all(code.startswith(WUMA) for code in _rendered_codes(page)), "outside scope drawn"
    # The watermark names the user.
    assert f"t{WUMA}" in page.eval_on_selector("#watermark", "c => c.dataset.text")
    screenshot(page, "grid_map_township")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_drill_down_and_breadcrumb(page, live_server) -> None:
    _login(page, live_server, f"t{WUMA}")
    page.wait_for_selector("#panel-title")
    assert "五马" in page.inner_text("#panel-title")
    # Click the middle of a rendered grid: its 辖区信息 opens with the grid team.
    point = page.evaluate("""() => {
        const m = window.gridgov.map;
        const f = m.queryRenderedFeatures({layers: ['regions-fill']})[0];
        const ring = f.geometry.type === 'Polygon' ? f.geometry.coordinates[0]
                                                   : f.geometry.coordinates[0][0];
        const c = ring.reduce((a, p) => [a[0] + p[0] / ring.length, a[1] + p[1] / ring.length],
                              [0, 0]);
        const box = m.getCanvas().getBoundingClientRect();  // the map sits beside the dock
        const p = m.project(c);
        return {x: p.x + box.left, y: p.y + box.top, code: f.properties.code};
    }""")
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function("(c) => window.gridgov.selected && window.gridgov.selected.length > 9",
                           arg=point["code"])
    panel = page.inner_text("#panel")
    assert "网格长" in panel and "辖区信息" in panel
    crumbs = page.locator("#breadcrumb button")
    assert crumbs.count() >= 3
    screenshot(page, "grid_map_drilldown")
    crumbs.first.click()
    page.wait_for_function("(c) => window.gridgov.selected === c", arg=WUMA)


def test_search_flies_to_region(page, live_server) -> None:
    _login(page, live_server, f"t{WUMA}")
    page.fill("#search-input", "社区")
    page.wait_for_selector("#search-results li[data-i]", timeout=10_000)
    page.click("#search-results li[data-i]")
    page.wait_for_function("() => window.gridgov.selected && window.gridgov.selected.length >= 12")


def test_accessibility_no_serious_violations(page, live_server) -> None:
    page.goto(live_server + "/")
    page.wait_for_selector("#login-form")
    assert axe_violations(page) == []
    _login(page, live_server, f"t{WUMA}")
    assert axe_violations(page) == []


def _rendered_grids(page, layer: str) -> dict[str, set[str]]:
    """Distinct grid codes drawn on ``layer``, by grid type."""
    pairs = page.evaluate("""(layer) => window.gridgov.map.queryRenderedFeatures({layers: [layer]})
        .filter(f => f.properties.level === 'grid')
        .map(f => [f.properties.grid_type || 'general', f.properties.code])""", layer)
    out: dict[str, set[str]] = {}
    for kind, code in pairs:
        out.setdefault(kind, set()).add(code)
    return out


def test_layer_switcher_levels_grid_types_and_legend(page, live_server) -> None:
    _login(page, live_server, f"t{WUMA}")
    switcher = page.inner_text("#layer-list")
    for title in ("区划网格", "在办事件 (按时限着色)", "巡查轨迹 (所选日期)", "事件密度 (H3)"):
        assert title in switcher, title
    # Grids by type: the key grids (重点网格) go, the others stay, villages are untouched.
    before = _rendered_grids(page, "regions-line")
    assert before.get("key") and before.get("general")
    villages = _rendered_codes(page, "village")
    page.uncheck("#layer-list input[data-grid-type=key]")
    _idle(page)
    after = _rendered_grids(page, "regions-line")
    assert "key" not in after and after["general"] == before["general"]
    assert "key" not in _rendered_grids(page, "regions-fill")
    assert _rendered_codes(page, "village") == villages
    # Regions by level: no grid outlines at all, the villages still drawn.
    page.uncheck("#layer-list input[data-level=grid]")
    _idle(page)
    assert _rendered_codes(page, "grid") == set() and _rendered_codes(page, "village") == villages
    page.check("#layer-list input[data-level=grid]")
    page.check("#layer-list input[data-grid-type=key]")
    _idle(page)
    assert _rendered_grids(page, "regions-line") == before
    # The legend lists what is shown: patrol tracks only once they are switched on.
    assert "网格界" in page.inner_text("#legend")
    assert "巡查轨迹·已结束" not in page.inner_text("#legend")
    page.check("#layer-patrol_tracks")
    assert "巡查轨迹·已结束" in page.inner_text("#legend")
    page.uncheck("#layer-regions")
    assert "网格界" not in page.inner_text("#legend")
    screenshot(page, "grid_map_layers")
    assert axe_violations(page) == []
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_right_click_tells_what_is_here(page, live_server) -> None:
    _login(page, live_server, f"t{WUMA}")
    point = page.evaluate("""() => {
        const m = window.gridgov.map;
        const f = m.queryRenderedFeatures({layers: ['regions-fill']})
            .find(x => x.properties.level === 'grid');
        const ring = f.geometry.type === 'Polygon' ? f.geometry.coordinates[0]
                                                   : f.geometry.coordinates[0][0];
        const c = ring.reduce((a, p) => [a[0] + p[0] / ring.length, a[1] + p[1] / ring.length],
                              [0, 0]);
        const box = m.getCanvas().getBoundingClientRect();
        const p = m.project(c);
        return {x: p.x + box.left, y: p.y + box.top};
    }""")
    page.mouse.click(point["x"], point["y"], button="right")
    page.wait_for_function(
        "() => document.getElementById('panel-title')?.textContent === '这里是哪里'")
    panel = page.inner_text("#panel")
    assert "五马街道" in panel and "›" in panel
    assert page.console_errors == []  # type: ignore[attr-defined]
