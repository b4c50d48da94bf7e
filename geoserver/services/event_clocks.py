"""Phase clocks of events (时限), recomputed from the history.

The history is the truth: a phase's clock runs while the event sits in a state of that phase
(domain.clock.segments_from_history). ``event_clock`` and the event's ``deadline_at`` /
``amber_at`` are a cache written at every transition so that queues can filter by SLA colour
with a comparison; ``clocks_at`` recomputes any past moment from the history alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.clock import ClockState, WorkCalendar, clock_state, segments_from_history
from geoserver.domain.events import EventState, Phase
from geoserver.services.event_types import EffectiveRule


class ClockPublic(BaseModel):
    """A phase clock as it stands (or stood) at ``at``."""

    phase: Phase
    unit: str
    limit_seconds: float
    elapsed_seconds: float
    remaining_seconds: float
    running: bool
    started_at: datetime
    stopped_at: datetime | None
    deadline_at: datetime | None
    amber_at: datetime | None
    status: str
    at: datetime


def public(state: ClockState) -> ClockPublic:
    """Return a clock state as the API shows it."""
    assert state.phase is not None
    return ClockPublic(phase=state.phase, unit=state.unit.value,
                       limit_seconds=state.limit_seconds, elapsed_seconds=state.elapsed_seconds,
                       remaining_seconds=state.remaining_seconds, running=state.running,
                       started_at=state.started_at, stopped_at=state.stopped_at,
                       deadline_at=state.deadline, amber_at=state.amber_at,
                       status=state.status.value, at=state.at)


def compute(session: Session, *, event_id: int, rule: EffectiveRule, calendar: WorkCalendar,
            at: datetime, amber_share: float) -> list[ClockState]:
    """Return the event's phase clocks as they stood at ``at``, from history and extensions."""
    history = [(r.at, EventState(r.to_state)) for r in session.execute(text(
        "SELECT at, to_state FROM event_history WHERE event_id = :e AND at <= :at ORDER BY id"),
        {"e": event_id, "at": at}).all()]
    extensions: dict[str, float] = dict(session.execute(text(
        "SELECT phase, sum(seconds) FROM event_extension WHERE event_id = :e AND approved "
        "AND decided_at <= :at GROUP BY phase"), {"e": event_id, "at": at}).all())
    return states_of(history, extensions, rule=rule, calendar=calendar, at=at,
                     amber_share=amber_share)


def states_of(history: Iterable[tuple[datetime, EventState]], extensions: Mapping[str, float],
              *, rule: EffectiveRule, calendar: WorkCalendar, at: datetime,
              amber_share: float) -> list[ClockState]:
    """Return the phase clocks at ``at`` of an event with this history (moment, new state)
    and these approved extensions (seconds per phase)."""
    segments = segments_from_history(history)
    states = []
    for phase in Phase:
        if phase not in segments:
            continue
        state = clock_state(segments[phase], rule.limits[phase], calendar, at, phase=phase,
                            extension_seconds=float(extensions.get(phase.value, 0.0)),
                            amber_share=amber_share)
        if state is not None:
            states.append(state)
    return states


def clocks_at(session: Session, *, event_id: int, rule: EffectiveRule, calendar: WorkCalendar,
              at: datetime, amber_share: float) -> list[ClockPublic]:
    """Return the event's phase clocks at any moment, recomputed from the history."""
    return [public(s) for s in compute(session, event_id=event_id, rule=rule,
                                       calendar=calendar, at=at, amber_share=amber_share)]


def opening(*, rule: EffectiveRule, calendar: WorkCalendar, at: datetime,
            amber_share: float) -> list[ClockState]:
    """Return the clocks of an event reported at ``at`` (its history is that one row)."""
    return states_of([(at, EventState.REPORTED)], {}, rule=rule, calendar=calendar, at=at,
                     amber_share=amber_share)


def running_clock(states: Iterable[ClockState]) -> ClockState | None:
    """Return the clock that runs, if any (its deadline is the event's)."""
    return next((s for s in states if s.running), None)


def write(session: Session, *, event_id: int, states: Iterable[ClockState],
          rule: EffectiveRule, calendar: WorkCalendar) -> None:
    """Write clock states into the event's clock cache (the event row's deadline aside)."""
    for state in states:
        assert state.phase is not None
        session.execute(text(
            "INSERT INTO event_clock (event_id, phase, unit, limit_seconds, extension_seconds, "
            "elapsed_seconds, running, started_at, stopped_at, deadline_at, amber_at, status) "
            "VALUES (:e, :p, :u, :l, :x, :el, :r, :s, :st, :d, :a, :c) "
            "ON CONFLICT (event_id, phase) DO UPDATE SET unit = EXCLUDED.unit, "
            "limit_seconds = EXCLUDED.limit_seconds, "
            "extension_seconds = EXCLUDED.extension_seconds, "
            "elapsed_seconds = EXCLUDED.elapsed_seconds, running = EXCLUDED.running, "
            "started_at = EXCLUDED.started_at, stopped_at = EXCLUDED.stopped_at, "
            "deadline_at = EXCLUDED.deadline_at, amber_at = EXCLUDED.amber_at, "
            "status = EXCLUDED.status, updated_at = now()"),
            {"e": event_id, "p": state.phase.value, "u": state.unit.value,
             "l": state.limit_seconds, "x": state.limit_seconds - rule.limits[state.phase].seconds(
                 calendar.office_hours), "el": state.elapsed_seconds, "r": state.running,
             "s": state.started_at, "st": state.stopped_at, "d": state.deadline,
             "a": state.amber_at, "c": state.status.value})


def sync(session: Session, *, event_id: int, rule: EffectiveRule, calendar: WorkCalendar,
         now: datetime, amber_share: float) -> ClockState | None:
    """Rewrite the event's clock cache; return the running clock, if any."""
    states = compute(session, event_id=event_id, rule=rule, calendar=calendar, at=now,
                     amber_share=amber_share)
    write(session, event_id=event_id, states=states, rule=rule, calendar=calendar)
    running = running_clock(states)
    session.execute(text("UPDATE event SET deadline_at = :d, amber_at = :a WHERE id = :e"),
                    {"d": running.deadline if running else None,
                     "a": running.amber_at if running else None, "e": event_id})
    return running
