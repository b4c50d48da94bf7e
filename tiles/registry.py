"""The one registry of vector tile layers.

Each layer is a SQL function ``tiles.<function>(z, x, y, query json) RETURNS bytea`` in
``sql/postgis/functions/100_tiles_*.sql``, registered here once with its zoom range, the
properties it emits, its feature limit, the permission needed to read it, the query parameters
it accepts and the tracked tables whose writes change it (tiles/cache.py keys its versions on
them). Adding a layer: write the SQL function, call ``tiles.track_changes('<table>')`` in the
table's migration, and add a ``TileLayer`` to ``BASE_LAYERS`` (or ``REGISTRY.register`` it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from geoserver.config import GOVERNANCE_TZ
from geoserver.domain.events import FINAL_STATES, OPEN_STATES, EventState
from geoserver.errors import InvalidInput

ParamKind = Literal["choices", "codes", "ids", "interval", "day"]
_CODE = re.compile(r"^[a-z][a-z_]{0,39}$")
_ID = re.compile(r"^[1-9][0-9]{0,17}$")
_MAX_LIST = 20


@dataclass(frozen=True)
class Param:
    """A query parameter of a layer: a list of choices, codes or ids, a time interval, a day."""

    name: str
    kind: ParamKind
    description: str
    choices: tuple[str, ...] = ()
    #: Names standing for several choices (``state=open``), expanded before the cache key.
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    #: For ``codes``: the pattern a code must match (default: lower-case words).
    pattern: re.Pattern[str] = _CODE
    #: The raw value used when the request leaves the parameter out (None: no filter).
    default: str | None = None
    required: bool = False

    def parse(self, raw: str) -> dict[str, Any]:
        """Return the normalized entries this parameter adds to the query object."""
        if self.kind in ("choices", "codes", "ids"):
            return {self.name: self._parse_list(raw)}
        if self.kind == "day":
            return {self.name: self._parse_day(raw).isoformat()}
        start, end = self._parse_interval(raw)
        return {f"{self.name}_from": start, f"{self.name}_to": end}

    def _parse_list(self, raw: str) -> list[str]:
        given = {v.strip() for v in raw.split(",") if v.strip()}
        if not given or len(given) > _MAX_LIST:
            raise InvalidInput(f"{self.name}: give 1 to {_MAX_LIST} comma-separated values",
                               field=self.name)
        values: set[str] = set()
        for v in given:
            values.update(self.groups.get(v, (v,)))
        for v in values:
            if self.kind == "choices":
                bad = v not in self.choices
            else:
                bad = not (_ID if self.kind == "ids" else self.pattern).fullmatch(v)
            if bad:
                names = (*self.choices, *self.groups)
                hint = f" (one of {', '.join(names)})" if names else ""
                raise InvalidInput(f"{self.name}: {v!r} is not allowed{hint}", field=self.name)
        # One order for one set of values: equal filters share one cache entry.
        return sorted(values, key=int) if self.kind == "ids" else sorted(values)

    def _parse_day(self, raw: str) -> date:
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise InvalidInput(f"{self.name}: expected a date YYYY-MM-DD",
                               field=self.name) from None

    def _parse_interval(self, raw: str) -> tuple[str | None, str | None]:
        # OGC API style: "start/end", either side ".." (or empty) for open.
        parts = raw.split("/")
        if len(parts) != 2:
            raise InvalidInput(f"{self.name}: expected start/end (ISO 8601, '..' for open)",
                               field=self.name)
        out: list[str | None] = []
        for p in parts:
            p = p.strip()
            if p in ("", ".."):
                out.append(None)
                continue
            try:
                moment = datetime.fromisoformat(p.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"{self.name}: {p!r} is not an ISO 8601 time",
                                   field=self.name) from None
            if moment.tzinfo is None:
                raise InvalidInput(f"{self.name}: give a time zone (e.g. +08:00)",
                                   field=self.name)
            out.append(moment.isoformat())
        if out[0] and out[1] and out[0] > out[1]:
            raise InvalidInput(f"{self.name}: the start is after the end", field=self.name)
        return out[0], out[1]


@dataclass(frozen=True)
class VectorLayer:
    """A layer inside the tile (a tile function may emit several), for TileJSON."""

    id: str
    fields: Mapping[str, str]
    description: str = ""
    #: Zooms at which the function emits this layer (None: the tile layer's own range).
    minzoom: int | None = None
    maxzoom: int | None = None


@dataclass(frozen=True)
class TileLayer:
    """A registered tile layer."""

    name: str
    title: str
    description: str
    permission: str
    #: Tracked tables whose writes change this layer's tiles.
    tables: tuple[str, ...]
    minzoom: int
    maxzoom: int
    #: Most features per tile (passed to the SQL function as ``query.limit``).
    limit: int
    vector_layers: tuple[VectorLayer, ...]
    params: tuple[Param, ...] = ()
    #: A shared base layer: ``gridgov tiles seed`` pre-renders it and the disk cache keeps it.
    public: bool = False
    #: MapLibre style layers (without ``source``); ``_rank`` orders them in style.json.
    style: tuple[Mapping[str, Any], ...] = ()
    function: str = ""
    #: For tiles whose content changes with time alone: cached tiles expire at the next
    #: multiple of this many seconds, writes or not.
    max_age: int | None = None
    #: The content changes with time alone (an SLA colour turning amber) at moments the SQL
    #: knows: ``tiles.<function>_expiring(z, x, y, query)`` returns the tile and the seconds it
    #: stays right, and the cache keeps it no longer (see 110_tiles_events.sql).
    expiring: bool = False
    #: Sensitive personal data (行踪轨迹): the audit action written when a user starts viewing
    #: it (once per user, layer and filter in a while; see api/routes/tiles.py).
    audit_action: str | None = None
    #: Query parameters the layer's URL in style.json and TileJSON carries when the request
    #: gives none (a day's tracks: today), as a function of nothing (evaluated per request).
    url_defaults: Callable[[], Mapping[str, str]] | None = None

    @property
    def sql_function(self) -> str:
        """Return the name of the SQL function in schema ``tiles``."""
        return self.function or self.name

    def parse_query(self, raw: Mapping[str, str], *, partial: bool = False) -> str:
        """Validate request parameters; return the normalized query object as canonical JSON.

        ``partial``: a URL template (TileJSON) may leave required parameters out.
        """
        known = {p.name: p for p in self.params}
        query: dict[str, Any] = {}
        for key, value in raw.items():
            param = known.get(key)
            if param is None:
                allowed = ", ".join(known) or "none"
                raise InvalidInput(f"unknown parameter {key!r} for layer {self.name} "
                                   f"(allowed: {allowed})", field=key)
            query.update(param.parse(value))
        for param in self.params:
            if param.name in raw:
                continue
            if param.default is not None:
                query.update(param.parse(param.default))
            elif param.required and not partial:
                raise InvalidInput(f"{param.name}: the layer {self.name} needs this parameter "
                                   f"({param.description})", field=param.name)
        return json.dumps(query, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def sql_query(self, query: str) -> str:
        """Return the query object for the SQL function: the request's plus the feature limit."""
        return json.dumps(json.loads(query) | {"limit": self.limit}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)


