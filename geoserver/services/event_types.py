"""Event types, their rules and routing rules (业务规则管理).

Types are a city-wide tree (code, name, display order, the provincial classification code for
five-level 协同). Rules per type × severity give each phase its time limit and clock unit,
whether the result needs on-site verification, whether a grid worker may resolve it on the
spot, the default township platform and the escalation rule; a sub-type without its own rule
uses its parent's. Routing rules (type × region × level → unit) are scoped to regions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from geoserver.domain.clock import ClockUnit, TimeLimit
from geoserver.domain.events import Level, Phase, Severity
from geoserver.domain.principal import Principal
from geoserver.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from geoserver.services import dberrors
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit

CODE_PATTERN = r"^[0-9A-Za-z_]{1,32}$"
MAX_DEPTH = 3

# --- models --------------------------------------------------------------------------------------


class EventTypeCreate(BaseModel):
    """A new event type; ``parent_code`` makes it a sub-type."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=60)
    parent_code: str | None = None
    display_order: int | None = Field(default=None, ge=0, le=1_000_000)
    provincial_code: str | None = Field(default=None, pattern=r"^[0-9A-Za-z._-]{1,40}$")
    description: str = Field(default="", max_length=1000)


class EventTypeUpdate(BaseModel):
    """Changes to an event type; ``version`` is the one the caller saw."""

    model_config = ConfigDict(extra="forbid")

    version: int
    name: str | None = Field(default=None, min_length=1, max_length=60)
    provincial_code: str | None = Field(default=None, pattern=r"^[0-9A-Za-z._-]{1,40}$")
    description: str | None = Field(default=None, max_length=1000)
    active: bool | None = None


class EventTypePublic(BaseModel):
    """An event type as shown."""

    id: int
    code: str
    name: str
    parent_code: str | None
    depth: int
    display_order: int
    provincial_code: str | None
    description: str
    active: bool
    version: int


class PhaseLimit(BaseModel):
    """One phase's time limit."""

    amount: float = Field(gt=0, le=10000)
    unit: ClockUnit


class EventRuleIn(BaseModel):
    """The rule for one type × severity."""

    model_config = ConfigDict(extra="forbid")

    accept: PhaseLimit
    sign: PhaseLimit
    handle: PhaseLimit
    verify: PhaseLimit
    verification_required: bool = True
    on_spot_allowed: bool = True
    default_platform: str | None = Field(default=None, pattern=r"^[a-z]{1,8}$")
    escalation: str = Field(default="none", pattern=r"^(none|level|skip)$")


class EventRulePublic(EventRuleIn):
    """A stored rule."""

    id: int
    type_code: str
    severity: Severity
    version: int


class RoutingRuleIn(BaseModel):
    """A routing rule: type (None: any) × severity × region × level → unit or the event's grid."""

    model_config = ConfigDict(extra="forbid")

    type_code: str | None = None
    severity: Severity | None = None
    region_code: str
    level: Level = Level.TOWNSHIP
    target_kind: str = Field(default="unit", pattern=r"^(unit|grid)$")
    org_unit_code: str | None = None
    priority: int = Field(default=100, ge=0, le=10000)
    note: str = Field(default="", max_length=500)


class RoutingRulePublic(RoutingRuleIn):
    """A stored routing rule."""

    id: int
    unit_name: str | None
    active: bool
    version: int


@dataclass(frozen=True)
class EffectiveRule:
    """The rule that applies to an event (its type's or the nearest ancestor's, else defaults)."""

    rule_id: int | None
    limits: Mapping[Phase, TimeLimit]
    verification_required: bool
    on_spot_allowed: bool
    default_platform: str | None
    escalation: str


# --- the default catalogue -----------------------------------------------------------------------

