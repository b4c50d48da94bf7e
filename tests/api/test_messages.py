"""The message center over real HTTP: messages written by the database when an event moves,
pushed live over SSE to their owner only, read marks, settings, retention and bad input.

Users are made per module: a grid worker who reports, a commander of township 330302006
(五马街道) who dispatches, a member of its 综合执法平台 who receives the dispatch, and a
commander of another township who must never see any of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import text

from geoserver.config import MessageSettings
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.domain.principal import SYSTEM
from geoserver.services import event_actions, notifications
from tests.support.places import grid_of_township, point_in
from tests.support.sse import SseReader
from tests.support.users import EventStaff, TestUser, make_user, platform_member

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"


class People(EventStaff):
    """The module's users, a point inside the grid and one in a grid of the other township."""

    def __init__(self, engine) -> None:
        super().__init__(engine, "msg", grid=GRID, township=TOWNSHIP, other=OTHER)
        self.platform = platform_member(engine, "msg_zf", TOWNSHIP)
        self.other_worker = make_user(engine, "msg_other_w", roles=["grid_worker"],
                                      scope=[OTHER])
        other_grid = grid_of_township(engine, OTHER, grid_type="general")
        self.other_point = list(point_in(engine, other_grid))


@pytest.fixture(scope="module")
def people(module_engine, catalogue) -> People:
    return People(module_engine)


@pytest.fixture
def stream(live_server, streams) -> Callable[..., SseReader]:
    """Open SSE streams for the test; all are closed afterwards."""

    def open_stream(user: TestUser, path: str = "/api/v1/messages/stream",
                    **headers: str) -> SseReader:
        reader = SseReader(live_server, path, {**user.headers, **headers})
        streams.append(reader)
        return reader

    return open_stream


