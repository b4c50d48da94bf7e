"""Events (事件): models, intake (上报) and the event detail.

A report is located (a point in its declared crs, a geocoded address, or a region code), placed
in its grid (the nearest one within a tolerance, flagged), routed by rules with the reason
stored, and opened with its history row and accept clock in the caller's transaction. The
lifecycle actions are in ``event_actions``; queues in ``event_queues``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.config import EventSettings
from geoserver.domain.clock import WorkCalendar
from geoserver.domain.documents import DocumentInvalid, mask_phone, normalize_phone
from geoserver.domain.events import (
    ACTION_PERMISSION,
    OPEN_STATES,
    EventAction,
    EventSource,
    EventState,
    Level,
    Severity,
    allowed_actions,
)
from geoserver.domain.principal import Principal
from geoserver.errors import (
    FieldProblem,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from geoserver.geo.crs import parse_input_crs, to_storage
from geoserver.geo.h3cells import cell_int
from geoserver.geo.validate import GeometryProblem, check_lonlat, parse_geojson_geometry
from geoserver.security.crypto import PersonalDataCrypto
from geoserver.services import dberrors, event_clocks, event_types, routing
from geoserver.services import photos as evidence
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.event_clocks import ClockPublic
from geoserver.services.event_types import EffectiveRule
from geoserver.services.holidays import load_calendar
from geoserver.services.photos import PhotoPublic, PhotoStore, PhotoUpload

A, S = EventAction, EventState
PHONE_CONTEXT = "event.reporter_phone"


DEFAULT_SETTINGS = EventSettings()

#: The anonymous public (群众上报): may only report, only through the public channel.
PUBLIC = Principal(user_id=None, username="public", scope=("",),
                   permissions=frozenset({"event.report"}))

# --- models --------------------------------------------------------------------------------------


class EventCreate(BaseModel):
    """A report: a type, a description and where — a point with its ``crs``, or an address
    text (geocoded to a standard address), or only a region code."""

    model_config = ConfigDict(extra="forbid")

    type_code: str = Field(min_length=1, max_length=32)
    severity: Severity = Severity.NORMAL
    source: EventSource = EventSource.PATROL
    title: str | None = Field(default=None, min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=4000)
    location: dict[str, Any] | None = None
    crs: str | None = None
    address: str | None = Field(default=None, min_length=1, max_length=500)
    region_code: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{2,24}$")
    reporter_name: str | None = Field(default=None, max_length=50)
    reporter_phone: str | None = Field(default=None, max_length=30)
    external_ref: str | None = Field(default=None, max_length=100)
    #: 就地解决: a grid worker reports a small matter already settled, with its result.
    resolved_on_spot: bool = False
    result: str | None = Field(default=None, max_length=2000)


class UnitTarget(BaseModel):
    """A handling unit: an org unit (platform, department) or a grid."""

    model_config = ConfigDict(extra="forbid")

    org_unit_code: str | None = None
    grid_code: str | None = None


class ActionIn(BaseModel):
    """What an action carries; each action reads the fields it needs."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = None
    note: str | None = Field(default=None, max_length=2000)
    lead: UnitTarget | None = None
    assisting: list[UnitTarget] = Field(default_factory=list, max_length=10)
    result: str | None = Field(default=None, max_length=2000)
    location: dict[str, Any] | None = None
    crs: str | None = None
    hours: float | None = Field(default=None, gt=0, le=24 * 90)
    to_level: Level | None = None
    into_event_id: int | None = None
    score: int | None = Field(default=None, ge=1, le=5)
    deadline: datetime | None = None

    @field_validator("note", "result")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class UnitPublic(BaseModel):
    """An org unit as shown on an event."""

    code: str
    name: str


class EventPublic(BaseModel):
    """An event as listed."""

    id: int
    code: str
    type_code: str
    type_name: str
    source: str
    severity: str
    state: EventState
    level: str
    title: str
    description: str
    address: str | None
    standard_address_id: int | None
    lon: float | None
    lat: float | None
    path: str
    grid_code: str | None
    township_code: str | None
    centre: UnitPublic | None
    nearest_grid: bool
    snap_distance_m: float | None
    no_rule_matched: bool
    address_not_found: bool
    resolved_on_spot: bool
    supervised: bool
    reminders: int
    reporter_user_id: int | None
    reporter_name: str | None
    reporter_phone_masked: str | None
    merged_into_id: int | None
    evaluation_score: int | None
    reported_at: datetime
    closed_at: datetime | None
    deadline_at: datetime | None
    sla_status: str | None
    version: int