_WH, _WD, _NH = ClockUnit.WORKING_HOURS, ClockUnit.WORKING_DAYS, ClockUnit.NATURAL_HOURS
#: Limits (accept, sign, handle, verify) per severity for ordinary matters: working time.
_ORDINARY = {
    Severity.NORMAL: ((2, _WH), (2, _WH), (3, _WD), (1, _WD)),
    Severity.MAJOR: ((1, _WH), (1, _WH), (2, _WD), (1, _WD)),
    Severity.URGENT: ((0.5, _NH), (0.5, _NH), (24, _NH), (4, _NH)),
}
#: Urgent kinds of matter (消防, 安全隐患) count natural hours at every severity.
_URGENT_KIND = {
    Severity.NORMAL: ((2, _NH), (2, _NH), (48, _NH), (8, _NH)),
    Severity.MAJOR: ((1, _NH), (1, _NH), (24, _NH), (4, _NH)),
    Severity.URGENT: ((0.5, _NH), (0.5, _NH), (12, _NH), (2, _NH)),
}
#: Used when no rule exists for a type or any of its ancestors.
DEFAULT_RULE = EffectiveRule(
    rule_id=None,
    limits={p: TimeLimit(a, u) for p, (a, u) in zip(Phase, _ORDINARY[Severity.NORMAL],
                                                    strict=True)},
    verification_required=True, on_spot_allowed=True, default_platform=None, escalation="none")

# (code, name, platform key, urgent kind, verification needed, sub-types). Provincial
# classification codes are left empty: they come from the province's 事件分类标准 of the
# deployment and are filled in through the API.
DEFAULT_CATALOGUE: tuple[tuple[str, str, str, bool, bool, tuple[tuple[str, str], ...]], ...] = (
    ("01", "矛盾纠纷", "zz", False, True, (
        ("0101", "邻里纠纷"), ("0102", "婚姻家庭纠纷"), ("0103", "劳资纠纷"),
        ("0104", "物业纠纷"), ("0105", "土地山林纠纷"))),
    ("02", "安全隐患", "zf", True, True, (
        ("0201", "安全生产隐患"), ("0202", "危房隐患"), ("0203", "燃气安全隐患"),
        ("0204", "地质灾害隐患"))),
    ("03", "消防隐患", "zf", True, True, (
        ("0301", "消防通道堵塞"), ("0302", "电动车违规充电"), ("0303", "消防设施损坏"),
        ("0304", "三合一场所"))),
    ("04", "环境卫生", "zf", False, True, (
        ("0401", "垃圾乱堆乱放"), ("0402", "河道污染"), ("0403", "乱贴乱画"),
        ("0404", "噪声扰民"))),
    ("05", "违章建筑", "zf", False, True, (
        ("0501", "违法建设"), ("0502", "违规装修"))),
    ("06", "市场监管", "sc", False, True, (
        ("0601", "无证经营"), ("0602", "价格违法"), ("0603", "虚假宣传"),
        ("0604", "特种设备隐患"))),
    ("07", "食品安全", "sc", False, True, (
        ("0701", "餐饮卫生"), ("0702", "过期变质食品"), ("0703", "无证食品生产"))),
    ("08", "交通秩序", "zf", False, True, (
        ("0801", "违章停车"), ("0802", "道路破损"), ("0803", "交通设施损坏"),
        ("0804", "占道经营"))),
    ("09", "民生服务", "bm", False, False, (
        ("0901", "社会救助"), ("0902", "养老服务"), ("0903", "就业社保"),
        ("0904", "公共设施报修"))),
    ("10", "社会治安", "zz", False, True, (
        ("1001", "治安隐患"), ("1002", "特殊人群异常"))),
)


# --- helpers -------------------------------------------------------------------------------------


def rowcount(result: Any) -> int:
    """Return the rows a DML statement touched."""
    return int(getattr(result, "rowcount", 0) or 0)


def _require_admin(actor: Principal) -> None:
    if not actor.can("event.admin"):
        raise PermissionDenied("event types and rules need the permission event.admin")


