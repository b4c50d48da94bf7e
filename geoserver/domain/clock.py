"""Time limits (时限) on a working-time calendar: deadlines, elapsed time and SLA colours.

Pure logic, no I/O. Each phase of an event (受理, 签收, 处置, 核查) has a clock counted either in
natural hours (urgent matters such as 消防, 安全隐患: the fire does not wait for Monday) or in
working time: office hours (configurable, by default 08:30–12:00 and 13:30–17:30) on working
days. Working days are Monday to Friday, except the calendar's holidays, plus its 调休 working
days (Saturdays or Sundays worked to bridge a holiday). The calendar's data comes from the
``holiday`` table; a year it holds nothing for is treated as plain weekends and logged loudly,
because the State Council publishes each year's holidays only in the preceding autumn.

Office hours are Asia/Shanghai wall-clock times whatever the server's zone; China has no DST,
so a working day is always the same number of seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from geoserver.domain.events import PHASE_OF_STATE, EventState, Phase

log = logging.getLogger("gridgov.calendar")

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: Far enough for any time limit; a loop that runs longer has been given nonsense.
_MAX_DAYS = 3 * 366


class ClockUnit(StrEnum):
    """时限单位: natural_hours 自然小时, working_hours 工作小时, working_days 工作日
    (one working day is one day's office hours)."""

    NATURAL_HOURS = "natural_hours"
    WORKING_HOURS = "working_hours"
    WORKING_DAYS = "working_days"


class ClockStatus(StrEnum):
    """时限状态: green 正常, amber 预警 (most of the time used), red 超时."""

    GREEN = "green"
    AMBER = "amber"
    RED = "red"


def _parse_hhmm(text: str) -> time:
    hours, _, minutes = text.strip().partition(":")
    return time(int(hours), int(minutes or 0))


@dataclass(frozen=True)
class OfficeHours:
    """Daily office periods (上班时间) in Shanghai wall-clock time, in order, not overlapping."""

    periods: tuple[tuple[time, time], ...] = ((time(8, 30), time(12, 0)),
                                              (time(13, 30), time(17, 30)))

    def __post_init__(self) -> None:
        if not self.periods:
            raise ValueError("office hours need at least one period")
        last = time(0, 0)
        for start, end in self.periods:
            if not last <= start < end:
                raise ValueError("office periods must be ordered, non-empty and not overlapping")
            last = end

    @classmethod
    def parse(cls, text: str) -> OfficeHours:
        """Parse ``"08:30-12:00,13:30-17:30"``; raise ValueError on anything else."""
        try:
            periods = tuple(
                (_parse_hhmm(a), _parse_hhmm(b))
                for a, b in (part.split("-") for part in text.split(",") if part.strip()))
        except ValueError as exc:
            raise ValueError(
                f"office hours must look like 08:30-12:00,13:30-17:30: {exc}") from None
        return cls(periods)

    @property
    def seconds_per_day(self) -> float:
        """Return the office seconds of one working day."""
        return float(sum(_seconds(b) - _seconds(a) for a, b in self.periods))


def _seconds(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


@dataclass
class WorkCalendar:
    """工作日历: which days are worked, and the office hours on them.

    ``days`` maps a date to whether it is worked, overriding the weekday rule: holidays
    (``False``) and 调休 working weekend days (``True``). ``known_years`` are the years the data
    covers; by default the years found in ``days``.
    """

    days: Mapping[date, bool] = field(default_factory=dict)
    known_years: frozenset[int] | None = None
    office_hours: OfficeHours = field(default_factory=OfficeHours)
    _warned: set[int] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.known_years is None:
            self.known_years = frozenset(d.year for d in self.days)

    def is_workday(self, day: date) -> bool:
        """Return whether ``day`` is a working day (a year without data: Monday to Friday)."""
        if day in self.days:
            return self.days[day]
        if self.known_years is not None and day.year not in self.known_years:
            self._warn_missing(day.year)
        return day.weekday() < 5

    def _warn_missing(self, year: int) -> None:
        if year not in self._warned:
            self._warned.add(year)
            log.warning("the holiday calendar has no data for %s: treating only weekends as "
                        "rest days; add that year's holidays and 调休 days to the holiday table",
                        year)

    def _periods_of(self, day: date) -> list[tuple[datetime, datetime]]:
        """Return the office periods of ``day`` as aware datetimes (none on a rest day)."""
        if not self.is_workday(day):
            return []
        return [(datetime.combine(day, a, SHANGHAI), datetime.combine(day, b, SHANGHAI))
                for a, b in self.office_hours.periods]

    def working_seconds(self, start: datetime, end: datetime) -> float:
        """Return the office seconds between two aware instants (0 if end is not after start)."""
        if end <= start:
            return 0.0
        first, last = start.astimezone(SHANGHAI).date(), end.astimezone(SHANGHAI).date()
        total = 0.0
        day = first
        while day <= last:
            for a, b in self._periods_of(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total

    def add_working_seconds(self, start: datetime, seconds: float) -> datetime:
        """Return the instant ``seconds`` of office time after ``start``.

        A budget that ends exactly at the end of a period ends there (17:30), not at the next
        morning's start.
        """
        if seconds <= 0:
            return start
        remaining = seconds
        day = start.astimezone(SHANGHAI).date()
        for _ in range(_MAX_DAYS * 10):
            for a, b in self._periods_of(day):
                lo = max(a, start)
                if b <= lo:
                    continue
                available = (b - lo).total_seconds()
                if remaining <= available:
                    return lo + timedelta(seconds=remaining)
                remaining -= available
            day += timedelta(days=1)
        raise ValueError(f"{seconds} s of working time reach beyond {_MAX_DAYS * 10} days")


@dataclass(frozen=True)
class TimeLimit:
    """A phase's time limit (时限): an amount in a unit."""

    amount: float
    unit: ClockUnit

    def seconds(self, office_hours: OfficeHours) -> float:
        """Return the limit in the unit's seconds (natural seconds, or office seconds)."""
        if self.unit is ClockUnit.NATURAL_HOURS:
            return self.amount * 3600.0
        if self.unit is ClockUnit.WORKING_HOURS:
            return self.amount * 3600.0
        return self.amount * office_hours.seconds_per_day


def elapsed(calendar: WorkCalendar, unit: ClockUnit, start: datetime, end: datetime) -> float:
    """Return the seconds a clock in ``unit`` counts between two instants."""
    if unit is ClockUnit.NATURAL_HOURS:
        return max(0.0, (end - start).total_seconds())
    return calendar.working_seconds(start, end)


def add_time(calendar: WorkCalendar, unit: ClockUnit, start: datetime, seconds: float) -> datetime:
    """Return the instant a clock in ``unit`` started at ``start`` has counted ``seconds``."""
    if unit is ClockUnit.NATURAL_HOURS:
        return start + timedelta(seconds=max(0.0, seconds))
    return calendar.add_working_seconds(start, seconds)


def deadline(calendar: WorkCalendar, start: datetime, limit: TimeLimit) -> datetime:
    """Return when a clock started at ``start`` and never paused reaches ``limit``."""
    return add_time(calendar, limit.unit, start, limit.seconds(calendar.office_hours))


def status_for(elapsed_seconds: float, limit_seconds: float, amber_share: float = 0.8
               ) -> ClockStatus:
    """Return the colour of a clock that has counted ``elapsed_seconds`` of ``limit_seconds``."""
    if elapsed_seconds >= limit_seconds:
        return ClockStatus.RED
    if elapsed_seconds >= amber_share * limit_seconds:
        return ClockStatus.AMBER
    return ClockStatus.GREEN


@dataclass(frozen=True)
class Segment:
    """A stretch of time a phase's clock ran: from ``started`` to ``stopped`` (None: still)."""

    started: datetime
    stopped: datetime | None = None


@dataclass(frozen=True)
class ClockState:
    """A phase clock as it stood at ``at``."""

    phase: Phase | None
    unit: ClockUnit
    limit_seconds: float
    elapsed_seconds: float
    running: bool
    started_at: datetime
    stopped_at: datetime | None
    #: When the clock reaches (reached) its limit and the amber share; None if it stopped first.
    deadline: datetime | None
    amber_at: datetime | None
    status: ClockStatus
    at: datetime

    @property
    def remaining_seconds(self) -> float:
        """Return the budget left (negative when overdue)."""
        return self.limit_seconds - self.elapsed_seconds


def _crossing(calendar: WorkCalendar, unit: ClockUnit, segments: Sequence[Segment],
              budget: float) -> datetime | None:
    """Return when the clock running through ``segments`` has counted ``budget`` seconds."""
    for seg in segments:
        if seg.stopped is None:
            return add_time(calendar, unit, seg.started, budget)
        used = elapsed(calendar, unit, seg.started, seg.stopped)
        if budget <= used:
            return add_time(calendar, unit, seg.started, budget)
        budget -= used
    return None


def clock_state(segments: Sequence[Segment], limit: TimeLimit, calendar: WorkCalendar,
                at: datetime, *, phase: Phase | None = None, extension_seconds: float = 0.0,
                amber_share: float = 0.8) -> ClockState | None:
    """Return a clock's state at ``at`` from its run segments (None: not started by then).

    Segments after ``at`` are ignored and one running across ``at`` counts as running, so the
    state at any past moment can be recomputed from the event's history. Approved extensions
    (延期) add to the limit.
    """
    seen = [Segment(s.started, s.stopped if s.stopped is not None and s.stopped <= at else None)
            for s in sorted(segments, key=lambda s: s.started) if s.started <= at]
    if not seen:
        return None
    budget = limit.seconds(calendar.office_hours) + extension_seconds
    running = seen[-1].stopped is None
    used = sum(elapsed(calendar, limit.unit, s.started, s.stopped if s.stopped else at)
               for s in seen)
    # Crossings are projected as if the clock kept running past ``at`` when it runs at ``at``.
    crossing_deadline = _crossing(calendar, limit.unit, seen, budget)
    crossing_amber = _crossing(calendar, limit.unit, seen, amber_share * budget)
    return ClockState(
        phase=phase, unit=limit.unit, limit_seconds=budget, elapsed_seconds=used,
        running=running, started_at=seen[0].started,
        stopped_at=None if running else seen[-1].stopped,
        deadline=crossing_deadline, amber_at=crossing_amber,
        status=status_for(used, budget, amber_share), at=at,
    )


def segments_from_history(entries: Iterable[tuple[datetime, EventState]]
                          ) -> dict[Phase, list[Segment]]:
    """Return each phase's run segments from an event's state history ((at, new state), in order).

    A phase's clock runs while the event is in a state of that phase (see PHASE_OF_STATE):
    it pauses when the event leaves it (申请退回 pauses 处置) and resumes when it comes back
    (核查不通过 resumes 处置, on the same limit).
    """
    result: dict[Phase, list[Segment]] = {}
    current: tuple[Phase, datetime] | None = None
    for at, state in entries:
        phase = PHASE_OF_STATE.get(state)
        if current is not None and current[0] == phase:
            continue
        if current is not None:
            result.setdefault(current[0], []).append(Segment(current[1], at))
        current = (phase, at) if phase is not None else None
    if current is not None:
        result.setdefault(current[0], []).append(Segment(current[1], None))
    return result
