"""Vector tiles: ``/tiles`` (layer list), ``/tiles/style.json``, ``/tiles/{layer}.json``
(TileJSON 3) and ``/tiles/{layer}/{z}/{x}/{y}.mvt``.

A cached tile is answered without touching the database: the caller's credential is resolved
from a short-lived cache (cleared by NOTIFY on revocation) and the tile from the tile cache.
Tiles are scoped to the caller, so they are ``Cache-Control: private`` — proxies must not
share them — and revalidated with their ETag (``no-cache`` + ``If-None-Match`` → 304).

``TileCacheMiddleware`` answers such cache hits in front of the framework (its middleware,
routing and dependency injection cost ~10× the hit itself); everything else — misses, unknown
credentials, errors, audits due — falls through to the routes below, which give the same
answers.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import SESSION_COOKIE, audit_context, resolve_credential
from geoserver.database.engine import scoped_session
from geoserver.domain.principal import Principal
from geoserver.errors import InvalidInput, NotFound, PermissionDenied, Unauthenticated
from geoserver.services.audit import audit
from tiles import discovery
from tiles.cache import CredentialCache, Tile
from tiles.registry import TileLayer
from tiles.service import TileService
from tiles.tilemath import valid_tile

access_log = logging.getLogger("gridgov.access")

router = APIRouter(prefix="/tiles", tags=["tiles"])

MVT = "application/vnd.mapbox-vector-tile"
_TILE_HEADERS = {"Cache-Control": "private, no-cache", "Vary": "Accept-Encoding"}


def _service(request: Request) -> TileService:
    return request.app.state.tiles  # type: ignore[no-any-return]


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def tile_user(request: Request) -> Principal:
    """Return the caller, from the credential cache when possible (no database on a hit)."""
    svc = _service(request)
    if not getattr(request.state, "tiles_refreshed", False):  # (the middleware did it)
        await svc.refresh()
    key = CredentialCache.key_for(_bearer(request), request.cookies.get(SESSION_COOKIE))
    if key is None:
        raise Unauthenticated("log in first (session cookie or Authorization: Bearer token)")
    # While the listener is down revocations would go unseen: resolve every time then.
    principal = svc.credentials.get(key) if svc.caching else None
    if principal is not None:
        return principal
    generation = svc.credentials.generation
    cred = await run_in_threadpool(resolve_credential, request, request.app.state.engine)
    if cred is None:
        raise Unauthenticated("the session has ended: log in again")
    svc.credentials.put(key, cred.principal, generation)
    return cred.principal


TileUser = Annotated[Principal, Depends(tile_user)]


def _layer(svc: TileService, name: str, user: Principal) -> TileLayer:
    layer = svc.registry.get(name)
    if layer is None:
        raise NotFound(f"no tile layer {name!r}")
    if not user.can(layer.permission):
        raise PermissionDenied(f"the layer {name} needs the permission {layer.permission!r}")
    return layer


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


def _tile_response(request: Request, tile: Tile, *, hit: bool) -> Response:
    headers = {**_TILE_HEADERS, "ETag": tile.etag, "X-Tile-Cache": "hit" if hit else "miss"}
    if _etag_matches(request, tile.etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(tile.gzipped, media_type=MVT,
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(gzip.decompress(tile.gzipped), media_type=MVT, headers=headers)


@router.get("", summary="List the tile layers the caller may read")
async def list_layers(request: Request, user: TileUser) -> dict[str, Any]:
    """List the readable layers with links to their TileJSON and tile URL templates."""
    svc, base = _service(request), _base(request)
    layers = [discovery.summary(layer, base) for layer in svc.registry
              if user.can(layer.permission)]
    return {"layers": layers, "links": [
        {"rel": "stylesheet", "type": "application/json", "title": "MapLibre style",
         "href": f"{base}/tiles/style.json"}]}


@router.get("/style.json", summary="MapLibre style of every readable layer")
async def style(request: Request, user: TileUser) -> JSONResponse:
    """Return the MapLibre style the web client uses (optionally over a configured base map)."""
    svc = _service(request)
    layers = [layer for layer in svc.registry if user.can(layer.permission)]
    bounds = await run_in_threadpool(svc.bounds, user.scope)
    doc = discovery.style(layers, _base(request), svc.settings, bounds=bounds)
    return JSONResponse(doc, headers={"Cache-Control": "private, no-cache"})


@router.get("/{layer}.json", summary="TileJSON 3.0.0 of one layer")
async def tilejson(layer: str, request: Request, user: TileUser) -> JSONResponse:
    """Return a layer's TileJSON; filter parameters given here are carried into its tile URL."""
    svc = _service(request)
    spec = _layer(svc, layer, user)
    spec.parse_query(request.query_params, partial=True)
    bounds = await run_in_threadpool(svc.bounds, user.scope)
    doc = discovery.tilejson(spec, _base(request), query_string=request.url.query, bounds=bounds)
    return JSONResponse(doc, headers={"Cache-Control": "private, no-cache"})


