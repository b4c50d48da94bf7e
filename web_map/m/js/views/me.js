// 我的: profile, work records, message settings and the app's own status (GPS permission,
// secure context, offline cache, last upload, what is queued).

import { api } from "../../../js/api.js";
import { config, saveConfig } from "../config.js";
import { kvGet, kvSet } from "../db.js";
import { permissionState } from "../location.js";
import { $, esc, fmtDistance, fmtDuration, fmtTime } from "../util.js";

const POSITIONS = { grid_instructor: "网格指导员", grid_leader: "网格长", grid_worker: "专职网格员",
  part_time_grid_worker: "兼职网格员", party_group_leader: "党小组长",
  command_centre_staff: "指挥室", department_staff: "部门人员" };
const PERMISSION = { granted: "已允许", prompt: "未询问（开始巡查时会询问）", denied: "已拒绝：请在浏览器设置中允许定位",
  unknown: "未知" };
let wired = false;

async function cached(key, path, params) {
  try {
    const v = await api(path, { params });
    await kvSet(key, v);
    return v;
  } catch {
    return kvGet(key);
  }
}

async function profile(app) {
  const p = await cached(`profile:${app.me.username}`, "/api/v1/mobile/profile");
  if (!p) { $("me-profile").innerHTML = '<p class="muted">离线，暂无资料</p>'; return; }
  const f = p.figures;
  $("me-profile").innerHTML = `<dl class="kv">
    <dt>姓名</dt><dd>${esc(p.display_name)}${p.display_name === p.username ? "" : `（${esc(p.username)}）`}</dd>
    <dt>岗位</dt><dd>${p.positions.map((x) => `${POSITIONS[x.position] || esc(x.position)} · ${esc(x.region_name || x.region_code)}`).join("<br>") || "—"}</dd>
    <dt>今日巡查</dt><dd>${f.patrols_today} 次 · ${fmtDistance(f.mileage_today_m)} · ${fmtDuration(f.duration_today_s * 1000)}</dd>
    <dt>本月</dt><dd>上报 ${f.reported_month} 件 · 处置 ${f.handled_month} 件</dd></dl>`;
}

async function records(app) {
  const [patrols, mine] = await Promise.all([
    cached(`records:${app.me.username}`, "/api/v1/patrols/sessions", { user_id: app.me.user_id, limit: 10 }),
    cached(`mine:${app.me.username}`, "/api/v1/events", { queue: "mine", limit: 10 }),
  ]);
  const p = patrols && patrols.items ? patrols.items : [];
  const e = mine && mine.items ? mine.items : [];
  $("me-records").innerHTML = `<h4 class="muted">巡查记录</h4>${p.length ? `<ul class="list">${p.map((s) => `<li>
      <span class="title">${fmtTime(s.started_at)} · ${fmtDistance(s.mileage_m)}</span>
      <span class="meta">时长 ${fmtDuration(s.duration_s * 1000)} · 网格内 ${s.in_grid_time_share === null ? "—" : Math.round(s.in_grid_time_share * 100) + "%"}
      · 覆盖 ${s.coverage_share === null ? "—" : Math.round(s.coverage_share * 100) + "%"}</span></li>`).join("")}</ul>`
    : '<p class="empty">暂无巡查记录（结束巡查后约半分钟生成）</p>'}
    <h4 class="muted">我上报的事件</h4>${e.length ? `<ul class="list">${e.map((x) => `<li><a href="#event/${x.id}">
      <span class="title">${esc(x.title)}</span><span class="meta">${esc(x.code)} · ${fmtTime(x.reported_at)}</span></a></li>`).join("")}</ul>`
    : '<p class="empty">本月暂无上报</p>'}`;
}

function settings() {
  const box = (k, text) => `<label class="check"><input type="checkbox" name="${k}" ${config[k] ? "checked" : ""}> ${text}</label>`;
  $("me-settings").innerHTML = `${box("notifyTasks", "新任务、催办、督办时提醒")}
    ${box("notifyBroadcasts", "收到通知公告时提醒")}${box("vibrate", "提醒时振动")}
    <label for="set-interval">巡查采样间隔（下次开始巡查时生效）</label>
    <select id="set-interval" name="sampleSeconds">${[5, 10, 15, 30].map((s) =>
      `<option value="${s}" ${config.sampleSeconds === s ? "selected" : ""}>${s} 秒</option>`).join("")}
      ${[5, 10, 15, 30].includes(config.sampleSeconds) ? "" : `<option value="${config.sampleSeconds}" selected>${config.sampleSeconds} 秒（调试）</option>`}</select>`;
}

export async function status(app) {
  const [perm, counts, last] = await Promise.all([permissionState(), app.outbox.counts(), app.outbox.lastUpload()]);
  const sw = "serviceWorker" in navigator ? (navigator.serviceWorker.controller ? "已启用（可离线打开）" : "正在准备…")
    : "不可用（需要 HTTPS）";
  let storage = "";
  try {
    const est = await navigator.storage.estimate();
    storage = `${(est.usage / 1048576).toFixed(1)} MB`;
  } catch { storage = "—"; }
  const row = (k, v, id) => `<dt>${k}</dt><dd${id ? ` id="${id}"` : ""}>${v}</dd>`;
  $("me-status").innerHTML = [
    row("定位权限", PERMISSION[perm] || perm, "status-gps"),
    row("定位来源", `${esc(app.source.name)}（${esc(app.source.crs)}）`),
    row("安全连接", window.isSecureContext ? `<span class="ok">是（${window.location.protocol === "https:" ? "HTTPS" : "本机地址"}）</span>`
      : '<span class="bad">否：定位与离线不可用，请管理员启用 HTTPS</span>', "status-secure"),
    row("离线缓存", sw, "status-sw"),
    row("网络", navigator.onLine && !app.outbox.offline ? "在线" : "离线"),
    row("上次上传", last ? fmtTime(new Date(last.at).toISOString()) : "尚未上传", "status-last"),
    row("待上传轨迹点", `${counts.points}${counts.refusedBatches ? `（${counts.refusedBatches} 批被拒绝）` : ""}`, "status-points"),
    row("待发送上报", `${counts.outbox}${counts.refused ? `（${counts.refused} 条被拒绝）` : ""}`, "status-outbox"),
    row("本次上传次数", String(app.outbox.uploads)),
    row("本机存储", storage),
  ].join("");
}

function wire(app) {
  if (wired) return;
  wired = true;
  $("me-settings").addEventListener("change", (ev) => {
    const t = ev.target;
    saveConfig({ [t.name]: t.type === "checkbox" ? t.checked : Number(t.value) });
    app.notice("设置已保存");
  });
}

export function onQueue(app) {
  status(app);
}

export function show(app) {
  wire(app);
  settings();
  status(app);
  profile(app);
  records(app);
}
