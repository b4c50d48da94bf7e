"""The grid worker's phone page (/m/) in headless Chromium with a phone viewport and touch:
patrols recorded partly offline arrive once and in order, a report made offline arrives once
(even when its first answer is lost), "app hidden" gaps reach the server, handling and on-site
verification, the 浙政钉 location seam, the insecure-context warning, and accessibility.

Time is sped up through the page's query parameters (?interval=… sampling, ?upload=…).
"""

from __future__ import annotations

import io
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.tracks import TrackRules, TravelMode
from geoserver.geo.crs import wgs84_to_gcj02
from geoserver.services.patrol_sessions import rebuild_worker
from tests.e2e.conftest import ARGS, CHROMIUM, SCREENSHOTS, axe_violations, screenshot
from tests.support.mobile import load_catalogue, mobile_settings, serve
from tests.support.places import grid_of_township, point_in
from tests.support.users import grid_worker, township_commander

pytestmark = pytest.mark.e2e

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
    "has_touch": True, "locale": "zh-CN", "timezone_id": "Asia/Shanghai",
}
FAST = "?interval=0.25&upload=1&poll=600"
STEP = 0.00003  # ~3 m of longitude in Wenzhou per sample


@pytest.fixture(scope="module")
def server(pg, module_db, tmp_path_factory):
    with serve(mobile_settings(pg, module_db, tmp_path_factory.mktemp("m-data"))) as url:
        yield url


@pytest.fixture(scope="module")
def engine(module_engine):
    """This module's app-role engine, with the event-type catalogue loaded."""
    load_catalogue(module_engine)
    return module_engine


@pytest.fixture(scope="module")
def grid(engine) -> str:
    return grid_of_township(engine)


@pytest.fixture(scope="module")
def start_point(engine, grid) -> tuple[float, float]:
    return point_in(engine, grid)


_users = iter(range(1, 1000))


def new_worker(engine, grid: str):
    return grid_worker(engine, f"m_worker_{next(_users)}_{int(time.time()) % 100000}", grid)


def phone_context(browser, start: tuple[float, float], **extra: Any):
    ctx = browser.new_context(**PHONE, geolocation={"longitude": start[0], "latitude": start[1],
                                                    "accuracy": 8},
                              permissions=["geolocation"], **extra)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.page_errors = errors  # type: ignore[attr-defined]
    return ctx, page


@pytest.fixture
def phone(browser, start_point):
    ctx, page = phone_context(browser, start_point)
    yield ctx, page
    ctx.close()


def login(page, base: str, user, query: str = FAST) -> None:
    page.goto(f"{base}/m/{query}")
    page.wait_for_selector("#login-form")
    page.fill("#username", user.username)
    page.fill("#password", user.password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#view-tasks:not([hidden])")


def samples(page) -> int:
    return int(page.evaluate("() => window.gridgovM.patrol.state.recorded || 0"))


def walk(ctx, page, points: list[tuple[float, float]]) -> None:
    """Move the phone along points, waiting for one new sample at each."""
    for lon, lat in points:
        ctx.set_geolocation({"longitude": lon, "latitude": lat, "accuracy": 8})
        n = samples(page)
        page.wait_for_function("n => (window.gridgovM.patrol.state.recorded || 0) > n", arg=n,
                               timeout=10_000)


def queued(page) -> dict[str, int]:
    return page.evaluate("() => window.gridgovM.outbox.counts()")


def wait_all_sent(page, timeout: float = 30.0) -> None:
    """Wait until nothing waits in the phone's outbox (evaluate awaits; wait_for_function would
    take the pending Promise itself for a truthy answer)."""
    deadline = time.monotonic() + timeout
    while (c := queued(page))["points"] or c["batches"] or c["outbox"] or c["refused"] \
            or c["refusedBatches"]:
        assert time.monotonic() < deadline, f"still queued: {c}"
        time.sleep(0.25)


def rows(engine, sql: str, **params: Any) -> list[Any]:
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return list(s.execute(text(sql), params).all())


def jpeg_file(tmp_path: Path, size: tuple[int, int] = (3000, 2000)) -> Path:
    img = Image.new("RGB", size, "#3a7")
    for x in range(0, size[0], 50):  # some detail, so the JPEG is not trivially small
        img.paste("#fff", (x, 0, x + 10, size[1]))
    path = tmp_path / f"photo_{size[0]}x{size[1]}.jpg"
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92)
    path.write_bytes(out.getvalue())
    return path


