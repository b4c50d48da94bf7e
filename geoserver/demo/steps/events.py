"""Demo events: a year of plausible events with whole histories (the 四平台 loop as it runs).

Types follow a city's usual mix (环境卫生 and 交通秩序 most, 食品安全 least); events fall in
general grids, three times as often in urban ones; most patrol reports are settled on the spot;
the rest go accept → dispatch → sign → handle → verify → close with log-normal delays, some
returned and reassigned, some extended, some failing verification once. Events whose story
runs past END are cut there: they are still open, some overdue. Each history is walked through
``domain.events.next_state``, so it is one the services could have written.

The year ends at a fixed moment (END) so a seed always gives the same events. Rows are written
with COPY; locations are computed here (a point drawn inside its grid), so the location trigger
stands aside (``gridgov.trusted_location``). Clock rows are written for open events only (the
event detail recomputes closed events' clocks from the history).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely

from geoserver.demo.geometry import RegionShape
from geoserver.demo.loader import DemoContext
from geoserver.domain.clock import SHANGHAI, TimeLimit, WorkCalendar, clock_state
from geoserver.domain.clock import segments_from_history as _segments
from geoserver.domain.events import OPEN_STATES, EventAction, EventState, Phase, next_state
from geoserver.geo.h3cells import cells_at_resolutions
from geoserver.services.event_types import (
    DEFAULT_CATALOGUE,
    EventRuleIn,
    catalogue_rules,
    catalogue_types,
)

A = EventAction
END = datetime(2026, 6, 30, 18, 0, tzinfo=SHANGHAI)
START = END - timedelta(days=365)
#: Events per general grid per year.
RATE = {"tiny": 40, "demo": 15, "city": 100}
_STREAM = 60
#: Share of each top-level type (same order as DEFAULT_CATALOGUE).
_TYPE_SHARE = np.array([0.12, 0.10, 0.08, 0.25, 0.06, 0.07, 0.04, 0.14, 0.10, 0.04])
_SOURCES = ("patrol", "public", "hotline_12345", "police_110", "commander")
_SOURCE_SHARE = np.array([0.6, 0.1, 0.15, 0.05, 0.1])
_SEVERITIES = ("normal", "major", "urgent")
_SEVERITY_SHARE = np.array([0.85, 0.12, 0.03])
_PLACES = ("楼道", "小区门口", "沿街店铺", "菜场旁", "河边", "路口", "公园", "学校附近", "工地",
           "出租房")


@dataclass
class _Grid:
    code: str
    path: str
    region_id: int
    township: str
    geom: Any
    urban: bool


@dataclass
class _Event:
    """One generated event and the rows that describe it."""

    id: int
    grid: _Grid
    type_code: str
    top_code: str
    severity: str
    source: str
    reported: datetime
    lon: float
    lat: float
    rule: EventRuleIn
    state: EventState | None = None
    version: int = 0
    at: datetime = END
    history: list[tuple[Any, ...]] = field(default_factory=list)
    assignments: list[list[Any]] = field(default_factory=list)
    extensions: list[tuple[Any, ...]] = field(default_factory=list)
    reporter: int | None = None
    closed_at: datetime | None = None
    on_spot: bool = False
    score: int | None = None

    def step(self, action: EventAction, hours: float, actor: tuple[int | None, str],
             unit: int | None = None, note: str | None = None,
             data: dict[str, Any] | None = None) -> bool:
        """Take one action ``hours`` after the last; False (and nothing) once past END."""
        at = self.reported if self.state is None else self.at + timedelta(hours=hours)
        if at > END:
            return False
        new = next_state(self.state, action,
                         verification_required=self.rule.verification_required)
        self.version += 1
        self.history.append((self.id, self.grid.path, at, action.value,
                             self.state.value if self.state else None, new.value, actor[0],
                             actor[1], unit, note, json.dumps(data or {}, ensure_ascii=False),
                             self.version))
        self.state, self.at = new, at
        return True


def _copy(cur: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY rows into a table as CSV (None is NULL: no generated value is an empty string)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    n = 0
    for row in rows:
        writer.writerow(row)
        n += 1
    buf.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buf)
    return n


_Rules = dict[tuple[str, str], EventRuleIn]


def _catalogue(cur: Any) -> tuple[dict[str, int], dict[str, str], _Rules]:
    """Load the default catalogue; return code → id, code → top-level code, rules."""
    for code, name, parent, order in catalogue_types():
        cur.execute("INSERT INTO event_type (code, name, parent_id, display_order) VALUES "
                    "(%s, %s, (SELECT id FROM event_type WHERE code = %s), %s) "
                    "ON CONFLICT (code) DO NOTHING", (code, name, parent, order))
    rules = {}
    for code, severity, rule in catalogue_rules():
        rules[(code, severity.value)] = rule
        cur.execute(
            "INSERT INTO event_rule (event_type_id, severity, accept_limit, accept_unit, "
            "sign_limit, sign_unit, handle_limit, handle_unit, verify_limit, verify_unit, "
            "verification_required, on_spot_allowed, default_platform, escalation) VALUES "
            "((SELECT id FROM event_type WHERE code = %s), %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s) ON CONFLICT (event_type_id, severity) DO NOTHING",
            (code, severity.value, rule.accept.amount, rule.accept.unit.value, rule.sign.amount,
             rule.sign.unit.value, rule.handle.amount, rule.handle.unit.value,
             rule.verify.amount, rule.verify.unit.value, rule.verification_required,
             rule.on_spot_allowed, rule.default_platform, rule.escalation))
    cur.execute("SELECT code, id FROM event_type")
    ids = dict(cur.fetchall())
    top = {code: (parent or code) for code, _n, parent, _o in catalogue_types()}
    return ids, top, rules


def _grids(cur: Any, ctx: DemoContext) -> list[_Grid]:
    by_code = {r.code: r for r in ctx.regions}
    cur.execute("SELECT code, id FROM region WHERE valid_to IS NULL AND level = 'grid'")
    ids = dict(cur.fetchall())

    def township(r: RegionShape) -> str | None:
        while r is not None and r.level != "township":
            r = by_code.get(r.parent_code or "")  # type: ignore[assignment]
        return r.code if r is not None else None

    grids = []
    for r in ctx.regions:
        if r.level != "grid" or r.grid_type == "dedicated" or r.code not in ids:
            continue
        t = township(r)
        if t is not None:
            grids.append(_Grid(r.code, ctx.paths[r.code], ids[r.code], t, r.geom, r.urban))
    return grids


def _point_in(grid: _Grid, rng: np.random.Generator) -> tuple[float, float]:
    west, south, east, north = grid.geom.bounds
    for _ in range(50):
        x, y = rng.uniform(west, east), rng.uniform(south, north)
        if shapely.contains_xy(grid.geom, x, y):
            return float(x), float(y)
    point = grid.geom.representative_point()
    return float(point.x), float(point.y)


def _hours(rng: np.random.Generator, median: float, spread: float = 0.8) -> float:
    """A log-normal delay in hours around ``median``."""
    return float(median * np.exp(rng.normal(0.0, spread)))


def _simulate(ev: _Event, rng: np.random.Generator, people: dict[str, int],
              units: dict[str, int]) -> None:
    """Walk one event through its lifecycle until it ends or END cuts it."""
    t = ev.grid.township
    worker = (people.get(f"w{ev.grid.code}"), f"w{ev.grid.code}")
    commander = (people.get(f"t{t}"), f"t{t}")
    centre = units.get(f"cc{t}")
    platform_code = f"{ev.rule.default_platform}{t}"
    platform = units.get(platform_code)
    handler: tuple[int | None, str] = (None, platform_code)
    reporter = worker if ev.source == "patrol" else commander
    ev.reporter = reporter[0] if ev.source in ("patrol", "commander") else None
    ev.step(A.REPORT, 0, reporter, data={"source": ev.source})
    if ev.source == "patrol" and ev.rule.on_spot_allowed and rng.random() < 0.35:
        if ev.step(A.RESOLVE_ON_SPOT, _hours(rng, 0.2), worker, data={"result": "现场劝导处置"}):
            ev.on_spot, ev.closed_at = True, ev.at
        return
    if ev.source != "patrol" and rng.random() < 0.04:
        if ev.step(A.REFUSE, _hours(rng, 0.6), commander, centre, note="不属于受理范围"):
            ev.closed_at = ev.at
        return
    if not ev.step(A.ACCEPT, _hours(rng, 0.6), commander, centre):
        return
    to_grid = ev.top_code in ("04", "08") and rng.random() < 0.3
    lead_unit = None if to_grid else platform
    if lead_unit is None:
        handler = worker
    if not ev.step(A.DISPATCH, _hours(rng, 0.15), commander, centre):
        return
    ev.assignments.append(["lead", lead_unit, None if lead_unit else ev.grid.code, ev.at,
                           commander[0], None, None, None, None])
    if not ev.step(A.SIGN, _hours(rng, 1.0), handler, lead_unit):
        return
    ev.assignments[-1][5:7] = [ev.at, handler[0]]
    if rng.random() < 0.05:
        if not _return_and_reassign(ev, rng, handler, commander, centre, worker):
            return
        handler, lead_unit = worker, None   # reassigned to the event's own grid
    if rng.random() < 0.06 and not _extend(ev, rng, handler, commander, centre):
        return
    if not ev.step(A.HANDLE, _hours(rng, 30.0, 1.0), handler, lead_unit,
                   data={"result": "已处置完毕"}):
        return
    _verify_and_close(ev, rng, handler, commander, centre, worker, lead_unit)


def _return_and_reassign(ev: _Event, rng: np.random.Generator, handler: tuple[int | None, str],
                         commander: tuple[int | None, str], centre: int | None,
                         worker: tuple[int | None, str]) -> bool:
    if not ev.step(A.REQUEST_RETURN, _hours(rng, 2.0), handler, note="不属于本单位职责"):
        return False
    if not ev.step(A.APPROVE_RETURN, _hours(rng, 1.0), commander, centre):
        return False
    ev.assignments[-1][7:9] = [ev.at, "returned"]
    if not ev.step(A.REASSIGN, _hours(rng, 0.3), commander, centre):
        return False
    ev.assignments.append(["lead", None, ev.grid.code, ev.at, commander[0], None, None, None,
                           None])
    if not ev.step(A.SIGN, _hours(rng, 1.0), worker):
        return False
    ev.assignments[-1][5:7] = [ev.at, worker[0]]
    return True


def _extend(ev: _Event, rng: np.random.Generator, handler: tuple[int | None, str],
            commander: tuple[int | None, str], centre: int | None) -> bool:
    hours = float(rng.choice([8, 16, 24]))
    if not ev.step(A.REQUEST_EXTENSION, _hours(rng, 10.0), handler, note="需协调相关单位",
                   data={"hours": hours, "phase": "handle"}):
        return False
    asked = ev.at
    if not ev.step(A.APPROVE_EXTENSION, _hours(rng, 1.0), commander, centre,
                   data={"hours": hours, "approved": True}):
        ev.extensions.append((ev.id, "handle", hours * 3600, "需协调相关单位", asked, None, None))
        return False
    ev.extensions.append((ev.id, "handle", hours * 3600, "需协调相关单位", asked, ev.at, True))
    return True


def _verify_and_close(ev: _Event, rng: np.random.Generator, handler: tuple[int | None, str],
                      commander: tuple[int | None, str], centre: int | None,
                      worker: tuple[int | None, str], lead_unit: int | None) -> None:
    if ev.rule.verification_required:
        if rng.random() < 0.08:
            if not ev.step(A.VERIFY_FAIL, _hours(rng, 4.0), worker, note="现场仍未整改"):
                return
            if not ev.step(A.HANDLE, _hours(rng, 12.0), handler, lead_unit,
                           data={"result": "再次整改"}):
                return
        if not ev.step(A.VERIFY_PASS, _hours(rng, 4.0), worker):
            return
    if not ev.step(A.CLOSE, _hours(rng, 1.5), commander, centre):
        return
    ev.closed_at = ev.at
    if rng.random() < 0.4 and ev.step(A.EVALUATE, _hours(rng, 24.0), commander, centre):
        ev.score = int(rng.choice([3, 4, 5, 5, 5]))


def _clocks(ev: _Event, calendar: WorkCalendar) -> tuple[list[tuple[Any, ...]], Any, Any]:
    """Clock rows of an open event at END, and its running clock's deadline and amber time."""
    entries = [(h[2], EventState(h[5])) for h in ev.history]
    rows, deadline, amber = [], None, None
    for phase, segments in _segments(entries).items():
        limit_in = getattr(ev.rule, phase.value)
        extension = sum(json.loads(h[10]).get("hours", 0) * 3600 for h in ev.history
                        if h[3] == "approve_extension") if phase is Phase.HANDLE else 0.0
        state = clock_state(segments, TimeLimit(limit_in.amount, limit_in.unit), calendar, END,
                            phase=phase, extension_seconds=extension)
        if state is None:
            continue
        rows.append((ev.id, ev.grid.path, phase.value, state.unit.value, state.limit_seconds,
                     extension, state.elapsed_seconds, state.running, state.started_at,
                     state.stopped_at, state.deadline, state.amber_at, state.status.value))
        if state.running:
            deadline, amber = state.deadline, state.amber_at
    return rows, deadline, amber