class HistoryEntry(BaseModel):
    """One row of an event's history."""

    id: int
    at: datetime
    action: str
    from_state: str | None
    to_state: str
    actor_user_id: int | None
    actor_name: str | None
    unit_code: str | None
    note: str | None
    data: dict[str, Any]
    event_version: int


class RoutePublic(BaseModel):
    """A routing decision and why it was made."""

    level: str
    target_kind: str
    unit: UnitPublic | None
    grid_code: str | None
    rule_kind: str
    routing_rule_id: int | None
    reason: str
    no_rule_matched: bool
    created_at: datetime


class AssignmentPublic(BaseModel):
    """A unit the event was dispatched to (主办 lead / 协办 assist)."""

    role: str
    unit: UnitPublic | None
    grid_code: str | None
    assigned_at: datetime
    signed_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


class EventDetail(EventPublic):
    """An event with its history, routes, assignments, clocks and what the caller may do."""

    allowed_actions: list[str]
    history: list[HistoryEntry]
    routes: list[RoutePublic]
    assignments: list[AssignmentPublic]
    clocks: list[ClockPublic]
    pending_extension: dict[str, Any] | None
    #: Photos as evidence of the report, the handling and the verification.
    photos: list[PhotoPublic] = Field(default_factory=list)


# --- reading -------------------------------------------------------------------------------------

SLA_EXPR = ("CASE WHEN e.deadline_at IS NULL THEN NULL WHEN now() >= e.deadline_at THEN 'red' "
            "WHEN now() >= e.amber_at THEN 'amber' ELSE 'green' END")

EVENT_SELECT = f"""
SELECT e.id, e.code, t.code AS type_code, t.name AS type_name, e.source, e.severity, e.state,
       e.level, e.title, e.description, e.address, e.standard_address_id,
       ST_X(e.geom) AS lon, ST_Y(e.geom) AS lat, e.path::text AS path, e.grid_code,
       e.township_code, c.code AS centre_code, c.name AS centre_name, e.nearest_grid,
       e.snap_distance_m, e.no_rule_matched, e.address_not_found, e.resolved_on_spot,
       e.supervised, e.reminders, e.reporter_user_id, e.reporter_name, e.reporter_phone_masked,
       e.merged_into_id, e.evaluation_score, e.reported_at, e.closed_at, e.deadline_at,
       {SLA_EXPR} AS sla_status, e.version, e.event_type_id, e.centre_unit_id
FROM event e
JOIN event_type t ON t.id = e.event_type_id
LEFT JOIN LATERAL gridgov_meta.event_org_units(ARRAY[e.centre_unit_id], NULL) c ON true
"""


def event_public(row: Mapping[Any, Any]) -> EventPublic:
    """Build an EventPublic from a row of EVENT_SELECT."""
    data = dict(row)
    code, name = data.pop("centre_code"), data.pop("centre_name")
    data["centre"] = UnitPublic(code=code, name=name) if code else None
    return EventPublic.model_validate(data)


@dataclass
class LoadedEvent:
    """An event row as the services need it."""

    row: Mapping[str, Any]

    @property
    def id(self) -> int:
        """Return the event's id."""
        return int(self.row["id"])

    @property
    def state(self) -> EventState:
        """Return the event's state."""
        return EventState(self.row["state"])

    @property
    def version(self) -> int:
        """Return the event's version (optimistic locking)."""
        return int(self.row["version"])


def load_event(session: Session, event_id: int) -> LoadedEvent:
    """Return an event visible to the caller (RLS), else NotFound."""
    row = session.execute(text(EVENT_SELECT + " WHERE e.id = :i"),
                          {"i": event_id}).mappings().first()
    if row is None:
        raise NotFound(f"no event {event_id}")
    return LoadedEvent(dict(row))


def rule_of(session: Session, row: Mapping[str, Any]) -> EffectiveRule:
    """Return the rule that applies to a loaded event (its type and severity)."""
    chain = event_types.type_chain(session, int(row["event_type_id"]))
    return event_types.rule_for(session, chain, str(row["severity"]))