# --- patrol --------------------------------------------------------------------------------------


def test_patrol_partly_offline_arrives_once_and_in_order(phone, server, engine, grid,
                                                         start_point) -> None:
    ctx, page = phone
    user = new_worker(engine, grid)
    login(page, server, user)
    # The service worker must control the page before it can be reloaded offline.
    page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=15_000)
    page.click("#quick-patrol")
    page.wait_for_selector("#view-patrol:not([hidden])")
    lon, lat = start_point
    path = [(lon + i * STEP, lat) for i in range(40)]
    walk(ctx, page, path[:10])
    ctx.set_offline(True)
    offline_from = time.time()
    walk(ctx, page, path[10:18])
    # A reload while offline: the page comes from the service worker, the patrol resumes.
    page.reload()
    page.wait_for_selector("#view-patrol:not([hidden])")
    page.wait_for_function("() => window.gridgovM.patrol && window.gridgovM.patrol.state.active")
    assert "暂停了" in page.inner_text("#notice-text")
    walk(ctx, page, path[18:28])
    assert page.inner_text("#net") == "离线"
    assert int(page.inner_text("#st-pending")) > 10
    # Offline after a reload the small map still draws the grid and the whole track so far.
    # Generous: on a loaded machine the offline reload's map (MapLibre from the service
    # worker's cache) took over 30 s to draw once; it always drew.
    page.wait_for_function("() => Number(document.getElementById('patrol-map').dataset.track"
                           " || 0) >= 20", timeout=90_000)
    drawn = map_colours(page)
    assert drawn["track"] > 50 and drawn["grid"] > 50, drawn
    screenshot(page, "mobile_patrol_offline")
    offline_to = time.time()
    ctx.set_offline(False)
    walk(ctx, page, path[28:])
    page.click("#patrol-toggle")
    page.wait_for_function("() => !window.gridgovM.patrol.state.active")
    wait_all_sent(page)
    recorded = samples(page)
    screenshot(page, "mobile_patrol_done")

    pts = rows(engine, "SELECT extract(epoch FROM ts) AS epoch, lon, lat, event, batch_id "
                       "FROM gps_point WHERE user_id = :u ORDER BY ts, seq", u=user.id)
    assert len(pts) == recorded, "every sample arrived, none twice"
    assert len({p.epoch for p in pts}) == len(pts), "no sample stored twice"
    kinds = [p.event for p in pts]
    assert kinds[0] == 1 and kinds[-1] == 2, "start first, stop last"
    assert 4 in kinds, "the reload's page-hide marker"
    fixes = [p for p in pts if p.event == 0]
    assert [p.lon for p in fixes] == sorted(p.lon for p in fixes), "the walk, in order"
    offline = [p for p in fixes if offline_from < float(p.epoch) < offline_to]
    assert len(offline) >= 15, "the samples taken offline arrived"
    batches = rows(engine, "SELECT id, extract(epoch FROM first_ts) AS first, "
                           "extract(epoch FROM last_ts) AS last, n_points FROM gps_batch "
                           "WHERE user_id = :u ORDER BY id", u=user.id)
    assert sum(b.n_points for b in batches) == recorded
    # Batches arrived in the order they were recorded, without overlapping.
    assert all(a.last < b.first for a, b in zip(batches, batches[1:], strict=False))
    assert page.page_errors == []  # type: ignore[attr-defined]


def map_colours(page) -> dict[str, int]:
    """Count the small map's pixels of the track's red and the grid outline's blue."""
    shot = Image.open(io.BytesIO(page.locator("#patrol-map").screenshot())).convert("RGB")
    pixels = np.asarray(shot, dtype=np.int32)
    near = {"track": (0xD0, 0x30, 0x2F), "grid": (0x0B, 0x5C, 0xAD)}
    return {name: int((np.abs(pixels - colour).sum(axis=2) < 60).sum())
            for name, colour in near.items()}


