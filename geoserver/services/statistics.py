"""Statistics (研判分析): distributions, trends, peer rankings, region tables and hot spots.

Subjects: person (实有人口), residence (住所/房屋), building, key_place (重点场所), enterprise
and event. Base-data figures come from ``stat_object_daily`` and event figures from
``stat_event_daily``, tables the job runner refreshes (geoserver/jobs/statistics.py); every
answer carries ``refreshed_at`` (None: never refreshed yet). Both tables have RLS on path, so a
caller's sums cover exactly their jurisdiction. Days, weeks and months are Asia/Shanghai's.

Rules:

- Permissions: ``statistics.read`` and the subject's read permission (person.read,
  building.read for residences and buildings, place.read, enterprise.read, event.read).
- Regions: ``region_code`` must be a current region in the caller's scope; without it the
  caller's single scope root is used (several roots: say which).
- Rates: per 1,000 residents (persons counted in the same region) and per km² (region area).
- Rankings (通报排名) follow the aggregate visibility rule: the caller names a region of their
  own, and ``gridgov_meta.peer_totals`` (SECURITY DEFINER) returns that region's and its
  siblings' totals, and nothing else, whatever the caller's scope.
- Hot spots of events count ``stat_event_cell_daily`` (events per day, path, type and H3
  cell, refreshed with the other event aggregates); of buildings, the rows' stored H3 cells
  live. The Gi* statistic itself is geoserver.domain.hotspots.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import h3.api.basic_int as h3
import numpy as np
from shapely import wkb
from shapely.geometry import mapping
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.config import GOVERNANCE_TZ
from geoserver.domain.hotspots import (
    classify,
    gi_star_values,
    p_value,
    ring_neighbours,
    windows,
)
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, PermissionDenied
from geoserver.geo.h3cells import cell_boundary, polygon_cells, to_unsigned

SUBJECTS = ("person", "residence", "building", "key_place", "enterprise", "event")
SUBJECT_PERMISSION = {"person": "person.read", "residence": "building.read",
                      "building": "building.read", "key_place": "place.read",
                      "enterprise": "enterprise.read", "event": "event.read"}
UNITS = ("day", "week", "month")
#: Longest period a trend may cover, per unit (a chart of thousands of bars helps no one).
MAX_SPAN_DAYS = {"day": 400, "week": 3 * 366, "month": 10 * 366}
MAX_PERIOD_DAYS = 3 * 366
DEFAULT_PERIOD_DAYS = 30
MEASURES = ("total", "per_1000", "per_km2")
HOTSPOT_RESOLUTIONS = (7, 8, 9)
MAX_STUDY_CELLS = 60_000
#: Dates outside these are mistakes (and near date.max would overflow the period arithmetic).
EARLIEST, LATEST = date(1949, 10, 1), date(2100, 12, 31)
_REGION_CODE = re.compile(r"^[0-9A-Za-z]{2,24}$")
_TYPE_CODE = re.compile(r"^[0-9A-Za-z_]{1,32}$")


@dataclass(frozen=True)
class Period:
    """Days from ``start`` to ``end``, both included, in Asia/Shanghai."""

    start: date
    end: date

    @property
    def days(self) -> int:
        """Return the number of days."""
        return (self.end - self.start).days + 1

    def bounds(self) -> tuple[datetime, datetime]:
        """Return [start, end) as aware datetimes at Shanghai midnight."""
        lo = datetime.combine(self.start, time(), GOVERNANCE_TZ)
        return lo, datetime.combine(self.end + timedelta(days=1), time(), GOVERNANCE_TZ)

    def previous(self) -> Period:
        """Return the period of the same length just before this one."""
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def as_dict(self) -> dict[str, str]:
        """Return the period as ISO dates."""
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


@dataclass(frozen=True)
class Area:
    """The region a statistic is about."""

    code: str
    name: str
    level: str
    path: str
    area_km2: float

    def as_dict(self) -> dict[str, Any]:
        """Return code, name and level."""
        return {"code": self.code, "name": self.name, "level": self.level}


# --- input ------------------------------------------------------------------------------------


def today() -> date:
    """Return today's date in Asia/Shanghai."""
    return datetime.now(GOVERNANCE_TZ).date()


def make_period(date_from: date | None, date_to: date | None,
                *, max_days: int = MAX_PERIOD_DAYS) -> Period:
    """Return the period asked for (default: the last 30 days), or raise InvalidInput."""
    end = date_to or today()
    start = date_from or end - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    for name, day in (("date_to", end), ("date_from", start)):
        if not EARLIEST <= day <= LATEST:
            raise InvalidInput(f"{name} must lie between {EARLIEST} and {LATEST}", field=name)
    if start > end:
        raise InvalidInput("date_from is after date_to", field="date_from")
    period = Period(start, end)
    if period.days > max_days:
        raise InvalidInput(f"the period may span at most {max_days} days", field="date_from")
    return period


def check_category(category: str | None) -> None:
    """Raise InvalidInput for a category no table could hold (too long, control characters)."""
    if category is not None and (len(category) > 100
                                 or any(unicodedata.category(ch)[0] == "C" for ch in category)):
        raise InvalidInput("not a category", field="category")