def _history(session: Session, event_id: int) -> list[HistoryEntry]:
    rows = session.execute(text(
        "SELECT h.id, h.at, h.action, h.from_state, h.to_state, h.actor_user_id, h.actor_name, "
        "u.code AS unit_code, h.note, h.data, h.event_version FROM event_history h "
        "LEFT JOIN LATERAL gridgov_meta.event_org_units(ARRAY[h.unit_id], NULL) u ON true "
        "WHERE h.event_id = :e ORDER BY h.id"), {"e": event_id}).mappings().all()
    return [HistoryEntry.model_validate(dict(r)) for r in rows]


def _unit(code: str | None, name: str | None) -> UnitPublic | None:
    return UnitPublic(code=code, name=name or code) if code else None


def _routes(session: Session, event_id: int) -> list[RoutePublic]:
    rows = session.execute(text(
        "SELECT r.level, r.target_kind, u.code, u.name, r.grid_code, r.rule_kind, "
        "r.routing_rule_id, r.reason, r.no_rule_matched, r.created_at FROM event_route r "
        "LEFT JOIN LATERAL gridgov_meta.event_org_units(ARRAY[r.org_unit_id], NULL) u ON true "
        "WHERE r.event_id = :e ORDER BY r.id"), {"e": event_id}).mappings().all()
    return [RoutePublic(unit=_unit(r["code"], r["name"]), **{
        k: r[k] for k in ("level", "target_kind", "grid_code", "rule_kind", "routing_rule_id",
                          "reason", "no_rule_matched", "created_at")}) for r in rows]


def _assignments(session: Session, event_id: int) -> list[AssignmentPublic]:
    rows = session.execute(text(
        "SELECT a.role, u.code, u.name, a.grid_code, a.assigned_at, a.signed_at, a.ended_at, "
        "a.end_reason FROM event_assignment a "
        "LEFT JOIN LATERAL gridgov_meta.event_org_units(ARRAY[a.org_unit_id], NULL) u ON true "
        "WHERE a.event_id = :e ORDER BY a.id"), {"e": event_id}).mappings().all()
    return [AssignmentPublic(unit=_unit(r["code"], r["name"]), **{
        k: r[k] for k in ("role", "grid_code", "assigned_at", "signed_at", "ended_at",
                          "end_reason")}) for r in rows]


def db_now(session: Session) -> datetime:
    """Return the transaction's time (every row of one action carries the same moment)."""
    return session.execute(text("SELECT now()")).scalar_one()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Fresh:
    """What is known of an event created in this transaction (its detail reads less)."""

    clocks: list[ClockPublic]
    photos: bool


def get_event(session: Session, *, actor: Principal, event_id: int,
              settings: EventSettings = DEFAULT_SETTINGS) -> EventDetail:
    """Return an event with its history, routes ("why"), assignments and live clocks."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    ev = load_event(session, event_id)
    return event_detail(session, actor=actor, ev=ev, rule=rule_of(session, ev.row),
                        calendar=load_calendar(session, office_hours=settings.office),
                        settings=settings)


def event_detail(session: Session, *, actor: Principal, ev: LoadedEvent, rule: EffectiveRule,
                 calendar: WorkCalendar, settings: EventSettings,
                 fresh: Fresh | None = None) -> EventDetail:
    """Build an event's detail; ``fresh`` skips what a just-reported event cannot have yet
    (assignments, extensions; photos unless some came with it) and gives its clocks."""
    if fresh is None:
        clocks = event_clocks.clocks_at(session, event_id=ev.id, rule=rule, calendar=calendar,
                                        at=db_now(session), amber_share=settings.amber_share)
        pending = session.execute(text(
            "SELECT id, phase, seconds / 3600.0 AS hours, reason, requested_at "
            "FROM event_extension WHERE event_id = :e AND decided_at IS NULL"),
            {"e": ev.id}).mappings().first()
        assignments = _assignments(session, ev.id)
    else:
        clocks, pending, assignments = fresh.clocks, None, []
    allowed = [a.value for a in allowed_actions(
        ev.state, verification_required=rule.verification_required)
        if actor.can(ACTION_PERMISSION[a])]
    photos = (evidence.photos_of(session, actor=actor, event_id=ev.id)
              if fresh is None or fresh.photos else [])
    return EventDetail(
        **event_public(ev.row).model_dump(), allowed_actions=allowed,
        history=_history(session, ev.id), routes=_routes(session, ev.id),
        assignments=assignments, clocks=clocks,
        pending_extension=dict(pending) if pending else None, photos=photos)


def clocks_at(session: Session, *, actor: Principal, event_id: int, at: datetime,
              settings: EventSettings = DEFAULT_SETTINGS) -> list[ClockPublic]:
    """Return an event's phase clocks as they stood at a past moment."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    ev = load_event(session, event_id)
    return event_clocks.clocks_at(
        session, event_id=ev.id, rule=rule_of(session, ev.row),
        calendar=load_calendar(session, office_hours=settings.office), at=at,
        amber_share=settings.amber_share)