def _hide(page, hidden: bool) -> None:
    page.evaluate("""(hidden) => {
        Object.defineProperty(document, 'visibilityState', {configurable: true,
            get: () => hidden ? 'hidden' : 'visible'});
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => hidden});
        document.dispatchEvent(new Event('visibilitychange'));
    }""", hidden)


def test_hidden_page_gap_is_reported_as_app_hidden(phone, server, engine, grid,
                                                   start_point) -> None:
    ctx, page = phone
    user = new_worker(engine, grid)
    login(page, server, user)
    page.click("#quick-patrol")
    lon, lat = start_point
    walk(ctx, page, [(lon + i * STEP, lat) for i in range(8)])
    _hide(page, True)
    before = samples(page)
    time.sleep(3)
    assert samples(page) == before, "a hidden page records nothing"
    _hide(page, False)
    page.wait_for_function("() => document.getElementById('notice-text').textContent"
                           ".includes('后台暂停了')")
    assert "应用切到后台" in page.inner_text("#notice-text")
    screenshot(page, "mobile_patrol_resumed")
    walk(ctx, page, [(lon + i * STEP, lat) for i in range(8, 16)])
    page.click("#patrol-toggle")
    wait_all_sent(page)
    # Build the sessions with the thresholds scaled to the page's sped-up clock.
    rules = TrackRules(gap_seconds=1.5, min_session_seconds=1.0, mode=TravelMode.BICYCLE,
                       jitter_radius_m=0.5, still_seconds=1e6, anchor_seconds=0.5)
    now = datetime.now(GOVERNANCE_TZ)
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        rebuild_worker(s, user_id=user.id, lo=now - timedelta(minutes=5), hi=now, rules=rules)
    gaps = [g for (gs,) in rows(engine, "SELECT gaps FROM patrol_session WHERE user_id = :u",
                                u=user.id) for g in gs]
    hidden = [g for g in gaps if g["cause"] == "app_hidden"]
    assert len(hidden) == 1 and hidden[0]["seconds"] >= 3, gaps


def test_zhezhengding_source_uploads_gcj02(browser, server, engine, grid, start_point) -> None:
    lon, lat = start_point
    gcj = [wgs84_to_gcj02(lon + i * STEP, lat) for i in range(6)]
    ctx, page = phone_context(browser, start_point)
    # The 浙政钉 JSAPI as the container exposes it: getGeolocation gives GCJ-02.
    ctx.add_init_script(f"""(() => {{
        const path = {[list(map(float, p)) for p in gcj]};
        let i = 0;
        window.dd = {{ getGeolocation: async () => {{
            const [longitude, latitude] = path[Math.min(i++, path.length - 1)];
            return {{ longitude, latitude, accuracy: 10 }};
        }} }};
    }})()""")
    try:
        user = new_worker(engine, grid)
        login(page, server, user, "?interval=0.4&upload=1&poll=600")
        page.click("#quick-patrol")
        page.wait_for_function("() => (window.gridgovM.patrol.state.samples || 0) >= 4")
        assert "GCJ-02" in page.inner_text("#patrol-fix")
        page.click("#patrol-toggle")
        wait_all_sent(page)
    finally:
        ctx.close()
    fixes = rows(engine, "SELECT lon, lat FROM gps_point WHERE user_id = :u AND event = 0 "
                         "ORDER BY ts", u=user.id)
    assert len(fixes) >= 4
    # Stored in CGCS2000: the GCJ-02 offset (~500 m here) was removed, to within a decimetre.
    walked = [(lon + i * STEP, lat) for i in range(6)]
    for f in fixes:
        assert min(abs(f.lon - x) + abs(f.lat - y) for x, y in walked) < 1e-6, f


# --- reports, handling, verification -------------------------------------------------------------


