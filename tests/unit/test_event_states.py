"""The event transition table: every allowed transition, and forbidden ones naming the allowed."""

from __future__ import annotations

import pytest

from geoserver.domain.events import (
    ACTION_PERMISSION,
    CLOSED_STATES,
    FINAL_STATES,
    NON_MOVING_ACTIONS,
    OPEN_STATES,
    PHASE_OF_STATE,
    QUEUE_STATES,
    TRANSITIONS,
    EventAction,
    EventState,
    InvalidTransition,
    Level,
    Phase,
    Queue,
    allowed_actions,
    escalation_target,
    next_state,
)
from geoserver.errors import Conflict

S, A = EventState, EventAction

#: The lifecycle as DESIGN §5 tells it, written out independently of the table.
EXPECTED_MOVES = {
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
    (S.RETURN_REQUESTED, A.REJECT_RETURN): S.SIGNED,
    (S.RETURNED, A.REASSIGN): S.DISPATCHED,
    (S.RETURNED, A.ESCALATE): S.REPORTED,
    (S.HANDLED, A.VERIFY_PASS): S.VERIFIED,
    (S.HANDLED, A.VERIFY_FAIL): S.SIGNED,
    (S.VERIFIED, A.CLOSE): S.CLOSED,
    (S.CLOSED, A.EVALUATE): S.EVALUATED,
}


@pytest.mark.parametrize(("key", "target"), list(EXPECTED_MOVES.items()),
                         ids=lambda v: str(v))
def test_every_lifecycle_move_is_allowed(key, target) -> None:
    state, action = key
    assert next_state(state, action) is target


def test_table_holds_nothing_unexpected() -> None:
    non_moving = {k for k in TRANSITIONS if k[1] in NON_MOVING_ACTIONS}
    assert set(TRANSITIONS) - non_moving - {(S.HANDLED, A.CLOSE)} == set(EXPECTED_MOVES)
    assert all(TRANSITIONS[k] == k[0] for k in non_moving)


@pytest.mark.parametrize("state", sorted(OPEN_STATES))
def test_remind_and_supervise_keep_every_open_state(state) -> None:
    assert next_state(state, A.REMIND) is state
    assert next_state(state, "supervise") is state


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_final_states_take_no_reminders(state) -> None:
    with pytest.raises(InvalidTransition):
        next_state(state, A.REMIND)


@pytest.mark.parametrize("action", [A.REQUEST_EXTENSION, A.APPROVE_EXTENSION,
                                    A.REJECT_EXTENSION])
def test_extensions_only_while_a_unit_holds_the_event(action) -> None:
    assert next_state(S.DISPATCHED, action) is S.DISPATCHED
    assert next_state(S.SIGNED, action) is S.SIGNED
    for state in (S.REPORTED, S.ACCEPTED, S.HANDLED, S.CLOSED):
        with pytest.raises(InvalidTransition):
            next_state(state, action)


@pytest.mark.parametrize(("state", "action"), [
    (S.REPORTED, A.DISPATCH),        # must be accepted first
    (S.REPORTED, A.VERIFY_PASS),
    (S.ACCEPTED, A.SIGN),
    (S.DISPATCHED, A.HANDLE),        # must be signed first
    (S.SIGNED, A.CLOSE),
    (S.HANDLED, A.SIGN),
    (S.REFUSED, A.ACCEPT),
    (S.CLOSED, A.REPORT),
    (S.MERGED, A.DISPATCH),
    (S.EVALUATED, A.EVALUATE),
    (None, A.ACCEPT),
])
def test_forbidden_transitions_name_the_allowed_actions(state, action) -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(state, action)
    err = info.value
    assert isinstance(err, Conflict)
    assert err.allowed == sorted(a.value for a in allowed_actions(state))
    assert err.extra["allowed_actions"] == err.allowed
    assert str(action) in err.detail


def test_close_without_verification_only_when_the_rule_allows() -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(S.HANDLED, A.CLOSE)
    assert "close" not in info.value.allowed
    assert next_state(S.HANDLED, A.CLOSE, verification_required=False) is S.CLOSED
    assert A.CLOSE in allowed_actions(S.HANDLED, verification_required=False)


def test_unknown_action_is_an_invalid_transition() -> None:
    with pytest.raises(InvalidTransition) as info:
        next_state(S.REPORTED, "teleport")
    assert "accept" in info.value.allowed


def test_allowed_actions_of_reported() -> None:
    assert allowed_actions(S.REPORTED) == [A.ACCEPT, A.REFUSE, A.ESCALATE, A.REMIND,
                                           A.SUPERVISE, A.RESOLVE_ON_SPOT, A.MERGE]


def test_state_groups_partition_the_states() -> None:
    assert OPEN_STATES | FINAL_STATES == set(S)
    assert not OPEN_STATES & FINAL_STATES
    assert CLOSED_STATES <= FINAL_STATES
    assert set(PHASE_OF_STATE.values()) == set(Phase)
    assert all(s in OPEN_STATES for s in PHASE_OF_STATE)
    assert set(QUEUE_STATES) == set(Queue)


def test_every_action_has_a_permission() -> None:
    assert set(ACTION_PERMISSION) == set(A)
    assert all(p.startswith("event.") for p in ACTION_PERMISSION.values())


def test_escalation_level_by_level_and_skip_level() -> None:
    assert escalation_target(Level.TOWNSHIP) == (Level.COUNTY, False)
    assert escalation_target(Level.TOWNSHIP, Level.CITY) == (Level.CITY, True)
    assert escalation_target(Level.COUNTY, Level.CITY) == (Level.CITY, False)
    with pytest.raises(ValueError, match="no higher level"):
        escalation_target(Level.CITY)
    with pytest.raises(ValueError, match="goes up"):
        escalation_target(Level.COUNTY, Level.TOWNSHIP)
