"""Event center services on the tiny demo city: intake, routing, the lifecycle, clocks, queues.

Actors act in one rolled-back session whose RLS scope is switched to each actor's own before
they act, so row-level security applies as it does per request. Times are given explicitly
(``at=``) so clocks are checked against a known timeline.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from geoserver.config import SecuritySettings
from geoserver.database.engine import set_scope
from geoserver.domain.events import InvalidTransition
from geoserver.domain.principal import SYSTEM, Principal
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.security.crypto import crypto_from_settings
from geoserver.services import (
    auth,
    event_actions,
    event_queues,
    event_types,
    events,
    holidays,
    users,
)
from geoserver.services.event_queues import EventFilter
from tests.support.places import point_in_session

SH = ZoneInfo("Asia/Shanghai")
CRYPTO = crypto_from_settings(SecuritySettings())
T0 = datetime(2025, 9, 26, 9, 0, tzinfo=SH)     # a Friday before 国庆
TOWNSHIP = "330302006"                          # 五马街道
GRID = "330302006045001"                        # 墨池社区第1网格
OTHER_TOWNSHIP = "330302024"                    # 滨江街道


def _principal(session, username: str) -> Principal:
    uid = session.execute(text("SELECT id FROM app_user WHERE username = :u"),
                          {"u": username}).scalar_one()
    p = auth.principal_for(session, uid)
    assert p is not None
    return p


def _staff(session, username: str, roles, scope, position, region, unit_code=None) -> Principal:
    new = users.create_user(session, actor=SYSTEM, username=username, display_name=username,
                            home_region_code=scope, roles=roles, scope_codes=[scope],
                            password="Wenzhou-grid-2026!")
    unit = None
    if unit_code:
        unit = session.execute(text("SELECT id FROM org_unit WHERE code = :c"),
                               {"c": unit_code}).scalar_one()
    users.assign_staff(session, actor=SYSTEM, user_id=new.id, position=position,
                       region_code=region, org_unit_id=unit)
    return _principal(session, username)


class Cast:
    """The people of one township's event loop."""

    def __init__(self, session) -> None:
        self.session = session
        self.commander = _principal(session, f"t{TOWNSHIP}")
        self.worker = _principal(session, f"w{GRID}")
        self.platform = _staff(session, "zf_staff", ["department_staff"], TOWNSHIP,
                               "department_staff", TOWNSHIP, f"zf{TOWNSHIP}")
        self.other = _principal(session, f"t{OTHER_TOWNSHIP}")
        self.county = _principal(session, "c330302")

    def as_(self, actor: Principal) -> Principal:
        set_scope(self.session, actor.scope)
        return actor


@pytest.fixture
def cast(demo) -> Cast:
    event_types.initialize_catalogue(demo, actor=SYSTEM)
    return Cast(demo)


def _grid_point(session, code: str = GRID) -> tuple[float, float]:
    return point_in_session(session, code)


def _report(cast: Cast, actor=None, *, type_code="0301", at=T0, **extra) -> events.EventDetail:
    actor = cast.as_(actor or cast.worker)
    lon, lat = _grid_point(cast.session) if "location" not in extra else (0, 0)
    body = {"type_code": type_code, "description": "楼道里堆满杂物, 堵住了消防通道",
            "location": {"type": "Point", "coordinates": [lon, lat]}, "crs": "CGCS2000",
            **extra}
    return events.report_event(cast.session, actor=actor, data=body, crypto=CRYPTO, at=at)


def _act(cast: Cast, actor: Principal, ev, action: str, at=None, **body) -> events.EventDetail:
    cast.as_(actor)
    return event_actions.act(cast.session, actor=actor, event_id=ev.id, action=action,
                      data={"version": ev.version, **body}, at=at)


def _here(session, ev) -> dict:
    return {"location": {"type": "Point", "coordinates": [ev.lon, ev.lat]}, "crs": "WGS84"}


# --- catalogue -----------------------------------------------------------------------------------


