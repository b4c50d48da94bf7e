"""Event lifecycle (事件流转): states, actions, the one transition table and ``next_state``.

Pure logic, no I/O. The service loads an event, asks ``next_state`` what an action does to it,
and writes the new state and a history row in one transaction. Actions that do not change the
state (催办, 督办, 延期申请 …) are in the same table, mapping a state to itself, so every action
an event may take is decided here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from geoserver.errors import Conflict


class EventState(StrEnum):
    """事件状态: reported 待受理, refused 不予受理, accepted 已受理 (待派遣), dispatched 已派遣
    (待签收), signed 已签收 (处置中), return_requested 申请退回 (待审核), returned 已退回 (待改派),
    handled 已处置 (待核查), verified 核查通过 (待办结), closed 已办结, evaluated 已评价,
    merged 已合并 (a duplicate folded into another event)."""

    REPORTED = "reported"
    REFUSED = "refused"
    ACCEPTED = "accepted"
    DISPATCHED = "dispatched"
    SIGNED = "signed"
    RETURN_REQUESTED = "return_requested"
    RETURNED = "returned"
    HANDLED = "handled"
    VERIFIED = "verified"
    CLOSED = "closed"
    EVALUATED = "evaluated"
    MERGED = "merged"


class EventAction(StrEnum):
    """事件操作: report 上报, accept 受理, refuse 不予受理, dispatch 派遣, sign 签收,
    handle 处置, verify_pass 核查通过, verify_fail 核查不通过, close 办结, evaluate 评价,
    request_return 申请退回, approve_return 审核通过 (退回), reject_return 审核驳回,
    reassign 改派, request_extension 延期申请, approve_extension 同意延期,
    reject_extension 驳回延期, escalate 上报 (逐级或越级上报), remind 催办, supervise 督办,
    resolve_on_spot 就地解决, merge 合并 (重复事件)."""

    REPORT = "report"
    ACCEPT = "accept"
    REFUSE = "refuse"
    DISPATCH = "dispatch"
    SIGN = "sign"
    HANDLE = "handle"
    VERIFY_PASS = "verify_pass"
    VERIFY_FAIL = "verify_fail"
    CLOSE = "close"
    EVALUATE = "evaluate"
    REQUEST_RETURN = "request_return"
    APPROVE_RETURN = "approve_return"
    REJECT_RETURN = "reject_return"
    REASSIGN = "reassign"
    REQUEST_EXTENSION = "request_extension"
    APPROVE_EXTENSION = "approve_extension"
    REJECT_EXTENSION = "reject_extension"
    ESCALATE = "escalate"
    REMIND = "remind"
    SUPERVISE = "supervise"
    RESOLVE_ON_SPOT = "resolve_on_spot"
    MERGE = "merge"


class Phase(StrEnum):
    """时限阶段: accept 受理, sign 签收, handle 处置, verify 核查 — each has its own clock."""

    ACCEPT = "accept"
    SIGN = "sign"
    HANDLE = "handle"
    VERIFY = "verify"


class Severity(StrEnum):
    """紧急程度: normal 一般, major 较大, urgent 紧急."""

    NORMAL = "normal"
    MAJOR = "major"
    URGENT = "urgent"


class EventSource(StrEnum):
    """事件来源: patrol 网格员巡查, commander 指挥室录入, public 群众上报, hotline_12345 12345热线,
    police_110 110联动, external 其他平台 (省矛调 …)."""

    PATROL = "patrol"
    COMMANDER = "commander"
    PUBLIC = "public"
    HOTLINE_12345 = "hotline_12345"
    POLICE_110 = "police_110"
    EXTERNAL = "external"


class Level(StrEnum):
    """处置层级: the level whose command centre holds the event: township 乡镇, county 县,
    city 市."""

    TOWNSHIP = "township"
    COUNTY = "county"
    CITY = "city"


#: Escalation goes up this ladder, one rung (逐级) or more (越级).
LEVEL_LADDER: tuple[Level, ...] = (Level.TOWNSHIP, Level.COUNTY, Level.CITY)

S, A = EventState, EventAction

# --- state groups, defined once ------------------------------------------------------------------
#: Finished for good: nothing but evaluation (for closed) happens after these.
FINAL_STATES = frozenset({S.CLOSED, S.EVALUATED, S.REFUSED, S.MERGED})
OPEN_STATES = frozenset(S) - FINAL_STATES
#: 已办结: closed, evaluated or not.
CLOSED_STATES = frozenset({S.CLOSED, S.EVALUATED})
#: The dispatching command centre must act (受理, 派遣, 审核, 办结).
DISPATCHER_STATES = frozenset({S.REPORTED, S.ACCEPTED, S.RETURN_REQUESTED, S.RETURNED,
                               S.VERIFIED})
#: The handling unit must act (签收, 处置).
HANDLER_STATES = frozenset({S.DISPATCHED, S.SIGNED})

# --- the one transition table ------------------------------------------------------------------
# (state, action) → new state. A state mapped to itself is an action that records something
# (a reminder, a supervision note, an extension request) without moving the event. ``None`` is
# "no event yet": reporting creates one.
_Key = tuple[EventState | None, EventAction]
TRANSITIONS: Mapping[_Key, EventState] = {
    (None, A.REPORT): S.REPORTED,
    (S.REPORTED, A.ACCEPT): S.ACCEPTED,
    (S.REPORTED, A.REFUSE): S.REFUSED,
    (S.REPORTED, A.RESOLVE_ON_SPOT): S.CLOSED,
    (S.REPORTED, A.ESCALATE): S.REPORTED,
    (S.REPORTED, A.MERGE): S.MERGED,
    (S.ACCEPTED, A.DISPATCH): S.DISPATCHED,
    (S.ACCEPTED, A.ESCALATE): S.REPORTED,
    (S.ACCEPTED, A.MERGE): S.MERGED,
    (S.DISPATCHED, A.SIGN): S.SIGNED,
    (S.DISPATCHED, A.REQUEST_RETURN): S.RETURN_REQUESTED,
    (S.DISPATCHED, A.REASSIGN): S.DISPATCHED,
    (S.SIGNED, A.HANDLE): S.HANDLED,
    (S.SIGNED, A.REQUEST_RETURN): S.RETURN_REQUESTED,
    (S.RETURN_REQUESTED, A.APPROVE_RETURN): S.RETURNED,
    # A refused return leaves the unit holding the event: it handles it as signed.
    (S.RETURN_REQUESTED, A.REJECT_RETURN): S.SIGNED,
    (S.RETURNED, A.REASSIGN): S.DISPATCHED,
    (S.RETURNED, A.ESCALATE): S.REPORTED,
    (S.HANDLED, A.VERIFY_PASS): S.VERIFIED,
    (S.HANDLED, A.VERIFY_FAIL): S.SIGNED,
    (S.HANDLED, A.CLOSE): S.CLOSED,
    (S.VERIFIED, A.CLOSE): S.CLOSED,
    (S.CLOSED, A.EVALUATE): S.EVALUATED,
    **{(s, A.REQUEST_EXTENSION): s for s in HANDLER_STATES},
    **{(s, A.APPROVE_EXTENSION): s for s in HANDLER_STATES},
    **{(s, A.REJECT_EXTENSION): s for s in HANDLER_STATES},
    **{(s, A.REMIND): s for s in OPEN_STATES},
    **{(s, A.SUPERVISE): s for s in OPEN_STATES},
}

#: Transitions that only apply when the event's rule needs no on-site verification (核查):
#: a handled event may then be closed directly.
SKIPS_VERIFICATION: frozenset[_Key] = frozenset({(S.HANDLED, A.CLOSE)})

#: Actions that record something without moving the event.
NON_MOVING_ACTIONS = frozenset({A.REQUEST_EXTENSION, A.APPROVE_EXTENSION, A.REJECT_EXTENSION,
                                A.REMIND, A.SUPERVISE})

#: The permission each action needs (names in the ``permission`` table, migration 0020).
ACTION_PERMISSION: Mapping[EventAction, str] = {
    A.REPORT: "event.report", A.RESOLVE_ON_SPOT: "event.report",
    A.ACCEPT: "event.dispatch", A.REFUSE: "event.dispatch", A.DISPATCH: "event.dispatch",
    A.REASSIGN: "event.dispatch", A.APPROVE_RETURN: "event.dispatch",
    A.REJECT_RETURN: "event.dispatch", A.APPROVE_EXTENSION: "event.dispatch",
    A.REJECT_EXTENSION: "event.dispatch", A.ESCALATE: "event.dispatch",
    A.MERGE: "event.dispatch", A.CLOSE: "event.dispatch",
    A.SIGN: "event.handle", A.HANDLE: "event.handle", A.REQUEST_RETURN: "event.handle",
    A.REQUEST_EXTENSION: "event.handle",
    A.VERIFY_PASS: "event.verify", A.VERIFY_FAIL: "event.verify",
    A.EVALUATE: "event.evaluate",
    A.REMIND: "event.supervise", A.SUPERVISE: "event.supervise",
}

#: Actions taken by a member of the unit the event is assigned to (the lead unit, 主办).
HANDLER_ACTIONS = frozenset({A.SIGN, A.HANDLE, A.REQUEST_RETURN, A.REQUEST_EXTENSION})

#: The phase whose clock runs while the event is in a state (none: no clock runs).
PHASE_OF_STATE: Mapping[EventState, Phase] = {
    S.REPORTED: Phase.ACCEPT,
    S.DISPATCHED: Phase.SIGN,
    S.SIGNED: Phase.HANDLE,
    S.HANDLED: Phase.VERIFY,
}


class Queue(StrEnum):
    """工作队列: to_accept 待受理, to_dispatch 待派遣, to_review 待审核 (退回申请), to_sign 待签收,
    to_handle 待办理, to_verify 待核查, to_close 待办结, done 已办理 (I acted on it), closed 已办结,
    mine 我上报的."""

    TO_ACCEPT = "to_accept"
    TO_DISPATCH = "to_dispatch"
    TO_REVIEW = "to_review"
    TO_SIGN = "to_sign"
    TO_HANDLE = "to_handle"
    TO_VERIFY = "to_verify"
    TO_CLOSE = "to_close"
    DONE = "done"
    CLOSED = "closed"
    MINE = "mine"


#: The states each work queue holds (who sees which events is the service's business).
QUEUE_STATES: Mapping[Queue, frozenset[EventState]] = {
    Queue.TO_ACCEPT: frozenset({S.REPORTED}),
    Queue.TO_DISPATCH: frozenset({S.ACCEPTED, S.RETURNED}),
    Queue.TO_REVIEW: frozenset({S.RETURN_REQUESTED}),
    Queue.TO_SIGN: frozenset({S.DISPATCHED}),
    Queue.TO_HANDLE: frozenset({S.SIGNED}),
    Queue.TO_VERIFY: frozenset({S.HANDLED}),
    Queue.TO_CLOSE: frozenset({S.VERIFIED}),
    Queue.DONE: frozenset(S),
    Queue.CLOSED: CLOSED_STATES,
    Queue.MINE: frozenset(S),
}


class InvalidTransition(Conflict):
    """The action is not allowed in the event's current state; names the allowed ones."""

    def __init__(self, state: EventState | None, action: EventAction | str,
                 allowed: Iterable[EventAction]) -> None:
        names = sorted(a.value for a in allowed)
        where = f"an event in state {state.value!r}" if state else "a new event"
        super().__init__(f"{action} is not allowed for {where}; allowed: {', '.join(names)}")
        self.extra.update(state=state.value if state else None, allowed_actions=names)
        self.state = state
        self.action = action
        self.allowed = names