def _report(http: httpx.Client, user: TestUser, point: list[float], text_: str) -> dict:
    body = {"type_code": "0301", "description": text_, "crs": "WGS84",
            "location": {"type": "Point", "coordinates": point}}
    r = http.post("/api/v1/events", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    return r.json()


def _act(http: httpx.Client, user: TestUser, ev: dict, action: str, **body) -> dict:
    r = http.post(f"/api/v1/events/{ev['id']}/actions/{action}", json=body,
                  headers={**user.headers, "If-Match": f'"{ev["version"]}"'})
    assert r.status_code == 200, r.text
    return r.json()


def _dispatched(http: httpx.Client, people: People, text_: str) -> dict:
    """An event reported in the grid, accepted and dispatched to the 综合执法平台."""
    ev = _report(http, people.worker, people.point, text_)
    ev = _act(http, people.commander, ev, "accept")
    return _act(http, people.commander, ev, "dispatch", lead={"org_unit_code": f"zf{TOWNSHIP}"})


def _messages(http: httpx.Client, user: TestUser, **params) -> dict:
    r = http.get("/api/v1/messages", params=params, headers=user.headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_dispatch_arrives_over_the_stream_for_the_receiving_unit_only(http, people,
                                                                       stream) -> None:
    mine = stream(people.platform)
    theirs = stream(people.other)
    assert mine.status == 200 and mine.content_type.startswith("text/event-stream")
    before = mine.next("unread")["data"]["unread"]
    theirs.next("unread")
    ev = _dispatched(http, people, "路边违规占道经营，影响通行")
    got = mine.next("message", lambda d: d["event_id"] == ev["id"])
    assert got["data"]["kind"] == "new_dispatch"
    assert ev["code"] in got["data"]["title"] and "user_id" not in got["data"]
    assert int(got["id"]) == got["data"]["id"]
    listed = _messages(http, people.platform)
    assert listed["items"][0]["id"] == got["data"]["id"]
    assert listed["unread"] == before + 1
    # A later message for the other commander (a report in their township) arrives on their
    # stream; notifications are delivered in commit order, so the dispatch never will.
    later = _report(http, people.other_worker, people.other_point, "小区消防通道被占用")
    theirs.next("message", lambda d: d["event_id"] == later["id"])
    assert not any(e["event"] == "message" and e["data"]["event_id"] == ev["id"]
                   for e in theirs.seen())
    assert ev["id"] not in {m["event_id"] for m in _messages(http, people.other)["items"]}


def test_report_notifies_the_command_centre_but_not_the_actor(http, people) -> None:
    ev = _report(http, people.worker, people.point, "楼道堆放杂物")
    mine = [m for m in _messages(http, people.commander)["items"] if m["event_id"] == ev["id"]]
    assert [m["kind"] for m in mine] == ["new_report"]
    assert not [m for m in _messages(http, people.worker)["items"] if m["event_id"] == ev["id"]]
    ev = _act(http, people.commander, ev, "accept")
    ev = _act(http, people.commander, ev, "remind", note="请尽快派遣")
    # The commander reminded: their own action is no message for them.
    kinds = [m["kind"] for m in _messages(http, people.commander)["items"]
             if m["event_id"] == ev["id"]]
    assert kinds == ["new_report"]


def test_supervision_reminder_return_and_overdue(http, people, module_engine) -> None:
    ev = _dispatched(http, people, "沿街店铺油烟扰民")
    ev = _act(http, people.commander, ev, "supervise", note="限期整改",
              deadline="2030-01-02T10:00:00+08:00")
    ev = _act(http, people.commander, ev, "remind", note="请加快")
    ev = _act(http, people.platform, ev, "sign")
    ev = _act(http, people.platform, ev, "request_return", note="不属于本平台")
    ev = _act(http, people.commander, ev, "approve_return")
    # The overdue job reminds as the system, through the same action (event_sla).
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        event_actions.act(s, actor=SYSTEM, event_id=ev["id"], action="remind",
                          data={"version": ev["version"], "note": "时限已超, 自动催办"})
    zf = {m["kind"]: m for m in _messages(http, people.platform)["items"]
          if m["event_id"] == ev["id"]}
    assert set(zf) == {"new_dispatch", "supervision", "reminder", "returned"}
    supervision = zf["supervision"]["body"]
    assert "限期整改" in supervision and "2030-01-02 10:00" in supervision
    cmd = [m["kind"] for m in _messages(http, people.commander)["items"]
           if m["event_id"] == ev["id"]]
    assert sorted(cmd) == ["new_report", "overdue", "return_requested"]


def test_mark_read_and_read_all(http, people, stream) -> None:
    ev = _dispatched(http, people, "井盖缺失")
    message = next(m for m in _messages(http, people.platform, unread="true")["items"]
                   if m["event_id"] == ev["id"])
    other_tab = stream(people.platform)
    before = other_tab.next("unread")["data"]["unread"]
    r = http.post(f"/api/v1/messages/{message['id']}/read", headers=people.platform.headers)
    assert r.status_code == 200 and r.json()["unread"] == before - 1
    # Another open page of the same user hears of it.
    assert other_tab.next("read")["data"] == {"read": [message["id"]], "unread": before - 1}
    again = http.post(f"/api/v1/messages/{message['id']}/read", headers=people.platform.headers)
    assert again.status_code == 200 and again.json()["unread"] == before - 1
    assert message["id"] not in {m["id"] for m in
                                 _messages(http, people.platform, unread="true")["items"]}
    r = http.post("/api/v1/messages/read-all", json={"kind": "new_dispatch"},
                  headers=people.platform.headers)
    assert r.status_code == 200
    count = http.get("/api/v1/messages/unread-count", headers=people.platform.headers).json()
    assert "new_dispatch" not in count["by_kind"]
    r = http.post("/api/v1/messages/read-all", headers=people.platform.headers)
    assert r.status_code == 200 and r.json()["unread"] == 0


def test_someone_elses_message_is_404(http, people) -> None:
    ev = _dispatched(http, people, "垃圾满溢")
    message = next(m for m in _messages(http, people.platform)["items"]
                   if m["event_id"] == ev["id"])
    for intruder in (people.other, people.commander, people.worker):
        r = http.post(f"/api/v1/messages/{message['id']}/read", headers=intruder.headers)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
    still = next(m for m in _messages(http, people.platform)["items"] if m["id"] == message["id"])
    assert still["read_at"] is None


def test_resume_after_reconnect_with_last_event_id(http, people, stream) -> None:
    first = _dispatched(http, people, "树木倒伏")
    second = _dispatched(http, people, "路灯损坏")
    ids = sorted(m["id"] for m in _messages(http, people.platform)["items"]
                 if m["event_id"] in (first["id"], second["id"]))
    resumed = stream(people.platform, **{"Last-Event-ID": str(ids[0])})
    resumed.next("unread")
    got = resumed.next("message")
    assert int(got["id"]) == ids[1] and got["data"]["event_id"] == second["id"]


def test_stream_survives_a_lost_listen_connection(pg, module_db, http, people,
                                                  stream) -> None:
    live = stream(people.platform)
    live.next("unread")
    conn = pg.superuser()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = %s AND application_name = 'gridgov-live'", (module_db,))
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()
    # The hub reconnects and has every stream resynchronise: the count comes again.
    live.next("unread")
    ev = _dispatched(http, people, "窨井盖破损")
    assert live.next("message", lambda d: d["event_id"] == ev["id"])["data"]["kind"] == (
        "new_dispatch")


def test_settings_turn_kinds_off_and_mute(http, people, stream) -> None:
    h = people.platform.headers
    r = http.get("/api/v1/messages/settings", headers=h)
    assert r.status_code == 200 and r.json()["muted"] is False
    assert all(r.json()["kinds"].values()) and "supervision" in r.json()["kinds"]
    r = http.put("/api/v1/messages/settings", json={"kinds": {"reminder": False}, "muted": True},
                 headers=h)
    assert r.status_code == 200 and r.json()["kinds"]["reminder"] is False
    try:
        live = stream(people.platform)
        live.next("unread")
        ev = _dispatched(http, people, "广告牌松动")
        pushed = live.next("message", lambda d: d["event_id"] == ev["id"])
        assert pushed["data"]["muted"] is True
        _act(http, people.commander, ev, "remind", note="请加快")
        kinds = {m["kind"] for m in _messages(http, people.platform)["items"]
                 if m["event_id"] == ev["id"]}
        assert kinds == {"new_dispatch"}
        assert http.get("/api/v1/messages/settings", headers=h).json()["muted"] is True
    finally:
        r = http.put("/api/v1/messages/settings", json={"kinds": {"reminder": True},
                                                        "muted": False}, headers=h)
        assert r.status_code == 200


def test_broadcast_reaches_the_staff_under_its_region(http, people, module_engine) -> None:
    from geoserver.services import auth, broadcasts

    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        sender = auth.principal_for(s, people.commander.id)
    assert sender is not None
    with scoped_session(module_engine, sender.scope) as s:
        sent = broadcasts.send_broadcast(s, actor=sender, data=broadcasts.BroadcastIn(
            title="防台风通知", body="今晚台风过境，请加强巡查。", region_code=TOWNSHIP))
    got = [m for m in _messages(http, people.worker)["items"] if m["kind"] == "broadcast"]
    assert [m["broadcast_id"] for m in got] == [sent.id] and "防台风通知" in got[0]["title"]
    # Not to the sender, not outside the region.
    assert not [m for m in _messages(http, people.commander)["items"] if m["kind"] == "broadcast"]
    assert not [m for m in _messages(http, people.other)["items"] if m["kind"] == "broadcast"]


def test_retention_job_prunes_old_read_messages(http, people, module_engine) -> None:
    ev = _dispatched(http, people, "消防栓损坏")
    message = next(m for m in _messages(http, people.platform)["items"]
                   if m["event_id"] == ev["id"])
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        s.execute(text("SELECT set_config('gridgov.user_id', :u, true)"),
                  {"u": str(people.platform.id)})
        s.execute(text("UPDATE notification SET read_at = now() - interval '40 days' "
                       "WHERE id = :i"), {"i": message["id"]})
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        deleted = notifications.prune(s, settings=MessageSettings(
            keep_read_days=30, keep_days=3650))
    assert deleted >= 1
    assert message["id"] not in {m["id"] for m in _messages(http, people.platform)["items"]}


def test_the_app_role_sees_only_its_own_rows(people, module_engine) -> None:
    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        assert s.execute(text("SELECT count(*) FROM notification")).scalar() == 0
        s.execute(text("SELECT set_config('gridgov.user_id', :u, true)"),
                  {"u": str(people.other.id)})
        owners = set(s.execute(text("SELECT DISTINCT user_id FROM notification")).scalars())
        assert owners <= {people.other.id}


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 0}, "limit"), ({"limit": 1000}, "limit"), ({"kind": "gossip"}, "kind"),
    ({"before_id": "x"}, "before_id"), ({"unread": "maybe"}, "unread"),
])
def test_list_bad_input_names_the_field(http, people, params, field) -> None:
    r = http.get("/api/v1/messages", params=params, headers=people.platform.headers)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json(), ensure_ascii=False)