def _write(session: Session, sql: str, params: Mapping[str, Any],
           fields: Mapping[str, str] | None = None) -> Any:
    """Run one write in a savepoint; map database errors to domain errors."""
    try:
        with session.begin_nested():
            return session.execute(text(sql), params).mappings().first()
    except DBAPIError as exc:
        raise dberrors.translate(exc, fields=fields) from None


_TYPES = """
WITH RECURSIVE t AS (
    SELECT e.*, 1 AS depth, ARRAY[e.display_order, e.id] AS sort FROM event_type e
    WHERE e.parent_id IS NULL
    UNION ALL
    SELECT c.*, t.depth + 1, t.sort || ARRAY[c.display_order, c.id] FROM event_type c
    JOIN t ON c.parent_id = t.id
)
SELECT t.id, t.code, t.name, p.code AS parent_code, t.depth, t.display_order,
       t.provincial_code, t.description, t.active, t.version
FROM t LEFT JOIN event_type p ON p.id = t.parent_id
"""


def list_types(session: Session, *, include_inactive: bool = False) -> list[EventTypePublic]:
    """Return the type tree flattened in display order (a parent before its sub-types)."""
    rows = session.execute(text(
        _TYPES + " WHERE (:all OR t.active) ORDER BY t.sort"), {"all": include_inactive}
    ).mappings().all()
    return [EventTypePublic.model_validate(dict(r)) for r in rows]


def get_type(session: Session, *, code: str) -> EventTypePublic:
    """Return one type by code."""
    row = session.execute(text(_TYPES + " WHERE t.code = :c"), {"c": code}).mappings().first()
    if row is None:
        raise NotFound(f"no event type {code}")
    return EventTypePublic.model_validate(dict(row))


def _type_id(session: Session, code: str, field: str = "type_code") -> int:
    row = session.execute(text("SELECT id FROM event_type WHERE code = :c"), {"c": code}).first()
    if row is None:
        raise InvalidInput(f"unknown event type {code!r}", field=field)
    return int(row[0])


def type_chain(session: Session, type_id: int) -> list[int]:
    """Return a type's id followed by its ancestors' (sub-type first)."""
    rows = session.execute(text(
        "WITH RECURSIVE up AS (SELECT id, parent_id, 0 AS n FROM event_type WHERE id = :i "
        "UNION ALL SELECT e.id, e.parent_id, up.n + 1 FROM event_type e JOIN up "
        "ON e.id = up.parent_id WHERE up.n < 10) SELECT id FROM up ORDER BY n"),
        {"i": type_id}).scalars().all()
    return [int(r) for r in rows]


def create_type(session: Session, *, actor: Principal, data: EventTypeCreate,
                context: AuditContext = NO_CONTEXT) -> EventTypePublic:
    """Create an event type (at the end of its siblings unless an order is given)."""
    _require_admin(actor)
    parent_id = None
    if data.parent_code is not None:
        parent_id = _type_id(session, data.parent_code, "parent_code")
        if len(type_chain(session, parent_id)) >= MAX_DEPTH:
            raise InvalidInput(f"types nest at most {MAX_DEPTH} deep", field="parent_code")
    order = data.display_order
    if order is None:
        order = session.execute(text(
            "SELECT coalesce(max(display_order) + 1, 0) FROM event_type "
            "WHERE parent_id IS NOT DISTINCT FROM :p"), {"p": parent_id}).scalar_one()
    _write(session,
           "INSERT INTO event_type (code, name, parent_id, display_order, provincial_code, "
           "description) VALUES (:c, :n, :p, :o, :pc, :d) RETURNING id",
           {"c": data.code, "n": data.name, "p": parent_id, "o": order,
            "pc": data.provincial_code, "d": data.description},
           {"event_type_code_key": "code", "event_type_sibling_name": "name"})
    audit(session, actor=actor, action="event_type.create", object_kind="event_type",
          object_id=data.code, after=data.model_dump(), context=context)
    return get_type(session, code=data.code)