def allowed_actions(state: EventState | None, *,
                    verification_required: bool = True) -> list[EventAction]:
    """Return the actions allowed in ``state``, in declaration order."""
    return [a for a in EventAction
            if (state, a) in TRANSITIONS
            and not (verification_required and (state, a) in SKIPS_VERIFICATION)]


def next_state(state: EventState | None, action: EventAction | str, *,
               verification_required: bool = True) -> EventState:
    """Return the state ``action`` leads to from ``state``; raise InvalidTransition if none.

    ``verification_required`` (the event rule's 需现场核查) forbids closing a handled event
    before it is verified.
    """
    try:
        act = EventAction(action)
    except ValueError:
        raise InvalidTransition(state, action,
                                allowed_actions(state, verification_required=verification_required)
                                ) from None
    key = (state, act)
    if key not in TRANSITIONS or (verification_required and key in SKIPS_VERIFICATION):
        raise InvalidTransition(state, act, allowed_actions(
            state, verification_required=verification_required))
    return TRANSITIONS[key]


def escalation_target(level: Level, to_level: Level | None = None) -> tuple[Level, bool]:
    """Return the level an escalation goes to and whether it skips a level (越级上报).

    Without ``to_level`` the event goes one rung up (逐级上报).

    Raises:
        ValueError: already at the top, or ``to_level`` not above ``level``.
    """
    here = LEVEL_LADDER.index(level)
    if here == len(LEVEL_LADDER) - 1:
        raise ValueError(f"an event at {level} level has no higher level to go to")
    if to_level is None:
        return LEVEL_LADDER[here + 1], False
    there = LEVEL_LADDER.index(to_level)
    if there <= here:
        raise ValueError(f"escalation goes up: {to_level} is not above {level}")
    return to_level, there > here + 1
