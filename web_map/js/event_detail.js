// One event in the side panel: facts, photos, clocks, route and why, the history timeline, and
// the actions this user may take (the API's allowed_actions) as forms.
import { api, ApiError } from "./api.js";
import {
  ACTION_NAMES, EVENT_LEVEL_NAMES, PHASE_NAMES, SEVERITY_NAMES, SLA_COLOURS, SLA_NAMES,
  SOURCE_NAMES, STATE_NAMES, inkOn, slaOf,
} from "./labels.js";
import { toast } from "./messages.js";
import { state } from "./state.js";
import { $, esc, fmtDuration, fmtTime, showPanel } from "./util.js";

const detail = { current: null, busy: false };
state.eventDetail = detail;

/** Fields each action's form asks for: [name, required]. */
const FORMS = {
  accept: [["note", false]],
  refuse: [["note", true]],
  dispatch: [["lead", true], ["assisting", false], ["note", false]],
  reassign: [["lead", true], ["note", false]],
  sign: [["note", false]],
  handle: [["result", true], ["note", false]],
  request_return: [["note", true]],
  approve_return: [["note", false]],
  reject_return: [["note", false]],
  verify_pass: [["location", false], ["note", false]],
  verify_fail: [["location", false], ["note", true]],
  close: [["note", false]],
  evaluate: [["score", true], ["note", false]],
  request_extension: [["hours", true], ["note", true]],
  approve_extension: [["note", false]],
  reject_extension: [["note", false]],
  escalate: [["to_level", false], ["note", false]],
  remind: [["note", false]],
  supervise: [["note", true], ["deadline", false]],
  resolve_on_spot: [["result", true]],
  merge: [["into_event_id", true], ["note", false]],
};
const NOTE_LABELS = {
  refuse: "不予受理理由", request_return: "退回理由", verify_fail: "核查不通过原因",
  request_extension: "延期理由", supervise: "督办意见", escalate: "上报说明 (越级必填)",
  remind: "催办内容",
};

export async function openEvent(id) {
  let d;
  try {
    d = await api(`/api/v1/events/${id}`);
  } catch (e) {
    showPanel(`<p>无法打开事件：${esc(e.status === 404 ? "事件不存在或不在您的辖区" : e.message)}</p>`);
    return;
  }
  detail.current = d;
  render(d);
  select(d);
  if (d.lon != null) {
    // Shift left of centre: the detail panel covers the right of the map.
    state.map.easeTo({ center: [d.lon, d.lat], zoom: Math.max(state.map.getZoom(), 15),
      offset: [-190, 0] });
  }
}

/** Re-read the open event (polling); re-render only when it changed and no form is open. */
export async function refreshOpenEvent() {
  const cur = detail.current;
  if (!cur || detail.busy || $("panel").hidden || !$("event-detail")) return;
  try {
    const d = await api(`/api/v1/events/${cur.id}`);
    if (d.version !== cur.version && !document.querySelector("#action-form form")) {
      detail.current = d;
      render(d);
    }
  } catch (e) { /* gone or offline: leave the panel as it is */ }
}

/** Ring the open event on the map (whether or not the list holds it). */
function select(d) {
  const features = d.lon == null ? [] : [{ type: "Feature", properties: { id: d.id },
    geometry: { type: "Point", coordinates: [d.lon, d.lat] } }];
  state.map.getSource("event-selected")?.setData({ type: "FeatureCollection", features });
}

function badge(text, colour) {
  return `<span class="tag" style="background:${colour};color:${inkOn(colour)}">${esc(text)}</span>`;
}

