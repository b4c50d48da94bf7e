"""One background runner for periodic and queued jobs.

Every server process starts a runner; only the one holding a PostgreSQL advisory lock (the
leader) runs jobs, so any number of processes is safe. When the leader's connection dies its lock
goes with it and another process takes over. Jobs must be idempotent: a failure is logged,
recorded in ``gridgov_meta.job_state`` and retried with back-off.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from geoserver.database.engine import SYSTEM_SCOPE, scoped_session

log = logging.getLogger("gridgov.jobs")

#: Advisory lock key for leadership (any constant unique to gridgov).
LEADER_LOCK_KEY = 0x67726964  # "grid"

JobFn = Callable[[Session], Any]
QueueHandler = Callable[[Session, dict[str, Any]], Any]


@dataclass(frozen=True)
class PeriodicJob:
    """A job run every ``interval`` seconds by the leader."""

    name: str
    interval: float
    fn: JobFn
    max_backoff: float = 3600.0


class JobRegistry:
    """The jobs and queue handlers the runner knows; upper layers register theirs at start-up."""

    def __init__(self) -> None:
        self.periodic: dict[str, PeriodicJob] = {}
        self.handlers: dict[str, QueueHandler] = {}

    def every(self, name: str, seconds: float) -> Callable[[JobFn], JobFn]:
        """Register a periodic job (decorator)."""

        def wrap(fn: JobFn) -> JobFn:
            self.periodic[name] = PeriodicJob(name, seconds, fn)
            return fn

        return wrap

    def handler(self, kind: str) -> Callable[[QueueHandler], QueueHandler]:
        """Register the handler of a queued job kind (decorator)."""

        def wrap(fn: QueueHandler) -> QueueHandler:
            self.handlers[kind] = fn
            return fn

        return wrap


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    delay: timedelta = timedelta(0),
    dedupe_key: str | None = None,
) -> None:
    """Queue a one-off job in the caller's transaction (it runs only if that commits)."""
    session.execute(
        text(
            "INSERT INTO gridgov_meta.job_queue (kind, payload, run_after, dedupe_key) "
            "VALUES (:k, CAST(:p AS jsonb), now() + :d, :dk) ON CONFLICT DO NOTHING"
        ),
        {"k": kind, "p": _json(payload or {}), "d": delay, "dk": dedupe_key},
    )


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class JobRunner:
    """Runs the registry's jobs in a daemon thread while this process leads."""

    def __init__(self, engine: Engine, registry: JobRegistry, *, tick: float = 1.0) -> None:
        self.engine = engine
        self.registry = registry
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.is_leader = False

    def start(self) -> None:
        """Start the runner thread."""
        self._thread = threading.Thread(target=self._loop, name="gridgov-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the runner to stop and wait for the job in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with self.engine.connect() as lock_conn:
                    got = lock_conn.execute(
                        text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK_KEY}
                    ).scalar()
                    lock_conn.commit()
                    if not got:
                        self.is_leader = False
                        self._stop.wait(self.tick * 5)
                        continue
                    self.is_leader = True
                    log.info("job runner: this process leads")
                    while not self._stop.is_set():
                        # The lock lives with this connection: if it died, so did leadership.
                        lock_conn.execute(text("SELECT 1")).scalar()
                        lock_conn.commit()
                        self.run_due()
                        self._stop.wait(self.tick)
                    lock_conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK_KEY}
                    )
                    lock_conn.commit()
            except Exception as e:  # the database went away: try again later
                self.is_leader = False
                log.warning("job runner: %s; retrying", e.__class__.__name__)
                self._stop.wait(self.tick * 5)
        self.is_leader = False

    def run_due(self) -> int:
        """Run every periodic job that is due and a batch of queued jobs; return how many ran."""
        ran = 0
        for job in self.registry.periodic.values():
            if self._stop.is_set():
                break
            if self._claim_periodic(job):
                self._run_periodic(job)
                ran += 1
        ran += self.run_queue()
        return ran

    def _claim_periodic(self, job: PeriodicJob) -> bool:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO gridgov_meta.job_state (name) VALUES (:n) ON CONFLICT DO NOTHING"
                ),
                {"n": job.name},
            )
            due = conn.execute(
                text(
                    "UPDATE gridgov_meta.job_state SET last_started = now() "
                    "WHERE name = :n AND next_run <= now() RETURNING name"
                ),
                {"n": job.name},
            ).first()
        return due is not None

    def _run_periodic(self, job: PeriodicJob) -> None:
        try:
            with scoped_session(self.engine, SYSTEM_SCOPE) as session:
                job.fn(session)
        except Exception as e:
            log.exception("job %s failed", job.name)
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        "UPDATE gridgov_meta.job_state SET failures = failures + 1, "
                        "last_error = :e, last_finished = now(), runs = runs + 1, "
                        "next_run = now() + make_interval(secs => "
                        "least(:max, :iv * power(2, failures + 1))) WHERE name = :n"
                    ),
                    {"e": repr(e)[:2000], "n": job.name, "iv": job.interval,
                     "max": job.max_backoff},
                )
            return
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE gridgov_meta.job_state SET failures = 0, last_error = NULL, "
                    "last_ok = now(), last_finished = now(), runs = runs + 1, "
                    "next_run = now() + make_interval(secs => :iv) WHERE name = :n"
                ),
                {"n": job.name, "iv": job.interval},
            )

    def run_queue(self, batch: int = 20) -> int:
        """Run up to ``batch`` due queued jobs, each in its own transaction."""
        ran = 0
        for _ in range(batch):
            if self._stop.is_set() or not self._run_one_queued():
                break
            ran += 1
        return ran

    def _run_one_queued(self) -> bool:
        with scoped_session(self.engine, SYSTEM_SCOPE) as session:
            row = session.execute(
                text(
                    "SELECT id, kind, payload, attempts, max_attempts FROM gridgov_meta.job_queue "
                    "WHERE done_at IS NULL AND NOT dead AND run_after <= now() "
                    "ORDER BY run_after, id LIMIT 1 FOR UPDATE SKIP LOCKED"
                )
            ).first()
            if row is None:
                return False
            handler = self.registry.handlers.get(row.kind)
            error: str | None = None
            if handler is None:
                error = f"no handler for job kind {row.kind!r}"
            else:
                try:
                    with session.begin_nested():
                        handler(session, row.payload)
                except Exception as e:
                    log.exception("queued job %s (%s) failed", row.id, row.kind)
                    error = repr(e)[:2000]
            if error is None:
                session.execute(
                    text("UPDATE gridgov_meta.job_queue SET done_at = now(), "
                         "attempts = attempts + 1 WHERE id = :i"),
                    {"i": row.id},
                )
            else:
                session.execute(
                    text(
                        "UPDATE gridgov_meta.job_queue SET attempts = attempts + 1, "
                        "last_error = :e, dead = attempts + 1 >= max_attempts, "
                        "run_after = now() + make_interval(secs => least(3600, "
                        "power(2, attempts + 1))) WHERE id = :i"
                    ),
                    {"i": row.id, "e": error},
                )
        return True
