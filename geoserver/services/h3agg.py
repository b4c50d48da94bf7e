"""H3 cells of located rows and the aggregates heat layers and statistics read.

Rows get their H3 ids when they are written (``geoserver.geo.h3cells``, on the geometry's point
on surface, as the services compute them). This module recomputes them in bulk — after a
resolution is added, an import that bypassed the write path, or a bug fix — and fills what is
derived from them: the hexagon outlines the heat tiles draw (``tiles.h3_cell``) and the
statistics tables (``stat_object_daily``, ``stat_event_daily``, via ``services.statistics``).
``gridgov etl h3`` and the jobs call the same functions.

Everything runs under the caller's scope (RLS): an actor recomputes only rows they may see.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, PermissionDenied
from geoserver.geo.h3cells import cell_boundary, cells_at_resolutions
from geoserver.services import statistics


@dataclass(frozen=True)
class H3Source:
    """A located table whose rows carry H3 ids (``h3_r<res>`` columns)."""

    table: str
    resolutions: tuple[int, ...]
    #: Points are indexed as they are; other shapes at their point on surface (in Python, as
    #: the write path does, so both give the same cell).
    point: bool
    time_column: str
    permission: str


#: Kinds (as ``etl h3 --kind`` names them) and their tables; identifiers are code, not input.
SOURCES: dict[str, H3Source] = {
    "buildings": H3Source("building", (7, 8, 9), False, "created_at", "building.write"),
    "events": H3Source("event", (7, 8, 9), True, "reported_at", "event.admin"),
    "addresses": H3Source("standard_address", (9,), True, "created_at", "address.write"),
    "places": H3Source("key_place", (9,), False, "created_at", "place.write"),
    "components": H3Source("city_component", (9,), True, "created_at", "place.write"),
    "enterprises": H3Source("enterprise", (9,), True, "created_at", "enterprise.write"),
    "organizations": H3Source("organization", (9,), True, "created_at", "enterprise.write"),
}
BATCH = 20_000


@dataclass(frozen=True)
class CellReport:
    """What a recompute did for one kind."""

    kind: str
    rows: int
    changed: int


def source_for(kind: str) -> H3Source:
    """Return the H3 source of a kind, or raise InvalidInput listing the kinds."""
    try:
        return SOURCES[kind]
    except KeyError:
        raise InvalidInput(f"kind must be one of {', '.join(SOURCES)}", field="kind") from None


def _resolutions(src: H3Source, wanted: Iterable[int] | None) -> tuple[int, ...]:
    """Return the wanted resolutions this table stores (all of them when none are named)."""
    if wanted is None:
        return src.resolutions
    chosen = tuple(sorted(set(wanted)))
    missing = [r for r in chosen if r not in src.resolutions]
    if missing:
        raise InvalidInput(f"{src.table} stores resolutions {src.resolutions}, not "
                           f"{tuple(missing)}", field="resolutions")
    return chosen


def id_bounds(session: Session, kind: str) -> tuple[int, int] | None:
    """Return the smallest and largest row id of a kind the caller sees (None: no rows)."""
    src = source_for(kind)
    row = session.execute(text(f"SELECT min(id), max(id) FROM {src.table}")).one()
    return None if row[0] is None else (int(row[0]), int(row[1]))


def _where(src: H3Source, id_range: tuple[int, int] | None,
           period: tuple[datetime, datetime] | None) -> tuple[str, dict[str, Any]]:
    clauses = ["geom IS NOT NULL"]
    params: dict[str, Any] = {}
    if id_range is not None:
        clauses.append("id BETWEEN :lo AND :hi")
        params.update(lo=id_range[0], hi=id_range[1])
    if period is not None:
        clauses.append(f"{src.time_column} >= :t0 AND {src.time_column} < :t1")
        params.update(t0=period[0], t1=period[1])
    return " AND ".join(clauses), params


def _points(src: H3Source, rows: Sequence[Any]) -> np.ndarray:
    """Return (n, 2) lon/lat of the rows' points (points as they are, shapes on surface)."""
    geoms = shapely.from_wkb([bytes(r.wkb) for r in rows])
    if not src.point:
        geoms = shapely.point_on_surface(geoms)
    return np.asarray(shapely.get_coordinates(geoms))


