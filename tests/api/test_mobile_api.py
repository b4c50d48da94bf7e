"""The phone page's server pieces over real HTTP: exactly-once reports and actions with photos,
my tasks, profile, photos and broadcasts, with bad input and another jurisdiction's ids."""

from __future__ import annotations

import io
import json
import threading
import uuid
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import text

from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from tests.support.mobile import load_catalogue, mobile_settings, serve
from tests.support.places import grid_of_township
from tests.support.users import EventStaff, grid_worker

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mobile-data")


@pytest.fixture(scope="module")
def live_server(pg, module_db, data_dir):
    with serve(mobile_settings(pg, module_db, data_dir)) as url:
        yield url


class People(EventStaff):
    """EventStaff, and a grid worker of the other township."""

    def __init__(self, engine) -> None:
        super().__init__(engine, "mb", grid=GRID, township=TOWNSHIP, other=OTHER)
        self.other_worker = grid_worker(engine, "mb_other_w", grid_of_township(engine, OTHER))


@pytest.fixture(scope="module")
def people(module_engine, live_server) -> People:
    load_catalogue(module_engine)
    return People(module_engine)


def jpeg(color: str = "red", size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


def _report_body(people: People, **extra: Any) -> dict[str, Any]:
    return {"type_code": "0301", "description": "楼道堆放杂物堵塞消防通道",
            "location": {"type": "Point", "coordinates": people.point}, "crs": "WGS84", **extra}


def _post(http: httpx.Client, url: str, user: Any, key: str, body: dict[str, Any],
          photos: list[bytes] = ()) -> httpx.Response:
    files = [("photos", (f"p{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    return http.post(url, headers=user.headers, data={"client_key": key,
                                                      "body": json.dumps(body)},
                     files=files or None)


def _count(engine, sql: str, **params: Any) -> int:
    with scoped_session(engine, SYSTEM_SCOPE) as s:
        return int(s.execute(text(sql), params).scalar_one())


def test_report_with_photos_is_stored_once(http, people, module_engine, data_dir) -> None:
    key = str(uuid.uuid4())
    body = _report_body(people)
    first = _post(http, "/api/v1/mobile/reports", people.worker, key, body, [jpeg(), jpeg("blue")])
    assert first.status_code == 201, first.text
    again = _post(http, "/api/v1/mobile/reports", people.worker, key, body,
                  [jpeg(), jpeg("blue")])
    assert again.status_code == 200 and again.json()["duplicate"] is True
    event = first.json()["event"]
    assert again.json()["event"]["id"] == event["id"] and event["grid_code"] == GRID
    assert _count(module_engine, "SELECT count(*) FROM event e JOIN mobile_request m "
                  "ON m.event_id = e.id WHERE m.client_key = :k", k=key) == 1
    photos = first.json()["photos"]
    assert [p["stage"] for p in photos] == ["report", "report"]
    got = http.get(photos[0]["url"], headers=people.worker.headers)
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content == jpeg()
    assert len(list((data_dir / "files" / "photos").rglob("*.bin"))) >= 2
    # Another township's commander sees neither the event's photos nor the photo itself.
    assert http.get(photos[0]["url"], headers=people.other.headers).status_code == 404
    assert http.get(f"/api/v1/mobile/events/{event['id']}/photos",
                    headers=people.other.headers).status_code == 404


def test_concurrent_repeats_make_one_event(live_server, people, module_engine) -> None:
    key = str(uuid.uuid4())
    body = _report_body(people, description="并发重发的同一条上报")
    barrier = threading.Barrier(3)
    codes: list[int] = []

    def send() -> None:
        with httpx.Client(base_url=live_server, timeout=30) as c:
            barrier.wait()
            codes.append(_post(c, "/api/v1/mobile/reports", people.worker, key, body).status_code)

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [200, 200, 201]
    assert _count(module_engine, "SELECT count(*) FROM event WHERE description = :d",
                  d="并发重发的同一条上报") == 1


def test_same_key_other_body_is_409(http, people) -> None:
    key = str(uuid.uuid4())
    assert _post(http, "/api/v1/mobile/reports", people.worker, key,
                 _report_body(people)).status_code == 201
    r = _post(http, "/api/v1/mobile/reports", people.worker, key,
              _report_body(people, description="另一件事"))
    assert r.status_code == 409 and "client_key" in r.json()["detail"]


@pytest.mark.parametrize(("key", "body", "photo", "field"), [
    ("short", None, None, "client_key"),
    (None, "not json", None, "body"),
    (None, None, b"GIF89a not really", "photos[0]"),
    (None, {"type_code": "0301", "description": "x",
            "location": {"type": "Point", "coordinates": [120.65, 28.01]}}, None, "crs"),
])
def test_bad_reports_are_422(http, people, key, body, photo, field) -> None:
    data = {"client_key": key or str(uuid.uuid4()),
            "body": body if isinstance(body, str) else json.dumps(body or _report_body(people))}
    files = [("photos", ("x.jpg", photo, "image/jpeg"))] if photo else None
    r = http.post("/api/v1/mobile/reports", headers=people.worker.headers, data=data,
                  files=files)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


def test_oversized_photo_is_413(http, people) -> None:
    huge = b"\xff\xd8" + b"0" * (5 * 1024 * 1024 + 10)
    r = _post(http, "/api/v1/mobile/reports", people.worker, str(uuid.uuid4()),
              _report_body(people), [huge])
    assert r.status_code == 413


def _dispatched_to_grid(http, people) -> dict[str, Any]:
    r = http.post("/api/v1/events", headers=people.commander.headers, json={
        **_report_body(people), "description": "井盖缺失", "source": "commander"})
    assert r.status_code == 201, r.text
    ev = r.json()
    for action, extra in (("accept", {}), ("dispatch", {"lead": {"grid_code": GRID}})):
        r = http.post(f"/api/v1/events/{ev['id']}/actions/{action}",
                      headers=people.commander.headers, json={"version": ev["version"], **extra})
        assert r.status_code == 200, r.text
        ev = r.json()
    return ev


def _phone_act(http, people, ev, action, photos=(), key=None, **body) -> httpx.Response:
    return _post(http, f"/api/v1/mobile/events/{ev['id']}/actions/{action}", people.worker,
                 key or str(uuid.uuid4()), {"version": ev["version"], **body}, list(photos))


def test_tasks_sign_handle_verify_from_the_phone(http, people) -> None:
    ev = _dispatched_to_grid(http, people)
    tasks = http.get("/api/v1/mobile/tasks", headers=people.worker.headers).json()
    assert ev["id"] in [e["id"] for e in tasks["to_sign"]]
    r = _phone_act(http, people, ev, "sign")
    assert r.status_code == 201, r.text
    ev = r.json()["event"]
    # 督办 by the commander puts it in the worker's supervised list.
    r = http.post(f"/api/v1/events/{ev['id']}/actions/supervise", headers=people.commander.headers,
                  json={"version": ev["version"], "note": "请今日内处置"})
    assert r.status_code == 200, r.text
    ev = r.json()
    tasks = http.get("/api/v1/mobile/tasks", headers=people.worker.headers).json()
    assert ev["id"] in [e["id"] for e in tasks["to_handle"]]
    assert ev["id"] in [e["id"] for e in tasks["supervised"]]
    key = str(uuid.uuid4())
    r = _phone_act(http, people, ev, "handle", [jpeg("green")], key=key, result="已补装井盖")
    assert r.status_code == 201, r.text
    repeat = _phone_act(http, people, ev, "handle", [jpeg("green")], key=key, result="已补装井盖")
    assert repeat.status_code == 200 and repeat.json()["duplicate"] is True
    ev = r.json()["event"]
    assert ev["state"] == "handled"
    assert [p["stage"] for p in r.json()["photos"]] == ["handle"]
    # Verification sends the worker's position: 2 km away is refused with the distance.
    far = [people.point[0] + 0.02, people.point[1]]
    r = _phone_act(http, people, ev, "verify_pass", location={"type": "Point",
                                                              "coordinates": far}, crs="WGS84")
    assert r.status_code == 422 and " m from the event" in r.json()["detail"]
    r = _phone_act(http, people, ev, "verify_pass", [jpeg("white")],
                   location={"type": "Point", "coordinates": people.point}, crs="WGS84")
    assert r.status_code == 201, r.text
    assert r.json()["event"]["state"] == "verified"
    assert [p["stage"] for p in r.json()["photos"]] == ["handle", "verify_pass"]


def test_commander_actions_are_refused_on_the_phone(http, people) -> None:
    ev = _dispatched_to_grid(http, people)
    r = _phone_act(http, people, ev, "close")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "action"


def test_other_jurisdiction_event_is_404(http, people) -> None:
    ev = _dispatched_to_grid(http, people)
    r = _post(http, f"/api/v1/mobile/events/{ev['id']}/actions/sign", people.other_worker,
              str(uuid.uuid4()), {"version": ev["version"]})
    assert r.status_code == 404, r.text
    assert http.get(f"/api/v1/mobile/events/{ev['id']}/photos",
                    headers=people.other.headers).status_code == 404


def test_broadcasts_reach_the_grid_not_other_townships(http, people) -> None:
    r = http.post("/api/v1/mobile/broadcasts", headers=people.commander.headers, json={
        "region_code": TOWNSHIP, "title": "防台通知", "body": "今晚台风过境，请巡查低洼地带"})
    assert r.status_code == 201, r.text
    sent = r.json()
    mine = http.get("/api/v1/mobile/broadcasts", headers=people.worker.headers).json()
    assert [b["id"] for b in mine if b["id"] == sent["id"]] and not mine[0]["read"]
    assert sent["id"] not in [b["id"] for b in http.get(
        "/api/v1/mobile/broadcasts", headers=people.other.headers).json()]
    assert http.post(f"/api/v1/mobile/broadcasts/{sent['id']}/read",
                     headers=people.worker.headers).status_code == 204
    unread = http.get("/api/v1/mobile/broadcasts", params={"unread": True},
                      headers=people.worker.headers).json()
    assert sent["id"] not in [b["id"] for b in unread]
    assert http.post(f"/api/v1/mobile/broadcasts/{sent['id']}/read",
                     headers=people.other.headers).status_code == 404
    # Workers may not send; nobody sends outside their jurisdiction.
    assert http.post("/api/v1/mobile/broadcasts", headers=people.worker.headers, json={
        "region_code": GRID, "title": "x", "body": "y"}).status_code == 403
    assert http.post("/api/v1/mobile/broadcasts", headers=people.commander.headers, json={
        "region_code": OTHER, "title": "x", "body": "y"}).status_code == 422


@pytest.mark.parametrize(("change", "field"), [
    ({"expires_at": "2020-01-01T00:00:00+08:00"}, "expires_at"),  # already expired
    ({"expires_at": "2999-01-01T18:00:00"}, "expires_at"),  # no time zone
    ({"title": "防台\u0000通知"}, "title"),
    ({"body": "今晚\u001b台风"}, "body"),
    ({"title": ""}, "title"),
    ({"region_code": "鹿城"}, "region_code"),
])
def test_bad_broadcasts_are_422(http, people, change, field) -> None:
    r = http.post("/api/v1/mobile/broadcasts", headers=people.commander.headers, json={
        "region_code": TOWNSHIP, "title": "防台通知", "body": "请巡查低洼地带", **change})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    # The connection is still good for the next request.
    assert http.get("/api/v1/mobile/broadcasts", headers=people.worker.headers).status_code == 200


def test_unknown_broadcast_is_404(http, people) -> None:
    assert http.post("/api/v1/mobile/broadcasts/987654321/read",
                     headers=people.worker.headers).status_code == 404


def test_profile(http, people) -> None:
    me = http.get("/api/v1/mobile/profile", headers=people.worker.headers).json()
    assert me["username"] == "mb_worker" and me["grid_codes"] == [GRID]
    assert me["positions"][0]["position"] == "grid_worker"
    assert me["can"]["patrol.report"] and not me["can"]["broadcast.send"]
    assert set(me["figures"]) >= {"patrols_today", "mileage_today_m", "reported_month"}
    assert http.get("/api/v1/mobile/profile").status_code == 401
