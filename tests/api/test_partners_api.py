"""Partner platforms over real HTTP: a 110 partner reports an event with a signed request, it
is routed, the township handles and closes it, and the stand-in partner server receives the
signed status pushes in order; every bad signature, replay, stale timestamp, reused
Idempotency-Key, bad field, rate limit and out-of-jurisdiction case.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from geoserver.config import PartnerSettings, SecuritySettings
from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.jobs import partners as partner_jobs
from geoserver.security.crypto import crypto_from_settings
from geoserver.services import partner_outbox
from geoserver.services.partners import signed_headers
from tests.support.partner_server import PartnerServer
from tests.support.places import point_in
from tests.support.users import (
    TestUser,
    grid_worker,
    make_user,
    platform_member,
    township_commander,
)

COUNTY = "330302"
TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER = "330302024"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def stand_in() -> Iterator[PartnerServer]:
    with PartnerServer() as server:
        yield server


class Partner:
    """A partner's side of the wire: its key and a signing HTTP client."""

    def __init__(self, http: httpx.Client, code: str, key: dict[str, Any]) -> None:
        self.http, self.code = http, code
        self.key_id, self.secret = key["key_id"], key["secret"]

    def request(self, method: str, path: str, body: Any = None, *, idem: str | None = "auto",
                headers: dict[str, str] | None = None, now: float | None = None,
                secret: str | None = None) -> httpx.Response:
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        signed = signed_headers(self.key_id, secret or self.secret, method, path, raw, now=now)
        sent = {**signed, "Content-Type": "application/json", **(headers or {})}
        if idem is not None and method == "POST":
            sent["Idempotency-Key"] = uuid.uuid4().hex if idem == "auto" else idem
        return self.http.request(method, path, content=raw, headers=sent)

    def report(self, ref: str, point: list[float], **extra: Any) -> httpx.Response:
        body = {"partner_ref": ref, "type_code": "0301", "description": "110转: 楼道堆物堵塞",
                "location": {"type": "Point", "coordinates": point}, "crs": "WGS84", **extra}
        return self.request("POST", "/api/v1/partner/events", body)


class World:
    """Staff of township 330302006, administrators, and two partners."""

    def __init__(self, engine, http: httpx.Client, server: PartnerServer,
                 admin: TestUser) -> None:
        self.engine, self.http, self.server, self.admin = engine, http, server, admin
        self.commander = township_commander(engine, "pa_cmd", TOWNSHIP)
        self.worker = grid_worker(engine, "pa_worker", GRID)
        self.platform = platform_member(engine, "pa_zf", TOWNSHIP)
        self.other_admin = make_user(engine, "pa_admin_other", roles=["admin"], scope=[OTHER])
        self.point = list(point_in(engine, GRID))
        with scoped_session(engine, SYSTEM_SCOPE) as s:
            s.execute(text(
                "INSERT INTO org_unit (code, name, kind, region_code, path) SELECT "
                "'p110_330302', '110联动中心', 'department', code, path FROM region "
                "WHERE code = :c AND valid_to IS NULL"), {"c": COUNTY})
        self.police = self.partner("police110", "police_110", [COUNTY],
                                   org_unit_code="p110_330302")
        self.hotline = self.partner("hotline", "hotline_12345", [OTHER])

    def partner(self, code: str, kind: str, scope: list[str], **extra: Any) -> Partner:
        r = self.http.post("/api/v1/admin/partners", headers=self.admin.headers, json={
            "code": code, "name": code, "kind": kind, "scope": scope,
            "callback_url": self.server.url, **extra})
        assert r.status_code == 201, r.text
        key = self.http.post(f"/api/v1/admin/partners/{code}/keys", headers=self.admin.headers)
        assert key.status_code == 201, key.text
        self.server.add_key(key.json()["key_id"], key.json()["secret"])
        return Partner(self.http, code, key.json())

    def act(self, user: Any, event_id: int, action: str, **body: Any) -> dict[str, Any]:
        current = self.http.get(f"/api/v1/events/{event_id}", headers=user.headers)
        assert current.status_code == 200, current.text
        r = self.http.post(f"/api/v1/events/{event_id}/actions/{action}", json=body,
                           headers={**user.headers, "If-Match": current.headers["etag"]})
        assert r.status_code == 200, r.text
        return r.json()

    def deliver(self, settings: PartnerSettings | None = None) -> Any:
        """Run the outbox job (the server runs none in tests) in a committed transaction."""
        with scoped_session(self.engine, SYSTEM_SCOPE) as s:
            if settings is None:
                return partner_jobs.outbox(s)
            crypto = crypto_from_settings(SecuritySettings())
            return partner_outbox.deliver_due(s, crypto=crypto, settings=settings)