# --- intake --------------------------------------------------------------------------------------


@dataclass
class _Place:
    """Where a report says the event is."""

    lon: float | None = None
    lat: float | None = None
    path: str | None = None
    grid_code: str | None = None
    standard_address_id: int | None = None
    address_not_found: bool = False


def storage_point_of(location: Mapping[str, Any], crs: str | None, field: str = "location"
                     ) -> tuple[float, float]:
    """Return a GeoJSON Point's lon/lat in storage CRS; the crs is required."""
    if not crs:
        raise InvalidInput("crs is required with a location: WGS84, CGCS2000, GCJ02 or BD09",
                           field="crs")
    try:
        input_crs = parse_input_crs(crs)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="crs") from None
    try:
        geom = parse_geojson_geometry(location, field=field)
        if geom.geom_type != "Point" or geom.is_empty:
            raise GeometryProblem(field, f"expected a Point, got {geom.geom_type}")
        check_lonlat(geom.x, geom.y, field=field)
    except GeometryProblem as exc:
        raise InvalidInput(exc.reason, field=exc.field) from None
    x, y = to_storage(geom.x, geom.y, input_crs)
    return float(x), float(y)


def _geocode(session: Session, address: str) -> tuple[float, float, int] | None:
    """Return the best standard address for a text (lon, lat, id), if geocoding exists."""
    try:
        from geoserver.services.geocode import geocode
    except ImportError:  # the address module is optional for the event center
        return None
    hits = geocode(session, text=address, limit=1)
    return (hits[0].lon, hits[0].lat, int(hits[0].address.id)) if hits else None


def _region(session: Session, actor: Principal, code: str) -> tuple[str, str]:
    """Return a region's path and level; it must exist and lie in the actor's scope."""
    row = session.execute(text("SELECT path::text, level::text FROM region WHERE code = :c "
                               "AND valid_to IS NULL"), {"c": code}).first()
    if row is None or not actor.covers(row[0]):
        raise InvalidInput(f"no region {code} in your jurisdiction", field="region_code")
    return str(row[0]), str(row[1])


def _place(session: Session, actor: Principal, data: EventCreate,
           settings: EventSettings) -> _Place:
    """Resolve the report's location to a grid, an address or a region."""
    place = _Place()
    if data.location is not None:
        place.lon, place.lat = storage_point_of(data.location, data.crs)
    elif data.address:
        hit = _geocode(session, data.address)
        if hit is None:
            place.address_not_found = True
        else:
            place.lon, place.lat, place.standard_address_id = hit
    if place.lon is not None and place.lat is not None:
        grid = session.execute(text(
            "SELECT code, path::text AS path, distance_m FROM gridgov_meta.event_grid_for("
            "ST_SetSRID(ST_Point(:x, :y), 4490))"), {"x": place.lon, "y": place.lat}).first()
        if grid is None or grid.distance_m > settings.snap_tolerance_m:
            far = f"{grid.distance_m:.0f} m" if grid else "far"
            raise InvalidInput(f"the location lies {far} from the nearest grid (at most "
                               f"{settings.snap_tolerance_m:.0f} m allowed)", field="location")
        place.path, place.grid_code = grid.path, grid.code
        return place
    if data.region_code:
        place.path, level = _region(session, actor, data.region_code)
        place.grid_code = data.region_code if level == "grid" else None
        return place
    if place.address_not_found:
        # Kept for manual location at the top of the reporter's jurisdiction (flagged).
        place.path = _fallback_path(session, actor)
        return place
    raise InvalidInput("give a location (with crs), an address or a region_code",
                       field="location")