def test_report_made_offline_arrives_once(browser, server, engine, grid, start_point,
                                          tmp_path) -> None:
    # Service workers blocked so that page.route sees the upload (and can lose its answer).
    ctx, page = phone_context(browser, start_point, service_workers="block")
    lost: list[int] = []

    def lose_first_answer(route) -> None:
        if lost:
            route.continue_()
            return
        try:
            response = route.fetch()  # the server stores the report…
        except Exception:  # noqa: BLE001 (offline: nothing reached the server)
            route.abort()
            return
        lost.append(response.status)
        route.abort("connectionreset")  # …but the phone never hears back

    page.route("**/api/v1/mobile/reports", lose_first_answer)
    try:
        user = new_worker(engine, grid)
        login(page, server, user)
        page.click("#quick-report")
        page.wait_for_selector("#view-report:not([hidden])")
        page.wait_for_function("() => document.querySelectorAll('#rp-type option').length > 5")
        page.select_option("#rp-type", "0301")
        description = f"楼道堆放杂物堵塞消防通道 {user.username}"
        page.fill("#rp-desc", description)
        page.set_input_files("#rp-gallery", str(jpeg_file(tmp_path)))
        page.wait_for_selector("#rp-thumbs img")
        page.wait_for_function("() => document.getElementById('rp-where').textContent"
                               ".startsWith('GPS')")
        ctx.set_offline(True)
        page.click("#report-form button[type=submit]")
        page.wait_for_selector("#outbox-list li[data-seq]")
        assert "离线" in page.inner_text("#notice-text")
        screenshot(page, "mobile_report_queued_offline")
        ctx.set_offline(False)
        wait_all_sent(page, timeout=45)
        page.wait_for_function("() => document.getElementById('notice-text').textContent"
                               ".includes('已上报')")
        screenshot(page, "mobile_report_sent")
    finally:
        ctx.close()
    assert lost == [201], "the first answer was lost after the server stored the report"
    events = rows(engine, "SELECT id, grid_code FROM event WHERE description = :d",
                  d=description)
    assert len(events) == 1 and events[0].grid_code == grid
    photos = rows(engine, "SELECT width, height, bytes, stage FROM mobile_photo "
                          "WHERE event_id = :e", e=events[0].id)
    assert [(p.width, p.height, p.stage) for p in photos] == [(1600, 1067, "report")]
    assert photos[0].bytes < 600_000, "resized and recompressed on the phone"


def test_report_location_adjusted_on_the_map(phone, server, engine, grid) -> None:
    ctx, page = phone
    user = new_worker(engine, grid)
    login(page, server, user)
    page.click("#tabs a[data-view=report]")
    page.wait_for_function("() => document.querySelectorAll('#rp-type option').length > 5")
    page.select_option("#rp-type", "0401")
    description = f"绿化带内垃圾 {user.username}"
    page.fill("#rp-desc", description)
    page.wait_for_function("() => document.getElementById('rp-where').textContent"
                           ".startsWith('GPS')")
    page.click("#rp-adjust")
    page.wait_for_selector("#rp-map canvas")
    page.wait_for_timeout(500)
    box = page.locator("#rp-map").bounding_box()
    # Tap 60 px east of the marker: the worker moves the point onto the real spot.
    page.touchscreen.tap(box["x"] + box["width"] / 2 + 60, box["y"] + box["height"] / 2)
    page.wait_for_function("() => document.getElementById('rp-where').textContent"
                           ".startsWith('地图选点')")
    screenshot(page, "mobile_report_adjust_on_map")
    picked = [float(v) for v in page.inner_text("#rp-where").split("：")[1]
              .split("（")[0].split(",")]
    page.click("#report-form button[type=submit]")
    wait_all_sent(page)
    (ev,) = rows(engine, "SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM event "
                         "WHERE description = :d", d=description)
    assert abs(ev.x - picked[0]) < 2e-6 and abs(ev.y - picked[1]) < 2e-6
    lon, lat = point_in(engine, grid)
    assert ev.x - lon > 5e-5, "moved east of the GPS fix"