@dataclass
class Registry:
    """Tile layers by name."""

    layers: dict[str, TileLayer] = field(default_factory=dict)

    def register(self, layer: TileLayer) -> TileLayer:
        """Add a layer; a name is registered once."""
        if layer.name in self.layers:
            raise ValueError(f"tile layer {layer.name!r} is already registered")
        if not re.match(r"^[a-z][a-z0-9_]{0,40}$", layer.sql_function):
            raise ValueError(f"bad tile function name {layer.sql_function!r}")
        if not 0 <= layer.minzoom <= layer.maxzoom <= 22:
            raise ValueError(f"bad zoom range for {layer.name}")
        self.layers[layer.name] = layer
        return layer

    def get(self, name: str) -> TileLayer | None:
        """Return the layer called ``name``, or None."""
        return self.layers.get(name)

    def __iter__(self) -> Iterator[TileLayer]:
        return iter(self.layers.values())


# --- the base layers ------------------------------------------------------------------------

_LEVELS = ("city", "county", "township", "village", "grid", "micro_grid")
_BUILDING_CATEGORIES = ("residential", "commercial", "office", "industrial", "public", "other")
_BUILDING_CATEGORY = Param("category", "choices", "building categories", _BUILDING_CATEGORIES)


def _by_count(*stops: float | str) -> list[Any]:
    """Return a MapLibre expression interpolating linearly over a feature's ``count``."""
    return ["interpolate", ["linear"], ["get", "count"], *stops]