def update_type(session: Session, *, actor: Principal, code: str, data: EventTypeUpdate,
                context: AuditContext = NO_CONTEXT) -> EventTypePublic:
    """Change a type's name, provincial code, description or active flag."""
    _require_admin(actor)
    before = get_type(session, code=code)
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    row = _write(session,
                 "UPDATE event_type SET name = coalesce(:n, name), "
                 "provincial_code = CASE WHEN :set_pc THEN :pc ELSE provincial_code END, "
                 "description = coalesce(:d, description), active = coalesce(:a, active), "
                 "updated_at = now(), version = version + 1 WHERE code = :c AND version = :v "
                 "RETURNING id",
                 {"n": data.name, "set_pc": "provincial_code" in changes,
                  "pc": data.provincial_code, "d": data.description, "a": data.active,
                  "c": code, "v": data.version},
                 {"event_type_sibling_name": "name"})
    if row is None:
        raise Conflict(f"event type {code} was changed meanwhile (version {before.version})",
                       current_version=before.version)
    audit(session, actor=actor, action="event_type.update", object_kind="event_type",
          object_id=code, before=before.model_dump(), after=changes, context=context)
    return get_type(session, code=code)


def delete_type(session: Session, *, actor: Principal, code: str, version: int,
                context: AuditContext = NO_CONTEXT) -> bool:
    """Delete an unused type, or deactivate one events use; return whether it was deleted."""
    _require_admin(actor)
    before = get_type(session, code=code)
    if before.version != version:
        raise Conflict(f"event type {code} was changed meanwhile", current_version=before.version)
    if session.execute(text("SELECT 1 FROM event_type WHERE parent_id = :i LIMIT 1"),
                       {"i": before.id}).first():
        raise Conflict(f"event type {code} has sub-types; delete or move them first")
    # Events keep their type for ever: a used type is only retired (RLS hides no type rows,
    # but the event check must see every event, so it asks through the rule-less count).
    used = session.execute(text("SELECT gridgov_meta.event_type_in_use(:i)"),
                           {"i": before.id}).scalar()
    if used:
        session.execute(text("UPDATE event_type SET active = false, updated_at = now(), "
                             "version = version + 1 WHERE id = :i"), {"i": before.id})
    else:
        _write(session, "DELETE FROM event_type WHERE id = :i RETURNING id", {"i": before.id})
    audit(session, actor=actor, action="event_type.delete" if not used else "event_type.retire",
          object_kind="event_type", object_id=code, before=before.model_dump(), context=context)
    return not used


def reorder_types(session: Session, *, actor: Principal, parent_code: str | None,
                  codes: Sequence[str], context: AuditContext = NO_CONTEXT
                  ) -> list[EventTypePublic]:
    """Set the display order of one parent's sub-types (all of them, in the order given)."""
    _require_admin(actor)
    parent_id = _type_id(session, parent_code, "parent_code") if parent_code else None
    siblings = session.execute(text(
        "SELECT code FROM event_type WHERE parent_id IS NOT DISTINCT FROM :p"),
        {"p": parent_id}).scalars().all()
    if sorted(siblings) != sorted(codes) or len(set(codes)) != len(codes):
        raise InvalidInput("codes must list every sub-type of the parent exactly once",
                           field="codes")
    for order, code in enumerate(codes):
        session.execute(text("UPDATE event_type SET display_order = :o, updated_at = now(), "
                             "version = version + 1 WHERE code = :c AND display_order <> :o"),
                        {"o": order * 10, "c": code})
    audit(session, actor=actor, action="event_type.reorder", object_kind="event_type",
          object_id=parent_code or "", after=list(codes), context=context)
    return [t for t in list_types(session, include_inactive=True) if t.parent_code == parent_code]


# --- rules ---------------------------------------------------------------------------------------


def _limits_params(data: EventRuleIn) -> dict[str, Any]:
    return {f"{p}_{k}": getattr(getattr(data, p), "amount" if k == "limit" else "unit")
            for p in ("accept", "sign", "handle", "verify") for k in ("limit", "unit")}


