"""Routing an event to the unit that should handle it (路由), with the reason stored.

Location → grid (PostGIS, in the event's own location trigger) → the region chain above it →
routing rules (type × region × level → unit) → a decision: the rule that chose a unit, else the
type's default township platform, else the command centre itself, flagged "no rule matched" —
never dropped. Rules and units above the caller's scope are read through SECURITY DEFINER
lookups: a grid worker's report is routed by the county's rules to a township platform.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.event_routing import RuleCandidate, choose_rule, describe_rule
from geoserver.domain.events import Level
from geoserver.services.event_types import EffectiveRule


@dataclass(frozen=True)
class RegionRef:
    """A region on an event's chain."""

    region_id: int
    code: str
    name: str
    level: str
    path: str


@dataclass(frozen=True)
class UnitRef:
    """An org unit: a command centre, a township platform or a department."""

    id: int
    code: str
    name: str
    kind: str
    region_code: str
    path: str


@dataclass(frozen=True)
class RouteDecision:
    """Where an event should go at one level, and why."""

    level: Level
    target_kind: str
    unit: UnitRef | None
    grid_code: str | None
    rule_kind: str
    routing_rule_id: int | None
    event_rule_id: int | None
    reason: str
    no_rule_matched: bool


def regions_above(session: Session, path: str) -> list[RegionRef]:
    """Return the current regions on a path, top first (whatever the caller's scope)."""
    rows = session.execute(text(
        "SELECT region_id, code, name, level, path::text AS path "
        "FROM gridgov_meta.event_regions_above(CAST(:p AS ltree))"), {"p": path}).all()
    return [RegionRef(r.region_id, r.code, r.name, r.level, r.path) for r in rows]


def units(session: Session, *, ids: Sequence[int] = (), codes: Sequence[str] = ()
          ) -> list[UnitRef]:
    """Return org units by id or code (whatever the caller's scope)."""
    rows = session.execute(text(
        "SELECT id, code, name, kind, region_code, path::text AS path "
        "FROM gridgov_meta.event_org_units(:ids, :codes)"),
        {"ids": list(ids), "codes": list(codes)}).all()
    return [UnitRef(r.id, r.code, r.name, r.kind, r.region_code, r.path) for r in rows]


def centre_for(session: Session, path: str, level: Level) -> UnitRef | None:
    """Return the command centre (指挥室) at ``level`` above ``path``."""
    r = session.execute(text(
        "SELECT u.id, u.code, u.name, u.kind, u.region_code, u.path::text AS path "
        "FROM gridgov_meta.event_centre_for(CAST(:p AS ltree), :l) c "
        "CROSS JOIN LATERAL gridgov_meta.event_org_units(ARRAY[c.id], NULL) u"),
        {"p": path, "l": level.value}).first()
    return None if r is None else UnitRef(r.id, r.code, r.name, r.kind, r.region_code, r.path)


def units_of(session: Session, user_id: int | None) -> frozenset[int]:
    """Return the ids of the org units a user acts for (assignments, command centre staff)."""
    if user_id is None:
        return frozenset()
    rows = session.execute(text("SELECT org_unit_id FROM gridgov_meta.event_units_of(:u)"),
                           {"u": user_id}).scalars().all()
    return frozenset(int(r) for r in rows)


def level_region(chain: Sequence[RegionRef], level: Level) -> RegionRef | None:
    """Return the region of ``level`` on the chain, if any."""
    return next((r for r in chain if r.level == level.value), None)


def _candidates(session: Session, type_chain: Sequence[int], severity: str, path: str,
                level: Level) -> list[RuleCandidate]:
    rows = session.execute(text(
        "SELECT * FROM gridgov_meta.event_routing_rules(:t, :s, CAST(:p AS ltree), :l)"),
        {"t": list(type_chain), "s": severity, "p": path, "l": level.value}).all()
    return [RuleCandidate(r.rule_id, r.event_type_id, r.severity, r.region_code,
                          r.region_depth, r.target_kind, r.org_unit_id, r.unit_code,
                          r.unit_name, r.priority) for r in rows]


def decide(session: Session, *, type_chain: Sequence[int], type_names: Mapping[int, str],
           severity: str, path: str, grid_code: str | None, level: Level,
           rule: EffectiveRule, regions: Sequence[RegionRef] | None = None) -> RouteDecision:
    """Return where an event at ``path`` goes when routed at ``level``, and why.

    ``regions`` is ``regions_above(path)`` when the caller has it already.
    """
    candidates = [c for c in _candidates(session, type_chain, severity, path, level)
                  if c.target_kind == "unit" or grid_code]
    chosen = choose_rule(candidates, type_chain)
    if chosen is not None:
        unit = units(session, ids=[chosen.org_unit_id])[0] if chosen.org_unit_id else None
        return RouteDecision(level, chosen.target_kind, unit,
                             grid_code if chosen.target_kind == "grid" else None,
                             "routing_rule", chosen.rule_id, rule.rule_id,
                             describe_rule(chosen, dict(type_names), level.value), False)
    chain = regions if regions is not None else regions_above(session, path)
    township = level_region(chain, Level.TOWNSHIP)
    if level is Level.TOWNSHIP and township is not None and rule.default_platform:
        found = units(session, codes=[f"{rule.default_platform}{township.code}"])
        if found:
            name = type_names.get(type_chain[0], "")
            return RouteDecision(
                level, "unit", found[0], None, "type_default", None, rule.rule_id,
                f"事件类型 {name} 的默认平台 ({rule.default_platform}) → {found[0].name}", False)
    centre = centre_for(session, path, level)
    where = centre.name if centre else "无指挥室"
    return RouteDecision(level, "none", centre, None, "none", None, rule.rule_id,
                         f"未匹配路由规则: 留在{where}待人工派遣", True)


def store(session: Session, *, event_id: int, decision: RouteDecision) -> int:
    """Record a routing decision for an event; return the route's id."""
    return int(session.execute(text(
        "INSERT INTO event_route (event_id, level, target_kind, org_unit_id, grid_code, "
        "rule_kind, routing_rule_id, event_rule_id, reason, no_rule_matched) VALUES (:e, :l, "
        ":k, :u, :g, :rk, :rr, :er, :why, :none) RETURNING id"),
        {"e": event_id, "l": decision.level.value, "k": decision.target_kind,
         "u": decision.unit.id if decision.unit else None, "g": decision.grid_code,
         "rk": decision.rule_kind, "rr": decision.routing_rule_id,
         "er": decision.event_rule_id, "why": decision.reason,
         "none": decision.no_rule_matched}).scalar_one())
