"""Event lifecycle actions (事件流转): 受理, 派遣, 签收, 处置, 核查, 办结, 退回, 延期, 上报 ….

``act`` checks the permission and the version, asks ``domain.events.next_state`` where the
action leads, runs the action's checks, claims the event with a conditional UPDATE on the
version it read (of two commanders acting at once one wins, the other gets a Conflict listing
what is allowed now), then writes the action's side effects, the history row, the clocks and
the audit row in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.domain.events import (
    ACTION_PERMISSION,
    HANDLER_ACTIONS,
    PHASE_OF_STATE,
    EventAction,
    EventState,
    Level,
    allowed_actions,
    escalation_target,
    next_state,
)
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.services import event_types, routing
from geoserver.services import photos as evidence
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.event_types import EffectiveRule
from geoserver.services.events import (
    DEFAULT_SETTINGS,
    ActionIn,
    EventDetail,
    EventSettings,
    LoadedEvent,
    UnitTarget,
    checked_photos,
    db_now,
    event_detail,
    load_event,
    reader_of,
    rule_of,
    storage_point_of,
    sync_clocks,
    type_names,
    validated,
    write_history,
)
from geoserver.services.photos import PhotoStore

A, S = EventAction, EventState

@dataclass
class _Ctx:
    """One action in progress."""

    session: Session
    actor: Principal
    event: LoadedEvent
    action: EventAction
    data: ActionIn
    settings: EventSettings
    rule: EffectiveRule
    at: datetime
    my_units: frozenset[int]
    new_state: EventState
    #: Extra columns to set on the event, and what the history row records.
    updates: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    unit_id: int | None = None
    #: Dispatch targets (role, org unit id, grid code) and the event a merge folds into.
    targets: list[tuple[str, int | None, str | None]] = field(default_factory=list)
    merge_target: LoadedEvent | None = None


def act(session: Session, *, actor: Principal, event_id: int, action: EventAction | str,
        data: ActionIn | Mapping[str, Any], settings: EventSettings = DEFAULT_SETTINGS,
        context: AuditContext = NO_CONTEXT, at: datetime | None = None,
        photos: Sequence[bytes] = (), photo_store: PhotoStore | None = None) -> EventDetail:
    """Apply one lifecycle action to an event (受理, 派遣, 签收, 处置, 核查, 办结 …), with the
    photos that document it (处置 result, 核查 on site).

    Raises:
        NotFound: the event is not visible to the actor.
        PermissionDenied: the actor lacks the action's permission, or is not in the unit the
            event is assigned to (签收, 处置, 申请退回, 申请延期).
        InvalidInput: unknown action, a missing version, missing fields the action needs, a
            verifier too far from the event (with the distance).
        Conflict: a stale version, a concurrent change, or an action the state does not allow
            (with ``allowed_actions``).
        TooLarge: a photo or a photo quota over its limit.
    """
    body: ActionIn = validated(ActionIn, data)
    uploads = checked_photos(photos, photo_store)
    try:
        act_enum = EventAction(action)
    except ValueError:
        raise InvalidInput(f"unknown action {action!r}", field="action") from None
    if act_enum is A.REPORT:
        raise InvalidInput("reports are made with report_event", field="action")
    permission = ACTION_PERMISSION[act_enum]
    if not actor.can(permission):
        raise PermissionDenied(f"{act_enum} needs the permission {permission}")
    ev = load_event(session, event_id)
    if body.version is None:
        raise InvalidInput("say which version you saw (If-Match or version)", field="version")
    rule = rule_of(session, ev.row)
    if ev.version != body.version:
        raise _stale(ev, rule)
    new_state = next_state(ev.state, act_enum, verification_required=rule.verification_required)
    ctx = _Ctx(session, actor, ev, act_enum, body, settings, rule, at or db_now(session),
               routing.units_of(session, actor.user_id), new_state)
    _HANDLERS.get(act_enum, _nothing)(ctx)
    _claim(ctx)
    for after in _AFTER.get(act_enum, ()):
        after(ctx)
    write_history(session, event_id=ev.id, action=act_enum, from_state=ev.state,
                   to_state=new_state, actor=actor, unit_id=ctx.unit_id, note=body.note,
                   data=ctx.record, version=ev.version + 1, at=ctx.at)
    if uploads and photo_store is not None:
        evidence.attach(session, actor=actor, event_id=ev.id, stage=act_enum.value,
                        uploads=uploads, store=photo_store)
    calendar = sync_clocks(session, ev.id, rule, settings, ctx.at)
    audit(session, actor=actor, action=f"event.{act_enum}", object_kind="event",
          object_id=str(ev.id), before={"state": ev.state.value, "version": ev.version},
          after={"state": new_state.value, **ctx.record}, context=context)
    # Actions never change an event's type or severity: its rule and the calendar still hold.
    return event_detail(session, actor=reader_of(actor), ev=load_event(session, ev.id),
                        rule=rule, calendar=calendar, settings=settings)


def _stale(ev: LoadedEvent, rule: EffectiveRule) -> Conflict:
    allowed = [a.value for a in allowed_actions(
        ev.state, verification_required=rule.verification_required)]
    return Conflict(f"event {ev.row['code']} is at version {ev.version} (state {ev.state}); "
                    "reload it and try again", current_version=ev.version,
                    state=ev.state.value, allowed_actions=allowed)


def _claim(ctx: _Ctx) -> None:
    """Move the event to its new state if nobody moved it since it was read."""
    sets = ", ".join(f"{k} = :u_{k}" for k in ctx.updates)
    row = ctx.session.execute(text(
        f"UPDATE event SET state = :s, version = version + 1, updated_at = now()"
        f"{', ' + sets if sets else ''} WHERE id = :i AND version = :v RETURNING id"),
        {"s": ctx.new_state.value, "i": ctx.event.id, "v": ctx.event.version,
         **{f"u_{k}": v for k, v in ctx.updates.items()}}).first()
    if row is None:
        # Someone else acted between our read and our write: tell what the event allows now.
        fresh = load_event(ctx.session, ctx.event.id)
        raise _stale(fresh, ctx.rule)


def _nothing(ctx: _Ctx) -> None:
    return None


def _need(value: Any, field_name: str, what: str) -> Any:
    if value is None or value == "" or value == []:
        raise InvalidInput(f"{what} is required", field=field_name)
    return value


def _lead(ctx: _Ctx) -> dict[str, Any] | None:
    row = ctx.session.execute(text(
        "SELECT id, org_unit_id, grid_code FROM event_assignment WHERE event_id = :e "
        "AND role = 'lead' AND ended_at IS NULL"), {"e": ctx.event.id}).mappings().first()
    return dict(row) if row else None


def _require_lead_member(ctx: _Ctx) -> None:
    """Handler actions are for the lead unit's members (or the lead grid's workers)."""
    lead = _lead(ctx)
    if lead is None:
        raise Conflict("the event has no lead unit")
    if lead["org_unit_id"] in ctx.my_units or lead["grid_code"] in ctx.actor.grid_codes or (
            "*" in ctx.actor.permissions):
        ctx.unit_id = lead["org_unit_id"]
        return
    raise PermissionDenied("the event is assigned to another unit")


def _dispatcher_unit(ctx: _Ctx) -> None:
    centre = ctx.event.row["centre_unit_id"]
    ctx.unit_id = centre if centre in ctx.my_units else None


def _on_refuse(ctx: _Ctx) -> None:
    _need(ctx.data.note, "note", "a reason for refusing (不予受理)")
    _dispatcher_unit(ctx)
    ctx.updates["closed_at"] = ctx.at


def _on_accept(ctx: _Ctx) -> None:
    _dispatcher_unit(ctx)


def _targets(ctx: _Ctx) -> list[tuple[str, int | None, str | None]]:
    """Resolve the lead and assisting targets (role, unit id, grid code); lead defaults to the
    latest route's suggestion."""
    lead = ctx.data.lead
    if lead is None:
        route = ctx.session.execute(text(
            "SELECT target_kind, org_unit_id, grid_code FROM event_route WHERE event_id = :e "
            "ORDER BY id DESC LIMIT 1"), {"e": ctx.event.id}).mappings().first()
        if route is None or route["target_kind"] == "none":
            raise InvalidInput("no rule suggests a unit: name the lead unit", field="lead")
        resolved = [("lead", route["org_unit_id"], route["grid_code"])]
    else:
        resolved = [("lead", *_target(ctx, lead, "lead"))]
    for i, t in enumerate(ctx.data.assisting):
        resolved.append(("assist", *_target(ctx, t, f"assisting.{i}")))
    keys = [(u, g) for _, u, g in resolved]
    if len(set(keys)) != len(keys):
        raise InvalidInput("a unit appears twice", field="assisting")
    return resolved


