"""Event-center jobs: remind or escalate overdue events, keep the holiday calendar seeded.

Import this module where the job runner starts (the app's lifespan) to register the jobs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from geoserver.config import EventSettings
from geoserver.jobs.registry import registry
from geoserver.services.event_sla import sweep_overdue
from geoserver.services.holidays import seed_holidays

_settings: EventSettings | None = None


def configure(settings: EventSettings) -> None:
    """Use these settings for the event jobs (the app passes its own at start-up)."""
    global _settings
    _settings = settings


def settings() -> EventSettings:
    """Return the event settings: those configured, else read once from the environment."""
    global _settings
    if _settings is None:
        _settings = EventSettings()
    return _settings


@registry.every("events.overdue", 60)
def overdue(session: Session) -> Any:
    """Remind or escalate events whose running clock has turned red (催办, 超时上报)."""
    return sweep_overdue(session, settings=settings())


@registry.every("events.holidays", 24 * 3600)
def holidays(session: Session) -> Any:
    """Add chinesecalendar's holidays for years the table lacks (warns about missing years)."""
    return {"added": seed_holidays(session)}
