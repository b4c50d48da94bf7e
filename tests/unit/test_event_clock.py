"""Working-time clocks on the real 2025/2026 holiday calendar (国庆 and its 调休 Sundays)."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import chinese_calendar
import pytest

from geoserver.domain.clock import (
    SHANGHAI,
    ClockStatus,
    ClockUnit,
    OfficeHours,
    Segment,
    TimeLimit,
    WorkCalendar,
    add_time,
    clock_state,
    deadline,
    elapsed,
    segments_from_history,
    status_for,
)
from geoserver.domain.events import EventState, Phase


def _real_calendar(years=(2025, 2026)) -> WorkCalendar:
    days = {d: False for d in chinese_calendar.holidays if d.year in years}
    days.update({d: True for d in chinese_calendar.workdays if d.year in years})
    return WorkCalendar(days)


def sh(y, m, d, hh=0, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


CAL = _real_calendar()
WH = ClockUnit.WORKING_HOURS


def test_national_day_2025_and_its_makeup_sunday() -> None:
    assert CAL.is_workday(date(2025, 9, 28))        # Sunday worked (调休)
    assert CAL.is_workday(date(2025, 10, 11))       # Saturday worked (调休)
    assert not any(CAL.is_workday(date(2025, 10, d)) for d in range(1, 9))
    assert CAL.is_workday(date(2025, 10, 9))
    assert not CAL.is_workday(date(2025, 10, 12))   # an ordinary Sunday


def test_a_working_day_is_seven_and_a_half_office_hours() -> None:
    assert OfficeHours().seconds_per_day == 7.5 * 3600
    assert CAL.working_seconds(sh(2025, 9, 26, 0), sh(2025, 9, 27, 0)) == 7.5 * 3600


def test_office_hours_skip_lunch() -> None:
    assert CAL.working_seconds(sh(2025, 9, 26, 11, 0), sh(2025, 9, 26, 14, 0)) == 1.5 * 3600


def test_four_working_hours_from_friday_afternoon_reach_the_makeup_sunday() -> None:
    # Fri 26 Sep 2025, 16:00: 1.5 h left that day; Sat is a rest day; Sun 28 Sep is worked.
    end = add_time(CAL, WH, sh(2025, 9, 26, 16, 0), 4 * 3600)
    assert end == sh(2025, 9, 28, 11, 0)


def test_a_deadline_across_national_day_2025() -> None:
    # Tue 30 Sep, 10:00 + 2 working days (15 h): rest of 30 Sep (6 h) → holiday 1–8 Oct →
    # Thu 9 Oct (7.5 h) → Fri 10 Oct 1.5 h more.
    limit = TimeLimit(2, ClockUnit.WORKING_DAYS)
    assert deadline(CAL, sh(2025, 9, 30, 10, 0), limit) == sh(2025, 10, 10, 10, 0)


def test_national_day_2026_ends_on_a_makeup_saturday() -> None:
    assert CAL.is_workday(date(2026, 9, 20))         # Sunday worked before 国庆 2026
    assert CAL.is_workday(date(2026, 10, 10))        # Saturday worked after it
    start = sh(2026, 9, 30, 17, 0)                   # 0.5 h left on 30 Sep
    assert add_time(CAL, WH, start, 3600) == sh(2026, 10, 8, 9, 0)


def test_budget_ending_at_close_of_office_ends_there() -> None:
    assert add_time(CAL, WH, sh(2025, 9, 26, 13, 30), 4 * 3600) == sh(2025, 9, 26, 17, 30)


def test_natural_hours_ignore_the_calendar() -> None:
    start = sh(2025, 10, 1, 22, 0)
    assert add_time(CAL, ClockUnit.NATURAL_HOURS, start, 3 * 3600) == sh(2025, 10, 2, 1, 0)
    assert elapsed(CAL, ClockUnit.NATURAL_HOURS, start, sh(2025, 10, 2, 1, 0)) == 3 * 3600
    assert elapsed(CAL, WH, start, sh(2025, 10, 2, 1, 0)) == 0


def test_utc_instants_are_read_in_shanghai_time() -> None:
    # 01:00 UTC is 09:00 in Shanghai: half an hour into the office day.
    from datetime import UTC
    start = datetime(2025, 9, 26, 1, 0, tzinfo=UTC)
    assert CAL.working_seconds(start, start + timedelta(hours=1)) == 3600


def test_missing_year_warns_and_uses_weekends(caplog) -> None:
    cal = _real_calendar((2025,))
    with caplog.at_level(logging.WARNING, logger="gridgov.calendar"):
        assert not cal.is_workday(date(2027, 1, 2))    # a Saturday
        assert cal.is_workday(date(2027, 1, 4))
        cal.is_workday(date(2027, 1, 5))
    warnings = [r for r in caplog.records if "2027" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(("used", "colour"), [(0, ClockStatus.GREEN), (79, ClockStatus.GREEN),
                                              (80, ClockStatus.AMBER), (99, ClockStatus.AMBER),
                                              (100, ClockStatus.RED), (150, ClockStatus.RED)])
def test_status_colours(used, colour) -> None:
    assert status_for(used, 100, 0.8) is colour


def test_office_hours_parse() -> None:
    oh = OfficeHours.parse("09:00-12:00, 14:00-18:00")
    assert oh.seconds_per_day == 7 * 3600
    for bad in ("9-8", "08:00-12:00,11:00-13:00", "lunch", ""):
        with pytest.raises(ValueError):
            OfficeHours.parse(bad)


def test_clock_state_at_past_moments_with_a_pause() -> None:
    limit = TimeLimit(8, WH)  # 8 working hours
    segments = [Segment(sh(2025, 9, 26, 8, 30), sh(2025, 9, 26, 12, 0)),   # 3.5 h, then paused
                Segment(sh(2025, 9, 29, 8, 30), None)]                     # resumed Monday
    before = clock_state(segments, limit, CAL, sh(2025, 9, 26, 8, 0))
    assert before is None
    paused = clock_state(segments, limit, CAL, sh(2025, 9, 27, 12, 0))
    assert paused is not None and not paused.running
    assert paused.elapsed_seconds == 3.5 * 3600 and paused.status is ClockStatus.GREEN
    assert paused.deadline is None
    later = clock_state(segments, limit, CAL, sh(2025, 9, 29, 13, 30))
    assert later is not None and later.running
    assert later.elapsed_seconds == 7 * 3600 and later.status is ClockStatus.AMBER
    # 4.5 h left after the pause: Monday 8:30 + 3.5 h → 12:00, + 1 h → 14:30.
    assert later.deadline == sh(2025, 9, 29, 14, 30)
    # 80 % is 6.4 h: 3.5 h on Friday, 2.9 h on Monday from 8:30.
    assert later.amber_at == sh(2025, 9, 29, 11, 24)
    red = clock_state(segments, limit, CAL, sh(2025, 9, 30, 9, 0))
    assert red is not None and red.status is ClockStatus.RED and red.remaining_seconds < 0


def test_extension_moves_the_deadline() -> None:
    limit = TimeLimit(1, WH)
    segs = [Segment(sh(2025, 9, 26, 9, 0))]
    plain = clock_state(segs, limit, CAL, sh(2025, 9, 26, 9, 30))
    extended = clock_state(segs, limit, CAL, sh(2025, 9, 26, 9, 30), extension_seconds=3600)
    assert plain is not None and extended is not None
    assert plain.deadline == sh(2025, 9, 26, 10, 0)
    assert extended.deadline == sh(2025, 9, 26, 11, 0)


def test_segments_from_history() -> None:
    S = EventState
    history = [(sh(2025, 9, 1, 9), S.REPORTED), (sh(2025, 9, 1, 9, 30), S.REPORTED),
               (sh(2025, 9, 1, 10), S.ACCEPTED), (sh(2025, 9, 1, 10, 5), S.DISPATCHED),
               (sh(2025, 9, 1, 11), S.SIGNED), (sh(2025, 9, 2, 9), S.HANDLED),
               (sh(2025, 9, 2, 10), S.SIGNED),          # verification failed: handle again
               (sh(2025, 9, 3, 9), S.HANDLED), (sh(2025, 9, 3, 10), S.VERIFIED),
               (sh(2025, 9, 3, 11), S.CLOSED)]
    segs = segments_from_history(history)
    assert segs[Phase.ACCEPT] == [Segment(sh(2025, 9, 1, 9), sh(2025, 9, 1, 10))]
    assert segs[Phase.SIGN] == [Segment(sh(2025, 9, 1, 10, 5), sh(2025, 9, 1, 11))]
    assert segs[Phase.HANDLE] == [Segment(sh(2025, 9, 1, 11), sh(2025, 9, 2, 9)),
                                  Segment(sh(2025, 9, 2, 10), sh(2025, 9, 3, 9))]
    assert segs[Phase.VERIFY] == [Segment(sh(2025, 9, 2, 9), sh(2025, 9, 2, 10)),
                                  Segment(sh(2025, 9, 3, 9), sh(2025, 9, 3, 10))]


def test_an_open_phase_keeps_running() -> None:
    segs = segments_from_history([(sh(2025, 9, 1, 9), EventState.REPORTED)])
    assert segs == {Phase.ACCEPT: [Segment(sh(2025, 9, 1, 9), None)]}