@pytest.fixture(scope="module")
def world(module_engine, http, stand_in, city_admin, catalogue) -> World:
    return World(module_engine, http, stand_in, city_admin)


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    return r.json()


def _pushes(server: PartnerServer, event_id: int) -> list[str]:
    return [c.json["action"] for c in server.accepted() if c.json["event_id"] == event_id]


# --- the loop ------------------------------------------------------------------------------------


def test_partner_report_is_routed_handled_closed_and_pushed_back(world) -> None:
    r = world.police.report("JJ-LOOP-1", world.point)
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["state"] == "reported" and ev["partner_ref"] == "JJ-LOOP-1"
    assert ev["routed_to"] == f"zf{TOWNSHIP}" and ev["grid_code"] == GRID
    detail = world.http.get(f"/api/v1/events/{ev['event_id']}",
                            headers=world.commander.headers).json()
    assert detail["source"] == "police_110"
    eid = ev["event_id"]
    world.act(world.commander, eid, "accept")
    world.act(world.commander, eid, "dispatch")
    world.act(world.platform, eid, "sign")
    world.act(world.platform, eid, "handle", result="已清理楼道")
    world.act(world.worker, eid, "verify_pass", crs="CGCS2000",
              location={"type": "Point", "coordinates": [detail["lon"], detail["lat"]]})
    world.act(world.commander, eid, "close")
    world.deliver()
    assert _pushes(world.server, eid) == [
        "accept", "dispatch", "sign", "handle", "verify_pass", "close"]
    pushed = [c for c in world.server.accepted() if c.json["event_id"] == eid]
    assert all(c.signature_ok and c.headers["x-gridgov-key"] == world.police.key_id
               for c in pushed)
    assert pushed[3].json["result"] == "已清理楼道" and pushed[-1].json["to_state"] == "closed"
    got = world.police.request("GET", f"/api/v1/partner/events/{eid}")
    assert got.status_code == 200 and got.json()["state"] == "closed"
    by_ref = world.police.request("GET", "/api/v1/partner/events?partner_ref=JJ-LOOP-1")
    assert by_ref.status_code == 200, by_ref.text
    assert [h["action"] for h in by_ref.json()["history"]] == [
        "report", "accept", "dispatch", "sign", "handle", "verify_pass", "close"]


def test_partner_accepts_and_handles_what_is_dispatched_to_it(world) -> None:
    r = world.http.post("/api/v1/events", headers=world.worker.headers, json={
        "type_code": "0301", "description": "需要110到场", "crs": "WGS84",
        "location": {"type": "Point", "coordinates": world.point}})
    assert r.status_code == 201, r.text
    eid = r.json()["id"]
    world.act(world.commander, eid, "accept")
    world.act(world.commander, eid, "dispatch", lead={"org_unit_code": "p110_330302"})
    world.deliver()
    order = [c for c in world.server.accepted() if c.json["event_id"] == eid]
    assert [c.json["action"] for c in order] == ["dispatch"]
    assert order[0].json["origin"] == "assigned" and order[0].json["event"]["lon"]
    path = f"/api/v1/partner/events/{eid}/actions"
    accepted = world.police.request("POST", f"{path}/accept", {"partner_ref": "JQ-0099"})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "signed" and accepted.json()["partner_ref"] == "JQ-0099"
    no_result = world.police.request("POST", f"{path}/handle", {})
    assert _problem(no_result, 422)["errors"][0]["field"] == "result"
    handled = world.police.request("POST", f"{path}/handle", {"result": "民警到场劝离"})
    assert handled.status_code == 200 and handled.json()["state"] == "handled"
    closing = world.police.request("POST", f"{path}/close", {})
    _problem(closing, 403)
    unknown = world.police.request("POST", f"{path}/escalate", {})
    assert _problem(unknown, 422)["errors"][0]["field"] == "action"


