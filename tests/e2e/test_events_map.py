"""Events in the commander's map: queues, the detail with its photos, acting on an event
through its forms, a concurrent change, new events arriving without a reload (from the message
stream, or by polling while it is down), and the events tile layer coloured by SLA."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import text

from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from tests.e2e.browser import idle, login, rendered, wait_rendered
from tests.e2e.conftest import axe_violations, screenshot
from tests.support.mobile import mobile_settings, serve
from tests.support.places import point_in
from tests.support.users import TestUser, grid_worker, township_commander

pytestmark = pytest.mark.e2e

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER_GRID = "330302006071001"  # a grid of the same township, for an event on its own spot
COMMANDER = f"t{TOWNSHIP}"
# SLA colours of the map (web_map/js/labels.js), as MapLibre evaluates them: r, g, b in 0–1.
GREEN = (0x2E / 255, 0x7D / 255, 0x32 / 255)
RED = (0xD3 / 255, 0x2F / 255, 0x2F / 255)


@pytest.fixture(scope="module")
def live_server(pg, module_db, tmp_path_factory):
    """The app with a data directory of its own (photos are stored there)."""
    data_dir = tmp_path_factory.mktemp("e2e-event-photos")
    with serve(mobile_settings(pg, module_db, data_dir)) as url:
        yield url


class People:
    """A grid worker of one grid who reports, and a second commander of the township."""

    def __init__(self, engine) -> None:
        self.worker = grid_worker(engine, "e2e_ev_worker", GRID)
        self.rival = township_commander(engine, "e2e_ev_cmd", TOWNSHIP)
        self.other = grid_worker(engine, "e2e_ev_worker2", OTHER_GRID)
        self.point = list(point_in(engine, GRID))
        self.other_point = list(point_in(engine, OTHER_GRID))


@pytest.fixture(scope="module")
def people(module_engine, catalogue) -> People:
    return People(module_engine)


def report(http: httpx.Client, people: People, description: str, *,
           other_grid: bool = False) -> dict[str, Any]:
    """Report a fire-passage event (消防通道堵塞) as a grid worker, through the API."""
    worker, point = ((people.other, people.other_point) if other_grid
                     else (people.worker, people.point))
    body = {"type_code": "0301", "description": description, "crs": "CGCS2000",
            "location": {"type": "Point", "coordinates": point}}
    r = http.post("/api/v1/events", json=body, headers=worker.headers)
    assert r.status_code == 201, r.text
    return r.json()


def jpeg(colour: str, size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def report_with_photos(http: httpx.Client, people: People, description: str,
                       photos: list[bytes]) -> dict[str, Any]:
    """Report an event with photos (multipart), as the grid worker."""
    body = {"type_code": "0301", "description": description, "crs": "CGCS2000",
            "location": {"type": "Point", "coordinates": people.point}}
    r = http.post("/api/v1/events/with-photos", headers=people.worker.headers,
                  data={"body": json.dumps(body)},
                  files=[("photos", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)])
    assert r.status_code == 201, r.text
    return r.json()


def get_event(http: httpx.Client, user: TestUser, event_id: int) -> dict[str, Any]:
    r = http.get(f"/api/v1/events/{event_id}", headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()


def open_from_queue(page, queue: str, event: dict) -> None:
    """Open the events tab, choose a queue, find the event by its code and open it."""
    event_id = event["id"]
    page.click("#tab-events")
    page.click(f"#queues button[data-q={queue}]")
    page.fill("#f-q", event["code"])
    page.click(f"#event-list button[data-id='{event_id}']", timeout=15_000)
    page.wait_for_selector(f"#event-detail[data-id='{event_id}']")


def act(page, action: str, version_after: int, note: str | None = None) -> None:
    """Open an action's form, fill the note if asked, submit, wait for the new version."""
    page.click(f"#event-actions button[data-action={action}]")
    page.wait_for_selector("#action-form form")
    if note is not None:
        page.fill("#af-note", note)
    page.click("#action-form button[type=submit]")
    page.wait_for_selector(f"#event-detail[data-version='{version_after}']", timeout=15_000)


