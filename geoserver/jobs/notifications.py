"""Message-center jobs: keep the notification table bounded.

Notifications need no job to be created: triggers write them when an event's history row
commits (migration 0070), and the overdue sweep (``events.overdue``) records its automatic
reminders and escalations in that history, so overdue events notify like any other action.

Import this module where the job runner starts (the app's lifespan) to register the job.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from geoserver.config import MessageSettings
from geoserver.jobs.registry import registry
from geoserver.services.notifications import prune

_settings: MessageSettings | None = None


def settings() -> MessageSettings:
    """Return the message settings, read once from the environment."""
    global _settings
    if _settings is None:
        _settings = MessageSettings()
    return _settings


@registry.every("messages.prune", 6 * 3600)
def prune_messages(session: Session) -> Any:
    """Delete read messages past their retention, and unread ones past ``keep_days``."""
    return {"deleted": prune(session, settings=settings())}
