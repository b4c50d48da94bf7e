"""Partner platforms (接口管理) on the tiny demo city: signatures, replays, rate limits,
idempotency, intake and actions through the event services, and the status outbox — filled
by the history trigger in the acting transaction, delivered to a stand-in partner server
with retries, back-off and a dead-letter list.

Everything runs in one rolled-back session whose RLS scope is switched to whoever acts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from geoserver.config import PartnerSettings, SecuritySettings
from geoserver.database.engine import SYSTEM_SCOPE, set_scope
from geoserver.domain.principal import SYSTEM, Principal
from geoserver.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
)
from geoserver.security.crypto import crypto_from_settings
from geoserver.services import auth, event_actions, event_types, partner_outbox, partners
from geoserver.services.partners import PartnerCaller, SignedRequest
from tests.support.partner_server import CALLBACK_PATH, PartnerServer
from tests.support.places import point_in_session

CRYPTO = crypto_from_settings(SecuritySettings())
SETTINGS = PartnerSettings(outbox_backoff_seconds=0)
COUNTY = "330302"
TOWNSHIP = "330302006"
GRID = "330302006045001"
OTHER_TOWNSHIP = "330302024"
PATH = "/api/v1/partner/events"


@pytest.fixture(scope="module")
def stand_in() -> Iterator[PartnerServer]:
    with PartnerServer() as server:
        yield server


class World:
    """A 110 partner over the county with a key, the stand-in as its callback, and staff."""

    def __init__(self, session, server: PartnerServer) -> None:
        self.session = session
        event_types.initialize_catalogue(session, actor=SYSTEM)
        session.execute(text(
            "INSERT INTO org_unit (code, name, kind, region_code, path) SELECT 'p110_330302', "
            "'110联动中心', 'department', code, path FROM region WHERE code = :c "
            "AND valid_to IS NULL"), {"c": COUNTY})
        self.partner = partners.create_partner(session, actor=SYSTEM, data={
            "code": "police110", "name": "鹿城110联动", "kind": "police_110", "scope": [COUNTY],
            "callback_url": server.url, "org_unit_code": "p110_330302"})
        self.key = partners.create_key(session, actor=SYSTEM, code="police110", crypto=CRYPTO)
        server.add_key(self.key.key_id, self.key.secret)
        server.clear()
        self.commander = self._principal(f"t{TOWNSHIP}")
        self.worker = self._principal(f"w{GRID}")
        self.point = list(point_in_session(session, GRID))

    def _principal(self, username: str) -> Principal:
        uid = self.session.execute(text("SELECT id FROM app_user WHERE username = :u"),
                                   {"u": username}).scalar_one()
        p = auth.principal_for(self.session, uid)
        assert p is not None
        return p

    def signed(self, body: bytes = b"", *, method: str = "POST", path: str = PATH,
               key: partners.NewKey | None = None, now: float | None = None,
               **override: str) -> SignedRequest:
        key = key or self.key
        headers = partners.signed_headers(key.key_id, key.secret, method, path, body, now=now)
        headers.update(override)
        return SignedRequest(method=method, path=path, headers=headers, body=body)

    def caller(self, request: SignedRequest | None = None, **kw) -> PartnerCaller:
        set_scope(self.session, SYSTEM_SCOPE)
        return partners.authenticate(self.session, request=request or self.signed(),
                                     crypto=CRYPTO, settings=SETTINGS, **kw)

    def report(self, ref: str = "JJ20250926001", **extra) -> partners.PartnerEvent:
        caller = self.caller()
        set_scope(self.session, caller.scope)
        body = {"partner_ref": ref, "type_code": "0301", "description": "群众报警: 楼道堵塞",
                "location": {"type": "Point", "coordinates": self.point}, "crs": "WGS84",
                **extra}
        return partners.report(self.session, caller=caller, data=body, crypto=CRYPTO)

    def act(self, actor: Principal, event_id: int, action: str, **body):
        set_scope(self.session, actor.scope)
        version = self.session.execute(text("SELECT version FROM event WHERE id = :e"),
                                       {"e": event_id}).scalar_one()
        return event_actions.act(self.session, actor=actor, event_id=event_id, action=action,
                                 data={"version": version, **body})

    def outbox(self, event_id: int) -> list[str]:
        set_scope(self.session, SYSTEM_SCOPE)
        return list(self.session.execute(text(
            "SELECT payload->>'action' FROM partner_outbox WHERE event_id = :e ORDER BY id"),
            {"e": event_id}).scalars())

    def deliver(self, settings: PartnerSettings = SETTINGS) -> partner_outbox.OutboxRun:
        set_scope(self.session, SYSTEM_SCOPE)
        return partner_outbox.deliver_due(self.session, crypto=CRYPTO, settings=settings)


@pytest.fixture
def world(demo, stand_in) -> World:
    return World(demo, stand_in)


# --- signatures, replays, rate limits ------------------------------------------------------------


def test_signed_request_names_the_partner_and_its_scope(world) -> None:
    caller = world.caller()
    assert (caller.code, caller.kind, caller.retry_after) == ("police110", "police_110", None)
    assert caller.scope == ("330300.330302",)
    assert caller.principal().username == "partner.police110"
    assert caller.user_id == world.session.execute(text(
        "SELECT id FROM app_user WHERE username = 'partner.police110' AND password_hash IS NULL"
    )).scalar_one()


@pytest.mark.parametrize("case", ["wrong", "body", "path", "method", "missing", "unknown_key",
                                  "stale", "future", "bad_nonce", "nul_key"])
def test_bad_signatures_are_refused(world, case) -> None:
    body = b'{"a": 1}'
    request = {
        "wrong": lambda: world.signed(body, **{partners.SIGNATURE_HEADER: "0" * 64}),
        "body": lambda: SignedRequest("POST", PATH, world.signed(body).headers, b'{"a": 2}'),
        "path": lambda: SignedRequest("POST", PATH + "/1", world.signed(body).headers, body),
        "method": lambda: SignedRequest("PUT", PATH, world.signed(body).headers, body),
        "missing": lambda: SignedRequest("POST", PATH, {
            k: v for k, v in world.signed(body).headers.items()
            if k != partners.NONCE_HEADER}, body),
        "unknown_key": lambda: world.signed(body, **{partners.KEY_HEADER: "gk_nosuchkey00"}),
        "stale": lambda: world.signed(body, now=time.time() - 301),
        "future": lambda: world.signed(body, now=time.time() + 301),
        "bad_nonce": lambda: world.signed(body, **{partners.NONCE_HEADER: "short"}),
        "nul_key": lambda: world.signed(body, **{partners.KEY_HEADER: "gk_\x00\x00000000"}),
    }[case]()
    with pytest.raises(Unauthenticated):
        world.caller(request)
    assert world.session.execute(text("SELECT count(*) FROM partner_nonce")).scalar_one() == 0


def test_a_replayed_nonce_is_refused(world) -> None:
    request = world.signed(b"{}")
    world.caller(request)
    with pytest.raises(Unauthenticated, match="nonce was used before"):
        world.caller(request)


def test_oversized_body_and_deactivated_partner(world) -> None:
    with pytest.raises(TooLarge):
        world.caller(world.signed(b"x" * (SETTINGS.max_body_bytes + 1)))
    partners.update_partner(world.session, actor=SYSTEM, code="police110", data={"active": False})
    with pytest.raises(PermissionDenied):
        world.caller()


def test_rate_limit_says_how_long_to_wait(world) -> None:
    partners.update_partner(world.session, actor=SYSTEM, code="police110",
                            data={"rate_limit_per_minute": 2})
    assert world.caller().retry_after is None
    assert world.caller().retry_after is None
    wait = world.caller().retry_after
    assert wait is not None and 1 <= wait <= 60
    counted = world.session.execute(text(
        "SELECT array_agg(counted ORDER BY counted DESC) FROM partner_nonce")).scalar_one()
    assert counted == [True, True, False]          # a refused request does not count


def test_rotation_keeps_two_keys_and_revokes_the_oldest(world) -> None:
    second = partners.create_key(world.session, actor=SYSTEM, code="police110", crypto=CRYPTO)
    assert world.caller(world.signed(key=second)).code == "police110"
    assert world.caller(world.signed()).code == "police110"       # both work while rotating
    partners.create_key(world.session, actor=SYSTEM, code="police110", crypto=CRYPTO)
    with pytest.raises(Unauthenticated):
        world.caller(world.signed())                                # the oldest is revoked
    keys = partners.get_partner(world.session, actor=SYSTEM, code="police110").keys
    assert sum(k.revoked_at is None for k in keys) == 2
    stored = world.session.execute(text("SELECT secret_enc FROM partner_key WHERE key_id = :k"),
                                   {"k": second.key_id}).scalar_one()
    assert second.secret.encode() not in bytes(stored)              # encrypted at rest
    partners.revoke_key(world.session, actor=SYSTEM, code="police110", key_id=second.key_id)
    with pytest.raises(Unauthenticated):
        world.caller(world.signed(key=second))


# --- administration ------------------------------------------------------------------------------


def test_admin_sees_only_partners_inside_their_jurisdiction(world) -> None:
    township_admin = Principal(user_id=None, username="t_admin", scope=("330300.330302.330302006",),
                               permissions=frozenset({"partner.manage"}))
    set_scope(world.session, township_admin.scope)
    assert partners.list_partners(world.session, actor=township_admin) == []
    with pytest.raises(NotFound):
        partners.get_partner(world.session, actor=township_admin, code="police110")
    with pytest.raises(InvalidInput) as err:
        partners.create_partner(world.session, actor=township_admin, data={
            "code": "hotline", "name": "12345", "kind": "hotline_12345", "scope": [COUNTY]})
    assert err.value.problems[0].field == "scope"
    nobody = Principal(user_id=None, username="x", scope=("",), permissions=frozenset())
    with pytest.raises(PermissionDenied):
        partners.list_partners(world.session, actor=nobody)


def test_partner_code_is_unique(world) -> None:
    with pytest.raises(Conflict):
        partners.create_partner(world.session, actor=SYSTEM, data={
            "code": "police110", "name": "again", "kind": "police_110", "scope": [COUNTY]})


# --- idempotency ---------------------------------------------------------------------------------


def test_same_key_same_body_replays_other_body_conflicts(world) -> None:
    caller = world.caller()
    calls = []

    def work():
        calls.append(1)
        return partners.PartnerActionIn(note="first")

    digest = partners.request_hash("POST", PATH, b'{"a": 1, "b": 2}')
    first, replayed = partners.run_once(world.session, caller=caller, key="key-00000001",
                                        digest=digest, settings=SETTINGS, status=201, work=work)
    assert not replayed and first.body["note"] == "first"
    same = partners.request_hash("POST", PATH, b'{"b": 2, "a": 1}')     # same JSON content
    again, replayed = partners.run_once(world.session, caller=caller, key="key-00000001",
                                        digest=same, settings=SETTINGS, status=201, work=work)
    assert replayed and again == first and len(calls) == 1
    other = partners.request_hash("POST", PATH, b'{"a": 2}')
    with pytest.raises(Conflict) as err:
        partners.run_once(world.session, caller=caller, key="key-00000001", digest=other,
                          settings=SETTINGS, status=201, work=work)
    assert err.value.extra["field"] == partners.IDEMPOTENCY_HEADER
    with pytest.raises(InvalidInput):
        partners.run_once(world.session, caller=caller, key=None, digest=other,
                          settings=SETTINGS, status=201, work=work)


def test_a_failed_request_leaves_nothing(world) -> None:
    caller = world.caller()
    set_scope(world.session, caller.scope)
    tables = ("event", "partner_event", "partner_outbox", "partner_idempotency", "event_history")

    def counts():
        set_scope(world.session, SYSTEM_SCOPE)
        return [world.session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in tables]

    before = counts()
    set_scope(world.session, caller.scope)
    body = {"partner_ref": "JJ-FAIL", "type_code": "0301", "description": "x",
            "location": {"type": "Point", "coordinates": world.point}}      # no crs
    with pytest.raises(InvalidInput) as err, world.session.begin_nested():
        partners.run_once(world.session, caller=caller, key="key-failing", digest="a" * 64,
                          settings=SETTINGS, status=201, work=lambda: partners.report(
                              world.session, caller=caller, data=body, crypto=CRYPTO))
    assert err.value.problems[0].field == "crs"
    assert counts() == before

    def report_then_fail():
        partners.report(world.session, caller=caller, data={**body, "crs": "WGS84"},
                        crypto=CRYPTO)
        assert counts() != before           # the event, its history and link were written
        set_scope(world.session, caller.scope)
        raise Conflict("something after the report failed")

    set_scope(world.session, caller.scope)
    with pytest.raises(Conflict), world.session.begin_nested():
        partners.run_once(world.session, caller=caller, key="key-failing", digest="a" * 64,
                          settings=SETTINGS, status=201, work=report_then_fail)
    assert counts() == before


# --- intake and actions --------------------------------------------------------------------------


def test_report_goes_through_the_event_intake(world) -> None:
    ev = world.report()
    assert (ev.partner_ref, ev.origin, ev.state, ev.grid_code) == (
        "JJ20250926001", "reported", "reported", GRID)
    assert ev.routed_to == f"zf{TOWNSHIP}" and ev.route_reason
    row = world.session.execute(text("SELECT source, external_ref, reporter_user_id FROM event "
                                     "WHERE id = :e"), {"e": ev.event_id}).one()
    assert row.source == "police_110" and row.external_ref == "JJ20250926001"
    assert row.reporter_user_id == world.caller().user_id
    assert [h.action for h in ev.history] == ["report"]
    assert world.outbox(ev.event_id) == []          # the partner knows what it reported
    by_ref = partners.get_event(world.session, caller=world.caller(), partner_ref="JJ20250926001")
    assert by_ref.event_id == ev.event_id


@pytest.mark.parametrize(("extra", "field"), [
    ({"type_code": "nope"}, "type_code"),
    ({"crs": None}, "crs"),
    ({"crs": "EPSG:3857"}, "crs"),
    ({"location": None, "crs": None, "region_code": "330303"}, "region_code"),
])
def test_bad_reports_name_the_field(world, extra, field) -> None:
    with pytest.raises(InvalidInput) as err:
        world.report(**extra)
    assert err.value.problems[0].field == field


def test_a_partner_ref_is_reported_once(world) -> None:
    world.report("JJ-1")
    with pytest.raises(Conflict):
        world.report("JJ-1")


def test_another_partners_event_is_not_found(world) -> None:
    ev = world.report()
    other = partners.create_partner(world.session, actor=SYSTEM, data={
        "code": "hotline", "name": "12345", "kind": "hotline_12345", "scope": [COUNTY]})
    key = partners.create_key(world.session, actor=SYSTEM, code=other.code, crypto=CRYPTO)
    caller = world.caller(world.signed(key=key))
    set_scope(world.session, caller.scope)
    with pytest.raises(NotFound):
        partners.get_event(world.session, caller=caller, event_id=ev.event_id)
    with pytest.raises(NotFound):
        partners.act(world.session, caller=caller, event_id=ev.event_id, action="close", data={})


def test_status_changes_fill_the_outbox_in_the_same_transaction(world) -> None:
    ev = world.report()
    world.act(world.commander, ev.event_id, "accept")
    assert world.outbox(ev.event_id) == ["accept"]
    with pytest.raises(InvalidInput), world.session.begin_nested():
        world.act(world.commander, ev.event_id, "dispatch")
        raise InvalidInput("the request fails after the change")
    assert world.outbox(ev.event_id) == ["accept"]          # rolled back with the change
    world.act(world.commander, ev.event_id, "dispatch")
    payload = world.session.execute(text(
        "SELECT payload FROM partner_outbox WHERE event_id = :e ORDER BY id DESC LIMIT 1"),
        {"e": ev.event_id}).scalar_one()
    assert payload["action"] == "dispatch" and payload["to_state"] == "dispatched"
    assert payload["partner_ref"] == "JJ20250926001" and payload["event"]["type_code"] == "0301"


def test_partner_closes_what_it_reported_once_verified(world) -> None:
    ev = world.report()
    world.act(world.commander, ev.event_id, "accept")
    world.act(world.commander, ev.event_id, "dispatch", lead={"grid_code": GRID})
    world.act(world.worker, ev.event_id, "sign")
    caller = world.caller()
    set_scope(world.session, caller.scope)
    with pytest.raises(Conflict) as err:
        partners.act(world.session, caller=caller, event_id=ev.event_id, action="close", data={})
    assert "allowed_actions" in err.value.extra
    world.act(world.worker, ev.event_id, "handle", result="已清理")
    here = {"location": {"type": "Point", "coordinates": world.point}, "crs": "WGS84"}
    world.act(world.worker, ev.event_id, "verify_pass", **here)
    caller = world.caller()
    set_scope(world.session, caller.scope)
    done = partners.act(world.session, caller=caller, event_id=ev.event_id, action="close",
                        data={"note": "回访满意"})
    assert done.state == "closed" and done.history[-1].action == "close"
    assert world.outbox(ev.event_id) == ["accept", "dispatch", "sign", "handle", "verify_pass"]


def test_an_event_dispatched_to_the_partner_unit_is_its_work(world) -> None:
    set_scope(world.session, world.worker.scope)
    from geoserver.services import events as event_service

    ev = event_service.report_event(world.session, actor=world.worker, crypto=CRYPTO, data={
        "type_code": "0301", "description": "需要110协助",
        "location": {"type": "Point", "coordinates": world.point}, "crs": "WGS84"})
    world.act(world.commander, ev.id, "accept")
    world.act(world.commander, ev.id, "dispatch", lead={"org_unit_code": "p110_330302"})
    assert world.outbox(ev.id) == ["dispatch"]                       # the work order
    caller = world.caller()
    set_scope(world.session, caller.scope)
    signed = partners.act(world.session, caller=caller, event_id=ev.id, action="accept",
                          data={"partner_ref": "JQ-77"})
    assert (signed.state, signed.origin, signed.partner_ref) == ("signed", "assigned", "JQ-77")
    with pytest.raises(InvalidInput) as err:
        partners.act(world.session, caller=caller, event_id=ev.id, action="handle", data={})
    assert err.value.problems[0].field == "result"
    handled = partners.act(world.session, caller=caller, event_id=ev.id, action="handle",
                           data={"result": "民警到场处置完毕"})
    assert handled.state == "handled" and handled.history[-1].result == "民警到场处置完毕"
    with pytest.raises(PermissionDenied):
        partners.act(world.session, caller=caller, event_id=ev.id, action="close", data={})
    assert world.outbox(ev.id) == ["dispatch"]              # its own actions are not echoed
    actor = world.session.execute(text(
        "SELECT actor_name FROM event_history WHERE event_id = :e ORDER BY id DESC LIMIT 1"),
        {"e": ev.id}).scalar_one()
    assert actor == "partner.police110"


def test_a_reported_event_is_not_the_partners_to_handle(world) -> None:
    ev = world.report()
    world.act(world.commander, ev.event_id, "accept")
    world.act(world.commander, ev.event_id, "dispatch")
    caller = world.caller()
    set_scope(world.session, caller.scope)
    with pytest.raises(PermissionDenied):
        partners.act(world.session, caller=caller, event_id=ev.event_id, action="accept",
                     data={})
    with pytest.raises(InvalidInput):
        partners.act(world.session, caller=caller, event_id=ev.event_id, action="escalate",
                     data={})


# --- delivery ------------------------------------------------------------------------------------


def _pushes(server: PartnerServer) -> list[tuple[int, str]]:
    return [(c.json["event_id"], c.json["action"]) for c in server.accepted()]


def test_pushes_are_signed_and_delivered_in_order(world, stand_in) -> None:
    ev = world.report()
    for action in ("accept", "dispatch"):
        world.act(world.commander, ev.event_id, action)
    run = world.deliver()
    assert (run.delivered, run.failed, run.dead) == (2, 0, 0)
    assert _pushes(stand_in) == [(ev.event_id, "accept"), (ev.event_id, "dispatch")]
    first = stand_in.accepted()[0]
    assert first.path == CALLBACK_PATH and first.headers["x-gridgov-key"] == world.key.key_id
    assert first.json["delivery_id"] == int(first.headers["x-gridgov-delivery"])
    assert world.deliver().delivered == 0                          # nothing left


def test_a_failed_push_is_retried_after_backoff_and_holds_later_ones(world, stand_in) -> None:
    ev = world.report()
    world.act(world.commander, ev.event_id, "accept")
    world.act(world.commander, ev.event_id, "dispatch")
    stand_in.fail_next(1)
    slow = PartnerSettings(outbox_backoff_seconds=30)
    run = world.deliver(slow)
    assert (run.delivered, run.failed) == (0, 1)          # dispatch waits behind accept
    row = world.session.execute(text(
        "SELECT attempts, last_status, extract(epoch FROM next_attempt_at - now()) AS wait "
        "FROM partner_outbox WHERE event_id = :e ORDER BY id LIMIT 1"), {"e": ev.event_id}).one()
    assert (row.attempts, row.last_status, round(row.wait)) == (1, 503, 30)
    assert world.deliver(slow).delivered == 0               # not due yet
    world.session.execute(text("UPDATE partner_outbox SET next_attempt_at = now() "
                               "WHERE event_id = :e"), {"e": ev.event_id})
    stand_in.fail_next(1)
    world.deliver(slow)
    assert world.session.execute(text(
        "SELECT round(extract(epoch FROM next_attempt_at - now())) FROM partner_outbox "
        "WHERE event_id = :e ORDER BY id LIMIT 1"), {"e": ev.event_id}).scalar_one() == 60
    world.session.execute(text("UPDATE partner_outbox SET next_attempt_at = now() "
                               "WHERE event_id = :e"), {"e": ev.event_id})
    assert world.deliver(slow).delivered == 2
    assert _pushes(stand_in) == [(ev.event_id, "accept"), (ev.event_id, "dispatch")]


def test_dead_letters_and_redelivery(world, stand_in) -> None:
    ev = world.report()
    world.act(world.commander, ev.event_id, "accept")
    stand_in.fail_next(10, status=500)
    two = PartnerSettings(outbox_backoff_seconds=0, outbox_max_attempts=2)
    assert world.deliver(two).failed == 1
    assert world.deliver(two).dead == 1
    assert world.deliver(two).dead == 0                    # dead letters are not retried
    dead = partner_outbox.list_outbox(world.session, actor=SYSTEM, code="police110",
                                      status="dead")
    assert [d.action for d in dead] == ["accept"] and dead[0].last_status == 500
    stand_in.fail_next(0)
    item = partner_outbox.redeliver(world.session, actor=SYSTEM, code="police110",
                                    outbox_id=dead[0].id)
    assert not item.dead and item.attempts == 0
    assert world.deliver(two).delivered == 1
    with pytest.raises(Conflict):
        partner_outbox.redeliver(world.session, actor=SYSTEM, code="police110",
                                 outbox_id=dead[0].id)
    assert partner_outbox.list_outbox(world.session, actor=SYSTEM, code="police110",
                                      status="dead") == []


def test_a_partner_without_a_key_cannot_be_pushed_to(world, stand_in) -> None:
    ev = world.report()
    partners.revoke_key(world.session, actor=SYSTEM, code="police110", key_id=world.key.key_id)
    world.act(world.commander, ev.event_id, "accept")
    run = world.deliver()
    assert run.failed == 1 and stand_in.accepted() == []
    item = partner_outbox.list_outbox(world.session, actor=SYSTEM, code="police110")[0]
    assert "no usable active key" in (item.last_error or "")


def test_purge_forgets_old_nonces_and_idempotency_records(world) -> None:
    world.caller()
    world.session.execute(text("UPDATE partner_nonce SET seen_at = now() - interval '1 hour'"))
    assert partners.purge_expired(world.session, settings=SETTINGS)["nonces"] == 1