def _target(ctx: _Ctx, target: UnitTarget, field_name: str) -> tuple[int | None, str | None]:
    if (target.org_unit_code is None) == (target.grid_code is None):
        raise InvalidInput("name either org_unit_code or grid_code", field=field_name)
    path = str(ctx.event.row["path"])
    if target.org_unit_code:
        found = routing.units(ctx.session, codes=[target.org_unit_code])
        # A unit handles events inside its own region (a township platform its township, a
        # county department its county).
        if not found or not (path == found[0].path or path.startswith(found[0].path + ".")):
            raise InvalidInput(f"no unit {target.org_unit_code} covering this event",
                               field=field_name)
        return found[0].id, None
    row = ctx.session.execute(text(
        "SELECT 1 FROM region WHERE code = :c AND valid_to IS NULL AND level = 'grid'"),
        {"c": target.grid_code}).first()
    if row is None:
        raise InvalidInput(f"no grid {target.grid_code} in your jurisdiction", field=field_name)
    return None, target.grid_code


def _end_assignments(ctx: _Ctx, reason: str) -> None:
    ctx.session.execute(text(
        "UPDATE event_assignment SET ended_at = :at, end_reason = :r WHERE event_id = :e "
        "AND ended_at IS NULL"), {"at": ctx.at, "r": reason, "e": ctx.event.id})


