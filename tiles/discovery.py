"""Discovery documents: the layer list, TileJSON 3.0.0 per layer, one MapLibre style."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tiles.registry import TileLayer
from tiles.settings import TileSettings

ATTRIBUTION = "gridgov"
#: Where the map opens when the caller's scope has no regions yet (温州市区).
DEFAULT_CENTER = (120.672, 28.000)


def tile_url(base: str, layer: TileLayer, query_string: str = "") -> str:
    """Return the XYZ URL template of a layer (with the request's filters, if any)."""
    url = f"{base}/tiles/{layer.name}/{{z}}/{{x}}/{{y}}.mvt"
    return f"{url}?{query_string}" if query_string else url


def with_defaults(layer: TileLayer, query_string: str = "") -> str:
    """Return a query string with the layer's URL defaults added where the request has none."""
    if layer.url_defaults is None:
        return query_string
    given = parse_qsl(query_string, keep_blank_values=True)
    names = {k for k, _ in given}
    extra = [(k, v) for k, v in layer.url_defaults().items() if k not in names]
    if not extra:
        return query_string
    return "&".join(p for p in (query_string, urlencode(extra)) if p)


def summary(layer: TileLayer, base: str) -> dict[str, Any]:
    """Return a layer's entry in the ``/tiles`` list."""
    return {
        "name": layer.name,
        "title": layer.title,
        "description": layer.description,
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom,
        "feature_limit": layer.limit,
        "public": layer.public,
        "parameters": [{"name": p.name, "kind": p.kind, "description": p.description,
                        **({"choices": list(p.choices)} if p.choices else {})}
                       for p in layer.params],
        "links": [
            {"rel": "describedby", "type": "application/json", "title": "TileJSON",
             "href": f"{base}/tiles/{layer.name}.json"},
            {"rel": "item", "type": "application/vnd.mapbox-vector-tile",
             "templated": True, "href": tile_url(base, layer)},
        ],
    }


def center_of(bounds: Sequence[float] | None, zoom: int) -> list[float]:
    """Return [lon, lat, zoom] at the middle of ``bounds`` (or the default centre)."""
    if bounds is None:
        return [*DEFAULT_CENTER, zoom]
    return [round((bounds[0] + bounds[2]) / 2, 6), round((bounds[1] + bounds[3]) / 2, 6), zoom]


def tilejson(layer: TileLayer, base: str, *, query_string: str = "",
             bounds: Sequence[float] | None = None) -> dict[str, Any]:
    """Return the TileJSON 3.0.0 document of a layer."""
    doc: dict[str, Any] = {
        "tilejson": "3.0.0",
        "name": layer.title,
        "description": layer.description,
        "version": "1.0.0",
        "attribution": ATTRIBUTION,
        "scheme": "xyz",
        "tiles": [tile_url(base, layer, with_defaults(layer, query_string))],
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom,
        "bounds": list(bounds) if bounds else [-180.0, -85.051129, 180.0, 85.051129],
        "center": center_of(bounds, max(layer.minzoom, min(12, layer.maxzoom))),
        "vector_layers": [
            {"id": v.id, "fields": dict(v.fields), "description": v.description,
             "minzoom": layer.minzoom if v.minzoom is None else v.minzoom,
             "maxzoom": layer.maxzoom if v.maxzoom is None else v.maxzoom}
            for v in layer.vector_layers
        ],
    }
    return doc


def style(layers: Iterable[TileLayer], base: str, settings: TileSettings, *,
          bounds: Sequence[float] | None = None) -> dict[str, Any]:
    """Return one MapLibre style: our layers on a plain background, or on the configured base map.

    No ``glyphs``: MapLibre GL JS (>= 5.11) then draws label text with local fonts, so the style
    works with no internet and no glyph server.
    """
    layers = list(layers)
    sources: dict[str, Any] = {}
    style_layers: list[dict[str, Any]] = [
        {"id": "background", "type": "background", "paint": {"background-color": "#f4f3ef"}},
    ]
    if settings.basemap_url:
        sources["basemap"] = {"type": "raster", "tiles": [settings.basemap_url], "tileSize": 256,
                              "maxzoom": settings.basemap_maxzoom,
                              "attribution": settings.basemap_attribution}
        style_layers.append({"id": "basemap", "type": "raster", "source": "basemap"})
    ranked: list[tuple[int, int, dict[str, Any]]] = []
    for layer in layers:
        sources[layer.name] = {"type": "vector", "tiles": [tile_url(base, layer,
                                                                     with_defaults(layer))],
                               "minzoom": layer.minzoom, "maxzoom": layer.maxzoom,
                               "attribution": ATTRIBUTION}
        for s in layer.style:
            entry = {k: v for k, v in s.items() if k != "_rank"}
            entry["source"] = layer.name
            entry.setdefault("minzoom", layer.minzoom)
            ranked.append((int(s.get("_rank", 50)), len(ranked), entry))
    style_layers += [entry for _, _, entry in sorted(ranked, key=lambda r: (r[0], r[1]))]
    return {
        "version": 8,
        "name": "gridgov",
        "metadata": {"gridgov:layers": [layer.name for layer in layers]},
        "center": center_of(bounds, 0)[:2],
        "zoom": 11 if bounds else 10,
        "sources": sources,
        "layers": style_layers,
    }
