"""``etl claim``: put unassigned rows in their grids through the claim service (数据认领).

One pass: every claimable kind's rows near a grid boundary or outside every grid are queued
(``claims.enqueue_boundary_rows``, ``--distance-m``), then ``claims.auto_claim`` geocodes
address-only pooled records, finds candidate grids (point in polygon; largest overlap for
polygons) and claims every item with a single candidate or a dominant one. What remains in the
queue is for people: boundary cases, ambiguous addresses.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.principal import Principal
from geoserver.services import claims
from geoserver.services.audit import audit
from spatial_etl.db import EtlEnv

_ENQUEUED = ("boundary", "outside_grids", "beyond_scope")
_AUTO = ("examined", "geocoded", "located", "claimed", "ambiguous", "unlocated")


@dataclass
class ClaimResult:
    """Counts of one ``etl claim``."""

    enqueued: dict[str, dict[str, int]] = field(default_factory=dict)
    auto: Counter[str] = field(default_factory=Counter)
    open_items: int = 0
    partitions: int = 0
    seconds: float = 0.0


def claimable_kinds(session: Session) -> list[str]:
    """Return the kinds the claim queue accepts (as registered in the database)."""
    return [str(k) for k in session.execute(text(
        "SELECT kind FROM gridgov_meta.claim_subject_kind ORDER BY kind")).scalars()]


def claim_pass(session: Session, actor: Principal, *, distance_m: float) -> dict[str, Any]:
    """Queue boundary rows of every kind, then auto-claim; return the counts (plain dicts)."""
    enqueued = {}
    for kind in claimable_kinds(session):
        r = claims.enqueue_boundary_rows(session, actor=actor, kind=kind, distance_m=distance_m)
        enqueued[kind] = {"boundary": r.boundary, "outside_grids": r.outside_grids,
                          "beyond_scope": r.beyond_scope}
    auto = claims.auto_claim(session, actor=actor)
    return {"enqueued": enqueued, "auto": {k: int(getattr(auto, k)) for k in _AUTO}}


def _add(result: ClaimResult, report: dict[str, Any]) -> None:
    for kind, counts in report["enqueued"].items():
        mine = result.enqueued.setdefault(kind, dict.fromkeys(_ENQUEUED, 0))
        for k in ("boundary", "outside_grids"):
            mine[k] += counts[k]
        # Rows beyond a partition's scope are taken by the final pass: count them there only.
        mine["beyond_scope"] = counts["beyond_scope"]
    result.auto.update(report["auto"])


def run_claim(env: EtlEnv, *, distance_m: float = 20.0, client: Any = None) -> ClaimResult:
    """Queue and auto-claim in the actor's scope (per township on a Dask cluster, then all)."""
    started = time.perf_counter()
    result = ClaimResult()
    if client is not None:
        from spatial_etl.distributed import claim_on_cluster, townships

        with env.session() as session:
            paths = townships(session, env.actor)
        if len(paths) > 1:
            for report in claim_on_cluster(client, env, paths, distance_m):
                _add(result, report)
            result.partitions = len(paths)
    with env.session() as session:
        report = claim_pass(session, env.actor, distance_m=distance_m)
        _add(result, report)
        result.open_items = int(session.execute(text(
            "SELECT count(*) FROM claim_item WHERE status <> 'claimed'")).scalar_one())
        audit(session, actor=env.actor, action="etl.claim", object_kind="claim_item",
              detail={"distance_m": distance_m, "enqueued": result.enqueued,
                      "auto": dict(result.auto), "partitions": result.partitions})
        session.commit()
    result.seconds = time.perf_counter() - started
    return result
