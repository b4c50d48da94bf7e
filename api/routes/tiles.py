"""Vector tiles: ``/tiles`` (layer list), ``/tiles/style.json``, ``/tiles/{layer}.json``
(TileJSON 3) and ``/tiles/{layer}/{z}/{x}/{y}.mvt``.

A cached tile is answered without touching the database: the caller's credential is resolved
from a short-lived cache (cleared by NOTIFY on revocation) and the tile from the tile cache.
Tiles are scoped to the caller, so they are ``Cache-Control: private`` — proxies must not
share them — and revalidated with their ETag (``no-cache`` + ``If-None-Match`` → 304).
"""

from __future__ import annotations

import gzip
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import SESSION_COOKIE, resolve_credential
from geoserver.domain.principal import Principal
from geoserver.errors import NotFound, PermissionDenied, Unauthenticated
from tiles import discovery
from tiles.cache import CredentialCache, Tile
from tiles.registry import TileLayer
from tiles.service import TileService
from tiles.tilemath import valid_tile

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
    spec.parse_query(request.query_params)
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
    key = svc.key(spec, z, x, y, query, user.scope)
    found = svc.lookup(spec, key)
    if found is not None:
        return _tile_response(request, found, hit=True)
    return _tile_response(request, await run_in_threadpool(svc.fill, spec, key), hit=False)