function render(d) {
  const sla = slaOf(d);
  showPanel(`<div id="event-detail" data-id="${esc(d.id)}" data-version="${esc(d.version)}">
    <h2 id="panel-title">${esc(d.title)}</h2>
    <p class="ev-badges">${esc(d.code)}
      ${badge(STATE_NAMES[d.state] || d.state, SLA_COLOURS[sla])}
      ${sla !== "none" ? badge(SLA_NAMES[sla], SLA_COLOURS[sla]) : ""}
      ${d.severity !== "normal" ? badge(SEVERITY_NAMES[d.severity], "#6a1b9a") : ""}
      ${d.supervised ? badge("督办", "#b71c1c") : ""}
      ${d.reminders ? badge(`催办 ${d.reminders}`, "#e65100") : ""}</p>
    <dl class="kv">
      <dt>类型</dt><dd>${esc(d.type_name)}</dd>
      <dt>来源</dt><dd>${esc(SOURCE_NAMES[d.source] || d.source)}</dd>
      <dt>层级</dt><dd>${esc(EVENT_LEVEL_NAMES[d.level] || d.level)}${d.centre
        ? ` · ${esc(d.centre.name)}` : ""}</dd>
      <dt>网格</dt><dd>${esc(d.grid_code || "—")}${d.nearest_grid
        ? ` <small class="warn">(就近落格 ${esc(Math.round(d.snap_distance_m || 0))} m)</small>` : ""}</dd>
      ${d.address ? `<dt>地址</dt><dd>${esc(d.address)}</dd>` : ""}
      ${d.reporter_name || d.reporter_phone_masked ? `<dt>上报人</dt><dd>${esc(d.reporter_name || "")}
        ${esc(d.reporter_phone_masked || "")}</dd>` : ""}
      <dt>上报时间</dt><dd>${esc(fmtTime(d.reported_at))}</dd>
      ${d.deadline_at ? `<dt>当前时限</dt><dd>${esc(fmtTime(d.deadline_at))}</dd>` : ""}
      ${d.closed_at ? `<dt>办结时间</dt><dd>${esc(fmtTime(d.closed_at))}</dd>` : ""}
    </dl>
    <p class="ev-desc">${esc(d.description)}</p>
    ${photosHtml(d.photos)}
    ${actionsHtml(d)}
    <div id="action-form"></div>
    ${clocksHtml(d.clocks)}
    ${routesHtml(d)}
    ${d.pending_extension ? `<h3>待审批延期</h3><p>申请延长 ${esc(Number(d.pending_extension.hours)
      .toFixed(1))} 小时：${esc(d.pending_extension.reason)}</p>` : ""}
    <h3>处理经过</h3>
    <ol class="timeline">${d.history.slice().reverse().map((h) => historyHtml(h, d.photos))
      .join("")}</ol>
  </div>`);
  bindPhotos($("event-detail"));
  document.querySelectorAll("#event-actions button[data-action]").forEach((b) =>
    b.addEventListener("click", () => openForm(d, b.dataset.action)));
}

/** The actions to offer: an extension can only be decided while one is waiting. */
function offered(d) {
  const deciding = new Set(["approve_extension", "reject_extension"]);
  return d.allowed_actions.filter((a) => !deciding.has(a) || d.pending_extension);
}

function actionsHtml(d) {
  const actions = offered(d);
  if (!actions.length) return "<p class=\"muted\">您对该事件暂无可执行的操作</p>";
  return `<h3>可执行操作</h3><div id="event-actions" class="actions">${actions.map((a) =>
    `<button type="button" class="action" data-action="${esc(a)}">${esc(ACTION_NAMES[a] || a)}</button>`)
    .join("")}</div>`;
}

// A working day is the default office hours (08:30–12:00, 13:30–17:30): 7.5 hours of clock.
const WORKING_DAY_S = 7.5 * 3600;

/** A clock amount in its own unit: working days, working hours or natural time. */
function amount(seconds, unit) {
  if (unit === "working_days") return `${(seconds / WORKING_DAY_S).toFixed(1)} 工作日`;
  if (unit === "working_hours") return `${(seconds / 3600).toFixed(1)} 工作小时`;
  return fmtDuration(seconds);
}

