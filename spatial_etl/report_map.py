"""``etl report``: one HTML file with a folium map of a region and its figures, for offline use.

The map shows the region's sub-regions shaded by persons per km² (or events when persons are
not readable), a heat layer of buildings and events, key places as points, and a table of the
sub-regions' figures from the statistics service. folium links Leaflet, jQuery, Bootstrap and
its plugins from CDNs; here every such link is dropped and the vendored Leaflet and
leaflet.heat (``spatial_etl/assets``) are inlined, images as data: URIs, and no base-map tiles
are loaded, so the file opens on a machine with no network (government intranets). The output
is checked for remote script or style links before it is written.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import folium
import numpy as np
import shapely
from branca.element import Element
from folium.plugins import HeatMap
from shapely.geometry import shape

from geoserver.domain.watermark import watermark
from geoserver.errors import PermissionDenied
from geoserver.services import features, h3agg, regions, statistics
from geoserver.services.audit import audit
from spatial_etl.db import EtlEnv

ASSETS = Path(__file__).parent / "assets"
#: Points drawn per layer at most (a browser map slows down well before a million).
MAX_POINTS = 20_000
_REMOTE = re.compile(r"""<(script|link|img)[^>]+(src|href)\s*=\s*["']?(https?:)?//""", re.I)
_RAMP = ("#fff5eb", "#fdd0a2", "#fd8d3c", "#d94801", "#7f2704")


@dataclass
class ReportResult:
    """What a report shows."""

    path: Path
    region: str
    subregions: int = 0
    buildings: int = 0
    events: int = 0
    places: int = 0
    measure: str = ""
    #: The events' period (start/end dates), for the table and the heat alike.
    period: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _data_uris(css: str) -> str:
    """Inline the stylesheet's images (url(images/x.png)) as data: URIs."""
    def inline(match: re.Match[str]) -> str:
        data = (ASSETS / "images" / match.group(1)).read_bytes()
        return f"url(data:image/png;base64,{base64.b64encode(data).decode()})"

    return re.sub(r"url\(images/([\w.-]+\.png)\)", inline, css)


def offline_map(location: tuple[float, float], zoom: int = 13) -> folium.Map:
    """Return a folium map with Leaflet inlined and no CDN links or tile layers."""
    fmap = folium.Map(location=list(location), zoom_start=zoom, tiles=None, control_scale=True)
    # Instance attributes shadow folium's class-level CDN lists (JSCSSMixin reads self.*).
    fmap.default_js = []
    fmap.default_css = []
    header = fmap.get_root().header  # type: ignore[attr-defined]
    css = _data_uris((ASSETS / "leaflet.css").read_text(encoding="utf-8"))
    header.add_child(Element(f"<style>{css}</style>"), name="leaflet_css", index=0)
    header.add_child(Element(f"<script>{(ASSETS / 'leaflet.js').read_text('utf-8')}</script>"),
                     name="leaflet_js", index=1)
    return fmap


def add_heat(fmap: folium.Map, points: np.ndarray, name: str) -> None:
    """Add a heat layer (leaflet.heat, inlined once) of lon/lat points."""
    if not len(points):
        return
    header = fmap.get_root().header  # type: ignore[attr-defined]
    if "leaflet_heat" not in header._children:
        script = (ASSETS / "leaflet-heat.js").read_text("utf-8")
        header.add_child(Element(f"<script>{script}</script>"), name="leaflet_heat")
    layer = HeatMap([[float(y), float(x)] for x, y in points], name=name, radius=12, blur=10)
    layer.default_js = []
    layer.add_to(fmap)


def check_offline(page: str) -> None:
    """Raise if the page would load a script, stylesheet or image from the network."""
    found = _REMOTE.search(page)
    if found:
        raise RuntimeError(f"the report would load a remote resource: {found.group(0)[:120]}")


def _colour(value: float | None, top: float) -> str:
    if value is None or top <= 0:
        return "#dddddd"
    return _RAMP[min(len(_RAMP) - 1, int(value / top * len(_RAMP)))]


def _feature_points(session: Any, actor: Any, collection: str, limit: int,
                    params: dict[str, str] | None = None) -> np.ndarray:
    """Return up to ``limit`` lon/lat points (points on surface) of a collection in scope."""
    try:
        spec = features.collection_for(session, actor=actor, collection_id=collection)
    except Exception:  # not readable or not migrated: the layer is left out, not the report
        return np.empty((0, 2))
    q = features.parse_items_query(spec, {"limit": str(min(limit, 10_000)), **(params or {})})
    out: list[Any] = []
    while True:
        result = features.PageResult()
        page = [g for _, g, _ in features.iter_items(session, q, result) if g]
        out += page
        if result.next_cursor is None or len(out) >= limit:
            break
        q = dataclasses.replace(q, cursor=result.next_cursor)
    if not out:
        return np.empty((0, 2))
    geoms = shapely.point_on_surface([shape(json.loads(g)) for g in out[:limit]])
    return np.asarray(shapely.get_coordinates(geoms))