def test_initialize_loads_the_catalogue_once(demo) -> None:
    event_types.initialize_catalogue(demo, actor=SYSTEM)   # the demo may have loaded it
    assert len(event_types.list_types(demo)) == len(event_types.catalogue_types()) == 46
    assert sum(len(event_types.list_rules(demo, code=c)) for c, *_ in
               event_types.DEFAULT_CATALOGUE) == 30
    again = event_types.initialize_catalogue(demo, actor=SYSTEM)
    assert again == {"types": 0, "rules": 0}
    types = event_types.list_types(demo)
    assert [t.code for t in types][:3] == ["01", "0101", "0102"]
    fire = event_types.rule_for(demo, event_types.type_chain(demo, next(
        t.id for t in types if t.code == "0302")), "normal")
    assert fire.limits["accept"].unit == "natural_hours"   # 消防: the fire does not wait
    assert fire.default_platform == "zf"


def test_type_admin_needs_event_admin(demo) -> None:
    nobody = Principal(user_id=None, username="x", scope=("",), permissions=frozenset())
    with pytest.raises(PermissionDenied):
        event_types.initialize_catalogue(demo, actor=nobody)


def test_reorder_and_retire_a_used_type(cast) -> None:
    s = cast.session
    tops = [t.code for t in event_types.list_types(s) if t.parent_code is None]
    event_types.reorder_types(s, actor=SYSTEM, parent_code=None, codes=list(reversed(tops)))
    assert [t.code for t in event_types.list_types(s) if t.parent_code is None][0] == tops[-1]
    with pytest.raises(InvalidInput):
        event_types.reorder_types(s, actor=SYSTEM, parent_code=None, codes=tops[:-1])
    _report(cast, type_code="0402")
    set_scope(s, [""])
    t = event_types.get_type(s, code="0402")
    assert event_types.delete_type(s, actor=SYSTEM, code="0402", version=t.version) is False
    assert event_types.get_type(s, code="0402").active is False


def test_type_crud_rules_and_routing_rules(cast) -> None:
    s = cast.session
    set_scope(s, [""])
    sub = event_types.create_type(s, actor=SYSTEM, data=event_types.EventTypeCreate(
        code="0499", name="共享单车乱停放", parent_code="04", provincial_code="ZJ.04.99"))
    assert sub.parent_code == "04" and sub.depth == 2 and sub.display_order > 0
    with pytest.raises(Conflict):
        event_types.create_type(s, actor=SYSTEM, data=event_types.EventTypeCreate(
            code="0499", name="重复"))
    changed = event_types.update_type(s, actor=SYSTEM, code="0499", data=(
        event_types.EventTypeUpdate(version=sub.version, name="共享单车", provincial_code=None)))
    assert changed.name == "共享单车" and changed.provincial_code is None
    with pytest.raises(Conflict):
        event_types.update_type(s, actor=SYSTEM, code="0499",
                                data=event_types.EventTypeUpdate(version=sub.version, name="x"))
    limits = {p: {"amount": 1, "unit": "working_days"} for p in ("accept", "sign", "handle",
                                                                   "verify")}
    rule = event_types.set_rule(s, actor=SYSTEM, code="0499", severity="normal",
                                data=event_types.EventRuleIn(**limits,
                                                             verification_required=False))
    chain = event_types.type_chain(s, sub.id)
    effective = event_types.rule_for(s, chain, "normal")
    assert effective.rule_id == rule.id and not effective.verification_required
    assert event_types.rule_for(s, chain, "urgent").limits["accept"].unit == "natural_hours"
    routed = event_types.create_routing_rule(s, actor=SYSTEM, data=event_types.RoutingRuleIn(
        type_code="0499", region_code=GRID, target_kind="grid"))
    assert routed.id in [r.id for r in event_types.list_routing_rules(s, region_code=TOWNSHIP)]
    ev = _report(cast, type_code="0499")
    assert ev.routes[-1].target_kind == "grid" and ev.routes[-1].grid_code == GRID
    set_scope(s, [""])
    event_types.delete_routing_rule(s, actor=SYSTEM, rule_id=routed.id, version=routed.version)
    fresh = event_types.create_type(s, actor=SYSTEM, data=event_types.EventTypeCreate(
        code="0498", name="未用类型", parent_code="04"))
    assert event_types.delete_type(s, actor=SYSTEM, code="0498", version=fresh.version)
    with pytest.raises(NotFound):
        event_types.get_type(s, code="0498")


