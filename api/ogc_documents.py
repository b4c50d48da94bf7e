"""JSON documents of the OGC API at /ogc: landing page, conformance, collections, OpenAPI.

The OpenAPI description lists every collection the caller can read with its own items path and
one query parameter per queryable property, because that is where GDAL's OAPIF driver looks
for the attributes it may filter on server-side (``-where name = 'x'`` becomes ``name=x``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from geoserver.services import features
from geoserver.services.feature_params import (
    CRS84,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    STORAGE_CRS,
    SUPPORTED_CRS,
)

JSON = "application/json"
GEOJSON = "application/geo+json"
HTML = "text/html"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"
SCHEMA = "application/schema+json"
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
REL_CONFORMANCE = "http://www.opengis.net/def/rel/ogc/1.0/conformance"
REL_DATA = "http://www.opengis.net/def/rel/ogc/1.0/data"

_F1 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
_F2 = "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/"
_F3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"

#: What this server claims (the CQL2 classes are those cql2.py implements fully).
CONFORMANCE = [
    _F1 + "core", _F1 + "oas30", _F1 + "html", _F1 + "geojson",
    _F2 + "crs",
    _F3 + "queryables", _F3 + "queryables-query-parameters", _F3 + "filter",
    _F3 + "features-filter",
    _CQL2 + "cql2-text", _CQL2 + "cql2-json", _CQL2 + "basic-cql2",
    _CQL2 + "advanced-comparison-operators", _CQL2 + "case-insensitive-comparison",
    _CQL2 + "basic-spatial-functions", _CQL2 + "basic-spatial-functions-plus",
    _CQL2 + "spatial-functions", _CQL2 + "property-property",
]

TITLE = "gridgov 基层治理 OGC API – Features"
DESCRIPTION = ("区划网格、建筑物、标准地址、重点场所、城市部件、企业等图层，"
               "可用 QGIS、GDAL/ogr2ogr、OWSLib 直接读取；按账号辖区范围返回，"
               "个人信息脱敏。认证：Authorization: Bearer <API 令牌>。")


def link(href: str, rel: str, media: str, title: str) -> dict[str, str]:
    """Return one OGC link object."""
    return {"href": href, "rel": rel, "type": media, "title": title}


def landing(base: str) -> dict[str, Any]:
    """Return the landing page document."""
    return {"title": TITLE, "description": DESCRIPTION, "links": [
        link(f"{base}?f=json", "self", JSON, "本页 (JSON)"),
        link(f"{base}?f=html", "alternate", HTML, "本页 (HTML)"),
        link(f"{base}/api", "service-desc", OPENAPI, "API 定义 (OpenAPI 3.0)"),
        link(f"{base}/api?f=html", "service-doc", HTML, "API 文档"),
        link(f"{base}/conformance", "conformance", JSON, "一致性声明"),
        link(f"{base}/conformance", REL_CONFORMANCE, JSON, "一致性声明"),
        link(f"{base}/collections", "data", JSON, "图层集合"),
        link(f"{base}/collections", REL_DATA, JSON, "图层集合"),
    ]}


def conformance() -> dict[str, Any]:
    """Return the conformance declaration."""
    return {"conformsTo": CONFORMANCE}


def collection(spec: features.CollectionSpec, base: str,
               extent: list[float] | None) -> dict[str, Any]:
    """Return one collection's metadata document."""
    url = f"{base}/collections/{quote(spec.id)}"
    doc: dict[str, Any] = {
        "id": spec.id, "title": spec.title, "description": spec.description,
        "itemType": "feature",
        "crs": [c.uri for c in SUPPORTED_CRS], "storageCrs": STORAGE_CRS.uri,
        "links": [
            link(url, "self", JSON, spec.title),
            link(f"{url}?f=html", "alternate", HTML, f"{spec.title} (HTML)"),
            link(f"{url}/items?f=json", "items", GEOJSON, f"{spec.title} 要素"),
            link(f"{url}/items?f=html", "items", HTML, f"{spec.title} 要素 (HTML)"),
            link(f"{url}/queryables", REL_QUERYABLES, SCHEMA, "可查询属性"),
            link(f"{url}/queryables", "queryables", SCHEMA, "可查询属性"),
            link(f"{url}/schema", "describedby", SCHEMA, "要素结构"),
        ],
    }
    if extent:
        doc["extent"] = {"spatial": {"bbox": [extent], "crs": CRS84.uri}}
    return doc


def collections(specs: list[features.CollectionSpec], base: str,
                extent: list[float] | None) -> dict[str, Any]:
    """Return the collections document."""
    return {
        "links": [link(f"{base}/collections", "self", JSON, "图层集合"),
                  link(f"{base}/collections?f=html", "alternate", HTML, "图层集合 (HTML)")],
        "collections": [collection(s, base, extent) for s in specs],
        "crs": [c.uri for c in SUPPORTED_CRS],
    }


# --- OpenAPI -------------------------------------------------------------------------------


