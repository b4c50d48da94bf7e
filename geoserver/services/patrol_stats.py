"""Patrol statistics (网格巡查统计) per region over a Shanghai day, ISO week or month, and the
daily targets per grid type they are measured against (巡查考核标准).

Workers are the grid leaders and full- and part-time grid workers of the region's grids, each
counted once, in their first grid (where their points are filed). A worker-day is patrolled
with at least one patrol record that day, and meets the targets when that day's mileage and
duration both reach the minimums of the grid's type. Only days up to today count as
worker-days, so a week in progress is not marked down for days still to come. Coverage of a
grid is the share of its H3 cells visited by any of its patrols in the period; a region's is
the mean over its grids. Every figure is also given per child region, ready for a choropleth
joined on ``code``.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ, PatrolSettings
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit
from geoserver.services.patrols import DEFAULT_SETTINGS, check_day, day_bounds, require

PERIODS = ("day", "week", "month")
GRID_TYPES = ("general", "key", "dedicated")
#: Explicit date ranges (date_from..date_to) may span at most this many days.
MAX_RANGE_DAYS = 93
#: Targets above these are typing mistakes (200 km on foot, more than a day).
MAX_TARGET_MILEAGE_M = 200_000.0
MAX_TARGET_DURATION_S = 86_400


def period_days(period: str, day: date) -> tuple[date, date]:
    """Return the first and last day of the day, ISO week (Monday first) or month of ``day``."""
    if period == "day":
        return day, day
    if period == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=6)
    if period == "month":
        last = calendar.monthrange(day.year, day.month)[1]
        return day.replace(day=1), day.replace(day=last)
    raise InvalidInput(f"period must be one of {', '.join(PERIODS)}", field="period")


def resolve_period(period: str | None, day: date | None, date_from: date | None,
                   date_to: date | None, today: date) -> tuple[str, date, date]:
    """Return (period name, first, last): a calendar period around ``day`` (default today), or
    an explicit range of at most MAX_RANGE_DAYS days."""
    for value, field in ((day, "date"), (date_from, "date_from"), (date_to, "date_to")):
        check_day(value, field)
    if period is not None or (date_from is None and date_to is None):
        if date_from is not None or date_to is not None:
            raise InvalidInput("give either period (with date) or date_from/date_to",
                               field="period")
        name = period or "day"
        return (name, *period_days(name, day or today))
    if day is not None:
        raise InvalidInput("date goes with period; use date_from/date_to alone", field="date")
    first, last = date_from or date_to or today, date_to or date_from or today
    if last < first:
        raise InvalidInput("date_to is before date_from", field="date_to")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise InvalidInput(f"the range may span at most {MAX_RANGE_DAYS} days", field="date_to")
    return "range", first, last


# One row per worker: their grid, the period's sums, patrolled days and days meeting each
# target, whether they are online now, and their grid's coverage over the period.
_WORKERS = """
WITH w AS (
    SELECT DISTINCT ON (sa.user_id) sa.user_id, g.code AS grid_code, g.name AS grid_name,
           coalesce(g.grid_type, 'general')::text AS grid_type, g.path::text AS grid_path
    FROM staff_assignment sa
    JOIN region g ON g.code = sa.region_code AND g.valid_to IS NULL
    WHERE sa.valid_to IS NULL
      AND sa.position IN ('grid_leader', 'grid_worker', 'part_time_grid_worker')
      AND g.level IN ('grid', 'micro_grid') AND g.path <@ CAST(:rpath AS ltree)
    ORDER BY sa.user_id, sa.id
), s AS (
    SELECT user_id, grid_code, (started_at AT TIME ZONE 'Asia/Shanghai')::date AS day,
           mileage_m, duration_s, grid_cells, grid_cell_count, coverage_share
    FROM patrol_session
    WHERE deleted_at IS NULL AND started_at >= :d0 AND started_at < :d1
      AND path <@ CAST(:rpath AS ltree)
), d AS (
    SELECT s.user_id, s.day, sum(s.mileage_m) AS mileage_m, sum(s.duration_s) AS duration_s,
           count(*) AS sessions,
           sum(s.mileage_m) >= min(t.min_mileage_m) AS mileage_met,
           sum(s.duration_s) >= min(t.min_duration_s) AS duration_met
    FROM s JOIN w ON w.user_id = s.user_id
    LEFT JOIN patrol_target t ON t.grid_type::text = w.grid_type
    GROUP BY 1, 2
)
"""

_WORKER_ROWS = text(_WORKERS + """,
cov AS (
    -- Sessions built before cells were kept count with their own coverage share.
    SELECT s.grid_code, count(DISTINCT c.cell) AS covered, max(s.grid_cell_count) AS cells,
           max(s.coverage_share) AS best
    FROM s LEFT JOIN LATERAL unnest(s.grid_cells) AS c(cell) ON true
    GROUP BY s.grid_code
)
SELECT x.*, cov.covered, cov.cells, cov.best FROM (
    SELECT w.user_id, u.username, u.display_name, w.grid_code, w.grid_name, w.grid_type,
           w.grid_path, coalesce(sum(d.mileage_m), 0)::float8 AS mileage_m,
           coalesce(sum(d.duration_s), 0)::bigint AS duration_s,
           coalesce(sum(d.sessions), 0)::integer AS sessions,
           count(d.day)::integer AS days_patrolled,
           count(d.day) FILTER (WHERE d.mileage_met)::integer AS days_mileage_met,
           count(d.day) FILTER (WHERE d.duration_met)::integer AS days_duration_met,
           count(d.day) FILTER (WHERE d.mileage_met AND d.duration_met)::integer AS days_met,
           coalesce(bool_or(l.ts > now() - make_interval(secs => :online)), false) AS online
    FROM w
    LEFT JOIN d ON d.user_id = w.user_id
    LEFT JOIN patrol_live l ON l.user_id = w.user_id
    LEFT JOIN app_user u ON u.id = w.user_id
    GROUP BY w.user_id, u.username, u.display_name, w.grid_code, w.grid_name, w.grid_type,
             w.grid_path
) x LEFT JOIN cov ON cov.grid_code = x.grid_code
ORDER BY x.grid_code, x.user_id
""")

_DAY_ROWS = text(_WORKERS + """
SELECT day, count(*)::integer AS workers_patrolled,
       count(*) FILTER (WHERE mileage_met AND duration_met)::integer AS workers_met,
       sum(mileage_m)::float8 AS mileage_m, sum(duration_s)::bigint AS duration_s,
       sum(sessions)::integer AS sessions
