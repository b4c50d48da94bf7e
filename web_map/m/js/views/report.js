// 上报事件: type, severity, description, photos (resized on the phone), location from GPS with
// adjustment on a map. Queued in IndexedDB with a client key, sent when online — once.

import { api } from "../../../js/api.js";
import { all, kvGet, kvSet } from "../db.js";
import { toDisplay } from "../geo.js";
import { pickOnMap } from "../mapview.js";
import { $, esc, fmtTime } from "../util.js";
import { PhotoPicker, currentFix, fixLabel } from "./common.js";

const form = { picker: null, fix: null, manual: null, pick: null };
let wired = false;

async function loadTypes() {
  let types = await kvGet("types");
  try {
    types = await api("/api/v1/event-types");
    await kvSet("types", types);
  } catch { /* offline: the cached catalogue */ }
  const sel = $("rp-type");
  const keep = sel.value;
  const tops = (types || []).filter((t) => !t.parent_code && t.active);
  sel.innerHTML = '<option value="">请选择事件类型</option>' + tops.map((top) => {
    const subs = types.filter((t) => t.parent_code === top.code && t.active);
    if (!subs.length) return `<option value="${esc(top.code)}">${esc(top.name)}</option>`;
    return `<optgroup label="${esc(top.name)}">${subs.map((t) =>
      `<option value="${esc(t.code)}">${esc(t.name)}</option>`).join("")}</optgroup>`;
  }).join("");
  sel.value = keep;
}

async function locate(app) {
  $("rp-where").textContent = "正在定位…";
  try {
    form.fix = await currentFix(app);
    form.manual = null;
    $("rp-where").innerHTML = `GPS：${fixLabel(form.fix)}`;
    if (form.pick) form.pick.marker.setLngLat(toDisplay(form.fix.lon, form.fix.lat, form.fix.crs));
  } catch (e) {
    form.fix = null;
    $("rp-where").textContent = e && e.code === 1 ? "未获得定位权限：可在地图上选点，或按所在网格上报"
      : "暂时无法定位：可在地图上选点，或按所在网格上报";
  }
}

async function adjust(app) {
  const el = $("rp-map");
  el.hidden = false;
  el.scrollIntoView({ block: "center" });
  const start = form.manual || (form.fix ? toDisplay(form.fix.lon, form.fix.lat, form.fix.crs)
    : [120.67, 28.0]);
  try {
    if (!form.pick) {
      form.pick = await pickOnMap(el, start);
      const moved = () => {
        form.manual = form.pick.get();
        $("rp-where").textContent = `地图选点：${form.manual[0].toFixed(6)}, ${form.manual[1].toFixed(6)}（WGS84）`;
      };
      form.pick.marker.on("dragend", moved);
      form.pick.map.on("click", moved);
    } else {
      form.pick.marker.setLngLat(start);
      form.pick.map.resize();
      form.pick.map.setCenter(start);
    }
    el.scrollIntoView({ block: "center" });
  } catch (e) {
    el.textContent = e.message;
  }
}

function where(app) {
  // A point moved on the map is in the map's coordinates (WGS84 ≈ CGCS2000); a GPS fix keeps the
  // crs its source reported (GCJ-02 in 浙政钉).
  if (form.manual) return { location: { type: "Point", coordinates: form.manual }, crs: "WGS84" };
  if (form.fix) return { location: { type: "Point", coordinates: [form.fix.lon, form.fix.lat] }, crs: form.fix.crs };
  if (app.me.grid_codes.length) return { region_code: app.me.grid_codes[0] };
  return null;
}

async function submit(app, ev) {
  ev.preventDefault();
  $("report-error").textContent = "";
  const place = where(app);
  if (!place) { $("report-error").textContent = "请先定位或在地图上选点"; return; }
  const spot = $("rp-spot").checked;
  const body = { type_code: $("rp-type").value, severity: $("rp-severity").value,
    description: $("rp-desc").value.trim(), source: "patrol", ...place };
  if (spot) Object.assign(body, { resolved_on_spot: true, result: $("rp-result").value.trim() || "已就地解决" });
  const label = `上报：${$("rp-type").selectedOptions[0].textContent} · ${body.description.slice(0, 20)}`;
  await app.outbox.enqueue({ kind: "report", url: "/api/v1/mobile/reports", body,
    photos: form.picker.blobs(), label });
  form.picker.reset();
  $("report-form").reset();
  $("rp-result").hidden = $("rp-result-label").hidden = true;
  app.notice(navigator.onLine ? "已提交，正在发送…" : "当前离线：上报已保存在手机上，联网后自动发送。");
  app.outbox.flush();
  locate(app);
}

function wire(app) {
  if (wired) return;
  wired = true;
  form.picker = new PhotoPicker([$("rp-camera"), $("rp-gallery")], $("rp-thumbs"),
    (m) => { $("report-error").textContent = m; });
  $("rp-locate").addEventListener("click", () => locate(app));
  $("rp-adjust").addEventListener("click", () => adjust(app));
  $("rp-spot").addEventListener("change", () => {
    $("rp-result").hidden = $("rp-result-label").hidden = !$("rp-spot").checked;
  });
  $("report-form").addEventListener("submit", (ev) => submit(app, ev));
}

export async function onQueue(app) {
  const items = (await all("outbox")).filter((i) => i.user === app.me.username);
  const list = $("outbox-list");
  list.innerHTML = items.length ? items.map((i) => `<li data-seq="${i.seq}">
    <span class="title">${esc(i.label)}</span>
    <span class="meta">${fmtTime(new Date(i.created).toISOString())} · ${i.photos.length} 张照片 ·
      ${i.refused ? `<span class="bad">被拒绝：${esc(i.refused)}</span>` : "待发送"}</span>
    ${i.refused ? `<div class="row"><button type="button" class="secondary" data-retry="${i.seq}">重试</button>
      <button type="button" class="danger" data-drop="${i.seq}">删除</button></div>` : ""}</li>`).join("")
    : '<li class="empty">没有待发送的内容</li>';
  for (const b of list.querySelectorAll("[data-retry]")) b.addEventListener("click", () => app.outbox.retryRefused(Number(b.dataset.retry)));
  for (const b of list.querySelectorAll("[data-drop]")) b.addEventListener("click", () => app.outbox.discard("outbox", Number(b.dataset.drop)));
}

export function onSent(app, item, data) {
  if (item.kind === "report" && data && data.event) app.notice(`已上报：${data.event.code}${data.duplicate ? "（服务器此前已收到，未重复上报）" : ""}`);
}

export function show(app) {
  wire(app);
  loadTypes();
  onQueue(app);
  if (!form.fix && !form.manual) locate(app);
}