_RULE_COLUMNS = ("id, event_type_id, severity, accept_limit, accept_unit, sign_limit, sign_unit, "
                 "handle_limit, handle_unit, verify_limit, verify_unit, verification_required, "
                 "on_spot_allowed, default_platform, escalation, version")


def _rule_public(row: Mapping[str, Any], type_code: str) -> EventRulePublic:
    phases = {p: PhaseLimit(amount=float(row[f"{p}_limit"]), unit=row[f"{p}_unit"])
              for p in ("accept", "sign", "handle", "verify")}
    return EventRulePublic(id=row["id"], type_code=type_code, severity=row["severity"],
                           version=row["version"], verification_required=row[
                               "verification_required"], on_spot_allowed=row["on_spot_allowed"],
                           default_platform=row["default_platform"],
                           escalation=row["escalation"], **phases)


def list_rules(session: Session, *, code: str) -> list[EventRulePublic]:
    """Return a type's own rules (one per severity at most)."""
    type_id = _type_id(session, code)
    rows = session.execute(text(f"SELECT {_RULE_COLUMNS} FROM event_rule WHERE "
                                "event_type_id = :t ORDER BY severity"), {"t": type_id})
    return [_rule_public(dict(r), code) for r in rows.mappings()]


def set_rule(session: Session, *, actor: Principal, code: str, severity: Severity,
             data: EventRuleIn, context: AuditContext = NO_CONTEXT) -> EventRulePublic:
    """Create or replace the rule for one type × severity."""
    _require_admin(actor)
    severity = Severity(severity)
    type_id = _type_id(session, code)
    params = {"t": type_id, "s": severity.value, "vr": data.verification_required,
              "os": data.on_spot_allowed, "dp": data.default_platform, "esc": data.escalation,
              **_limits_params(data)}
    cols = ", ".join(f"{p}_{k}" for p in ("accept", "sign", "handle", "verify")
                     for k in ("limit", "unit"))
    vals = ", ".join(f":{p}_{k}" for p in ("accept", "sign", "handle", "verify")
                     for k in ("limit", "unit"))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols.split(", "))
    row = _write(session,
                 f"INSERT INTO event_rule (event_type_id, severity, {cols}, verification_required, "
                 f"on_spot_allowed, default_platform, escalation) VALUES (:t, :s, {vals}, :vr, "
                 f":os, :dp, :esc) ON CONFLICT (event_type_id, severity) DO UPDATE SET {updates}, "
                 "verification_required = EXCLUDED.verification_required, on_spot_allowed = "
                 "EXCLUDED.on_spot_allowed, default_platform = EXCLUDED.default_platform, "
                 "escalation = EXCLUDED.escalation, updated_at = now(), "
                 f"version = event_rule.version + 1 RETURNING {_RULE_COLUMNS}", params)
    audit(session, actor=actor, action="event_rule.set", object_kind="event_type",
          object_id=f"{code}/{severity}", after=data.model_dump(mode="json"), context=context)
    return _rule_public(row, code)


def rule_for(session: Session, chain: Sequence[int], severity: str) -> EffectiveRule:
    """Return the rule for a type (given as its chain) and severity.

    The nearest type with a rule for exactly this severity wins; else the nearest 'normal'
    rule; else DEFAULT_RULE.
    """
    row = session.execute(text(
        f"SELECT {_RULE_COLUMNS} FROM event_rule WHERE event_type_id = ANY(:chain) "
        "AND severity IN (:s, 'normal') ORDER BY severity = :s DESC, "
        "array_position(CAST(:chain AS bigint[]), event_type_id) LIMIT 1"),
        {"chain": list(chain), "s": severity}).mappings().first()
    if row is None:
        return DEFAULT_RULE
    return EffectiveRule(
        rule_id=int(row["id"]),
        limits={p: TimeLimit(float(row[f"{p.value}_limit"]), ClockUnit(row[f"{p.value}_unit"]))
                for p in Phase},
        verification_required=bool(row["verification_required"]),
        on_spot_allowed=bool(row["on_spot_allowed"]),
        default_platform=row["default_platform"], escalation=row["escalation"])


