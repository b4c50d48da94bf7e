"""Statistics on the tiny demo city: aggregates, rates, Shanghai days, peer ranking, Gi*.

Events are written straight into the table (as the app role, system scope) at known places
and times, so every figure below can be counted by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import h3.api.basic_int as h3
import pytest
from sqlalchemy import text

from geoserver.database.engine import set_scope
from geoserver.domain.principal import SYSTEM, Principal
from geoserver.errors import InvalidInput, PermissionDenied
from geoserver.geo.h3cells import cell_center, cell_int, to_signed, to_unsigned
from geoserver.services import statistics as st

COUNTY = "330302"
WUMA, WUMA_PATH = "330302006", "330300.330302.330302006"
BINJIANG = "330302024"
TOWNSHIPS = {"330302006", "330302024", "330302025", "330302026"}
ANALYST = frozenset({"statistics.read", "person.read", "building.read", "place.read",
                     "enterprise.read", "event.read"})


def _actor(scope: str, permissions=ANALYST) -> Principal:
    return Principal(user_id=None, username="analyst", scope=(scope,), permissions=permissions)


@pytest.fixture
def event_type(demo) -> int:
    return int(demo.execute(text(
        "INSERT INTO event_type (code, name) VALUES ('stat_test', '统计测试') RETURNING id"))
        .scalar_one())


def add_event(session, type_id: int, lon: float, lat: float, at: datetime,
              state: str = "reported") -> int:
    """Write one event at a point and time (the trigger finds its grid)."""
    return int(session.execute(text(
        "INSERT INTO event (code, event_type_id, source, severity, state, title, description, "
        "geom, h3_r7, h3_r8, h3_r9, reported_at) VALUES ('T' || nextval('event_id_seq'), :t, "
        "'patrol', 'normal', :state, '测试事件', '测试', ST_SetSRID(ST_Point(:x, :y), 4490), "
        ":r7, :r8, :r9, :at) RETURNING id"),
        {"t": type_id, "state": state, "x": lon, "y": lat, "at": at,
         "r7": cell_int(lon, lat, 7), "r8": cell_int(lon, lat, 8),
         "r9": cell_int(lon, lat, 9)}).scalar_one())


def _label_point(session, code: str) -> tuple[float, float]:
    row = session.execute(text("SELECT ST_X(label_point), ST_Y(label_point) FROM region "
                               "WHERE code = :c AND valid_to IS NULL"), {"c": code}).one()
    return float(row[0]), float(row[1])


def _count(session, sql: str, **params) -> int:
    return int(session.execute(text(sql), params).scalar_one())


def as_township(session):
    """Switch the session to the township's scope (same transaction, so it sees the set-up)."""
    set_scope(session, [WUMA_PATH])
    return session


def test_distribution_over_villages_with_rates(demo) -> None:
    st.refresh_objects(demo)
    truth = _count(demo, "SELECT count(*) FROM key_place WHERE path <@ CAST(:p AS ltree)",
                   p=WUMA_PATH)
    truths = {}
    for code in demo.execute(text("SELECT code FROM region WHERE parent_code = :c "
                                  "AND valid_to IS NULL"), {"c": WUMA}).scalars():
        path = f"{WUMA_PATH}.{code}"
        truths[code] = (
            _count(demo, "SELECT count(*) FROM key_place WHERE path <@ CAST(:p AS ltree)", p=path),
            _count(demo, "SELECT count(*) FROM person WHERE path <@ CAST(:p AS ltree)", p=path))
    session = as_township(demo)
    out = st.distribution(session, actor=_actor(WUMA_PATH), subject="key_place")
    assert out["region"]["code"] == WUMA and out["refreshed_at"] is not None
    assert out["total"] == truth > 0
    assert {r["code"] for r in out["rows"] if r["code"]} == set(truths)
    for row in out["rows"]:
        if not row["code"]:
            continue
        assert (row["n"], row["residents"]) == truths[row["code"]]
        if row["residents"]:
            assert row["per_1000"] == pytest.approx(row["n"] * 1000 / row["residents"], rel=1e-3)
        assert row["per_km2"] == pytest.approx(row["n"] / row["area_km2"], rel=1e-2)