def _fallback_path(session: Session, actor: Principal) -> str:
    own = [p for p in actor.scope if p]
    if own:
        return sorted(own, key=len)[0]
    row = session.execute(text("SELECT path::text FROM region WHERE level = 'city' "
                               "AND valid_to IS NULL ORDER BY code LIMIT 1")).first()
    if row is None:
        raise InvalidInput("no region exists to hold the event", field="region_code")
    return str(row[0])


def _normal_phone(raw: str) -> str:
    """Return a reporter's phone in normal form, or InvalidInput naming reporter_phone."""
    try:
        return normalize_phone(raw)
    except DocumentInvalid as exc:
        raise InvalidInput(exc.reason, field="reporter_phone") from None


def _phone(crypto: PersonalDataCrypto, phone: str | None) -> dict[str, Any]:
    if not phone:
        return {"pe": None, "ph": None, "pm": None}
    normal = _normal_phone(phone)
    return {"pe": crypto.encrypt(normal, context=PHONE_CONTEXT),
            "ph": crypto.blind_index(normal), "pm": mask_phone(normal)}


def _active_type(session: Session, code: str) -> tuple[int, list[int], dict[int, str]]:
    """Return an active type's id, its chain (sub-type first) and the chain's names."""
    rows = session.execute(text(
        "WITH RECURSIVE up AS (SELECT id, parent_id, name, active, 0 AS n FROM event_type "
        "WHERE code = :c UNION ALL SELECT e.id, e.parent_id, e.name, e.active, up.n + 1 "
        "FROM event_type e JOIN up ON e.id = up.parent_id WHERE up.n < 10) "
        "SELECT id, name, active FROM up ORDER BY n"), {"c": code}).all()
    if not rows or not rows[0].active:
        raise InvalidInput(f"unknown event type {code!r}", field="type_code")
    return int(rows[0].id), [int(r.id) for r in rows], {int(r.id): str(r.name) for r in rows}


def type_names(session: Session, ids: list[int]) -> dict[int, str]:
    """Return the names of event types by id."""
    rows = session.execute(text("SELECT id, name FROM event_type WHERE id = ANY(:c)"),
                           {"c": ids}).all()
    return {int(r.id): str(r.name) for r in rows}


_INSERT = """
INSERT INTO event (id, code, event_type_id, source, severity, state, level, centre_unit_id,
    title, description, address, standard_address_id, geom, path, grid_code, township_code,
    h3_r7, h3_r8, h3_r9, no_rule_matched, address_not_found, reporter_user_id, reporter_name,
    reporter_phone_enc, reporter_phone_hash, reporter_phone_masked, external_ref, reported_at,
    deadline_at, amber_at)
VALUES (:id, :code, :t, :src, :sev, 'reported', :lvl, :centre, :title, :descr, :addr, :said,
    CASE WHEN CAST(:x AS float8) IS NULL THEN NULL
         ELSE ST_SetSRID(ST_Point(:x, :y), 4490) END,
    CAST(:path AS ltree), :grid, :township, :h7, :h8, :h9, :norule, :nf, :uid, :rname, :pe, :ph,
    :pm, :ext, :at, :deadline, :amber)
RETURNING path::text AS path
"""


