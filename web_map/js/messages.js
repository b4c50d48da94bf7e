// Message center (消息中心): the one owner of the bell, its dropdown, the toasts and the unread
// count. The server's messages (event reported, dispatched, reminded, supervised …, 通知公告)
// arrive live over SSE; while the stream is down the unread count is polled and the events
// poll (events.js) tells of new events through notice(). A server without a message center
// leaves the bell to those notices alone.
//
// Events other modules listen to: "gridgov:message" (a server message, detail: the message) and
// "gridgov:stream" (detail: {live}), when the stream opens or drops.
import { api } from "./api.js";
import { state } from "./state.js";
import { $, esc, fmtTime } from "./util.js";

const POLL_MS = 30_000;
const RETRY_STREAM_MS = 60_000;
const LIST_LIMIT = 30;
const TOAST_MS = 8_000;
// A new event told twice (by the fallback poll, then by the stream catching up) toasts once.
const SAME_NEWS_MS = 10 * 60_000;

const msg = {
  unread: 0, items: [], loaded: false, source: null, timer: null, live: false,
  server: false, notices: [], toasted: new Map(),
};
state.messages = msg;

/** Wire the bell and start the message center (live if the server has one). */
export async function init() {
  const bell = $("bell");
  bell.addEventListener("click", onBell);
  document.addEventListener("click", (ev) => {
    const pop = $("messages-pop");
    if (!pop.hidden && !pop.contains(ev.target) && !bell.contains(ev.target)) closePop();
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("messages-pop").hidden) { closePop(); bell.focus(); }
  });
  $("messages-pop").addEventListener("click", onListClick);
  try {
    msg.unread = (await api("/api/v1/messages/unread-count")).unread;
    msg.server = true;
  } catch (e) {
    // 404: no message center, the bell keeps this page's own notices. Anything else is a
    // server that is there but not answering yet: the stream and its fallback will tell.
    msg.server = e.status !== 404;
  }
  renderBadge();
  if (msg.server) connect();
  else announce(false);
}

// --- toasts ----------------------------------------------------------------------------------

/** A notification that fades by itself; a click on it opens what it is about. */
export function toast(text, { kind = "info", onClick = null } = {}) {
  const box = $("toasts");
  if (!box) return;
  const el = document.createElement(onClick ? "button" : "div");
  el.className = `toast toast-${kind}`;
  el.textContent = text;
  if (onClick) {
    el.type = "button";
    el.addEventListener("click", () => { onClick(); el.remove(); });
  }
  box.appendChild(el);
  setTimeout(() => el.remove(), TOAST_MS);
}

/** True the first time ``key`` is told within SAME_NEWS_MS (always, for a null key). */
function firstTelling(key) {
  if (key === null) return true;
  const now = Date.now();
  for (const [k, at] of msg.toasted) if (now - at > SAME_NEWS_MS) msg.toasted.delete(k);
  if (msg.toasted.has(key)) return false;
  msg.toasted.set(key, now);
  return true;
}

/** A new event is the same news from the poll and from the stream; the rest is never doubled. */
const newsKey = (kind, eventId) => (eventId && (kind === "new" || kind === "new_report")
  ? `new:${eventId}` : null);

/**
 * Tell of something this page found itself (the events poll while the stream is down): a
 * toast; listed under the bell only when the server keeps no messages (else it has them).
 */
export function notice(text, { eventId = null, kind = "info" } = {}) {
  if (!firstTelling(newsKey(kind, eventId))) return;
  toast(text, { kind, onClick: eventId ? () => openEvent(eventId) : null });
  if (msg.server) return;
  msg.notices.unshift({ id: `n${Date.now()}${msg.notices.length}`, title: text, body: "",
    event_id: eventId, created_at: new Date().toISOString(), read_at: null, local: true });
  msg.notices.length = Math.min(msg.notices.length, 100);
  setUnread(msg.unread + 1);
  rerender();
}

// --- the count -------------------------------------------------------------------------------

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

// --- live: EventSource, polling the count while it is down -----------------------------------

function announce(live) {
  msg.live = live;
  document.dispatchEvent(new CustomEvent("gridgov:stream", { detail: { live } }));
}

