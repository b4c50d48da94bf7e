// Statistics (研判分析) in the map's dock: trend, type mix and peer ranking charts, a choropleth
// of the child regions coloured by a rate (feature state on the region tiles), and the events
// heat on H3 cells (Gi* hot spots from the statistics API).
import { api } from "./api.js";
import {
  RAMP, breaks, classOf, draw, pieOption, rankingOption, trendOption,
} from "./charts.js";
import { LEVEL_NAMES } from "./labels.js";
import { state } from "./state.js";
import { $, esc, fmtNum, fmtPct, shanghaiDay } from "./util.js";

const EMPTY = { type: "FeatureCollection", features: [] };
const MEASURES = {
  // The API leaves the rate empty for a region without events: that is a rate of 0.
  events_per_1000: { name: "每千人事件数", value: (r) => r.events_per_1000
    ?? (r.events === 0 && r.person ? 0 : null), fmt: (v) => v?.toFixed(2) },
  events: { name: "事件数", value: (r) => r.events, fmt: fmtNum },
  closure: { name: "办结率", value: (r) => (r.events ? r.events_closed / r.events : null), fmt: fmtPct },
  persons_per_km2: { name: "人口密度", value: (r) => r.persons_per_km2, fmt: (v) => fmtNum(Math.round(v)) },
};

const st = { region: null, rows: [], level: null, visible: false, heatFor: null };
state.stats = st;

const can = (p) => (state.me.permissions || []).includes(p);

export function period(days = Number($("s-period")?.value || 365)) {
  return { date_from: shanghaiDay(-(days - 1)), date_to: shanghaiDay() };
}

/** The region the statistics are about: the selected one if it has children, else the scope. */
function statsRegion() {
  const sel = state.selectedInfo;
  if (sel && sel.level !== "grid" && sel.level !== "micro_grid") return sel.code;
  if (sel?.chain?.length > 1) return sel.chain[sel.chain.length - 2].code;
  return null;
}

export function init(map, { addLayerGroup }) {
  map.addSource("hot", { type: "geojson", data: EMPTY });
  if (map.getSource("regions")) {
    map.addLayer({ id: "choropleth-fill", type: "fill", source: "regions", "source-layer": "regions",
      layout: { visibility: "none" }, filter: ["==", ["get", "level"], "village"], paint: {
        "fill-color": ["match", ["coalesce", ["feature-state", "cls"], -1],
          0, RAMP[0], 1, RAMP[1], 2, RAMP[2], 3, RAMP[3], 4, RAMP[4], "rgba(0,0,0,0)"],
        "fill-opacity": 0.75 } }, "regions-line");
  }
  // Cells coloured by their share of the busiest cell (``norm``), hot/cold spots outlined.
  map.addLayer({ id: "events-hot", type: "fill", source: "hot", layout: { visibility: "none" }, paint: {
    "fill-color": ["interpolate", ["linear"], ["get", "norm"], 0, "rgba(253,208,162,0.25)",
      0.01, "#fdd0a2", 0.4, "#fd8d3c", 0.7, "#d94801", 1, "#7f2704"],
    "fill-opacity": 0.7, "fill-outline-color": ["match", ["get", "spot"], "hot", "#b71c1c",
      "cold", "#0d47a1", "rgba(0,0,0,0.1)"] } }, map.getLayer("regions-line") ? "regions-line" : undefined);
  if (!can("statistics.read")) {
    $("stats-note").textContent = "无研判分析查看权限";
    return;
  }
  st.setHeat = addLayerGroup({ key: "events-hot", title: "事件热点 (H3，统计区间)", layers: ["events-hot"],
    visible: false, heat: true, onToggle: (on) => on && loadHeat(),
    legend: [[`linear-gradient(90deg, ${["#fdd0a2", "#fd8d3c", "#d94801", "#7f2704"].join(", ")})`,
      "事件热点 少→多 (红框热点，蓝框冷点)", "ramp"]] });
  st.setChoropleth = addLayerGroup({ key: "choropleth", title: "分区专题图", layers: ["choropleth-fill"],
    visible: false, legend: [[`linear-gradient(90deg, ${RAMP.join(", ")})`, "分区专题图 低→高", "ramp"]],
    onToggle: (on) => {
      $("s-choropleth").checked = on;
      if (on) loadTable().then(paintChoropleth);
    } });
  $("s-period").addEventListener("change", () => { st.heatFor = null; refresh(); });
  $("s-measure").addEventListener("change", () => { renderTable(); paintChoropleth(); });
  $("s-choropleth").addEventListener("change", (e) => st.setChoropleth(e.target.checked));
  document.addEventListener("gridgov:region", (e) => {
    state.selectedInfo = e.detail;
    if (st.visible) refresh();
  });
}

export function show() {
  st.visible = true;
  refresh();
}

