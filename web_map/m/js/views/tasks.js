// 我的任务: events waiting for me (待签收, 待办理, 待核查), those reminded or supervised (催办,
// 督办), and broadcasts (通知公告); quick actions to start a patrol or report an event.

import { api } from "../../../js/api.js";
import { config } from "../config.js";
import { kvGet, kvSet } from "../db.js";
import { $, esc, fmtTime } from "../util.js";

const STATES = { dispatched: "待签收", signed: "待办理", handled: "待核查" };
const SLA = { red: "已超时", amber: "即将超时", green: "正常" };
let lastPoll = 0;
let wired = false;

function wire(app) {
  if (wired) return;
  wired = true;
  $("quick-patrol").addEventListener("click", async () => {
    if (!app.patrol.state.active) await app.patrol.start();
    idlePolling(app, false); // the patrol's uploads refresh the tasks now
    window.location.hash = "#patrol";
  });
  $("quick-report").addEventListener("click", () => { window.location.hash = "#report"; });
}

function item(e) {
  const urged = e.supervised ? '<span class="tag urged">督办</span>'
    : e.reminders ? `<span class="tag urged">催办 ${e.reminders}</span>` : "";
  const sla = e.sla_status ? `<span class="tag ${e.sla_status}">${SLA[e.sla_status]}</span>` : "";
  return `<li><a href="#event/${e.id}"><span class="title">${esc(e.title)}</span>
    <span class="meta">${urged}${sla}<span class="tag">${STATES[e.state] || esc(e.state)}</span>
    ${esc(e.type_name)} · ${esc(e.code)}${e.deadline_at ? ` · 时限 ${fmtTime(e.deadline_at)}` : ""}</span></a></li>`;
}

function section(title, items, empty) {
  const body = items.length ? `<ul class="list">${items.map(item).join("")}</ul>`
    : `<p class="empty">${empty}</p>`;
  return `<h3 class="section-title"><span>${title}</span><span class="small">${items.length} 件</span></h3>${body}`;
}

function broadcasts(list) {
  if (!list.length) return '<h3>通知公告</h3><p class="empty">暂无通知</p>';
  return `<h3>通知公告</h3><ul class="list">${list.map((b) => `<li>
    <details class="broadcast" data-id="${b.id}" ${b.read ? "" : "data-unread"}>
      <summary>${b.read ? "" : '<span class="tag red">未读</span>'}${esc(b.title)}</summary>
      <p>${esc(b.body)}</p><p class="meta">${esc(b.sender_name)} · ${fmtTime(b.sent_at)}</p>
    </details></li>`).join("")}</ul>`;
}

function render(app, t, stale) {
  $("tasks-stale").hidden = !stale;
  $("tasks-stale").textContent = stale ? `离线：显示 ${fmtTime(stale)} 的任务` : "";
  $("tasks-body").innerHTML = [
    t.supervised.length ? section("催办 / 督办", t.supervised, "") : "",
    section("待签收", t.to_sign, "没有待签收的事件"),
    section("待办理", t.to_handle, "没有待办理的事件"),
    section("待核查", t.to_verify, "没有待核查的事件"),
    broadcasts(t.broadcasts),
  ].join("");
  for (const d of $("tasks-body").querySelectorAll("details.broadcast[data-unread]")) {
    d.addEventListener("toggle", () => {
      if (d.open) api(`/api/v1/mobile/broadcasts/${d.dataset.id}/read`, { method: "POST" }).catch(() => null);
    }, { once: true });
  }
  const n = t.to_sign.length + t.to_handle.length + t.to_verify.length;
  $("badge").hidden = !n;
  $("badge").textContent = String(n);
  $("quick-patrol").textContent = app.patrol.state.active ? "巡查中…" : "开始巡查";
}

function signal(before, t) {
  if (!before) return;
  const ids = (x) => new Set([...x.to_sign, ...x.to_handle, ...x.to_verify].map((e) => e.id));
  const had = ids(before);
  const fresh = [...ids(t)].some((id) => !had.has(id));
  const news = t.broadcasts.some((b) => !before.broadcasts.find((o) => o.id === b.id));
  if (((fresh && config.notifyTasks) || (news && config.notifyBroadcasts)) && config.vibrate && navigator.vibrate) {
    navigator.vibrate([200, 100, 200]);
  }
}

export async function load(app) {
  const key = `tasks:${app.me.username}`;
  const before = await kvGet(key);
  // Stamped when asked, not answered: the next refresh is due a full period after this one.
  lastPoll = Date.now();
  try {
    const t = await api("/api/v1/mobile/tasks");
    await kvSet(key, { ...t, at: new Date().toISOString() });
    signal(before, t);
    if (app.view === "tasks") render(app, t, null);
    return t;
  } catch {
    if (before && app.view === "tasks") render(app, before, before.at);
    return before;
  }
}

// Called by the patrol tick: refresh tasks right after an upload (the radio is awake anyway),
// with half a sample of slack like the uploads themselves.
export function maybePoll(app, uploaded) {
  const due = (config.taskPollSeconds - config.sampleSeconds / 2) * 1000;
  if (uploaded && Date.now() - lastPoll >= due) load(app);
}

export function show(app) {
  wire(app);
  load(app);
}

export function refresh(app) {
  return load(app);
}

// Outside a patrol nothing else wakes the page: poll on a timer of its own while visible.
let idleTimer = null;

export function idlePolling(app, on) {
  clearInterval(idleTimer);
  idleTimer = null;
  if (!on) return;
  idleTimer = setInterval(() => {
    if (document.visibilityState === "visible" && !app.patrol.state.active) load(app);
  }, config.taskPollSeconds * 1000);
}
