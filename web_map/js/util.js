// Small helpers shared by every page: DOM lookup, escaping, formatting, the side panel, tabs.

export const $ = (id) => document.getElementById(id);

/** Escape text from the API before it goes into innerHTML (every API string, always). */
export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

export function bboxOf(geometry) {
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      b[0] = Math.min(b[0], c[0]); b[1] = Math.min(b[1], c[1]);
      b[2] = Math.max(b[2], c[0]); b[3] = Math.max(b[3], c[1]);
    } else c.forEach(walk);
  };
  walk(geometry.coordinates);
  return b;
}

/** Fit padding that keeps a shape clear of the side panel (it covers the right of the map). */
export function fitPadding(base = 60) {
  const panel = document.querySelector(".panel:not([hidden])");
  const covered = panel && panel.offsetWidth ? panel.offsetWidth + 10 : 0;
  const room = window.innerWidth - covered;
  // On a narrow screen the panel covers most of the map: do not squeeze the map to nothing.
  return { top: base, bottom: base, left: base, right: room > 2 * base + 200 ? base + covered : base };
}

const TZ = "Asia/Shanghai"; // the governance day is Shanghai's, whatever the browser says

export function fmtTime(iso, { date = true, seconds = false } = {}) {
  if (!iso) return "";
  const d = new Date(iso);
  const opts = { timeZone: TZ, hour12: false, hour: "2-digit", minute: "2-digit" };
  if (seconds) opts.second = "2-digit";
  if (date) Object.assign(opts, { year: "numeric", month: "2-digit", day: "2-digit" });
  return d.toLocaleString("zh-CN", opts);
}

/** Seconds as 3天4小时, 2小时5分, 12分. */
export function fmtDuration(seconds) {
  const s = Math.abs(Math.round(seconds || 0));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}天${h}小时`;
  if (h) return `${h}小时${m}分`;
  return `${m}分`;
}

export const fmtNum = (n) => (n == null ? "—" : Number(n).toLocaleString("zh-CN"));
export const fmtPct = (x, digits = 1) => (x == null || Number.isNaN(x) ? "—"
  : `${(x * 100).toFixed(digits)}%`);
export const fmtKm = (m) => (m == null ? "—" : `${(m / 1000).toFixed(1)} km`);

/** Today's date in Shanghai as YYYY-MM-DD, shifted by ``days``. */
export function shanghaiDay(days = 0) {
  const d = new Date(Date.now() + days * 86400_000);
  return d.toLocaleDateString("sv-SE", { timeZone: TZ });
}

export function showPanel(html) {
  $("panel-body").innerHTML = html;
  $("panel").hidden = false;
  $("panel").scrollTop = 0;
}

/** Wire a tablist: buttons with aria-controls; ``onShow(id)`` when a tab opens. */
export function tabs(list, onShow = () => {}) {
  const buttons = [...list.querySelectorAll("[role=tab]")];
  const open = (btn) => {
    for (const b of buttons) {
      const on = b === btn;
      b.setAttribute("aria-selected", on ? "true" : "false");
      b.tabIndex = on ? 0 : -1;
      $(b.getAttribute("aria-controls")).hidden = !on;
    }
    onShow(btn.getAttribute("aria-controls"));
  };
  buttons.forEach((b) => b.addEventListener("click", () => open(b)));
  return (id) => open(buttons.find((b) => b.getAttribute("aria-controls") === id));
}
