// Patrols: live worker positions (pushed over SSE, polled while the stream is down), patrol
// records of a day, track playback (slider, play/pause, speed, metrics) and the day's
// coverage heat.
import { api } from "./api.js";
import { dayChanged } from "./layers.js";
import { state } from "./state.js";
import { $, bboxOf, esc, fmtDuration, fmtKm, fmtPct, fmtTime, shanghaiDay } from "./util.js";

const LIVE_MS = 15_000;
const EMPTY = { type: "FeatureCollection", features: [] };
const MODES = { walk: "步行", bicycle: "自行车/电动车" };

const pb = {
  feature: null, times: [], coords: [], t: 0, playing: false, last: null, session: null,
  liveTimer: null, live: null, liveSource: null, liveDraw: null, sessions: [], coverageFor: null,
};
state.playback = pb;

const can = (p) => (state.me.permissions || []).includes(p);

export function init(map, { addLayerGroup }) {
  for (const id of ["live", "track", "track-done", "track-head", "coverage"]) {
    map.addSource(id, { type: "geojson", data: EMPTY });
  }
  map.addLayer({ id: "coverage-heat", type: "heatmap", source: "coverage", layout: { visibility: "none" },
    paint: { "heatmap-radius": ["interpolate", ["linear"], ["zoom"], 12, 6, 17, 24],
      "heatmap-opacity": 0.7, "heatmap-intensity": 0.6 } });
  map.addLayer({ id: "track-line", type: "line", source: "track",
    paint: { "line-color": "#5c6bc0", "line-width": 3, "line-opacity": 0.45 } });
  map.addLayer({ id: "track-done-line", type: "line", source: "track-done",
    paint: { "line-color": "#1a237e", "line-width": 4 } });
  map.addLayer({ id: "track-head", type: "circle", source: "track-head",
    paint: { "circle-radius": 8, "circle-color": "#ff3d00", "circle-stroke-color": "#ffffff",
      "circle-stroke-width": 2 } });
  // Workers are rings (events are filled dots): green and solid online, grey and hollow offline.
  map.addLayer({ id: "live-workers", type: "circle", source: "live", paint: {
    "circle-radius": ["case", ["get", "online"], 8, 6],
    "circle-color": ["case", ["get", "online"], "#00c853", "#ffffff"],
    "circle-stroke-color": ["case", ["get", "online"], "#1b5e20", "#757575"],
    "circle-stroke-width": 3 } });
  addLayerGroup({ key: "live", title: "网格员实时位置", layers: ["live-workers"], visible: true,
    legend: [["#1b5e20", "网格员·在线", "ring"], ["#757575", "网格员·离线", "ring"]] });
  addLayerGroup({ key: "tracks", title: "轨迹回放", layers: ["track-line", "track-done-line", "track-head"],
    visible: true, legend: [["#5c6bc0", "回放轨迹·全程", "line"], ["#1a237e", "回放轨迹·已走过", "line"],
      ["#ff3d00", "回放位置", "dot"]] });
  pb.setCoverage = addLayerGroup({ key: "coverage", title: "巡查覆盖热力 (所选日期)",
    layers: ["coverage-heat"], visible: false, heat: true,
    legend: [["linear-gradient(90deg, royalblue, cyan, lime, yellow, red)",
      "巡查覆盖 少→多", "ramp"]],
    onToggle: (on) => { $("coverage-heat").checked = on; if (on) loadCoverage(); } });
  state.clickTargets.push({ layers: ["live-workers"], handle: (f) => showWorker(f.properties) });
  // A patrol track of the tile layer opens its playback (the feature id is the session id).
  state.clickTargets.push({ layers: ["patrol-tracks"], handle: (f) => {
    state.openTab?.("pane-patrols");
    openSession(Number(f.id));
  } });
  setupControls();
  if (can("patrol.playback")) {
    if (window.EventSource) openLiveStream();
    else startLivePolling();
  } else {
    $("live-summary").textContent = "无实时位置查看权限";
  }
}