def _on_dispatch(ctx: _Ctx) -> None:
    _dispatcher_unit(ctx)
    ctx.targets = _targets(ctx)


def _after_dispatch(ctx: _Ctx) -> None:
    if ctx.action is A.REASSIGN:
        _end_assignments(ctx, "reassigned")
    for role, unit_id, grid in ctx.targets:
        ctx.session.execute(text(
            "INSERT INTO event_assignment (event_id, role, org_unit_id, grid_code, assigned_at, "
            "assigned_by) VALUES (:e, :r, :u, :g, :at, :by)"),
            {"e": ctx.event.id, "r": role, "u": unit_id, "g": grid, "at": ctx.at,
             "by": ctx.actor.user_id})
    ctx.record["targets"] = [{"role": r, "org_unit_id": u, "grid_code": g}
                             for r, u, g in ctx.targets]


def _on_sign(ctx: _Ctx) -> None:
    _require_lead_member(ctx)


def _after_sign(ctx: _Ctx) -> None:
    ctx.session.execute(text(
        "UPDATE event_assignment SET signed_at = :at, signed_by = :u WHERE event_id = :e "
        "AND role = 'lead' AND ended_at IS NULL"),
        {"at": ctx.at, "u": ctx.actor.user_id, "e": ctx.event.id})


def _on_handle(ctx: _Ctx) -> None:
    _require_lead_member(ctx)
    ctx.record["result"] = _need(ctx.data.result, "result", "the handling result (处置结果)")


def _on_request_return(ctx: _Ctx) -> None:
    _require_lead_member(ctx)
    _need(ctx.data.note, "note", "a reason for returning (退回理由)")


def _on_approve_return(ctx: _Ctx) -> None:
    _dispatcher_unit(ctx)


def _after_approve_return(ctx: _Ctx) -> None:
    _end_assignments(ctx, "returned")


