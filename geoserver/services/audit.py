"""The audit log (等保): logins, writes with before/after, permission changes, exports and
unmasked reads. Rows are written in the caller's transaction; the table is append-only."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, PermissionDenied

_ACTION = re.compile(r"^[a-z_]+(\.[a-z_]+)*(\.\*)?$")


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
    object_kind: str | None = None,
    object_id: str | None = None,
) -> list[dict[str, Any]]:
    """Read the audit log, newest first; only the audit administrator may.

    ``action`` is an exact action (``user.update``) or a family (``permission.*``);
    ``user_id`` the acting account; ``before_id`` the keyset cursor (the last id seen).
    """
    if not actor.can("audit.read"):
        raise PermissionDenied("the audit log is for the audit administrator")
    prefix = None
    if action is not None:
        if not _ACTION.fullmatch(action):
            raise InvalidInput("action is a name like user.update or a family like permission.*",
                               field="action")
        if action.endswith(".*"):
            prefix, action = action[:-1], None
    rows = session.execute(
        text(
            "SELECT id, at, actor_user_id, actor_username, action, object_kind, object_id, "
            "before, after, detail, host(ip) AS ip, user_agent, request_id, success "
            "FROM audit_log WHERE (CAST(:a AS text) IS NULL OR action = :a) "
            "AND (CAST(:p AS text) IS NULL OR starts_with(action, :p)) "
            "AND (CAST(:u AS bigint) IS NULL OR actor_user_id = :u) "
            "AND (CAST(:k AS text) IS NULL OR object_kind = :k) "
            "AND (CAST(:o AS text) IS NULL OR object_id = :o) "
            "AND (CAST(:s AS timestamptz) IS NULL OR at >= :s) "
            "AND (CAST(:t AS timestamptz) IS NULL OR at < :t) "
            "AND (CAST(:b AS bigint) IS NULL OR id < :b) ORDER BY id DESC LIMIT :l"
        ),
        {"a": action, "p": prefix, "u": user_id, "k": object_kind, "o": object_id, "s": since,
         "t": until, "b": before_id, "l": max(1, min(limit, 1000))},
    ).mappings().all()
    return [dict(r) for r in rows]
