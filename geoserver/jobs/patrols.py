"""Patrol jobs: build sessions from new points, keep raw-point partitions ahead and retained.

Import this module where the job runner starts (the app's lifespan) to register the jobs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from geoserver.jobs.registry import registry
from geoserver.services.patrol_sessions import build_pending_sessions, maintain_partitions
from geoserver.services.patrols import PatrolSettings

_settings: PatrolSettings | None = None


def settings() -> PatrolSettings:
    """Return the patrol settings, read once from the environment."""
    global _settings
    if _settings is None:
        _settings = PatrolSettings()
    return _settings


@registry.every("patrol.sessions", 30)
def build_sessions(session: Session) -> Any:
    """Turn batches received since the last run into patrol sessions (incremental)."""
    return build_pending_sessions(session, rules=settings().rules())


@registry.every("patrol.partitions", 3600)
def partitions(session: Session) -> Any:
    """Create tomorrow's raw-point partitions ahead of time and drop the expired ones."""
    s = settings()
    return maintain_partitions(session, ahead_days=s.partitions_ahead_days,
                               retention_days=s.retention_days)
