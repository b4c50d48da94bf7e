"""The holiday calendar (节假日与调休) behind working-time clocks: load, seed and edit it.

The ``holiday`` table lists the dates that break the weekday rule: holidays and the 调休
weekend days that are worked. It is seeded from ``chinesecalendar`` for the years that package
knows (it stops at its last release's year, and the State Council publishes a year's holidays
only in the autumn before), and editable by hand. A year with no rows is treated as plain
weekends by the clock, which logs it as missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import date

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from geoserver.domain.clock import OfficeHours, WorkCalendar
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound, PermissionDenied
from geoserver.services.audit import NO_CONTEXT, AuditContext, audit

log = logging.getLogger("gridgov.calendar")

#: Festival names as chinesecalendar spells them → the names used in the table.
_ZH_NAMES = {
    "New Year's Day": "元旦", "Spring Festival": "春节", "Tomb-sweeping Day": "清明节",
    "Labour Day": "劳动节", "Dragon Boat Festival": "端午节", "National Day": "国庆节",
    "Mid-autumn Festival": "中秋节", "Anti-Fascist 70th Day": "抗战胜利纪念日",
}


class HolidayIn(BaseModel):
    """One calendar date that breaks the weekday rule."""

    day: date
    is_workday: bool
    name: str = Field(default="", max_length=40)


class HolidayPublic(HolidayIn):
    """A calendar row as stored."""

    source: str


class _Cache:
    """The last calendar loaded, keyed by the table's version and the office hours."""

    lock = threading.Lock()
    key: tuple[str, OfficeHours] | None = None
    calendar: WorkCalendar | None = None


def _require_admin(actor: Principal) -> None:
    if not actor.can("event.admin"):
        raise PermissionDenied("the holiday calendar is edited with the permission event.admin")


def load_calendar(session: Session, *, office_hours: OfficeHours | None = None) -> WorkCalendar:
    """Return the working calendar from the holiday table (cached until the table changes)."""
    hours = office_hours or OfficeHours()
    version = str(session.execute(text(
        "SELECT concat_ws(':', count(*), max(updated_at), max(day)) FROM holiday")).scalar())
    with _Cache.lock:
        if _Cache.key == (version, hours) and _Cache.calendar is not None:
            return _Cache.calendar
    rows = session.execute(text("SELECT day, is_workday FROM holiday")).all()
    calendar = WorkCalendar({r.day: bool(r.is_workday) for r in rows}, office_hours=hours)
    with _Cache.lock:
        _Cache.key, _Cache.calendar = (version, hours), calendar
    return calendar


def chinesecalendar_days(years: Iterable[int] | None = None) -> list[HolidayIn]:
    """Return chinesecalendar's holidays and 调休 working weekend days (all its years, or some)."""
    import chinese_calendar

    wanted = set(years) if years is not None else None
    days: list[HolidayIn] = []
    for day, name in chinese_calendar.holidays.items():
        if wanted is None or day.year in wanted:
            days.append(HolidayIn(day=day, is_workday=False, name=_ZH_NAMES.get(name, name)))
    for day, name in chinese_calendar.workdays.items():
        # The package lists every worked day of a makeup period; only weekends break the rule.
        if (wanted is None or day.year in wanted) and day.weekday() >= 5:
            label = _ZH_NAMES.get(name, name) + "调休"
            days.append(HolidayIn(day=day, is_workday=True, name=label))
    return sorted(days, key=lambda d: d.day)


def seed_holidays(session: Session, *, years: Iterable[int] | None = None) -> int:
    """Add chinesecalendar's days to the table, never overwriting a row; return rows added.

    Logs a warning naming the years after chinesecalendar's last one: they need adding by hand
    (or a newer chinesecalendar) once the State Council publishes them.
    """
    import chinese_calendar

    days = chinesecalendar_days(years)
    added = 0
    for d in days:
        result = session.execute(text(
            "INSERT INTO holiday (day, is_workday, name, source) VALUES (:d, :w, :n, "
            "'chinesecalendar') ON CONFLICT (day) DO NOTHING"),
            {"d": d.day, "w": d.is_workday, "n": d.name})
        added += int(getattr(result, "rowcount", 0) or 0)
    last = max(d.year for d in chinese_calendar.holidays)
    if date.today().year + 1 > last:
        log.warning("chinesecalendar knows holidays up to %s only; add later years to the "
                    "holiday table by hand", last)
    return added


def list_holidays(session: Session, *, year: int) -> list[HolidayPublic]:
    """Return the calendar rows of one year, in date order."""
    rows = session.execute(text(
        "SELECT day, is_workday, name, source FROM holiday WHERE day >= make_date(:y, 1, 1) "
        "AND day < make_date(:y + 1, 1, 1) ORDER BY day"), {"y": year}).mappings().all()
    return [HolidayPublic.model_validate(dict(r)) for r in rows]


def set_holiday(session: Session, *, actor: Principal, data: HolidayIn,
                context: AuditContext = NO_CONTEXT) -> HolidayPublic:
    """Add or change one calendar date (source 'manual')."""
    _require_admin(actor)
    if not 1990 <= data.day.year <= 2200:
        raise InvalidInput("the date is out of range", field="day")
    session.execute(text(
        "INSERT INTO holiday (day, is_workday, name, source) VALUES (:d, :w, :n, 'manual') "
        "ON CONFLICT (day) DO UPDATE SET is_workday = EXCLUDED.is_workday, name = EXCLUDED.name, "
        "source = 'manual', updated_at = now()"),
        {"d": data.day, "w": data.is_workday, "n": data.name})
    audit(session, actor=actor, action="holiday.set", object_kind="holiday",
          object_id=data.day.isoformat(), after=data.model_dump(mode="json"), context=context)
    return HolidayPublic(**data.model_dump(), source="manual")


def delete_holiday(session: Session, *, actor: Principal, day: date,
                   context: AuditContext = NO_CONTEXT) -> None:
    """Remove one calendar date (it follows the weekday rule again)."""
    _require_admin(actor)
    gone = session.execute(text("DELETE FROM holiday WHERE day = :d RETURNING day"),
                           {"d": day}).first()
    if gone is None:
        raise NotFound(f"no calendar entry for {day.isoformat()}")
    audit(session, actor=actor, action="holiday.delete", object_kind="holiday",
          object_id=day.isoformat(), context=context)