def test_holidays_are_edited_and_the_calendar_follows(demo) -> None:
    from datetime import date

    day = date(2026, 12, 26)                                     # a Saturday
    assert not holidays.load_calendar(demo).is_workday(day)
    holidays.set_holiday(demo, actor=SYSTEM, data=holidays.HolidayIn(
        day=day, is_workday=True, name="元旦调休"))
    assert holidays.load_calendar(demo).is_workday(day)
    holidays.delete_holiday(demo, actor=SYSTEM, day=day)
    assert not holidays.load_calendar(demo).is_workday(day)
    with pytest.raises(NotFound):
        holidays.delete_holiday(demo, actor=SYSTEM, day=day)


# --- intake and routing --------------------------------------------------------------------------


def test_report_is_located_routed_and_clocked(cast) -> None:
    ev = _report(cast)
    assert ev.state == "reported" and ev.version == 1
    assert ev.grid_code == GRID and ev.township_code == TOWNSHIP
    assert ev.path.endswith(GRID) and not ev.nearest_grid
    assert ev.centre is not None and ev.centre.code == f"cc{TOWNSHIP}"
    route = ev.routes[-1]
    assert route.rule_kind == "type_default" and route.unit.code == f"zf{TOWNSHIP}"
    assert "默认平台" in route.reason
    assert [h.action for h in ev.history] == ["report"]
    accept = next(c for c in ev.clocks if c.phase == "accept")
    assert accept.running and accept.unit == "natural_hours"
    assert accept.deadline_at == T0 + timedelta(hours=2)


def test_gcj02_input_is_stored_in_cgcs2000(cast) -> None:
    from geoserver.geo.crs import wgs84_to_gcj02

    lon, lat = _grid_point(cast.session)
    glon, glat = wgs84_to_gcj02(lon, lat)
    cast.as_(cast.worker)
    ev = events.report_event(cast.session, actor=cast.worker, crypto=CRYPTO, data={
        "type_code": "0401", "description": "垃圾", "crs": "GCJ-02",
        "location": {"type": "Point", "coordinates": [glon, glat]}})
    assert abs(ev.lon - lon) < 1e-7 and abs(ev.lat - lat) < 1e-7


def test_missing_crs_names_crs(cast) -> None:
    cast.as_(cast.worker)
    with pytest.raises(InvalidInput) as info:
        events.report_event(cast.session, actor=cast.worker, crypto=CRYPTO, data={
            "type_code": "0401", "description": "x",
            "location": {"type": "Point", "coordinates": [120.69, 28.02]}})
    assert info.value.problems[0].field == "crs"


def test_unknown_type_is_invalid(cast) -> None:
    with pytest.raises(InvalidInput) as info:
        _report(cast, type_code="9999")
    assert info.value.problems[0].field == "type_code"


def _outside(session, metres_deg: float) -> tuple[float, float]:
    """A point east of the county, ``metres_deg`` degrees beyond its nearest boundary point."""
    row = session.execute(text(
        "SELECT ST_X(p) + :d, ST_Y(p) FROM (SELECT ST_ClosestPoint(geom, "
        "ST_SetSRID(ST_Point(121.5, 28.02), 4490)) p FROM region WHERE code = '330302' "
        "AND valid_to IS NULL) s"), {"d": metres_deg}).one()
    return float(row[0]), float(row[1])


def test_point_just_outside_goes_to_the_nearest_grid_flagged(cast) -> None:
    set_scope(cast.session, [""])
    lon, lat = _outside(cast.session, 0.001)          # ~100 m east of the county
    ev = _report(cast, cast.county, type_code="0401",
                 location={"type": "Point", "coordinates": [lon, lat]})
    assert ev.nearest_grid and 50 < ev.snap_distance_m < 200
    assert ev.grid_code is not None and ev.path.endswith(ev.grid_code)


def test_point_beyond_tolerance_is_refused(cast) -> None:
    set_scope(cast.session, [""])
    lon, lat = _outside(cast.session, 0.05)            # ~5 km out
    with pytest.raises(InvalidInput) as info:
        _report(cast, cast.county, type_code="0401",
                location={"type": "Point", "coordinates": [lon, lat]})
    assert info.value.problems[0].field == "location"
    assert "nearest grid" in info.value.detail


