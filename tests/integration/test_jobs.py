"""The job runner: one leader among processes, periodic jobs, a queue with retries."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, text

from geoserver.database.engine import SYSTEM_SCOPE, scoped_session
from geoserver.jobs.runner import JobRegistry, JobRunner, enqueue


@pytest.fixture(autouse=True)
def clean_tables(module_engine: Engine) -> None:
    with module_engine.begin() as conn:
        conn.execute(text("DELETE FROM gridgov_meta.job_state"))
        conn.execute(text("DELETE FROM gridgov_meta.job_queue"))


def test_periodic_job_runs_and_failures_back_off(module_engine: Engine) -> None:
    reg = JobRegistry()
    calls: list[str] = []

    @reg.every("ok", 3600)
    def ok(session) -> None:
        calls.append("ok")

    @reg.every("broken", 10)
    def broken(session) -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    runner = JobRunner(module_engine, reg)
    runner.run_due()
    runner.run_due()  # not due again: each ran once
    assert calls.count("ok") == 1 and calls.count("broken") == 1
    with module_engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(text(
            "SELECT name, failures, last_error, next_run - now() AS wait "
            "FROM gridgov_meta.job_state"))}
    assert rows["ok"].failures == 0 and rows["ok"].last_error is None
    assert rows["broken"].failures == 1 and "boom" in rows["broken"].last_error
    assert rows["broken"].wait.total_seconds() > 10  # backed off beyond its interval


def test_queued_job_runs_once_and_failures_retry(module_engine: Engine) -> None:
    reg = JobRegistry()
    seen: list[dict] = []

    @reg.handler("echo")
    def echo(session, payload) -> None:
        seen.append(payload)

    @reg.handler("flaky")
    def flaky(session, payload) -> None:
        raise ValueError("not yet")

    with scoped_session(module_engine, SYSTEM_SCOPE) as s:
        enqueue(s, "echo", {"n": 1}, dedupe_key="a")
        enqueue(s, "echo", {"n": 2}, dedupe_key="a")  # same key while pending: dropped
        enqueue(s, "flaky", {})
    runner = JobRunner(module_engine, reg)
    runner.run_queue()
    runner.run_queue()
    assert seen == [{"n": 1}]
    with module_engine.connect() as conn:
        flaky_row = conn.execute(text(
            "SELECT attempts, done_at, last_error, run_after > now() AS later "
            "FROM gridgov_meta.job_queue WHERE kind = 'flaky'")).one()
    assert flaky_row.attempts == 1 and flaky_row.done_at is None
    assert "not yet" in flaky_row.last_error and flaky_row.later


def test_enqueue_rolls_back_with_its_transaction(module_engine: Engine) -> None:
    with pytest.raises(RuntimeError), scoped_session(module_engine, SYSTEM_SCOPE) as s:
        enqueue(s, "echo", {"n": 1})
        raise RuntimeError("caller failed")
    with module_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM gridgov_meta.job_queue")).scalar() == 0


def test_only_one_runner_leads(module_engine: Engine) -> None:
    reg = JobRegistry()
    a, b = JobRunner(module_engine, reg, tick=0.05), JobRunner(module_engine, reg, tick=0.05)
    a.start()
    b.start()
    try:
        deadline = time.monotonic() + 10
        while not (a.is_leader or b.is_leader) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert a.is_leader != b.is_leader
        leader, follower = (a, b) if a.is_leader else (b, a)
        leader.stop()
        deadline = time.monotonic() + 10
        while not follower.is_leader and time.monotonic() < deadline:
            time.sleep(0.05)
        assert follower.is_leader, "leadership did not pass on when the leader stopped"
    finally:
        a.stop()
        b.stop()
