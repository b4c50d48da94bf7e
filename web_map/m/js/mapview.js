// Maps on the phone: MapLibre is loaded only when a map is first shown (it is 1 MB; the service
// worker keeps it afterwards), with the server's style, or the last style seen when offline.

import { api } from "../../js/api.js";
import { kvGet, kvSet } from "./db.js";

const VENDOR = "../../vendor/maplibre-gl-5.24.1/";
const LIB = new URL(VENDOR + "maplibre-gl.js", import.meta.url).href;
const CSS = new URL(VENDOR + "maplibre-gl.css", import.meta.url).href;
const BLANK = { version: 8, sources: {}, layers: [
  { id: "background", type: "background", paint: { "background-color": "#eef0f2" } }] };
const EMPTY = { type: "FeatureCollection", features: [] };
let loading = null;

export function loadMapLibre() {
  if (window.maplibregl) return Promise.resolve(window.maplibregl);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const link = Object.assign(document.createElement("link"), { rel: "stylesheet", href: CSS });
      const script = Object.assign(document.createElement("script"), { src: LIB });
      script.onload = () => resolve(window.maplibregl);
      script.onerror = () => { loading = null; script.remove(); reject(new Error("地图组件未能加载（离线且未缓存）")); };
      document.head.append(link, script);
    });
  }
  return loading;
}

async function baseStyle() {
  try {
    const style = await api("/tiles/style.json");
    kvSet("style", style);
    return style;
  } catch {
    return (await kvGet("style")) || BLANK;
  }
}

export async function createMap(container, { bounds, center, zoom = 16 }) {
  const maplibregl = await loadMapLibre();
  const map = new maplibregl.Map({
    container, style: await baseStyle(), attributionControl: false, fadeDuration: 0,
    bounds: bounds || undefined, fitBoundsOptions: { padding: 24 },
    center: bounds ? undefined : center || [120.67, 28.0], zoom: bounds ? undefined : zoom,
  });
  // Offline, tiles fail: the map still shows the track on the background, without console noise.
  map.on("error", () => {});
  await new Promise((resolve) => map.once("load", resolve));
  return map;
}

const line = (coords) => ({ type: "Feature", properties: {},
  geometry: { type: "LineString", coordinates: coords } });
const point = (p) => ({ type: "Feature", properties: {}, geometry: { type: "Point", coordinates: p } });

// The patrol's small map: the worker's grids, the track so far and the current position.
export class TrackMap {
  constructor(el) {
    this.el = el;
    this.map = null;
    this.making = null;
  }

  ensure(grids, bounds) {
    if (!this.making) {
      this.making = createMap(this.el, { bounds }).then((map) => {
        map.addSource("grids", { type: "geojson", data: { type: "FeatureCollection",
          features: grids.map((g) => ({ type: "Feature", properties: {}, geometry: g })) } });
        map.addLayer({ id: "grids-line", type: "line", source: "grids",
          paint: { "line-color": "#0b5cad", "line-width": 2, "line-dasharray": [2, 1] } });
        map.addSource("track", { type: "geojson", data: EMPTY });
        map.addLayer({ id: "track-line", type: "line", source: "track",
          paint: { "line-color": "#d0302f", "line-width": 4 } });
        map.addSource("me", { type: "geojson", data: EMPTY });
        map.addLayer({ id: "me-dot", type: "circle", source: "me", paint: {
          "circle-radius": 7, "circle-color": "#1a73e8", "circle-stroke-color": "#fff",
          "circle-stroke-width": 2 } });
        this.map = map;
        return map;
      }).catch((e) => { this.making = null; throw e; });
    }
    return this.making;
  }

  update(coords, me) {
    if (!this.map) return;
    this.map.getSource("track").setData(coords.length > 1 ? line(coords) : EMPTY);
    // How many track points the map holds: tests (and a curious engineer) read it.
    this.el.dataset.track = String(coords.length);
    this.map.getSource("me").setData(me ? point(me) : EMPTY);
    if (me && !this.map.getBounds().contains(me)) this.map.easeTo({ center: me, duration: 0 });
  }
}

// A draggable marker for adjusting a report's location by hand; returns a getter of its place.
export async function pickOnMap(el, start) {
  const maplibregl = await loadMapLibre();
  const map = await createMap(el, { center: start, zoom: 17 });
  const marker = new maplibregl.Marker({ draggable: true, color: "#d0302f" }).setLngLat(start).addTo(map);
  map.on("click", (ev) => marker.setLngLat(ev.lngLat));
  return { map, marker, get: () => { const p = marker.getLngLat(); return [p.lng, p.lat]; } };
}
