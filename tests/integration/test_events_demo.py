"""The demo's year of events: histories the services could have written, realistic mixes."""

from __future__ import annotations

from collections import Counter
from contextlib import closing

import psycopg2
import pytest

from geoserver.config import SecuritySettings
from geoserver.database.bootstrap import OWNER_ROLE
from geoserver.demo.geometry import generate_regions
from geoserver.demo.loader import DemoContext
from geoserver.demo.steps import events as demo_events
from geoserver.domain.events import OPEN_STATES, EventState, next_state
from geoserver.security.crypto import crypto_from_settings
from tests.conftest import DEMO_SEED


@pytest.fixture(scope="module")
def loaded(pg, demo_db):
    """Run the events step on the tiny city in one transaction, read it back, roll back."""
    ctx = DemoContext(scale="tiny", seed=DEMO_SEED, regions=generate_regions("tiny", DEMO_SEED),
                      crypto=crypto_from_settings(SecuritySettings()))
    with closing(psycopg2.connect(pg.url(OWNER_ROLE, demo_db))) as conn:
        try:
            with conn.cursor() as cur:
                # The demo template may hold a year of events already: read back only ours.
                cur.execute("SELECT coalesce(max(id), 0) FROM event")
                before = cur.fetchone()[0]
                counts = demo_events.load(conn, ctx)
                cur.execute("SELECT id, state, version, resolved_on_spot, closed_at IS NOT NULL, "
                            "deadline_at IS NOT NULL, path::text, grid_code FROM event "
                            "WHERE id > %s", (before,))
                rows = cur.fetchall()
                cur.execute("SELECT event_id, from_state, action, to_state, event_version, path "
                            "FROM event_history WHERE event_id > %s ORDER BY event_id, id",
                            (before,))
                history = cur.fetchall()
                cur.execute("SELECT count(DISTINCT event_id) FROM event_clock "
                            "WHERE event_id > %s", (before,))
                clocked = cur.fetchone()[0]
            yield counts, rows, history, clocked
        finally:
            conn.rollback()


def test_every_history_follows_the_transition_table(loaded) -> None:
    counts, rows, history, _ = loaded
    assert counts["event"] == len(rows) > 1000
    final = {}
    for event_id, from_state, action, to_state, version, _path in history:
        prev = final.get(event_id, (None, 0))
        assert (from_state or None) == (prev[0].value if prev[0] else None)
        state = next_state(prev[0], action, verification_required=True) if action != "close" \
            else next_state(prev[0], action, verification_required=False)
        assert state.value == to_state and version == prev[1] + 1
        final[event_id] = (state, version)
    for event_id, state, version, *_ in rows:
        assert final[event_id] == (EventState(state), version)


def test_the_mix_is_plausible(loaded) -> None:
    _, rows, history, clocked = loaded
    states = Counter(r[1] for r in rows)
    on_spot = sum(1 for r in rows if r[3])
    assert 0.1 < on_spot / len(rows) < 0.4
    open_rows = [r for r in rows if EventState(r[1]) in OPEN_STATES]
    assert 0 < len(open_rows) < 0.2 * len(rows)
    assert all(r[5] for r in open_rows if r[1] in ("reported", "dispatched", "signed", "handled"))
    assert clocked == len(open_rows)
    actions = Counter(h[2] for h in history)
    assert actions["approve_return"] > 0 and actions["approve_extension"] > 0
    assert actions["verify_fail"] > 0 and states["refused"] > 0
    assert all(r[6].endswith(r[7]) for r in rows)
    assert all(h[5] is not None for h in history)