def test_reporting_outside_ones_jurisdiction_is_refused(cast) -> None:
    lon, lat = _grid_point(cast.session, "330302024")   # another township
    with pytest.raises(InvalidInput) as info:
        _report(cast, type_code="0401", location={"type": "Point", "coordinates": [lon, lat]})
    assert "jurisdiction" in info.value.detail


def test_region_only_report_and_unmatched_rule(cast) -> None:
    set_scope(cast.session, [""])
    custom = event_types.create_type(cast.session, actor=SYSTEM,
                                     data=event_types.EventTypeCreate(code="99", name="其他"))
    cast.as_(cast.commander)
    ev = events.report_event(cast.session, actor=cast.commander, crypto=CRYPTO, data={
        "type_code": custom.code, "description": "群众来电反映", "source": "hotline_12345",
        "region_code": GRID, "reporter_phone": "13812345678"}, at=T0)
    assert ev.lon is None and ev.grid_code == GRID and ev.path.endswith(GRID)
    assert ev.no_rule_matched and ev.routes[-1].rule_kind == "none"
    assert ev.routes[-1].unit.code == f"cc{TOWNSHIP}"
    assert ev.reporter_phone_masked == "138****5678"
    ev = _act(cast, cast.commander, ev, "accept", at=T0)
    with pytest.raises(InvalidInput) as info:
        _act(cast, cast.commander, ev, "dispatch", at=T0)
    assert info.value.problems[0].field == "lead"


def test_a_routing_rule_beats_the_type_default_and_says_why(cast) -> None:
    set_scope(cast.session, [""])
    rule = event_types.create_routing_rule(cast.session, actor=SYSTEM, data=(
        event_types.RoutingRuleIn(type_code="03", region_code=TOWNSHIP,
                                  org_unit_code="zfj330302")))
    ev = _report(cast)
    route = ev.routes[-1]
    assert route.rule_kind == "routing_rule" and route.routing_rule_id == rule.id
    assert route.unit.code == "zfj330302" and f"#{rule.id}" in route.reason


def test_public_report_keeps_only_a_masked_phone(demo) -> None:
    event_types.initialize_catalogue(demo, actor=SYSTEM)
    lon, lat = _grid_point(demo)
    ev = events.report_event(demo, actor=events.PUBLIC, crypto=CRYPTO, data={
        "type_code": "0404", "description": "夜间施工噪声", "source": "public",
        "reporter_phone": "139 0000 1234", "crs": "WGS84",
        "location": {"type": "Point", "coordinates": [lon, lat]}})
    assert ev.reporter_user_id is None and ev.reporter_phone_masked == "139****1234"
    stored = demo.execute(text("SELECT reporter_phone_enc FROM event WHERE id = :i"),
                          {"i": ev.id}).scalar_one()
    assert CRYPTO.decrypt(stored, context=events.PHONE_CONTEXT) == "13900001234"


# --- the lifecycle -------------------------------------------------------------------------------


def test_full_loop_report_to_evaluation(cast) -> None:
    c, w, p = cast.commander, cast.worker, cast.platform
    ev = _report(cast)
    ev = _act(cast, c, ev, "accept", at=T0 + timedelta(minutes=30))
    ev = _act(cast, c, ev, "dispatch", at=T0 + timedelta(minutes=40),
              assisting=[{"grid_code": GRID}])
    assert ev.state == "dispatched"
    assert [(a.role, a.unit.code if a.unit else a.grid_code) for a in ev.assignments] == [
        ("lead", f"zf{TOWNSHIP}"), ("assist", GRID)]
    with pytest.raises(PermissionDenied):           # the grid only assists: it does not sign
        _act(cast, w, ev, "sign")
    ev = _act(cast, p, ev, "sign", at=T0 + timedelta(hours=1))
    ev = _act(cast, p, ev, "handle", at=T0 + timedelta(hours=5), result="已清理楼道杂物")
    ev = _act(cast, w, ev, "verify_pass", at=T0 + timedelta(hours=6), **_here(cast, ev))
    ev = _act(cast, c, ev, "close", at=T0 + timedelta(hours=7))
    ev = _act(cast, c, ev, "evaluate", score=5)
    assert ev.state == "evaluated" and ev.evaluation_score == 5 and ev.version == 8
    assert [h.action for h in ev.history] == [
        "report", "accept", "dispatch", "sign", "handle", "verify_pass", "close", "evaluate"]
    assert ev.history[4].data["result"] == "已清理楼道杂物"
    assert ev.history[5].data["verifier_distance_m"] < 1
    clocks = {k.phase: k for k in ev.clocks}
    assert not any(k.running for k in clocks.values())
    assert clocks["accept"].elapsed_seconds == 1800 and clocks["accept"].status == "green"
    assert clocks["sign"].elapsed_seconds == 20 * 60
    assert clocks["handle"].elapsed_seconds == 4 * 3600
    assert ev.allowed_actions == []