function connect() {
  if (!window.EventSource) { announce(false); startPolling(); return; }
  const es = new EventSource("/api/v1/messages/stream");
  msg.source = es;
  es.addEventListener("open", () => { stopPolling(); announce(true); });
  es.addEventListener("unread", (e) => setUnread(JSON.parse(e.data).unread));
  es.addEventListener("message", (e) => arrived(JSON.parse(e.data)));
  es.addEventListener("read", (e) => {
    const d = JSON.parse(e.data);
    for (const m of msg.items) {
      if (d.read === "all" || d.read.includes(m.id)) m.read_at ||= new Date().toISOString();
    }
    setUnread(d.unread);
    rerender();
  });
  es.addEventListener("error", () => {
    // The browser retries a dropped stream by itself; a refused one (401, 404, 503) is CLOSED.
    if (msg.live) announce(false);
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
  rerender();
  if (!m.muted && firstTelling(newsKey(m.kind, m.event_id))) {
    toast(m.title, { kind: m.kind === "new_report" ? "new" : "info",
      onClick: () => openMessage(m.id) });
  }
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

// --- lists: the bell's dropdown and the work view's 消息 card ---------------------------------

/** The messages to list: the server's, or this page's notices when there is no server list. */
const listed = () => (msg.server ? msg.items : msg.notices);

/** Fetch the latest page of messages (once; the stream keeps it current afterwards). */
async function load({ force = false } = {}) {
  if (!msg.server || (msg.loaded && !force)) return;
  const page = await api("/api/v1/messages", { params: { limit: LIST_LIMIT } });
  // Keep what the stream brought meanwhile and the page does not have yet.
  const ids = new Set(page.items.map((m) => m.id));
  msg.items = [...msg.items.filter((m) => !ids.has(m.id) && m.id > (page.items[0]?.id ?? 0)),
    ...page.items];
  msg.loaded = true;
  setUnread(page.unread);
}

function itemsHtml(limit) {
  const items = listed().slice(0, limit);
  if (!items.length) {
    return `<li class="muted">${msg.loaded || !msg.server ? "暂无消息" : "加载中…"}</li>`;
  }
  return items.map((m) => `<li class="msg${m.read_at ? "" : " unread"}" data-id="${esc(m.id)}">
    <button type="button" class="linkish" data-open="${esc(m.id)}">${esc(m.title)}</button>${
      m.body ? `<div class="msg-body">${esc(m.body)}</div>` : ""}
    <small class="muted">${esc(fmtTime(m.created_at))}</small>${m.read_at || m.local ? ""
      : ` <button type="button" class="small" data-read="${esc(m.id)}">标为已读</button>`}</li>`)
    .join("");
}

/** Lists showing messages (the dropdown, the work view's card), redrawn as messages change. */
const lists = new Map(); // element → limit

function rerender() {
  for (const [el, limit] of lists) {
    if (el.isConnected && !(el === $("messages-list") && $("messages-pop").hidden)) {
      el.innerHTML = itemsHtml(limit);
    }
  }
}

/** Show the latest messages in ``el`` (the work view), kept current; clicks open them. */
export async function showIn(el, { limit = 20 } = {}) {
  if (!lists.has(el)) el.addEventListener("click", onListClick);
  lists.set(el, limit);
  el.innerHTML = itemsHtml(limit);
  try {
    await load();
  } catch (e) {
    el.innerHTML = `<li class="muted">消息加载失败：${esc(e.message)}</li>`;
    return;
  }
  el.innerHTML = itemsHtml(limit);
}

async function onBell() {
  const pop = $("messages-pop");
  if (!pop.hidden) return closePop();
  pop.hidden = false;
  $("bell").setAttribute("aria-expanded", "true");
  lists.set($("messages-list"), LIST_LIMIT);
  if (!msg.server) {
    // This page's notices: seen once the list is opened.
    msg.notices.forEach((n) => { n.read_at ||= new Date().toISOString(); });
    $("messages-list").innerHTML = itemsHtml(LIST_LIMIT);
    return setUnread(0);
  }
  $("messages-list").innerHTML = itemsHtml(LIST_LIMIT);
  try {
    await load({ force: true });
  } catch (e) {
    $("messages-list").innerHTML = `<li class="muted">${esc(e.message)}</li>`;
    return;
  }
  rerender();
}

function closePop() {
  $("messages-pop").hidden = true;
  $("bell").setAttribute("aria-expanded", "false");
}

async function onListClick(ev) {
  const target = ev.target.closest("button");
  if (!target) return;
  if (target.id === "messages-read-all") return readAll();
  if (target.dataset.read) await markRead(Number(target.dataset.read));
  if (target.dataset.open) openMessage(target.dataset.open);
}

async function readAll() {
  if (!msg.server) return;
  const out = await api("/api/v1/messages/read-all", { method: "POST" }).catch(() => null);
  if (!out) return;
  msg.items.forEach((m) => { m.read_at ||= new Date().toISOString(); });
  setUnread(out.unread);
  rerender();
}

async function markRead(id) {
  const m = msg.items.find((x) => x.id === id);
  if (m && m.read_at) return;
  const out = await api(`/api/v1/messages/${id}/read`, { method: "POST" }).catch(() => null);
  if (!out) return;
  if (m) m.read_at = new Date().toISOString();
  setUnread(out.unread);
  rerender();
}

function openEvent(eventId) {
  closePop();
  document.dispatchEvent(new CustomEvent("gridgov:open-event", { detail: eventId }));
}

/** Open what a message is about (its event), marking it read. */
async function openMessage(rawId) {
  const m = listed().find((x) => String(x.id) === String(rawId));
  if (m && !m.local) await markRead(m.id);
  if (m?.event_id) openEvent(m.event_id);
}
