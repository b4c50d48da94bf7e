// The search box: results as you type; choosing one flies there and opens its panel.
import { api, ApiError } from "./api.js";
import { LEVEL_NAMES } from "./labels.js";
import { openRegion } from "./regions.js";
import { state } from "./state.js";
import { $, bboxOf, esc, fitPadding } from "./util.js";

const KIND_NAMES = {
  region: "区划", grid: "网格", building: "建筑物", standard_address: "标准地址", key_place: "重点场所",
  person: "人口", enterprise: "企业", organization: "组织", city_component: "城市部件", event: "事件",
};

export function setupSearch() {
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
    const c = state.map.getCenter();
    const res = await api("/api/v1/search", { params: { q, limit: 10, lon: c.lng, lat: c.lat } });
    return (res.features || []).map((f) => ({
      kind: f.properties.kind_label || KIND_NAMES[f.properties.kind] || f.properties.kind,
      title: f.properties.title || f.properties.name,
      code: f.properties.code, geometry: f.geometry,
      eventId: f.properties.kind === "event" ? f.properties.id : null,
    }));
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) return [];
  }
  const res = await api("/api/v1/regions", { params: { q, limit: 10 } });
  return res.items.map((r) => ({ kind: LEVEL_NAMES[r.level] || r.level, title: r.name, code: r.code,
    region: true }));
}

function choose(hit) {
  if (hit.eventId) {
    document.dispatchEvent(new CustomEvent("gridgov:open-event", { detail: hit.eventId }));
    return;
  }
  if (hit.region || (hit.code && !hit.geometry)) return openRegion(hit.code);
  if (hit.geometry) {
    const b = bboxOf(hit.geometry);
    state.map.fitBounds(b, { padding: fitPadding(80), maxZoom: 17 });
    if (hit.code) openRegion(hit.code, { fly: false });
  }
}
