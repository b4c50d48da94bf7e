"""Reading a text/event-stream (SSE) in tests: messages, event changes, live patrol positions."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any

import httpx


class SseReader:
    """Read a text/event-stream in a thread; parsed events land in a queue."""

    def __init__(self, base: str, path: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        #: Every event taken from the queue so far, matched or skipped.
        self.log: list[dict[str, Any]] = []
        self.comments = 0
        self.status: int | None = None
        self.content_type = ""
        self.body = b""
        self._client = httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=60))
        self._resp: httpx.Response | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, headers), daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "the stream did not answer"

    def _run(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers) as resp:
                self._resp = resp
                self.content_type = resp.headers.get("content-type", "")
                if resp.status_code != 200:
                    self.body = resp.read()
                self.status = resp.status_code
                self._ready.set()
                if resp.status_code != 200:
                    return
                event: dict[str, Any] = {}
                for line in resp.iter_lines():
                    if line == "":
                        if "data" in event:
                            self.events.put(event)
                        event = {}
                    elif line.startswith(":"):
                        self.comments += 1
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        event[name] = json.loads(value) if name == "data" else value
        except (httpx.HTTPError, RuntimeError, ValueError, OSError):
            pass  # closed under our feet by close()
        finally:
            self._ready.set()
            self.events.put(None)

    def next(self, event: str, where: Callable[[Any], bool] = lambda d: True,
             timeout: float = 30) -> dict[str, Any]:
        """Return the next event named ``event`` whose data satisfies ``where``."""
        while True:
            try:
                item = self.events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {event} event within {timeout} s") from None
            if item is None:
                raise AssertionError(f"the stream ended before a {event} event")
            self.log.append(item)
            if item.get("event") == event and where(item["data"]):
                return item

    def seen(self) -> list[dict[str, Any]]:
        """Return every event received so far (taken from the queue or not)."""
        while True:
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return self.log
            if item is not None:
                self.log.append(item)

    def close(self) -> None:
        """Drop the connection and wait for the reader to end."""
        if self._resp is not None:
            self._resp.close()
        self._client.close()
        self._thread.join(10)