function clocksHtml(clocks) {
  if (!clocks?.length) return "";
  return `<h3>办理时限</h3><table class="clocks"><thead><tr><th>环节</th><th>时限</th><th>已用</th>
    <th>状态</th></tr></thead><tbody>${clocks.map((c) => `<tr>
      <td>${esc(PHASE_NAMES[c.phase] || c.phase)}${c.running ? " <small>(计时中)</small>" : ""}</td>
      <td>${esc(amount(c.limit_seconds, c.unit))}</td>
      <td>${esc(amount(c.elapsed_seconds, c.unit))}</td>
      <td><span class="dot" style="background:${SLA_COLOURS[c.status] || SLA_COLOURS.none}"></span>
        ${esc(SLA_NAMES[c.status] || c.status)}${c.running && c.remaining_seconds < 0
          ? ` 超${esc(amount(-c.remaining_seconds, c.unit))}` : ""}</td></tr>`).join("")}</tbody></table>
    ${clocks.some((c) => c.unit.startsWith("working"))
      ? "<p class=\"muted\">工作时按办公时间计，节假日不计</p>" : ""}`;
}

function unitLabel(u, grid) {
  if (u) return u.name;
  return grid ? `网格 ${grid}` : "—";
}

function routesHtml(d) {
  const routes = d.routes.map((r) => `<li><b>${esc(EVENT_LEVEL_NAMES[r.level] || r.level)}</b>
    → ${esc(unitLabel(r.unit, r.grid_code))}<br><small>依据：${esc(r.reason)}${r.no_rule_matched
      ? " <span class=\"warn\">(无匹配规则)</span>" : ""}</small></li>`).join("");
  const assigned = d.assignments.map((a) => `<li>${a.role === "lead" ? "主办" : "协办"}：
    ${esc(unitLabel(a.unit, a.grid_code))} <small>派遣 ${esc(fmtTime(a.assigned_at))}${a.signed_at
      ? `，签收 ${esc(fmtTime(a.signed_at))}` : ""}${a.ended_at ? `，结束 (${esc(a.end_reason || "")})`
      : ""}</small></li>`).join("");
  return `${routes ? `<h3>流转路由与依据</h3><ul class="routes">${routes}</ul>` : ""}
    ${assigned ? `<h3>承办单位</h3><ul class="routes">${assigned}</ul>` : ""}`;
}

// --- photos: thumbnails that open full size ---------------------------------------------------

/** Thumbnails of ``photos``, each a link to the full-size photo (the viewer opens it in place). */
function thumbsHtml(photos, { small = false } = {}) {
  return `<div class="photos${small ? " mini" : ""}">${photos.map((p, i) => {
    const stage = ACTION_NAMES[p.stage] || p.stage;
    const taken = p.taken_at ? `，拍摄于 ${fmtTime(p.taken_at)}` : "";
    const away = p.taken_distance_m != null ? `，距事件 ${Math.round(p.taken_distance_m)} 米` : "";
    return `<a href="${esc(p.url)}" target="_blank" rel="noopener" class="photo" data-photo="${esc(p.id)}"
      data-caption="${esc(`${stage}照片 ${i + 1}/${photos.length}${taken}${away}`)}"><img
      src="${esc(p.thumbnail_url)}" alt="${esc(`${stage}照片 ${i + 1}`)}" loading="lazy"
      width="${small ? 64 : 96}" height="${small ? 48 : 72}"></a>`;
  }).join("")}</div>`;
}

/** The event's photos by the step they document (上报, 处置, 核查 …). */
function photosHtml(photos) {
  if (!photos?.length) return "";
  const stages = [...new Set(photos.map((p) => p.stage))];
  return `<h3>现场照片 <small>(${photos.length})</small></h3>${stages.map((s) => {
    const mine = photos.filter((p) => p.stage === s);
    return `<div class="photo-stage"><span class="muted">${esc(ACTION_NAMES[s] || s)}</span>
      ${thumbsHtml(mine)}</div>`;
  }).join("")}`;
}

