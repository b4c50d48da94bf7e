"""The event center over real HTTP: the 四平台 loop, conflicts, scope and bad input.

Users are made per module (tests/support/users.py): a grid worker of one grid, two commanders of
township 330302006 (五马街道), a member of its 综合执法平台, a commander of another township
and an administrator who loads the type catalogue.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from tests.support.users import EventStaff, TestUser, platform_member, township_commander

TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"


class People(EventStaff):
    """The module's users, a point inside the grid and one outside every grid."""

    def __init__(self, engine, admin: TestUser) -> None:
        super().__init__(engine, "ev", grid=GRID, township=TOWNSHIP, other=OTHER)
        self.commander_b = township_commander(engine, "ev_cmd_b", TOWNSHIP)
        self.platform = platform_member(engine, "ev_zf", TOWNSHIP)
        self.admin = admin
        with scoped_session(engine, SYSTEM_SCOPE) as s:
            row = s.execute(text(
                "SELECT ST_X(p) + 0.05, ST_Y(p) FROM (SELECT ST_ClosestPoint(geom, "
                "ST_SetSRID(ST_Point(121.5, 28.02), 4490)) p FROM region WHERE code = '330302' "
                "AND valid_to IS NULL) x")).one()
            self.far_point = [float(row[0]), float(row[1])]


@pytest.fixture(scope="module")
def people(module_engine, city_admin, catalogue) -> People:
    return People(module_engine, city_admin)


def _report(http: httpx.Client, user: Any, people: People, **extra) -> dict:
    body = {"type_code": "0301", "description": "楼道堆放杂物堵塞消防通道",
            "location": {"type": "Point", "coordinates": people.point}, "crs": "WGS84", **extra}
    r = http.post("/api/v1/events", json=body, headers=user.headers)
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    return r.json()