@pytest.mark.parametrize(("body", "field"), [
    ({"kinds": {"supervision": False}}, "kinds.supervision"),
    ({"kinds": {"gossip": True}}, "kinds.gossip"),
    ({"kinds": {"reminder": "sometimes"}}, "reminder"),
    ({"muted": "loud"}, "muted"),
    ({"colour": "red"}, "colour"),
])
def test_settings_bad_input_names_the_field(http, people, body, field) -> None:
    r = http.put("/api/v1/messages/settings", json=body, headers=people.worker.headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in json.dumps(r.json(), ensure_ascii=False)


def test_read_bad_input(http, people) -> None:
    h = people.platform.headers
    assert http.post("/api/v1/messages/0/read", headers=h).status_code == 422
    assert http.post("/api/v1/messages/abc/read", headers=h).status_code == 422
    assert http.post("/api/v1/messages/999999999/read", headers=h).status_code == 404
    r = http.post("/api/v1/messages/read-all", json={"kind": "gossip"}, headers=h)
    assert r.status_code == 422 and "kind" in r.text
    r = http.post("/api/v1/messages/read-all", json={"event_id": -1}, headers=h)
    assert r.status_code == 422 and "event_id" in r.text


def test_stream_bad_input_and_anonymous(live_server, people, stream) -> None:
    bad = stream(people.platform, **{"Last-Event-ID": "abc"})
    assert bad.status == 422 and b"Last-Event-ID" in bad.body
    with httpx.Client(base_url=live_server, timeout=10) as c:
        assert c.get("/api/v1/messages/stream").status_code == 401
        assert c.get("/api/v1/messages").status_code == 401
