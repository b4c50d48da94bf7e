"""Live patrol positions over SSE: the snapshot, moves from the batch endpoint, online →
offline changes, the jurisdiction filter, the audit row, disconnects and shutdown.

The app is served here (not through ``live_server``) so the tests can look at its hub, with
an online window of 12 s (GRIDGOV_PATROL_ONLINE_MINUTES=0.2) so "offline" comes quickly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from tests.conftest import make_settings
from tests.support.live import app_with, serve
from tests.support.places import grid_of_township, point_in
from tests.support.sse import SseReader
from tests.support.users import TestUser, grid_worker, township_commander

TOWNSHIP = "330302006"
GRID = "330302006044001"
OTHER = "330302024"
STREAM = "/api/v1/patrols/live/stream"


@pytest.fixture(scope="module")
def served(pg, module_db) -> Iterator[tuple[object, str]]:
    """The app (for its hub) and its URL; the hub reads the online window at start-up."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRIDGOV_PATROL_ONLINE_MINUTES", "0.2")
        app = app_with(make_settings(pg, module_db, jobs_enabled=False))
        with serve(app) as url:
            yield app, url


@pytest.fixture(scope="module")
def api(served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[1], timeout=30) as c:
        yield c


class People:
    """Two workers of township A and one of township B, A's commander."""

    def __init__(self, engine) -> None:
        other_grid = grid_of_township(engine, OTHER, grid_type="general")
        self.point = point_in(engine, GRID)
        self.other_point = point_in(engine, other_grid)
        self.worker = grid_worker(engine, "live_w1", GRID)
        self.worker2 = grid_worker(engine, "live_w2", GRID)
        self.outsider = grid_worker(engine, "live_wb", other_grid)
        self.commander = township_commander(engine, "live_cmd", TOWNSHIP, on_duty=False)


@pytest.fixture(scope="module")
def people(module_engine) -> People:
    return People(module_engine)


def _open(served, opened: list[SseReader], user: TestUser) -> SseReader:
    reader = SseReader(served[1], STREAM, user.headers)
    opened.append(reader)
    return reader


def _upload(api: httpx.Client, user: TestUser, point: tuple[float, float], tag: str,
            age_s: float = 2.0) -> dict:
    """Send a batch of three fixes ending ``age_s`` ago, 10 m apart, as the worker."""
    end = datetime.now(GOVERNANCE_TZ) - timedelta(seconds=age_s)
    fixes = [{"t": int((end - timedelta(seconds=10 * (2 - i))).timestamp() * 1000),
              "lon": point[0] + i * 0.0001, "lat": point[1], "accuracy": 5.0} for i in range(3)]
    r = api.post("/api/v1/patrols/points", json={"batch_id": tag, "crs": "WGS84",
                                                 "points": fixes}, headers=user.headers)
    assert r.status_code == 201, r.text
    return fixes[-1]


def test_snapshot_then_moves_inside_the_jurisdiction_only(api, served, people, streams,
                                                          module_engine) -> None:
    _upload(api, people.worker2, people.point, "live-w2-first")
    live = _open(served, streams, people.commander)
    assert live.status == 200 and live.content_type.startswith("text/event-stream")
    snapshot = live.next("snapshot")["data"]
    assert snapshot["type"] == "FeatureCollection"
    assert people.worker2.id in {f["id"] for f in snapshot["features"]}
    _upload(api, people.outsider, people.other_point, "live-out-1")
    last = _upload(api, people.worker, people.point, "live-w1-1")
    move = live.next("move", lambda d: d["id"] == people.worker.id)["data"]
    assert move["geometry"]["coordinates"] == pytest.approx([last["lon"], last["lat"]], abs=1e-7)
    props = move["properties"]
    assert props["online"] is True and props["username"] == "live_w1"
    assert props["path"].endswith(GRID)
    # The outsider's batch committed before the worker's: had it passed the filter, it would
    # have arrived first.
    assert people.outsider.id not in {e["data"].get("id") for e in live.seen()}
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        audited = s.execute(text(
            "SELECT count(*) FROM audit_log WHERE action = 'patrol.live' "
            "AND actor_user_id = :u"), {"u": people.commander.id}).scalar()
    assert audited >= 1


def test_outsider_is_not_in_the_snapshot(api, served, people, streams) -> None:
    _upload(api, people.outsider, people.other_point, "live-out-2")
    live = _open(served, streams, people.commander)
    ids = {f["id"] for f in live.next("snapshot")["data"]["features"]}
    assert people.outsider.id not in ids and ids


def test_worker_goes_offline_after_the_window(api, served, people, streams) -> None:
    live = _open(served, streams, people.commander)
    live.next("snapshot")
    _upload(api, people.worker, people.point, "live-w1-offline", age_s=1.0)
    assert live.next("move", lambda d: d["id"] == people.worker.id)["data"][
        "properties"]["online"] is True
    gone = live.next("offline", lambda d: d["id"] == people.worker.id, timeout=40)["data"]
    assert gone["properties"]["online"] is False


def test_needs_the_permission_and_a_login(api, served, people, streams) -> None:
    denied = _open(served, streams, people.worker)
    assert denied.status == 403 and b"patrol.playback" in denied.body
    assert api.get(STREAM).status_code == 401


def test_client_disconnect_ends_the_subscription(served, people, streams) -> None:
    hub = served[0].state.live_hub  # type: ignore[attr-defined]
    before = hub.subscribers
    live = _open(served, streams, people.commander)
    live.next("snapshot")
    assert hub.subscribers == before + 1
    live.close()
    deadline = time.monotonic() + 20
    while hub.subscribers > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert hub.subscribers == before


def test_shutdown_ends_open_streams(served, people, streams) -> None:
    """Last in the module: the hub refuses new streams afterwards."""
    hub = served[0].state.live_hub  # type: ignore[attr-defined]
    live = _open(served, streams, people.commander)
    live.next("snapshot")
    hub.request_close()
    item = live.events.get(timeout=20)
    while item is not None:
        item = live.events.get(timeout=20)
    refused = _open(served, streams, people.commander)
    assert refused.status == 503