def _on_verify(ctx: _Ctx) -> None:
    if ctx.action is A.VERIFY_FAIL:
        _need(ctx.data.note, "note", "why the verification failed")
    if not ctx.rule.verification_required or ctx.event.row["lon"] is None:
        return
    if ctx.data.location is None:
        raise InvalidInput("on-site verification needs your location (with crs)",
                           field="location")
    lon, lat = storage_point_of(ctx.data.location, ctx.data.crs)
    distance = float(ctx.session.execute(text(
        "SELECT ST_Distance(ST_SetSRID(ST_Point(:x, :y), 4490)::geography, geom::geography) "
        "FROM event WHERE id = :e"), {"x": lon, "y": lat, "e": ctx.event.id}).scalar_one())
    ctx.record["verifier_distance_m"] = round(distance, 1)
    if distance > ctx.settings.verify_distance_m:
        raise InvalidInput(f"you are {distance:.0f} m from the event; on-site verification "
                           f"needs at most {ctx.settings.verify_distance_m:.0f} m",
                           field="location")


def _on_close(ctx: _Ctx) -> None:
    _dispatcher_unit(ctx)
    ctx.updates["closed_at"] = ctx.at


def _on_evaluate(ctx: _Ctx) -> None:
    ctx.updates["evaluation_score"] = _need(ctx.data.score, "score", "a score from 1 to 5")
    ctx.updates["evaluation_note"] = ctx.data.note
    ctx.record["score"] = ctx.data.score


def _on_escalate(ctx: _Ctx) -> None:
    try:
        target, skip = escalation_target(Level(ctx.event.row["level"]), ctx.data.to_level)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="to_level") from None
    if skip:
        _need(ctx.data.note, "note", "a reason for skipping a level (越级上报)")
    path = str(ctx.event.row["path"])
    centre = routing.centre_for(ctx.session, path, target)
    if centre is None:
        raise InvalidInput(f"no command centre at {target} level above this event",
                           field="to_level")
    _dispatcher_unit(ctx)
    ctx.updates.update(level=target.value, centre_unit_id=centre.id)
    ctx.record.update(to_level=target.value, skip_level=skip, centre=centre.code)


def _after_escalate(ctx: _Ctx) -> None:
    _end_assignments(ctx, "escalated")
    chain = event_types.type_chain(ctx.session, int(ctx.event.row["event_type_id"]))
    names = type_names(ctx.session, chain)
    decision = routing.decide(
        ctx.session, type_chain=chain, type_names=names, severity=str(ctx.event.row["severity"]),
        path=str(ctx.event.row["path"]), grid_code=ctx.event.row["grid_code"],
        level=Level(ctx.record["to_level"]), rule=ctx.rule)
    routing.store(ctx.session, event_id=ctx.event.id, decision=decision)
    ctx.session.execute(text("UPDATE event SET no_rule_matched = :n WHERE id = :e"),
                        {"n": decision.no_rule_matched, "e": ctx.event.id})
    ctx.record["route"] = decision.reason


def _on_remind(ctx: _Ctx) -> None:
    ctx.updates["reminders"] = int(ctx.event.row["reminders"]) + 1


def _on_supervise(ctx: _Ctx) -> None:
    _need(ctx.data.note, "note", "the supervision note (督办意见)")
    ctx.updates["supervised"] = True
    if ctx.data.deadline is not None:
        ctx.record["deadline"] = ctx.data.deadline.isoformat()


def _on_request_extension(ctx: _Ctx) -> None:
    _require_lead_member(ctx)
    hours = _need(ctx.data.hours, "hours", "the extra hours asked for")
    _need(ctx.data.note, "note", "a reason for the extension (延期理由)")
    if ctx.session.execute(text("SELECT 1 FROM event_extension WHERE event_id = :e "
                                "AND decided_at IS NULL"), {"e": ctx.event.id}).first():
        raise Conflict("an extension request is already waiting for a decision")
    ctx.record.update(hours=hours, phase=PHASE_OF_STATE[ctx.event.state].value)


def _after_request_extension(ctx: _Ctx) -> None:
    try:
        with ctx.session.begin_nested():
            ctx.session.execute(text(
                "INSERT INTO event_extension (event_id, phase, seconds, reason, requested_at, "
                "requested_by) VALUES (:e, :p, :s, :r, :at, :u)"),
                {"e": ctx.event.id, "p": ctx.record["phase"], "s": ctx.record["hours"] * 3600,
                 "r": ctx.data.note, "at": ctx.at, "u": ctx.actor.user_id})
    except DBAPIError:
        raise Conflict("an extension request is already waiting for a decision") from None


