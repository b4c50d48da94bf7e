// Events in the commander map: my queues with counts, filters, the list, events on the map
// coloured by SLA, and polling so that new events and notifications arrive without a reload.
import { api } from "./api.js";
import { openEvent, refreshOpenEvent } from "./event_detail.js";
import { addLegend } from "./layers.js";
import {
  QUEUE_NAMES, SEVERITY_NAMES, SLA_COLOURS, SLA_NAMES, STATE_NAMES, TODO_QUEUES, FINAL_STATES, inkOn, slaOf,
} from "./labels.js";
import { notify, setupBell } from "./notify.js";
import { state } from "./state.js";
import { $, esc, fmtDuration, fmtTime } from "./util.js";

const POLL_MS = 10_000;
const MAP_LIMIT = 100; // the newest events of the list on the map; the list pages through them
const PAGE = 50;
const SOURCE = "event-list";

const ev = {
  queue: null, counts: null, items: [], total: 0, shown: PAGE, lastId: null, timer: null,
  loaded: false,
};
state.events = ev;

export function init(map, { addLayerGroup }) {
  // "events" may be a tile layer's source (when the events tile layer is registered): ours is
  // the list's GeoJSON, clickable and highlighted; the tiles then draw the rest.
  const tiled = Boolean(state.style.sources.events);
  map.addSource(SOURCE, { type: "geojson", data: { type: "FeatureCollection", features: [] },
    promoteId: "id" });
  const paint = {
    "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 4, 15,
      ["match", ["get", "severity"], "urgent", 10, "major", 8, 7]],
    "circle-color": ["match", ["get", "sla"], "red", SLA_COLOURS.red, "amber", SLA_COLOURS.amber,
      "green", SLA_COLOURS.green, SLA_COLOURS.none],
    "circle-stroke-color": ["case", ["boolean", ["feature-state", "selected"], false], "#00b0ff",
      "#ffffff"],
    "circle-stroke-width": ["case", ["boolean", ["feature-state", "selected"], false], 4, 1.5],
  };
  // Finished events are history: drawn smaller, on their own layer, hidden until asked for.
  map.addLayer({ id: "events-closed", type: "circle", source: SOURCE, filter: ["get", "final"],
    paint: { ...paint, "circle-radius": 4, "circle-opacity": 0.7 } });
  map.addLayer({ id: "events-circle", type: "circle", source: SOURCE,
    filter: ["!", ["get", "final"]], paint });
  addLayerGroup({ key: "event-list", title: tiled ? "列表中的事件" : "在办事件 (按时限着色)",
    layers: ["events-circle"], visible: true });
  addLayerGroup({ key: "events-closed", title: "已办结事件", layers: ["events-closed"], visible: false });
  addLegend([[SLA_COLOURS.red, "事件·超时", "dot"], [SLA_COLOURS.amber, "事件·预警", "dot"],
    [SLA_COLOURS.green, "事件·正常", "dot"], [SLA_COLOURS.none, "事件·无时限/已办结", "dot"]]);
  state.clickTargets.unshift({ layers: ["events-circle", "events-closed"],
    handle: (f) => openEvent(Number(f.properties.id)) });
  map.on("mouseenter", "events-circle", () => { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", "events-circle", () => { map.getCanvas().style.cursor = ""; });
  document.addEventListener("gridgov:open-event", (e) => openEvent(Number(e.detail)));
  document.addEventListener("gridgov:event-changed", () => refresh());
  setupBell();
  setupFilters();
  refresh().then(startPolling);
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
    if (ev.lastId === null && !Object.values(filters()).some(Boolean)) {
      // The unfiltered list is newest first: what is newer than this arrives by polling.
      ev.lastId = Math.max(0, ...page.items.map((i) => i.id));
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

// --- polling: new events and queue changes become notifications ------------------------------

function startPolling() {
  clearInterval(ev.timer);
  ev.timer = setInterval(poll, POLL_MS);
  if (ev.lastId === null) poll();
}

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
      notify(`新事件 ${item.code}：${item.title}`, { eventId: item.id, kind: "new" });
    }
  }
  const before = ev.counts;
  let changed = ev.lastId !== null && maxId > ev.lastId;
  if (before) {
    for (const q of TODO_QUEUES) {
      const grown = (counts[q] || 0) - (before[q] || 0);
      if (grown > 0) notify(`${QUEUE_NAMES[q]}新增 ${grown} 件`, { kind: "queue" });
      if (grown !== 0) changed = true;
    }
  }
  ev.lastId = Math.max(ev.lastId ?? 0, maxId);
  if (changed) await refresh();
  else {
    ev.counts = counts;
    renderQueues();
  }
  refreshOpenEvent();
}
