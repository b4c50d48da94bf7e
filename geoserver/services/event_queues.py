"""Work queues of events per role (待受理, 待签收, 待办理, 待核查, 已办理, 已办结 …) with
filters and counts.

Row-level security limits every queue to the caller's jurisdiction; on top of that a queue
holds the events waiting for the caller's units: the command centre holding an event for
dispatcher queues, the lead unit (or lead grid) for handler queues. A caller who acts for no
unit and no grid (an administrator, the system) sees every event of the queue's states.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ
from geoserver.domain.events import QUEUE_STATES, EventSource, EventState, Queue
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, PermissionDenied
from geoserver.services import routing
from geoserver.services.events import EVENT_SELECT, SLA_EXPR, EventPublic, event_public

MAX_PAGE = 200


class EventFilter(BaseModel):
    """Filters on an event list; every one is optional."""

    model_config = ConfigDict(extra="forbid")

    queue: Queue | None = None
    type_code: str | None = None
    source: EventSource | None = None
    state: EventState | None = None
    sla: str | None = Field(default=None, pattern=r"^(green|amber|red)$")
    region_code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("since", "until")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        # PostgreSQL refuses offsets beyond ±15:59 that Python accepts: send UTC; a time
        # without a zone is Shanghai's.
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=GOVERNANCE_TZ)
        return value.astimezone(UTC)


class EventPage(BaseModel):
    """One page of events and the total matching."""

    items: list[EventPublic]
    total: int


_DISPATCHER = "(:all OR e.centre_unit_id = ANY(:units))"
_LEAD = ("(:all OR EXISTS (SELECT 1 FROM event_assignment a WHERE a.event_id = e.id "
         "AND a.role = 'lead' AND a.ended_at IS NULL "
         "AND (a.org_unit_id = ANY(:units) OR a.grid_code = ANY(:grids))))")
_WHO: Mapping[Queue, str] = {
    Queue.TO_ACCEPT: _DISPATCHER, Queue.TO_DISPATCH: _DISPATCHER, Queue.TO_REVIEW: _DISPATCHER,
    Queue.TO_CLOSE: _DISPATCHER, Queue.TO_SIGN: _LEAD, Queue.TO_HANDLE: _LEAD,
    # The command centre or the event's own grid workers verify on site.
    Queue.TO_VERIFY: f"({_DISPATCHER} OR e.grid_code = ANY(:grids))",
    Queue.DONE: ("EXISTS (SELECT 1 FROM event_history h WHERE h.event_id = e.id "
                 "AND h.actor_user_id = :uid AND h.action NOT IN ('report', 'remind'))"),
    Queue.CLOSED: "true",
    Queue.MINE: "e.reporter_user_id = :uid",
}


def _queue_clause(queue: Queue) -> str:
    states = ", ".join(f"'{s.value}'" for s in sorted(QUEUE_STATES[queue]))
    return f"(e.state IN ({states}) AND {_WHO[queue]})"


def _who(session: Session, actor: Principal) -> dict[str, Any]:
    units = sorted(routing.units_of(session, actor.user_id))
    grids = list(actor.grid_codes)
    return {"units": units, "grids": grids, "uid": actor.user_id or -1,
            "all": not units and not grids}


def _filters(f: EventFilter) -> tuple[list[str], dict[str, Any]]:
    where: list[str] = []
    params: dict[str, Any] = {}
    if f.queue is not None:
        where.append(_queue_clause(f.queue))
    if f.type_code:
        # A type filter takes its sub-types too.
        where.append("e.event_type_id IN (WITH RECURSIVE d AS (SELECT id FROM event_type "
                     "WHERE code = :type UNION ALL SELECT c.id FROM event_type c JOIN d "
                     "ON c.parent_id = d.id) SELECT id FROM d)")
        params["type"] = f.type_code
    for name in ("source", "state"):
        value = getattr(f, name)
        if value is not None:
            where.append(f"e.{name} = :{name}")
            params[name] = value.value
    if f.sla:
        where.append(f"({SLA_EXPR}) = :sla")
        params["sla"] = f.sla
    if f.region_code:
        where.append("e.path <@ (SELECT path FROM region WHERE code = :region "
                     "AND valid_to IS NULL)")
        params["region"] = f.region_code
    if f.since:
        where.append("e.reported_at >= :since")
        params["since"] = f.since
    if f.until:
        where.append("e.reported_at < :until")
        params["until"] = f.until
    if f.q:
        where.append("(e.code = :q OR (e.title || ' ' || e.description || ' ' || "
                     "coalesce(e.address, '')) LIKE :q_like)")
        params.update(q=f.q, q_like="%" + f.q.replace("\\", "\\\\").replace("%", "\\%")
                      .replace("_", "\\_") + "%")
    return where, params


def _order(queue: Queue | None) -> str:
    if queue in (Queue.CLOSED,):
        return "e.closed_at DESC NULLS LAST, e.id DESC"
    if queue in (None, Queue.DONE, Queue.MINE):
        return "e.reported_at DESC, e.id DESC"
    # Work queues: the most urgent deadline first.
    return "e.deadline_at ASC NULLS LAST, e.reported_at ASC, e.id"


def list_events(session: Session, *, actor: Principal, filters: EventFilter | None = None,
                limit: int = 50, offset: int = 0) -> EventPage:
    """Return one page of the events visible to the actor that match the filters."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1..{MAX_PAGE}", field="limit")
    if offset < 0:
        raise InvalidInput("offset must not be negative", field="offset")
    f = filters or EventFilter()
    where, params = _filters(f)
    params.update(_who(session, actor), limit=limit, offset=offset)
    clause = " AND ".join(where) or "true"
    rows = session.execute(text(
        f"{EVENT_SELECT} WHERE {clause} ORDER BY {_order(f.queue)} LIMIT :limit OFFSET :offset"),
        params).mappings().all()
    total = session.execute(text(f"SELECT count(*) FROM event e WHERE {clause}"),
                            params).scalar_one()
    return EventPage(items=[event_public(r) for r in rows], total=int(total))


def queue_counts(session: Session, *, actor: Principal, filters: EventFilter | None = None
                 ) -> dict[str, int]:
    """Return how many events wait in each queue for the actor (other filters applied)."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    f = (filters or EventFilter()).model_copy(update={"queue": None})
    where, params = _filters(f)
    params.update(_who(session, actor))
    clause = " AND ".join(where) or "true"
    columns = ", ".join(f"count(*) FILTER (WHERE {_queue_clause(q)}) AS {q.value}"
                        for q in Queue)
    row = session.execute(text(f"SELECT {columns} FROM event e WHERE {clause}"),
                          params).mappings().one()
    return {q.value: int(row[q.value]) for q in Queue}
