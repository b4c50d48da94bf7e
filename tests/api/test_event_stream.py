"""Event changes over SSE: every action on an event of the user's jurisdiction, as it commits,
and nothing from another township."""

from __future__ import annotations

import pytest

from tests.support.places import grid_of_township, point_in
from tests.support.sse import SseReader
from tests.support.users import grid_worker, township_commander

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"
STREAM = "/api/v1/events/stream"


@pytest.fixture(scope="module")
def people(module_engine, catalogue):
    other_grid = grid_of_township(module_engine, OTHER, grid_type="general")
    return {
        "worker": grid_worker(module_engine, "es_w", GRID),
        "outsider": grid_worker(module_engine, "es_wb", other_grid),
        "commander": township_commander(module_engine, "es_cmd", TOWNSHIP, on_duty=False),
        "other_commander": township_commander(module_engine, "es_cmd_b", OTHER,
                                              on_duty=False),
        "points": {"mine": list(point_in(module_engine, GRID)),
                   "other": list(point_in(module_engine, other_grid))},
    }


def _report(http, user, point) -> dict:
    r = http.post("/api/v1/events", headers=user.headers, json={
        "type_code": "0301", "description": "楼道堆物", "crs": "CGCS2000",
        "location": {"type": "Point", "coordinates": point}})
    assert r.status_code == 201, r.text
    return r.json()


def test_changes_arrive_in_the_jurisdiction_only(live_server, http, people, streams):
    mine = SseReader(live_server, STREAM, people["commander"].headers)
    theirs = SseReader(live_server, STREAM, people["other_commander"].headers)
    streams.extend([mine, theirs])
    assert mine.status == 200 and mine.content_type.startswith("text/event-stream")
    event = _report(http, people["worker"], people["points"]["mine"])
    got = mine.next("change", lambda d: d["id"] == event["id"])["data"]
    assert got["action"] == "report" and got["state"] == event["state"]
    assert "path" not in got  # the filter's input stays on the server
    accept = http.post(f"/api/v1/events/{event['id']}/actions/accept",
                       headers=people["commander"].headers,
                       json={"version": event["version"]})
    assert accept.status_code == 200, accept.text
    later = mine.next("change", lambda d: d["id"] == event["id"] and d["action"] == "accept")
    assert later["data"]["version"] > got["version"]
    # The other township's stream sees its own event, and never saw ours before it.
    other = _report(http, people["outsider"], people["points"]["other"])
    theirs.next("change", lambda d: d["id"] == other["id"])
    assert all(e["data"].get("id") != event["id"] for e in theirs.log)


def test_needs_login_and_event_read(live_server, people):
    anonymous = SseReader(live_server, STREAM, {})
    assert anonymous.status == 401
    assert anonymous.content_type.startswith("application/problem+json")
