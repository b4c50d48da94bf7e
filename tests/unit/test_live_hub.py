"""The live hub without a database: routing by key and by jurisdiction, bounded queues,
resynchronisation, closing, and the SSE wire format."""

from __future__ import annotations

import asyncio

import pytest

from api.live import (
    RESYNC,
    LiveHub,
    SseEvent,
    StreamClosed,
    covers,
    parse_last_event_id,
    sse_response,
)
from geoserver.errors import InvalidInput, Unavailable
from tests.support.aio import run_async

MSG, LIVE = "gridgov_messages", "gridgov_patrol_live"
A = "330300.330302.330302006"
B = "330300.330302.330302024"


def _hub(**kw) -> LiveHub:
    hub = LiveHub("", (MSG, LIVE), key_fields={MSG: "user_id"}, **kw)
    hub.start(listen=False)
    return hub


def run(coro):
    return run_async(coro)


def test_messages_go_to_their_owner_only() -> None:
    async def go() -> None:
        hub = _hub()
        alice, bob = hub.subscribe(MSG, key=1), hub.subscribe(MSG, key=2)
        alice2 = hub.subscribe(MSG, key=1)  # a second tab
        hub._dispatch([(MSG, {"user_id": 1, "id": 10}), (MSG, {"user_id": 3, "id": 11})])
        assert await alice.get(0.1) == [{"user_id": 1, "id": 10}]
        assert await alice2.get(0.1) == [{"user_id": 1, "id": 10}]
        assert await bob.get(0.05) == []
        with pytest.raises(ValueError, match="needs a key"):
            hub.subscribe(MSG)

    run(go())


def test_moves_are_filtered_by_jurisdiction() -> None:
    async def go() -> None:
        hub = _hub()
        township = hub.subscribe(LIVE, scope=[A])
        city = hub.subscribe(LIVE, scope=[""])
        nobody = hub.subscribe(LIVE, scope=[])
        inside, outside = {"path": A + ".330302006044.330302006044001"}, {"path": B + ".1"}
        lookalike = {"path": A + "9"}  # a sibling whose code starts with A's: not inside
        hub._dispatch([(LIVE, inside), (LIVE, outside), (LIVE, lookalike), (LIVE, {})])
        assert await township.get(0.1) == [inside]
        assert await city.get(0.1) == [inside, outside, lookalike]
        assert await nobody.get(0.05) == []

    run(go())


def test_a_slow_client_is_cut_off_not_waited_for() -> None:
    async def go() -> None:
        hub = _hub(queue_limit=3)
        slow, fast = hub.subscribe(MSG, key=1), hub.subscribe(MSG, key=1)
        for i in range(3):
            hub._dispatch([(MSG, {"user_id": 1, "id": i})])
            assert len(await fast.get(0.1)) == 1
        hub._dispatch([(MSG, {"user_id": 1, "id": 3})])
        with pytest.raises(StreamClosed):
            await slow.get(0.1)
        assert slow.overflowed and hub.dropped == 1
        assert await fast.get(0.1) == [{"user_id": 1, "id": 3}]

    run(go())


def test_resync_reaches_everyone_and_close_ends_all() -> None:
    async def go() -> None:
        hub = _hub()
        subs = [hub.subscribe(MSG, key=1), hub.subscribe(LIVE, scope=[A])]
        hub._dispatch(None)
        for sub in subs:
            assert (await sub.get(0.1))[0] is RESYNC
        waiting = asyncio.create_task(subs[0].get(30))
        await asyncio.sleep(0)
        hub.begin_close()
        with pytest.raises(StreamClosed):
            await waiting
        with pytest.raises(Unavailable):
            hub.subscribe(MSG, key=1)
        for sub in subs:
            hub.unsubscribe(sub)
            hub.unsubscribe(sub)  # twice is harmless
        assert hub.subscribers == 0

    run(go())


def test_sse_wire_format_and_heartbeat() -> None:
    assert SseEvent({"a": "x\ny"}, event="message", id=7).encode() == (
        b'id: 7\nevent: message\ndata: {"a": "x\\ny"}\n\n')
    assert SseEvent([1]).encode() == b"data: [1]\n\n"

    async def go() -> list[bytes]:
        hub = _hub(heartbeat=0.0)

        async def events():
            yield SseEvent({"n": 1}, event="e", id=1)
            yield None  # idle: a heartbeat comment is due at once with heartbeat=0
            yield SseEvent({"n": 2}, event="e", id=2)

        response = sse_response(hub, events())
        assert response.media_type == "text/event-stream"
        assert response.headers["cache-control"].startswith("no-cache")
        return [chunk async for chunk in response.body_iterator]  # type: ignore[misc]

    chunks = run(go())
    assert chunks[0].startswith(b"retry: ")
    assert chunks[1:] == [b'id: 1\nevent: e\ndata: {"n": 1}\n\n', b": keep-alive\n\n",
                          b'id: 2\nevent: e\ndata: {"n": 2}\n\n']


def test_stream_ends_at_its_maximum_age() -> None:
    async def go() -> list[bytes]:
        hub = _hub(max_stream_seconds=0.0)

        async def events():
            while True:
                await asyncio.sleep(0.01)
                yield SseEvent({"n": 1})

        return [c async for c in sse_response(hub, events()).body_iterator]  # type: ignore[misc]

    assert len(run(go())) == 1  # only the retry hint: the first event is already too late


def test_covers_and_last_event_id() -> None:
    assert covers([A], A) and covers([A], A + ".1") and not covers([A], A + "1")
    assert covers([""], B) and not covers([], A)
    assert parse_last_event_id(None) is None and parse_last_event_id(" ") is None
    assert parse_last_event_id("42") == 42
    for bad in ("abc", "-1", "1.5", "9" * 19):
        with pytest.raises(InvalidInput) as e:
            parse_last_event_id(bad)
        assert e.value.problems[0].field == "Last-Event-ID"
