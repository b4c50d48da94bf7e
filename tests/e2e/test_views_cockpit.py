"""Statistics in the map (charts, choropleth, events heat), the leader and work views, and the
big screen (cockpit) at 1920×1080."""

from __future__ import annotations

import pytest

from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.services.statistics import refresh_events, refresh_objects
from tests.e2e.browser import DEMO_PASSWORD, idle, login, rendered
from tests.e2e.conftest import axe_violations, open_page, screenshot
from tests.support.places import point_in
from tests.support.users import grid_worker, township_commander

pytestmark = pytest.mark.e2e

TOWNSHIP = "330302006"
GRIDS = ("330302006045001", "330302006071001", "330302006073001")
COMMANDER = f"t{TOWNSHIP}"



class Reporter:
    """Grid workers of three grids who report events through the API."""

    def __init__(self, engine, http) -> None:
        self.http = http
        self.workers = []
        for i, grid in enumerate(GRIDS):
            worker = grid_worker(engine, f"e2e_st_w{i}", grid)
            self.workers.append((grid, worker, list(point_in(engine, grid))))

    def report(self, i: int, type_code: str) -> dict:
        """Report an event in grid ``i`` and return it."""
        grid, worker, point = self.workers[i]
        r = self.http.post("/api/v1/events", headers=worker.headers, json={
            "type_code": type_code, "description": f"测试事件 {grid}", "crs": "CGCS2000",
            "location": {"type": "Point", "coordinates": point}})
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture(scope="module")
def reporter(module_engine, http, catalogue) -> Reporter:
    return Reporter(module_engine, http)


@pytest.fixture(scope="module")
def events(module_engine, reporter) -> list[dict]:
    """Events reported today in three grids, and the statistics tables refreshed (the job)."""
    out = [reporter.report(i, code) for i in range(len(GRIDS))
           for code in ("0301", "0401")[: 1 + i % 2]]
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        refresh_objects(s)
        refresh_events(s, full=True)
    return out


def test_statistics_charts_choropleth_and_events_heat(page, live_server, events) -> None:
    login(page, live_server, COMMANDER)
    page.click("#tab-stats")
    page.wait_for_function("() => window.gridgov.stats.rows.length > 0")
    # Three charts drawn by ECharts from the statistics API.
    series = page.evaluate("""() => ['chart-trend', 'chart-types', 'chart-ranking'].map(id =>
        echarts.getInstanceByDom(document.getElementById(id)).getOption().series
          .map(s => s.data.length))""")
    assert all(sum(s) > 0 for s in series), series
    reported = page.evaluate("""() => echarts
        .getInstanceByDom(document.getElementById('chart-trend'))
        .getOption().series[0].data.reduce((a, b) => a + b, 0)""")
    assert reported >= len(events)
    # The choropleth colours the villages by events per 1,000 residents.
    page.check("#s-choropleth")
    idle(page)
    villages = page.evaluate("""() => [...new Set(window.gridgov.map
        .queryRenderedFeatures({layers: ['choropleth-fill']})
        .filter(f => f.state && f.state.cls >= 0).map(f => f.properties.code))]""")
    assert len(villages) >= 10 and all(v.startswith(TOWNSHIP) for v in villages)
    # Classes follow the rates: a higher rate is never in a lower class; the extremes are the
    # ramp's ends.
    painted = page.evaluate("""() => window.gridgov.stats.rows.map(r => [r.events_per_1000,
        window.gridgov.map.getFeatureState({source: 'regions', sourceLayer: 'regions',
                                            id: r.code}).cls])""")
    ordered = sorted(painted)
    assert all(a[1] <= b[1] for a, b in zip(ordered, ordered[1:], strict=False)), ordered
    assert ordered[0][1] == 0 and ordered[-1][1] == 4
    assert "每千人事件数" in page.inner_text("#choropleth-legend")
    screenshot(page, "statistics_choropleth")
    assert axe_violations(page) == []
    # Events heat on H3 cells, toggled from the layer switcher (the choropleth off).
    page.click("#tab-layers")
    page.uncheck("#layer-choropleth")
    page.check("#layer-events-hot")
    page.wait_for_function("() => window.gridgov.map.getSource('hot') && "
                           "window.gridgov.stats.heatFor !== null")
    page.wait_for_timeout(500)
    idle(page)
    cells = rendered(page, ["events-hot"], "cell")
    assert len(cells) >= len(GRIDS)
    screenshot(page, "statistics_events_heat")
    assert page.console_errors == []  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def broadcast(module_engine, http) -> dict:
    """A notice (通知公告) sent to the township by a commander of it."""
    sender = township_commander(module_engine, "e2e_st_sender", TOWNSHIP, on_duty=False)
    r = http.post("/api/v1/mobile/broadcasts", headers=sender.headers, json={
        "region_code": TOWNSHIP, "title": "防台风通知", "body": "今晚全体网格员到岗值守。"})
    assert r.status_code == 201, r.text
    return r.json()


