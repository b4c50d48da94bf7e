"""The admission gate: at most ``limit`` requests at work; a place is freed when the response
starts; past the wait, 503."""

from __future__ import annotations

import asyncio
import json

from api.admission import AdmissionGate
from tests.support.aio import run_async


def _scope() -> dict:
    return {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}


class SlowApp:
    """Starts its response when told to, then streams its body when told to."""

    def __init__(self) -> None:
        self.working = 0
        self.most = 0
        self.start = asyncio.Event()
        self.finish = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        self.working += 1
        self.most = max(self.most, self.working)
        await self.start.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        self.working -= 1
        await self.finish.wait()
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(app, sent: list) -> None:
    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    await app(_scope(), receive, send)


def test_no_more_than_the_limit_at_work_and_streams_free_their_place() -> None:
    async def run() -> None:
        inner = SlowApp()
        gate = AdmissionGate(inner, limit=2, wait_seconds=5)
        outs = [[] for _ in range(5)]
        tasks = [asyncio.create_task(_call(gate, o)) for o in outs]
        await asyncio.sleep(0.05)
        assert inner.working == 2  # three wait at the gate, on the loop
        inner.start.set()  # responses start: places are freed while bodies still stream
        await asyncio.sleep(0.05)
        assert all(o and o[0]["status"] == 200 for o in outs)
        assert inner.most == 2
        inner.finish.set()
        await asyncio.gather(*tasks)

    run_async(run())


def test_a_request_waiting_too_long_gets_503() -> None:
    async def run() -> None:
        inner = SlowApp()
        gate = AdmissionGate(inner, limit=1, wait_seconds=0.05)
        first, second = [], []
        task = asyncio.create_task(_call(gate, first))
        await asyncio.sleep(0.01)
        await _call(gate, second)
        assert second[0]["status"] == 503
        headers = dict(second[0]["headers"])
        assert headers[b"retry-after"] == b"5"
        assert json.loads(second[1]["body"])["status"] == 503
        inner.start.set()
        inner.finish.set()
        await task
        assert first[0]["status"] == 200

    run_async(run())