def _dispatch_to(server: str, engine, grid: str, point: tuple[float, float]) -> dict[str, Any]:
    commander = township_commander(engine, f"m_cmd_{int(time.time() * 1000) % 10**8}",
                                   grid[:9])
    with httpx.Client(base_url=server, headers=commander.headers, timeout=30) as c:
        r = c.post("/api/v1/events", json={
            "type_code": "0301", "description": "楼道堆放杂物堵塞消防通道（派遣）",
            "source": "commander",
            "location": {"type": "Point", "coordinates": list(point)}, "crs": "WGS84"})
        assert r.status_code == 201, r.text
        ev = r.json()
        for action, extra in (("accept", {}), ("dispatch", {"lead": {"grid_code": grid}})):
            r = c.post(f"/api/v1/events/{ev['id']}/actions/{action}",
                       json={"version": ev["version"], **extra})
            assert r.status_code == 200, r.text
            ev = r.json()
        r = c.post(f"/api/v1/events/{ev['id']}/actions/remind", json={
            "version": ev["version"], "note": "请尽快处理"})
        assert r.status_code == 200, r.text
        r = c.post("/api/v1/mobile/broadcasts", json={
            "region_code": grid[:9], "title": "防台风巡查通知",
            "body": "今晚台风过境，请重点巡查低洼地带和广告牌。"})
        assert r.status_code == 201, r.text
        return r.json() | {"event": ev}


def test_handle_and_verify_an_assigned_event(phone, server, engine, grid, start_point,
                                             tmp_path) -> None:
    ctx, page = phone
    user = new_worker(engine, grid)
    sent = _dispatch_to(server, engine, grid, start_point)
    ev = sent["event"]
    login(page, server, user)
    page.wait_for_selector(f"#tasks-body a[href='#event/{ev['id']}']")
    assert "催办" in page.inner_text("#tasks-body") and "防台风巡查通知" in page.inner_text(
        "#tasks-body")
    screenshot(page, "mobile_tasks")
    page.click(f"#tasks-body a[href='#event/{ev['id']}']")
    page.click("[data-act=sign]")
    page.wait_for_selector("[data-form=handle]")
    page.fill("#ev-result", "已联系环卫清运，现场已清理干净")
    page.set_input_files("#ev-gallery", str(jpeg_file(tmp_path, (1200, 900))))
    page.wait_for_selector("#ev-thumbs img")
    screenshot(page, "mobile_event_handle")
    assert axe_violations(page) == []
    page.click("[data-form=handle] button[type=submit]")
    page.wait_for_selector("[data-form=verify]")
    # Two kilometres away, verification is refused with the distance…
    ctx.set_geolocation({"longitude": start_point[0] + 0.02, "latitude": start_point[1],
                         "accuracy": 8})
    page.click("[data-verify=verify_pass]")
    page.wait_for_function("() => (document.getElementById('event-error') || {})"
                           ".textContent?.includes('米以内')")
    screenshot(page, "mobile_event_verify_too_far")
    page.evaluate("""async () => {  // the worker deletes the refused attempt
        const {all, del} = await import('/m/js/db.js');
        for (const i of await all('outbox')) if (i.refused) await del('outbox', i.seq);
    }""")
    # …and on site it passes.
    ctx.set_geolocation({"longitude": start_point[0], "latitude": start_point[1],
                         "accuracy": 8})
    page.click("[data-verify=verify_pass]")
    page.wait_for_function("() => document.querySelector('#event-body .kv .tag')"
                           ".textContent === '核查通过'")
    wait_all_sent(page)
    screenshot(page, "mobile_event_verified")
    history = rows(engine, "SELECT action, data FROM event_history WHERE event_id = :e "
                           "ORDER BY id", e=ev["id"])
    actions = [h.action for h in history]
    assert actions[-3:] == ["sign", "handle", "verify_pass"]
    assert history[-1].data["verifier_distance_m"] < 50
    photos = rows(engine, "SELECT stage FROM mobile_photo WHERE event_id = :e", e=ev["id"])
    assert [p.stage for p in photos] == ["handle"]


