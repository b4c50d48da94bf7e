"""H3 cell outlines for the heat layers (``tiles.h3_cell``), computed in Python.

Debian has no h3-pg, so the heat tile functions look hexagons up in ``tiles.h3_cell``. This fills,
through the h3 service the ETL uses, the outlines of every cell the heat sources name that is not
there yet (a heat tile draws a cell without an outline as a point until then). Cell outlines
never change, so a cell is written once.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from geoserver.services.h3agg import missing_outlines, write_outlines

#: Tables whose rows carry H3 ids for a heat layer, and their H3 columns by resolution (the
#: resolutions tiles.heat_resolution() picks by zoom). Events carry theirs from intake; patrol
#: density is counted per session from the points' r10 cells (tiles.patrol_cell, 0090).
HEAT_SOURCES: dict[str, Mapping[int, str]] = {
    "building": {7: "h3_r7", 8: "h3_r8", 9: "h3_r9"},
    "event": {7: "h3_r7", 8: "h3_r8", 9: "h3_r9"},
    "tiles.patrol_cell": {7: "h3_r7", 8: "h3_r8", 9: "h3_r9"},
}

def fill_cells(session: Session, sources: Mapping[str, Mapping[int, str]] = HEAT_SOURCES) -> int:
    """Write the missing outlines of every heat source's cells; return how many were written."""
    written = 0
    for table, columns in sources.items():
        for res, column in columns.items():
            written += write_outlines(session, missing_outlines(session, table, column), res)
    return written