def check_subject(actor: Principal, subject: str) -> None:
    """Raise unless the subject exists and the actor may read its statistics."""
    if subject not in SUBJECTS:
        raise InvalidInput(f"subject must be one of {', '.join(SUBJECTS)}", field="subject")
    for permission in ("statistics.read", SUBJECT_PERMISSION[subject]):
        if not actor.can(permission):
            raise PermissionDenied(f"needs the permission {permission}")


def resolve_area(session: Session, actor: Principal, region_code: str | None) -> Area:
    """Return the region a statistic is about: the one named, else the caller's scope root."""
    if region_code is None:
        region_code = _scope_root(session, actor)
    elif not _REGION_CODE.match(region_code):
        raise InvalidInput("not a region code", field="region_code")
    row = session.execute(
        text("SELECT code, name, level::text AS level, path::text AS path, area_km2 "
             "FROM region WHERE code = :c AND valid_to IS NULL"), {"c": region_code},
    ).first()
    if row is None or not actor.covers(row.path):
        raise InvalidInput("unknown region code, or outside your jurisdiction",
                           field="region_code")
    return Area(row.code, row.name, row.level, row.path, float(row.area_km2))


def _scope_root(session: Session, actor: Principal) -> str:
    roots = list(actor.scope)
    if len(roots) != 1:
        raise InvalidInput("your jurisdiction has several regions: give region_code",
                           field="region_code")
    if roots[0]:
        return roots[0].rsplit(".", 1)[-1]
    code = session.execute(text("SELECT code FROM region WHERE valid_to IS NULL "
                                "AND parent_code IS NULL ORDER BY code LIMIT 2")).scalars().all()
    if len(code) != 1:
        raise InvalidInput("give region_code", field="region_code")
    return str(code[0])


def event_type_ids(session: Session, code: str | None) -> list[int] | None:
    """Return the ids of an event type and all its sub-types (None: every type)."""
    if code is None:
        return None
    if not _TYPE_CODE.match(code):
        raise InvalidInput("not an event type code", field="event_type")
    ids = session.execute(text(
        "WITH RECURSIVE t AS (SELECT id FROM event_type WHERE code = :c UNION ALL "
        "SELECT e.id FROM event_type e JOIN t ON e.parent_id = t.id) SELECT id FROM t"),
        {"c": code}).scalars().all()
    if not ids:
        raise InvalidInput(f"unknown event type {code!r}", field="event_type")
    return [int(i) for i in ids]


def refreshed_at(session: Session, subject: str) -> datetime | None:
    """Return when the aggregate behind a subject was last refreshed."""
    name = "events" if subject == "event" else "objects"
    return session.execute(text("SELECT refreshed_at FROM stat_refresh WHERE name = :n"),
                           {"n": name}).scalar()


# --- aggregate sums ---------------------------------------------------------------------------


#: stat_event_monthly keeps paths down to townships (city.county.township).
ROLLUP_DEPTH = 3
_DAILY = ("SELECT day, path, event_type_id, reported, closed FROM stat_event_daily "
          "WHERE path <@ CAST(:path AS ltree) AND day BETWEEN {lo} AND {hi}")
_MONTHLY = ("SELECT month AS day, path, event_type_id, reported, closed FROM stat_event_monthly "
            "WHERE path <@ CAST(:path AS ltree) AND month BETWEEN :m0 AND :m1")


def whole_months(period: Period) -> tuple[date, date] | None:
    """Return the first days of the first and last whole months inside a period, or None."""
    first = period.start if period.start.day == 1 else _next_month(period.start)
    last = period.end.replace(day=1)
    if _next_month(period.end) - timedelta(days=1) != period.end:
        last = (last - timedelta(days=1)).replace(day=1)
    return (first, last) if first <= last else None


def _next_month(d: date) -> date:
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


def event_relation(depth: int, period: Period, *, monthly: bool) -> tuple[str, dict[str, Any]]:
    """Return SQL for rows (day, path, event_type_id, reported, closed) under :path in the period.

    Whole months come from the monthly rollup when ``monthly`` is allowed and the deepest path
    the caller groups by is at most ROLLUP_DEPTH labels (``depth``); the days before and after
    them from the daily table. The monthly rows carry the month's first day as ``day``.
    """
    months = whole_months(period) if monthly and depth <= ROLLUP_DEPTH else None
    if months is None:
        return _DAILY.format(lo=":d0", hi=":d1"), {}
    m0, m1 = months
    parts, params = [_MONTHLY], {"m0": m0, "m1": m1}
    if period.start < m0:
        parts.append(_DAILY.format(lo=":d0", hi=":h1"))
        params["h1"] = m0 - timedelta(days=1)
    tail = _next_month(m1)
    if tail <= period.end:
        parts.append(_DAILY.format(lo=":t0", hi=":d1"))
        params["t0"] = tail
    return " UNION ALL ".join(parts), params


def _depth(area: Area) -> int:
    return area.path.count(".") + 1