async function refresh() {
  if (!can("statistics.read")) return;
  const region = statsRegion();
  const days = Number($("s-period").value);
  const unit = days > 90 ? "month" : days > 30 ? "week" : "day";
  const p = { ...period(days), region_code: region };
  try {
    const [trend, types, ranking] = await Promise.all([
      api("/api/v1/statistics/trend", { params: { subject: "event", unit, ...p } }),
      api("/api/v1/statistics/distribution", { params: { subject: "event", by: "category", ...p } }),
      api("/api/v1/statistics/ranking", { params: { subject: "event", ...p } }),
    ]);
    st.region = trend.region;
    $("stats-note").textContent = `${trend.region.name} · ${p.date_from} 至 ${p.date_to}`;
    await Promise.all([
      draw($("chart-trend"), trendOption(trend.rows, { unit })),
      draw($("chart-types"), pieOption(types.rows.slice(0, 10).map((r) => ({ name: r.label,
        value: r.n })), { name: "事件类型" })),
      draw($("chart-ranking"), rankingOption(ranking.rows)),
    ]);
  } catch (e) {
    $("stats-note").textContent = e.status === 404 ? "统计接口未启用：图表待统计服务上线后显示"
      : `统计加载失败：${e.message}`;
    return;
  }
  await loadTable();
  paintChoropleth();
  if (st.heatFor !== null) loadHeat();
}

async function loadTable() {
  const region = statsRegion();
  const key = `${region}|${$("s-period").value}`;
  if (st.tableFor === key) return;
  const res = await api("/api/v1/statistics/regions", { params: { ...period(), region_code: region } });
  st.tableFor = key;
  st.rows = res.rows;
  st.level = res.rows[0]?.level || null;
  renderTable();
}

function renderTable() {
  const m = MEASURES[$("s-measure").value];
  const rows = [...st.rows].sort((a, b) => (m.value(b) ?? -1) - (m.value(a) ?? -1));
  $("stats-table").innerHTML = `<caption>${esc(LEVEL_NAMES[st.level] || "")}指标 · ${esc(m.name)}</caption>
    <thead><tr><th scope="col">区划</th><th scope="col">事件</th><th scope="col">${esc(m.name)}</th></tr></thead>
    <tbody>${rows.map((r) => `<tr><td><button type="button" class="linkish" data-code="${esc(r.code)}">${esc(
      r.name)}</button></td><td>${fmtNum(r.events)}</td><td>${esc(m.fmt(m.value(r)) ?? "—")}</td></tr>`)
      .join("")}</tbody>`;
  $("stats-table").querySelectorAll("button[data-code]").forEach((b) => b.addEventListener("click", () =>
    document.dispatchEvent(new CustomEvent("gridgov:open-region", { detail: b.dataset.code }))));
}

function paintChoropleth() {
  const map = state.map;
  if (!map.getLayer("choropleth-fill") || !st.rows.length) return;
  const m = MEASURES[$("s-measure").value];
  const cuts = breaks(st.rows.map(m.value));
  map.setFilter("choropleth-fill", ["==", ["get", "level"], st.level]);
  // Overwrite rather than removeFeatureState: a remove-all followed by sets in the same frame
  // loses some of the sets (MapLibre coalesces the deletion afterwards).
  const painted = new Set(st.painted || []);
  for (const r of st.rows) {
    const c = classOf(m.value(r), cuts);
    const cls = c < 0 ? -1 : Math.round((c * (RAMP.length - 1)) / Math.max(1, cuts.length));
    map.setFeatureState({ source: "regions", sourceLayer: "regions", id: r.code }, { cls, v: m.value(r) });
    painted.delete(r.code);
  }
  for (const code of painted) {
    map.setFeatureState({ source: "regions", sourceLayer: "regions", id: code }, { cls: -1, v: null });
  }
  st.painted = st.rows.map((r) => r.code);
  const labels = [];
  const bounds = [null, ...cuts, null];
  for (let i = 0; i < bounds.length - 1; i += 1) {
    const lo = bounds[i] == null ? "" : m.fmt(bounds[i]);
    const hi = bounds[i + 1] == null ? "" : m.fmt(bounds[i + 1]);
    const colour = RAMP[Math.round((i * (RAMP.length - 1)) / Math.max(1, cuts.length))];
    labels.push(`<span><i style="background:${colour}"></i>${esc(lo ? `> ${lo}` : "")}${
      lo && hi ? " " : ""}${esc(hi ? `≤ ${hi}` : "")}</span>`);
  }
  $("choropleth-legend").innerHTML = `<b>${esc(m.name)}</b> ${labels.join("")}`;
}

async function loadHeat() {
  const region = statsRegion();
  const key = `${region}|${$("s-period").value}`;
  if (st.heatFor === key) return;
  st.heatFor = key;
  try {
    const hot = await api("/api/v1/statistics/hotspots", { params: { ...period(), region_code: region,
      resolution: 9, limit: 2000 } });
    const max = Math.max(1, ...hot.features.map((f) => f.properties.count));
    for (const f of hot.features) f.properties.norm = f.properties.count / max;
    state.map.getSource("hot").setData(hot);
    $("stats-note").textContent = `事件热力：${hot.features.length} 个单元，${hot.total} 件`;
  } catch (e) {
    $("stats-note").textContent = `事件热力加载失败：${e.message}`;
  }
}