function bindPhotos(root) {
  root.querySelectorAll("a[data-photo]").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    showPhoto(a.getAttribute("href"), a.dataset.caption, a);
  }));
}

/** Show a photo full size in the viewer (a modal dialog); Esc or 关闭 gives focus back. */
function showPhoto(url, caption, opener) {
  const dialog = $("photo-viewer");
  $("photo-full").src = url;
  $("photo-full").alt = caption;
  $("photo-caption").textContent = caption;
  $("photo-original").href = url;
  $("photo-mark").style.backgroundImage = `url(${$("watermark").toDataURL()})`;
  dialog.addEventListener("close", () => opener?.focus(), { once: true });
  dialog.showModal();
}

function historyHtml(h, photos = []) {
  const mine = photos.filter((p) => p.history_id === h.id);
  const extra = [];
  if (h.data?.result) extra.push(`结果：${h.data.result}`);
  if (h.data?.hours) extra.push(`${Number(h.data.hours).toFixed(1)} 小时`);
  if (h.data?.to_level) extra.push(`至${EVENT_LEVEL_NAMES[h.data.to_level] || h.data.to_level}`);
  if (h.data?.route) extra.push(`路由：${h.data.route}`);
  return `<li><time>${esc(fmtTime(h.at))}</time>
    <b>${esc(ACTION_NAMES[h.action] || h.action)}</b>
    ${h.from_state !== h.to_state ? `<small>${esc(STATE_NAMES[h.from_state] || "")} → ${esc(
      STATE_NAMES[h.to_state] || h.to_state)}</small>` : ""}
    <div class="who">${esc(h.actor_name || "系统")}${h.unit_code ? ` · ${esc(h.unit_code)}` : ""}</div>
    ${h.note ? `<div>${esc(h.note)}</div>` : ""}
    ${extra.length ? `<div class="muted">${esc(extra.join("；"))}</div>` : ""}
    ${mine.length ? thumbsHtml(mine, { small: true }) : ""}</li>`;
}

// --- action forms ------------------------------------------------------------------------------

async function unitOptions(d) {
  const opts = new Map(); // value → label
  const add = (value, label) => { if (!opts.has(value)) opts.set(value, label); };
  const latest = d.routes[d.routes.length - 1];
  if (latest?.unit) add(`unit:${latest.unit.code}`, `${latest.unit.name} (建议)`);
  if (latest?.grid_code) add(`grid:${latest.grid_code}`, `网格 ${latest.grid_code} (建议)`);
  for (const r of d.routes) if (r.unit) add(`unit:${r.unit.code}`, r.unit.name);
  for (const a of d.assignments) if (a.unit) add(`unit:${a.unit.code}`, a.unit.name);
  const units = await api("/api/v1/dispatch-units", { params: { region_code: d.township_code } })
    .catch(() => null);
  for (const u of units || []) add(`unit:${u.code}`, u.name);
  if (d.grid_code) add(`grid:${d.grid_code}`, `事发网格 ${d.grid_code}`);
  const village = d.path.split(".").slice(-2, -1)[0];
  const grids = await api("/api/v1/grids", { params: { parent_code: village, limit: 50 } })
    .catch(() => null);
  for (const g of grids?.items || []) add(`grid:${g.code}`, `网格 ${g.name}`);
  return opts;
}