@router.get("/{layer}/{z}/{x}/{y}.mvt", summary="One vector tile (Mapbox Vector Tile)",
            response_class=Response,
            responses={200: {"content": {MVT: {}}}, 304: {"description": "not modified"}})
async def tile(layer: str, z: int, x: int, y: int, request: Request, user: TileUser) -> Response:
    """Return a tile from the cache, or render it under the caller's scope."""
    svc = _service(request)
    spec = _layer(svc, layer, user)
    if not valid_tile(z, x, y) or not spec.minzoom <= z <= spec.maxzoom:
        raise NotFound(f"no tile {z}/{x}/{y} in layer {layer} "
                       f"(zooms {spec.minzoom}-{spec.maxzoom})")
    query = spec.parse_query(request.query_params)
    if svc.audit_due(user.user_id, spec, query):
        await run_in_threadpool(_audit_reading, request, user, spec, query, f"{z}/{x}/{y}")
    key = svc.key(spec, z, x, y, query, user.scope)
    found = svc.lookup(spec, key)
    if found is not None:
        return _tile_response(request, found, hit=True)
    return _tile_response(request, await run_in_threadpool(svc.fill, spec, key), hit=False)


def _audit_reading(request: Request, user: Principal, layer: TileLayer, query: str,
                   tile: str) -> None:
    """Write the audit row of a user starting to read an audited layer (行踪轨迹)."""
    assert layer.audit_action is not None
    with scoped_session(request.app.state.engine, user.scope) as session:
        audit(session, actor=user, action=layer.audit_action, object_kind="tile_layer",
              object_id=layer.name, detail={"query": json.loads(query), "tile": tile},
              context=audit_context(request))
    _service(request).audited(user.user_id, layer, query)


# --- cache hits in front of the framework ------------------------------------------------------

_TILE_PATH = re.compile(r"^/tiles/([a-z][a-z0-9_]{0,40})/([0-9]{1,2})/([0-9]{1,7})/([0-9]{1,7})"
                        r"\.mvt$")


async def cached_tile(request: Request) -> Response | None:
    """Return the response to a tile request answerable from the caches alone, else None.

    The checks are the route's: a cached credential, the layer's permission, a valid tile and
    query, no audit due; whatever fails is left to the route, which says why.
    """
    match = _TILE_PATH.match(request.scope["path"])
    svc: TileService | None = getattr(request.app.state, "tiles", None)
    if match is None or svc is None:
        return None
    await svc.refresh()
    request.state.tiles_refreshed = True  # one round trip per request in strict mode
    key = CredentialCache.key_for(_bearer(request), request.cookies.get(SESSION_COOKIE))
    user = svc.credentials.get(key) if key is not None and svc.caching else None
    layer = svc.registry.get(match[1])
    if user is None or layer is None or not user.can(layer.permission):
        return None
    z, x, y = int(match[2]), int(match[3]), int(match[4])
    if not valid_tile(z, x, y) or not layer.minzoom <= z <= layer.maxzoom:
        return None
    try:
        query = layer.parse_query(request.query_params)
    except InvalidInput:
        return None
    if svc.audit_due(user.user_id, layer, query):
        return None
    tile = svc.lookup(layer, svc.key(layer, z, x, y, query, user.scope))
    return None if tile is None else _tile_response(request, tile, hit=True)


class TileCacheMiddleware:
    """Answer cached tiles before the framework's middleware and routing (pure ASGI).

    Install it inside the request-context middleware (which gives every answer its id and
    access-log line) and outside everything else. It gives the answer the tile route would give.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a cache hit, or pass the request on."""
        if (scope["type"] != "http" or scope["method"] != "GET"
                or not scope["path"].startswith("/tiles/") or "app" not in scope):
            await self.app(scope, receive, send)
            return
        response = await cached_tile(Request(scope, receive))
        if response is None:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