def _heat_layer(name: str, *, title: str, description: str, permission: str, table: str,
                fields: Mapping[str, str], params: tuple[Param, ...], rank: int,
                fill: list[Any], point: tuple[str, list[Any]] | None = None,
                audit_action: str | None = None) -> TileLayer:
    """Return a density layer on H3 hexagons (``tiles.heat_*`` in the SQL).

    They share the zoom range of ``tiles.heat_resolution`` (r7 from z7, r9 to z16), the SQL's
    feature ceiling, the ``h3_cell`` outlines and a style hidden until switched on: hexagons
    filled by ``fill``; ``point`` (colour, radius) draws a hexagon whose outline is not known
    yet, which the SQL sends as its members' centre.
    """
    style_id = name.replace("_", "-")
    style: tuple[dict[str, Any], ...] = (
        {"_rank": rank, "id": style_id, "type": "fill", "source-layer": name,
         "layout": {"visibility": "none"},
         "filter": ["==", ["geometry-type"], "Polygon"],
         "paint": {"fill-color": fill, "fill-opacity": 0.55}},)
    if point is not None:
        colour, radius = point
        style += ({"_rank": rank, "id": f"{style_id}-points", "type": "circle",
                   "source-layer": name, "layout": {"visibility": "none"},
                   "filter": ["==", ["geometry-type"], "Point"],
                   "paint": {"circle-radius": radius, "circle-color": colour,
                             "circle-opacity": 0.5, "circle-blur": 0.4}},)
    return TileLayer(
        name=name, title=title, description=description, permission=permission,
        tables=(table, "h3_cell"), minzoom=7, maxzoom=16, limit=20000,
        vector_layers=(VectorLayer(name, {"h3": "H3 cell id (hex)", "res": "H3 resolution",
                                          **fields}),),
        params=params, style=style, audit_action=audit_action)


_REGION_FIELDS = {
    "code": "区划代码 (statistical code; grids extend their village's code)",
    "name": "名称",
    "level": "city | county | township | village | grid | micro_grid",
    "grid_type": "grids only: general 一般 | key 重点 | dedicated 专属",
}

_LEVEL_LINE = ["match", ["get", "level"], "city", 3.0, "county", 2.5, "township", 2.0,
               "village", 1.2, 0.8]
_LEVEL_COLOUR = ["match", ["get", "level"], "city", "#5b2a86", "county", "#7b3294",
                 "township", "#c2185b", "village", "#1565c0", "#2e7d32"]

REGIONS = TileLayer(
    name="regions",
    title="区划网格",
    description="Region outlines and label points, by level: counties at low zoom down to "
                "grids and micro-grids at high zoom. Outlines are pre-simplified per zoom band.",
    permission="region.read",
    tables=("region",),
    minzoom=0,
    maxzoom=18,
    limit=5000,
    vector_layers=(
        VectorLayer("regions", _REGION_FIELDS, "outlines (polygons)"),
        VectorLayer("region_labels", {k: _REGION_FIELDS[k] for k in ("code", "name", "level")},
                    "label points (inside each region)"),
    ),
    params=(Param("level", "choices", "levels to draw (default: those drawn at the zoom); "
                  "levels finer than the zoom allows are left out", _LEVELS),),
    public=True,
    style=(
        {"_rank": 20, "id": "regions-fill", "type": "fill", "source-layer": "regions",
         "filter": ["in", ["get", "level"], ["literal", ["grid", "micro_grid"]]],
         "paint": {"fill-color": ["match", ["get", "grid_type"], "key", "#ff9800",
                                  "dedicated", "#8e24aa", "#4caf50"],
                   "fill-opacity": 0.08}},
        {"_rank": 30, "id": "regions-line", "type": "line", "source-layer": "regions",
         "paint": {"line-color": _LEVEL_COLOUR, "line-width": _LEVEL_LINE}},
        {"_rank": 50, "id": "region-labels", "type": "symbol", "source-layer": "region_labels",
         "layout": {"text-field": ["get", "name"], "text-size": 12},
         "paint": {"text-color": "#333333", "text-halo-color": "#ffffff",
                   "text-halo-width": 1.2}},
    ),
)

