// 视图管理: the leader view (领导视图) and the work view (工作视图), as pages over the map.
import { api } from "./api.js";
import { barOption, closureOption, draw, pieOption, rankingOption } from "./charts.js";
import { bindEventItems, eventItemHtml, setQueue } from "./events.js";
import {
  COUNT_NAMES, GRID_TYPES, QUEUE_NAMES, SEVERITY_NAMES, SLA_COLOURS, SOURCE_NAMES, STATE_NAMES,
  TODO_QUEUES,
} from "./labels.js";
import { OPEN_STATES, leaderData, rootCode } from "./figures.js";
import { showIn } from "./messages.js";
import { state } from "./state.js";
import { $, esc, fmtDuration, fmtKm, fmtNum, fmtPct, fmtTime } from "./util.js";

let leaderTimer = null;

const figure = (label, value, note = "") => `<div class="figure"><span class="label">${esc(label)}</span>
  <b>${esc(value)}</b>${note ? `<small>${esc(note)}</small>` : ""}</div>`;

// --- leader view ---------------------------------------------------------------------------------

export async function showLeader() {
  clearInterval(leaderTimer);
  leaderTimer = setInterval(() => {
    if ($("view-leader").hidden) clearInterval(leaderTimer);
    else loadLeader();
  }, 60_000);
  await loadLeader();
}

async function loadLeader() {
  const code = rootCode(state.me);
  const d = await leaderData(code, state.me);
  $("leader-region").textContent = d.info ? d.info.name : "";
  const counts = d.info?.counts || {};
  const rows = d.trend?.rows || [];
  const reported = rows.reduce((s, r) => s + r.n, 0);
  const closed = rows.reduce((s, r) => s + (r.closed || 0), 0);
  const openTotal = (d.open || []).reduce((s, p) => s + (p?.total || 0), 0);
  const overdue = d.overdue?.total ?? 0;
  $("leader-figures").innerHTML = [
    ...Object.entries(COUNT_NAMES).filter(([k]) => counts[k] != null)
      .map(([k, name]) => figure(name, fmtNum(counts[k]))),
    figure("近一年事件", fmtNum(reported)), figure("近一年办结率", fmtPct(reported ? closed / reported : null)),
    figure("在办事件", fmtNum(openTotal)), figure("超时在办", fmtNum(overdue)),
  ].join("");
  const charts = [
    draw($("leader-closure"), closureOption(rows)),
    renderLevels(d.open),
    draw($("leader-sources"), pieOption((d.sources || []).map((p, i) => ({
      name: SOURCE_NAMES[Object.keys(SOURCE_NAMES)[i]], value: p?.total || 0 })), { name: "事件来源" })),
  ];
  const types = Object.keys(GRID_TYPES);
  const gridTotal = (d.grids || []).reduce((s, g) => s + (g?.total || 0), 0);
  $("leader-grids").innerHTML = `<div class="figures small">${figure("网格总数", fmtNum(gridTotal))}${
    (d.grids || []).map((g, i) => figure(GRID_TYPES[types[i]], fmtNum(g?.total))).join("")}${
    d.patrol ? figure("网格员", fmtNum(d.patrol.workers)) : ""}</div>`;
  const p = d.patrol;
  $("leader-visits").innerHTML = p ? `<div class="figures small">
    ${figure("在线网格员", `${p.online}/${p.workers}`, fmtPct(p.online_rate))}
    ${figure("已巡查人数", fmtNum(p.patrolled), `未巡查 ${p.not_patrolled}`)}
    ${figure("巡查次数", fmtNum(p.sessions))}${figure("巡查里程", fmtKm(p.mileage_m))}
    ${figure("巡查时长", fmtDuration(p.duration_s))}${figure("达标人日", `${p.worker_days_met}/${p.worker_days}`)}
    </div>` : "<p class=\"muted\">无巡查数据</p>";
  if (d.ranking) charts.push(draw($("leader-ranking"), rankingOption(d.ranking.rows)));
  await Promise.all(charts);
  $("view-leader").dataset.loaded = String(Date.now());
}