def _child_sums(subject: str, *, category: bool, types: bool, param: str = "subject",
                events: str = "") -> str:
    """Return SQL summing a subject's aggregate per child path of :path (NULL: the region itself).

    One pass over the region's aggregate rows, grouped by the first label below it, instead of
    one sub-select per child. ``events`` is the event relation (see event_relation).
    """
    child = ("CASE WHEN nlevel(x.path) > nlevel(CAST(:path AS ltree)) "
             "THEN subpath(x.path, 0, nlevel(CAST(:path AS ltree)) + 1) END")
    if subject == "event":
        cond = " WHERE x.event_type_id = ANY (:types)" if types else ""
        return f"SELECT {child} AS child, sum(x.reported) AS n FROM ({events}) x{cond} GROUP BY 1"
    cond = " AND x.category = :category" if category else ""
    return (f"SELECT {child} AS child, sum(x.n) AS n FROM stat_object_daily x "
            f"WHERE x.subject = :{param} AND x.path <@ CAST(:path AS ltree){cond} GROUP BY 1")


def rates(subject: str, n: float, residents: float, area_km2: float) -> dict[str, float | None]:
    """Return per-1,000-residents and per-km² rates (None where the base is 0 or meaningless)."""
    per_1000 = None if subject == "person" or not residents else round(n * 1000 / residents, 3)
    per_km2 = round(n / area_km2, 3) if area_km2 else None
    return {"per_1000": per_1000, "per_km2": per_km2}


def _params(subject: str, period: Period, category: str | None,
            types: Sequence[int] | None) -> dict[str, Any]:
    return {"subject": subject, "d0": period.start, "d1": period.end, "category": category,
            "types": list(types or [])}


# --- distribution -----------------------------------------------------------------------------