def _write(session: Session, src: H3Source, ids: list[int], cells: dict[int, np.ndarray],
           ) -> int:
    """Write changed cell ids back; return how many rows changed."""
    cols = sorted(cells)
    rows = [{"id": i, **{f"r{r}": int(cells[r][k]) for r in cols}} for k, i in enumerate(ids)]
    sets = ", ".join(f"h3_r{r} = u.r{r}" for r in cols)
    changed = " OR ".join(f"t.h3_r{r} IS DISTINCT FROM u.r{r}" for r in cols)
    record = ", ".join(["id bigint", *(f"r{r} bigint" for r in cols)])
    result = session.execute(text(
        f"UPDATE {src.table} t SET {sets} FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
        f"AS u({record}) WHERE t.id = u.id AND ({changed})"), {"rows": json.dumps(rows)})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def recompute_cells(
    session: Session,
    *,
    actor: Principal,
    kind: str,
    resolutions: Iterable[int] | None = None,
    id_range: tuple[int, int] | None = None,
    period: tuple[datetime, datetime] | None = None,
    batch: int = BATCH,
) -> CellReport:
    """Recompute the H3 ids of a kind's rows (optionally ids in a range, or rows of a period).

    Rows are read in id order, ``batch`` at a time (keyset), so memory stays bounded; only rows
    whose ids change are written.

    Raises:
        PermissionDenied: without the kind's write permission.
        InvalidInput: unknown kind, or a resolution the table does not store.
    """
    src = source_for(kind)
    if not actor.can(src.permission):
        raise PermissionDenied(f"recomputing {kind} cells needs {src.permission}")
    res = _resolutions(src, resolutions)
    where, params = _where(src, id_range, period)
    last, seen, changed = 0, 0, 0
    while True:
        rows = session.execute(text(
            f"SELECT id, ST_AsBinary(geom) AS wkb FROM {src.table} WHERE {where} AND id > :last "
            "ORDER BY id LIMIT :n"), {**params, "last": last, "n": batch}).all()
        if not rows:
            break
        xy = _points(src, rows)
        cells = cells_at_resolutions(xy[:, 0], xy[:, 1], res)
        changed += _write(session, src, [int(r.id) for r in rows], cells)
        seen += len(rows)
        last = int(rows[-1].id)
    return CellReport(kind, seen, changed)


def missing_outlines(session: Session, table: str, column: str, limit: int = 200_000) -> list[int]:
    """Return cell ids a table names that have no outline in ``tiles.h3_cell`` yet."""
    return [int(r[0]) for r in session.execute(text(
        f"SELECT DISTINCT s.{column} FROM {table} s WHERE s.{column} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM tiles.h3_cell c WHERE c.cell = s.{column}) LIMIT :n"), {"n": limit})]


def write_outlines(session: Session, cells: Sequence[int], res: int) -> int:
    """Write the hexagons of cells of one resolution; return how many were new."""
    written = 0
    for i in range(0, len(cells), 5000):
        part = cells[i:i + 5000]
        rows = [{"c": c, "w": cell_boundary(c).wkt} for c in part]
        result = session.execute(text(
            "INSERT INTO tiles.h3_cell (cell, res, geom_3857) "
            "SELECT r.c, :res, ST_Transform(ST_GeomFromText(r.w, 4326), 3857) "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(c bigint, w text) "
            "ON CONFLICT (cell) DO NOTHING"), {"res": res, "rows": json.dumps(rows)})
        written += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return written


def fill_outlines(session: Session, *, kinds: Iterable[str] | None = None,
                  resolutions: Iterable[int] | None = None) -> int:
    """Write the missing hexagons of every cell the kinds' rows name; return how many."""
    written = 0
    for kind in kinds or SOURCES:
        src = source_for(kind)
        for res in _resolutions(src, [r for r in resolutions or src.resolutions
                                      if r in src.resolutions]):
            written += write_outlines(session, missing_outlines(session, src.table,
                                                                f"h3_r{res}"), res)
    return written


def refresh_aggregates(session: Session, *, actor: Principal) -> dict[str, Any]:
    """Recount the statistics tables (base data per region and day, events per day).

    Only the system (the operator) may: the tables hold every jurisdiction's figures, and a
    recount under a narrower scope would replace the others' rows with nothing.
    """
    if actor.scope != ("",) or not actor.can("*"):
        raise PermissionDenied("recounting the statistics tables is the operator's job")
    out: dict[str, Any] = {}
    if session.execute(text("SELECT to_regclass('stat_object_daily')")).scalar() is not None:
        out["objects"] = statistics.refresh_objects(session)
        out["events"] = statistics.refresh_events(session, full=True)
    return out
