"""OGC API – Features at /ogc: our layers in QGIS, GDAL/ogr2ogr, OWSLib and ArcGIS.

Same credentials as the rest of the API (session cookie or ``Authorization: Bearer ggv_…``,
which GDAL sends with ``GDAL_HTTP_HEADERS``); row-level security applies the caller's scope.
Errors on /ogc are 4xx with the OGC exception shape (``code``, ``description``) merged with the
problem+json fields (``type``, ``title``, ``status``, ``detail``); bad parameters are 400.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session

from api import ogc_documents as docs
from api import ogc_html
from api.deps import CurrentUser, EngineDep, OptionalUser, SessionDep, stream_rows
from api.errors import PROBLEM, status_for
from geoserver import errors as e
from geoserver.services import features
from geoserver.services.feature_params import Cursor, parse_crs

#: Pages above this many features are streamed from their own read transaction.
STREAM_ABOVE = 1000
_CODES = {400: "InvalidParameterValue", 401: "NotAuthenticated", 403: "Forbidden",
          404: "NotFound", 406: "NotAcceptable"}
_TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found"}


def ogc_error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Return an OGC exception body that is also a problem+json document."""
    code = _CODES.get(status, "ServerError")
    body = {"code": code, "description": detail,
            "type": f"urn:gridgov:problem:ogc:{code}", "title": _TITLES.get(status, "Error"),
            "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class OGCRoute(APIRoute):
    """A route whose expected errors render in the OGC exception shape (400 for bad input)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler: map domain and validation errors to OGC exceptions."""
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                fields = ", ".join(".".join(str(p) for p in err.get("loc", ())[1:])
                                   for err in exc.errors())
                return ogc_error(400, f"invalid parameter: {fields}")
            except e.GridgovError as exc:
                status = 400 if isinstance(exc, e.InvalidInput) else status_for(exc)
                headers = {"WWW-Authenticate": "Bearer"} \
                    if isinstance(exc, e.Unauthenticated) else None
                return ogc_error(status, exc.detail, headers)

        return route


router = APIRouter(prefix="/ogc", tags=["OGC API Features"], route_class=OGCRoute)


# --- negotiation and links -------------------------------------------------------------------


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


def wants_html(request: Request, f: str | None) -> bool:
    """Return whether to answer in HTML: ``f`` decides, else the Accept header."""
    if f is not None:
        if f.lower() in ("html", "text/html"):
            return True
        if f.lower() in ("json", "geojson", "application/json", "application/geo+json"):
            return False
        raise e.InvalidInput("f must be json or html", field="f")
    best = {"html": 0.0, "json": 0.0}
    for part in request.headers.get("accept", "").split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind = "html" if media.strip() == "text/html" else \
            "json" if media.strip().endswith("json") else None
        if kind:
            best[kind] = max(best[kind], q)
    return best["html"] > 0 and best["html"] >= best["json"]


def _respond(request: Request, f: str | None, doc: dict[str, Any], html: Callable[[], str],
             media: str = docs.JSON) -> Response:
    if wants_html(request, f):
        return HTMLResponse(html())
    return JSONResponse(doc, media_type=media)


def _params(request: Request) -> dict[str, str]:
    """Return the query parameters, refusing repeated ones."""
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key in params:
            raise e.InvalidInput(f"parameter {key} is given more than once", field=key)
        params[key] = value
    return params


class ItemLinks:
    """Links of one items page: self, alternate, collection, next and prev."""

    def __init__(self, request: Request, spec: features.CollectionSpec,
                 params: dict[str, str]) -> None:
        self.url = f"{_base(request)}/collections/{quote(spec.id)}"
        self.params = params
        self.title = spec.title

    def href(self, fmt: str, cursor: Cursor | None = None, *, keep_position: bool = False) -> str:
        """Return the items URL in ``fmt`` at ``cursor`` (or where this page is)."""
        drop = {"f"} if keep_position else {"f", "cursor", "offset"}
        pairs = [(k, v) for k, v in self.params.items() if k not in drop]
        if cursor is not None:
            pairs.append(("cursor", cursor.encode()))
        pairs.append(("f", fmt))
        return f"{self.url}/items?{urlencode(pairs)}"

    def for_page(self, result: features.PageResult) -> list[dict[str, str]]:
        """Return the links of a finished page."""
        out = [docs.link(self.href("json", keep_position=True), "self", docs.GEOJSON, "本页"),
               docs.link(self.href("html", keep_position=True), "alternate", docs.HTML,
                         "本页 (HTML)"),
               docs.link(self.url, "collection", docs.JSON, self.title)]
        for rel, cursor, label in (("next", result.next_cursor, "下一页"),
                                   ("prev", result.prev_cursor, "上一页")):
            if cursor is not None:
                out.append(docs.link(self.href("json", cursor), rel, docs.GEOJSON, label))
                out.append(docs.link(self.href("html", cursor), rel, docs.HTML, label))
        return out


def _chunks(session: Session, query: features.ItemsQuery, links: ItemLinks) -> Iterator[bytes]:
    result = features.PageResult()
    rows = features.iter_items(session, query, result)
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return features.geojson_chunks(rows, result, time_stamp=stamp, links=links.for_page)


# --- resources -------------------------------------------------------------------------------


@router.get("", include_in_schema=False)
@router.get("/", summary="OGC API 首页 (landing page)")
def landing(request: Request, f: str | None = None) -> Response:
    """Return the landing page."""
    base = _base(request)
    doc = docs.landing(base)
    return _respond(request, f, doc, lambda: ogc_html.landing(doc, base))


@router.get("/conformance", summary="一致性声明 (conformance)")
def conformance(request: Request, f: str | None = None) -> Response:
    """Return the conformance classes this server implements."""
    doc = docs.conformance()
    return _respond(request, f, doc, lambda: ogc_html.conformance(doc, _base(request)))


@router.get("/api", summary="OpenAPI 3.0 description of /ogc")
def api_description(request: Request, user: OptionalUser, session: SessionDep,
                    f: str | None = None) -> Response:
    """Return the OpenAPI document (per-collection paths for what the caller can read)."""
    base = _base(request)
    doc = docs.openapi(features.visible_collections(session, actor=user), base)
    return _respond(request, f, doc, lambda: ogc_html.api_doc(base), media=docs.OPENAPI)


@router.get("/collections", summary="图层集合 (collections)")
def list_collections(request: Request, user: CurrentUser, session: SessionDep,
                     f: str | None = None) -> Response:
    """List the collections the caller can read, with the jurisdiction's extent."""
    base = _base(request)
    doc = docs.collections(features.visible_collections(session, actor=user), base,
                           features.jurisdiction_extent(session))
    return _respond(request, f, doc, lambda: ogc_html.collections(doc, base))


@router.get("/collections/{collection_id}", summary="集合信息 (collection)")
def get_collection(collection_id: str, request: Request, user: CurrentUser,
                   session: SessionDep, f: str | None = None) -> Response:
    """Describe one collection."""
    spec = features.collection_for(session, actor=user, collection_id=collection_id)
    base = _base(request)
    doc = docs.collection(spec, base, features.jurisdiction_extent(session))
    return _respond(request, f, doc, lambda: ogc_html.collection(doc, spec, base))


@router.get("/collections/{collection_id}/queryables", summary="可查询属性 (queryables)")
def get_queryables(collection_id: str, request: Request, user: CurrentUser,
                   session: SessionDep, f: str | None = None) -> Response:
    """Return the JSON Schema of the properties filters may use."""
    spec = features.collection_for(session, actor=user, collection_id=collection_id)
    url = f"{_base(request)}/collections/{quote(spec.id)}/queryables"
    schema = features.queryables_schema(spec, url=url)
    return _respond(request, f, schema,
                    lambda: ogc_html.queryables(schema, spec, _base(request)), docs.SCHEMA)


@router.get("/collections/{collection_id}/schema", summary="要素结构 (feature schema)")
def get_schema(collection_id: str, request: Request, user: CurrentUser,
               session: SessionDep) -> Response:
    """Return the JSON Schema of one GeoJSON feature (GDAL reads field types from it)."""
    spec = features.collection_for(session, actor=user, collection_id=collection_id)
    url = f"{_base(request)}/collections/{quote(spec.id)}/schema"
    return JSONResponse(features.feature_schema(spec, url=url), media_type=docs.SCHEMA)


@router.get("/collections/{collection_id}/items", summary="要素 (items: bbox, datetime, "
            "limit, properties, sortby, filter, crs)")
def get_items(collection_id: str, request: Request, user: CurrentUser, session: SessionDep,
              engine: EngineDep) -> Response:
    """Return a page of features as GeoJSON (streamed when large) or HTML."""
    spec = features.collection_for(session, actor=user, collection_id=collection_id)
    params = _params(request)
    query = features.parse_items_query(spec, params)
    links = ItemLinks(request, spec, params)
    headers = {"Content-Crs": query.crs.header}
    if wants_html(request, params.get("f")):
        result = features.PageResult()
        rows = list(features.iter_items(session, query, result))
        return HTMLResponse(ogc_html.items(spec, rows, result, links.for_page(result),
                                           _base(request), flip=query.crs.flip),
                            headers=headers)
    if query.limit <= STREAM_ABOVE:
        return Response(b"".join(_chunks(session, query, links)), media_type=docs.GEOJSON,
                        headers=headers)
    # stream_rows yields whatever the producer yields: here, the GeoJSON text in chunks
    body = cast(Iterator[bytes], stream_rows(engine, user,
                                             lambda s: cast(Any, _chunks(s, query, links))))
    return StreamingResponse(body, media_type=docs.GEOJSON, headers=headers)


@router.get("/collections/{collection_id}/items/{feature_id}", summary="单个要素 (feature)")
def get_item(collection_id: str, feature_id: str, request: Request, user: CurrentUser,
             session: SessionDep, crs: str | None = None, f: str | None = None) -> Response:
    """Return one feature."""
    spec = features.collection_for(session, actor=user, collection_id=collection_id)
    out_crs = parse_crs(crs)
    item = features.get_feature(session, spec, feature_id, crs=out_crs)
    base, headers = _base(request), {"Content-Crs": out_crs.header}
    if wants_html(request, f):
        return HTMLResponse(ogc_html.feature(spec, item, base, flip=out_crs.flip),
                            headers=headers)
    url = f"{base}/collections/{quote(spec.id)}"
    links = [docs.link(f"{url}/items/{quote(str(item[0]))}?f=json", "self", docs.GEOJSON, "本要素"),
             docs.link(f"{url}/items/{quote(str(item[0]))}?f=html", "alternate", docs.HTML,
                       "本要素 (HTML)"),
             docs.link(url, "collection", docs.JSON, spec.title)]
    return Response(features.feature_json(item, links), media_type=docs.GEOJSON,
                    headers=headers)
