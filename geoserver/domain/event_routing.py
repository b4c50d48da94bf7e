"""Choosing the routing rule for an event (路由规则选择): pure, no I/O.

Routing is data: rule rows say "events of this type (and severity) under this region, routed at
this level, go to this unit (or stay in their grid)". The service fetches the rules that could
apply; this module picks one and says why, so the choice can be stored and shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RuleCandidate:
    """A routing rule that applies to the event (type, severity, region and level all match)."""

    rule_id: int
    #: None: the rule covers every type.
    event_type_id: int | None
    #: None: every severity.
    severity: str | None
    region_code: str
    #: Depth of the rule's region path: deeper is more specific.
    region_depth: int
    target_kind: str
    org_unit_id: int | None
    unit_code: str | None
    unit_name: str | None
    priority: int


def _specificity(rule: RuleCandidate, type_chain: Sequence[int]) -> tuple[int, int, int, int, int]:
    """Sort key: deeper region, then closer type, then severity-specific, then priority, id."""
    if rule.event_type_id is None:
        type_rank = len(type_chain)
    else:
        type_rank = type_chain.index(rule.event_type_id)
    return (-rule.region_depth, type_rank, 0 if rule.severity else 1, rule.priority,
            rule.rule_id)


def choose_rule(candidates: Sequence[RuleCandidate], type_chain: Sequence[int]
                ) -> RuleCandidate | None:
    """Return the rule that routes the event, or None when none applies.

    ``type_chain`` is the event's type followed by its ancestors (sub-type first): a rule for
    the sub-type beats one for its parent type, which beats one for any type. The most
    specific region wins first: a township's own rule beats the county's general one, whatever
    their priorities; priority (lower first) breaks ties between equally specific rules.
    """
    usable = [c for c in candidates
              if c.event_type_id is None or c.event_type_id in type_chain]
    if not usable:
        return None
    return min(usable, key=lambda c: _specificity(c, type_chain))


def describe_rule(rule: RuleCandidate, type_names: dict[int, str], level: str) -> str:
    """Return a one-line reason for a choice, in the operators' language."""
    what = type_names.get(rule.event_type_id, "任意类型") if rule.event_type_id else "任意类型"
    severity = f"、{rule.severity}" if rule.severity else ""
    target = rule.unit_name or rule.unit_code or "事发网格"
    return (f"路由规则 #{rule.rule_id}: {what}{severity} 在 {rule.region_code} ({level}级) → "
            f"{target} (优先级 {rule.priority})")