def distribution(
    session: Session,
    *,
    actor: Principal,
    subject: str,
    region_code: str | None = None,
    by: str = "region",
    category: str | None = None,
    event_type: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict[str, Any]:
    """Return a subject's distribution over the children of a region, or by category.

    By region each row has n, residents, per_1000, per_km2 and share (choropleth-ready);
    by category (event type for events) n and share. Events count reports in the period.
    """
    check_subject(actor, subject)
    check_category(category)
    if by not in ("region", "category"):
        raise InvalidInput("by must be region or category", field="by")
    area = resolve_area(session, actor, region_code)
    period = make_period(date_from, date_to)
    types = event_type_ids(session, event_type) if subject == "event" else None
    rows = (_by_region(session, subject, area, period, category, types) if by == "region"
            else _by_category(session, subject, area, period, types))
    total = sum(r["n"] for r in rows)
    for r in rows:
        r["share"] = round(r["n"] / total, 4) if total else None
    return {"subject": subject, "by": by, "region": area.as_dict(),
            "period": period.as_dict() if subject == "event" else None, "total": total,
            "rows": rows, "refreshed_at": refreshed_at(session, subject)}


def _by_region(session: Session, subject: str, area: Area, period: Period,
               category: str | None, types: Sequence[int] | None) -> list[dict[str, Any]]:
    events, extra = event_relation(_depth(area) + 1, period, monthly=True)
    sums = _child_sums(subject, category=category is not None, types=types is not None,
                       events=events)
    res_sql = _child_sums("person", category=False, types=False, param="person")
    rows = session.execute(text(
        f"WITH n AS ({sums}), r AS ({res_sql}) "
        "SELECT c.code, c.name, c.level::text AS level, c.area_km2, c.grid_type::text AS gt, "
        "coalesce(n.n, 0) AS n, coalesce(r.n, 0) AS residents FROM region c "
        "LEFT JOIN n ON n.child = c.path LEFT JOIN r ON r.child = c.path "
        "WHERE c.valid_to IS NULL AND c.parent_code = :code "
        "UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, n.n, NULL FROM n WHERE n.child IS NULL "
        "ORDER BY 1 NULLS LAST"),
        {**_params(subject, period, category, types), **extra, "code": area.code,
         "path": area.path, "person": "person"}).mappings().all()
    out: list[dict[str, Any]] = []
    for r in rows:
        n = int(r["n"])
        if r["code"] is None:
            # Rows located in the region itself but in none of its children (no grid there).
            out.append({"code": None, "name": f"{area.name}（未落入下级）", "level": None,
                        "grid_type": None, "n": n, "residents": None, "area_km2": None,
                        "per_1000": None, "per_km2": None})
            continue
        residents, area_km2 = int(r["residents"]), float(r["area_km2"])
        out.append({"code": r["code"], "name": r["name"], "level": r["level"],
                    "grid_type": r["gt"], "n": n, "residents": residents,
                    "area_km2": round(area_km2, 4), **rates(subject, n, residents, area_km2)})
    return [r for r in out if r["code"] is not None or r["n"]]


def _by_category(session: Session, subject: str, area: Area, period: Period,
                 types: Sequence[int] | None) -> list[dict[str, Any]]:
    extra: dict[str, Any] = {}
    if subject == "event":
        events, extra = event_relation(_depth(area), period, monthly=True)
        cond = " WHERE e.event_type_id = ANY (:types)" if types is not None else ""
        sql = ("SELECT t.code AS category, t.name AS label, sum(e.reported) AS n "
               f"FROM ({events}) e JOIN event_type t ON t.id = e.event_type_id{cond} "
               "GROUP BY t.code, t.name ORDER BY n DESC, t.code")
    else:
        sql = ("SELECT o.category, o.category AS label, sum(o.n) AS n FROM stat_object_daily o "
               "WHERE o.subject = :subject AND o.path <@ CAST(:path AS ltree) "
               "GROUP BY o.category ORDER BY n DESC, o.category")
    rows = session.execute(text(sql), {**_params(subject, period, None, types), **extra,
                                       "path": area.path}).mappings().all()
    return [{"category": r["category"], "label": r["label"], "n": int(r["n"])} for r in rows]


# --- trend ------------------------------------------------------------------------------------


def trend(
    session: Session,
    *,
    actor: Principal,
    subject: str,
    region_code: str | None = None,
    unit: str = "day",
    category: str | None = None,
    event_type: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict[str, Any]:
    """Return counts per day, week (Monday first) or month, zero-filled, in Asia/Shanghai.

    Events: reported and closed per period of report; base data: objects registered.
    """
    check_subject(actor, subject)
    check_category(category)
    if unit not in UNITS:
        raise InvalidInput(f"unit must be one of {', '.join(UNITS)}", field="unit")
    area = resolve_area(session, actor, region_code)
    period = make_period(date_from, date_to, max_days=MAX_SPAN_DAYS[unit])
    types = event_type_ids(session, event_type) if subject == "event" else None
    found = {r["bucket"]: r for r in _trend_rows(session, subject, area, period, unit,
                                                  category, types)}
    rows = []
    for bucket in buckets(period, unit):
        r = found.get(bucket)
        row = {"period": bucket.isoformat(), "n": int(r["n"]) if r else 0}
        if subject == "event":
            row["closed"] = int(r["closed"]) if r else 0
        rows.append(row)
    return {"subject": subject, "unit": unit, "region": area.as_dict(),
            "period": period.as_dict(), "rows": rows,
            "refreshed_at": refreshed_at(session, subject)}


def _trend_rows(session: Session, subject: str, area: Area, period: Period, unit: str,
                category: str | None, types: Sequence[int] | None) -> list[Mapping[Any, Any]]:
    extra: dict[str, Any] = {}
    if subject == "event":
        # Months from the rollup only for monthly buckets (weeks straddle months).
        events, extra = event_relation(_depth(area), period, monthly=unit == "month")
        cond = " WHERE e.event_type_id = ANY (:types)" if types is not None else ""
        sql = ("SELECT date_trunc(:unit, e.day)::date AS bucket, sum(e.reported) AS n, "
               f"sum(e.closed) AS closed FROM ({events}) e{cond} GROUP BY 1")
    else:
        cond = " AND o.category = :category" if category is not None else ""
        sql = ("SELECT date_trunc(:unit, o.day)::date AS bucket, sum(o.n) AS n "
               "FROM stat_object_daily o WHERE o.subject = :subject "
               f"AND o.path <@ CAST(:path AS ltree) AND o.day BETWEEN :d0 AND :d1{cond} "
               "GROUP BY 1")
    params = {**_params(subject, period, category, types), **extra, "path": area.path,
              "unit": unit}
    return list(session.execute(text(sql), params).mappings().all())


def buckets(period: Period, unit: str) -> list[date]:
    """Return the first day of every day, week (Monday) or month touching the period."""
    if unit == "day":
        return [period.start + timedelta(days=i) for i in range(period.days)]
    if unit == "week":
        first = period.start - timedelta(days=period.start.weekday())
        return [first + timedelta(weeks=i) for i in range((period.end - first).days // 7 + 1)]
    out, d = [], period.start.replace(day=1)
    while d <= period.end:
        out.append(d)
        d = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


# --- ranking ----------------------------------------------------------------------------------


def ranking(
    session: Session,
    *,
    actor: Principal,
    subject: str,
    region_code: str | None = None,
    measure: str | None = None,
    category: str | None = None,
    event_type: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict[str, Any]:
    """Rank a region of the caller's among its peers (通报排名): totals only, never rows.

    ``measure``: total, per_1000 (default; per_km2 for persons). Ties share a rank (1, 2, 2, 4).
    """
    check_subject(actor, subject)
    check_category(category)
    measure = measure or ("per_km2" if subject == "person" else "per_1000")
    if measure not in MEASURES:
        raise InvalidInput(f"measure must be one of {', '.join(MEASURES)}", field="measure")
    area = resolve_area(session, actor, region_code)
    period = make_period(date_from, date_to)
    types = event_type_ids(session, event_type) if subject == "event" else None
    rows = session.execute(text(
        "SELECT * FROM gridgov_meta.peer_totals(:code, :subject, :category, :d0, :d1, "
        "CAST(:types AS bigint[]))"),
        {"code": area.code, "subject": subject, "category": category, "d0": period.start,
         "d1": period.end, "types": list(types) if types is not None else None},
    ).mappings().all()
    peers = [{"code": r["code"], "name": r["name"], "level": r["level"], "own": r["own"],
              "total": int(r["total"]), "residents": int(r["residents"]),
              "area_km2": round(float(r["area_km2"]), 4),
              **rates(subject, int(r["total"]), int(r["residents"]), float(r["area_km2"]))}
             for r in rows]
    return {"subject": subject, "measure": measure, "region": area.as_dict(),
            "period": period.as_dict() if subject == "event" else None,
            "rows": rank_rows(peers, measure),
            "refreshed_at": refreshed_at(session, subject)}


def rank_rows(rows: list[dict[str, Any]], measure: str) -> list[dict[str, Any]]:
    """Sort rows by a measure, highest first (None last), and number them 1, 2, 2, 4."""
    ordered = sorted(rows, key=lambda r: (r[measure] is None, -(r[measure] or 0), r["code"]))
    previous: Any = object()
    for i, row in enumerate(ordered, 1):
        row["rank"] = ordered[i - 2]["rank"] if i > 1 and row[measure] == previous else i
        previous = row[measure]
    return ordered


# --- region table (list and export) -----------------------------------------------------------

_TABLE_SUBJECTS = ("person", "residence", "building", "key_place", "enterprise")


def region_table(
    session: Session,
    *,
    actor: Principal,
    region_code: str | None = None,
    level: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one row of indicators per region of a level under a region (default: children).

    Columns: code, name, level, parent_code, area_km2, a count per subject the caller may read
    (None otherwise), events and closed events in the period, and rates. Checks run at once.
    """
    if not actor.can("statistics.read"):
        raise PermissionDenied("needs the permission statistics.read")
    area = resolve_area(session, actor, region_code)
    period = make_period(date_from, date_to)
    level = level or _child_level(session, area)
    if level not in ("county", "township", "village", "grid", "micro_grid"):
        raise InvalidInput("level must be county, township, village, grid or micro_grid",
                           field="level")
    readable = [s for s in _TABLE_SUBJECTS if actor.can(SUBJECT_PERMISSION[s])]
    return _table_rows(session, area, period, level, readable, actor.can("event.read"))


def _child_level(session: Session, area: Area) -> str:
    level = session.execute(text("SELECT level::text FROM region WHERE parent_code = :c "
                                 "AND valid_to IS NULL ORDER BY region_level_rank(level) "
                                 "LIMIT 1"), {"c": area.code}).scalar()
    if level is None:
        raise InvalidInput(f"region {area.code} has no sub-regions", field="region_code")
    return str(level)


def _table_rows(session: Session, area: Area, period: Period, level: str,
                readable: Sequence[str], events: bool) -> Iterator[dict[str, Any]]:
    sums = ", ".join(f"sum(o.n) FILTER (WHERE o.subject = '{s}') AS {s}" for s in _TABLE_SUBJECTS)
    result = session.execute(text(
        "SELECT r.code, r.name, r.level::text AS level, r.parent_code, r.area_km2, "
        f"{', '.join(f'o.{s}' for s in _TABLE_SUBJECTS)}, ev.events, ev.closed FROM region r "
        f"LEFT JOIN LATERAL (SELECT {sums} FROM stat_object_daily o WHERE o.path <@ r.path) o "
        "ON true LEFT JOIN LATERAL (SELECT sum(e.reported) AS events, sum(e.closed) AS closed "
        "FROM stat_event_daily e WHERE e.path <@ r.path AND e.day BETWEEN :d0 AND :d1) ev "
        "ON true WHERE r.valid_to IS NULL AND r.path <@ CAST(:path AS ltree) "
        "AND r.level = CAST(:level AS region_level) ORDER BY r.path"),
        {"path": area.path, "level": level, "d0": period.start, "d1": period.end},
        execution_options={"yield_per": 500},
    ).mappings()
    for r in result:
        row: dict[str, Any] = {"code": r["code"], "name": r["name"], "level": r["level"],
                               "parent_code": r["parent_code"],
                               "area_km2": round(float(r["area_km2"]), 4)}
        for s in _TABLE_SUBJECTS:
            row[s] = int(r[s] or 0) if s in readable else None
        persons = row["person"]
        area_km2 = float(r["area_km2"])
        row["persons_per_km2"] = (round(persons / area_km2, 3)
                                  if persons is not None and area_km2 else None)
        row["events"] = int(r["events"] or 0) if events else None
        row["events_closed"] = int(r["closed"] or 0) if events else None
        row["events_per_1000"] = (round(row["events"] * 1000 / persons, 3)
                                  if events and persons else None)
        yield row


TABLE_COLUMNS = ("code", "name", "level", "parent_code", "area_km2", *_TABLE_SUBJECTS,
                 "persons_per_km2", "events", "events_closed", "events_per_1000")


# --- hot spots --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatSource:
    """A table whose rows carry H3 cells (h3_r7/8/9) and a timestamp, for hot spots."""

    table: str
    time_column: str
    permission: str
    where: str = "true"
    type_column: str | None = None
    #: The aggregate the job runner keeps of it (day, path, event_type_id, h3_r7/8/9, n), if
    #: any; counted live from ``table`` otherwise.
    daily: str | None = None


HEAT_SOURCES = {
    "event": HeatSource("event", "reported_at", "event.read", "state <> 'merged'",
                        "event_type_id", daily="stat_event_cell_daily"),
    "building": HeatSource("building", "created_at", "building.read"),
}


def hotspots(
    session: Session,
    *,
    actor: Principal,
    region_code: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    event_type: str | None = None,
    resolution: int = 8,
    limit: int = 200,
    source: str = "event",
) -> dict[str, Any]:
    """Return Gi* hot and cold spots on H3 cells for a period, and the cells that changed most.

    The study area is every cell whose centre lies in the region (plus any cell holding
    rows); counts are under the caller's scope, from the aggregate table for events (as fresh
    as ``refreshed_at``) and live for buildings. ``changes`` compares each cell with the
    period of the same length just before. Returns a FeatureCollection of cell hexagons.
    Answers from the aggregate are kept until it is refreshed again (see _HOT_CACHE).
    """
    heat = HEAT_SOURCES.get(source)
    if heat is None:
        raise InvalidInput(f"source must be one of {', '.join(HEAT_SOURCES)}", field="source")
    for permission in ("statistics.read", heat.permission):
        if not actor.can(permission):
            raise PermissionDenied(f"needs the permission {permission}")
    if resolution not in HOTSPOT_RESOLUTIONS:
        raise InvalidInput("resolution must be 7, 8 or 9", field="resolution")
    if not 1 <= limit <= 2000:
        raise InvalidInput("limit must be 1..2000", field="limit")
    area = resolve_area(session, actor, region_code)
    period = make_period(date_from, date_to, max_days=366)
    types = event_type_ids(session, event_type) if heat.type_column else None
    fresh = refreshed_at(session, "event") if heat.daily else None
    key = _hot_key(session, actor, area, fresh,
                   (source, resolution, period, tuple(types or ()), limit))
    cached = _HOT_CACHE.get(key) if key is not None else None
    if cached is not None:
        return dict(cached)
    now, before = cell_counts(session, heat, resolution, period, area.path, types)
    study = study_area(session, area, resolution).including(set(now) | set(before))
    grid = _Grid(study, study.values(now), study.values(before))
    out = {"type": "FeatureCollection", "source": source, "region": area.as_dict(),
           "resolution": resolution, "period": period.as_dict(),
           "previous_period": period.previous().as_dict(), "study_cells": len(study.cells),
           "total": int(grid.now.sum()), "mean": round(float(grid.now.mean()), 4),
           "features": [_feature(grid.props(i), study.cells[i]) for i in grid.hot(limit)],
           "changes": [grid.props(i) for i in grid.changed(min(limit, 50))],
           "refreshed_at": fresh or datetime.now(GOVERNANCE_TZ)}
    if key is not None:
        with _STUDY_LOCK:
            if len(_HOT_CACHE) >= 32:
                _HOT_CACHE.pop(next(iter(_HOT_CACHE)))  # the oldest entry
            _HOT_CACHE[key] = out
    return dict(out)


#: Hot spots computed from the aggregate, by everything they depend on. The aggregate changes
#: only when it is refreshed, which moves ``refreshed_at`` (part of the key): the cockpit's
#: repeated city-wide view (a scan of every event of two periods) is then computed once per
#: refresh. Counted live (buildings) or never refreshed: not kept.
_HOT_CACHE: dict[tuple[Any, ...], dict[str, Any]] = {}


def _hot_key(session: Session, actor: Principal, area: Area, fresh: datetime | None,
             request: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Return the cache key of a hot-spot answer (None: not to be kept)."""
    if fresh is None:
        return None
    version = session.execute(text("SELECT version FROM region WHERE code = :c "
                                   "AND valid_to IS NULL"), {"c": area.code}).scalar()
    return (str(session.connection().engine.url), fresh, area.code, area.path, version,
            tuple(sorted(actor.scope)), *request)


def cell_counts(session: Session, heat: HeatSource, resolution: int, period: Period,
                path: str, types: Sequence[int] | None) -> tuple[dict[int, int], dict[int, int]]:
    """Return rows per H3 cell under a path (caller's scope) in a period and the one before.

    One pass over both periods: from the daily aggregate when the source has one, else live.
    """
    if resolution not in HOTSPOT_RESOLUTIONS:  # formatted into SQL below: whitelist it
        raise InvalidInput("resolution must be 7, 8 or 9", field="resolution")
    column = f"h3_r{resolution}"
    cond = f" AND {heat.type_column} = ANY (:types)" if types is not None and heat.type_column \
        else ""
    params: dict[str, Any] = {"path": path, "types": list(types or [])}
    if heat.daily:
        params.update(lo=period.previous().start, mid=period.start, hi=period.end)
        sql = (f"SELECT {column}, sum(n) FILTER (WHERE day >= :mid), "
               f"sum(n) FILTER (WHERE day < :mid) FROM {heat.daily} "
               f"WHERE day BETWEEN :lo AND :hi AND path <@ CAST(:path AS ltree){cond} GROUP BY 1")
    else:
        t = heat.time_column
        params.update(lo=period.previous().bounds()[0], mid=period.bounds()[0],
                      hi=period.bounds()[1])
        sql = (f"SELECT {column}, count(*) FILTER (WHERE {t} >= :mid), "
               f"count(*) FILTER (WHERE {t} < :mid) FROM {heat.table} "
               f"WHERE {t} >= :lo AND {t} < :hi AND path <@ CAST(:path AS ltree) "
               f"AND {column} IS NOT NULL AND {heat.where}{cond} GROUP BY 1")
    now: dict[int, int] = {}
    before: dict[int, int] = {}
    for cell, n_now, n_before in session.execute(text(sql), params).all():
        if n_now:
            now[int(cell)] = int(n_now)
        if n_before:
            before[int(cell)] = int(n_before)
    return now, before


@dataclass(frozen=True)
class StudyArea:
    """The cells a Gi* is computed over, with each cell's window (see domain.hotspots)."""

    cells: tuple[int, ...]
    window: np.ndarray
    index: Mapping[int, int]

    def including(self, extra: set[int]) -> StudyArea:
        """Return the area grown by cells holding rows outside it (rare: rebuilt, uncached)."""
        missing = extra - self.index.keys()
        return self if not missing else StudyArea.of(sorted(set(self.cells) | missing))

    def values(self, counts: Mapping[int, int]) -> np.ndarray:
        """Return the counts as an array in the area's cell order."""
        x = np.zeros(len(self.cells))
        for cell, n in counts.items():
            x[self.index[cell]] = n
        return x

    @classmethod
    def of(cls, cells: Sequence[int]) -> StudyArea:
        """Build the area of some cells."""
        return cls(tuple(cells), windows(cells), {c: i for i, c in enumerate(cells)})


def study_area(session: Session, area: Area, resolution: int) -> StudyArea:
    """Return the cells whose centres lie in the region plus the ring around them (the cells
    its edge passes through), cached per region version and resolution."""
    row = session.execute(text("SELECT version, area_km2 FROM region WHERE code = :c "
                               "AND valid_to IS NULL"), {"c": area.code}).one()
    # A resolution-r cell covers about 5.16 / 7**(r-7) km²: refuse before filling.
    if row.area_km2 / (5.16 / 7 ** (resolution - 7)) > MAX_STUDY_CELLS:
        raise InvalidInput("the region is too large for this resolution; choose a coarser one",
                           field="resolution")
    key = (area.code, int(row.version), resolution)
    study = _STUDY_CACHE.get(key)
    if study is None:
        geom = session.execute(text("SELECT ST_AsBinary(geom) FROM region WHERE code = :c "
                                    "AND valid_to IS NULL"), {"c": area.code}).scalar_one()
        study = _study_of(wkb.loads(bytes(geom)), resolution)
        with _STUDY_LOCK:
            if len(_STUDY_CACHE) >= 64:
                _STUDY_CACHE.pop(next(iter(_STUDY_CACHE)))  # the oldest entry
            _STUDY_CACHE[key] = study
    return study


#: Study areas by (region code, region version, resolution): filling a city's outline with
#: hexagons and finding every cell's neighbours costs a second or so, the same every time.
_STUDY_CACHE: dict[tuple[str, int, int], StudyArea] = {}
_STUDY_LOCK = threading.Lock()


def _study_of(geom: Any, resolution: int) -> StudyArea:
    inside = polygon_cells(geom, resolution)
    cells = set(inside)
    for cell in inside:
        cells.update(ring_neighbours(cell))
    return StudyArea.of(sorted(cells))


class _Grid:
    """Counts and Gi* z-scores of a study area for the period and the one before."""

    def __init__(self, study: StudyArea, now: np.ndarray, before: np.ndarray) -> None:
        self.study, self.now, self.before = study, now, before
        self.z_now = gi_star_values(now, study.window)
        self.z_before = gi_star_values(before, study.window)

    def hot(self, limit: int) -> list[int]:
        """Return positions with rows or a significant z, strongest |z| first."""
        z = self.z_now
        shown = np.nonzero((self.now > 0) | (np.abs(z) >= 1.645))[0]
        order = np.lexsort((-self.now[shown], -np.abs(z[shown])))
        return [int(i) for i in shown[order][:limit]]

    def changed(self, limit: int) -> list[int]:
        """Return positions whose counts changed most against the previous period."""
        diff = self.now - self.before
        moved = np.nonzero(diff)[0]
        dz = np.abs(self.z_now - self.z_before)[moved]
        order = np.lexsort((-dz, -np.abs(diff[moved])))
        return [int(i) for i in moved[order][:limit]]

    def props(self, i: int) -> dict[str, Any]:
        """Return one cell's figures."""
        z = float(self.z_now[i])
        kind, confidence = classify(z)
        return {"cell": h3.int_to_str(to_unsigned(self.study.cells[i])),
                "count": int(self.now[i]), "previous": int(self.before[i]),
                "change": int(self.now[i] - self.before[i]), "z": round(z, 3),
                "p": round(p_value(z), 4), "spot": kind, "confidence": confidence,
                "z_previous": round(float(self.z_before[i]), 3)}


def _feature(props: dict[str, Any], cell: int) -> dict[str, Any]:
    return {"type": "Feature", "id": props["cell"], "geometry": mapping(cell_boundary(cell)),
            "properties": props}


# --- refresh (the job runner calls these) -----------------------------------------------------

_OBJECT_SOURCES = {
    "person": ("person", "person_type::text"),
    "residence": ("residence", "usage::text"),
    "building": ("building", "category::text"),
    "key_place": ("key_place", "category"),
    "enterprise": ("enterprise", "coalesce(industry, '')"),
}
_DAY = "(({col}) AT TIME ZONE 'Asia/Shanghai')::date"


def refresh_objects(session: Session) -> dict[str, Any]:
    """Recount base data per region path, category and day of registration (all of it)."""
    started = _begin_refresh(session)
    session.execute(text("DELETE FROM stat_object_daily"))
    written = 0
    for subject, (table, category) in _OBJECT_SOURCES.items():
        day = _DAY.format(col="created_at")
        written += session.execute(text(
            "INSERT INTO stat_object_daily (subject, path, category, day, n) "
            f"SELECT :subject, path, {category}, {day}, count(*) FROM {table} "
            "GROUP BY 2, 3, 4"), {"subject": subject}).rowcount  # type: ignore[attr-defined]
    return _finish_refresh(session, "objects", started, written)


_EVENT_INSERT = (
    "INSERT INTO stat_event_daily (day, path, event_type_id, reported, closed) "
    "SELECT " + _DAY.format(col="reported_at") + ", path, event_type_id, count(*), "
    "count(*) FILTER (WHERE state IN ('closed', 'evaluated')) FROM event "
    "WHERE state <> 'merged' {cond} GROUP BY 1, 2, 3")


_CELL_INSERT = (
    "INSERT INTO stat_event_cell_daily (day, path, event_type_id, h3_r9, h3_r8, h3_r7, n) "
    "SELECT " + _DAY.format(col="reported_at") + ", path, event_type_id, h3_r9, h3_r8, h3_r7, "
    "count(*) FROM event WHERE state <> 'merged' AND h3_r9 IS NOT NULL AND h3_r8 IS NOT NULL "
    "AND h3_r7 IS NOT NULL {cond} GROUP BY 1, 2, 3, 4, 5, 6")
#: The tables recounted per day of report, and how.
_EVENT_DAY_TABLES = (("stat_event_daily", _EVENT_INSERT), ("stat_event_cell_daily", _CELL_INSERT))


_MONTH_INSERT = (
    "INSERT INTO stat_event_monthly (month, path, event_type_id, reported, closed) "
    "SELECT date_trunc('month', day)::date, subpath(path, 0, least(nlevel(path), 3)), "
    "event_type_id, sum(reported), sum(closed) FROM stat_event_daily {cond} GROUP BY 1, 2, 3")


def refresh_events(session: Session, *, full: bool = False,
                   margin: timedelta = timedelta(minutes=10)) -> dict[str, Any]:
    """Recount events per day, path and type (and H3 cell), and roll the days up into months.

    All days, or only the days of events changed since the last refresh (less ``margin``, for
    transactions that committed late) and the months holding them. ``rows`` counts the rows
    written to stat_event_daily, ``cell_rows`` those to stat_event_cell_daily.
    """
    last = session.execute(text("SELECT started_at FROM stat_refresh WHERE name = 'events'")
                           ).scalar()
    started = _begin_refresh(session)
    written = dict.fromkeys((table for table, _ in _EVENT_DAY_TABLES), 0)
    if full or last is None:
        days: list[date] | None = None
        session.execute(text("DELETE FROM stat_event_monthly"))
        for table, insert in _EVENT_DAY_TABLES:
            session.execute(text(f"DELETE FROM {table}"))
            written[table] += session.execute(text(insert.format(cond=""))).rowcount  # type: ignore[attr-defined]
        session.execute(text(_MONTH_INSERT.format(cond="")))
    else:
        days = sorted(session.execute(text(
            "SELECT DISTINCT " + _DAY.format(col="reported_at") + " FROM event "
            "WHERE updated_at >= :since"), {"since": last - margin}).scalars().all())
        for day in days:
            _recount_day(session, day, written)
        for month in sorted({d.replace(day=1) for d in days}):
            session.execute(text("DELETE FROM stat_event_monthly WHERE month = :m"),
                            {"m": month})
            session.execute(text(_MONTH_INSERT.format(cond="WHERE day >= :m AND day < :n")),
                            {"m": month, "n": _next_month(month)})
    return _finish_refresh(session, "events", started, written["stat_event_daily"],
                           days=None if days is None else len(days),
                           cell_rows=written["stat_event_cell_daily"])


def _recount_day(session: Session, day: date, written: dict[str, int]) -> None:
    lo, hi = Period(day, day).bounds()
    for table, insert in _EVENT_DAY_TABLES:
        session.execute(text(f"DELETE FROM {table} WHERE day = :d"), {"d": day})
        written[table] += session.execute(text(insert.format(
            cond="AND reported_at >= :lo AND reported_at < :hi")),
            {"lo": lo, "hi": hi}).rowcount  # type: ignore[attr-defined]


def _begin_refresh(session: Session) -> datetime:
    # Full recounts of a city's base data take longer than a request may.
    session.execute(text("SET LOCAL statement_timeout = '15min'"))
    return session.execute(text("SELECT clock_timestamp()")).scalar_one()  # type: ignore[no-any-return]


def _finish_refresh(session: Session, name: str, started: datetime, written: int,
                    **extra: Any) -> dict[str, Any]:
    session.execute(text(
        "INSERT INTO stat_refresh (name, refreshed_at, started_at, rows_written, duration_ms) "
        "VALUES (:n, clock_timestamp(), :s, :w, "
        "extract(epoch FROM clock_timestamp() - :s) * 1000) ON CONFLICT (name) DO UPDATE SET "
        "refreshed_at = excluded.refreshed_at, started_at = excluded.started_at, "
        "rows_written = excluded.rows_written, duration_ms = excluded.duration_ms"),
        {"n": name, "s": started, "w": written})
    return {"rows": written, **extra}