def test_commander_accepts_and_dispatches_in_the_map(page, live_server, http, people) -> None:
    ev = report(http, people, "小区门口楼道堆放杂物堵塞消防通道")
    login(page, live_server, COMMANDER)
    open_from_queue(page, "to_accept", ev)
    # The event is drawn on the map, coloured by its clock, and its detail explains itself.
    wait_rendered(page, ["events-circle"], "id", ev["id"])
    panel = page.inner_text("#panel")
    assert ev["code"] in panel and "待受理" in panel
    assert "依据" in panel and ev["routes"][0]["reason"] in panel   # route and why
    assert "办理时限" in panel and "受理" in panel                    # the clocks
    assert "上报" in page.inner_text(".timeline")                   # history
    offered = page.eval_on_selector_all("#event-actions button",
                                        "bs => bs.map(b => b.dataset.action)")
    assert {"accept", "refuse", "supervise"} <= set(offered) and "sign" not in offered

    act(page, "accept", 2, note="情况属实，予以受理")
    assert "待派遣" in page.inner_text(".ev-badges")
    page.click("#event-actions button[data-action=dispatch]")
    page.wait_for_selector("#af-lead")
    suggested = page.eval_on_selector("#af-lead", "s => s.options[s.selectedIndex].textContent")
    assert "建议" in suggested and "综合执法" in suggested
    page.select_option("#af-assisting", f"grid:{GRID}")
    page.click("#action-form button[type=submit]")
    page.wait_for_selector("#event-detail[data-version='3']", timeout=15_000)
    assert "待签收" in page.inner_text(".ev-badges")
    screenshot(page, "events_dispatched")

    stored = get_event(http, people.worker, ev["id"])
    assert stored["state"] == "dispatched"
    assert [h["action"] for h in stored["history"]] == ["report", "accept", "dispatch"]
    assert stored["history"][1]["note"] == "情况属实，予以受理"
    assert {(a["role"], (a["unit"] or {}).get("code"), a["grid_code"])
            for a in stored["assignments"]} == {("lead", f"zf{TOWNSHIP}", None),
                                                 ("assist", None, GRID)}
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_required_reason_and_a_concurrent_change(page, live_server, http, people) -> None:
    ev = report(http, people, "沿街店铺门前消防通道被占用")
    login(page, live_server, COMMANDER)
    open_from_queue(page, "to_accept", ev)
    # 不予受理 needs a reason: the form says so and sends nothing.
    page.click("#event-actions button[data-action=refuse]")
    page.click("#action-form button[type=submit]")
    assert "请填写" in page.inner_text("#af-error")
    assert get_event(http, people.worker, ev["id"])["version"] == 1
    page.click("#af-cancel")
    # Another commander accepts it meanwhile: our accept is refused (409) and the panel
    # reloads to what the event is now.
    r = http.post(f"/api/v1/events/{ev['id']}/actions/accept", json={"version": 1},
                  headers=people.rival.headers)
    assert r.status_code == 200, r.text
    page.click("#event-actions button[data-action=accept]")
    page.click("#action-form button[type=submit]")
    page.wait_for_selector(f"#event-detail[data-id='{ev['id']}'][data-version='2']")
    assert "已被他人处理" in page.inner_text("#toasts")
    assert "dispatch" in page.eval_on_selector_all("#event-actions button",
                                                   "bs => bs.map(b => b.dataset.action)")
    # The browser logs the 409 answer as a failed resource: that one is expected.
    errors = [e for e in page.console_errors if "409" not in e]  # type: ignore[attr-defined]
    assert errors == []


def toasts_naming(page, code: str) -> list[str]:
    return page.eval_on_selector_all(
        "#toasts .toast", "(ts, code) => ts.map(t => t.textContent).filter(t => t.includes(code))",
        code)


