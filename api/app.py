"""The FastAPI application factory. The lifespan owns the engine and the job runner; nothing
connects at import time."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import geoserver.jobs.events as event_jobs  # (registers the event jobs)
import geoserver.jobs.notifications  # noqa: F401  (registers the message jobs)
import geoserver.jobs.partners  # noqa: F401  (registers the partner jobs)
import geoserver.jobs.patrols as patrol_jobs  # (registers the patrol jobs)
import geoserver.jobs.statistics  # noqa: F401  (registers the statistics jobs)
from api import errors
from api.admission import AdmissionGate
from api.live import start_hub
from api.routes import (
    addresses,
    admin,
    auth,
    claims,
    event_types,
    events,
    health,
    mobile,
    notifications,
    objects,
    ogc,
    patrols,
    regions,
    search,
    statistics,
)
from api.routes import live as live_routes
from api.routes import partners as partner_routes
from api.routes import tiles as tile_routes
from api.routes.tiles import TileCacheMiddleware
from geoserver.config import Settings
from geoserver.database.engine import make_engine
from geoserver.jobs import registry as job_registry
from geoserver.jobs.runner import JobRunner
from geoserver.security.crypto import crypto_from_settings
from tiles.service import start_tile_service

log = logging.getLogger("gridgov.access")
#: A request id a client or proxy sends is echoed only if it is short and plain (log safety).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestContext:
    """Give every request an id, log it with its timing, and refuse oversized bodies early.

    Plain ASGI rather than BaseHTTPMiddleware: that one runs every response through an extra
    task and memory stream, which tripled the delivery cost of event streams (SSE).
    """

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        sent = request.headers.get("x-request-id", "")
        rid = sent if _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        refusal = self._refusal(request)
        if refusal is not None:
            refusal.headers["X-Request-Id"] = rid
            await refusal(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-Id", rid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info("%s %s %s %.1fms rid=%s", request.method, request.url.path, status,
                     (time.perf_counter() - start) * 1000, rid)

    def _refusal(self, request: Request) -> Response | None:
        """Return the answer for a request refused before any work, or None."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_body:
            return errors.problem(413, f"request body exceeds {self.max_body} bytes")
        nul = _nul_parameter(request)
        if nul is not None:
            return errors.problem(422, "text may not contain the NUL character (U+0000)",
                                  errors=[{"field": nul, "message": "contains U+0000"}])
        return None


def _nul_parameter(request: Request) -> str | None:
    """Name the query parameter (or the path) holding a NUL character, which text cannot store."""
    if "\x00" in request.url.path:
        return "path"
    if b"%00" not in request.scope.get("query_string", b""):
        return None
    return next((k for k, v in request.query_params.multi_items()
                 if "\x00" in k or "\x00" in v), "query")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for ``settings`` (read from the environment when omitted)."""
    settings = settings or Settings()
    db = settings.database
    patrol_jobs.configure(settings.patrol)
    event_jobs.configure(settings.events)
    if not db.app_database_url:
        raise RuntimeError(
            "GRIDGOV_APP_DATABASE_URL is not set: start gridgov with `gridgov serve`"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            db.app_database_url or "", pool_size=db.pool_size,
            statement_timeout_ms=db.statement_timeout_ms,
        )
        app.state.engine = engine
        app.state.crypto = crypto_from_settings(settings.security)
        runner = JobRunner(engine, job_registry.registry)
        app.state.job_runner = runner
        if settings.server.jobs_enabled:
            runner.start()
        app.state.tiles = start_tile_service(settings)
        app.state.live_hub = start_hub(settings)
        try:
            yield
        finally:
            app.state.live_hub.stop()
            app.state.tiles.stop()
            runner.stop()
            engine.dispose()

    app = FastAPI(
        title="gridgov",
        version="0.1.0",
        description="GIS-first grassroots governance server (基层治理四平台).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    # Added innermost first. Gzip compresses the web client's scripts and JSON/GeoJSON answers
    # (already encoded tiles and event streams pass through); outside it, cached tiles are
    # answered before routing and dependencies; outermost, every request gets its id and log.
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    # Inside the tile cache (hits need no connection): as many at work as the pool holds.
    app.add_middleware(AdmissionGate, limit=2 * db.pool_size)
    app.add_middleware(TileCacheMiddleware)
    app.add_middleware(RequestContext, max_body=settings.server.max_upload_bytes)
    # Tiles first: map clients send most of the requests, and routes are matched in order.
    app.include_router(tile_routes.router)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(admin.router)
    app.include_router(regions.router)
    app.include_router(objects.router)
    app.include_router(addresses.router)
    app.include_router(claims.router)
    app.include_router(ogc.router)
    app.include_router(live_routes.router)
    app.include_router(live_routes.event_router)  # before events: /events/stream is no id
    app.include_router(patrols.router)
    app.include_router(events.router)
    app.include_router(event_types.router)
    app.include_router(event_types.routing_router)
    app.include_router(event_types.holiday_router)
    app.include_router(event_types.unit_router)
    app.include_router(search.router)
    app.include_router(statistics.router)
    app.include_router(mobile.router)
    app.include_router(partner_routes.router)
    app.include_router(notifications.router)
    web = settings.server.web_dir
    if web.is_dir():
        app.mount("/", StaticFiles(directory=web, html=True), name="web_map")
    return app


def app_from_env() -> FastAPI:
    """Build the app from ``GRIDGOV_*`` variables (the factory uvicorn workers call)."""
    logging.basicConfig(
        level=os.environ.get("GRIDGOV_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return create_app(Settings())
