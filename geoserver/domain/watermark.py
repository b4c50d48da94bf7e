"""The export watermark (等保): who exported, and when, on every exported file."""

from __future__ import annotations

from datetime import datetime

from geoserver.config import GOVERNANCE_TZ
from geoserver.domain.principal import Principal


def watermark(user: Principal, now: datetime | None = None) -> str:
    """Return the watermark line: who exported, when (Shanghai time)."""
    stamp = (now or datetime.now(GOVERNANCE_TZ)).astimezone(GOVERNANCE_TZ)
    return (f"gridgov 导出 / exported by {user.username} at {stamp:%Y-%m-%d %H:%M:%S} "
            "(Asia/Shanghai) — 内部资料 注意保密")
