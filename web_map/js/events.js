// Events in the commander map: my queues with counts, filters, the list, events on the map
// coloured by SLA, and what keeps them current without a reload. The events tile layer draws
// every open event (clusters when zoomed out); the list's own events are circled on top. The
// message stream (messages.js) tells of new events, dispatches, reminders …: the list, counts
// and tiles follow each message, and a slow tick catches what nobody is told of (a handler's
// result, SLA colours turning). While the stream is down a poll looks for new events itself.
import { api } from "./api.js";
import { openEvent, refreshOpenEvent } from "./event_detail.js";
import {
  QUEUE_NAMES, SEVERITY_NAMES, SLA_COLOURS, SLA_NAMES, STATE_NAMES, TODO_QUEUES, FINAL_STATES, inkOn, slaOf,
} from "./labels.js";
import { notice } from "./messages.js";
import { state } from "./state.js";
import { $, esc, fmtDuration, fmtTime } from "./util.js";

const POLL_MS = 10_000; // the stream is down: look for new events
const FRESH_MS = 60_000; // streams up: SLA colours turn as deadlines pass (no action tells)
const SETTLE_MS = 300; // messages come in bursts (one per unit of a dispatch): refresh once
const MAP_LIMIT = 100; // the newest events of the list on the map; the list pages through them
const PAGE = 50;
const SOURCE = "event-list";
const TILES = "events"; // the events tile layer's source, when the server has one

const ev = {
  queue: null, counts: null, items: [], total: 0, shown: PAGE, lastId: null, timer: null,
  loaded: false, live: null, tiled: false, settle: null, touched: new Set(),
};
state.events = ev;

const slaColour = ["match", ["get", "sla"], "red", SLA_COLOURS.red, "amber", SLA_COLOURS.amber,
  "green", SLA_COLOURS.green, SLA_COLOURS.none];

