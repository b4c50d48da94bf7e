// The commander's grid map: login, jurisdiction map, layers, drill-down, search, what's here.
import { api, ApiError, codeOf, setCsrf } from "./api.js";
import { drawWatermark } from "./watermark.js";

const $ = (id) => document.getElementById(id);
const LEVEL_NAMES = {
  city: "市", county: "县(市、区)", township: "乡镇(街道)", village: "村(社区)",
  grid: "网格", micro_grid: "微网格",
};
const GRID_TYPES = { general: "一般网格", key: "重点网格", dedicated: "专属网格" };
const COUNT_NAMES = {
  persons: "实有人口", residences: "住所", buildings: "建筑物", key_places: "重点场所",
  enterprises: "企业", city_components: "城市部件", addresses: "标准地址",
};
const POSITIONS = {
  grid_instructor: "网格指导员", grid_leader: "网格长", grid_worker: "专职网格员",
  part_time_grid_worker: "兼职网格员", party_group_leader: "党小组长",
  command_centre_staff: "指挥室", department_staff: "部门人员",
};
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

const state = { me: null, map: null, layers: [], selected: null };
window.gridgov = state; // for tests and the console

async function boot() {
  // Probe without a 401: an anonymous visitor simply gets the login form.
  const session = await api("/api/v1/auth/session");
  if (!session.authenticated) return showLogin();
  state.me = session;
  await showApp();
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
      $("login").hidden = true;
      await showApp();
    } catch (e) {
      $("login-error").textContent = e.status === 429 ? "登录失败次数过多，账号暂时锁定" : "账号或密码错误";
    }
  }, { once: false });
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

function bboxOf(geometry) {
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      b[0] = Math.min(b[0], c[0]); b[1] = Math.min(b[1], c[1]);
      b[2] = Math.max(b[2], c[0]); b[3] = Math.max(b[3], c[1]);
    } else c.forEach(walk);
  };
  walk(geometry.coordinates);
  return b;
}

async function showApp() {
  $("topbar").hidden = false;
  $("app").hidden = false;
  $("whoami").textContent = `${state.me.username}`;
  drawWatermark($("watermark"), state.me.username);
  $("logout").addEventListener("click", async () => {
    await api("/api/v1/auth/logout", { method: "POST" }).catch(() => null);
    window.location.reload();
  });
  const [style, layerList, bounds] = await Promise.all([
    api("/tiles/style.json"), api("/tiles").catch(() => ({ layers: [] })), jurisdictionBounds(),
  ]);
  state.layers = layerList.layers || layerList;
  const map = new maplibregl.Map({
    container: "map", style, attributionControl: { compact: true },
    bounds: bounds || undefined, fitBoundsOptions: { padding: 30 },
    center: bounds ? undefined : [120.67, 28.0], zoom: bounds ? undefined : 9,
  });
  state.map = map;
  map.addControl(new maplibregl.NavigationControl(), "bottom-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  map.on("load", () => {
    // Clicks inside a region (not only on its outline) select it: an invisible fill to hit.
    if (map.getSource("regions")) {
      map.addLayer({ id: "regions-hit", type: "fill", source: "regions", "source-layer": "regions",
        paint: { "fill-color": "#000000", "fill-opacity": 0 } }, map.getStyle().layers[1]?.id);
    }
    map.addSource("selection", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    map.addLayer({ id: "selection-line", type: "line", source: "selection",
      paint: { "line-color": "#00b0ff", "line-width": 4 } });
    buildLayerSwitcher(style);
    buildLegend();
  });
  map.on("click", onMapClick);
  map.on("contextmenu", (ev) => whatIsHere(ev.lngLat));
  setupSearch();
  $("panel-close").addEventListener("click", () => { $("panel").hidden = true; });
  if (state.me.scope.length && state.me.scope[0] !== "") {
    openRegion(codeOf(state.me.scope[0]), { fly: false });
  }
}

function buildLayerSwitcher(style) {
  const bySource = {};
  for (const l of style.layers) {
    if (!l.source) continue;
    (bySource[l.source] ||= []).push(l.id);
  }
  const titles = Object.fromEntries(state.layers.map((l) => [l.name, l.title]));
  const box = $("layer-list");
  box.innerHTML = "";
  for (const [source, ids] of Object.entries(bySource)) {
    const id = `layer-${source}`;
    const row = document.createElement("label");
    const hidden = source.startsWith("heat");
    row.innerHTML = `<input type="checkbox" id="${id}" ${hidden ? "" : "checked"}> ${esc(titles[source] || source)}`;
    box.appendChild(row);
    const setVisible = (on) => ids.forEach((lid) =>
      state.map.setLayoutProperty(lid, "visibility", on ? "visible" : "none"));
    if (hidden) setVisible(false);
    row.querySelector("input").addEventListener("change", (ev) => setVisible(ev.target.checked));
  }
}

function buildLegend() {
  const rows = [["#5b2a86", "市/县界"], ["#c2185b", "乡镇(街道)界"], ["#1565c0", "村(社区)界"],
    ["#4caf50", "一般网格"], ["#ff9800", "重点网格"], ["#8e24aa", "专属网格"], ["#d7ccc8", "住宅建筑"],
    ["#d32f2f", "高风险场所"]];
  $("legend").innerHTML = rows.map(([c, t]) =>
    `<div class="legend-row"><span class="swatch" style="background:${c}"></span>${t}</div>`).join("");
}