BUILDINGS = TileLayer(
    name="buildings",
    title="建筑物",
    description="Building footprints.",
    permission="building.read",
    tables=("building",),
    minzoom=12,
    maxzoom=18,
    limit=10000,
    vector_layers=(VectorLayer("buildings", {
        "code": "建筑物编码", "name": "名称",
        "category": " | ".join(_BUILDING_CATEGORIES), "floors": "层数"}),),
    params=(_BUILDING_CATEGORY,),
    public=True,
    style=(
        {"_rank": 21, "id": "buildings-fill", "type": "fill", "source-layer": "buildings",
         "paint": {"fill-color": ["match", ["get", "category"], "residential", "#d7ccc8",
                                  "commercial", "#ffcc80", "office", "#b3e5fc",
                                  "industrial", "#cfd8dc", "public", "#c5e1a5", "#e0e0e0"],
                   "fill-outline-color": "#9e9e9e", "fill-opacity": 0.9}},
    ),
)

KEY_PLACES = TileLayer(
    name="key_places",
    title="重点场所",
    description="Key places: points or premises outlines, with their risk level.",
    permission="place.read",
    tables=("key_place",),
    minzoom=12,
    maxzoom=18,
    limit=10000,
    vector_layers=(VectorLayer("key_places", {
        "name": "名称", "category": "场所类别", "risk_level": "low | medium | high"}),),
    params=(Param("category", "codes", "place categories"),
            Param("risk_level", "choices", "risk levels", ("low", "medium", "high"))),
    public=True,
    style=(
        {"_rank": 22, "id": "key-places-fill", "type": "fill", "source-layer": "key_places",
         "filter": ["==", ["geometry-type"], "Polygon"],
         "paint": {"fill-color": "#e53935", "fill-opacity": 0.15}},
        {"_rank": 40, "id": "key-places-point", "type": "circle", "source-layer": "key_places",
         "filter": ["==", ["geometry-type"], "Point"],
         "paint": {"circle-radius": 5, "circle-stroke-color": "#ffffff", "circle-stroke-width": 1,
                   "circle-color": ["match", ["get", "risk_level"], "high", "#d32f2f",
                                    "medium", "#f57c00", "#fbc02d"]}},
    ),
)

CITY_COMPONENTS = TileLayer(
    name="city_components",
    title="城市部件",
    description="City components (manholes, lamps, hydrants …) with their status.",
    permission="place.read",
    tables=("city_component",),
    minzoom=15,
    maxzoom=18,
    limit=10000,
    vector_layers=(VectorLayer("city_components", {
        "code": "部件编码", "category": "部件类别", "status": "intact | damaged | missing"}),),
    params=(Param("category", "codes", "component categories"),
            Param("status", "choices", "statuses", ("intact", "damaged", "missing"))),
    public=True,
    style=(
        {"_rank": 41, "id": "city-components", "type": "circle", "source-layer": "city_components",
         "paint": {"circle-radius": 3,
                   "circle-color": ["match", ["get", "status"], "damaged", "#f57c00",
                                    "missing", "#d32f2f", "#607d8b"]}},
    ),
)

HEAT_BUILDINGS = _heat_layer(
    "heat_buildings",
    title="建筑密度",
    description="Building counts on H3 hexagons (r7 to z10, r8 to z12, r9 beyond), from the "
                "cell ids stored when buildings are written. A hexagon whose outline is not "
                "known yet is drawn as a point at its members' centre.",
    permission="building.read",
    table="building",
    fields={"count": "buildings in the cell"},
    params=(_BUILDING_CATEGORY,),
    rank=10,
    fill=_by_count(1, "#fff5eb", 20, "#fd8d3c", 100, "#d94801", 400, "#7f2704"),
)