# --- signatures ----------------------------------------------------------------------------------


def test_missing_signature_is_401(world) -> None:
    r = world.http.post("/api/v1/partner/events", json={"partner_ref": "X"})
    assert "X-Gridgov-Key" in _problem(r, 401)["detail"]
    r = world.http.get("/api/v1/partner/me", headers=world.commander.headers)
    _problem(r, 401)                                # a user's token is not a signature


def test_wrong_signature_is_401(world) -> None:
    r = world.police.request("GET", "/api/v1/partner/me", secret="not-the-secret")
    assert "signature" in _problem(r, 401)["detail"]
    ok = world.police.request("GET", "/api/v1/partner/me")
    assert ok.status_code == 200 and ok.json()["code"] == "police110"


def test_tampered_body_is_401(world) -> None:
    raw = json.dumps({"partner_ref": "JJ-T", "type_code": "0301"}).encode()
    headers = signed_headers(world.police.key_id, world.police.secret, "POST",
                             "/api/v1/partner/events", raw)
    r = world.http.post("/api/v1/partner/events", content=raw.replace(b"JJ-T", b"JJ-U"),
                        headers={**headers, "Content-Type": "application/json",
                                 "Idempotency-Key": uuid.uuid4().hex})
    _problem(r, 401)


def test_replayed_request_is_401(world) -> None:
    raw = b""
    headers = signed_headers(world.police.key_id, world.police.secret, "GET",
                             "/api/v1/partner/me", raw)
    assert world.http.get("/api/v1/partner/me", headers=headers).status_code == 200
    again = world.http.get("/api/v1/partner/me", headers=headers)
    assert "nonce" in _problem(again, 401)["detail"]


def test_stale_timestamp_is_401(world) -> None:
    r = world.police.request("GET", "/api/v1/partner/me", now=time.time() - 301)
    assert "Timestamp" in _problem(r, 401)["detail"]


def test_unknown_key_is_401(world) -> None:
    stranger = Partner(world.http, "x", {"key_id": "gk_unknown000000", "secret": "s"})
    _problem(stranger.request("GET", "/api/v1/partner/me"), 401)


def test_rotated_out_key_is_401(world) -> None:
    p = world.partner("mediation", "mediation", [COUNTY])
    second = world.http.post("/api/v1/admin/partners/mediation/keys",
                             headers=world.admin.headers).json()
    assert p.request("GET", "/api/v1/partner/me").status_code == 200      # both active
    world.http.post("/api/v1/admin/partners/mediation/keys", headers=world.admin.headers)
    _problem(p.request("GET", "/api/v1/partner/me"), 401)                  # oldest revoked
    newer = Partner(world.http, "mediation", second)
    assert newer.request("GET", "/api/v1/partner/me").status_code == 200
    listed = world.http.get("/api/v1/admin/partners/mediation", headers=world.admin.headers)
    assert "secret" not in listed.text and len(listed.json()["keys"]) == 3


# --- idempotency ---------------------------------------------------------------------------------


def test_same_idempotency_key_same_body_replays(world) -> None:
    body = {"partner_ref": "JJ-IDEM-1", "type_code": "0301", "description": "重复提交",
            "location": {"type": "Point", "coordinates": world.point}, "crs": "WGS84"}
    first = world.police.request("POST", "/api/v1/partner/events", body, idem="idem-key-0001")
    again = world.police.request("POST", "/api/v1/partner/events", body, idem="idem-key-0001")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    with scoped_session(world.engine, SYSTEM_SCOPE) as s:
        assert s.execute(text("SELECT count(*) FROM event WHERE external_ref = 'JJ-IDEM-1'")
                         ).scalar_one() == 1


