"""Events in the commander's map: queues, the detail, acting on an event through its forms,
a concurrent change, and new events arriving without a reload."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from geoserver.database.bootstrap import APP_ROLE
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session, sqlalchemy_url
from tests.e2e.browser import login, wait_rendered
from tests.e2e.conftest import axe_violations, screenshot
from tests.support.users import TestUser, make_user

pytestmark = pytest.mark.e2e

TOWNSHIP = "330302006"
GRID = "330302006045001"
COMMANDER = f"t{TOWNSHIP}"



@pytest.fixture(scope="module")
def engine(pg, module_db):
    e = create_engine(sqlalchemy_url(pg.url(APP_ROLE, module_db)))
    yield e
    e.dispose()


class People:
    """A grid worker of one grid who reports, and a second commander of the township."""

    def __init__(self, engine) -> None:
        self.worker = make_user(engine, "e2e_ev_worker", roles=["grid_worker"], scope=[GRID],
                                positions=[("grid_worker", GRID)])
        self.rival = make_user(engine, "e2e_ev_cmd", roles=["township_commander"],
                               scope=[TOWNSHIP], positions=[("command_centre_staff", TOWNSHIP)])
        self.admin = make_user(engine, "e2e_ev_admin", roles=["admin"], scope=["330300"])
        with scoped_session(engine, SYSTEM_SCOPE) as s:
            row = s.execute(text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p "
                                 "FROM region WHERE code = :c AND valid_to IS NULL) x"),
                            {"c": GRID}).one()
        self.point = [float(row[0]), float(row[1])]


@pytest.fixture(scope="module")
def people(engine, http) -> People:
    p = People(engine)
    r = http.post("/api/v1/event-types/initialize", headers=p.admin.headers)
    assert r.status_code == 200, r.text
    return p


def report(http: httpx.Client, people: People, description: str) -> dict[str, Any]:
    """Report a fire-passage event (消防通道堵塞) as the grid worker, through the API."""
    body = {"type_code": "0301", "description": description, "crs": "CGCS2000",
            "location": {"type": "Point", "coordinates": people.point}}
    r = http.post("/api/v1/events", json=body, headers=people.worker.headers)
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


def test_new_event_arrives_without_reload(page, live_server, http, people) -> None:
    login(page, live_server, COMMANDER)
    page.click("#tab-events")
    page.wait_for_selector("#queues button[data-q=to_accept]")
    page.wait_for_function("() => window.gridgov.events.lastId !== null")
    ev = report(http, people, "学校附近消防通道堵塞，需尽快处理")
    # The poll (every 10 s) finds it: a notification, the queue count and the map follow.
    page.wait_for_function("(code) => document.getElementById('toasts').textContent.includes(code)",
                           arg=ev["code"], timeout=30_000)
    assert page.is_visible("#bell-count")
    wait_rendered(page, ["events-circle"], "id", ev["id"])
    assert page.locator(f"#event-list button[data-id='{ev['id']}']").count() == 1
    screenshot(page, "events_new_arrival")
    page.click("#bell")
    assert ev["code"] in page.inner_text("#messages-list")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_events_pane_accessibility(page, live_server, http, people) -> None:
    ev = report(http, people, "河边消防通道堵塞")
    login(page, live_server, COMMANDER)
    open_from_queue(page, "to_accept", ev)
    page.click("#event-actions button[data-action=accept]")
    page.wait_for_selector("#action-form form")
    assert axe_violations(page) == []
