"""Periodic tile jobs (registered on import; the job runner's leader runs them)."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from geoserver.jobs.registry import registry
from tiles.h3grid import fill_cells

log = logging.getLogger("gridgov.tiles")


@registry.every("tiles.h3_cells", 300)
def h3_cells(session: Session) -> None:
    """Write the outlines of H3 cells new rows brought to the heat layers."""
    written = fill_cells(session)
    if written:
        log.info("wrote %d H3 cell outlines for the heat layers", written)
