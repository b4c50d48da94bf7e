"""Server-rendered HTML of the OGC API (f=html): Chinese labels, inline CSS and SVG, no external
assets, so it works on an intranet with no internet at all."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape
from typing import Any

from geoserver.services import features

_CSS = """
body{font-family:"WenQuanYi Micro Hei","Microsoft YaHei",sans-serif;margin:0;color:#222}
header{background:#1d4f91;color:#fff;padding:.6em 1.2em}header a{color:#fff}
main{padding:1em 1.2em}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f4fa}nav.crumbs{font-size:.9em;margin-bottom:.8em}
.pager a{margin-right:1.5em}svg{border:1px solid #ccc;background:#f8faf8}
code{background:#f3f3f3;padding:0 .2em}
"""

_LEVEL_LABEL = {"self": "本页", "alternate": "其他格式", "items": "要素", "next": "下一页",
                "prev": "上一页", "collection": "所属集合", "service-desc": "API 定义",
                "service-doc": "API 文档", "conformance": "一致性声明", "data": "图层集合",
                "describedby": "要素结构", "queryables": "可查询属性"}


def page(title: str, body: str, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    """Wrap ``body`` in the page layout with a breadcrumb trail of (href, label)."""
    trail = " › ".join(f'<a href="{escape(h)}">{escape(t)}</a>' for h, t in crumbs)
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><strong>gridgov OGC API – Features</strong></header><main>"
            f'<nav class="crumbs">{trail}</nav><h1>{escape(title)}</h1>{body}</main>'
            f"</body></html>")


def _links(links: Sequence[dict[str, str]]) -> str:
    rows = "".join(
        f'<li><a href="{escape(lk["href"])}">{escape(lk.get("title") or lk["href"])}</a> '
        f'<small>({escape(_LEVEL_LABEL.get(lk["rel"], lk["rel"]))}, {escape(lk["type"])})'
        f"</small></li>" for lk in links)
    return f"<ul>{rows}</ul>"


def landing(doc: dict[str, Any], base: str) -> str:
    """Render the landing page."""
    body = f"<p>{escape(doc['description'])}</p><h2>链接</h2>{_links(doc['links'])}"
    return page(doc["title"], body, [(base, "首页")])


def conformance(doc: dict[str, Any], base: str) -> str:
    """Render the conformance declaration."""
    items = "".join(f"<li><code>{escape(c)}</code></li>" for c in doc["conformsTo"])
    return page("一致性声明", f"<ul>{items}</ul>", [(base, "首页")])


def api_doc(base: str) -> str:
    """Render a pointer to the OpenAPI document."""
    body = (f'<p>OpenAPI 3.0 定义: <a href="{escape(base)}/api?f=json">{escape(base)}/api</a>'
            f'</p><p>全部接口的交互式文档见 <a href="/docs">/docs</a>。</p>')
    return page("API 定义", body, [(base, "首页")])


def collections(doc: dict[str, Any], base: str) -> str:
    """Render the list of collections."""
    rows = "".join(
        f'<tr><td><a href="{escape(base)}/collections/{escape(c["id"])}?f=html">'
        f'{escape(c["title"])}</a></td><td><code>{escape(c["id"])}</code></td>'
        f'<td>{escape(c["description"])}</td></tr>' for c in doc["collections"])
    body = ("<table><tr><th>图层</th><th>标识</th><th>说明</th></tr>" + rows + "</table>"
            if rows else "<p>没有可见的图层（请先登录，或账号没有查看权限）。</p>")
    return page("图层集合", body, [(base, "首页"), (f"{base}/collections?f=html", "图层集合")])


def collection(doc: dict[str, Any], spec: features.CollectionSpec, base: str) -> str:
    """Render one collection's metadata and its properties."""
    props = "".join(
        f"<tr><td><code>{escape(p.name)}</code></td><td>{escape(p.title)}</td>"
        f"<td>{escape(p.type)}</td><td>{'脱敏' if p.personal else '可查询'}</td></tr>"
        for p in spec.properties)
    extent = doc.get("extent", {}).get("spatial", {}).get("bbox", [[]])[0]
    body = (f"<p>{escape(spec.description)}</p>"
            f"<p>范围 (CRS84): {escape(', '.join(str(v) for v in extent)) or '—'}</p>"
            f"<h2>属性</h2><table><tr><th>名称</th><th>含义</th><th>类型</th><th>说明</th>"
            f"</tr>{props}</table><h2>链接</h2>{_links(doc['links'])}")
    return page(spec.title, body, _crumbs(base, spec))


def queryables(schema: dict[str, Any], spec: features.CollectionSpec, base: str) -> str:
    """Render the queryables of a collection."""
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code></td><td>{escape(str(p.get('title', '')))}</td>"
        f"<td>{escape(str(p.get('type') or p.get('format', '')))}</td></tr>"
        for name, p in schema["properties"].items())
    body = (f"<table><tr><th>名称</th><th>含义</th><th>类型</th></tr>{rows}</table>"
            "<p>示例: <code>filter=name LIKE '五马%' AND S_INTERSECTS(geometry, "
            "BBOX(120.6,27.9,120.7,28.1))</code></p>")
    return page(f"{spec.title}: 可查询属性", body, _crumbs(base, spec))


def _crumbs(base: str, spec: features.CollectionSpec) -> list[tuple[str, str]]:
    return [(base, "首页"), (f"{base}/collections?f=html", "图层集合"),
            (f"{base}/collections/{spec.id}?f=html", spec.title)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    return escape(str(value))


def items(spec: features.CollectionSpec, rows: list[features.Feature],
          result: features.PageResult, links: list[dict[str, str]], base: str, *,
          flip: bool) -> str:
    """Render a page of features as a map sketch and a table, with paging links."""
    names = list(rows[0][2]) if rows else list(spec.public_names)
    titles = {p.name: p.title for p in spec.properties}
    head = "".join(f"<th>{escape(titles.get(n, n))}</th>" for n in names)
    body_rows = "".join(
        f'<tr><td><a href="{escape(base)}/collections/{escape(spec.id)}/items/'
        f'{escape(str(fid))}?f=html">{escape(str(fid))}</a></td>'
        + "".join(f"<td>{_cell(props.get(n))}</td>" for n in names) + "</tr>"
        for fid, _, props in rows)
    pager = "".join(f'<a href="{escape(lk["href"])}">{_LEVEL_LABEL[lk["rel"]]}</a>'
                    for lk in links if lk["rel"] in ("prev", "next") and lk["type"] == "text/html")
    matched = "" if result.number_matched is None else f"，共 {result.number_matched} 个"
    body = (f"<p>本页 {result.number_returned} 个要素{matched}。</p>"
            f"{sketch([g for _, g, _ in rows], flip=flip)}"
            f'<p class="pager">{pager}</p><table><tr><th>标识</th>{head}</tr>{body_rows}'
            f'</table><p class="pager">{pager}</p>')
    return page(f"{spec.title}: 要素", body, _crumbs(base, spec))


def feature(spec: features.CollectionSpec, item: features.Feature, base: str, *,
            flip: bool) -> str:
    """Render one feature."""
    fid, geom, props = item
    titles = {p.name: p.title for p in spec.properties}
    rows = "".join(f"<tr><th>{escape(titles.get(k, k))}</th><td>{_cell(v)}</td></tr>"
                   for k, v in props.items())
    body = f"{sketch([geom], flip=flip)}<table>{rows}</table>"
    return page(f"{spec.title} {fid}", body, _crumbs(base, spec))


# --- a map sketch in inline SVG (no tiles, no scripts) ------------------------------------


def _rings(geom: dict[str, Any]) -> list[list[list[float]]]:
    kind, coords = geom.get("type"), geom.get("coordinates") or []
    if kind == "Point":
        return [[coords]]
    if kind in ("MultiPoint", "LineString"):
        return [coords]
    if kind in ("Polygon", "MultiLineString"):
        return list(coords)
    if kind == "MultiPolygon":
        return [ring for poly in coords for ring in poly]
    if kind == "GeometryCollection":
        return [r for g in geom.get("geometries", []) for r in _rings(g)]
    return []


def sketch(geometries: Sequence[str | None], *, flip: bool, width: int = 640,
           height: int = 360) -> str:
    """Draw geometries (GeoJSON text) as SVG outlines and dots, scaled to fit."""
    shapes = []
    for text in geometries:
        if not text:
            continue
        geom = json.loads(text)
        rings = [[(p[1], p[0]) if flip else (p[0], p[1]) for p in ring]
                 for ring in _rings(geom)]
        shapes.append((geom.get("type", ""), rings))
    points = [p for _, rings in shapes for ring in rings for p in ring]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    # degrees of longitude shrink with latitude; projected CRSs have square units already
    aspect = math.cos(math.radians((y0 + y1) / 2)) if abs(y1) <= 90 and abs(x1) <= 180 else 1.0
    span = max((x1 - x0) * aspect, y1 - y0) or 1e-6
    scale = min(width, height) * 0.95 / span

    def xy(p: tuple[float, float]) -> str:
        return f"{(p[0] - x0) * aspect * scale + 8:.1f},{height - (p[1] - y0) * scale - 8:.1f}"

    out = []
    for kind, rings in shapes:
        if kind.endswith("Point"):
            out += [f'<circle cx="{xy(p).split(",")[0]}" cy="{xy(p).split(",")[1]}" r="3" '
                    f'fill="#c0392b"/>' for ring in rings for p in ring]
        else:
            d = " ".join("M" + " L".join(xy(p) for p in ring)
                         + (" Z" if "Polygon" in kind else "") for ring in rings)
            fill = "#1d4f9133" if "Polygon" in kind else "none"
            out.append(f'<path d="{d}" fill="{fill}" stroke="#1d4f91" '
                       f'stroke-width="1" fill-rule="evenodd"/>')
    return (f'<svg width="{width + 16}" height="{height + 16}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(out)}</svg>')
