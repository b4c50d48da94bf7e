// The commander's grid map: login, the jurisdiction map, the work dock (layers, events,
// patrols, statistics), the leader and work views.
import { api, codeOf, setCsrf } from "./api.js";
import * as events from "./events.js";
import { addLayerGroup, buildLayerSwitcher, buildLegend } from "./layers.js";
import * as messages from "./messages.js";
import * as patrols from "./patrols.js";
import { openRegion, regionAt, whatIsHere } from "./regions.js";
import { setupSearch } from "./search.js";
import { state } from "./state.js";
import * as stats from "./stats.js";
import { $, bboxOf, tabs } from "./util.js";
import * as views from "./views.js";
import { drawWatermark } from "./watermark.js";

/** Layers whose features take a click before the regions underneath (first hit wins). */
state.clickTargets = [];
state.openTab = null;

async function boot() {
  // Probe without a 401: an anonymous visitor simply gets the login form.
  const session = await api("/api/v1/auth/session");
  if (!session.authenticated) return showLogin();
  state.me = session;
  if (goNext()) return;
  await showApp();
}

/** After login, go back to the page that sent us here (the cockpit), same site only. */
function goNext() {
  const next = new URLSearchParams(window.location.search).get("next");
  if (next === "cockpit/") {
    window.location.replace(next);
    return true;
  }
  return false;
}

function showLogin() {
  $("login").hidden = false;
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      const out = await api("/api/v1/auth/login", {
        method: "POST",
        body: { username: $("username").value, password: $("password").value },
      });
      setCsrf(out.csrf_token);
      state.me = await api("/api/v1/auth/me");
      if (goNext()) return;
      $("login").hidden = true;
      await showApp();
    } catch (e) {
      $("login-error").textContent = e.status === 429 ? "登录失败次数过多，账号暂时锁定" : "账号或密码错误";
    }
  });
}

async function jurisdictionBounds() {
  const codes = state.me.scope.filter((p) => p !== "").map(codeOf);
  let box = null;
  for (const code of codes.slice(0, 20)) {
    try {
      const f = await api(`/api/v1/regions/${code}`, { params: { simplify: 0.001 } });
      const b = bboxOf(f.geometry);
      box = box ? [Math.min(box[0], b[0]), Math.min(box[1], b[1]),
        Math.max(box[2], b[2]), Math.max(box[3], b[3])] : b;
    } catch (e) { /* a scope region may be gone; skip it */ }
  }
  return box;
}

async function showApp() {
  $("topbar").hidden = false;
  $("app").hidden = false;
  $("whoami").textContent = `${state.me.username}`;
  drawWatermark($("watermark"), state.me.username);
  $("logout").addEventListener("click", async () => {
    await api("/api/v1/auth/logout", { method: "POST" }).catch(() => null);
    window.location.replace(window.location.pathname);
  });
  const [style, layerList, bounds] = await Promise.all([
    api("/tiles/style.json"), api("/tiles").catch(() => ({ layers: [] })), jurisdictionBounds(),
  ]);
  state.layers = layerList.layers || layerList;
  // Region features carry their code as id, so statistics can colour them (feature state).
  if (style.sources.regions) style.sources.regions.promoteId = { regions: "code" };
  addHeatPoints(style);
  state.style = style;
  const map = new maplibregl.Map({
    container: "map", style, attributionControl: { compact: true },
    bounds: bounds || undefined, fitBoundsOptions: { padding: 30 },
    center: bounds ? undefined : [120.67, 28.0], zoom: bounds ? undefined : 9,
  });
  state.map = map;
  state.bounds = bounds;
  // Marks for bench/bench_web.py: when the map began, loaded its style, was first idle.
  performance.mark("gridgov:map-created");
  map.once("load", () => performance.mark("gridgov:map-load"));
  map.once("idle", () => performance.mark("gridgov:map-idle"));
  map.addControl(new maplibregl.NavigationControl(), "bottom-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  map.on("load", () => onMapLoad(map));
  map.on("click", onMapClick);
  map.on("contextmenu", (ev) => whatIsHere(ev.lngLat));
  setupSearch();
  messages.init();
  setupDock();
  setupViews();
  $("panel-close").addEventListener("click", () => { $("panel").hidden = true; });
  document.addEventListener("gridgov:open-region", (ev) => openRegion(ev.detail));
}

/** Heat cells whose hexagon is not known yet come as points: draw them as dots meanwhile. */
function addHeatPoints(style) {
  const at = style.layers.findIndex((l) => l.id === "heat-buildings");
  if (at < 0) return;
  style.layers.splice(at + 1, 0, {
    id: "heat-buildings-points", type: "circle", source: "heat_buildings",
    "source-layer": "heat_buildings", layout: { visibility: "none" },
    filter: ["==", ["geometry-type"], "Point"],
    paint: { "circle-radius": ["interpolate", ["linear"], ["get", "count"], 1, 6, 100, 22],
      "circle-color": ["interpolate", ["linear"], ["get", "count"], 1, "#fdd0a2", 20, "#fd8d3c",
        100, "#d94801", 400, "#7f2704"], "circle-opacity": 0.6, "circle-blur": 0.4 },
  });
}

function onMapLoad(map) {
  // Clicks inside a region (not only on its outline) select it: an invisible fill to hit.
  if (map.getSource("regions")) {
    map.addLayer({ id: "regions-hit", type: "fill", source: "regions", "source-layer": "regions",
      paint: { "fill-color": "#000000", "fill-opacity": 0 } }, map.getStyle().layers[1]?.id);
  }
  map.addSource("selection", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "selection-line", type: "line", source: "selection",
    paint: { "line-color": "#00b0ff", "line-width": 4 } });
  buildLayerSwitcher();
  buildLegend();
  stats.init(map, { addLayerGroup });
  patrols.init(map, { addLayerGroup });
  events.init(map, { addLayerGroup });
  if (state.me.scope.length && state.me.scope[0] !== "") {
    openRegion(codeOf(state.me.scope[0]), { fly: false });
  }
}

function onMapClick(ev) {
  if (state.pickPoint) {
    const pick = state.pickPoint;
    state.pickPoint = null;
    state.map.getCanvas().style.cursor = "";
    pick(ev.lngLat);
    return;
  }
  for (const target of state.clickTargets) {
    const layers = target.layers.filter((id) => state.map.getLayer(id)
      && state.map.getLayoutProperty(id, "visibility") !== "none");
    if (!layers.length) continue;
    const hit = state.map.queryRenderedFeatures(ev.point, { layers })[0];
    if (hit) return target.handle(hit);
  }
  const code = regionAt(ev.point);
  if (code) openRegion(code, { fly: false });
}

function setupDock() {
  state.openTab = tabs(document.querySelector(".dock-tabs"), (pane) => {
    if (pane === "pane-stats") stats.show();
    if (pane === "pane-patrols") patrols.show();
    if (pane === "pane-events") events.show();
  });
}

function setupViews() {
  const route = () => {
    const view = (window.location.hash.match(/^#\/(\w+)/) || [])[1] || "map";
    for (const name of ["map", "leader", "work"]) {
      const link = $(`nav-${name}`);
      if (name === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    $("view-leader").hidden = view !== "leader";
    $("view-work").hidden = view !== "work";
    if (view === "leader") views.showLeader();
    if (view === "work") views.showWork();
    if (view === "map") state.map?.resize();
  };
  window.addEventListener("hashchange", route);
  route();
}

boot().catch((e) => {
  console.warn("gridgov failed to start", e);
});
