// The layer switcher and the legend. Tile layers come from style.json: regions (with a choice of
// levels and grid types), buildings, places, components and events (coloured by SLA) start
// shown; patrol tracks and the heat layers (personal data or costly, audited when read) start
// hidden. The client's own layers (the event list, live workers, playback, statistics) join as
// groups. The legend lists what is shown.
import { LEVEL_NAMES, SLA_COLOURS } from "./labels.js";
import { state } from "./state.js";
import { $, esc } from "./util.js";

const ramp = (...colours) => `linear-gradient(90deg, ${colours.join(", ")})`;

/** Titles and legends of the tile layers we know, in the switcher's order. */
const TILE_LAYERS = {
  regions: { title: "区划网格", legend: [["#7b3294", "县(市、区)界", "line"],
    ["#c2185b", "乡镇(街道)界", "line"], ["#1565c0", "村(社区)界", "line"],
    ["#2e7d32", "网格界", "line"], ["#4caf50", "一般网格"], ["#ff9800", "重点网格"],
    ["#8e24aa", "专属网格"]] },
  buildings: { title: "建筑物", legend: [["#d7ccc8", "住宅建筑"], ["#ffcc80", "商业建筑"],
    ["#b3e5fc", "办公建筑"], ["#c5e1a5", "公共建筑"]] },
  key_places: { title: "重点场所", legend: [["#d32f2f", "重点场所·高风险", "dot"],
    ["#f57c00", "重点场所·中风险", "dot"], ["#fbc02d", "重点场所·低风险", "dot"]] },
  city_components: { title: "城市部件", legend: [["#607d8b", "城市部件·完好", "dot"],
    ["#f57c00", "城市部件·损坏", "dot"], ["#d32f2f", "城市部件·缺失", "dot"]] },
  events: { title: "在办事件 (按时限着色)", legend: [[SLA_COLOURS.red, "事件·超时", "dot"],
    [SLA_COLOURS.amber, "事件·预警", "dot"], [SLA_COLOURS.green, "事件·正常", "dot"],
    [SLA_COLOURS.none, "事件·无时限", "dot"],
    [SLA_COLOURS.red, "事件聚合 (数字为件数，颜色取最急)", "cluster"]] },
  patrol_tracks: { title: "巡查轨迹 (所选日期)", legend: [["#00897b", "巡查轨迹·进行中", "line"],
    ["#3949ab", "巡查轨迹·已结束", "line"]] },
  heat_events: { title: "事件密度 (H3)", heat: true,
    legend: [[ramp("#fee5d9", "#fc9272", "#de2d26", "#a50f15"), "事件密度 少→多", "ramp"]] },
  heat_patrols: { title: "巡查密度 (H3)", heat: true,
    legend: [[ramp("#edf8fb", "#66c2a4", "#238b45", "#00441b"), "巡查密度 少→多", "ramp"]] },
  heat_buildings: { title: "建筑密度 (H3)", heat: true,
    legend: [[ramp("#fff5eb", "#fd8d3c", "#d94801", "#7f2704"), "建筑密度 少→多", "ramp"]] },
};
/** Sources drawn only when asked for. */
const HIDDEN_AT_START = (source) => source.startsWith("heat") || source === "patrol_tracks";
/** Sources of one day's data: their tiles follow the patrol panel's day (#p-date). */
const DAY_SOURCES = ["patrol_tracks"];

/** The region levels and grid types the regions layer can show, all on at first. */
const REGION_LEVELS = ["county", "township", "village", "grid"];
const GRID_TYPES = { general: "一般网格", key: "重点网格", dedicated: "专属网格" };
const regionChoice = { levels: new Set(REGION_LEVELS), gridTypes: new Set(Object.keys(GRID_TYPES)) };
state.regionChoice = regionChoice;

function setVisible(ids, on) {
  for (const id of ids) {
    if (state.map.getLayer(id)) state.map.setLayoutProperty(id, "visibility", on ? "visible" : "none");
  }
}

/** Groups of style layers by tile source, in TILE_LAYERS order (unknown sources last). */
function styleGroups(style) {
  const bySource = {};
  for (const l of style.layers) {
    if (!l.source || !style.sources[l.source] || style.sources[l.source].type !== "vector") continue;
    (bySource[l.source] ||= []).push(l.id);
  }
  const titles = Object.fromEntries(state.layers.map((l) => [l.name, l.title]));
  const order = Object.keys(TILE_LAYERS);
  const rank = (s) => (order.includes(s) ? order.indexOf(s) : order.length);
  return Object.keys(bySource).sort((a, b) => rank(a) - rank(b)).map((source) => ({
    key: source, title: TILE_LAYERS[source]?.title || titles[source] || source,
    layers: bySource[source], visible: !HIDDEN_AT_START(source),
    legend: TILE_LAYERS[source]?.legend || [], heat: Boolean(TILE_LAYERS[source]?.heat),
    onToggle: DAY_SOURCES.includes(source) ? (on) => on && followDay(source)
      : source === "regions" ? (on) => { document.querySelector(".sub-layers").disabled = !on; }
        : undefined,
  }));
}

let tileGroups = null;

/** Point a day layer's tiles at the day chosen in the patrol panel (style.json gives today). */
function followDay(source) {
  const day = document.getElementById("p-date")?.value;
  const src = state.map.getSource(source);
  const template = state.style.sources[source]?.tiles?.[0];
  if (!day || !src?.setTiles || !template) return;
  const url = new URL(template, window.location.href);
  url.searchParams.set("date", day);
  src.setTiles([decodeURI(url.toString())]);
}

/** The patrol panel's day changed (by the user or by the panel itself): day layers follow. */
export function dayChanged() {
  for (const source of DAY_SOURCES) {
    if (state.map.getSource(source)) followDay(source);
  }
}