def test_distribution_by_category_sums_to_the_total(demo) -> None:
    st.refresh_objects(demo)
    out = st.distribution(demo, actor=SYSTEM, subject="residence", region_code=COUNTY,
                          by="category")
    assert {r["category"] for r in out["rows"]} <= {"owner_occupied", "rented", "vacant",
                                                    "business"}
    assert out["total"] == _count(demo, "SELECT count(*) FROM residence")
    assert sum(r["share"] for r in out["rows"]) == pytest.approx(1.0, abs=1e-3)


def test_event_days_are_shanghai_days(demo, event_type) -> None:
    x, y = _label_point(demo, WUMA)
    # Sunday 23:30 and Monday 00:30 in Shanghai: one UTC day, two governance days and weeks.
    add_event(demo, event_type, x, y, datetime(2025, 3, 2, 15, 30, tzinfo=UTC))
    add_event(demo, event_type, x, y, datetime(2025, 3, 2, 16, 30, tzinfo=UTC), state="closed")
    st.refresh_events(demo, full=True)
    out = st.trend(demo, actor=SYSTEM, subject="event", region_code=COUNTY, unit="day",
                   event_type="stat_test", date_from=date(2025, 3, 1),
                   date_to=date(2025, 3, 3))
    assert [(r["period"], r["n"], r["closed"]) for r in out["rows"]] == [
        ("2025-03-01", 0, 0), ("2025-03-02", 1, 0), ("2025-03-03", 1, 1)]
    weekly = st.trend(demo, actor=SYSTEM, subject="event", region_code=COUNTY, unit="week",
                      event_type="stat_test", date_from=date(2025, 2, 24),
                      date_to=date(2025, 3, 9))
    assert [(r["period"], r["n"]) for r in weekly["rows"]] == [
        ("2025-02-24", 1), ("2025-03-03", 1)]


def test_incremental_refresh_picks_up_new_and_changed_events(demo, event_type) -> None:
    x, y = _label_point(demo, WUMA)
    day = datetime(2025, 5, 10, 2, 0, tzinfo=UTC)
    st.refresh_events(demo, full=True)
    first = add_event(demo, event_type, x, y, day)
    # Pretend the last run started before the insert (the margin covers late commits).
    demo.execute(text("UPDATE stat_refresh SET started_at = started_at - interval '1 hour' "
                      "WHERE name = 'events'"))
    assert st.refresh_events(demo)["days"] >= 1
    args = {"actor": SYSTEM, "subject": "event", "region_code": COUNTY,
            "event_type": "stat_test", "date_from": date(2025, 5, 10),
            "date_to": date(2025, 5, 10)}
    assert st.distribution(demo, **args)["total"] == 1
    demo.execute(text("UPDATE event SET state = 'closed', updated_at = clock_timestamp() "
                      "WHERE id = :i"), {"i": first})
    st.refresh_events(demo)
    assert st.trend(demo, unit="day", **args)["rows"][0]["closed"] == 1


def test_ranking_shows_peer_totals_and_nothing_else(demo, event_type) -> None:
    counts = {WUMA: 3, BINJIANG: 5}
    for code, n in counts.items():
        x, y = _label_point(demo, code)
        for i in range(n):
            add_event(demo, event_type, x, y, datetime(2025, 4, 1 + i, 3, tzinfo=UTC))
    st.refresh_objects(demo)
    st.refresh_events(demo, full=True)
    session = as_township(demo)
    actor = _actor(WUMA_PATH)
    out = st.ranking(session, actor=actor, subject="event", measure="total",
                     event_type="stat_test", date_from=date(2025, 4, 1),
                     date_to=date(2025, 4, 30))
    rows = {r["code"]: r for r in out["rows"]}
    assert set(rows) == TOWNSHIPS
    assert rows[BINJIANG]["total"] == 5 and rows[BINJIANG]["rank"] == 1
    assert rows[WUMA]["total"] == 3 and rows[WUMA]["rank"] == 2 and rows[WUMA]["own"]
    assert [c for c, r in rows.items() if r["own"]] == [WUMA]
    assert set(out["rows"][0]) == {"code", "name", "level", "own", "total", "residents",
                                   "area_km2", "per_1000", "per_km2", "rank"}
    # The peers' rows stay invisible: the township sees none of 滨江's events or aggregates.
    assert _count(session, "SELECT count(*) FROM event WHERE township_code = :c OR path <@ "
                           "CAST(:p AS ltree)", c=BINJIANG, p="330300.330302.330302024") == 0
    assert _count(session, "SELECT count(*) FROM stat_event_daily WHERE path <@ "
                           "CAST(:p AS ltree)", p="330300.330302.330302024") == 0
    # A region outside the caller's scope gets no ranking at all, through the service or SQL.
    with pytest.raises(InvalidInput):
        st.ranking(session, actor=actor, subject="event", region_code=BINJIANG)
    assert session.execute(text(
        "SELECT count(*) FROM gridgov_meta.peer_totals(:c, 'event', NULL, '2025-04-01', "
        "'2025-04-30', NULL)"), {"c": BINJIANG}).scalar_one() == 0