def _legend(measure: str, top: float) -> str:
    """Return the colour ramp's legend: one swatch per fifth of the largest value."""
    step = top / len(_RAMP) if top else 0
    items = "".join(
        f'<span style="background:{c};display:inline-block;width:14px;height:10px;'
        f'border:1px solid #999"></span> {i * step:,.0f}–{(i + 1) * step:,.0f} '
        for i, c in enumerate(_RAMP))
    return f'<div style="margin:4px 0">{html.escape(measure)}: {items}</div>'


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]], title: str,
           mark: str, legend: str = "") -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in columns)
    body = "".join("<tr>" + "".join(
        f"<td>{html.escape('' if r.get(k) is None else str(r.get(k)))}</td>" for k, _ in columns)
        + "</tr>" for r in rows)
    return (
        '<div id="summary" style="position:absolute;bottom:30px;left:10px;z-index:1000;'
        "max-height:45%;max-width:60%;overflow:auto;background:#fff;padding:6px 10px;"
        'font:12px sans-serif;box-shadow:0 1px 4px rgba(0,0,0,.4)">'
        f"<b>{html.escape(title)}</b>{legend}<table border=1 cellspacing=0 cellpadding=2>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f'<div style="color:#888;margin-top:4px">{html.escape(mark)}</div></div>')


_COLUMNS = [("code", "代码"), ("name", "名称"), ("area_km2", "面积km²"), ("person", "实有人口"),
            ("persons_per_km2", "人口/km²"), ("building", "建筑物"), ("key_place", "重点场所"),
            ("enterprise", "企业"), ("events", "事件")]


def run_report(env: EtlEnv, *, region: str, out: Path, date_from: date | None = None,
               date_to: date | None = None, max_points: int = MAX_POINTS,
               progress: Callable[[int], None] | None = None) -> ReportResult:
    """Write the HTML report of a region (the actor must read statistics there)."""
    started = time.perf_counter()
    actor = env.actor
    result = ReportResult(out, region)
    with env.session() as session:
        if not actor.can("statistics.read"):
            raise PermissionDenied(f"{actor.username} may not read statistics")
        if statistics.refreshed_at(session, "objects") is None:
            try:
                h3agg.refresh_aggregates(session, actor=actor)
                result.notes.append("the statistics tables had never been counted: counted now")
            except PermissionDenied:
                result.notes.append("the statistics tables were never counted: figures are 0 "
                                    "until the statistics job (or `etl h3`) runs")
        area = statistics.resolve_area(session, actor, region)
        # One period for the table and the events heat (default: the statistics' 30 days),
        # so the map never shows events the table does not count.
        period = statistics.make_period(date_from, date_to)
        result.period = f"{period.start}/{period.end}"
        rows = list(statistics.region_table(session, actor=actor, region_code=region,
                                            date_from=period.start, date_to=period.end))
        result.subregions = len(rows)
        own = regions.get_region(session, actor=actor, code=region, tolerance=0.00005)
        centre = shapely.point_on_surface(shape(own["geometry"]))
        fmap = offline_map((centre.y, centre.x))
        measure = "persons_per_km2" if any(r.get("person") is not None for r in rows) \
            else "events"
        result.measure = measure
        top = max([float(r[measure] or 0) for r in rows] or [0])
        shapes = folium.FeatureGroup(name=f"{area.name} ({measure})").add_to(fmap)
        for r in rows:
            geo = regions.get_region(session, actor=actor, code=r["code"], tolerance=0.00005)
            value = r.get(measure)
            folium.GeoJson(
                {"type": "Feature", "geometry": geo["geometry"],
                 "properties": {"name": r["name"], "value": value}},
                style_function=lambda _f, c=_colour(value, top): {
                    "fillColor": c, "color": "#555", "weight": 1, "fillOpacity": 0.6},
                tooltip=f"{r['name']} {r['code']}: {measure} = {value}",
            ).add_to(shapes)
        if progress is not None:
            progress(1)
        buildings = _feature_points(session, actor, "buildings", max_points)
        events = _feature_points(session, actor, "events", max_points,
                                 {"datetime": result.period})
        add_heat(fmap, buildings, "建筑物热力 buildings")
        add_heat(fmap, events, "事件热力 events")
        places = _feature_points(session, actor, "key_places", max_points)
        group = folium.FeatureGroup(name="重点场所 key places").add_to(fmap)
        for x, y in places:
            folium.CircleMarker([float(y), float(x)], radius=4, color="#c00", weight=1,
                                fill=True, fill_opacity=0.8).add_to(group)
        result.buildings, result.events, result.places = len(buildings), len(events), len(places)
        folium.LayerControl(collapsed=False).add_to(fmap)
        mark = watermark(actor)
        fmap.get_root().html.add_child(Element(_table(  # type: ignore[attr-defined]
            rows, _COLUMNS, f"{area.name} {area.code} · 事件 events {period.start} – {period.end}",
            mark, _legend(measure, top))))
        west, south, east, north = shape(own["geometry"]).bounds
        fmap.fit_bounds([[south, west], [north, east]])
        page = fmap.get_root().render()
        check_offline(page)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
        audit(session, actor=actor, action="etl.report", object_kind="region", object_id=region,
              detail={"file": str(out), "subregions": len(rows), "buildings": len(buildings),
                      "events": len(events), "places": len(places)})
        session.commit()
    result.seconds = time.perf_counter() - started
    return result