def test_new_event_arrives_without_reload(page, live_server, http, people) -> None:
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/api/v1/events?limit=20" in r.url
            else None)
    login(page, live_server, COMMANDER)
    page.click("#tab-events")
    page.wait_for_selector("#queues button[data-q=to_accept]")
    # The message stream is up: the events follow it, not a poll.
    page.wait_for_function("() => window.gridgov.messages.live && window.gridgov.events.live")
    before = page.evaluate("() => window.gridgov.messages.unread")
    ev = report(http, people, "学校附近消防通道堵塞，需尽快处理")
    # The stream's 新事件待受理 message: one toast, the bell, the queue, the list and the map.
    page.wait_for_function("(code) => document.getElementById('toasts').textContent.includes(code)",
                           arg=ev["code"], timeout=20_000)
    assert [t.startswith("新事件待受理") for t in toasts_naming(page, ev["code"])] == [True]
    page.wait_for_function("(n) => window.gridgov.messages.unread > n", arg=before)
    assert page.is_visible("#bell-count")
    wait_rendered(page, ["events-circle"], "id", ev["id"])
    page.wait_for_selector(f"#event-list button[data-id='{ev['id']}']")
    assert page.locator(f"#event-list button[data-id='{ev['id']}']").count() == 1
    # The events tile layer was re-read: the new event is a dot of its own, by its id.
    page.wait_for_function("""(id) => window.gridgov.map
        .queryRenderedFeatures({layers: ['events-point']}).some(f => f.id === id)""",
                           arg=ev["id"], timeout=20_000)
    screenshot(page, "events_new_arrival")
    page.click("#bell")
    assert ev["code"] in page.inner_text("#messages-list")
    assert polls == []
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_new_event_by_polling_while_the_stream_is_down(page, live_server, http,
                                                       people) -> None:
    # The message stream refused (a proxy that cuts event streams): the poll stands in.
    page.route("**/api/v1/messages/stream", lambda route: route.abort())
    login(page, live_server, COMMANDER)
    page.wait_for_function("() => window.gridgov.events.live === false "
                           "&& window.gridgov.events.lastId !== null")
    assert page.evaluate("() => window.gridgov.messages.live") is False
    ev = report(http, people, "菜场后门消防通道堵塞")
    # The poll (every 10 s) finds it: its own notice, once, and the list and the map follow.
    page.wait_for_function("(code) => document.getElementById('toasts').textContent.includes(code)",
                           arg=ev["code"], timeout=30_000)
    assert [t.startswith("新事件 ") for t in toasts_naming(page, ev["code"])] == [True]
    wait_rendered(page, ["events-circle"], "id", ev["id"])
    # The refused stream is logged by the browser as a failed resource: that one is expected.
    errors = [e for e in page.console_errors  # type: ignore[attr-defined]
              if "ERR_FAILED" not in e]
    assert errors == []


