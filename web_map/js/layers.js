// The layer switcher (tile layers from the style, plus the client's own layer groups) and the
// legend. Tile layers come from style.json: regions, buildings, places, components and events
// start shown; heat layers and patrol tracks (personal data, audited when read) start hidden.
import { state } from "./state.js";
import { $, esc } from "./util.js";

const BASE_LEGEND = [["#5b2a86", "市/县界"], ["#c2185b", "乡镇(街道)界"], ["#1565c0", "村(社区)界"],
  ["#4caf50", "一般网格"], ["#ff9800", "重点网格"], ["#8e24aa", "专属网格"], ["#d7ccc8", "住宅建筑"],
  ["#d32f2f", "高风险场所"]];
const legendExtras = [];
/** Sources drawn only when asked for. */
const HIDDEN_AT_START = (source) => source.startsWith("heat") || source === "patrol_tracks";
/** Sources of one day's data: their tiles follow the patrol panel's day (#p-date). */
const DAY_SOURCES = ["patrol_tracks"];

function setVisible(ids, on) {
  for (const id of ids) {
    if (state.map.getLayer(id)) state.map.setLayoutProperty(id, "visibility", on ? "visible" : "none");
  }
}

/** Groups of style layers by tile source ("heat" sources start hidden). */
function styleGroups(style) {
  const bySource = {};
  for (const l of style.layers) {
    if (!l.source || !style.sources[l.source] || style.sources[l.source].type !== "vector") continue;
    (bySource[l.source] ||= []).push(l.id);
  }
  const titles = Object.fromEntries(state.layers.map((l) => [l.name, l.title]));
  return Object.entries(bySource).map(([source, ids]) => ({
    key: source, title: titles[source] || source, layers: ids, visible: !HIDDEN_AT_START(source),
    onToggle: DAY_SOURCES.includes(source) ? (on) => on && followDay(source) : undefined,
  }));
}

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

let followingDays = false;
function followDayChanges() {
  if (followingDays) return;
  const input = document.getElementById("p-date");
  if (!input) return;
  followingDays = true;
  input.addEventListener("change", () => {
    for (const source of DAY_SOURCES) {
      if (state.map.getSource(source)) followDay(source);
    }
  });
}

function row(group) {
  const id = `layer-${group.key}`;
  const label = document.createElement("label");
  label.innerHTML = `<input type="checkbox" id="${esc(id)}" ${group.visible ? "checked" : ""}>
    ${esc(group.title)}`;
  label.querySelector("input").addEventListener("change", (ev) => {
    group.visible = ev.target.checked;
    setVisible(group.layers, group.visible);
    group.onToggle?.(group.visible);
  });
  return label;
}

export function buildLayerSwitcher() {
  const box = $("layer-list");
  box.innerHTML = "";
  const base = styleGroups(state.style);
  for (const g of base) {
    setVisible(g.layers, g.visible);
    box.appendChild(row(g));
  }
  followDayChanges();
  if (state.layerGroups.length) {
    box.insertAdjacentHTML("beforeend", "<h3>业务图层</h3>");
    for (const g of state.layerGroups) box.appendChild(row(g));
  }
}

/** Add a client layer group to the switcher; returns a setter to show or hide it. */
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
  };
}

export function addLegend(rows) {
  legendExtras.push(...rows);
  buildLegend();
}

export function buildLegend() {
  const all = [...BASE_LEGEND, ...legendExtras];
  $("legend").innerHTML = all.map(([c, t, shape]) =>
    `<div class="legend-row"><span class="swatch${shape === "dot" ? " dot" : ""}"
      style="background:${esc(c)}"></span>${esc(t)}</div>`).join("");
}