def test_history_is_append_only(cast) -> None:
    ev = _report(cast)
    for sql in ("UPDATE event_history SET note = 'x' WHERE event_id = :i",
                "DELETE FROM event_history WHERE event_id = :i"):
        with pytest.raises(DBAPIError, match="permission denied"):
            with cast.session.begin_nested():
                cast.session.execute(text(sql), {"i": ev.id})


def test_verification_far_from_the_event_names_the_distance(cast) -> None:
    c, w, p = cast.commander, cast.worker, cast.platform
    ev = _report(cast)
    for action, extra in (("accept", {}), ("dispatch", {})):
        ev = _act(cast, c, ev, action, **extra)
    ev = _act(cast, p, ev, "sign")
    ev = _act(cast, p, ev, "handle", result="done")
    far = {"location": {"type": "Point", "coordinates": [ev.lon + 0.01, ev.lat]},
           "crs": "WGS84"}
    with pytest.raises(InvalidInput) as info:
        _act(cast, w, ev, "verify_pass", **far)
    assert info.value.problems[0].field == "location" and " m from the event" in info.value.detail
    with pytest.raises(InvalidInput):
        _act(cast, w, ev, "verify_pass")                # no position at all
    ev = _act(cast, w, ev, "verify_fail", note="杂物仍在", **_here(cast, ev))
    assert ev.state == "signed"                         # handle again


def test_return_review_and_reassign(cast) -> None:
    c, w, p = cast.commander, cast.worker, cast.platform
    ev = _report(cast)
    ev = _act(cast, c, ev, "accept")
    ev = _act(cast, c, ev, "dispatch")
    with pytest.raises(InvalidInput):
        _act(cast, p, ev, "request_return")             # a reason is required
    ev = _act(cast, p, ev, "request_return", note="不属于本平台职责")
    assert ev.state == "return_requested"
    ev = _act(cast, c, ev, "reject_return", note="属于综合执法范围")
    assert ev.state == "signed"
    ev = _act(cast, p, ev, "request_return", note="确需退回")
    ev = _act(cast, c, ev, "approve_return")
    assert ev.state == "returned" and all(a.ended_at for a in ev.assignments)
    ev = _act(cast, c, ev, "reassign", lead={"grid_code": GRID})
    assert ev.state == "dispatched"
    ev = _act(cast, w, ev, "sign")
    assert ev.state == "signed"
    live = [a for a in ev.assignments if a.ended_at is None]
    assert [(a.role, a.grid_code, a.signed_at is not None) for a in live] == [
        ("lead", GRID, True)]


def test_extension_request_and_approval(cast) -> None:
    c, p = cast.commander, cast.platform
    ev = _report(cast)
    ev = _act(cast, c, ev, "accept", at=T0)
    ev = _act(cast, c, ev, "dispatch", at=T0)
    ev = _act(cast, p, ev, "sign", at=T0)
    before = next(k for k in ev.clocks if k.phase == "handle").limit_seconds
    ev = _act(cast, p, ev, "request_extension", at=T0, hours=8, note="需协调产权单位")
    assert ev.state == "signed" and ev.pending_extension["hours"] == 8
    with pytest.raises(Conflict):
        _act(cast, p, ev, "request_extension", at=T0, hours=2, note="again")
    ev = _act(cast, c, ev, "approve_extension", at=T0)
    assert ev.pending_extension is None
    after = next(k for k in ev.clocks if k.phase == "handle").limit_seconds
    assert after == before + 8 * 3600
    with pytest.raises(Conflict):
        _act(cast, c, ev, "reject_extension", at=T0)    # nothing pending any more