function field(name, required, d, action, units) {
  const star = required ? " <span class=\"req\" aria-hidden=\"true\">*</span>" : "";
  const req = required ? "required" : "";
  switch (name) {
    case "note":
      return `<label for="af-note">${esc(NOTE_LABELS[action] || "意见/备注")}${star}</label>
        <textarea id="af-note" name="note" rows="2" ${req} maxlength="2000"></textarea>`;
    case "result":
      return `<label for="af-result">处置结果${star}</label>
        <textarea id="af-result" name="result" rows="3" ${req} maxlength="2000"></textarea>`;
    case "lead": {
      const o = [...units].map(([v, l]) => `<option value="${esc(v)}">${esc(l)}</option>`).join("");
      return `<label for="af-lead">主办单位${star}</label>
        <select id="af-lead" name="lead" ${req}>${o}<option value="other">其他单位编码…</option></select>
        <label for="af-lead-other" class="sr-only">其他单位编码</label>
        <input id="af-lead-other" placeholder="单位编码，如 zf330302006" hidden>`;
    }
    case "assisting": {
      const o = [...units].map(([v, l]) => `<option value="${esc(v)}">${esc(l)}</option>`).join("");
      return `<label for="af-assisting">协办单位 (可多选)</label>
        <select id="af-assisting" name="assisting" multiple size="3">${o}</select>`;
    }
    case "location":
      return `<fieldset class="loc"><legend>核查位置 (现场核查需在事件 200 米内)</legend>
        <button type="button" id="af-geo" class="small">使用当前位置</button>
        <button type="button" id="af-pick" class="small">在地图上点选</button>
        <label for="af-lon">经度</label><input id="af-lon" inputmode="decimal" size="10">
        <label for="af-lat">纬度</label><input id="af-lat" inputmode="decimal" size="10">
        <input id="af-crs" type="hidden" value="CGCS2000"></fieldset>`;
    case "score":
      return `<label for="af-score">评价 (1–5 分)${star}</label>
        <select id="af-score" ${req}><option value="5">5 很满意</option><option value="4">4 满意</option>
        <option value="3">3 基本满意</option><option value="2">2 不满意</option>
        <option value="1">1 很不满意</option></select>`;
    case "hours":
      return `<label for="af-hours">延长时间 (小时)${star}</label>
        <input id="af-hours" type="number" min="1" max="2160" step="1" value="24" ${req}>`;
    case "to_level":
      return `<label for="af-level">上报至</label><select id="af-level">
        <option value="">上一级 (逐级上报)</option><option value="county">县级指挥室</option>
        <option value="city">市级指挥室 (越级)</option></select>`;
    case "deadline":
      return `<label for="af-deadline">督办期限</label><input id="af-deadline" type="datetime-local">`;
    case "into_event_id":
      return `<label for="af-into">并入事件${star}</label><select id="af-into" ${req}></select>`;
    default:
      return "";
  }
}

async function openForm(d, action) {
  const spec = FORMS[action] || [["note", false]];
  const needsUnits = spec.some(([n]) => n === "lead" || n === "assisting");
  const units = needsUnits ? await unitOptions(d) : new Map();
  const box = $("action-form");
  box.innerHTML = `<form class="action-form" aria-labelledby="af-title" novalidate>
    <h3 id="af-title">${esc(ACTION_NAMES[action] || action)}</h3>
    ${spec.map(([n, r]) => field(n, r, d, action, units)).join("")}
    <p id="af-error" class="error" role="alert"></p>
    <div class="form-buttons"><button type="submit" class="primary">确定${esc(ACTION_NAMES[action]
      || action)}</button> <button type="button" id="af-cancel">取消</button></div></form>`;
  const form = box.querySelector("form");
  form.scrollIntoView({ block: "nearest" });
  $("af-cancel").addEventListener("click", () => { box.innerHTML = ""; });
  $("af-lead")?.addEventListener("change", (e) => { $("af-lead-other").hidden = e.target.value !== "other"; });
  wireLocation();
  if (action === "merge") fillDuplicates(d);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submit(d, action, spec);
  });
}

function wireLocation() {
  $("af-geo")?.addEventListener("click", () => {
    navigator.geolocation?.getCurrentPosition((pos) => {
      $("af-lon").value = pos.coords.longitude.toFixed(6);
      $("af-lat").value = pos.coords.latitude.toFixed(6);
      $("af-crs").value = "WGS84"; // the browser reports WGS84
    }, () => { $("af-error").textContent = "无法获取当前位置，请在地图上点选"; });
  });
  $("af-pick")?.addEventListener("click", () => {
    state.map.getCanvas().style.cursor = "crosshair";
    state.pickPoint = (lngLat) => {
      $("af-lon").value = lngLat.lng.toFixed(6);
      $("af-lat").value = lngLat.lat.toFixed(6);
      $("af-crs").value = "CGCS2000"; // the map's own coordinates
    };
  });
}