FROM d GROUP BY day ORDER BY day
""")


def _rate(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def grid_coverage(row: Any) -> float:
    """Return a worker's grid coverage over the period (0 when the grid was not patrolled)."""
    union = row.covered / row.cells if row.cells else 0.0
    return min(1.0, max(union, row.best or 0.0))


def figures(rows: Sequence[Any], days: int) -> dict[str, Any]:
    """Return the figures of a group of worker rows over ``days`` worker-days each."""
    workers = len(rows)
    online = sum(1 for r in rows if r.online)
    patrolled = sum(1 for r in rows if r.days_patrolled)
    worker_days = workers * days
    met = sum(r.days_met for r in rows)
    mileage_met = sum(r.days_mileage_met for r in rows)
    duration_met = sum(r.days_duration_met for r in rows)
    grids = {r.grid_code: grid_coverage(r) for r in rows}
    return {
        "workers": workers, "online": online, "online_rate": _rate(online, workers),
        "patrolled": patrolled, "not_patrolled": workers - patrolled,
        "patrolled_rate": _rate(patrolled, workers),
        "worker_days": worker_days,
        "worker_days_patrolled": sum(r.days_patrolled for r in rows),
        "worker_days_met": met, "worker_days_not_met": worker_days - met,
        "met_rate": _rate(met, worker_days),
        "mileage_days_met": mileage_met, "mileage_days_not_met": worker_days - mileage_met,
        "duration_days_met": duration_met, "duration_days_not_met": worker_days - duration_met,
        "mileage_m": round(sum(r.mileage_m for r in rows), 1),
        "duration_s": int(sum(r.duration_s for r in rows)),
        "sessions": int(sum(r.sessions for r in rows)),
        "grids": len(grids), "grids_patrolled": sum(1 for v in grids.values() if v > 0),
        "coverage": round(sum(grids.values()) / len(grids), 4) if grids else None,
    }


def _worker(row: Any) -> dict[str, Any]:
    return {"user_id": row.user_id, "username": row.username,
            "display_name": row.display_name, "grid_code": row.grid_code,
            "grid_name": row.grid_name, "grid_type": row.grid_type,
            "mileage_m": round(row.mileage_m, 1), "duration_s": int(row.duration_s),
            "sessions": row.sessions, "days_patrolled": row.days_patrolled,
            "days_mileage_met": row.days_mileage_met,
            "days_duration_met": row.days_duration_met, "days_met": row.days_met,
            "coverage": round(grid_coverage(row), 4), "online": bool(row.online)}


def _children(session: Session, region: Any, rows: Iterable[Any],
              days: int) -> list[dict[str, Any]]:
    """Return the figures of every child region (with no workers: zeros and null rates)."""
    depth = region.path.count(".") + 1
    groups: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        labels = r.grid_path.split(".")
        if len(labels) > depth:
            groups[".".join(labels[:depth + 1])].append(r)
    children = session.execute(
        text("SELECT code, name, level::text AS level, grid_type::text AS grid_type, "
             "path::text AS path FROM region WHERE parent_code = :c AND valid_to IS NULL "
             "ORDER BY code"), {"c": region.code}).all()
    return [{"code": c.code, "name": c.name, "level": c.level, "grid_type": c.grid_type,
             **figures(groups.get(c.path, []), days)} for c in children]