def test_event_photos_open_full_size(page, live_server, http, people) -> None:
    ev = report_with_photos(http, people, "楼道堆放电瓶车，现场照片两张",
                            [jpeg("#8d6e63"), jpeg("#546e7a", (800, 600))])
    assert len(ev["photos"]) == 2
    login(page, live_server, COMMANDER)
    open_from_queue(page, "to_accept", ev)
    # Thumbnails in the detail (by step) and under the report in the history timeline.
    page.wait_for_function("""() => [...document.querySelectorAll('#event-detail img')]
        .every(i => i.complete && i.naturalWidth > 0)""")
    thumbs = page.eval_on_selector_all(
        ".photo-stage a[data-photo] img", "is => is.map(i => [i.alt, i.naturalWidth])")
    assert [alt for alt, _ in thumbs] == ["上报照片 1", "上报照片 2"]
    assert all(0 < width <= 320 for _, width in thumbs)  # thumbnails, not the photos
    timeline = page.eval_on_selector_all(".timeline a[data-photo]", "as => as.map(a => a.href)")
    assert [u.rsplit("/", 1)[-1] for u in timeline] == [str(p["id"]) for p in ev["photos"]]
    # A click opens the photo itself in the viewer (800×600 as uploaded), with the watermark.
    page.click(f".timeline a[data-photo='{ev['photos'][1]['id']}']")
    page.wait_for_function("() => document.getElementById('photo-viewer').open && "
                           "document.getElementById('photo-full').naturalWidth > 0")
    assert page.evaluate("() => document.getElementById('photo-full').naturalWidth") == 800
    assert "上报照片 2/2" in page.inner_text("#photo-caption")
    assert page.evaluate("() => getComputedStyle(document.getElementById('photo-mark'))"
                         ".backgroundImage").startswith("url(\"data:image/png")
    screenshot(page, "event_photo_viewer")
    assert axe_violations(page) == []
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('photo-viewer').open")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_events_tile_layer_by_sla_colour(page, live_server, http, people, module_engine) -> None:
    fresh = report(http, people, "小区消防通道堵塞 (正常)", other_grid=True)
    late = report(http, people, "商铺消防通道堵塞 (超时)")
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        # The accept clock of one event ran out an hour ago (the tile layer tells by colour).
        s.execute(text("UPDATE event SET deadline_at = now() - interval '1 hour', "
                       "amber_at = now() - interval '2 hours' WHERE id = :i"), {"i": late["id"]})
    login(page, live_server, COMMANDER)
    assert "在办事件 (按时限着色)" in page.inner_text("#layer-list")
    legend = page.inner_text("#legend")
    assert "事件·超时" in legend and "事件聚合" in legend
    drawn = page.evaluate("""() => Object.fromEntries(window.gridgov.map
        .queryRenderedFeatures({layers: ['events-point']})
        .map(f => [f.id, [f.properties.sla, f.layer.paint['circle-color']]]))""")
    colour = {int(k): (sla, (c["r"], c["g"], c["b"])) for k, (sla, c) in drawn.items()}
    assert colour[fresh["id"]][0] == "green" and colour[late["id"]][0] == "red"
    assert colour[fresh["id"]][1] == pytest.approx(GREEN)
    assert colour[late["id"]][1] == pytest.approx(RED)
    screenshot(page, "events_tile_layer")
    # A click on the tile's dot (the list's rings hidden) opens the event.
    page.uncheck("#layer-event-list")
    idle(page)
    point = page.evaluate("""(id) => {
        const m = window.gridgov.map;
        const f = m.queryRenderedFeatures({layers: ['events-point']}).find(x => x.id === id);
        const p = m.project(f.geometry.coordinates);
        const box = m.getCanvas().getBoundingClientRect();
        return {x: p.x + box.left, y: p.y + box.top};
    }""", fresh["id"])
    page.mouse.click(point["x"], point["y"])
    page.wait_for_selector(f"#event-detail[data-id='{fresh['id']}']")
    # Zoomed out, events come in clusters (counts, the worst colour); hidden, nothing is drawn.
    page.evaluate("() => window.gridgov.map.jumpTo({zoom: 12})")
    idle(page)
    clusters = page.evaluate("""() => window.gridgov.map
        .queryRenderedFeatures({layers: ['event-clusters']}).map(f => f.properties)""")
    assert sum(c["count"] for c in clusters) >= 2 and "red" in {c.get("sla") for c in clusters}
    assert rendered(page, ["events-point"], "code") == set()
    page.uncheck("#layer-events")
    idle(page)
    assert rendered(page, ["event-clusters", "events-point"], "sla") == set()
    assert "事件·超时" not in page.inner_text("#legend")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_events_pane_accessibility(page, live_server, http, people) -> None:
    ev = report(http, people, "河边消防通道堵塞")
    login(page, live_server, COMMANDER)
    open_from_queue(page, "to_accept", ev)
    page.click("#event-actions button[data-action=accept]")
    page.wait_for_selector("#action-form form")
    assert axe_violations(page) == []