def _param(name: str, description: str, schema: dict[str, Any], *,
           explode: bool = True) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, "style": "form", "explode": explode}


_CRS_ENUM = {"type": "string", "enum": [c.uri for c in SUPPORTED_CRS]}
PARAMETERS: dict[str, dict[str, Any]] = {
    "f": _param("f", "响应格式", {"type": "string", "enum": ["json", "html"]}),
    "bbox": _param("bbox", "范围: minx,miny,maxx,maxy (按 bbox-crs 的轴序)",
                   {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
                   explode=False),
    "bbox-crs": _param("bbox-crs", "bbox 的坐标系", _CRS_ENUM),
    "datetime": _param("datetime", "时间点或区间 (RFC 3339, 开放端用 ..)", {"type": "string"}),
    "limit": _param("limit", "每页要素数", {"type": "integer", "minimum": 1,
                                        "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
    "crs": _param("crs", "输出坐标系", _CRS_ENUM),
    "properties": _param("properties", "只返回这些属性", {"type": "array",
                                                   "items": {"type": "string"}}, explode=False),
    "sortby": _param("sortby", "排序: +name,-updated_at", {"type": "array",
                                                       "items": {"type": "string"}},
                     explode=False),
    "filter": _param("filter", "CQL2 过滤条件", {"type": "string"}),
    "filter-lang": _param("filter-lang", "过滤语言",
                          {"type": "string", "enum": ["cql2-text", "cql2-json"],
                           "default": "cql2-text"}),
    "filter-crs": _param("filter-crs", "过滤条件中几何的坐标系", _CRS_ENUM),
    "cursor": _param("cursor", "翻页游标 (由 next/prev 链接给出)", {"type": "string"}),
    "offset": _param("offset", "跳过的要素数", {"type": "integer", "minimum": 0}),
}
_ITEM_PARAMS = ["f", "bbox", "bbox-crs", "datetime", "limit", "crs", "properties", "sortby",
                "filter", "filter-lang", "filter-crs", "cursor", "offset"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _get(summary: str, media: str, parameters: list[dict[str, Any]] | None = None,
         tag: str = "OGC API Features") -> dict[str, Any]:
    return {"get": {
        "summary": summary, "tags": [tag], "parameters": parameters or [],
        "responses": {"200": {"description": "OK", "content": {media: {"schema": {}}}},
                      "400": {"description": "参数错误 (OGC 异常)"},
                      "401": {"description": "需要认证"},
                      "404": {"description": "不存在或不在辖区内"}}}}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _collection_paths(spec: features.CollectionSpec) -> dict[str, Any]:
    own = [_param(name, f"{q.name} 等于该值", {"type": "string"} if q.type == "date-time"
                  else {"type": q.type, **({"enum": list(q.enum)} if q.enum else {})})
           for name, q in features.queryables(spec).items() if q.type != "geometry"]
    items = f"/collections/{spec.id}/items"
    return {
        f"/collections/{spec.id}": _get(f"{spec.title}: 集合信息", JSON),
        f"/collections/{spec.id}/queryables": _get(f"{spec.title}: 可查询属性", SCHEMA),
        items: _get(f"{spec.title}: 要素", GEOJSON, [_ref(p) for p in _ITEM_PARAMS] + own),
        f"{items}/{{featureId}}": _get(f"{spec.title}: 单个要素", GEOJSON,
                                       [_path_param("featureId"), _ref("f"), _ref("crs")]),
    }


def openapi(specs: list[features.CollectionSpec], base: str) -> dict[str, Any]:
    """Return the OpenAPI 3.0 description of /ogc for the collections the caller can read."""
    paths: dict[str, Any] = {
        "/": _get("首页", JSON, [_ref("f")]),
        "/conformance": _get("一致性声明", JSON, [_ref("f")]),
        "/api": _get("本 API 定义", OPENAPI),
        "/collections": _get("图层集合", JSON, [_ref("f")]),
        "/collections/{collectionId}": _get("集合信息", JSON, [_path_param("collectionId")]),
        "/collections/{collectionId}/queryables": _get(
            "可查询属性", SCHEMA, [_path_param("collectionId")]),
        "/collections/{collectionId}/items": _get(
            "要素", GEOJSON, [_path_param("collectionId")] + [_ref(p) for p in _ITEM_PARAMS]),
        "/collections/{collectionId}/items/{featureId}": _get(
            "单个要素", GEOJSON, [_path_param("collectionId"), _path_param("featureId"),
                              _ref("f"), _ref("crs")]),
    }
    for spec in specs:
        paths.update(_collection_paths(spec))
    return {
        "openapi": "3.0.3",
        "info": {"title": TITLE, "version": "1.0.0", "description": DESCRIPTION},
        "servers": [{"url": base}],
        "paths": paths,
        "components": {"parameters": PARAMETERS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "API 令牌 ggv_…"}}},
        "security": [{"bearer": []}, {}],
    }