def _series(session: Session, params: dict[str, Any], first: date,
            last: date) -> list[dict[str, Any]]:
    """Return per-day figures over the period, zero-filled."""
    by_day = {r.day: r for r in session.execute(_DAY_ROWS, params)}
    out = []
    for i in range((last - first).days + 1):
        d = first + timedelta(days=i)
        r = by_day.get(d)
        out.append({"date": d.isoformat(), "workers_patrolled": r.workers_patrolled if r else 0,
                    "workers_met": r.workers_met if r else 0,
                    "mileage_m": round(r.mileage_m, 1) if r else 0.0,
                    "duration_s": int(r.duration_s) if r else 0,
                    "sessions": r.sessions if r else 0})
    return out


def _region(session: Session, actor: Principal, code: str) -> Any:
    region = session.execute(
        text("SELECT code, name, level::text AS level, path::text AS path FROM region "
             "WHERE code = :c AND valid_to IS NULL"), {"c": code}).first()
    if region is None or not actor.covers(region.path):
        raise NotFound("no such region in your jurisdiction")
    return region


def patrol_stats(session: Session, *, actor: Principal, region_code: str,
                 period: str | None = None, day: date | None = None,
                 date_from: date | None = None, date_to: date | None = None,
                 detail: bool = True,
                 settings: PatrolSettings = DEFAULT_SETTINGS) -> dict[str, Any]:
    """Return a region's patrol statistics over a Shanghai day, ISO week or month around
    ``day`` (default: today), or over date_from..date_to.

    Totals, a per-day series, one row per child region (choropleth-ready) and, with
    ``detail``, one row per worker; ``targets`` lists the thresholds applied.

    Raises:
        InvalidInput: a bad period or range. NotFound: a region outside the jurisdiction.
    """
    require(actor, "patrol.read")
    today = datetime.now(GOVERNANCE_TZ).date()
    name, first, last = resolve_period(period, day, date_from, date_to, today)
    region = _region(session, actor, region_code)
    d0, d1 = day_bounds(first, last)
    params = {"rpath": region.path, "d0": d0, "d1": d1, "online": settings.online_minutes * 60}
    rows = session.execute(_WORKER_ROWS, params).all()
    # Worker-days count the days up to today: a week in progress has fewer.
    days = max(0, (min(last, today) - first).days + 1)
    out: dict[str, Any] = {
        "region_code": region.code,
        "region": {"code": region.code, "name": region.name, "level": region.level},
        "period": name, "date_from": first.isoformat(), "date_to": last.isoformat(),
        "days": (last - first).days + 1, "days_counted": days,
        "targets": list_targets(session, actor=actor), **figures(rows, days),
        "series": _series(session, params, first, last),
        "children": _children(session, region, rows, days),
    }
    if detail:
        out["workers_detail"] = [_worker(r) for r in rows]
    return out


# --- targets -------------------------------------------------------------------------------------

_TARGETS = ("SELECT grid_type::text AS grid_type, min_mileage_m, min_duration_s, updated_at, "
            "updated_by FROM patrol_target")


def list_targets(session: Session, *, actor: Principal) -> list[dict[str, Any]]:
    """Return the daily targets (minimum mileage and duration) of each grid type."""
    require(actor, "patrol.read")
    return [dict(r._mapping) for r in session.execute(text(_TARGETS + " ORDER BY grid_type"))]


def set_target(session: Session, *, actor: Principal, grid_type: str, min_mileage_m: float,
               min_duration_s: int, context: AuditContext = NO_CONTEXT) -> dict[str, Any]:
    """Set a grid type's daily targets (patrol.target); audited with before and after.

    Raises:
        InvalidInput: an unknown grid type or a target out of range.
    """
    require(actor, "patrol.target")
    if grid_type not in GRID_TYPES:
        raise InvalidInput(f"grid_type must be one of {', '.join(GRID_TYPES)}", field="grid_type")
    if not 0 <= min_mileage_m <= MAX_TARGET_MILEAGE_M:
        raise InvalidInput(f"min_mileage_m must be 0..{MAX_TARGET_MILEAGE_M:g} metres",
                           field="min_mileage_m")
    if not 0 <= min_duration_s <= MAX_TARGET_DURATION_S:
        raise InvalidInput(f"min_duration_s must be 0..{MAX_TARGET_DURATION_S} seconds",
                           field="min_duration_s")
    before = session.execute(text(_TARGETS + " WHERE grid_type = CAST(:g AS grid_type)"),
                             {"g": grid_type}).first()
    after = session.execute(text(
        "INSERT INTO patrol_target AS t (grid_type, min_mileage_m, min_duration_s, "
        "updated_by) VALUES (CAST(:g AS grid_type), :m, :d, :by) ON CONFLICT (grid_type) "
        "DO UPDATE SET min_mileage_m = EXCLUDED.min_mileage_m, min_duration_s = "
        "EXCLUDED.min_duration_s, updated_by = EXCLUDED.updated_by, updated_at = now() "
        "RETURNING grid_type::text AS grid_type, min_mileage_m, min_duration_s, "
        "updated_at, updated_by"),
        {"g": grid_type, "m": float(min_mileage_m), "d": int(min_duration_s),
         "by": actor.user_id}).one()
    audit(session, actor=actor, action="patrol.target", object_kind="patrol_target",
          object_id=grid_type, before=dict(before._mapping) if before else None,
          after=dict(after._mapping), context=context)
    return dict(after._mapping)