def report_event(session: Session, *, actor: Principal, data: EventCreate | Mapping[str, Any],
                 crypto: PersonalDataCrypto, settings: EventSettings = DEFAULT_SETTINGS,
                 context: AuditContext = NO_CONTEXT, at: datetime | None = None,
                 photos: Sequence[bytes] = (), photo_store: PhotoStore | None = None
                 ) -> EventDetail:
    """Take in a report: locate it, route it, open its accept clock (上报); keep its photos.

    Raises:
        PermissionDenied: the actor may not report.
        InvalidInput: unknown type, missing or unknown crs, a point beyond the grid tolerance,
            a region outside the actor's scope, a bad phone; ``resolved_on_spot`` where the
            rule or the reporter's grid does not allow it; a photo that is not an image.
        TooLarge: a photo or a photo quota over its limit.
    """
    if not actor.can("event.report"):
        raise PermissionDenied("reporting events needs the permission event.report")
    report: EventCreate = validated(EventCreate, data)
    uploads = checked_photos(photos, photo_store)
    type_id, chain, names = _active_type(session, report.type_code)
    place = _place(session, actor, report, settings)
    assert place.path is not None
    if not actor.covers(place.path):
        raise InvalidInput("the location lies outside your jurisdiction", field="location")
    regions = routing.regions_above(session, place.path)
    township = routing.level_region(regions, Level.TOWNSHIP)
    level = Level.TOWNSHIP if township else Level.COUNTY
    rule = event_types.rule_for(session, chain, report.severity.value)
    decision = routing.decide(session, type_chain=chain, type_names=names,
                              severity=report.severity.value, path=place.path,
                              grid_code=place.grid_code, level=level, rule=rule, regions=regions)
    # An unmatched route already stays with the command centre at this level.
    centre = (decision.unit if decision.rule_kind == "none"
              else routing.centre_for(session, place.path, level))
    # The id, the moment and the insert trigger's snap tolerance in one round trip.
    ids = session.execute(text(
        "SELECT nextval('event_id_seq') AS id, now() AS at, "
        "set_config('gridgov.event_snap_m', :m, true)"),
        {"m": str(settings.snap_tolerance_m)}).one()
    event_id, at = int(ids.id), at or ids.at
    # The accept clock opens with the report; its deadline goes into the event row at once.
    calendar = load_calendar(session, office_hours=settings.office)
    clocks = event_clocks.opening(rule=rule, calendar=calendar, at=at,
                                  amber_share=settings.amber_share)
    running = event_clocks.running_clock(clocks)
    params = {
        "id": event_id, "code": f"E{at:%Y%m%d}{event_id:06d}", "t": type_id,
        "src": report.source.value, "sev": report.severity.value, "lvl": level.value,
        "centre": centre.id if centre else None,
        "title": report.title or f"{names[type_id]}: {report.description[:40]}",
        "descr": report.description, "addr": report.address, "said": place.standard_address_id,
        "x": place.lon, "y": place.lat, "path": place.path, "grid": place.grid_code,
        "township": township.code if township else None, "norule": decision.no_rule_matched,
        "nf": place.address_not_found, "uid": actor.user_id, "rname": report.reporter_name,
        "ext": report.external_ref, "at": at, **_cells(place),
        "deadline": running.deadline if running else None,
        "amber": running.amber_at if running else None,
        **_phone(crypto, report.reporter_phone)}
    try:  # (a failed insert fails the request: its transaction rolls back whole)
        session.execute(text(_INSERT), params)
    except DBAPIError as exc:
        raise dberrors.translate(exc) from None
    routing.store(session, event_id=event_id, decision=decision)
    write_history(session, event_id=event_id, action=A.REPORT, from_state=None,
                   to_state=S.REPORTED, actor=actor, unit_id=None, note=None,
                   data={"source": report.source.value, "route": decision.reason}, version=1, at=at)
    audit(session, actor=actor, action="event.report", object_kind="event",
          object_id=str(event_id), after={"type": report.type_code, "path": place.path,
                                          "source": report.source.value}, context=context)
    if uploads and photo_store is not None:
        evidence.attach(session, actor=actor, event_id=event_id, stage=A.REPORT.value,
                        uploads=uploads, store=photo_store)
    if report.resolved_on_spot:
        return _resolve_on_spot(session, actor=actor, event_id=event_id, data=report,
                                settings=settings, context=context, at=at)
    event_clocks.write(session, event_id=event_id, states=clocks, rule=rule, calendar=calendar)
    return event_detail(session, actor=reader_of(actor), ev=load_event(session, event_id),
                        rule=rule, calendar=calendar, settings=settings,
                        fresh=Fresh(clocks=[event_clocks.public(c) for c in clocks],
                                    photos=bool(uploads)))


def _cells(place: _Place) -> dict[str, int | None]:
    if place.lon is None or place.lat is None:
        return {"h7": None, "h8": None, "h9": None}
    return {f"h{r}": cell_int(place.lon, place.lat, r) for r in (7, 8, 9)}


def _public_phone(raw: str | None) -> str:
    if not raw:
        raise InvalidInput("a phone number is required for public reports",
                           field="reporter_phone")
    normal = _normal_phone(raw)
    if "-" in normal:  # a landline: the public channel calls back on a mobile
        raise InvalidInput("public reports need a mainland mobile number (11 digits)",
                           field="reporter_phone")
    return normal