function onMapClick(ev) {
  const hits = state.map.queryRenderedFeatures(ev.point)
    .filter((f) => f.sourceLayer === "regions" && f.properties.code);
  if (!hits.length) return;
  // The smallest region under the click: grids before villages before townships.
  const rank = { micro_grid: 0, grid: 1, village: 2, township: 3, county: 4, city: 5 };
  hits.sort((a, b) => (rank[a.properties.level] ?? 9) - (rank[b.properties.level] ?? 9));
  openRegion(hits[0].properties.code, { fly: false });
}

async function openRegion(code, { fly = true } = {}) {
  let info;
  try {
    info = await api(`/api/v1/regions/${code}/info`);
  } catch (e) {
    return showPanel(`<p>无法打开：${esc(e.message)}</p>`);
  }
  state.selected = code;
  const p = info.properties;
  state.map.getSource("selection")?.setData({ type: "FeatureCollection", features: [info] });
  if (fly) state.map.fitBounds(bboxOf(info.geometry), { padding: 60, maxZoom: 17 });
  renderBreadcrumb(p.chain);
  const counts = Object.entries(p.counts || {}).map(([k, v]) =>
    `<tr><td>${COUNT_NAMES[k] || k}</td><td>${v.toLocaleString("zh-CN")}</td></tr>`).join("");
  const children = Object.entries(p.children || {}).map(([k, v]) =>
    `<tr><td>${LEVEL_NAMES[k] || k}</td><td>${v}</td></tr>`).join("");
  const team = (p.team || []).map((m) =>
    `<tr><td>${POSITIONS[m.position] || m.position}</td><td>${esc(m.name)}</td><td>${esc(m.phone || "")}</td></tr>`).join("");
  showPanel(`
    <h2 id="panel-title">${esc(p.name)}</h2>
    <div>${LEVEL_NAMES[p.level] || p.level}${p.grid_type ? " · " + GRID_TYPES[p.grid_type] : ""} · ${esc(p.code)}</div>
    <h3>辖区信息</h3>
    <dl class="kv">
      <dt>面积</dt><dd>${(p.area_km2 ?? 0).toFixed(2)} km²</dd>
      ${p.households != null ? `<dt>户数</dt><dd>${p.households}</dd>` : ""}
      ${p.population != null ? `<dt>人口</dt><dd>${p.population}</dd>` : ""}
      ${p.party_members != null ? `<dt>党员</dt><dd>${p.party_members}</dd>` : ""}
      ${p.leader_name ? `<dt>负责人</dt><dd>${esc(p.leader_name)} ${esc(p.leader_phone || "")}</dd>` : ""}
    </dl>
    ${children ? `<h3>下辖区划</h3><table>${children}</table>` : ""}
    ${counts ? `<h3>基础数据</h3><table>${counts}</table>` : ""}
    ${team ? `<h3>网格力量</h3><table>${team}</table>` : ""}
  `);
}

function showPanel(html) {
  $("panel-body").innerHTML = html;
  $("panel").hidden = false;
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

async function whatIsHere(lngLat) {
  try {
    const here = await api("/api/v1/here", {
      params: { lon: lngLat.lng, lat: lngLat.lat, crs: "CGCS2000", radius_m: 50 } });
    const chain = here.regions.map((r) => esc(r.name)).join(" › ");
    const near = [
      ...(here.buildings || []).map((b) => `建筑 ${esc(b.name || b.code)} (${b.distance_m} m)`),
      ...(here.addresses || []).map((a) => `地址 ${esc(a.full_text)} (${a.distance_m} m)`),
      ...(here.places || []).map((p) => `场所 ${esc(p.name)} (${p.distance_m} m)`),
    ];
    showPanel(`<h2 id="panel-title">这里是哪里</h2><p>${chain || "不在您的辖区内"}</p>
      <p>${lngLat.lng.toFixed(6)}, ${lngLat.lat.toFixed(6)}</p>
      ${near.length ? `<h3>附近</h3><ul>${near.map((n) => `<li>${n}</li>`).join("")}</ul>` : ""}`);
  } catch (e) {
    showPanel(`<p>${esc(e.message)}</p>`);
  }
}

function setupSearch() {
  const input = $("search-input");
  const list = $("search-results");
  let timer = null;
  let seq = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const q = input.value.trim();
      const mine = ++seq;
      if (q.length < 2) { list.hidden = true; return; }
      const hits = await search(q);
      if (mine !== seq) return; // a newer query is on its way
      list.innerHTML = hits.map((h, i) =>
        `<li role="option" data-i="${i}">${esc(h.title)}<small>${esc(h.kind)}</small></li>`).join("")
        || "<li>无结果</li>";
      list.hidden = false;
      list.querySelectorAll("li[data-i]").forEach((li) => li.addEventListener("click", () => {
        list.hidden = true;
        choose(hits[Number(li.dataset.i)]);
      }));
    }, 200);
  });
}

async function search(q) {
  // Unified search when it is there; regions by name otherwise.
  try {
    const res = await api("/api/v1/search", { params: { q, limit: 10 } });
    return (res.features || []).map((f) => ({
      kind: f.properties.kind, title: f.properties.title || f.properties.name,
      code: f.properties.code, geometry: f.geometry,
    }));
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) return [];
  }
  const res = await api("/api/v1/regions", { params: { q, limit: 10 } });
  return res.items.map((r) => ({ kind: LEVEL_NAMES[r.level] || r.level, title: r.name, code: r.code, region: true }));
}

function choose(hit) {
  if (hit.region || (hit.code && !hit.geometry)) return openRegion(hit.code);
  if (hit.geometry) {
    const b = bboxOf(hit.geometry);
    state.map.fitBounds(b, { padding: 80, maxZoom: 17 });
    if (hit.code) openRegion(hit.code, { fly: false });
  }
}

boot().catch((e) => {
  console.warn("gridgov failed to start", e);
});
