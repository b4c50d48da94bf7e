"""H3 cell outlines for the heat layers (``tiles.h3_cell``), computed in Python.

Debian has no h3-pg, so the heat tile functions look hexagons up in ``tiles.h3_cell``. This fills
the outlines of every cell the heat sources name that is not there yet (a heat tile draws a cell
without an outline as a point until then). Cell outlines never change, so a cell is written once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.geo.h3cells import cell_boundary

#: Tables whose rows carry H3 ids for a heat layer, and their H3 columns by resolution (the
#: resolutions tiles.heat_resolution() picks by zoom). Events carry theirs from intake; patrol
#: density is counted per session from the points' r10 cells (tiles.patrol_cell, 0090).
HEAT_SOURCES: dict[str, Mapping[int, str]] = {
    "building": {7: "h3_r7", 8: "h3_r8", 9: "h3_r9"},
    "event": {7: "h3_r7", 8: "h3_r8", 9: "h3_r9"},
    "tiles.patrol_cell": {7: "h3_r7", 8: "h3_r8", 9: "h3_r9"},
}

_BATCH = 5000


def _quoted(name: str) -> str:
    """Quote a (possibly schema-qualified) identifier from HEAT_SOURCES."""
    return ".".join(f'"{part}"' for part in name.split("."))


def missing_cells(session: Session, table: str, column: str, *, limit: int = 200_000) -> list[int]:
    """Return cell ids a heat source names that have no outline yet (in the caller's scope)."""
    # Identifiers come from HEAT_SOURCES (code, not input), quoted all the same.
    q = text(
        f'SELECT DISTINCT s."{column}" FROM {_quoted(table)} s '
        f'WHERE s."{column}" IS NOT NULL AND NOT EXISTS '
        f'(SELECT 1 FROM tiles.h3_cell c WHERE c.cell = s."{column}") LIMIT :n'
    )
    return [row[0] for row in session.execute(q, {"n": limit})]


def insert_cells(session: Session, cells: list[int], res: int) -> int:
    """Write the outlines of ``cells`` (all of resolution ``res``); return how many were new."""
    written = 0
    for i in range(0, len(cells), _BATCH):
        batch = cells[i:i + _BATCH]
        rings = [cell_boundary(c).wkt for c in batch]
        result = session.execute(text(
            "INSERT INTO tiles.h3_cell (cell, res, geom_3857) "
            "SELECT c, :res, ST_Transform(ST_GeomFromText(w, 4326), 3857) "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(c bigint, w text) "
            "ON CONFLICT (cell) DO NOTHING"),
            {"res": res, "rows": json.dumps([{"c": c, "w": w} for c, w in zip(batch, rings,
                                                                              strict=True)])})
        written += result.rowcount or 0  # type: ignore[attr-defined]
    return written


def fill_cells(session: Session, sources: Mapping[str, Mapping[int, str]] = HEAT_SOURCES) -> int:
    """Write the missing outlines of every heat source's cells; return how many were written."""
    written = 0
    for table, columns in sources.items():
        for res, column in columns.items():
            written += insert_cells(session, missing_cells(session, table, column), res)
    return written