#: Events generated, simulated and written at a time: bounds memory at city scale (1M events).
CHUNK = 50_000


def load(conn: Any, ctx: DemoContext) -> dict[str, int]:
    """Insert a year of demo events with their history, routes, assignments and clocks."""
    rng = ctx.rng(_STREAM)
    with conn.cursor() as cur:
        type_ids, top, rules = _catalogue(cur)
        grids = _grids(cur, ctx)
        if not grids:
            return {"event": 0}
        cur.execute("SELECT username, id FROM app_user")
        people = dict(cur.fetchall())
        cur.execute("SELECT code, id FROM org_unit")
        units = dict(cur.fetchall())
        cur.execute("SELECT day, is_workday FROM holiday")
        calendar = WorkCalendar(dict(cur.fetchall()))
        cur.execute("SELECT coalesce(max(id), 0) FROM event")
        first_id = int(cur.fetchone()[0]) + 1
        draws = _draws(rng, int(RATE.get(ctx.scale, 40) * len(grids)), grids)
        n = len(draws["grid"])
        counts: dict[str, int] = {}
        for lo in range(0, n, CHUNK):
            events = _events(rng, draws, lo, min(n, lo + CHUNK), grids, top, rules, first_id)
            for ev in events:
                _simulate(ev, rng, people, units)
            for table, rows in _write(cur, events, type_ids, units, calendar).items():
                counts[table] = counts.get(table, 0) + rows
            ctx.progress("events", min(n, lo + CHUNK), n)
        cur.execute("SELECT setval('event_id_seq', greatest(%s, 1))", (first_id + n,))
    return counts


