"""Event changes over SSE: every action on an event of the user's jurisdiction, as it commits,
and nothing from another township."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from geoserver.database.bootstrap import APP_ROLE
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session, sqlalchemy_url
from tests.api.test_messages import SseReader
from tests.support.users import make_user

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"
STREAM = "/api/v1/events/stream"


@pytest.fixture(scope="module")
def people(pg, module_db, http):
    e = create_engine(sqlalchemy_url(pg.url(APP_ROLE, module_db)))
    with scoped_session(e, SYSTEM_SCOPE) as s:
        other_grid, = s.execute(text(
            "SELECT code FROM region WHERE level = 'grid' AND valid_to IS NULL AND "
            "grid_type = 'general' AND code LIKE :p ORDER BY code LIMIT 1"),
            {"p": OTHER + "%"}).one()
        points = {code: s.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM region "
            "WHERE code = :c AND valid_to IS NULL) x"), {"c": code}).one()
            for code in (GRID, other_grid)}
    found = {
        "worker": make_user(e, "es_w", roles=["grid_worker"], scope=[GRID],
                            positions=[("grid_worker", GRID)]),
        "outsider": make_user(e, "es_wb", roles=["grid_worker"], scope=[other_grid],
                              positions=[("grid_worker", other_grid)]),
        "commander": make_user(e, "es_cmd", roles=["township_commander"], scope=[TOWNSHIP]),
        "other_commander": make_user(e, "es_cmd_b", roles=["township_commander"],
                                     scope=[OTHER]),
        "points": {"mine": list(points[GRID]), "other": list(points[other_grid])},
    }
    admin = make_user(e, "es_admin", roles=["admin"], scope=["330300"])
    e.dispose()
    assert http.post("/api/v1/event-types/initialize", headers=admin.headers).status_code == 200
    return found


@pytest.fixture
def streams() -> Iterator[list[SseReader]]:
    opened: list[SseReader] = []
    yield opened
    for reader in opened:
        reader.close()


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