def _decide_extension(ctx: _Ctx) -> None:
    _dispatcher_unit(ctx)
    approved = ctx.action is A.APPROVE_EXTENSION
    row = ctx.session.execute(text(
        "UPDATE event_extension SET decided_at = :at, decided_by = :u, approved = :ok, "
        "decision_note = :n WHERE event_id = :e AND decided_at IS NULL RETURNING id, seconds"),
        {"at": ctx.at, "u": ctx.actor.user_id, "ok": approved, "n": ctx.data.note,
         "e": ctx.event.id}).first()
    if row is None:
        raise Conflict("no extension request is waiting for a decision")
    ctx.record.update(extension_id=row.id, hours=row.seconds / 3600, approved=approved)


def _on_resolve_on_spot(ctx: _Ctx) -> None:
    if not ctx.rule.on_spot_allowed:
        raise InvalidInput("this type and severity may not be resolved on the spot",
                           field="resolved_on_spot")
    grid = ctx.event.row["grid_code"]
    if grid not in ctx.actor.grid_codes:
        raise PermissionDenied("only the grid's own workers resolve a matter on the spot")
    ctx.record["result"] = _need(ctx.data.result, "result", "the result (处置结果)")
    ctx.updates.update(closed_at=ctx.at, resolved_on_spot=True)


def _on_merge(ctx: _Ctx) -> None:
    _dispatcher_unit(ctx)
    into = _need(ctx.data.into_event_id, "into_event_id", "the event to merge into")
    if into == ctx.event.id:
        raise InvalidInput("an event cannot be merged into itself", field="into_event_id")
    try:
        target = load_event(ctx.session, into)
    except NotFound:
        raise InvalidInput(f"no event {into} to merge into", field="into_event_id") from None
    if target.state not in {S.REPORTED, S.ACCEPTED, S.DISPATCHED, S.SIGNED}:
        raise InvalidInput("the event merged into must still be open", field="into_event_id")
    ctx.updates.update(merged_into_id=into, closed_at=ctx.at)
    ctx.record["into"] = {"id": into, "code": target.row["code"]}
    ctx.merge_target = target


def _after_merge(ctx: _Ctx) -> None:
    # The kept event's history says what was folded into it; both histories stay whole.
    target = ctx.merge_target
    assert target is not None
    write_history(ctx.session, event_id=target.id, action="merged_from",
                   from_state=target.state, to_state=target.state, actor=ctx.actor,
                   unit_id=ctx.unit_id, note=ctx.data.note,
                   data={"id": ctx.event.id, "code": ctx.event.row["code"]},
                   version=target.version, at=ctx.at)


_HANDLERS: dict[EventAction, Callable[[_Ctx], None]] = {
    A.ACCEPT: _on_accept, A.REFUSE: _on_refuse, A.DISPATCH: _on_dispatch,
    A.REASSIGN: _on_dispatch, A.SIGN: _on_sign, A.HANDLE: _on_handle,
    A.REQUEST_RETURN: _on_request_return, A.APPROVE_RETURN: _on_approve_return,
    A.REJECT_RETURN: _on_approve_return, A.VERIFY_PASS: _on_verify, A.VERIFY_FAIL: _on_verify,
    A.CLOSE: _on_close, A.EVALUATE: _on_evaluate, A.ESCALATE: _on_escalate,
    A.REMIND: _on_remind, A.SUPERVISE: _on_supervise,
    A.REQUEST_EXTENSION: _on_request_extension, A.APPROVE_EXTENSION: _decide_extension,
    A.REJECT_EXTENSION: _decide_extension, A.RESOLVE_ON_SPOT: _on_resolve_on_spot,
    A.MERGE: _on_merge,
}
#: Side effects that run once the event is claimed (inserts that must not race).
_AFTER: dict[EventAction, tuple[Callable[[_Ctx], None], ...]] = {
    A.DISPATCH: (_after_dispatch,), A.REASSIGN: (_after_dispatch,), A.SIGN: (_after_sign,),
    A.APPROVE_RETURN: (_after_approve_return,), A.ESCALATE: (_after_escalate,),
    A.REQUEST_EXTENSION: (_after_request_extension,), A.MERGE: (_after_merge,),
}
assert set(HANDLER_ACTIONS) <= set(_HANDLERS)
