"""Run a coroutine to completion from a sync test, whatever loop the test session holds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop in its own thread and return its result.

    Playwright's sync API keeps an event loop running in the main thread once a browser test
    has run, and ``asyncio.run`` refuses to start inside a running loop.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def main() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            error.append(e)

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]