# --- initialize ----------------------------------------------------------------------------------


def _rule_in(limits: Sequence[tuple[float, ClockUnit]], platform: str, verify: bool,
             severity: Severity) -> EventRuleIn:
    phases = {p: PhaseLimit(amount=a, unit=u)
              for p, (a, u) in zip(("accept", "sign", "handle", "verify"), limits, strict=True)}
    return EventRuleIn(**phases, verification_required=verify,
                       on_spot_allowed=severity is not Severity.URGENT,
                       default_platform=platform,
                       escalation="level" if severity is Severity.URGENT else "none")


def catalogue_types() -> list[tuple[str, str, str | None, int]]:
    """Return the default catalogue's types: (code, name, parent code, display order)."""
    rows: list[tuple[str, str, str | None, int]] = []
    for order, (code, name, _platform, _urgent, _verify, subs) in enumerate(DEFAULT_CATALOGUE):
        rows.append((code, name, None, order * 10))
        rows += [(sub, sub_name, code, i * 10) for i, (sub, sub_name) in enumerate(subs)]
    return rows


def catalogue_rules() -> list[tuple[str, Severity, EventRuleIn]]:
    """Return the default catalogue's rules: (top-level type code, severity, rule)."""
    return [(code, severity, _rule_in((_URGENT_KIND if urgent else _ORDINARY)[severity],
                                      platform, verify, severity))
            for code, _name, platform, urgent, verify, _subs in DEFAULT_CATALOGUE
            for severity in Severity]


_INSERT_RULE = (
    "INSERT INTO event_rule (event_type_id, severity, accept_limit, accept_unit, sign_limit, "
    "sign_unit, handle_limit, handle_unit, verify_limit, verify_unit, verification_required, "
    "on_spot_allowed, default_platform, escalation) VALUES ((SELECT id FROM event_type "
    "WHERE code = :code), :s, :accept_limit, :accept_unit, :sign_limit, :sign_unit, "
    ":handle_limit, :handle_unit, :verify_limit, :verify_unit, :vr, :os, :dp, :esc) "
    "ON CONFLICT (event_type_id, severity) DO NOTHING")


def rule_params(code: str, severity: Severity, data: EventRuleIn) -> dict[str, Any]:
    """Return the bound parameters of _INSERT_RULE-style statements for one rule."""
    return {"code": code, "s": severity.value, "vr": data.verification_required,
            "os": data.on_spot_allowed, "dp": data.default_platform, "esc": data.escalation,
            **_limits_params(data)}


def initialize_catalogue(session: Session, *, actor: Principal,
                         context: AuditContext = NO_CONTEXT) -> dict[str, int]:
    """Load the default type catalogue and rules; existing types and rules are kept."""
    _require_admin(actor)
    counts = {"types": 0, "rules": 0}
    for code, name, parent, order in catalogue_types():
        counts["types"] += rowcount(session.execute(text(
            "INSERT INTO event_type (code, name, parent_id, display_order) SELECT :c, :n, "
            "(SELECT id FROM event_type WHERE code = :p), :o "
            "WHERE NOT EXISTS (SELECT 1 FROM event_type WHERE code = :c) "
            "ON CONFLICT DO NOTHING"), {"c": code, "n": name, "p": parent, "o": order}))
    for code, severity, rule in catalogue_rules():
        counts["rules"] += rowcount(session.execute(text(_INSERT_RULE),
                                                    rule_params(code, severity, rule)))
    audit(session, actor=actor, action="event_type.initialize", object_kind="event_type",
          after=counts, context=context)
    return counts


# --- routing rules -------------------------------------------------------------------------------