_PUBLIC_LIMITS = (("ip", "ip_hash", "public_reports_per_ip_per_hour", "this network address"),
                  ("ph", "phone_hash", "public_reports_per_phone_per_hour", "this phone number"))


def _rate_limit(session: Session, keys: Mapping[str, bytes | None],
                settings: EventSettings) -> None:
    """Refuse a public report over the hourly limits, saying when to retry (sliding hour)."""
    for key, column, limit_name, what in _PUBLIC_LIMITS:
        if keys[key] is None:
            continue
        # One IP's (one phone's) reports queue here, so two at once cannot both slip under.
        session.execute(text("SELECT pg_advisory_xact_lock(75002, hashtext(encode(:h, 'hex')))"),
                        {"h": keys[key]})
        limit = int(getattr(settings, limit_name))
        wait = session.execute(text(
            f"SELECT ceil(extract(epoch FROM at + interval '1 hour' - now()))::int "
            f"FROM event_public_report WHERE {column} = :h AND at > now() - interval '1 hour' "
            "ORDER BY at DESC OFFSET :n LIMIT 1"), {"h": keys[key], "n": limit - 1}).scalar()
        if wait is not None:
            raise RateLimited(f"at most {limit} public reports an hour from {what}; retry in "
                              f"{max(1, wait)} s", retry_after=max(1, int(wait)))


def report_public(session: Session, *, data: EventCreate | Mapping[str, Any],
                  crypto: PersonalDataCrypto, ip: str | None,
                  settings: EventSettings = DEFAULT_SETTINGS,
                  context: AuditContext = NO_CONTEXT) -> EventDetail:
    """Take in an anonymous public report (群众上报), limited per IP and per phone each hour.

    The phone number (a mainland mobile) is required and stored encrypted, with a blind index
    and a masked form, like every phone number; the IP is kept only as a keyed hash.

    Raises:
        InvalidInput: no phone, not a mainland mobile, and what ``report_event`` refuses.
        RateLimited: too many reports from this IP address or for this phone in the last hour.
    """
    report: EventCreate = validated(EventCreate, data)
    phone = _public_phone(report.reporter_phone)
    keys = {"ip": crypto.blind_index(f"ip:{ip}") if ip else None,
            "ph": crypto.blind_index(phone)}
    _rate_limit(session, keys, settings)
    public = report.model_copy(update={"source": EventSource.PUBLIC, "resolved_on_spot": False,
                                       "reporter_phone": phone})
    detail = report_event(session, actor=PUBLIC, data=public, crypto=crypto, settings=settings,
                          context=context)
    session.execute(text("INSERT INTO event_public_report (event_id, ip_hash, phone_hash) "
                         "VALUES (:e, :ip, :ph)"), {"e": detail.id, **keys})
    return detail


def checked_photos(files: Sequence[bytes], store: PhotoStore | None) -> list[PhotoUpload]:
    """Check a request's photos before anything is written (bad ones fail the request)."""
    if not files:
        return []
    if store is None:
        raise TypeError("photos need a photo_store")
    return store.prepare_all(files)


def reader_of(actor: Principal) -> Principal:
    """Let a reporter without event.read (the public channel) get back what they created."""
    if actor.can("event.read"):
        return actor
    return Principal(user_id=actor.user_id, username=actor.username, scope=actor.scope,
                     permissions=actor.permissions | {"event.read"})


def _resolve_on_spot(session: Session, *, actor: Principal, event_id: int, data: EventCreate,
                     settings: EventSettings, context: AuditContext,
                     at: datetime) -> EventDetail:
    # Imported here: event_actions builds on this module (loading, history, points).
    from geoserver.services.event_actions import act

    return act(session, actor=actor, event_id=event_id, action=A.RESOLVE_ON_SPOT,
               data=ActionIn(version=1, result=data.result, note=data.result),
               settings=settings, context=context, at=at)


