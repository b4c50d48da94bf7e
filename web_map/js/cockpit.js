// The big screen (部门驾驶舱): the user's jurisdiction at a glance — key figures, the map with
// open events (the events tile layer) and workers, live events and charts — refreshing by itself.
import { api } from "./api.js";
import { draw, pieOption, rankingOption, trendOption } from "./charts.js";
import { leaderData, rootCode } from "./figures.js";
import { SLA_NAMES, SOURCE_NAMES, STATE_NAMES, slaOf } from "./labels.js";
import { $, bboxOf, esc, fmtKm, fmtNum, fmtPct, fmtTime, shanghaiDay } from "./util.js";
import { drawWatermark } from "./watermark.js";

const EVENTS_MS = 10_000;
const FIGURES_MS = 60_000;
const LIVE_MS = 15_000;
// Brighter SLA colours for a dark screen.
const SLA = { red: "#ff5252", amber: "#ffca28", green: "#69f0ae", none: "#90a4ae" };
const EMPTY = { type: "FeatureCollection", features: [] };

const ck = { me: null, code: null, map: null, seen: new Set(), refreshedAt: null };
window.gridgov = ck; // for tests and the console

async function boot() {
  const session = await api("/api/v1/auth/session");
  if (!session.authenticated) {
    window.location.replace("../?next=cockpit/");
    return;
  }
  ck.me = session;
  ck.code = rootCode(session);
  drawWatermark($("watermark"), session.username, { colour: "rgba(200, 220, 255, 0.07)" });
  tick();
  setInterval(tick, 1000);
  await buildMap();
  await Promise.all([refreshFigures(), refreshEvents(), refreshLive()]);
  setInterval(refreshFigures, FIGURES_MS);
  setInterval(refreshEvents, EVENTS_MS);
  setInterval(refreshLive, LIVE_MS);
}

const can = (p) => (ck.me.permissions || []).includes(p);