def _draws(rng: np.random.Generator, n: int, grids: list[_Grid]) -> dict[str, np.ndarray]:
    """Draw every event's grid, type, source, severity and time at once."""
    weights = np.array([3.0 if g.urban else 1.0 for g in grids])
    return {
        "grid": rng.choice(len(grids), size=n, p=weights / weights.sum()),
        "top": rng.choice(len(DEFAULT_CATALOGUE), size=n, p=_TYPE_SHARE / _TYPE_SHARE.sum()),
        "source": rng.choice(len(_SOURCES), size=n, p=_SOURCE_SHARE),
        "severity": rng.choice(len(_SEVERITIES), size=n, p=_SEVERITY_SHARE),
        "day": np.sort(rng.uniform(0, 365, size=n)),
        # Reports come in the daytime more than at night: hours drawn around the afternoon.
        "hour": np.clip(rng.normal(13.0, 4.0, size=n), 0.0, 23.9),
    }


def _events(rng: np.random.Generator, draws: dict[str, np.ndarray], lo: int, hi: int,
            grids: list[_Grid], top: dict[str, str], rules: _Rules,
            first_id: int) -> list[_Event]:
    """Build events lo..hi of the drawn year (sub-type and point drawn here)."""
    events = []
    for i in range(lo, hi):
        code, _name, _platform, _urgent, _verify, subs = DEFAULT_CATALOGUE[draws["top"][i]]
        sub = subs[int(rng.integers(len(subs)))][0]
        grid = grids[draws["grid"][i]]
        lon, lat = _point_in(grid, rng)
        day = START.replace(hour=0, minute=0) + timedelta(days=int(draws["day"][i]))
        reported = day + timedelta(hours=float(draws["hour"][i]))
        severity = _SEVERITIES[draws["severity"][i]]
        events.append(_Event(first_id + i, grid, sub, top[sub], severity,
                             _SOURCES[draws["source"][i]], min(reported, END), lon, lat,
                             rules[(code, severity)]))
    return events


