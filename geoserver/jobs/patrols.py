"""Patrol jobs: build sessions from new points, keep raw-point partitions ahead and retained.

Import this module where the job runner starts (the app's lifespan) to register the jobs, and
call ``configure(settings.patrol)`` there so that the jobs use the app's settings.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from geoserver.config import PatrolSettings
from geoserver.jobs.registry import registry
from geoserver.services.patrol_sessions import build_pending_sessions, maintain_partitions

_settings: PatrolSettings | None = None
#: Grid outlines, H3 cells and places for the session job, kept across runs for an hour
#: (boundary changes are rare; recomputing ~4,400 grids every 30 s is not).
_grids: dict[str, Any] = {}
_grids_since = 0.0
_GRIDS_TTL_S = 3600.0


def configure(settings: PatrolSettings) -> None:
    """Use these settings for the patrol jobs (the app passes its own at start-up)."""
    global _settings
    _settings = settings


def settings() -> PatrolSettings:
    """Return the patrol settings: those configured, else read once from the environment."""
    global _settings
    if _settings is None:
        _settings = PatrolSettings()
    return _settings


def _grid_cache() -> dict[str, Any]:
    global _grids_since
    if time.monotonic() - _grids_since > _GRIDS_TTL_S:
        _grids.clear()
        _grids_since = time.monotonic()
    return _grids


@registry.every("patrol.sessions", 30)
def build_sessions(session: Session) -> Any:
    """Turn batches received since the last run into patrol sessions (incremental)."""
    s = settings()
    return build_pending_sessions(session, rules=s.rules(), grids=_grid_cache(),
                                  settle_seconds=s.session_settle_seconds)


@registry.every("patrol.partitions", 3600)
def partitions(session: Session) -> Any:
    """Create the coming days' raw-point partitions ahead of time; summarise and drop (or
    archive) the days past retention."""
    s = settings()
    return maintain_partitions(session, ahead_days=s.partitions_ahead_days,
                               retention_days=s.retention_days,
                               archive=s.retention_action == "archive")
