"""The audit log (等保): logins, writes with before/after, permission changes, exports and
unmasked reads. Rows are written in the caller's transaction; the table is append-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.principal import Principal
from geoserver.errors import PermissionDenied


@dataclass(frozen=True)
class AuditContext:
    """Where a request came from."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


NO_CONTEXT = AuditContext()


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def audit(
    session: Session,
    *,
    actor: Principal | None,
    action: str,
    object_kind: str | None = None,
    object_id: str | None = None,
    before: Any = None,
    after: Any = None,
    detail: dict[str, Any] | None = None,
    context: AuditContext = NO_CONTEXT,
    success: bool = True,
) -> None:
    """Append one audit row in the caller's transaction."""
    session.execute(
        text(
            "INSERT INTO audit_log (actor_user_id, actor_username, action, object_kind, "
            "object_id, before, after, detail, ip, user_agent, request_id, success) VALUES "
            "(:uid, :uname, :action, :kind, :oid, CAST(:before AS jsonb), CAST(:after AS jsonb), "
            "CAST(:detail AS jsonb), CAST(:ip AS inet), :ua, :rid, :ok)"
        ),
        {
            "uid": actor.user_id if actor else None,
            "uname": actor.username if actor else None,
            "action": action, "kind": object_kind, "oid": object_id,
            "before": _json(before), "after": _json(after), "detail": _json(detail or {}),
            "ip": context.ip, "ua": (context.user_agent or "")[:300] or None,
            "rid": context.request_id, "ok": success,
        },
    )


def query_audit(
    session: Session,
    *,
    actor: Principal,
    action: str | None = None,
    user_id: int | None = None,
    since: Any = None,
    until: Any = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Read the audit log, newest first; only the audit administrator may."""
    if not actor.can("audit.read"):
        raise PermissionDenied("the audit log is for the audit administrator")
    rows = session.execute(
        text(
            "SELECT id, at, actor_user_id, actor_username, action, object_kind, object_id, "
            "before, after, detail, host(ip) AS ip, user_agent, request_id, success "
            "FROM audit_log WHERE (CAST(:a AS text) IS NULL OR action = :a) "
            "AND (CAST(:u AS bigint) IS NULL OR actor_user_id = :u) "
            "AND (CAST(:s AS timestamptz) IS NULL OR at >= :s) "
            "AND (CAST(:t AS timestamptz) IS NULL OR at < :t) "
            "AND (CAST(:b AS bigint) IS NULL OR id < :b) ORDER BY id DESC LIMIT :l"
        ),
        {"a": action, "u": user_id, "s": since, "t": until, "b": before_id,
         "l": max(1, min(limit, 1000))},
    ).mappings().all()
    return [dict(r) for r in rows]