def _act(http: httpx.Client, user: Any, ev: dict, action: str, *, expect: int = 200,
         **body) -> dict:
    headers = {**user.headers, "If-Match": f'"{ev["version"]}"'}
    r = http.post(f"/api/v1/events/{ev['id']}/actions/{action}", json=body, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


def test_catalogue_is_admin_only(http, people) -> None:
    assert http.post("/api/v1/event-types/initialize",
                     headers=people.worker.headers).status_code == 403
    types = http.get("/api/v1/event-types", headers=people.worker.headers).json()
    assert {"01", "0301", "09"} <= {t["code"] for t in types}
    rules = http.get("/api/v1/event-types/03/rules", headers=people.worker.headers).json()
    assert {r["severity"] for r in rules} == {"normal", "major", "urgent"}


def test_full_loop_over_http(http, people) -> None:
    ev = _report(http, people.worker, people)
    assert ev["state"] == "reported" and ev["grid_code"] == GRID
    assert ev["routes"][0]["unit"]["code"] == f"zf{TOWNSHIP}" and ev["routes"][0]["reason"]
    ev = _act(http, people.commander, ev, "accept")
    ev = _act(http, people.commander, ev, "dispatch", assisting=[{"grid_code": GRID}])
    ev = _act(http, people.platform, ev, "sign")
    ev = _act(http, people.platform, ev, "handle", result="已清理")
    here = {"location": {"type": "Point", "coordinates": [ev["lon"], ev["lat"]]},
            "crs": "CGCS2000"}
    ev = _act(http, people.worker, ev, "verify_pass", **here)
    ev = _act(http, people.commander, ev, "close")
    assert ev["state"] == "closed" and ev["version"] == 7
    assert [h["action"] for h in ev["history"]] == [
        "report", "accept", "dispatch", "sign", "handle", "verify_pass", "close"]
    assert {c["phase"] for c in ev["clocks"]} == {"accept", "sign", "handle", "verify"}
    assert ev["allowed_actions"] == ["evaluate"]
    got = http.get(f"/api/v1/events/{ev['id']}", headers=people.worker.headers)
    assert got.status_code == 200 and got.headers["etag"] == '"7"'


def test_return_and_reassign(http, people) -> None:
    ev = _report(http, people.worker, people)
    ev = _act(http, people.commander, ev, "accept")
    ev = _act(http, people.commander, ev, "dispatch")
    ev = _act(http, people.platform, ev, "request_return", note="不属于本平台")
    ev = _act(http, people.commander, ev, "approve_return")
    ev = _act(http, people.commander, ev, "reassign", lead={"grid_code": GRID})
    ev = _act(http, people.worker, ev, "sign")
    assert ev["state"] == "signed"
    assert [a["end_reason"] for a in ev["assignments"]] == ["returned", None]


def test_extension(http, people) -> None:
    ev = _report(http, people.worker, people)
    for action in ("accept", "dispatch"):
        ev = _act(http, people.commander, ev, action)
    ev = _act(http, people.platform, ev, "sign")
    ev = _act(http, people.platform, ev, "request_extension", hours=4, note="等待材料")
    assert ev["pending_extension"]["hours"] == 4
    ev = _act(http, people.commander, ev, "approve_extension")
    handle = next(c for c in ev["clocks"] if c["phase"] == "handle")
    assert handle["limit_seconds"] == (48 + 4) * 3600        # 消防: 48 natural hours + 4


def test_action_not_allowed_is_409_with_allowed_actions(http, people) -> None:
    ev = _report(http, people.worker, people)
    problem = _act(http, people.commander, ev, "close", expect=409)
    assert problem["allowed_actions"] == ["accept", "escalate", "merge", "refuse", "remind",
                                          "resolve_on_spot", "supervise"]
    assert problem["state"] == "reported"


def test_stale_version_is_409(http, people) -> None:
    ev = _report(http, people.worker, people)
    _act(http, people.commander, ev, "accept")
    problem = _act(http, people.commander, ev, "refuse", expect=409, note="dup")
    assert problem["current_version"] == 2 and "dispatch" in problem["allowed_actions"]


def test_missing_version_is_422(http, people) -> None:
    ev = _report(http, people.worker, people)
    r = http.post(f"/api/v1/events/{ev['id']}/actions/accept", json={},
                  headers=people.commander.headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "version"


def test_two_commanders_at_once_one_wins(http, people, live_server) -> None:
    ev = _report(http, people.worker, people)
    barrier = threading.Barrier(2)
    results: list[int] = []

    def accept(user: Any) -> None:
        with httpx.Client(base_url=live_server, timeout=30) as c:
            barrier.wait()
            r = c.post(f"/api/v1/events/{ev['id']}/actions/accept", json={},
                       headers={**user.headers, "If-Match": '"1"'})
            results.append(r.status_code)

    threads = [threading.Thread(target=accept, args=(u,))
               for u in (people.commander, people.commander_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [200, 409]
    final = http.get(f"/api/v1/events/{ev['id']}", headers=people.commander.headers).json()
    assert final["version"] == 2 and [h["action"] for h in final["history"]] == [
        "report", "accept"]


def test_out_of_scope_event_is_404(http, people) -> None:
    ev = _report(http, people.worker, people)
    assert http.get(f"/api/v1/events/{ev['id']}", headers=people.other.headers).status_code == 404
    _act(http, people.other, ev, "accept", expect=404)
    listed = http.get("/api/v1/events", headers=people.other.headers).json()
    assert ev["id"] not in [e["id"] for e in listed["items"]]


def test_missing_crs_is_422_naming_crs(http, people) -> None:
    r = http.post("/api/v1/events", headers=people.worker.headers, json={
        "type_code": "0401", "description": "垃圾",
        "location": {"type": "Point", "coordinates": people.point}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "crs"


def test_point_beyond_tolerance_is_422(http, people) -> None:
    r = http.post("/api/v1/events", headers=people.commander.headers, json={
        "type_code": "0401", "description": "垃圾", "crs": "WGS84",
        "location": {"type": "Point", "coordinates": people.far_point}})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "location" and "nearest grid" in r.json()["detail"]


def test_queues_with_counts(http, people) -> None:
    # A text filter and deltas: the demo city may hold events of its own.
    before = http.get("/api/v1/events/queues", headers=people.commander.headers).json()
    ev = _report(http, people.worker, people, type_code="0302", description="充电桩私拉电线QX7")
    counts = http.get("/api/v1/events/queues", headers=people.commander.headers).json()
    assert counts["to_accept"] == before["to_accept"] + 1
    page = http.get("/api/v1/events", params={"queue": "to_accept", "type_code": "03",
                                              "q": "私拉电线QX7"},
                    headers=people.commander.headers).json()
    assert [e["id"] for e in page["items"]] == [ev["id"]] and page["total"] == 1
    ev = _act(http, people.commander, ev, "accept")
    _act(http, people.commander, ev, "dispatch")
    to_sign = http.get("/api/v1/events", params={"queue": "to_sign", "limit": 200},
                       headers=people.platform.headers).json()
    assert ev["id"] in [e["id"] for e in to_sign["items"]]
    bad = http.get("/api/v1/events", params={"queue": "nonsense"},
                   headers=people.commander.headers)
    assert bad.status_code == 422


def test_public_report_needs_a_phone(http, people) -> None:
    body = {"type_code": "0404", "description": "夜间噪声扰民", "crs": "GCJ02",
            "location": {"type": "Point", "coordinates": people.point}}
    assert http.post("/api/v1/events/public", json=body).status_code == 422
    r = http.post("/api/v1/events/public", json={**body, "reporter_phone": "13900001234"})
    assert r.status_code == 201, r.text
    assert r.json()["code"].startswith("E") and r.json()["state"] == "reported"


def test_type_and_rule_administration(http, people) -> None:
    admin = people.admin.headers
    r = http.post("/api/v1/event-types", headers=admin,
                  json={"code": "0905", "name": "加装电梯咨询", "parent_code": "09"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert http.post("/api/v1/event-types", headers=people.commander.headers,
                     json={"code": "0906", "name": "x"}).status_code == 403
    assert http.post("/api/v1/event-types", headers=admin,
                     json={"code": "bad code!", "name": "x"}).status_code == 422
    stale = http.patch("/api/v1/event-types/0905", headers=admin,
                       json={"version": created["version"] + 5, "name": "y"})
    assert stale.status_code == 409
    ok = http.patch("/api/v1/event-types/0905", headers=admin,
                    json={"version": created["version"], "provincial_code": "ZJ-09-05"})
    assert ok.status_code == 200 and ok.json()["provincial_code"] == "ZJ-09-05"
    limits = {p: {"amount": 2, "unit": "working_hours"} for p in ("accept", "sign", "handle",
                                                                   "verify")}
    rule = http.put("/api/v1/event-types/0905/rules/major", headers=admin, json=limits)
    assert rule.status_code == 200 and rule.json()["severity"] == "major"
    deleted = http.delete("/api/v1/event-types/0905", headers=admin,
                          params={"version": ok.json()["version"]})
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True}
    tops = [t["code"] for t in http.get("/api/v1/event-types", headers=admin).json()
            if t["parent_code"] is None]
    reordered = http.post("/api/v1/event-types/reorder", headers=admin,
                          json={"codes": list(reversed(tops))})
    assert reordered.status_code == 200 and reordered.json()[0]["code"] == tops[-1]


def test_routing_rules_and_holidays_over_http(http, people) -> None:
    admin = people.admin.headers
    r = http.post("/api/v1/routing-rules", headers=admin, json={
        "type_code": "07", "region_code": TOWNSHIP, "org_unit_code": "scj330302"})
    assert r.status_code == 201, r.text
    listed = http.get("/api/v1/routing-rules", headers=admin,
                      params={"region_code": TOWNSHIP}).json()
    assert r.json()["id"] in [x["id"] for x in listed]
    assert http.delete(f"/api/v1/routing-rules/{r.json()['id']}", headers=admin,
                       params={"version": r.json()["version"]}).status_code == 204
    days = http.get("/api/v1/holidays", headers=admin, params={"year": 2025}).json()
    assert {"day": "2025-09-28", "is_workday": True, "name": "国庆节调休",
            "source": "chinesecalendar"} in days
    put = http.put("/api/v1/holidays/2027-10-01", headers=admin,
                   json={"is_workday": False, "name": "国庆节"})
    assert put.status_code == 200 and put.json()["source"] == "manual"
    assert http.delete("/api/v1/holidays/2027-10-01", headers=admin).status_code == 204


def test_clocks_at_a_past_moment_and_duplicates(http, people) -> None:
    ev = _report(http, people.worker, people, type_code="0303")
    twin = _report(http, people.worker, people, type_code="0304")
    r = http.get(f"/api/v1/events/{ev['id']}/clocks", headers=people.commander.headers,
                 params={"at": ev["reported_at"]})
    assert r.status_code == 200 and [c["phase"] for c in r.json()] == ["accept"]
    assert r.json()[0]["elapsed_seconds"] == 0 and r.json()[0]["status"] == "green"
    dups = http.get(f"/api/v1/events/{ev['id']}/duplicates",
                    headers=people.commander.headers).json()
    assert twin["id"] in [d["id"] for d in dups]
