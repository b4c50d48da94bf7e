"""Partner-platform jobs: deliver the status outbox, forget expired nonces and idempotency keys.

Import this module where the job runner starts (the app's lifespan) to register the jobs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from geoserver.config import PartnerSettings, SecuritySettings
from geoserver.jobs.registry import registry
from geoserver.security.crypto import PersonalDataCrypto, crypto_from_settings
from geoserver.services import partner_outbox, partners

_settings: PartnerSettings | None = None
_crypto: PersonalDataCrypto | None = None


def settings() -> PartnerSettings:
    """Return the partner settings, read once from the environment."""
    global _settings
    if _settings is None:
        _settings = PartnerSettings()
    return _settings


def crypto() -> PersonalDataCrypto:
    """Return the cipher that opens the partners' key secrets, built once from the environment."""
    global _crypto
    if _crypto is None:
        _crypto = crypto_from_settings(SecuritySettings())
    return _crypto


# Polling interval: registration happens at import, so it is read from the environment here.
@registry.every("partners.outbox", PartnerSettings().outbox_poll_seconds)
def outbox(session: Session) -> Any:
    """Push due status changes to partner platforms (retries, dead letters)."""
    run = partner_outbox.deliver_due(session, crypto=crypto(), settings=settings())
    return {"delivered": run.delivered, "failed": run.failed, "dead": run.dead}


@registry.every("partners.cleanup", 600)
def cleanup(session: Session) -> Any:
    """Forget nonces that can no longer be replayed and expired idempotency records."""
    return partners.purge_expired(session, settings=settings())
