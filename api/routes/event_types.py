"""Event configuration (业务规则管理): types and their rules, routing rules, the holiday calendar.

Four routers: ``router`` (/api/v1/event-types), ``routing_router`` (/api/v1/routing-rules),
``holiday_router`` (/api/v1/holidays) and ``unit_router`` (/api/v1/dispatch-units).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from api.deps import AuditContextDep, SessionDep, require
from geoserver.domain.events import Severity
from geoserver.domain.principal import Principal
from geoserver.services import event_types, holidays, users
from geoserver.services.event_types import (
    EventRuleIn,
    EventRulePublic,
    EventTypeCreate,
    EventTypePublic,
    EventTypeUpdate,
    RoutingRuleIn,
    RoutingRulePublic,
)
from geoserver.services.holidays import HolidayIn, HolidayPublic

router = APIRouter(prefix="/api/v1/event-types", tags=["event types"])
routing_router = APIRouter(prefix="/api/v1/routing-rules", tags=["event types"])
holiday_router = APIRouter(prefix="/api/v1/holidays", tags=["event types"])
unit_router = APIRouter(prefix="/api/v1/dispatch-units", tags=["events"])

Reader = Annotated[Principal, Depends(require("event.read"))]
Admin = Annotated[Principal, Depends(require("event.admin"))]
Dispatcher = Annotated[Principal, Depends(require("event.dispatch"))]


class Reorder(BaseModel):
    """All sub-types of one parent (None: the top level), in their new order."""

    parent_code: str | None = None
    codes: list[str] = Field(min_length=1, max_length=200)


class HolidaySet(BaseModel):
    """Whether a date is worked, and its name."""

    is_workday: bool
    name: str = Field(default="", max_length=40)


class Deleted(BaseModel):
    """Whether a type was deleted (unused) or retired (events use it)."""

    deleted: bool


@router.get("", response_model=list[EventTypePublic])
def list_types(session: SessionDep, user: Reader,
               include_inactive: bool = False) -> list[EventTypePublic]:
    """Return the type tree flattened in display order (parents before their sub-types)."""
    return event_types.list_types(session, include_inactive=include_inactive)


@router.post("", status_code=201, response_model=EventTypePublic)
def create_type(body: EventTypeCreate, session: SessionDep, user: Admin,
                context: AuditContextDep) -> EventTypePublic:
    """Create an event type or sub-type."""
    return event_types.create_type(session, actor=user, data=body, context=context)


@router.post("/initialize", response_model=dict[str, int])
def initialize(session: SessionDep, user: Admin, context: AuditContextDep) -> dict[str, int]:
    """Load the default catalogue (矛盾纠纷, 安全隐患, 消防隐患 …) and its rules; keeps existing."""
    return event_types.initialize_catalogue(session, actor=user, context=context)


@router.post("/reorder", response_model=list[EventTypePublic])
def reorder(body: Reorder, session: SessionDep, user: Admin,
            context: AuditContextDep) -> list[EventTypePublic]:
    """Set the display order of one parent's sub-types."""
    return event_types.reorder_types(session, actor=user, parent_code=body.parent_code,
                                     codes=body.codes, context=context)


@router.get("/{code}", response_model=EventTypePublic, responses={404: {}})
def get_type(code: str, session: SessionDep, user: Reader) -> EventTypePublic:
    """Return one event type."""
    return event_types.get_type(session, code=code)


@router.patch("/{code}", response_model=EventTypePublic, responses={404: {}, 409: {}})
def update_type(code: str, body: EventTypeUpdate, session: SessionDep, user: Admin,
                context: AuditContextDep) -> EventTypePublic:
    """Change a type (name, provincial code, description, active); send the version seen."""
    return event_types.update_type(session, actor=user, code=code, data=body, context=context)


@router.delete("/{code}", response_model=Deleted, responses={404: {}, 409: {}})
def delete_type(code: str, version: int, session: SessionDep, user: Admin,
                context: AuditContextDep) -> Deleted:
    """Delete an unused type; a type events use is retired (inactive) instead."""
    deleted = event_types.delete_type(session, actor=user, code=code, version=version,
                                      context=context)
    return Deleted(deleted=deleted)


@router.get("/{code}/rules", response_model=list[EventRulePublic])
def list_rules(code: str, session: SessionDep, user: Reader) -> list[EventRulePublic]:
    """Return a type's own rules per severity (sub-types without one use their parent's)."""
    return event_types.list_rules(session, code=code)


@router.put("/{code}/rules/{severity}", response_model=EventRulePublic)
def set_rule(code: str, severity: Severity, body: EventRuleIn, session: SessionDep,
             user: Admin, context: AuditContextDep) -> EventRulePublic:
    """Create or replace the rule (time limits per phase …) for one type × severity."""
    return event_types.set_rule(session, actor=user, code=code, severity=severity, data=body,
                                context=context)


@routing_router.get("", response_model=list[RoutingRulePublic])
def list_routing_rules(session: SessionDep, user: Reader,
                       region_code: str | None = None) -> list[RoutingRulePublic]:
    """Return the routing rules in the caller's jurisdiction (under a region, if given)."""
    return event_types.list_routing_rules(session, region_code=region_code)


@routing_router.post("", status_code=201, response_model=RoutingRulePublic)
def create_routing_rule(body: RoutingRuleIn, session: SessionDep, user: Admin,
                        context: AuditContextDep) -> RoutingRulePublic:
    """Add a routing rule: type × severity × region × level → unit (or the event's grid)."""
    return event_types.create_routing_rule(session, actor=user, data=body, context=context)


@routing_router.delete("/{rule_id}", status_code=204, responses={404: {}, 409: {}})
def delete_routing_rule(rule_id: int, version: int, session: SessionDep, user: Admin,
                        context: AuditContextDep) -> Response:
    """Delete a routing rule."""
    event_types.delete_routing_rule(session, actor=user, rule_id=rule_id, version=version,
                                    context=context)
    return Response(status_code=204)


@holiday_router.get("", response_model=list[HolidayPublic])
def list_holidays(session: SessionDep, user: Reader,
                  year: Annotated[int, Query(ge=1990, le=2200)]) -> list[HolidayPublic]:
    """Return one year's holidays and 调休 working days."""
    return holidays.list_holidays(session, year=year)


@holiday_router.put("/{day}", response_model=HolidayPublic)
def set_holiday(day: date, body: HolidaySet, session: SessionDep, user: Admin,
                context: AuditContextDep) -> HolidayPublic:
    """Add or change one calendar date (a holiday, or a 调休 working weekend day)."""
    data = HolidayIn(day=day, is_workday=body.is_workday, name=body.name)
    return holidays.set_holiday(session, actor=user, data=data, context=context)


@holiday_router.delete("/{day}", status_code=204, responses={404: {}})
def delete_holiday(day: date, session: SessionDep, user: Admin,
                   context: AuditContextDep) -> Response:
    """Remove one calendar date (it follows the weekday rule again)."""
    holidays.delete_holiday(session, actor=user, day=day, context=context)
    return Response(status_code=204)


class DispatchUnit(BaseModel):
    """A township platform or department an event may be dispatched to."""

    code: str
    name: str
    kind: str
    region_code: str | None


@unit_router.get("", response_model=list[DispatchUnit], responses={404: {}})
def list_dispatch_units(session: SessionDep, user: Dispatcher,
                        region_code: Annotated[str, Query(pattern=r"^\d{6,15}$")]
                        ) -> list[dict[str, object]]:
    """List the units an event in this region may go to: its township's and those above."""
    return users.dispatch_units(session, actor=user, region_code=region_code)
