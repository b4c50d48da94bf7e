"""The message center in the commander's map: a dispatch lights the bell live (SSE), the
dropdown lists it, and marking it read brings the count down."""

from __future__ import annotations

import pytest

from tests.e2e.browser import login
from tests.e2e.conftest import axe_violations, screenshot
from tests.support.places import point_in
from tests.support.users import grid_worker, township_commander

pytestmark = pytest.mark.e2e

TOWNSHIP = "330302006"
GRID = "330302006045001"
LEADER = f"l{GRID}"  # the demo 网格长 of the grid: receives what is dispatched to it


@pytest.fixture(scope="module")
def people(module_engine, catalogue) -> dict:
    return {"worker": grid_worker(module_engine, "e2e_msg_worker", GRID),
            "commander": township_commander(module_engine, "e2e_msg_cmd", TOWNSHIP),
            "point": list(point_in(module_engine, GRID))}


def dispatch_to_grid(http, people: dict, description: str) -> dict:
    """Report an event in the grid, accept it and dispatch it to the grid, over the API."""
    r = http.post("/api/v1/events", headers=people["worker"].headers, json={
        "type_code": "0301", "description": description, "crs": "CGCS2000",
        "location": {"type": "Point", "coordinates": people["point"]}})
    assert r.status_code == 201, r.text
    ev = r.json()
    for action, body in (("accept", {}), ("dispatch", {"lead": {"grid_code": GRID}})):
        r = http.post(f"/api/v1/events/{ev['id']}/actions/{action}", json=body,
                      headers={**people["commander"].headers, "If-Match": f'"{ev["version"]}"'})
        assert r.status_code == 200, r.text
        ev = r.json()
    return ev


def test_bell_counts_a_dispatch_live_and_marks_it_read(page, live_server, http, people) -> None:
    login(page, live_server, LEADER)
    page.wait_for_function("() => window.gridgov.messages && window.gridgov.messages.live")
    before = page.evaluate("() => window.gridgov.messages.unread")
    ev = dispatch_to_grid(http, people, "消防通道被电动车堵塞")
    # Pushed over the stream: no reload, no poll (the fallback poll is 30 s away).
    page.wait_for_function("(n) => window.gridgov.messages.unread > n", arg=before,
                           timeout=20_000)
    assert page.is_visible("#bell-count")
    assert int(page.inner_text("#bell-count")) == before + 1
    page.click("#bell")
    page.wait_for_selector("#messages-list li.unread button[data-open]")
    assert ev["code"] in page.inner_text("#messages-list")
    screenshot(page, "messages_bell")
    assert axe_violations(page) == []
    page.click("#messages-list li.unread button[data-read]")
    page.wait_for_function("(n) => window.gridgov.messages.unread === n", arg=before)
    if before == 0:
        assert page.is_hidden("#bell-count")
        assert page.locator("#messages-list li.unread").count() == 0
    else:
        assert page.inner_text("#bell-count") == str(before)
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_work_view_lists_messages_live_and_read_all(page, live_server, http, people) -> None:
    login(page, live_server, LEADER)
    page.click("#nav-work")
    page.wait_for_selector("#work-messages li")
    page.wait_for_function("() => window.gridgov.messages.live")
    ev = dispatch_to_grid(http, people, "楼梯间堆放纸箱堵塞消防通道")
    # The work view's 消息 card shows the new message as it arrives (same list as the bell).
    item = page.wait_for_selector(f"#work-messages li.unread:has-text('{ev['code']}')",
                                  timeout=20_000)
    assert "新派遣" in item.inner_text()
    page.wait_for_selector(f"#work-todos button[data-id='{ev['id']}']")  # and the to-dos
    screenshot(page, "messages_work_view")
    assert axe_violations(page) == []
    # 全部已读 from the bell: the count goes to nothing, the work view's list follows.
    page.click("#bell")
    page.wait_for_selector("#messages-list li.unread")
    page.click("#messages-read-all")
    page.wait_for_function("() => window.gridgov.messages.unread === 0")
    assert page.is_hidden("#bell-count")
    assert page.locator("#messages-list li.unread").count() == 0
    assert page.locator("#work-messages li.unread").count() == 0
    page.keyboard.press("Escape")
    assert page.is_hidden("#messages-pop")
    assert page.get_attribute("#bell", "aria-expanded") == "false"
    # A message opens its event on the map.
    page.click(f"#work-messages button[data-open]:has-text('{ev['code']}')")
    page.wait_for_selector(f"#event-detail[data-id='{ev['id']}']")
    assert page.is_hidden("#view-work")
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_bell_keeps_the_pages_notices_without_a_message_center(page, live_server, http,
                                                               people) -> None:
    # A server without the message center (404): the bell lists what the events poll found.
    page.route("**/api/v1/messages**", lambda route: route.fulfill(
        status=404, content_type="application/problem+json",
        body='{"type": "about:blank", "title": "Not Found", "status": 404}'))
    login(page, live_server, f"t{TOWNSHIP}")
    page.wait_for_function("() => window.gridgov.events.live === false "
                           "&& window.gridgov.events.lastId !== null")
    assert page.evaluate("() => window.gridgov.messages.server") is False
    r = http.post("/api/v1/events", headers=people["worker"].headers, json={
        "type_code": "0301", "description": "消防通道停放车辆", "crs": "CGCS2000",
        "location": {"type": "Point", "coordinates": people["point"]}})
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    page.wait_for_function("(code) => document.getElementById('toasts').textContent.includes(code)",
                           arg=code, timeout=30_000)
    assert page.is_visible("#bell-count")
    page.click("#bell")
    assert f"新事件 {code}" in page.inner_text("#messages-list")
    assert page.is_hidden("#bell-count")  # seen once the list is open
    errors = [e for e in page.console_errors if "404" not in e]  # type: ignore[attr-defined]
    assert errors == []