export function show() {
  if (!pb.sessionsLoaded && can("patrol.read")) loadSessions();
}

function setupControls() {
  $("p-date").value = shanghaiDay();
  $("p-date").addEventListener("change", () => loadSessions());
  $("p-worker").addEventListener("change", () => loadSessions());
  $("pb-play").addEventListener("click", () => (pb.playing ? pause() : play()));
  $("pb-slider").addEventListener("input", (e) => {
    if (!pb.times.length) return;
    const [t0, t1] = [pb.times[0], pb.times[pb.times.length - 1]];
    seek(t0 + ((t1 - t0) * Number(e.target.value)) / 1000);
  });
  $("coverage-heat").addEventListener("change", (e) => pb.setCoverage(e.target.checked));
}

/** Live positions over SSE: a snapshot, then moves and offline changes as they happen. */
function openLiveStream() {
  const es = new EventSource("/api/v1/patrols/live/stream");
  pb.liveSource = es;
  es.addEventListener("snapshot", (e) => {
    stopLivePolling();
    pb.live = JSON.parse(e.data);
    renderLive();
  });
  const change = (e) => applyLive(JSON.parse(e.data));
  es.addEventListener("move", change);
  es.addEventListener("offline", change);
  es.addEventListener("error", () => {
    // A dropped stream is retried by the browser (and resent whole); meanwhile, and for good
    // when the server refuses it, poll as before.
    startLivePolling();
    if (es.readyState === EventSource.CLOSED) pb.liveSource = null;
  });
}

/** Put a worker's new position (or offline change) in place; older news is ignored. */
function applyLive(feature) {
  if (!pb.live) return;
  const features = pb.live.features;
  const at = features.findIndex((f) => f.id === feature.id);
  if (at >= 0) {
    const old = features[at];
    if (new Date(feature.properties.ts) < new Date(old.properties.ts)) return;
    for (const k of ["username", "display_name", "accuracy"]) {
      if (feature.properties[k] == null) feature.properties[k] = old.properties[k];
    }
    features[at] = feature;
  } else features.push(feature);
  pb.live.online = features.filter((f) => f.properties.online).length;
  pb.live.total = features.length;
  // Many moves can arrive together: draw once per frame.
  if (!pb.liveDraw) pb.liveDraw = requestAnimationFrame(() => { pb.liveDraw = null; renderLive(); });
}

function startLivePolling() {
  if (pb.liveTimer) return;
  refreshLive();
  pb.liveTimer = setInterval(refreshLive, LIVE_MS);
}

function stopLivePolling() {
  clearInterval(pb.liveTimer);
  pb.liveTimer = null;
}

async function refreshLive() {
  if (document.hidden) return;
  try {
    pb.live = await api("/api/v1/patrols/live");
  } catch (e) {
    $("live-summary").textContent = e.status === 404 ? "巡查接口未启用" : "实时位置加载失败";
    return;
  }
  renderLive();
}

function renderLive() {
  state.map.getSource("live")?.setData(pb.live);
  $("live-summary").textContent = `在线 ${pb.live.online} 人 / 共 ${pb.live.total} 人`;
  const workers = [...pb.live.features].sort((a, b) =>
    Number(b.properties.online) - Number(a.properties.online));
  $("live-list").innerHTML = workers.slice(0, 30).map((f) => `<li><button type="button"
    class="linkish" data-user="${esc(f.properties.user_id)}"><span class="dot" style="background:${
      f.properties.online ? "#00c853" : "#9e9e9e"}"></span>${esc(f.properties.display_name
      || f.properties.username)}</button> <small>${esc(fmtTime(f.properties.ts))}</small></li>`).join("");
  $("live-list").querySelectorAll("button[data-user]").forEach((b) => b.addEventListener("click", () => {
    const f = pb.live.features.find((x) => String(x.properties.user_id) === b.dataset.user);
    if (!f) return;
    state.map.easeTo({ center: f.geometry.coordinates, zoom: 16 });
    showWorker(f.properties);
  }));
  const select = $("p-worker");
  if (select.options.length <= 1) {
    for (const f of workers) {
      select.insertAdjacentHTML("beforeend", `<option value="${esc(f.properties.user_id)}">${esc(
        f.properties.display_name || f.properties.username)}</option>`);
    }
  }
}

