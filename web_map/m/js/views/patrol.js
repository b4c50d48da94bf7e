// The patrol screen: start/stop, live distance, duration, in-grid share, what waits for upload,
// and the track on a small map.

import { bbox, toDisplay } from "../geo.js";
import { TrackMap } from "../mapview.js";
import { $, fmtDistance, fmtDuration } from "../util.js";
import { idlePolling } from "./tasks.js";

let wired = false;
let trackMap = null;

function wire(app) {
  if (wired) return;
  wired = true;
  $("patrol-toggle").addEventListener("click", async () => {
    $("patrol-toggle").disabled = true;
    try {
      if (app.patrol.state.active) await app.patrol.stop();
      else await app.patrol.start();
    } finally {
      $("patrol-toggle").disabled = false;
    }
    idlePolling(app, !app.patrol.state.active);
    onPatrol(app);
  });
}

function fixText(app) {
  const p = app.patrol;
  if (!p.state.active) return p.state.endedAt ? "巡查已结束" : "未开始";
  if (p.fixError) {
    return p.fixError.code === 1 ? "未获得定位权限：请在浏览器设置中允许本页定位" : "暂时无法定位，正在重试…";
  }
  if (!p.latest) return `正在定位（${app.source.name}）…`;
  const acc = p.latest.accuracy ? `±${Math.round(p.latest.accuracy)} 米` : "";
  return `${app.source.name} ${acc} · 坐标系 ${p.latest.crs}`;
}

export async function onQueue(app) {
  const c = await app.outbox.counts();
  $("st-pending").textContent = String(c.points + c.outbox);
}

// Redrawn on each sample and each fix, not on a clock of its own: a 1 s timer would wake the
// phone 3,600 times an hour for a seconds digit.
export function onPatrol(app) {
  if (app.view !== "patrol") return;
  const f = app.patrol.figures();
  $("st-distance").textContent = fmtDistance(f.distance);
  $("st-duration").textContent = fmtDuration(f.duration);
  $("st-ingrid").textContent = f.inGridShare === null ? "—" : `${Math.round(f.inGridShare * 100)}%`;
  $("patrol-fix").textContent = fixText(app);
  const active = app.patrol.state.active;
  $("patrol-toggle").textContent = active ? "结束巡查" : "开始巡查";
  $("patrol-toggle").classList.toggle("stop", active);
  onQueue(app);
  drawTrack(app);
}

async function drawTrack(app) {
  if (!trackMap || !trackMap.map) return;
  const coords = (await app.patrol.track()).map((p) => [p.lon, p.lat]);
  const l = app.patrol.latest;
  trackMap.update(coords, app.patrol.state.active && l ? toDisplay(l.lon, l.lat, l.crs) : null);
}

export function show(app) {
  wire(app);
  onPatrol(app);
  if (!trackMap) trackMap = new TrackMap($("patrol-map"));
  const box = bbox(app.grids);
  trackMap.ensure(app.grids, box ? [[box[0], box[1]], [box[2], box[3]]] : null)
    .then(() => drawTrack(app))
    .catch(() => { $("patrol-map").textContent = "地图暂不可用（离线且未缓存），巡查照常记录。"; });
}
