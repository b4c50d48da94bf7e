"""Admission control: no more requests at work than the database pool can serve at once.

Sync routes and their session dependency run in separate calls on the thread pool, and the
dependency takes its connection first. Without a gate an overload deadlocks: every pooled
connection is held by a request waiting for a thread, while every thread is held by a request
waiting for a connection (measured at 50 reports/s on one process). Requests past the gate wait
here, on the event loop, holding neither; a request leaves the gate when its response starts, so
event streams and long downloads do not keep a place.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors


class AdmissionGate:
    """Let at most ``limit`` requests work at once; past ``wait_seconds`` in line, answer 503."""

    def __init__(self, app: ASGIApp, *, limit: int, wait_seconds: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._gate = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wait for a place, work, and give the place back when the response starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await asyncio.wait_for(self._gate.acquire(), self.wait_seconds)
        except TimeoutError:
            busy = errors.problem(503, "the server is busy; retry shortly",
                                  headers={"Retry-After": "5"})
            await busy(scope, receive, send)
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self._gate.release()

        async def send_and_release(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            release()