export function init(map, { addLayerGroup }) {
  ev.tiled = Boolean(map.getSource(TILES));
  map.addSource(SOURCE, { type: "geojson", data: { type: "FeatureCollection", features: [] },
    promoteId: "id" });
  map.addSource("event-selected", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  // By zoom (top level, as MapLibre wants it) and severity; ``more`` pixels for a ring.
  const radius = (more = 0) => ["interpolate", ["linear"], ["zoom"], 10, 4 + more, 15,
    ["match", ["get", "severity"], "urgent", 10 + more, "major", 8 + more, 7 + more]];
  // With tiles the list's events are rings round the tiles' dots; without, the list draws dots.
  const paint = ev.tiled
    ? { "circle-radius": radius(5), "circle-color": "rgba(0,0,0,0)",
      "circle-stroke-color": slaColour, "circle-stroke-width": 3 }
    : { "circle-radius": radius(), "circle-color": slaColour, "circle-stroke-color": "#ffffff",
      "circle-stroke-width": 1.5 };
  if (ev.tiled && map.getLayer("events-point")) {
    // The tiles' events the size of the list's, clear of key places (which share the colours).
    map.setPaintProperty("events-point", "circle-radius", radius());
    map.setPaintProperty("events-point", "circle-stroke-width", 2);
  }
  // Finished events are history: drawn smaller, on their own layer, hidden until asked for.
  map.addLayer({ id: "events-closed", type: "circle", source: SOURCE, filter: ["get", "final"],
    paint: { "circle-radius": 4, "circle-color": SLA_COLOURS.none, "circle-opacity": 0.7,
      "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } });
  map.addLayer({ id: "events-circle", type: "circle", source: SOURCE,
    filter: ["!", ["get", "final"]], paint });
  map.addLayer({ id: "event-selected", type: "circle", source: "event-selected", paint: {
    "circle-radius": 15, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": "#00b0ff",
    "circle-stroke-width": 4 } });
  addLayerGroup(ev.tiled
    ? { key: "event-list", title: "当前列表的事件 (圈出)", layers: ["events-circle"], visible: true,
      legend: [[SLA_COLOURS.none, "当前列表中的事件", "ring"], ["#00b0ff", "正在查看的事件", "ring"]] }
    : { key: "event-list", title: "在办事件 (按时限着色)", layers: ["events-circle"], visible: true,
      legend: [[SLA_COLOURS.red, "事件·超时", "dot"], [SLA_COLOURS.amber, "事件·预警", "dot"],
        [SLA_COLOURS.green, "事件·正常", "dot"], [SLA_COLOURS.none, "事件·无时限", "dot"]] });
  addLayerGroup({ key: "events-closed", title: "已办结事件 (列表中)", layers: ["events-closed"],
    visible: false, legend: [[SLA_COLOURS.none, "已办结事件", "dot"]] });
  const points = ["events-circle", "events-closed", "events-point"];
  state.clickTargets.unshift(
    { layers: points, handle: (f) => openEvent(Number(f.properties.id ?? f.id)) },
    { layers: ["event-clusters"], handle: (f) => map.easeTo({ center: f.geometry.coordinates,
      zoom: Math.max(map.getZoom() + 2, 14) }) },
  );
  for (const id of [...points, "event-clusters"]) {
    map.on("mouseenter", id, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", id, () => { map.getCanvas().style.cursor = ""; });
  }
  document.addEventListener("gridgov:open-event", (e) => openEvent(Number(e.detail)));
  document.addEventListener("gridgov:event-changed", () => refresh().then(refreshTiles));
  document.addEventListener("gridgov:message", (e) => {
    if (e.detail.event_id) changed(e.detail.event_id);
  });
  document.addEventListener("gridgov:stream", (e) => follow(e.detail.live));
  watchChanges();
  setupFilters();
  refresh().then(() => follow(Boolean(state.messages?.live)));
}

/** A message told of an event: refresh once the burst settles, and the open event if it is. */
function changed(eventId) {
  ev.touched.add(eventId);
  clearTimeout(ev.settle);
  ev.settle = setTimeout(async () => {
    const touched = ev.touched;
    ev.touched = new Set();
    await refresh();
    refreshTiles();
    if (touched.has(state.eventDetail?.current?.id)) refreshOpenEvent();
  }, SETTLE_MS);
}

/** Follow every action on the jurisdiction's events as it commits (results, closures …). */
function watchChanges() {
  if (!window.EventSource) return; // the periodic freshen still keeps counts current
  const es = new EventSource("/api/v1/events/stream");
  es.addEventListener("change", async (m) => {
    const { id, action } = JSON.parse(m.data);
    if (!id) return;
    if (action === "report" && !state.messages?.live && id > (ev.lastId ?? 0)) {
      // No message stream to announce it: say it here, once (the poll will not repeat it).
      ev.lastId = id;
      const e = await api(`/api/v1/events/${id}`).catch(() => null);
      if (e) notice(`新事件 ${e.code}：${e.title}`, { eventId: id, kind: "new" });
    }
    changed(id);
  });
  es.addEventListener("resync", () => refresh().then(refreshTiles));
}

/** Re-read the events tiles in view (answered 304 where nothing changed). */
function refreshTiles() {
  if (ev.tiled && typeof state.map.refreshTiles === "function") state.map.refreshTiles(TILES);
}

/** Keep current by the stream (``live``) or, while it is down, by polling. */
function follow(live) {
  if (ev.live === live) return;
  ev.live = live;
  clearInterval(ev.timer);
  ev.timer = setInterval(live ? freshen : poll, live ? FRESH_MS : POLL_MS);
}

export function show() {
  if (!ev.loaded) refresh();
}

function setupFilters() {
  for (const [code, name] of Object.entries(STATE_NAMES)) {
    $("f-state").insertAdjacentHTML("beforeend", `<option value="${code}">${esc(name)}</option>`);
  }
  api("/api/v1/event-types").then((types) => {
    for (const t of types.filter((x) => x.depth <= 2)) {
      $("f-type").insertAdjacentHTML("beforeend",
        `<option value="${esc(t.code)}">${t.depth > 1 ? "　" : ""}${esc(t.name)}</option>`);
    }
  }).catch(() => null);
  for (const id of ["f-type", "f-state", "f-sla"]) $(id).addEventListener("change", () => refresh());
  let timer = null;
  $("f-q").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => refresh(), 300);
  });
  $("events-refresh").addEventListener("click", () => refresh());
  $("events-more-btn").addEventListener("click", () => {
    ev.shown += PAGE;
    renderList();
  });
}

function filters() {
  return { queue: ev.queue, type_code: $("f-type").value, state: $("f-state").value,
    sla: $("f-sla").value, q: $("f-q").value.trim() };
}

/** Reload counts, the filtered list and the map's events. */
export async function refresh() {
  try {
    const [counts, page] = await Promise.all([
      api("/api/v1/events/queues"),
      api("/api/v1/events", { params: { ...filters(), limit: MAP_LIMIT } }),
    ]);
    ev.counts = counts;
    ev.items = page.items;
    ev.total = page.total;
    ev.loaded = true;
    if (!Object.values(filters()).some(Boolean)) {
      // The unfiltered list holds the newest events: what is newer is news (see poll()).
      ev.lastId = Math.max(ev.lastId ?? 0, ...page.items.map((i) => i.id));
    }
    renderQueues();
    renderList();
    renderMap();
    document.dispatchEvent(new CustomEvent("gridgov:events", { detail: ev }));
  } catch (e) {
    $("events-total").textContent = e.status === 404 ? "事件接口未启用" : `加载失败：${e.message}`;
  }
}

function renderQueues() {
  const box = $("queues");
  const entries = [[null, "全部", null], ...Object.entries(QUEUE_NAMES).map(([q, name]) =>
    [q, name, ev.counts[q] ?? 0])];
  box.innerHTML = entries.map(([q, name, n]) => `<button type="button" class="queue"
    data-q="${q ?? ""}" aria-pressed="${q === ev.queue}">${esc(name)}${n == null ? ""
    : ` <b>${n}</b>`}</button>`).join("");
  box.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => {
    ev.queue = b.dataset.q || null;
    ev.shown = PAGE;
    refresh();
  }));
  const todo = TODO_QUEUES.reduce((s, q) => s + (ev.counts[q] || 0), 0);
  const badge = $("events-badge");
  badge.hidden = !todo;
  badge.textContent = String(todo);
}