def test_leader_and_work_views(page, live_server, events, broadcast) -> None:
    login(page, live_server, COMMANDER)
    page.click("#nav-leader")
    page.wait_for_selector("#view-leader[data-loaded]")
    figures = page.inner_text("#leader-figures")
    assert "实有人口" in figures and "近一年办结率" in figures
    sources = page.evaluate("""() => echarts.getInstanceByDom(
        document.getElementById('leader-sources')).getOption().series[0].data""")
    assert sum(d["value"] for d in sources) >= len(events)
    assert "网格总数" in page.inner_text("#leader-grids")
    screenshot(page, "leader_view")
    assert axe_violations(page) == []
    page.click("#nav-work")
    page.wait_for_selector("#work-todos .event-item")
    todo_ids = page.eval_on_selector_all("#work-todos button[data-id]",
                                         "bs => bs.map(b => Number(b.dataset.id))")
    assert {e["id"] for e in events} <= set(todo_ids)
    assert int(page.inner_text("#work-dashboard button[data-q=to_accept] b")) >= len(events)
    notice = page.wait_for_selector(f"#work-announcements details[data-id='{broadcast['id']}']")
    assert "防台风通知" in notice.inner_text()
    assert page.eval_on_selector(f"details[data-id='{broadcast['id']}']",
                                 "d => d.parentElement.classList.contains('unread')")
    with page.expect_response(lambda r: r.url.endswith(f"/broadcasts/{broadcast['id']}/read")):
        page.click(f"details[data-id='{broadcast['id']}'] summary")
    assert "全体网格员" in notice.inner_text()
    screenshot(page, "work_view")
    assert axe_violations(page) == []
    # A to-do opens on the map.
    page.click(f"#work-todos button[data-id='{events[0]['id']}']")
    page.wait_for_selector(f"#event-detail[data-id='{events[0]['id']}']")
    assert page.is_hidden("#view-work")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_cockpit_at_1920x1080(browser, live_server, events, reporter) -> None:
    context, page = open_page(browser, width=1920, height=1080)
    # Anonymous: sent to log in, and back to the cockpit afterwards.
    page.goto(live_server + "/cockpit/")
    page.wait_for_selector("#login-form")
    page.fill("#username", COMMANDER)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/cockpit/")
    page.wait_for_function("() => window.gridgov.refreshedAt && window.gridgov.map.loaded()",
                           timeout=60_000)
    idle(page)
    assert "五马街道" in page.inner_text("#ck-title")
    assert page.locator("#ck-figures .ck-figure").count() == 8
    # Open events come from the events tile layer (the feature id is the event id).
    drawn = page.evaluate("""() => [...new Set(window.gridgov.map
        .queryRenderedFeatures({layers: ['ck-events']}).map(f => f.id))]""")
    assert {e["id"] for e in events} <= set(drawn)
    listed = page.eval_on_selector_all("#ck-events li[data-id]",
                                       "ls => ls.map(l => Number(l.dataset.id))")
    assert {e["id"] for e in events} <= set(listed)
    for chart in ("ck-sources", "ck-types", "ck-trend", "ck-ranking"):
        assert page.evaluate("(id) => echarts.getInstanceByDom(document.getElementById(id))"
                             ".getOption().series.length", chart) > 0, chart
    # Everything fits the screen: no scrolling on a wall display.
    assert page.evaluate("() => document.documentElement.scrollHeight") <= 1080
    # Readable across a room: the key figures are big.
    size = page.eval_on_selector("#ck-figures .ck-figure b",
                                 "b => parseFloat(getComputedStyle(b).fontSize)")
    assert size >= 32
    # It refreshes by itself: a new event shows up in the live list (polled every 10 s).
    fresh = reporter.report(0, "0401")
    page.wait_for_selector(f"#ck-events li[data-id='{fresh['id']}']", timeout=30_000)
    # … and the map re-reads its event tiles to draw it.
    page.wait_for_function("""(id) => window.gridgov.map
        .queryRenderedFeatures({layers: ['ck-events']}).some(f => f.id === id)""",
                           arg=fresh["id"], timeout=20_000)
    assert f"{COMMANDER}" in page.eval_on_selector("#watermark", "c => c.dataset.text")
    screenshot(page, "cockpit_1920")
    assert axe_violations(page) == []
    assert page.console_errors == []
    context.close()
