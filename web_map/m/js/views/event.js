// 事件详情 on the phone: what happened, photos, history, and the worker's actions — 签收, 处置
// (result + photos), 核查 (the current position goes with it; the server checks the distance),
// 申请退回, 申请延期. Actions go through the outbox, so they are sent once even offline.

import { api } from "../../../js/api.js";
import { all, kvGet, kvSet } from "../db.js";
import { haversine, toDisplay } from "../geo.js";
import { $, esc, fmtTime } from "../util.js";
import { PhotoPicker, currentFix, fixLabel } from "./common.js";

const STATE_NAMES = { reported: "待受理", refused: "不予受理", accepted: "待派遣", dispatched: "待签收",
  signed: "处置中", return_requested: "申请退回", returned: "已退回", handled: "待核查",
  verified: "核查通过", closed: "已办结", evaluated: "已评价", merged: "已合并" };
const ACTION_NAMES = { report: "上报", accept: "受理", refuse: "不予受理", dispatch: "派遣", sign: "签收",
  handle: "处置", verify_pass: "核查通过", verify_fail: "核查不通过", close: "办结", evaluate: "评价",
  request_return: "申请退回", approve_return: "同意退回", reject_return: "驳回退回", reassign: "改派",
  request_extension: "申请延期", approve_extension: "同意延期", reject_extension: "驳回延期",
  escalate: "上报上级", remind: "催办", supervise: "督办", resolve_on_spot: "就地解决", merge: "合并" };
const STAGES = { report: "上报", handle: "处置", verify_pass: "核查", verify_fail: "核查" };

let current = null;
let picker = null;
let wired = false;

function wire() {
  if (wired) return;
  wired = true;
  $("event-back").addEventListener("click", () => { window.location.hash = "#tasks"; });
}

function header(e) {
  return `<dl class="kv card">
    <dt>状态</dt><dd><span class="tag">${STATE_NAMES[e.state] || esc(e.state)}</span>
      ${e.supervised ? '<span class="tag urged">督办</span>' : ""}${e.reminders ? `<span class="tag urged">催办 ${e.reminders}</span>` : ""}</dd>
    <dt>编号</dt><dd>${esc(e.code)}</dd>
    <dt>类型</dt><dd>${esc(e.type_name)}</dd>
    <dt>描述</dt><dd>${esc(e.description)}</dd>
    ${e.address ? `<dt>地址</dt><dd>${esc(e.address)}</dd>` : ""}
    <dt>网格</dt><dd>${esc(e.grid_code || "")}</dd>
    <dt>上报</dt><dd>${fmtTime(e.reported_at)}</dd>
    ${e.deadline_at ? `<dt>时限</dt><dd>${fmtTime(e.deadline_at)}</dd>` : ""}
  </dl>`;
}

function photos(list) {
  if (!list.length) return "";
  return `<h3>照片</h3><div class="photos-view">${list.map((p, i) =>
    `<img src="${p.url}" alt="${STAGES[p.stage] || esc(p.stage)}照片 ${i + 1}" loading="lazy">`).join("")}</div>`;
}

function history(e) {
  return `<h3>办理过程</h3><ol class="history">${e.history.map((h) => `<li>
    <b>${ACTION_NAMES[h.action] || esc(h.action)}</b> · ${esc(h.actor_name || "")} · ${fmtTime(h.at)}
    ${h.note ? `<br>${esc(h.note)}` : ""}${h.data && h.data.result ? `<br>结果：${esc(h.data.result)}` : ""}</li>`).join("")}</ol>`;
}

function actions(e) {
  const can = new Set(e.allowed_actions);
  const parts = [];
  if (can.has("sign")) parts.push('<button type="button" class="primary big" data-act="sign">签收</button>');
  if (can.has("handle")) {
    parts.push(`<form class="card" data-form="handle"><h3>处置</h3>
      <label for="ev-result">处置结果</label><textarea id="ev-result" rows="3" required maxlength="2000"></textarea>
      ${photoInputs("ev")}<button type="submit" class="primary">提交处置</button></form>`);
  }
  if (can.has("verify_pass")) {
    parts.push(`<form class="card" data-form="verify"><h3>现场核查</h3>
      <p id="ev-here" class="muted">提交时会带上您当前的位置，须在事件地点附近。</p>
      <label for="ev-note">核查意见</label><textarea id="ev-note" rows="2" maxlength="2000"></textarea>
      ${photoInputs("ev")}
      <div class="row"><button type="submit" class="primary" data-verify="verify_pass">核查通过</button>
      <button type="submit" class="danger" data-verify="verify_fail">核查不通过</button></div></form>`);
  }
  if (can.has("request_return")) {
    parts.push(`<form class="card" data-form="request_return"><label for="ev-return">退回理由</label>
      <textarea id="ev-return" rows="2" required maxlength="2000"></textarea>
      <button type="submit" class="secondary">申请退回</button></form>`);
  }
  if (can.has("request_extension")) {
    parts.push(`<form class="card" data-form="request_extension"><label for="ev-hours">延期小时数</label>
      <input id="ev-hours" type="number" min="1" max="2160" value="24" required>
      <label for="ev-ext">延期理由</label><textarea id="ev-ext" rows="2" required maxlength="2000"></textarea>
      <button type="submit" class="secondary">申请延期</button></form>`);
  }
  return parts.length ? `<h3>办理</h3><div class="card-stack">${parts.join("")}</div>
    <p id="event-error" class="error" role="alert"></p>` : "";
}