def test_stale_version_is_a_conflict_with_what_is_allowed(cast) -> None:
    ev = _report(cast)
    fresh = _act(cast, cast.commander, ev, "accept")
    with pytest.raises(Conflict) as info:
        _act(cast, cast.commander, ev, "refuse", note="重复")  # ev is version 1: stale
    assert info.value.extra["current_version"] == fresh.version
    assert "dispatch" in info.value.extra["allowed_actions"]


def test_action_not_allowed_now_lists_the_allowed(cast) -> None:
    ev = _report(cast)
    with pytest.raises(InvalidTransition) as info:
        _act(cast, cast.commander, ev, "close")
    assert info.value.extra["allowed_actions"][:2] == ["accept", "escalate"]


def test_missing_version_is_invalid(cast) -> None:
    ev = _report(cast)
    cast.as_(cast.commander)
    with pytest.raises(InvalidInput) as info:
        event_actions.act(cast.session, actor=cast.commander, event_id=ev.id, action="accept",
                          data={})
    assert info.value.problems[0].field == "version"


def test_other_townships_do_not_see_the_event(cast) -> None:
    ev = _report(cast)
    cast.as_(cast.other)
    with pytest.raises(NotFound):
        events.get_event(cast.session, actor=cast.other, event_id=ev.id)
    with pytest.raises(NotFound):
        _act(cast, cast.other, ev, "accept")


def test_escalation_level_by_level_and_skip_level(cast) -> None:
    c = cast.commander
    ev = _report(cast)
    ev = _act(cast, c, ev, "escalate", note="超出街道处置能力")
    assert ev.level == "county" and ev.state == "reported"
    assert ev.centre.code == "cc330302" and ev.routes[-1].level == "county"
    ev2 = _report(cast)
    with pytest.raises(InvalidInput) as info:
        _act(cast, c, ev2, "escalate", to_level="city")
    assert info.value.problems[0].field == "note"
    ev2 = _act(cast, c, ev2, "escalate", to_level="city", note="重大隐患, 越级上报")
    assert ev2.level == "city" and ev2.history[-1].data["skip_level"] is True


def test_merge_keeps_both_histories(cast) -> None:
    c = cast.commander
    kept, dup = _report(cast), _report(cast)
    dup = _act(cast, c, dup, "merge", into_event_id=kept.id, note="同一地点重复上报")
    assert dup.state == "merged" and dup.merged_into_id == kept.id
    kept = events.get_event(cast.session, actor=c, event_id=kept.id)
    assert kept.history[-1].action == "merged_from" and kept.history[-1].data["id"] == dup.id


def test_resolve_on_the_spot(cast) -> None:
    ev = _report(cast, type_code="0401", resolved_on_spot=True, result="已劝导清理")
    assert ev.state == "closed" and ev.resolved_on_spot
    assert [h.action for h in ev.history] == ["report", "resolve_on_spot"]
    with pytest.raises(PermissionDenied):   # a commander is not the grid's worker
        _report(cast, cast.commander, type_code="0401", resolved_on_spot=True, result="x")


def test_remind_and_supervise_do_not_move_the_event(cast) -> None:
    ev = _report(cast)
    ev = _act(cast, cast.county, ev, "remind")
    ev = _act(cast, cast.county, ev, "supervise", note="请于今日处置",
              deadline=(T0 + timedelta(days=1)).isoformat())
    assert ev.state == "reported" and ev.reminders == 1 and ev.supervised


def test_clocks_can_be_recomputed_at_a_past_moment(cast) -> None:
    c = cast.commander
    ev = _report(cast)
    ev = _act(cast, c, ev, "accept", at=T0 + timedelta(hours=3))     # 1 h late: red
    set_scope(cast.session, c.scope)
    past = events.clocks_at(cast.session, actor=c, event_id=ev.id, at=T0 + timedelta(hours=1))
    assert [(k.phase, k.running, k.status) for k in past] == [("accept", True, "green")]
    amber = events.clocks_at(cast.session, actor=c, event_id=ev.id,
                             at=T0 + timedelta(minutes=100))
    assert amber[0].status == "amber"
    final = {k.phase: k for k in ev.clocks}
    assert final["accept"].status == "red" and not final["accept"].running


# --- queues --------------------------------------------------------------------------------------