async function fillDuplicates(d) {
  const select = $("af-into");
  const dups = await api(`/api/v1/events/${d.id}/duplicates`).catch(() => []);
  select.innerHTML = dups.map((x) => `<option value="${esc(x.id)}">${esc(x.code)}
    ${esc(STATE_NAMES[x.state] || x.state)} (${esc(Math.round(x.distance_m))} m，相隔
    ${esc(Number(x.hours_apart).toFixed(1))} 小时)</option>`).join("")
    || "<option value=\"\">附近没有疑似重复事件</option>";
}

function target(value) {
  const [kind, code] = value.split(":");
  return kind === "grid" ? { grid_code: code } : { org_unit_code: code };
}

function collect(spec) {
  const body = {};
  for (const [name] of spec) {
    if (name === "note" && $("af-note").value.trim()) body.note = $("af-note").value.trim();
    if (name === "result" && $("af-result").value.trim()) body.result = $("af-result").value.trim();
    if (name === "lead") {
      const v = $("af-lead").value;
      const other = $("af-lead-other").value.trim();
      if (v === "other" && other) body.lead = { org_unit_code: other };
      else if (v && v !== "other") body.lead = target(v);
    }
    if (name === "assisting") {
      const lead = $("af-lead").value;
      body.assisting = [...$("af-assisting").selectedOptions].map((o) => o.value)
        .filter((v) => v !== lead).map(target);
    }
    if (name === "location" && $("af-lon").value && $("af-lat").value) {
      body.location = { type: "Point", coordinates: [Number($("af-lon").value), Number($("af-lat").value)] };
      body.crs = $("af-crs").value;
    }
    if (name === "score") body.score = Number($("af-score").value);
    if (name === "hours") body.hours = Number($("af-hours").value);
    if (name === "to_level" && $("af-level").value) body.to_level = $("af-level").value;
    if (name === "deadline" && $("af-deadline").value) {
      body.deadline = `${$("af-deadline").value}:00+08:00`; // entered in Shanghai time
    }
    if (name === "into_event_id" && $("af-into").value) body.into_event_id = Number($("af-into").value);
  }
  return body;
}

function missing(spec, body) {
  const names = { note: "意见", result: "处置结果", lead: "主办单位", score: "评价", hours: "延长时间",
    into_event_id: "并入事件" };
  return spec.filter(([n, req]) => req && body[n] == null).map(([n]) => names[n] || n);
}

async function submit(d, action, spec) {
  const body = collect(spec);
  const lacking = missing(spec, body);
  if (lacking.length) {
    $("af-error").textContent = `请填写：${lacking.join("、")}`;
    return;
  }
  detail.busy = true;
  try {
    const out = await api(`/api/v1/events/${d.id}/actions/${action}`, {
      method: "POST", body: { ...body, version: d.version }, headers: { "If-Match": `"${d.version}"` },
    });
    detail.current = out;
    render(out);
    toast(`${ACTION_NAMES[action] || action}成功：${out.code} 现为「${STATE_NAMES[out.state] || out.state}」`,
      { kind: "ok" });
    document.dispatchEvent(new CustomEvent("gridgov:event-changed", { detail: out }));
  } catch (e) {
    showError(e, d);
  } finally {
    detail.busy = false;
  }
}

async function showError(e, d) {
  if (e instanceof ApiError && e.status === 409) {
    toast("该事件已被他人处理，已刷新为最新状态", { kind: "warn" });
    await openEvent(d.id);
    return;
  }
  const fields = (e.body?.errors || []).map((x) => x.message).join("；");
  $("af-error").textContent = `操作失败：${fields || e.message}`;
}
