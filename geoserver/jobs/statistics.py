"""Statistics jobs: keep the aggregate tables behind 研判分析 fresh.

Import this module where the job runner starts (the app's lifespan) to register the jobs.
Base data is recounted in full (deletes and moves leave no trace to follow); events are
recounted for the days whose events changed since the last run, and in full once a day.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from geoserver.jobs.registry import registry
from geoserver.services.statistics import refresh_events, refresh_objects


@registry.every("statistics.objects", 30 * 60)
def objects(session: Session) -> Any:
    """Recount persons, residences, buildings, key places and enterprises per region."""
    return refresh_objects(session)


@registry.every("statistics.events", 5 * 60)
def events(session: Session) -> Any:
    """Recount the days (and their H3 cells) of events reported or changed since the last run."""
    return refresh_events(session)


@registry.every("statistics.events_full", 24 * 3600)
def events_full(session: Session) -> Any:
    """Recount every day of events (catches anything the incremental run could miss)."""
    return refresh_events(session, full=True)