function photoInputs(prefix) {
  return `<fieldset class="photos"><legend>照片</legend><div class="row">
    <label class="button secondary" for="${prefix}-camera">拍照</label>
    <input id="${prefix}-camera" type="file" accept="image/*" capture="environment" class="file">
    <label class="button secondary" for="${prefix}-gallery">相册</label>
    <input id="${prefix}-gallery" type="file" accept="image/*" multiple class="file"></div>
    <ul id="${prefix}-thumbs" class="thumbs" aria-label="已选照片"></ul></fieldset>`;
}

async function queue(app, action, body, withPhotos = false) {
  const e = current;
  await app.outbox.enqueue({ kind: "action", url: `/api/v1/mobile/events/${e.id}/actions/${action}`,
    body: { version: e.version, ...body }, photos: withPhotos && picker ? picker.blobs() : [],
    label: `${ACTION_NAMES[action]}：${e.code}` });
  if (picker) picker.reset();
  app.notice(navigator.onLine ? `${ACTION_NAMES[action]}已提交，正在发送…`
    : `当前离线：${ACTION_NAMES[action]}已保存，联网后自动提交。`);
  await app.outbox.flush();
}

async function verify(app, action) {
  const err = $("event-error");
  let fix;
  try {
    fix = await currentFix(app, 5_000);
  } catch {
    err.textContent = "无法获取当前位置：核查必须在现场定位后提交";
    return;
  }
  const e = current;
  if (e.lon !== null) {
    const d = haversine(toDisplay(fix.lon, fix.lat, fix.crs), [e.lon, e.lat]);
    $("ev-here").textContent = `当前位置 ${fixLabel(fix)}，距事件约 ${Math.round(d)} 米`;
  }
  const note = $("ev-note").value.trim();
  if (action === "verify_fail" && !note) { err.textContent = "核查不通过请填写原因"; return; }
  await queue(app, action, { note: note || null, crs: fix.crs,
    location: { type: "Point", coordinates: [fix.lon, fix.lat] } }, true);
}

function bind(app) {
  const body = $("event-body");
  const err = () => $("event-error");
  if ($("ev-camera")) picker = new PhotoPicker([$("ev-camera"), $("ev-gallery")], $("ev-thumbs"), (m) => { err().textContent = m; });
  const sign = body.querySelector('[data-act="sign"]');
  if (sign) sign.addEventListener("click", () => queue(app, "sign", {}));
  const on = (name, fn) => {
    const f = body.querySelector(`[data-form="${name}"]`);
    if (f) f.addEventListener("submit", (ev) => { ev.preventDefault(); fn(ev); });
  };
  on("handle", () => queue(app, "handle", { result: $("ev-result").value.trim() }, true));
  on("verify", (ev) => verify(app, ev.submitter ? ev.submitter.dataset.verify : "verify_pass"));
  on("request_return", () => queue(app, "request_return", { note: $("ev-return").value.trim() }));
  on("request_extension", () => queue(app, "request_extension", {
    hours: Number($("ev-hours").value), note: $("ev-ext").value.trim() }));
}

async function load(app, id) {
  let e;
  let list = [];
  try {
    [e, list] = await Promise.all([api(`/api/v1/events/${id}`), api(`/api/v1/mobile/events/${id}/photos`)]);
    await kvSet(`event:${id}`, { e, list });
  } catch (err) {
    const cached = await kvGet(`event:${id}`);
    if (!cached) {
      $("event-body").innerHTML = `<p class="error">${err.status === 404 ? "没有这个事件，或不在您的辖区" : "离线，且此前未打开过这个事件"}</p>`;
      return;
    }
    ({ e, list } = cached);
  }
  current = e;
  $("event-title").textContent = e.title;
  $("event-body").innerHTML = header(e) + photos(list) + actions(e) + history(e);
  bind(app);
}

export function onSent(app, item) {
  if (item.kind === "action" && current && app.view === "event" && item.url.includes(`/events/${current.id}/`)) {
    app.notice(`${item.label} 已送达`);
    load(app, current.id);
  }
}

// Server messages are English; the one a worker meets on site is said in Chinese.
function zh(text) {
  const m = /you are (\d+) m from the event.* at most (\d+) m/.exec(text || "");
  if (m) return `您距事件约 ${m[1]} 米，现场核查须在 ${m[2]} 米以内，请到现场后再核查`;
  const s = /is at version \d+ \(state (\w+)\)/.exec(text || "");
  return s ? `事件已在此期间变为「${STATE_NAMES[s[1]] || s[1]}」，此操作不再适用，请返回任务查看` : text;
}

export function onQueue(app) {
  // A refused action (stale version, too far away) is shown where the worker is looking.
  all("outbox").then((items) => {
    const refused = items.find((i) => i.refused && current && i.url.includes(`/events/${current.id}/`));
    const err = $("event-error");
    if (refused && err) err.textContent = `${refused.label} 被拒绝：${zh(refused.refused)}`;
  });
}

export function show(app, id) {
  wire();
  picker = null;
  $("event-body").innerHTML = '<p class="muted">加载中…</p>';
  load(app, Number(id));
}