function tick() {
  $("ck-clock").textContent = new Date().toLocaleString("zh-CN", { timeZone: "Asia/Shanghai",
    hour12: false, year: "numeric", month: "2-digit", day: "2-digit", weekday: "short",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

const slaColour = ["match", ["get", "sla"], "red", SLA.red, "amber", SLA.amber, "green", SLA.green,
  SLA.none];

/**
 * The tile style in big-screen colours: regions, light lines on a dark ground, and the events
 * tile layer (open events by SLA colour, clusters when zoomed out) in brighter colours.
 */
function darkStyle(style) {
  const keep = new Set(["regions", "events"]);
  const events = style.layers.filter((l) => l.source === "events");
  style.layers = style.layers.filter((l) => !l.source || l.source === "regions");
  style.sources = Object.fromEntries(Object.entries(style.sources).filter(([k]) => keep.has(k)));
  for (const l of style.layers) {
    if (l.type === "background") l.paint = { "background-color": "#081d3a" };
    if (l.id === "regions-fill") {
      l.paint = { "fill-color": ["match", ["get", "grid_type"], "key", "#ffb74d", "dedicated", "#ce93d8",
        "#4db6ac"], "fill-opacity": 0.18 };
    }
    if (l.id === "regions-line") {
      l.paint["line-color"] = ["match", ["get", "level"], "township", "#4fc3f7", "village", "#81d4fa",
        "#2f6ea8"];
    }
    if (l.type === "symbol") {
      l.paint = { "text-color": "#d6e6ff", "text-halo-color": "#06142a", "text-halo-width": 1.5 };
      l.layout["text-size"] = 15;
    }
  }
  if (!style.sources.events || !events.length) return style;
  const layer = (id, sourceLayer, type, paint, layout) => ({ id, type, source: "events",
    "source-layer": sourceLayer, paint, ...(layout ? { layout } : {}) });
  style.layers.push(
    layer("ck-event-clusters", "event_clusters", "circle", { "circle-color": slaColour,
      "circle-opacity": 0.9, "circle-stroke-color": "#06142a", "circle-stroke-width": 2,
      "circle-radius": ["interpolate", ["linear"], ["get", "count"], 1, 11, 10, 16, 100, 24, 1000, 32] }),
    layer("ck-event-clusters-count", "event_clusters", "symbol", { "text-color": "#06142a" },
      { "text-field": ["to-string", ["get", "count"]], "text-size": 15, "text-allow-overlap": true }),
    layer("ck-events", "events", "circle", { "circle-color": slaColour,
      "circle-radius": ["match", ["get", "severity"], "urgent", 12, "major", 10, 8],
      "circle-stroke-color": "#06142a", "circle-stroke-width": 2 }),
  );
  return style;
}

async function buildMap() {
  const [style, region] = await Promise.all([
    api("/tiles/style.json"),
    ck.code ? api(`/api/v1/regions/${ck.code}`, { params: { simplify: 0.001 } }).catch(() => null) : null,
  ]);
  const bounds = region ? bboxOf(region.geometry) : undefined;
  const map = new maplibregl.Map({
    container: "ck-map", style: darkStyle(style), interactive: false,
    attributionControl: { compact: true }, bounds, fitBoundsOptions: { padding: 30 },
  });
  ck.map = map;
  await new Promise((resolve) => map.on("load", resolve));
  map.addSource("live", { type: "geojson", data: EMPTY });
  // Workers under the events: a ring round a spot, events drawn on top of it.
  map.addLayer({ id: "ck-live", type: "circle", source: "live", filter: ["get", "online"], paint: {
    "circle-radius": 9, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": "#69f0ae",
    "circle-stroke-width": 3 } }, map.getLayer("ck-event-clusters") ? "ck-event-clusters" : undefined);
}

/** Re-read the events tiles (answered 304 where nothing changed): new events, SLA colours. */
function refreshEventTiles() {
  if (ck.map?.getSource("events") && typeof ck.map.refreshTiles === "function") {
    ck.map.refreshTiles("events");
  }
}

const fig = (label, value, { note = "", bad = false } = {}) => `<div class="ck-figure">
  <span class="label">${esc(label)}</span><b class="${bad ? "bad" : ""}">${esc(value)}</b>
  ${note ? `<small>${esc(note)}</small>` : ""}</div>`;

async function refreshFigures() {
  const period = { date_from: shanghaiDay(-364), date_to: shanghaiDay(), region_code: ck.code };
  const stats = can("statistics.read");
  const [d, today, types, trend] = await Promise.all([
    leaderData(ck.code, ck.me, { items: false }),
    can("event.read") ? api("/api/v1/events", { params: { since: `${shanghaiDay()}T00:00:00+08:00`,
      limit: 1 } }).catch(() => null) : null,
    stats ? api("/api/v1/statistics/distribution", { params: { subject: "event", by: "category",
      ...period } }).catch(() => null) : null,
    stats ? api("/api/v1/statistics/trend", { params: { subject: "event", unit: "month", ...period } })
      .catch(() => null) : null,
  ]);
  if (d.info) $("ck-title").textContent = `${d.info.name} · 基层治理驾驶舱`;
  const rows = d.trend?.rows || [];
  const reported = rows.reduce((s, r) => s + r.n, 0);
  const closed = rows.reduce((s, r) => s + (r.closed || 0), 0);
  const openTotal = (d.open || []).reduce((s, p) => s + (p?.total || 0), 0);
  const overdue = d.overdue?.total ?? 0;
  const grids = (d.grids || []).reduce((s, g) => s + (g?.total || 0), 0);
  const p = d.patrol;
  $("ck-figures").innerHTML = [
    fig("实有人口", fmtNum(d.info?.counts?.persons)),
    fig("网格", fmtNum(grids)),
    fig("网格员在线", p ? `${p.online}/${p.workers}` : "—", { note: p ? fmtPct(p.online_rate) : "" }),
    fig("今日上报", fmtNum(today?.total)),
    fig("在办事件", fmtNum(openTotal)),
    fig("超时在办", fmtNum(overdue), { bad: overdue > 0 }),
    fig("近一年办结率", fmtPct(reported ? closed / reported : null)),
    fig("近7天巡查", p ? fmtKm(p.mileage_m) : "—", { note: p ? `${p.sessions} 次` : "" }),
  ].join("");
  const big = { dark: true, big: true };
  draw($("ck-sources"), pieOption((d.sources || []).map((s, i) => ({
    name: SOURCE_NAMES[Object.keys(SOURCE_NAMES)[i]], value: s?.total || 0 })), big), big);
  if (types) {
    draw($("ck-types"), pieOption(types.rows.slice(0, 8).map((r) => ({ name: r.label, value: r.n })),
      big), big);
  }
  if (trend) draw($("ck-trend"), trendOption(trend.rows, { big: true, unit: "month" }), big);
  if (d.ranking) draw($("ck-ranking"), rankingOption(d.ranking.rows, { big: true }), big);
  refreshEventTiles();
  ck.refreshedAt = new Date();
  $("ck-status").textContent = `数据更新于 ${fmtTime(ck.refreshedAt.toISOString(), { date: false,
    seconds: true })}`;
}

async function refreshEvents() {
  if (!can("event.read")) return;
  const page = await api("/api/v1/events", { params: { limit: 12 } }).catch(() => null);
  if (!page) return;
  const first = ck.seen.size === 0;
  // What the list shows changed (a new event, a state or colour): the map follows.
  const signature = page.items.map((e) => `${e.id}:${e.state}:${slaOf(e)}`).join(",");
  if (!first && signature !== ck.signature) refreshEventTiles();
  ck.signature = signature;
  $("ck-events").innerHTML = page.items.map((e) => {
    const sla = slaOf(e);
    const fresh = !first && !ck.seen.has(e.id);
    return `<li class="${fresh ? "fresh" : ""}" data-id="${esc(e.id)}">
      <span class="bar" style="background:${SLA[sla]}"></span>
      <span class="title">${esc(e.title)}</span>
      <span class="state">${esc(STATE_NAMES[e.state] || e.state)}${sla !== "none"
        ? ` · ${esc(SLA_NAMES[sla])}` : ""}</span>
      <span class="meta">${esc(fmtTime(e.reported_at))} · ${esc(SOURCE_NAMES[e.source] || e.source)}
        · ${esc(e.code)}</span></li>`;
  }).join("") || "<li>暂无事件</li>";
  for (const e of page.items) ck.seen.add(e.id);
}

async function refreshLive() {
  if (!can("patrol.playback") || !ck.map) return;
  const live = await api("/api/v1/patrols/live").catch(() => null);
  if (live) ck.map.getSource("live")?.setData(live);
}

boot().catch((e) => console.warn("cockpit failed to start", e));