def test_queues_per_role_with_counts_and_filters(cast) -> None:
    # Deltas and a text filter: the demo city may hold events of its own.
    s, c, p = cast.session, cast.commander, cast.platform
    cast.as_(c)
    before = event_queues.queue_counts(s, actor=c)
    ev = _report(cast)
    _report(cast, type_code="0401")
    cast.as_(c)
    counts = event_queues.queue_counts(s, actor=c)
    assert counts["to_accept"] == before["to_accept"] + 2
    assert counts["to_sign"] == before["to_sign"] and counts["mine"] == before["mine"]
    page = event_queues.list_events(s, actor=c, filters=EventFilter(
        queue="to_accept", type_code="03", q="堵住了消防通道"))
    assert [e.id for e in page.items] == [ev.id] and page.total == 1
    ev = _act(cast, c, ev, "accept")
    ev = _act(cast, c, ev, "dispatch")
    cast.as_(p)
    mine = event_queues.queue_counts(s, actor=p)
    assert mine["to_accept"] == 0
    to_sign = event_queues.list_events(s, actor=p, filters=EventFilter(queue="to_sign"))
    assert ev.id in [e.id for e in to_sign.items] and mine["to_sign"] == to_sign.total
    _act(cast, p, ev, "sign")
    cast.as_(p)
    assert event_queues.queue_counts(s, actor=p)["done"] == 1
    cast.as_(cast.other)
    theirs = event_queues.list_events(s, actor=cast.other, filters=EventFilter(
        q="堵住了消防通道"))
    assert theirs.total == 0


# --- calendar ------------------------------------------------------------------------------------


def test_holiday_table_is_seeded_and_fills_older_years(demo) -> None:
    cal = holidays.load_calendar(demo)
    assert cal.is_workday(datetime(2025, 9, 28).date())           # 国庆调休 Sunday
    assert not cal.is_workday(datetime(2026, 10, 6).date())
    assert holidays.seed_holidays(demo, years=[2015]) > 0
    assert holidays.seed_holidays(demo, years=[2015]) == 0
    assert any(h.name == "抗战胜利纪念日" for h in holidays.list_holidays(demo, year=2015))


# --- overdue sweep -------------------------------------------------------------------------------


def test_overdue_events_are_reminded_once(cast) -> None:
    from geoserver.services.event_sla import sweep_overdue

    ev = _report(cast)                                   # accept clock red since T0 + 2 h
    set_scope(cast.session, [""])
    assert sweep_overdue(cast.session, now=T0 + timedelta(hours=1))["reminded"] == 0
    done = sweep_overdue(cast.session, now=T0 + timedelta(hours=3))
    assert done["reminded"] >= 1 and done["failed"] == 0
    assert sweep_overdue(cast.session, now=T0 + timedelta(hours=4))["reminded"] == 0
    ev = events.get_event(cast.session, actor=SYSTEM, event_id=ev.id)
    assert ev.reminders == 1 and ev.history[-1].action == "remind"
    assert ev.history[-1].actor_user_id is None and ev.state == "reported"


def test_overdue_urgent_events_escalate_when_the_rule_says_so(cast) -> None:
    from geoserver.services.event_sla import sweep_overdue

    ev = _report(cast, severity="urgent")                # 消防, urgent: 0.5 h, escalate a level
    set_scope(cast.session, [""])
    done = sweep_overdue(cast.session, now=T0 + timedelta(hours=1))
    assert done["escalated"] >= 1
    ev = events.get_event(cast.session, actor=SYSTEM, event_id=ev.id)
    assert ev.level == "county" and ev.centre.code == "cc330302"
    assert ev.history[-1].action == "escalate" and ev.history[-1].data["skip_level"] is False


def test_duplicates_are_suggested_by_kind_place_and_time(cast) -> None:
    first = _report(cast, type_code="0302", at=T0)
    same_kind = _report(cast, type_code="0301", at=T0 + timedelta(hours=5))
    other = _report(cast, type_code="0401", at=T0 + timedelta(hours=5))  # another kind
    late = _report(cast, type_code="0301", at=T0 + timedelta(days=10))   # too late
    cast.as_(cast.commander)
    found = events.find_duplicates(cast.session, actor=cast.commander, event_id=first.id)
    mine = [d for d in found if d.id in (same_kind.id, other.id, late.id)]
    assert [d.id for d in mine] == [same_kind.id]
    assert mine[0].distance_m < 1 and mine[0].hours_apart == 5