def test_idempotency_key_with_another_body_is_409(world) -> None:
    body = {"partner_ref": "JJ-IDEM-2", "type_code": "0301", "description": "第一次",
            "location": {"type": "Point", "coordinates": world.point}, "crs": "WGS84"}
    assert world.police.request("POST", "/api/v1/partner/events", body,
                                idem="idem-key-0002").status_code == 201
    other = world.police.request("POST", "/api/v1/partner/events",
                                 {**body, "description": "第二次"}, idem="idem-key-0002")
    assert _problem(other, 409)["field"] == "Idempotency-Key"


def test_missing_idempotency_key_is_422(world) -> None:
    r = world.police.request("POST", "/api/v1/partner/events", {
        "partner_ref": "JJ-NOKEY", "type_code": "0301", "description": "x",
        "location": {"type": "Point", "coordinates": world.point}, "crs": "WGS84"}, idem=None)
    assert _problem(r, 422)["errors"][0]["field"] == "Idempotency-Key"


def test_same_partner_ref_twice_is_409(world) -> None:
    assert world.police.report("JJ-DUP", world.point).status_code == 201
    assert _problem(world.police.report("JJ-DUP", world.point), 409)["field"] == "partner_ref"


# --- bad fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "field"), [
    ({"type_code": "9999"}, "type_code"),
    ({"crs": None}, "crs"),
    ({"crs": "EPSG:3857"}, "crs"),
    ({"description": ""}, "description"),
    ({"location": {"type": "Point", "coordinates": [200, 28]}}, "location"),
    ({"severity": "apocalyptic"}, "severity"),
    ({"surprise": 1}, "surprise"),
    ({"partner_ref": "has space"}, "partner_ref"),
])
def test_bad_report_is_422_naming_the_field(world, extra, field) -> None:
    body = {"partner_ref": f"JJ-BAD-{field}", "type_code": "0301", "description": "楼道堵塞",
            "location": {"type": "Point", "coordinates": world.point}, "crs": "WGS84", **extra}
    sent = {k: v for k, v in body.items() if v is not None}
    problem = _problem(world.police.request("POST", "/api/v1/partner/events", sent), 422)
    assert problem["errors"][0]["field"].split(".")[0] == field, problem


def test_bad_request_leaves_nothing(world) -> None:
    r = world.police.report("JJ-NOTHING", world.point, type_code="9999")
    _problem(r, 422)
    with scoped_session(world.engine, SYSTEM_SCOPE) as s:
        assert s.execute(text("SELECT count(*) FROM event WHERE external_ref = 'JJ-NOTHING'")
                         ).scalar_one() == 0
    assert world.police.report("JJ-NOTHING", world.point).status_code == 201


# --- jurisdiction and rate limits ----------------------------------------------------------------


def test_report_outside_the_partners_jurisdiction_is_422(world) -> None:
    r = world.hotline.report("GD-OUT-1", world.point)
    assert _problem(r, 422)["errors"][0]["field"] == "location"


def test_another_partners_event_is_404(world) -> None:
    ev = world.police.report("JJ-MINE", world.point).json()
    _problem(world.hotline.request("GET", f"/api/v1/partner/events/{ev['event_id']}"), 404)
    other = world.hotline.request("POST", f"/api/v1/partner/events/{ev['event_id']}/actions/"
                                  "close", {})
    _problem(other, 404)
    _problem(world.hotline.request("GET", "/api/v1/partner/events?partner_ref=JJ-MINE"), 404)


def test_over_the_rate_limit_is_429_with_retry_after(world) -> None:
    p = world.partner("ratelimited", "hotline_12345", [COUNTY], rate_limit_per_minute=2)
    assert [p.request("GET", "/api/v1/partner/me").status_code for _ in range(2)] == [200, 200]
    r = p.request("GET", "/api/v1/partner/me")
    _problem(r, 429)
    assert 1 <= int(r.headers["retry-after"]) <= 60


# --- administration ------------------------------------------------------------------------------