def test_action_queued_offline_survives_a_reminder_meanwhile(phone, server, engine, grid,
                                                             start_point) -> None:
    ctx, page = phone
    user = new_worker(engine, grid)
    sent = _dispatch_to(server, engine, grid, start_point)
    ev = sent["event"]
    login(page, server, user)
    page.click(f"#tasks-body a[href='#event/{ev['id']}']")
    page.wait_for_selector("[data-act=sign]")
    ctx.set_offline(True)
    page.click("[data-act=sign]")
    page.wait_for_function("() => document.getElementById('notice-text').textContent"
                           ".includes('离线')")
    # While the phone is offline the command centre reminds again: the version it saw is stale.
    commander = township_commander(engine, f"m_cmd2_{int(time.time() * 1000) % 10**8}",
                                   grid[:9])
    with httpx.Client(base_url=server, headers=commander.headers, timeout=30) as c:
        version = c.get(f"/api/v1/events/{ev['id']}").json()["version"]
        r = c.post(f"/api/v1/events/{ev['id']}/actions/remind", json={
            "version": version, "note": "再次催办"})
        assert r.status_code == 200, r.text
    ctx.set_offline(False)
    wait_all_sent(page)
    history = rows(engine, "SELECT action FROM event_history WHERE event_id = :e ORDER BY id",
                   e=ev["id"])
    assert [h.action for h in history][-2:] == ["remind", "sign"]
    assert rows(engine, "SELECT count(*) AS n FROM mobile_request WHERE event_id = :e "
                        "AND kind = 'sign'", e=ev["id"])[0].n == 1
    page.wait_for_function("() => document.querySelector('#event-body .kv .tag')"
                           ".textContent === '处置中'")
    screenshot(page, "mobile_event_signed_after_reminder")


# --- secure context and accessibility ------------------------------------------------------------


def test_insecure_context_warns_worker_and_operator(browser, server) -> None:
    port = server.rsplit(":", 1)[1]
    # A second browser whose resolver maps a non-loopback name to the test server: plain http
    # there is not a secure context (http://127.0.0.1 would be).
    args = [a for a in ARGS if not a.startswith("--host-resolver-rules")]
    args.append("--host-resolver-rules=MAP gridgov.test 127.0.0.1")
    b = browser.browser_type.launch(executable_path=CHROMIUM, args=args)
    try:
        ctx = b.new_context(**PHONE)
        page = ctx.new_page()
        page.goto(f"http://gridgov.test:{port}/m/")
        page.wait_for_selector("#insecure:not([hidden])")
        assert page.evaluate("() => window.isSecureContext") is False
        text = page.inner_text("#insecure")
        assert "gridgov serve --tls-cert" in text and "https://" in text
        assert "http://gridgov.test" in text
        screenshot(page, "mobile_insecure_context")
        assert axe_violations(page) == []
    finally:
        b.close()


def test_secure_context_has_no_warning_and_status_says_so(phone, server, engine, grid) -> None:
    ctx, page = phone
    login(page, server, new_worker(engine, grid))
    assert page.is_hidden("#insecure")
    page.click("#tabs a[data-view=me]")
    page.wait_for_selector("#status-secure")
    page.wait_for_function("() => document.getElementById('status-gps').textContent === '已允许'")
    assert "是" in page.inner_text("#status-secure")
    page.wait_for_selector("#me-profile dl")
    page.wait_for_selector("#me-records h4")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "mobile_me.png"), full_page=True)


def test_accessibility_no_serious_violations(phone, server, engine, grid) -> None:
    ctx, page = phone
    page.goto(f"{server}/m/{FAST}")
    page.wait_for_selector("#login-form")
    screenshot(page, "mobile_login")
    assert axe_violations(page) == []
    login(page, server, new_worker(engine, grid))
    for view in ("tasks", "patrol", "report", "me"):
        page.click(f"#tabs a[data-view={view}]")
        page.wait_for_selector(f"#view-{view}:not([hidden])")
        page.wait_for_timeout(500)
        assert axe_violations(page) == [], view
