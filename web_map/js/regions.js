// Regions on the map: drill-down (辖区信息 panel, outline highlight, breadcrumb) and what's here.
import { api } from "./api.js";
import { COUNT_NAMES, GRID_TYPES, LEVEL_NAMES, POSITIONS } from "./labels.js";
import { state } from "./state.js";
import { $, bboxOf, esc, fitPadding, showPanel } from "./util.js";

/** The smallest region under a map click: grids before villages before townships. */
export function regionAt(point) {
  const hits = state.map.queryRenderedFeatures(point)
    .filter((f) => f.sourceLayer === "regions" && f.properties.code);
  const rank = { micro_grid: 0, grid: 1, village: 2, township: 3, county: 4, city: 5 };
  hits.sort((a, b) => (rank[a.properties.level] ?? 9) - (rank[b.properties.level] ?? 9));
  return hits[0]?.properties.code || null;
}

export async function openRegion(code, { fly = true } = {}) {
  let info;
  try {
    info = await api(`/api/v1/regions/${encodeURIComponent(code)}/info`);
  } catch (e) {
    return showPanel(`<p>无法打开：${esc(e.message)}</p>`);
  }
  state.selected = code;
  const p = info.properties;
  state.map.getSource("selection")?.setData({ type: "FeatureCollection", features: [info] });
  renderBreadcrumb(p.chain);
  const counts = Object.entries(p.counts || {}).map(([k, v]) =>
    `<tr><td>${esc(COUNT_NAMES[k] || k)}</td><td>${Number(v).toLocaleString("zh-CN")}</td></tr>`).join("");
  const children = Object.entries(p.children || {}).map(([k, v]) =>
    `<tr><td>${esc(LEVEL_NAMES[k] || k)}</td><td>${esc(v)}</td></tr>`).join("");
  const team = (p.team || []).map((m) =>
    `<tr><td>${esc(POSITIONS[m.position] || m.position)}</td><td>${esc(m.name)}</td>
     <td>${esc(m.phone || "")}</td></tr>`).join("");
  showPanel(`
    <h2 id="panel-title">${esc(p.name)}</h2>
    <div>${esc(LEVEL_NAMES[p.level] || p.level)}${p.grid_type ? " · " + esc(GRID_TYPES[p.grid_type]) : ""}
      · ${esc(p.code)}</div>
    <h3>辖区信息</h3>
    <dl class="kv">
      <dt>面积</dt><dd>${(p.area_km2 ?? 0).toFixed(2)} km²</dd>
      ${p.households != null ? `<dt>户数</dt><dd>${esc(p.households)}</dd>` : ""}
      ${p.population != null ? `<dt>人口</dt><dd>${esc(p.population)}</dd>` : ""}
      ${p.party_members != null ? `<dt>党员</dt><dd>${esc(p.party_members)}</dd>` : ""}
      ${p.leader_name ? `<dt>负责人</dt><dd>${esc(p.leader_name)} ${esc(p.leader_phone || "")}</dd>` : ""}
    </dl>
    ${children ? `<h3>下辖区划</h3><table>${children}</table>` : ""}
    ${counts ? `<h3>基础数据</h3><table>${counts}</table>` : ""}
    ${team ? `<h3>网格力量</h3><table>${team}</table>` : ""}
  `);
  // After the panel is shown, so the fit keeps the outline clear of it.
  if (fly) state.map.fitBounds(bboxOf(info.geometry), { padding: fitPadding(), maxZoom: 17 });
  document.dispatchEvent(new CustomEvent("gridgov:region", { detail: p }));
}

function renderBreadcrumb(chain) {
  const nav = $("breadcrumb");
  nav.innerHTML = "";
  (chain || []).forEach((r, i) => {
    if (i) nav.insertAdjacentHTML("beforeend", "<span>›</span>");
    const b = document.createElement("button");
    b.textContent = r.name;
    b.type = "button";
    if (i === chain.length - 1) b.setAttribute("aria-current", "true");
    b.addEventListener("click", () => openRegion(r.code));
    nav.appendChild(b);
  });
}

export async function whatIsHere(lngLat) {
  try {
    const here = await api("/api/v1/here", {
      params: { lon: lngLat.lng, lat: lngLat.lat, crs: "CGCS2000", radius_m: 50 } });
    const chain = here.regions.map((r) => esc(r.name)).join(" › ");
    const near = [
      ...(here.buildings || []).map((b) => `建筑 ${esc(b.name || b.code)} (${esc(b.distance_m)} m)`),
      ...(here.addresses || []).map((a) => `地址 ${esc(a.full_text)} (${esc(a.distance_m)} m)`),
      ...(here.places || []).map((p) => `场所 ${esc(p.name)} (${esc(p.distance_m)} m)`),
    ];
    showPanel(`<h2 id="panel-title">这里是哪里</h2><p>${chain || "不在您的辖区内"}</p>
      <p>${lngLat.lng.toFixed(6)}, ${lngLat.lat.toFixed(6)}</p>
      ${near.length ? `<h3>附近</h3><ul>${near.map((n) => `<li>${n}</li>`).join("")}</ul>` : ""}`);
  } catch (e) {
    showPanel(`<p>${esc(e.message)}</p>`);
  }
}
