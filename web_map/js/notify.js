// Notifications: a toast when something new arrives, kept in the 消息 list of the top bar and
// the work view.
import { state } from "./state.js";
import { $, esc, fmtTime, toast } from "./util.js";

let unread = 0;

function open(eventId) {
  if (eventId) document.dispatchEvent(new CustomEvent("gridgov:open-event", { detail: eventId }));
}

export function notify(text, { eventId = null, kind = "info" } = {}) {
  state.notifications.unshift({ at: new Date().toISOString(), text, eventId, kind });
  state.notifications.length = Math.min(state.notifications.length, 100);
  unread += 1;
  renderBell();
  toast(text, { kind, onClick: eventId ? () => open(eventId) : null });
  document.dispatchEvent(new CustomEvent("gridgov:notified"));
}

function renderBell() {
  const badge = $("bell-count");
  if (!badge) return;
  badge.hidden = unread === 0;
  badge.textContent = String(unread);
}

export function messagesHtml(limit = 30) {
  if (!state.notifications.length) return "<li class=\"muted\">暂无新消息</li>";
  return state.notifications.slice(0, limit).map((n, i) => `<li>
    <button type="button" class="linkish" data-n="${i}">${esc(n.text)}</button>
    <small>${esc(fmtTime(n.at, { date: false }))}</small></li>`).join("");
}

export function bindMessages(list) {
  list.querySelectorAll("button[data-n]").forEach((b) => b.addEventListener("click", () => {
    open(state.notifications[Number(b.dataset.n)]?.eventId);
  }));
}

export function setupBell() {
  const bell = $("bell");
  const pop = $("messages-pop");
  bell.addEventListener("click", () => {
    const show = pop.hidden;
    pop.hidden = !show;
    bell.setAttribute("aria-expanded", show ? "true" : "false");
    if (show) {
      unread = 0;
      renderBell();
      $("messages-list").innerHTML = messagesHtml();
      bindMessages($("messages-list"));
    }
  });
}