let followingDays = false;
function followDayChanges() {
  if (followingDays) return;
  const input = document.getElementById("p-date");
  if (!input) return;
  followingDays = true;
  input.addEventListener("change", dayChanged);
}

// --- regions by level, grids by type ---------------------------------------------------------

/** Filters of the region layers for the chosen levels and grid types (micro-grids as grids). */
function applyRegionChoice() {
  const map = state.map;
  const levels = [...regionChoice.levels].flatMap((l) => (l === "grid" ? ["grid", "micro_grid"] : [l]));
  // City outlines go with the counties: a commander above county level sees both.
  if (regionChoice.levels.has("county")) levels.push("city");
  const types = [...regionChoice.gridTypes];
  const isGrid = ["in", ["get", "level"], ["literal", ["grid", "micro_grid"]]];
  const typeOk = ["in", ["coalesce", ["get", "grid_type"], "general"], ["literal", types]];
  const levelOk = ["in", ["get", "level"], ["literal", levels]];
  const shown = ["all", levelOk, ["any", ["!", isGrid], typeOk]];
  const filters = {
    "regions-line": shown, "regions-hit": shown, "region-labels": levelOk,
    "regions-fill": ["all", isGrid, levelOk, typeOk],
  };
  for (const [id, filter] of Object.entries(filters)) if (map.getLayer(id)) map.setFilter(id, filter);
}

function regionChoices(enabled) {
  const box = document.createElement("fieldset");
  box.className = "sub-layers";
  box.disabled = !enabled;
  box.innerHTML = `<legend class="sr-only">区划层级与网格类型</legend>
    ${REGION_LEVELS.map((l) => `<label><input type="checkbox" data-level="${l}" ${
      regionChoice.levels.has(l) ? "checked" : ""}> ${esc(LEVEL_NAMES[l])}</label>`).join("")}
    ${Object.entries(GRID_TYPES).map(([t, name]) => `<label><input type="checkbox"
      data-grid-type="${t}" ${regionChoice.gridTypes.has(t) ? "checked" : ""}> ${esc(name)}</label>`)
    .join("")}`;
  box.addEventListener("change", (ev) => {
    const { level, gridType } = ev.target.dataset;
    const set = level ? regionChoice.levels : regionChoice.gridTypes;
    const key = level || gridType;
    if (ev.target.checked) set.add(key);
    else set.delete(key);
    applyRegionChoice();
  });
  return box;
}

// --- the switcher ----------------------------------------------------------------------------

function row(group) {
  const id = `layer-${group.key}`;
  const label = document.createElement("label");
  label.innerHTML = `<input type="checkbox" id="${esc(id)}" ${group.visible ? "checked" : ""}>
    ${esc(group.title)}`;
  label.querySelector("input").addEventListener("change", (ev) => {
    group.visible = ev.target.checked;
    setVisible(group.layers, group.visible);
    group.onToggle?.(group.visible);
    buildLegend();
  });
  return label;
}

export function buildLayerSwitcher() {
  const box = $("layer-list");
  box.innerHTML = "";
  if (!tileGroups) {
    tileGroups = styleGroups(state.style);
    for (const g of tileGroups) setVisible(g.layers, g.visible);
    applyRegionChoice();
  }
  for (const g of tileGroups.filter((x) => !x.heat)) {
    box.appendChild(row(g));
    if (g.key === "regions") box.appendChild(regionChoices(g.visible));
  }
  followDayChanges();
  if (state.layerGroups.length) {
    box.insertAdjacentHTML("beforeend", "<h3>业务图层</h3>");
    for (const g of state.layerGroups.filter((x) => !x.heat)) box.appendChild(row(g));
  }
  const heat = [...tileGroups, ...state.layerGroups].filter((x) => x.heat);
  if (heat.length) {
    box.insertAdjacentHTML("beforeend", "<h3>热力</h3>");
    for (const g of heat) box.appendChild(row(g));
  }
  buildLegend();
}

/**
 * Add a client layer group (``{key, title, layers, visible, legend?, heat?, onToggle?}``) to
 * the switcher; returns a setter to show or hide it.
 */
export function addLayerGroup(group) {
  state.layerGroups = state.layerGroups.filter((g) => g.key !== group.key);
  state.layerGroups.push(group);
  setVisible(group.layers, group.visible);
  buildLayerSwitcher();
  return (on) => {
    group.visible = on;
    setVisible(group.layers, on);
    const box = $(`layer-${group.key}`);
    if (box) box.checked = on;
    group.onToggle?.(on);
    buildLegend();
  };
}

/** Whether a group (tile source or client group) is shown now. */
export function isShown(key) {
  return [...(tileGroups || []), ...state.layerGroups].some((g) => g.key === key && g.visible);
}

function swatch([colour, text, shape]) {
  const kind = { dot: " dot", line: " line", ring: " ring", ramp: " ramp", cluster: " cluster" }[shape]
    || "";
  const paint = shape === "ring" ? `border-color:${esc(colour)}` : `background:${esc(colour)}`;
  const inner = shape === "cluster" ? "12" : "";
  return `<li class="legend-row"><span class="swatch${kind}" style="${paint}" aria-hidden="true">${
    inner}</span>${esc(text)}</li>`;
}

/** The legend of what is shown now, group by group. */
export function buildLegend() {
  const groups = [...(tileGroups || []), ...state.layerGroups].filter((g) => g.visible
    && g.legend?.length);
  $("legend").innerHTML = groups.length
    ? `<ul class="legend">${groups.flatMap((g) => g.legend).map(swatch).join("")}</ul>`
    : "<p class=\"muted\">未显示图层</p>";
}