# --- events -----------------------------------------------------------------------------------

_EVENT_TYPE_CODE = re.compile(r"^[0-9A-Za-z_]{1,32}$")
_GRID_CODE = re.compile(r"^[0-9]{6,20}$")
_EVENT_STATES = tuple(s.value for s in EventState)
_EVENT_SOURCES = ("patrol", "commander", "public", "hotline_12345", "police_110", "external")
_SEVERITIES = ("normal", "major", "urgent")
_SLA = ("green", "amber", "red")
#: Zoom from which events are drawn one by one (tiles.events_point_zoom() in the SQL).
EVENT_POINT_ZOOM = 14

_SLA_COLOUR = ["match", ["get", "sla"], "red", "#d32f2f", "amber", "#f9a825",
               "green", "#2e7d32", "#546e7a"]



def _event_params(*, state_default: str | None) -> tuple[Param, ...]:
    """Return the filters of the event layers (their states' default differs)."""
    default = f"; default {state_default}" if state_default else ""
    return (
        Param("type", "codes", "event type codes (a type takes its sub-types)",
              pattern=_EVENT_TYPE_CODE),
        Param("state", "choices", f"event states, or 'open' (在办) / 'final' (finished){default}",
              _EVENT_STATES, default=state_default,
              groups={"open": tuple(sorted(OPEN_STATES)), "final": tuple(sorted(FINAL_STATES))}),
        Param("source", "choices", "where events came from", _EVENT_SOURCES),
        Param("severity", "choices", "severities", _SEVERITIES),
        Param("time", "interval", "reported between start/end (ISO 8601 with a zone, '..' open)"),
    )


EVENTS = TileLayer(
    name="events",
    title="事件",
    description=f"Events with their state and SLA colour (时限: green, amber, red), one by one "
                f"from z{EVENT_POINT_ZOOM} with their id, in clusters (counts per colour) below. "
                "Open events unless a state is asked for. A tile is kept no longer than until "
                "the next colour change among its events.",
    permission="event.read",
    tables=("event",),
    minzoom=6,
    maxzoom=18,
    limit=10000,
    vector_layers=(
        VectorLayer("events", {
            "code": "事件编号", "type": "event type code", "type_name": "事件类型",
            "state": "event state", "source": " | ".join(_EVENT_SOURCES),
            "severity": " | ".join(_SEVERITIES),
            "sla": "green | amber | red; absent when no clock runs",
            "reported_at": "reported at, seconds since 1970 (UTC)"},
            "events (the feature id is the event id)", minzoom=EVENT_POINT_ZOOM),
        VectorLayer("event_clusters", {
            "count": "events in the cluster", "red": "of them red", "amber": "of them amber",
            "green": "of them green", "sla": "the worst colour in the cluster"},
            "clusters of nearby events", maxzoom=EVENT_POINT_ZOOM - 1),
    ),
    params=(*_event_params(state_default="open"),
            Param("sla", "choices", "SLA colours (they change with time: see the description)",
                  _SLA)),
    expiring=True,
    style=(
        {"_rank": 60, "id": "event-clusters", "type": "circle", "source-layer": "event_clusters",
         "paint": {"circle-color": _SLA_COLOUR, "circle-opacity": 0.85,
                   "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5,
                   "circle-radius": _by_count(1, 7, 10, 11, 100, 18, 1000, 26)}},
        {"_rank": 61, "id": "event-clusters-count", "type": "symbol",
         "source-layer": "event_clusters",
         "layout": {"text-field": ["to-string", ["get", "count"]], "text-size": 11,
                    "text-allow-overlap": True},
         "paint": {"text-color": "#ffffff"}},
        {"_rank": 62, "id": "events-point", "type": "circle", "source-layer": "events",
         "paint": {"circle-color": _SLA_COLOUR, "circle-stroke-color": "#ffffff",
                   "circle-stroke-width": 1.5,
                   "circle-radius": ["match", ["get", "severity"], "urgent", 8, "major", 7, 5]}},
    ),
)