def test_admin_api_needs_partner_manage_and_jurisdiction(world) -> None:
    _problem(world.http.get("/api/v1/admin/partners", headers=world.commander.headers), 403)
    _problem(world.http.get("/api/v1/admin/partners"), 401)
    other = world.other_admin.headers
    _problem(world.http.get("/api/v1/admin/partners/police110", headers=other), 404)
    codes = [p["code"] for p in world.http.get("/api/v1/admin/partners", headers=other).json()]
    assert codes == ["hotline"]                       # its scope lies in the admin's township
    _problem(world.http.post("/api/v1/admin/partners/police110/keys", headers=other), 404)
    _problem(world.http.get("/api/v1/admin/partners/police110/outbox", headers=other), 404)


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "fire_119"}, "kind"),
    ({"scope": ["330302006"]}, None),
    ({"scope": ["999999"]}, "scope"),
    ({"code": "Bad Code"}, "code"),
    ({"callback_url": "ftp://x"}, "callback_url"),
    ({"rate_limit_per_minute": 0}, "rate_limit_per_minute"),
    ({"org_unit_code": "nope"}, "org_unit_code"),
])
def test_bad_partner_is_422_naming_the_field(world, body, field) -> None:
    sent = {"code": "badone", "name": "x", "kind": "police_110", "scope": [COUNTY], **body}
    r = world.http.post("/api/v1/admin/partners", headers=world.other_admin.headers
                        if field is None else world.admin.headers, json=sent)
    problem = _problem(r, 422)
    assert problem["errors"][0]["field"] == (field or "scope")


def test_update_and_delete(world) -> None:
    p = world.partner("temporary", "mediation", [COUNTY])
    r = world.http.patch("/api/v1/admin/partners/temporary", headers=world.admin.headers,
                         json={"active": False, "rate_limit_per_minute": 5})
    assert r.status_code == 200 and r.json()["active"] is False
    _problem(p.request("GET", "/api/v1/partner/me"), 403)
    assert world.http.delete("/api/v1/admin/partners/temporary",
                             headers=world.admin.headers).status_code == 204
    _problem(world.http.get("/api/v1/admin/partners/temporary", headers=world.admin.headers), 404)
    world.partner("temporary", "mediation", [COUNTY])               # the code is free again
    _problem(world.http.delete("/api/v1/admin/partners/police110",
                               headers=world.admin.headers), 409)        # it has events


def test_dead_letters_are_listed_and_redelivered(world) -> None:
    ev = world.police.report("JJ-DEAD", world.point).json()
    world.act(world.commander, ev["event_id"], "accept")
    world.server.fail_next(5, status=502)
    once = PartnerSettings(outbox_max_attempts=1)
    assert world.deliver(once).dead >= 1
    url = "/api/v1/admin/partners/police110/outbox"
    dead = world.http.get(url, params={"status": "dead"}, headers=world.admin.headers).json()
    mine = [d for d in dead if d["event_id"] == ev["event_id"]]
    assert [d["action"] for d in mine] == ["accept"] and mine[0]["last_status"] == 502
    world.server.fail_next(0)
    r = world.http.post(f"{url}/{mine[0]['id']}/redeliver", headers=world.admin.headers)
    assert r.status_code == 200 and r.json()["dead"] is False
    world.deliver()
    assert _pushes(world.server, ev["event_id"]) == ["accept"]
    _problem(world.http.post(f"{url}/{mine[0]['id']}/redeliver",
                             headers=world.admin.headers), 409)
    _problem(world.http.post(f"{url}/999999999/redeliver", headers=world.admin.headers), 404)
    bad = world.http.get(url, params={"status": "lost"}, headers=world.admin.headers)
    assert _problem(bad, 422)["errors"][0]["field"] == "status"


def test_a_push_claimed_by_one_worker_is_skipped_by_another(world) -> None:
    ev = world.police.report("JJ-LOCKED", world.point).json()
    world.act(world.commander, ev["event_id"], "accept")
    world.act(world.commander, ev["event_id"], "dispatch")
    with scoped_session(world.engine, SYSTEM_SCOPE) as first_worker:
        first_worker.execute(text(
            "SELECT id FROM partner_outbox WHERE event_id = :e ORDER BY id LIMIT 1 FOR UPDATE"),
            {"e": ev["event_id"]})
        world.deliver()                     # skips the locked push and the one queued behind it
        assert _pushes(world.server, ev["event_id"]) == []
    world.deliver()
    assert _pushes(world.server, ev["event_id"]) == ["accept", "dispatch"]