def _write(cur: Any, events: list[_Event], type_ids: dict[str, int], units: dict[str, int],
           calendar: WorkCalendar) -> dict[str, int]:
    names = {code: name for code, name, _p, _o in catalogue_types()}
    lons = np.array([e.lon for e in events])
    lats = np.array([e.lat for e in events])
    cells = cells_at_resolutions(lons, lats, (7, 8, 9))
    event_rows, clock_rows = [], []
    for i, ev in enumerate(events):
        deadline = amber = None
        if ev.state in OPEN_STATES:
            rows, deadline, amber = _clocks(ev, calendar)
            clock_rows += rows
        place = _PLACES[ev.id % len(_PLACES)]
        event_rows.append((
            ev.id, f"E{ev.reported:%Y%m%d}{ev.id:06d}", type_ids[ev.type_code], ev.source,
            ev.severity, ev.state.value if ev.state else "reported", "township",
            units.get(f"cc{ev.grid.township}"), f"{names[ev.type_code]}: {place}",
            f"{place}发现{names[ev.type_code]}问题, 请尽快处理",
            f"SRID=4490;POINT({ev.lon} {ev.lat})",
            ev.grid.path, ev.grid.region_id, ev.grid.code, ev.grid.township,
            int(cells[7][i]), int(cells[8][i]), int(cells[9][i]), ev.on_spot, ev.score,
            ev.reporter, ev.reported, ev.closed_at, deadline, amber, ev.reported, ev.version))
    # Locations and child paths are computed here: the triggers stand aside for this load.
    cur.execute("SET LOCAL gridgov.trusted_location = 'on'")
    counts = {"event": _copy(cur, "event", (
        "id", "code", "event_type_id", "source", "severity", "state", "level", "centre_unit_id",
        "title", "description", "geom", "path", "region_id", "grid_code", "township_code",
        "h3_r7", "h3_r8", "h3_r9", "resolved_on_spot", "evaluation_score", "reporter_user_id",
        "reported_at",
        "closed_at", "deadline_at", "amber_at", "created_at", "version"), event_rows)}
    counts["event_history"] = _copy(cur, "event_history", (
        "event_id", "path", "at", "action", "from_state", "to_state", "actor_user_id", "actor_name",
        "unit_id", "note", "data", "event_version"), (h for ev in events for h in ev.history))
    counts["event_assignment"] = _copy(cur, "event_assignment", (
        "event_id", "path", "role", "org_unit_id", "grid_code", "assigned_at", "assigned_by",
        "signed_at", "signed_by", "ended_at", "end_reason"),
        ((ev.id, ev.grid.path, *a) for ev in events for a in ev.assignments))
    counts["event_route"] = _copy(cur, "event_route", (
        "event_id", "path", "level", "target_kind", "org_unit_id", "rule_kind", "reason"),
        ((ev.id, ev.grid.path, "township", "unit",
          units.get(f"{ev.rule.default_platform}{ev.grid.township}"), "type_default",
          f"事件类型 {names[ev.top_code]} 的默认平台 ({ev.rule.default_platform})")
         for ev in events))
    counts["event_extension"] = _copy(cur, "event_extension", (
        "event_id", "path", "phase", "seconds", "reason", "requested_at", "decided_at", "approved"),
        ((x[0], ev.grid.path, *x[1:]) for ev in events for x in ev.extensions))
    counts["event_clock"] = _copy(cur, "event_clock", (
        "event_id", "path", "phase", "unit", "limit_seconds", "extension_seconds",
        "elapsed_seconds", "running", "started_at", "stopped_at", "deadline_at", "amber_at",
        "status"), clock_rows)
    cur.execute("SET LOCAL gridgov.trusted_location = 'off'")
    return counts
