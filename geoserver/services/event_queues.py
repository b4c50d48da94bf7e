"""Work queues of events per role (待受理, 待签收, 待办理, 待核查, 已办理, 已办结 …) with
filters and counts.

Row-level security limits every queue to the caller's jurisdiction; on top of that a queue
holds the events waiting for the caller's units: the command centre holding an event for
dispatcher queues, the lead unit (or lead grid) for handler queues. A caller who acts for no
unit and no grid (an administrator, the system) sees every event of the queue's states.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ
from geoserver.database.engine import scope_literal
from geoserver.domain.events import QUEUE_STATES, EventSource, EventState, Queue
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, PermissionDenied
from geoserver.services import routing
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.events import EVENT_SELECT, EventPublic, event_public

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


_CODE = re.compile(r"^[A-Z][0-9]{8}[0-9A-Z-]*$")
#: SLA_EXPR = colour, rewritten as ranges on the deadlines so an index can serve them.
_SLA_WHERE = {
    "red": "e.deadline_at <= now()",
    "amber": "(e.deadline_at > now() AND e.amber_at <= now())",
    "green": "(e.deadline_at > now() AND (e.amber_at IS NULL OR e.amber_at > now()))",
}
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
            "all": not units and not grids, "scope": scope_literal(actor.scope)}


def _where(session: Session, actor: Principal, f: EventFilter) -> tuple[str, dict[str, Any]]:
    """Return the WHERE clause and its parameters for the actor and the filters."""
    where, params = _filters(f)
    # Row-level security says the same; stated with the scope as a constant, the planner
    # sees how few rows a township has (the policy's subquery looks like half the table).
    where.append("e.path <@ ANY(CAST(:scope AS ltree[]))")
    params.update(_who(session, actor))
    return " AND ".join(where), params


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
        where.append(_SLA_WHERE[f.sla])
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
    if f.q and _CODE.match(f.q):
        # An event code (E20261129000123): the unique index answers, no text scan needed.
        where.append("e.code = :q")
        params["q"] = f.q
    elif f.q:
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
    clause, params = _where(session, actor, f)
    params.update(limit=limit, offset=offset)
    # The page's ids first, from the event table alone (an index walk for the work queues),
    # then the page's rows with their type and centre: joins for 50 rows, not for all.
    order = _order(f.queue)
    rows = session.execute(text(
        f"{EVENT_SELECT} WHERE e.id IN (SELECT e.id FROM event e WHERE {clause} "
        f"ORDER BY {order} LIMIT :limit OFFSET :offset) ORDER BY {order}"),
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
    clause, params = _where(session, actor, f)
    columns = ", ".join(f"count(*) FILTER (WHERE {_queue_clause(q)}) AS {q.value}"
                        for q in Queue)
    row = session.execute(text(f"SELECT {columns} FROM event e WHERE {clause}"),
                          params).mappings().one()
    return {q.value: int(row[q.value]) for q in Queue}


# --- export --------------------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "xlsx", "geojson")
#: Columns of an exported event list (导出), in order; the phone number is masked.
EXPORT_COLUMNS = (
    "code", "type_code", "type_name", "source", "severity", "state", "level", "sla_status",
    "title", "description", "address", "lon", "lat", "grid_code", "township_code", "centre",
    "reported_at", "deadline_at", "closed_at", "reporter_name", "reporter_phone_masked",
    "resolved_on_spot", "supervised", "reminders", "no_rule_matched", "nearest_grid",
    "address_not_found", "evaluation_score")


def _count(session: Session, actor: Principal, f: EventFilter) -> int:
    clause, params = _where(session, actor, f)
    return int(session.execute(text(f"SELECT count(*) FROM event e WHERE {clause}"),
                               params).scalar_one())


def start_export(session: Session, *, actor: Principal, filters: EventFilter, fmt: str,
                 max_rows: int, context: AuditContext = NO_CONTEXT) -> int:
    """Check and audit an export of the events matching the filters; return how many match.

    Raises:
        PermissionDenied: the actor lacks event.read or export.
        InvalidInput: an unknown format, or more than ``max_rows`` events match.
    """
    for permission in ("event.read", "export"):
        if not actor.can(permission):
            raise PermissionDenied(f"exporting events needs the permission {permission}")
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(EXPORT_FORMATS)}", field="format")
    total = _count(session, actor, filters)
    if total > max_rows:
        raise InvalidInput(f"{total} events match, an export holds at most {max_rows}: narrow "
                           "the filters (since, until, region_code …)", field="since")
    audit(session, actor=actor, action="export", object_kind="event", context=context,
          detail={"format": fmt, "rows": total,
                  "filters": filters.model_dump(mode="json", exclude_defaults=True)})
    return total


def iter_events(session: Session, *, actor: Principal, filters: EventFilter,
                max_rows: int) -> Iterator[dict[str, Any]]:
    """Stream the events matching the filters in the list's order, for exports."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    clause, params = _where(session, actor, filters)
    params["cap"] = max_rows
    result = session.execute(text(
        f"{EVENT_SELECT} WHERE {clause} ORDER BY {_order(filters.queue)} LIMIT :cap"),
        params, execution_options={"yield_per": 1000}).mappings()
    try:
        for row in result:
            event = event_public(row)
            out = event.model_dump()
            out["centre"] = event.centre.name if event.centre else None
            out["geometry"] = ({"type": "Point", "coordinates": [event.lon, event.lat]}
                               if event.lon is not None else None)
            yield out
    finally:
        result.close()
