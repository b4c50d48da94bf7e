"""``etl h3``: recompute H3 cell ids of located rows, then the hexagon outlines heat tiles draw
and the statistics tables, through ``geoserver.services.h3agg`` (what the jobs use too)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock
from typing import Any

from geoserver.config import GOVERNANCE_TZ
from geoserver.errors import PermissionDenied
from geoserver.services import h3agg
from geoserver.services.audit import audit
from spatial_etl.db import EtlEnv


@dataclass
class H3Result:
    """What ``etl h3`` did: (rows, changed) per kind, outlines written, statistics recounted."""

    cells: dict[str, tuple[int, int]] = field(default_factory=dict)
    outlines: int = 0
    statistics: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _bounds(period: tuple[date, date] | None) -> tuple[datetime, datetime] | None:
    """Return a period of Shanghai days as [start, end) instants."""
    if period is None:
        return None
    start = datetime.combine(period[0], clock(), GOVERNANCE_TZ)
    return start, datetime.combine(period[1] + timedelta(days=1), clock(), GOVERNANCE_TZ)


def run_h3(env: EtlEnv, *, kinds: Sequence[str] | None = None,
           resolutions: Sequence[int] | None = None, period: tuple[date, date] | None = None,
           statistics: bool = True, client: Any = None,
           progress: Callable[[int], None] | None = None,
           total: Callable[[int], None] | None = None) -> H3Result:
    """Recompute cells for the kinds (on a Dask cluster when given), then outlines and stats."""
    started = time.perf_counter()
    result = H3Result()
    chosen = list(kinds or h3agg.SOURCES)
    for kind in chosen:
        h3agg.source_for(kind)  # unknown kinds fail before any work
    if total is not None:
        total(len(chosen) + 1)
    for kind in chosen:
        src = h3agg.source_for(kind)
        res = tuple(r for r in (resolutions or src.resolutions) if r in src.resolutions)
        if not res:
            result.notes.append(f"{kind}: stores resolutions {src.resolutions} only; skipped")
        elif client is not None and period is None:
            with env.session() as session:
                bounds = h3agg.id_bounds(session, kind)
            if bounds is not None:
                from spatial_etl.distributed import h3_on_cluster

                parts = max(2, len(client.scheduler_info().get("workers", {})) * 4)
                result.cells[kind] = h3_on_cluster(client, env, kind, res, bounds, parts)
        else:
            with env.session() as session:
                report = h3agg.recompute_cells(session, actor=env.actor, kind=kind,
                                               resolutions=res, period=_bounds(period))
                session.commit()
            result.cells[kind] = (report.rows, report.changed)
        if progress is not None:
            progress(1)
    with env.session() as session:
        result.outlines = h3agg.fill_outlines(session, kinds=chosen, resolutions=resolutions)
        if statistics:
            try:
                result.statistics = sorted(h3agg.refresh_aggregates(session, actor=env.actor))
            except PermissionDenied as exc:
                result.notes.append(f"statistics not recounted: {exc.detail}")
        audit(session, actor=env.actor, action="etl.h3", object_kind="h3",
              detail={"kinds": chosen, "resolutions": list(resolutions or []),
                      "cells": {k: list(v) for k, v in result.cells.items()},
                      "outlines": result.outlines, "statistics": result.statistics})
        session.commit()
    if progress is not None:
        progress(1)
    result.seconds = time.perf_counter() - started
    return result
