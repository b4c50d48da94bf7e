// Small helpers shared by the phone page's modules.

export const $ = (id) => document.getElementById(id);

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

// crypto.randomUUID exists only in secure contexts; getRandomValues works everywhere, and a
// batch id must be unique even on a phone opened over plain http.
export function uuid() {
  if (window.crypto && typeof crypto.randomUUID === "function" && window.isSecureContext) {
    return crypto.randomUUID();
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function fmtDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}:${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

export function fmtPause(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 1) return "不到 1 秒";
  const m = Math.floor(s / 60);
  if (m >= 60) return `${Math.floor(m / 60)} 小时 ${m % 60} 分`;
  return m ? `${m} 分 ${s % 60} 秒` : `${s} 秒`;
}

export function fmtDistance(m) {
  return m >= 1000 ? `${(m / 1000).toFixed(2)} 公里` : `${Math.round(m)} 米`;
}

export function fmtTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false,
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

// The CSRF cookie is readable on purpose (double submit); multipart and keepalive uploads send
// it themselves because api.js only speaks JSON.
export function csrfToken() {
  const hit = document.cookie.split("; ").find((c) => c.startsWith("gridgov_csrf="));
  return hit ? decodeURIComponent(hit.split("=")[1]) : "";
}
