"""The app served over real HTTP in a thread, for tests and bench scripts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from geoserver.config import Settings
from geoserver.database.cluster import free_port


def app_with(settings: Settings) -> FastAPI:
    """Build the whole app for these settings."""
    from api.app import create_app

    return create_app(settings)


@contextmanager
def serve(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yield ``http://host:port``."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