function showWorker(p) {
  $("p-worker").value = String(p.user_id);
  state.openTab?.("pane-patrols");
  loadSessions();
}

async function loadSessions({ fallback = true } = {}) {
  pb.sessionsLoaded = true;
  const day = $("p-date").value;
  const params = { date_from: day, date_to: day, user_id: $("p-worker").value, limit: 100 };
  let res;
  try {
    res = await api("/api/v1/patrols/sessions", { params });
    if (!res.items.length && fallback && !$("p-worker").value) {
      // Nothing today yet: show the latest day that has records.
      const latest = await api("/api/v1/patrols/sessions", { params: { limit: 1 } });
      if (latest.items.length) {
        $("p-date").value = new Date(latest.items[0].started_at)
          .toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
        dayChanged();
        return loadSessions({ fallback: false });
      }
    }
  } catch (e) {
    $("session-list").innerHTML = `<li class="muted">${e.status === 404 ? "巡查接口未启用"
      : esc(e.message)}</li>`;
    return;
  }
  pb.sessions = res.items;
  $("session-list").innerHTML = res.items.map((s) => `<li><button type="button" class="session-item"
    data-id="${esc(s.id)}"><b>${esc(s.display_name || s.username)}</b>
    <span>${esc(fmtTime(s.started_at, { date: false }))}–${esc(fmtTime(s.ended_at, { date: false }))}
    · ${esc(fmtKm(s.mileage_m))} · 覆盖 ${esc(fmtPct(s.coverage_share, 0))}</span></button></li>`).join("")
    || "<li class=\"muted\">当日没有巡查记录</li>";
  $("session-list").querySelectorAll("button[data-id]").forEach((b) =>
    b.addEventListener("click", () => openSession(Number(b.dataset.id))));
  if ($("coverage-heat").checked) loadCoverage();
}

export async function openSession(id) {
  pause();
  const [feature, info] = await Promise.all([
    api(`/api/v1/patrols/sessions/${id}/playback`),
    api(`/api/v1/patrols/sessions/${id}`),
  ]);
  pb.feature = feature;
  pb.session = info;
  pb.times = feature.properties.times;
  pb.coords = feature.geometry.coordinates;
  state.map.getSource("track").setData(feature);
  $("panel").hidden = true; // the track needs the room
  state.map.fitBounds(bboxOf(feature.geometry), { padding: 60, maxZoom: 17 });
  $("playback").hidden = false;
  $("playback-title").textContent = `轨迹回放 · ${info.display_name || info.username}`;
  renderMetrics(info, feature.properties);
  seek(pb.times[0]);
  document.querySelectorAll(".session-item").forEach((b) =>
    b.setAttribute("aria-current", b.dataset.id === String(id) ? "true" : "false"));
}

