// The grid worker's phone page (掌上应用): login, my tasks, patrol, report, handle, me.
// Works offline: the service worker keeps the page, IndexedDB keeps what is not sent yet.

import { api, ApiError, setCsrf } from "../../js/api.js";
import { drawWatermark } from "../../js/watermark.js";
import { config } from "./config.js";
import { kvGet, kvSet } from "./db.js";
import { chooseSource } from "./location.js";
import { Outbox } from "./outbox.js";
import { Patrol } from "./patrol.js";
import { $ } from "./util.js";
import * as patrolView from "./views/patrol.js";
import * as reportView from "./views/report.js";
import * as eventView from "./views/event.js";
import * as meView from "./views/me.js";
import * as tasksView from "./views/tasks.js";

const VIEWS = { tasks: tasksView, patrol: patrolView, report: reportView, event: eventView, me: meView };

export const app = {
  me: null, outbox: null, patrol: null, source: null, grids: [], view: null, offlineSession: false,
  notice, refresh: () => VIEWS[app.view]?.refresh?.(app),
};
window.gridgovM = app; // for tests and the console

function notice(text, { append = false } = {}) {
  const now = $("notice-text").textContent;
  $("notice-text").textContent = append && now && text ? `${now} ${text}` : text;
  $("notice").hidden = !text;
}

function secureContextCheck() {
  if (window.isSecureContext) return;
  $("insecure-origin").textContent = window.location.origin;
  $("insecure").hidden = false;
  // The operator reads the console too: say exactly what to change.
  console.warn(`gridgov /m/: ${window.location.origin} is not a secure context; phones refuse ` +
    "geolocation, service workers and Secure cookies here. Serve over HTTPS: " +
    "gridgov serve --tls-cert cert.pem --tls-key key.pem");
}

function showNet() {
  const offline = !navigator.onLine || (app.outbox && app.outbox.offline);
  $("net").textContent = offline ? "离线" : "在线";
  $("net").classList.toggle("offline", offline);
}

async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  try {
    await navigator.serviceWorker.register("sw.js", { scope: "./" });
  } catch (e) {
    console.warn("service worker not registered:", e.message);
  }
}

async function session() {
  try {
    const s = await api("/api/v1/auth/session");
    if (s.authenticated) await kvSet("me", s);
    return s.authenticated ? s : null;
  } catch (e) {
    if (e instanceof ApiError) return null;
    // Offline: carry on as the last user; their queues wait for the network.
    const last = await kvGet("me");
    if (last) app.offlineSession = true;
    return last;
  }
}

function showLogin(message = "") {
  for (const id of ["view-tasks", "view-patrol", "view-report", "view-event", "view-me"]) $(id).hidden = true;
  $("tabs").hidden = true;
  $("view-login").hidden = false;
  $("login-error").textContent = message;
  $("username").focus();
}

async function login(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  try {
    const out = await api("/api/v1/auth/login", { method: "POST",
      body: { username: $("username").value.trim(), password: $("password").value } });
    setCsrf(out.csrf_token);
    const me = await api("/api/v1/auth/me");
    await kvSet("me", me);
    $("password").value = "";
    await start(me);
  } catch (e) {
    if (!(e instanceof ApiError)) $("login-error").textContent = "网络不可用，请联网后登录";
    else if (e.status === 429) $("login-error").textContent = "登录失败次数过多，账号暂时锁定";
    else $("login-error").textContent = "账号或密码错误";
  }
}

async function loadGrids(me) {
  const cached = await kvGet(`grids:${me.username}`);
  try {
    const grids = [];
    for (const code of me.grid_codes.slice(0, 5)) {
      const f = await api(`/api/v1/regions/${code}`, { params: { simplify: 0.00001 } });
      if (f && f.geometry) grids.push(f.geometry);
    }
    await kvSet(`grids:${me.username}`, grids);
    return grids;
  } catch {
    return cached || [];
  }
}

async function start(me) {
  app.me = me;
  $("view-login").hidden = true;
  $("tabs").hidden = false;
  drawWatermark($("watermark"), me.username);
  app.source = chooseSource(config.sampleSeconds);
  app.outbox = new Outbox({
    user: me.username,
    onChange: () => { showNet(); VIEWS[app.view]?.onQueue?.(app); },
    onAuthLost: () => showLogin("登录已过期，请重新登录；未上传的数据已保存在手机上，登录后继续上传。"),
    onSent: (item, data) => {
      reportView.onSent(app, item, data);
      eventView.onSent(app, item);
      if (item.kind === "action") tasksView.load(app);
    },
  });
  app.grids = await loadGrids(me);
  app.patrol = new Patrol({ user: me.username, source: app.source, outbox: app.outbox,
    grids: app.grids, onUpdate: () => patrolView.onPatrol(app), onNotice: notice,
    onTick: (uploaded) => tasksView.maybePoll(app, uploaded) });
  await app.patrol.restore();
  tasksView.idlePolling(app, !app.patrol.state.active);
  route();
  app.outbox.flush();
}

function route() {
  if (!app.me) return;
  const [name, arg] = (window.location.hash.slice(1) || "tasks").split("/");
  const view = VIEWS[name] ? name : "tasks";
  for (const v of Object.keys(VIEWS)) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("#tabs a")) {
    if (a.dataset.view === (view === "event" ? "tasks" : view)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  app.view = view;
  VIEWS[view].show(app, arg);
}

function wireGlobal() {
  $("login-form").addEventListener("submit", login);
  $("notice-close").addEventListener("click", () => notice(""));
  window.addEventListener("hashchange", route);
  window.addEventListener("online", () => {
    showNet();
    if (app.offlineSession) {
      app.offlineSession = false;
      notice("已恢复联网，保存在手机上的数据正在上传。");
    }
    if (app.outbox) { app.outbox.failures = 0; app.outbox.retryAt = 0; app.outbox.flush(); }
  });
  window.addEventListener("offline", showNet);
  // A page cannot track in the background: record when it went and came back.
  document.addEventListener("visibilitychange", () => {
    if (!app.patrol) return;
    if (document.visibilityState === "hidden") app.patrol.hidden();
    else app.patrol.visible();
  });
  window.addEventListener("pagehide", () => app.patrol && app.patrol.hidden());
  window.addEventListener("pageshow", (ev) => { if (ev.persisted && app.patrol) app.patrol.visible(); });
  $("logout").addEventListener("click", async () => {
    if (app.patrol && app.patrol.state.active) await app.patrol.stop();
    await api("/api/v1/auth/logout", { method: "POST" }).catch(() => null);
    await kvSet("me", null);
    window.location.hash = "";
    window.location.reload();
  });
}

async function boot() {
  secureContextCheck();
  wireGlobal();
  showNet();
  registerServiceWorker();
  const me = await session();
  if (!me) return showLogin();
  await start(me);
  if (app.offlineSession) {
    notice("当前离线：显示的是上次的数据，新的巡查和上报会保存在手机上，联网后自动上传。", { append: true });
  }
}

boot();