/** Open one queue in the events tab (from the work view's dashboard). */
export function setQueue(queue) {
  ev.queue = queue;
  ev.shown = PAGE;
  refresh();
}

export function remaining(item) {
  if (!item.deadline_at || slaOf(item) === "none") return "";
  const s = (new Date(item.deadline_at) - Date.now()) / 1000;
  return s >= 0 ? `剩余${fmtDuration(s)}` : `超时${fmtDuration(-s)}`;
}

export function eventItemHtml(item) {
  const sla = slaOf(item);
  return `<li><button type="button" class="event-item" data-id="${esc(item.id)}"
      style="border-left-color:${SLA_COLOURS[sla]}">
    <span class="ev-top"><span class="ev-code">${esc(item.code)}</span>
      <span class="tag" style="background:${SLA_COLOURS[sla]};color:${inkOn(SLA_COLOURS[sla])}">${esc(STATE_NAMES[item.state]
        || item.state)}</span></span>
    <span class="ev-title">${esc(item.title)}</span>
    <span class="ev-meta">${esc(item.type_name)} · ${esc(SEVERITY_NAMES[item.severity]
      || item.severity)} · ${esc(fmtTime(item.reported_at))}
      ${sla !== "none" ? ` · <span class="sla-${sla}">${esc(SLA_NAMES[sla])} ${esc(remaining(item))}</span>`
        : ""}</span>
  </button></li>`;
}

export function bindEventItems(list) {
  list.querySelectorAll("button[data-id]").forEach((b) => b.addEventListener("click", () =>
    openEvent(Number(b.dataset.id))));
}

function renderList() {
  const list = $("event-list");
  const shown = ev.items.slice(0, ev.shown);
  $("events-total").textContent = `共 ${ev.total} 件${ev.total > ev.items.length
    ? `，显示最近 ${ev.items.length} 件` : ""}`;
  list.innerHTML = shown.map(eventItemHtml).join("") || "<li class=\"muted\">没有符合条件的事件</li>";
  bindEventItems(list);
  $("events-more").hidden = ev.items.length <= ev.shown;
}

function renderMap() {
  const features = ev.items.filter((i) => i.lon != null).map((i) => ({
    type: "Feature", geometry: { type: "Point", coordinates: [i.lon, i.lat] },
    properties: { id: i.id, code: i.code, state: i.state, sla: slaOf(i), severity: i.severity,
      type_code: i.type_code, final: FINAL_STATES.has(i.state) },
  }));
  state.map.getSource(SOURCE)?.setData({ type: "FeatureCollection", features });
}

// --- keeping current -------------------------------------------------------------------------

/** Stream up: counts changed by what no message tells (results, closures), and SLA colours. */
async function freshen() {
  if (document.hidden) return;
  const counts = await api("/api/v1/events/queues").catch(() => null);
  if (counts && JSON.stringify(counts) !== JSON.stringify(ev.counts)) await refresh();
  refreshTiles();
  refreshOpenEvent();
}

/** Stream down: new events and grown queues become notices, as the stream would have told. */
async function poll() {
  if (document.hidden) return;
  let latest;
  let counts;
  try {
    [latest, counts] = await Promise.all([
      api("/api/v1/events", { params: { limit: 20 } }), api("/api/v1/events/queues")]);
  } catch (e) {
    return; // the server may be restarting; the next tick tries again
  }
  const maxId = Math.max(0, ...latest.items.map((i) => i.id));
  if (ev.lastId !== null) {
    for (const item of latest.items.filter((i) => i.id > ev.lastId).reverse()) {
      notice(`新事件 ${item.code}：${item.title}`, { eventId: item.id, kind: "new" });
    }
  }
  const before = ev.counts;
  let moved = ev.lastId !== null && maxId > ev.lastId;
  if (before) {
    for (const q of TODO_QUEUES) {
      const grown = (counts[q] || 0) - (before[q] || 0);
      if (grown > 0) notice(`${QUEUE_NAMES[q]}新增 ${grown} 件`, { kind: "queue" });
      if (grown !== 0) moved = true;
    }
  }
  ev.lastId = Math.max(ev.lastId ?? 0, maxId);
  if (moved) {
    await refresh();
    refreshTiles();
  } else {
    ev.counts = counts;
    renderQueues();
  }
  refreshOpenEvent();
}