function renderMetrics(s, props) {
  const rows = [
    ["巡查人", s.display_name || s.username], ["网格", s.grid_code],
    ["开始", fmtTime(s.started_at)], ["结束", fmtTime(s.ended_at)],
    ["时长", fmtDuration(s.duration_s)], ["里程", fmtKm(s.mileage_m)],
    ["方式", MODES[s.mode] || s.mode],
    ["网格内时长占比", fmtPct(s.in_grid_time_share)], ["网格内里程占比", fmtPct(s.in_grid_length_share)],
    ["网格覆盖率", fmtPct(s.coverage_share)], ["走过单元", s.cells_visited],
    ["轨迹点 (有效/原始)", `${s.points_kept} / ${s.points_raw}`],
    ["中断", `${(s.gaps || []).length} 次`], ["走访", `${(s.visits || []).length} 处`],
    ["回放顶点", props.vertices],
  ];
  $("pb-metrics").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v ?? "—")}</dd>`).join("");
}

/** Show the track as it stood at time ``t`` (epoch ms). */
function seek(t) {
  const times = pb.times;
  if (!times.length) return;
  pb.t = Math.min(Math.max(t, times[0]), times[times.length - 1]);
  let i = 0;
  let lo = 0;
  let hi = times.length - 1;
  while (lo <= hi) { // the last vertex at or before t
    const mid = (lo + hi) >> 1;
    if (times[mid] <= pb.t) { i = mid; lo = mid + 1; } else hi = mid - 1;
  }
  const a = pb.coords[i];
  const b = pb.coords[Math.min(i + 1, pb.coords.length - 1)];
  const span = times[Math.min(i + 1, times.length - 1)] - times[i];
  const f = span > 0 ? (pb.t - times[i]) / span : 0;
  const head = [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f];
  const done = [...pb.coords.slice(0, i + 1), head];
  pb.head = head;
  state.map.getSource("track-done").setData({ type: "Feature", properties: {},
    geometry: { type: "LineString", coordinates: done.length > 1 ? done : [head, head] } });
  state.map.getSource("track-head").setData({ type: "Feature", properties: { t: pb.t },
    geometry: { type: "Point", coordinates: head } });
  const t0 = times[0];
  const t1 = times[times.length - 1];
  $("pb-slider").value = String(Math.round(((pb.t - t0) / Math.max(1, t1 - t0)) * 1000));
  $("pb-clock").textContent = fmtTime(new Date(pb.t).toISOString(), { date: false, seconds: true });
}

function play() {
  if (!pb.times.length) return;
  if (pb.t >= pb.times[pb.times.length - 1]) seek(pb.times[0]);
  pb.playing = true;
  pb.last = performance.now();
  $("pb-play").textContent = "暂停";
  const step = (now) => {
    if (!pb.playing) return;
    const speed = Number($("pb-speed").value);
    seek(pb.t + (now - pb.last) * speed);
    pb.last = now;
    if (pb.t >= pb.times[pb.times.length - 1]) return pause();
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

function pause() {
  pb.playing = false;
  $("pb-play").textContent = "播放";
}

/** Points every ~10 m along a line, so the heat follows the path, not its vertices. */
function densify(coords, step = 0.0001) {
  const out = [];
  for (let i = 1; i < coords.length; i += 1) {
    const [a, b] = [coords[i - 1], coords[i]];
    const n = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / step));
    for (let k = 0; k < n; k += 1) out.push([a[0] + ((b[0] - a[0]) * k) / n, a[1] + ((b[1] - a[1]) * k) / n]);
  }
  if (coords.length) out.push(coords[coords.length - 1]);
  return out;
}

/** The day's coverage heat: the vertices of every record of the chosen day (simplified). */
async function loadCoverage() {
  const key = `${$("p-date").value}|${$("p-worker").value}`;
  if (pb.coverageFor === key) return;
  if (!pb.sessionsLoaded) await loadSessions();
  pb.coverageFor = key;
  const sessions = pb.sessions.slice(0, 40);
  const tracks = await Promise.all(sessions.map((s) =>
    api(`/api/v1/patrols/sessions/${s.id}/playback`, { params: { resolution: 2 } }).catch(() => null)));
  const features = [];
  for (const t of tracks.filter(Boolean)) {
    for (const c of densify(t.geometry.coordinates)) {
      features.push({ type: "Feature", properties: {}, geometry: { type: "Point", coordinates: c } });
    }
  }
  state.map.getSource("coverage").setData({ type: "FeatureCollection", features });
  pb.coveragePoints = features.length;
  $("coverage-note").textContent = `${sessions.length} 条巡查记录，${features.length} 个轨迹点`;
}