HEAT_EVENTS = _heat_layer(
    "heat_events",
    title="事件密度",
    description="Event counts on H3 hexagons (r7 to z10, r8 to z12, r9 beyond), from the cell "
                "ids stored when events are written; every state but merged duplicates unless "
                "a state is asked for. A hexagon whose outline is not known yet is drawn as a "
                "point at its members' centre.",
    permission="event.read",
    table="event",
    fields={"count": "events in the cell"},
    params=_event_params(state_default=None),
    rank=11,
    fill=_by_count(1, "#fee5d9", 5, "#fc9272", 20, "#de2d26", 100, "#a50f15"),
    point=("#de2d26", _by_count(1, 6, 100, 22)),
)

# --- patrols -----------------------------------------------------------------------------------


def _today() -> Mapping[str, str]:
    """Return today's governance day (Asia/Shanghai) as the default ``date`` of a day layer."""
    return {"date": datetime.now(GOVERNANCE_TZ).date().isoformat()}


PATROL_TRACKS = TileLayer(
    name="patrol_tracks",
    title="巡查轨迹",
    description="Cleaned patrol tracks of one day (date=YYYY-MM-DD, required; Asia/Shanghai), "
                "simplified for the zoom. Tracks are personal data (行踪轨迹): only roles "
                "cleared for playback read this layer, and its use is audited.",
    permission="patrol.playback",
    tables=("patrol_session",),
    minzoom=11,
    maxzoom=18,
    limit=5000,
    vector_layers=(VectorLayer("patrol_tracks", {
        "worker": "the grid worker's user id", "grid": "grid code", "state": "open | closed",
        "mode": "walk | bicycle", "started_at": "seconds since 1970 (UTC)",
        "ended_at": "seconds since 1970 (UTC)", "mileage_m": "length in metres"},
        "patrol records (the feature id is the patrol session id)"),),
    params=(Param("date", "day", "the patrol day (YYYY-MM-DD, Asia/Shanghai)", required=True),
            Param("worker", "ids", "grid workers' user ids"),
            Param("grid", "codes", "grid codes", pattern=_GRID_CODE)),
    audit_action="patrol.tiles",
    url_defaults=_today,
    style=(
        {"_rank": 55, "id": "patrol-tracks", "type": "line", "source-layer": "patrol_tracks",
         "layout": {"visibility": "none", "line-cap": "round", "line-join": "round"},
         "paint": {"line-color": ["match", ["get", "state"], "open", "#00897b", "#3949ab"],
                   "line-width": ["interpolate", ["linear"], ["zoom"], 11, 1.5, 16, 3.5],
                   "line-opacity": 0.8}},
    ),
)

HEAT_PATROLS = _heat_layer(
    "heat_patrols",
    title="巡查密度",
    description="Patrol density on H3 hexagons (resolution by zoom): kept GPS fixes per cell "
                "(a fix every few seconds, so time spent) and how many workers, from the r10 "
                "cells stored at ingest. Fine cells retrace a worker's day: the same clearance "
                "as tracks, and audited.",
    permission="patrol.playback",
    table="patrol_cell",
    fields={"count": "GPS fixes in the cell", "workers": "workers the fixes came from"},
    params=(Param("time", "interval", "patrols started between start/end (ISO 8601 with a "
                  "zone, '..' open)"),),
    rank=12,
    fill=_by_count(1, "#edf8fb", 50, "#66c2a4", 300, "#238b45", 1500, "#00441b"),
    point=("#238b45", _by_count(1, 5, 300, 18)),
    audit_action="patrol.tiles",
)

BASE_LAYERS = (REGIONS, BUILDINGS, KEY_PLACES, CITY_COMPONENTS, HEAT_BUILDINGS, EVENTS,
               HEAT_EVENTS, PATROL_TRACKS, HEAT_PATROLS)

REGISTRY = Registry()
for _layer in BASE_LAYERS:
    REGISTRY.register(_layer)