def test_ranking_by_rate_uses_residents(demo) -> None:
    st.refresh_objects(demo)
    out = st.ranking(demo, actor=SYSTEM, subject="key_place", region_code=WUMA)
    assert out["measure"] == "per_1000"
    rates = [r["per_1000"] for r in out["rows"]]
    assert rates == sorted(rates, reverse=True)
    for r in out["rows"]:
        assert r["per_1000"] == pytest.approx(r["total"] * 1000 / r["residents"], rel=1e-3)


def test_statistics_need_their_permissions(demo) -> None:
    with pytest.raises(PermissionDenied):
        st.distribution(demo, actor=_actor("", frozenset({"person.read"})), subject="person")
    with pytest.raises(PermissionDenied):
        st.distribution(demo, actor=_actor("", frozenset({"statistics.read"})),
                        subject="person")
    for kwargs, field in (({"subject": "aliens"}, "subject"),
                          ({"subject": "event", "date_from": date(2025, 3, 2),
                            "date_to": date(2025, 3, 1)}, "date_from"),
                          ({"subject": "event", "by": "mood"}, "by"),
                          ({"subject": "event", "event_type": "no_such_type"}, "event_type")):
        with pytest.raises(InvalidInput) as err:
            st.distribution(demo, actor=SYSTEM, **kwargs)
        assert err.value.problems[0].field == field


def test_region_table_lists_every_village(demo) -> None:
    st.refresh_objects(demo)
    rows = list(st.region_table(demo, actor=SYSTEM, region_code=WUMA))
    assert rows and {r["level"] for r in rows} == {"village"}
    assert sum(r["person"] for r in rows) == _count(
        demo, "SELECT count(*) FROM person WHERE path <@ CAST(:p AS ltree)", p=WUMA_PATH)
    grids = list(st.region_table(demo, actor=SYSTEM, region_code=WUMA, level="grid"))
    assert len(grids) > len(rows)


def test_gi_star_finds_a_synthetic_cluster(demo, event_type) -> None:
    x, y = _label_point(demo, WUMA)
    centre = cell_int(x, y, 9)
    ring = [to_signed(c) for c in h3.grid_disk(to_unsigned(centre), 1) if c != centre]
    at = datetime(2025, 6, 10, 2, tzinfo=UTC)
    for _ in range(12):
        add_event(demo, event_type, x, y, at)
    for cell in ring:
        for _ in range(4):
            add_event(demo, event_type, *cell_center(cell), at)
    # One scattered event elsewhere in the county, and one the month before.
    far_x, far_y = _label_point(demo, "330302026")
    add_event(demo, event_type, far_x, far_y, at)
    add_event(demo, event_type, far_x, far_y, at - timedelta(days=30))
    st.refresh_events(demo, full=True)
    out = st.hotspots(demo, actor=SYSTEM, region_code=COUNTY, resolution=9,
                      event_type="stat_test", date_from=date(2025, 6, 1),
                      date_to=date(2025, 6, 30))
    top = out["features"][0]["properties"]
    assert top["cell"] == h3.int_to_str(to_unsigned(centre))
    assert top["count"] == 12 and top["spot"] == "hot" and top["confidence"] == 99
    assert out["study_cells"] > 30 and out["total"] == 12 + 4 * len(ring) + 1
    changed = {c["cell"]: c["change"] for c in out["changes"]}
    assert changed[top["cell"]] == 12
    assert out["changes"][0]["cell"] == top["cell"]
    far_cell = h3.int_to_str(h3.latlng_to_cell(far_y, far_x, 9))
    assert far_cell not in changed  # one event then, one now: no change