def validated(model: type[Any], data: Any) -> Any:
    """Return ``data`` as ``model``, turning validation errors into InvalidInput."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [FieldProblem(".".join(str(p) for p in err["loc"]) or "body", err["msg"])
                    for err in exc.errors()]
        raise InvalidInput(problems[0].message, problems=problems) from None


def write_history(session: Session, *, event_id: int, action: str,
                   from_state: EventState | None, to_state: EventState, actor: Principal,
                   unit_id: int | None, note: str | None, data: Mapping[str, Any],
                   version: int, at: datetime) -> None:
    """Append one history row (append-only; the path comes from the event in a trigger)."""
    session.execute(text(
        "INSERT INTO event_history (event_id, at, action, from_state, to_state, actor_user_id, "
        "actor_name, unit_id, note, data, event_version) VALUES (:e, :at, :a, :f, :t, :u, :n, "
        ":unit, :note, CAST(:d AS jsonb), :v)"),
        {"e": event_id, "at": at, "a": str(action), "f": from_state.value if from_state else None,
         "t": to_state.value, "u": actor.user_id, "n": actor.username, "unit": unit_id,
         "note": note, "d": json.dumps(dict(data), ensure_ascii=False, default=str), "v": version})


def sync_clocks(session: Session, event_id: int, rule: EffectiveRule, settings: EventSettings,
                at: datetime) -> WorkCalendar:
    """Recompute the event's clock cache from its history as of ``at``; return the calendar."""
    calendar = load_calendar(session, office_hours=settings.office)
    event_clocks.sync(session, event_id=event_id, rule=rule, calendar=calendar, now=at,
                      amber_share=settings.amber_share)
    return calendar


# --- duplicates ----------------------------------------------------------------------------------


class DuplicateCandidate(BaseModel):
    """An open event that may report the same matter (same kind, near in space and time)."""

    id: int
    code: str
    type_code: str
    state: EventState
    distance_m: float
    hours_apart: float


_DUPLICATES = """
WITH me AS (SELECT id, geom, reported_at, event_type_id FROM event WHERE id = :e),
kind AS (
    -- Same top-level type: a 消防通道堵塞 and a 电动车违规充电 at one door are one visit.
    WITH RECURSIVE up AS (SELECT id, parent_id FROM event_type
                          WHERE id = (SELECT event_type_id FROM me)
                          UNION ALL SELECT t.id, t.parent_id FROM event_type t
                          JOIN up ON t.id = up.parent_id),
    top AS (SELECT id FROM up WHERE parent_id IS NULL),
    down AS (SELECT id FROM top UNION ALL SELECT t.id FROM event_type t
             JOIN down ON t.parent_id = down.id)
    SELECT id FROM down
)
SELECT o.id, o.code, t.code AS type_code, o.state,
       ST_Distance(o.geom::geography, me.geom::geography) AS distance_m,
       abs(extract(epoch FROM o.reported_at - me.reported_at)) / 3600.0 AS hours_apart
FROM me, event o JOIN event_type t ON t.id = o.event_type_id
WHERE o.id <> me.id AND o.state = ANY(:open) AND o.event_type_id IN (SELECT id FROM kind)
  AND o.geom && gridgov_meta.event_expand_metres(me.geom, :r)
  AND ST_DWithin(o.geom::geography, me.geom::geography, :r)
  AND o.reported_at BETWEEN me.reported_at - make_interval(secs => :h * 3600.0)
                        AND me.reported_at + make_interval(secs => :h * 3600.0)
ORDER BY distance_m, hours_apart, o.id
LIMIT 10
"""


def find_duplicates(session: Session, *, actor: Principal, event_id: int,
                    radius_m: float = 100.0, hours: float = 72.0) -> list[DuplicateCandidate]:
    """Return open events of the same kind within ``radius_m`` and ``hours`` (疑似重复)."""
    if not actor.can("event.read"):
        raise PermissionDenied("reading events needs the permission event.read")
    if not (0 < radius_m <= 2000 and 0 < hours <= 24 * 30):
        raise InvalidInput("radius_m must be in (0, 2000] and hours in (0, 720]",
                           field="radius_m")
    ev = load_event(session, event_id)
    if ev.row["lon"] is None:
        return []
    open_states = sorted(s.value for s in OPEN_STATES)
    rows = session.execute(text(_DUPLICATES), {"e": ev.id, "r": radius_m, "h": hours,
                                               "open": open_states}).mappings().all()
    return [DuplicateCandidate.model_validate(dict(r)) for r in rows]
