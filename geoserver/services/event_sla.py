"""Overdue events (超时): automatic reminders (催办) and escalation (上报) when a clock turns red.

Run periodically by the job runner with system scope. Each red clock gets one automatic action:
an escalation when the event's rule says so (one level up, or straight to the city) and the
event still waits for its command centre (待受理, 待派遣); otherwise a reminder to whoever holds
it. Every action goes through ``event_actions.act``, so it lands in the history like any other.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.events import OPEN_STATES, EventAction, EventState, Level
from geoserver.domain.principal import SYSTEM
from geoserver.errors import GridgovError
from geoserver.services.event_actions import act
from geoserver.services.events import DEFAULT_SETTINGS, EventSettings, load_event, rule_of

log = logging.getLogger("gridgov.events")

#: States in which the command centre has not yet sent the event on: escalation helps there.
_WAITING_FOR_CENTRE = frozenset({EventState.REPORTED, EventState.ACCEPTED, EventState.RETURNED})

_OVERDUE = """
SELECT e.id FROM event e
WHERE e.deadline_at IS NOT NULL AND e.deadline_at <= :now AND e.state = ANY(:open)
  AND NOT EXISTS (SELECT 1 FROM event_history h WHERE h.event_id = e.id
                  AND h.actor_user_id IS NULL AND h.action IN ('remind', 'escalate')
                  AND h.at >= e.deadline_at)
ORDER BY e.deadline_at, e.id
LIMIT :limit
FOR UPDATE OF e SKIP LOCKED
"""


def sweep_overdue(session: Session, *, settings: EventSettings = DEFAULT_SETTINGS,
                  now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    """Remind or escalate events whose running clock is red; return what was done."""
    at = now or session.execute(text("SELECT now()")).scalar_one()
    ids = session.execute(text(_OVERDUE), {
        "now": at, "open": sorted(s.value for s in OPEN_STATES), "limit": limit,
    }).scalars().all()
    done = {"reminded": 0, "escalated": 0, "failed": 0}
    for event_id in ids:
        try:
            with session.begin_nested():
                done[_handle_overdue(session, int(event_id), settings, at)] += 1
        except GridgovError as exc:
            done["failed"] += 1
            log.warning("overdue event %s not handled: %s", event_id, exc.detail)
    return done


def _handle_overdue(session: Session, event_id: int, settings: EventSettings,
                    at: datetime) -> str:
    ev = load_event(session, event_id)
    rule = rule_of(session, ev.row)
    level = Level(ev.row["level"])
    if (rule.escalation != "none" and ev.state in _WAITING_FOR_CENTRE
            and level is not Level.CITY):
        to_level = Level.CITY if rule.escalation == "skip" else None
        act(session, actor=SYSTEM, event_id=event_id, action=EventAction.ESCALATE,
            data={"version": ev.version, "to_level": to_level,
                  "note": "时限已超, 自动上报"}, settings=settings, at=at)
        return "escalated"
    act(session, actor=SYSTEM, event_id=event_id, action=EventAction.REMIND,
        data={"version": ev.version, "note": "时限已超, 自动催办"}, settings=settings, at=at)
    return "reminded"