function renderLevels(open) {
  const items = (open || []).flatMap((p) => p?.items || []);
  const bySeverity = Object.keys(SEVERITY_NAMES).map((s) => ({ name: SEVERITY_NAMES[s],
    value: items.filter((e) => e.severity === s).length,
    color: { normal: SLA_COLOURS.green, major: SLA_COLOURS.amber, urgent: SLA_COLOURS.red }[s] }));
  const byState = OPEN_STATES.map((s, i) => ({ name: STATE_NAMES[s], value: open?.[i]?.total || 0 }));
  return draw($("leader-levels"), {
    ...barOption(bySeverity),
    title: { text: byState.map((x) => `${x.name} ${x.value}`).join("  "), bottom: 0, left: "center",
      textStyle: { fontSize: 11, fontWeight: "normal", color: "#5b6675" } },
    grid: { left: 40, right: 16, top: 16, bottom: 48 },
  });
}

// --- work view -----------------------------------------------------------------------------------

export async function showWork() {
  const counts = state.events?.counts || await api("/api/v1/events/queues").catch(() => ({}));
  $("work-dashboard").innerHTML = [...TODO_QUEUES, "done", "closed", "mine"].map((q) =>
    `<button type="button" class="figure" data-q="${q}"><span class="label">${esc(QUEUE_NAMES[q])}</span>
      <b>${fmtNum(counts[q] || 0)}</b></button>`).join("");
  $("work-dashboard").querySelectorAll("button[data-q]").forEach((b) => b.addEventListener("click", () => {
    window.location.hash = "#/map";
    state.openTab?.("pane-events");
    setQueue(b.dataset.q);
  }));
  const lists = await Promise.all(TODO_QUEUES.filter((q) => counts[q]).map((q) =>
    api("/api/v1/events", { params: { queue: q, limit: 20 } }).catch(() => ({ items: [] }))));
  const todos = lists.flatMap((l) => l.items)
    .sort((a, b) => (a.deadline_at || "9").localeCompare(b.deadline_at || "9"));
  $("work-todos").innerHTML = todos.map(eventItemHtml).join("") || "<li class=\"muted\">暂无待办事件</li>";
  bindEventItems($("work-todos"));
  $("work-todos").querySelectorAll("button[data-id]").forEach((b) => b.addEventListener("click", () => {
    window.location.hash = "#/map";
  }));
  showAnnouncements();
  const nudges = todos.filter((e) => e.supervised || e.reminders).map((e) =>
    `<li><button type="button" class="linkish" data-id="${esc(e.id)}">${esc(e.code)} ${e.supervised ? "已被督办"
      : `被催办 ${e.reminders} 次`}：${esc(e.title)}</button></li>`).join("");
  $("work-nudges").innerHTML = nudges;
  $("work-nudges").querySelectorAll("button[data-id]").forEach((b) => b.addEventListener("click", () => {
    window.location.hash = "#/map";
    document.dispatchEvent(new CustomEvent("gridgov:open-event", { detail: Number(b.dataset.id) }));
  }));
  showIn($("work-messages"), { limit: 20 });
}

/** The broadcasts (通知公告) of the user's jurisdiction; unread first in bold, a click marks read. */
async function showAnnouncements() {
  const box = $("work-announcements");
  const items = await api("/api/v1/mobile/broadcasts").catch(() => []);
  if (!items.length) {
    box.innerHTML = "<p class=\"muted\">暂无通知公告</p>";
    return;
  }
  box.innerHTML = `<ul class="announcements">${items.slice(0, 20).map((b) => `
    <li class="${b.read ? "" : "unread"}"><details data-id="${esc(b.id)}">
      <summary>${esc(b.title)} <span class="muted">${esc(b.sender_name)} · ${esc(fmtTime(b.sent_at))}</span></summary>
      <p>${esc(b.body)}</p></details></li>`).join("")}</ul>`;
  box.querySelectorAll("details[data-id]").forEach((d) => d.addEventListener("toggle", () => {
    if (!d.open || !d.parentElement.classList.contains("unread")) return;
    d.parentElement.classList.remove("unread");
    api(`/api/v1/mobile/broadcasts/${d.dataset.id}/read`, { method: "POST" }).catch(() => {});
  }), { once: false });
}

// A message changes the to-dos (a dispatch, a return …) or brings a notice: show them.
let workTimer = null;
document.addEventListener("gridgov:message", () => {
  clearTimeout(workTimer);
  workTimer = setTimeout(() => { if (!$("view-work").hidden) showWork(); }, 500);
});
// An event opened from a view (a message, a toast) shows on the map.
document.addEventListener("gridgov:open-event", () => {
  if (!$("view-work").hidden || !$("view-leader").hidden) window.location.hash = "#/map";
});
