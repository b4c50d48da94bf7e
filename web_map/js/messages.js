// Message center (消息中心): the bell's unread count, a dropdown of the latest messages with
// mark read and mark all read, and new messages pushed live over SSE (EventSource); while the
// stream is down the count is polled instead.
//
// The bell used to show only this page's own notices (notify.js, which still makes the
// toasts of the events poll): when the server has a message center this module takes the
// bell over — its click opens the server's messages, and its badge shows their unread count.
import { api } from "./api.js";
import { state } from "./state.js";
import { $, esc, fmtTime, toast } from "./util.js";

const POLL_MS = 30_000;
const RETRY_STREAM_MS = 60_000;
const LIST_LIMIT = 30;

const msg = { unread: 0, items: [], loaded: false, source: null, timer: null, live: false };
state.messages = msg;

/** Start the message center if the server has one (else leave the bell to notify.js). */
export async function init() {
  try {
    const count = await api("/api/v1/messages/unread-count");
    msg.unread = count.unread;
  } catch (e) {
    return;
  }
  const bell = $("bell");
  // Capture phase on the bell itself runs before notify.js's listener, which it stops.
  bell.addEventListener("click", onBell, { capture: true });
  document.addEventListener("gridgov:notified", renderBadge);
  document.addEventListener("click", (ev) => {
    const pop = $("messages-pop");
    if (!pop.hidden && !pop.contains(ev.target) && !bell.contains(ev.target)) closePop();
  });
  $("messages-pop").addEventListener("click", onPopClick);
  renderBadge();
  connect();
}

function renderBadge() {
  const badge = $("bell-count");
  badge.hidden = msg.unread <= 0;
  badge.textContent = msg.unread > 99 ? "99+" : String(Math.max(0, msg.unread));
  $("bell").setAttribute("aria-label", `消息，${msg.unread} 条未读`);
}

function setUnread(n) {
  msg.unread = Math.max(0, n);
  renderBadge();
}

// --- live: EventSource, polling while it is down -------------------------------------------

function connect() {
  if (!window.EventSource) return startPolling();
  const es = new EventSource("/api/v1/messages/stream");
  msg.source = es;
  es.addEventListener("open", () => { msg.live = true; stopPolling(); });
  es.addEventListener("unread", (e) => setUnread(JSON.parse(e.data).unread));
  es.addEventListener("message", (e) => arrived(JSON.parse(e.data)));
  es.addEventListener("read", (e) => {
    const d = JSON.parse(e.data);
    for (const m of msg.items) {
      if (d.read === "all" || d.read.includes(m.id)) m.read_at = m.read_at || new Date().toISOString();
    }
    setUnread(d.unread);
    if (!$("messages-pop").hidden) renderList();
  });
  es.addEventListener("error", () => {
    // The browser retries a dropped stream by itself; a refused one (401, 404, 503) is CLOSED.
    msg.live = false;
    startPolling();
    if (es.readyState === EventSource.CLOSED) {
      msg.source = null;
      setTimeout(connect, RETRY_STREAM_MS);
    }
  });
}

function arrived(m) {
  if (msg.items.some((x) => x.id === m.id)) return;
  msg.items.unshift({ ...m, read_at: null });
  msg.items.length = Math.min(msg.items.length, 100);
  setUnread(msg.unread + 1);
  if (!$("messages-pop").hidden) renderList();
  if (!m.muted) toast(m.title, { kind: "info", onClick: () => openMessage(m.id) });
  document.dispatchEvent(new CustomEvent("gridgov:message", { detail: m }));
}

function startPolling() {
  if (msg.timer) return;
  msg.timer = setInterval(async () => {
    if (document.hidden) return;
    try {
      setUnread((await api("/api/v1/messages/unread-count")).unread);
    } catch (e) { /* the server may be restarting; the next tick tries again */ }
  }, POLL_MS);
}

function stopPolling() {
  clearInterval(msg.timer);
  msg.timer = null;
}

// --- the dropdown --------------------------------------------------------------------------

async function onBell(ev) {
  ev.stopImmediatePropagation();
  const pop = $("messages-pop");
  if (!pop.hidden) return closePop();
  pop.hidden = false;
  $("bell").setAttribute("aria-expanded", "true");
  renderList();
  try {
    const page = await api("/api/v1/messages", { params: { limit: LIST_LIMIT } });
    msg.items = page.items;
    msg.loaded = true;
    setUnread(page.unread);
  } catch (e) {
    $("messages-list").innerHTML = `<li class="muted">${esc(e.message)}</li>`;
    return;
  }
  renderList();
}

function closePop() {
  $("messages-pop").hidden = true;
  $("bell").setAttribute("aria-expanded", "false");
}

function renderList() {
  const list = $("messages-list");
  if (!msg.items.length) {
    list.innerHTML = `<li class="muted">${msg.loaded ? "暂无消息" : "加载中…"}</li>`;
    return;
  }
  list.innerHTML = msg.items.map((m) => `<li class="msg${m.read_at ? "" : " unread"}"
    data-id="${esc(m.id)}"><button type="button" class="linkish" data-open="${esc(m.id)}">${
      esc(m.title)}</button>${m.body ? `<div class="msg-body">${esc(m.body)}</div>` : ""}
    <small class="muted">${esc(fmtTime(m.created_at))}</small>${m.read_at ? ""
      : ` <button type="button" class="small" data-read="${esc(m.id)}">标为已读</button>`}</li>`).join("");
}

async function onPopClick(ev) {
  const target = ev.target.closest("button");
  if (!target) return;
  if (target.id === "messages-read-all") {
    const out = await api("/api/v1/messages/read-all", { method: "POST" }).catch(() => null);
    if (!out) return;
    msg.items.forEach((m) => { m.read_at = m.read_at || new Date().toISOString(); });
    setUnread(out.unread);
    return renderList();
  }
  if (target.dataset.read) await markRead(Number(target.dataset.read));
  if (target.dataset.open) openMessage(Number(target.dataset.open));
}

async function markRead(id) {
  const m = msg.items.find((x) => x.id === id);
  if (m && m.read_at) return;
  const out = await api(`/api/v1/messages/${id}/read`, { method: "POST" }).catch(() => null);
  if (!out) return;
  if (m) m.read_at = new Date().toISOString();
  setUnread(out.unread);
  renderList();
}

/** Open what a message is about (its event), marking it read. */
async function openMessage(id) {
  await markRead(id);
  const m = msg.items.find((x) => x.id === id);
  if (m && m.event_id) {
    closePop();
    document.dispatchEvent(new CustomEvent("gridgov:open-event", { detail: m.event_id }));
  }
}