def test_event_hotspots_count_the_refreshed_cells_and_say_how_fresh(demo, event_type) -> None:
    x, y = _label_point(demo, WUMA)
    st.refresh_events(demo, full=True)
    refreshed = st.refreshed_at(demo, "event")
    args = {"actor": _actor(WUMA_PATH), "region_code": WUMA, "resolution": 8,
            "event_type": "stat_test", "date_from": date(2025, 7, 1),
            "date_to": date(2025, 7, 3)}
    for _ in range(3):
        add_event(demo, event_type, x, y, datetime(2025, 7, 2, 3, tzinfo=UTC))
    add_event(demo, event_type, x, y, datetime(2025, 6, 29, 3, tzinfo=UTC))  # the period before
    # Not counted until the job runner has been round: the answer says as of when.
    stale = st.hotspots(demo, **args)
    assert stale["total"] == 0 and stale["refreshed_at"] == refreshed
    demo.execute(text("UPDATE stat_refresh SET started_at = started_at - interval '1 hour' "
                      "WHERE name = 'events'"))
    assert st.refresh_events(demo)["cell_rows"] >= 2  # one cell on each of two days, at least
    out = st.hotspots(demo, **args)
    assert out["total"] == 3 and out["refreshed_at"] > refreshed
    cell = h3.int_to_str(h3.latlng_to_cell(y, x, 8))
    assert {c["cell"]: (c["count"], c["previous"]) for c in out["changes"]}[cell] == (3, 1)


def test_hotspots_refuse_bad_input(demo) -> None:
    with pytest.raises(InvalidInput):
        st.hotspots(demo, actor=SYSTEM, region_code=COUNTY, resolution=6)
    with pytest.raises(InvalidInput):
        st.hotspots(demo, actor=SYSTEM, region_code=COUNTY, source="weather")
    with pytest.raises(PermissionDenied):
        st.hotspots(demo, actor=_actor("", frozenset({"statistics.read"})),
                    region_code=COUNTY)


def test_whole_months_come_from_the_rollup_and_edges_from_days(demo, event_type) -> None:
    x, y = _label_point(demo, WUMA)
    for day in (date(2025, 1, 5), date(2025, 1, 15), date(2025, 2, 10), date(2025, 3, 5),
                date(2025, 3, 25)):
        add_event(demo, event_type, x, y, datetime(day.year, day.month, day.day, 4, tzinfo=UTC))
    st.refresh_events(demo, full=True)
    assert _count(demo, "SELECT count(*) FROM stat_event_monthly WHERE event_type_id = :t "
                        "AND path = CAST(:p AS ltree)", t=event_type, p=WUMA_PATH) == 3
    args = {"actor": SYSTEM, "subject": "event", "region_code": COUNTY,
            "event_type": "stat_test", "date_from": date(2025, 1, 10),
            "date_to": date(2025, 3, 20)}
    # January 10–31 and March 1–20 from the daily table, February from the monthly one.
    monthly = st.trend(demo, unit="month", **args)
    assert [(r["period"], r["n"]) for r in monthly["rows"]] == [
        ("2025-01-01", 1), ("2025-02-01", 1), ("2025-03-01", 1)]
    by_region = st.distribution(demo, **args)
    assert {r["code"]: r["n"] for r in by_region["rows"]}[WUMA] == 3
    by_type = st.distribution(demo, by="category", **args)
    assert by_type["rows"] == [{"category": "stat_test", "label": "统计测试", "n": 3,
                                "share": 1.0}]
    # A village's children are grids: below the rollup, so all from the daily table.
    village_path = demo.execute(text(
        "SELECT subpath(path, 0, 4)::text FROM event WHERE event_type_id = :t LIMIT 1"),
        {"t": event_type}).scalar_one()
    village = st.distribution(demo, **{**args, "region_code": village_path.split(".")[-1]})
    assert village["total"] == 3 and sum(r["n"] for r in village["rows"]) == 3


def test_whole_months() -> None:
    assert st.whole_months(st.Period(date(2025, 1, 10), date(2025, 3, 20))) == (
        date(2025, 2, 1), date(2025, 2, 1))
    assert st.whole_months(st.Period(date(2025, 1, 1), date(2025, 2, 28))) == (
        date(2025, 1, 1), date(2025, 2, 1))
    assert st.whole_months(st.Period(date(2025, 1, 2), date(2025, 2, 27))) is None