_ROUTING = """
SELECT rr.id, t.code AS type_code, rr.severity, rr.region_code, rr.level, rr.target_kind,
       o.code AS org_unit_code, o.name AS unit_name, rr.priority, rr.note, rr.active, rr.version
FROM routing_rule rr
LEFT JOIN event_type t ON t.id = rr.event_type_id
LEFT JOIN LATERAL gridgov_meta.event_org_units(ARRAY[rr.org_unit_id], NULL) o ON true
"""


def list_routing_rules(session: Session, *, region_code: str | None = None
                       ) -> list[RoutingRulePublic]:
    """Return the routing rules visible to the caller (under a region, if given)."""
    rows = session.execute(text(
        _ROUTING + " WHERE (CAST(:r AS text) IS NULL OR rr.path <@ (SELECT path FROM region "
        "WHERE code = :r AND valid_to IS NULL)) ORDER BY rr.path, rr.priority, rr.id"),
        {"r": region_code}).mappings().all()
    return [RoutingRulePublic.model_validate(dict(r)) for r in rows]


def create_routing_rule(session: Session, *, actor: Principal, data: RoutingRuleIn,
                        context: AuditContext = NO_CONTEXT) -> RoutingRulePublic:
    """Add a routing rule under a region in the caller's jurisdiction."""
    _require_admin(actor)
    region = session.execute(text("SELECT path::text FROM region WHERE code = :c "
                                  "AND valid_to IS NULL"), {"c": data.region_code}).first()
    if region is None or not actor.covers(region[0]):
        raise InvalidInput(f"no region {data.region_code} in your jurisdiction",
                           field="region_code")
    type_id = _type_id(session, data.type_code) if data.type_code else None
    unit_id = None
    if data.target_kind == "unit":
        unit = session.execute(text("SELECT id FROM gridgov_meta.event_org_units(NULL, :c)"),
                               {"c": [data.org_unit_code or ""]}).first()
        if unit is None:
            raise InvalidInput("a unit rule needs an existing org_unit_code",
                               field="org_unit_code")
        unit_id = unit[0]
    row = _write(session,
                 "INSERT INTO routing_rule (event_type_id, severity, region_code, path, level, "
                 "target_kind, org_unit_id, priority, note) VALUES (:t, :s, :rc, "
                 "CAST(:p AS ltree), :l, :k, :u, :pr, :n) RETURNING id",
                 {"t": type_id, "s": data.severity, "rc": data.region_code, "p": region[0],
                  "l": data.level.value, "k": data.target_kind, "u": unit_id,
                  "pr": data.priority, "n": data.note})
    audit(session, actor=actor, action="routing_rule.create", object_kind="routing_rule",
          object_id=str(row["id"]), after=data.model_dump(mode="json"), context=context)
    return _routing_rule(session, int(row["id"]))


def _routing_rule(session: Session, rule_id: int) -> RoutingRulePublic:
    row = session.execute(text(_ROUTING + " WHERE rr.id = :i"), {"i": rule_id}).mappings().first()
    if row is None:
        raise NotFound(f"no routing rule {rule_id}")
    return RoutingRulePublic.model_validate(dict(row))


def delete_routing_rule(session: Session, *, actor: Principal, rule_id: int, version: int,
                        context: AuditContext = NO_CONTEXT) -> None:
    """Delete a routing rule (routes it chose keep their reason text)."""
    _require_admin(actor)
    before = _routing_rule(session, rule_id)
    gone = session.execute(text("DELETE FROM routing_rule WHERE id = :i AND version = :v "
                                "RETURNING id"), {"i": rule_id, "v": version}).first()
    if gone is None:
        raise Conflict(f"routing rule {rule_id} was changed meanwhile",
                       current_version=before.version)
    audit(session, actor=actor, action="routing_rule.delete", object_kind="routing_rule",
          object_id=str(rule_id), before=before.model_dump(mode="json"), context=context)
