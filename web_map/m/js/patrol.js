// A patrol (网格巡查) on the phone: start/stop markers, one sample per interval from the latest
// fix, "hidden" markers when the page goes to the background, live distance, duration and
// in-grid share, and the track for the small map. State lives in IndexedDB, so a reload (or a
// killed tab) resumes the patrol where it was.

import { add, all, clear, kvGet, kvSet, tx } from "./db.js";
import { config } from "./config.js";
import { haversine, inGeometry, toDisplay } from "./geo.js";
import { fmtPause, uuid } from "./util.js";

// Fixes worse than this do not count towards the live distance (the server cleans properly).
const MAX_ACCURACY_M = 50;
// A step implying more than this speed is a jump (indoor Wi-Fi positioning), not a walk.
const MAX_SPEED_MS = 30;

export class Patrol {
  constructor({ user, source, outbox, grids = [], onUpdate = () => {}, onNotice = () => {},
    onTick = () => {} }) {
    this.user = user;
    this.source = source;
    this.outbox = outbox;
    this.grids = grids;
    this.onUpdate = onUpdate;
    this.onNotice = onNotice;
    this.onTick = onTick;
    this.state = { active: false };
    this.latest = null;
    this.fixError = null;
    this.timer = null;
    this.ticks = 0; // timer wake-ups (for the app status and the bench)
  }

  get key() { return `patrol:${this.user}`; }

  save() { return kvSet(this.key, this.state); }

  async restore() {
    this.state = await kvGet(this.key, { active: false });
    if (!this.state.active) return;
    const mark = this.hideMark();
    if (!this.state.hiddenAt && mark && mark.id === this.state.id
        && mark.t >= (this.state.lastSampleAt || 0)) {
      // The page was unloaded before its IndexedDB write finished (a reload, a closed tab):
      // the synchronous mark still says when it went, so the marker keeps its true time.
      this.state.hiddenAt = mark.t;
      await this.record({ event: "hidden", t: mark.t });
    }
    if (this.state.hiddenAt) {
      await this.visible({ reopened: true });
      return;
    }
    // The page ended without saying it was hidden (killed, crashed): report the pause on screen;
    // the server, hearing nothing, calls that gap "app stopped".
    const silent = Date.now() - (this.state.lastSampleAt || this.state.startedAt);
    if (silent > 3 * config.sampleSeconds * 1000) {
      this.onNotice(`巡查中断了 ${fmtPause(silent)}（页面被关闭），现已继续记录。`);
    }
    this.resume();
  }

  get markKey() { return `gridgov.m.hidden:${this.user}`; }

  hideMark() {
    try { return JSON.parse(localStorage.getItem(this.markKey) || "null"); } catch { return null; }
  }

  async start() {
    if (this.state.active) return;
    const now = Date.now();
    this.state = { active: true, id: uuid(), startedAt: now, lastSampleAt: now, distance: 0,
      fixes: 0, inGrid: 0, samples: 0, pausedMs: 0, hiddenAt: null, last: null };
    await clear("track");
    await this.record({ event: "start", t: now });
    await this.save();
    this.resume();
    this.outbox.flush();
    this.onUpdate();
  }

  async stop() {
    if (!this.state.active) return;
    this.halt();
    await this.record({ event: "stop", t: Date.now() });
    this.state.active = false;
    this.state.endedAt = Date.now();
    localStorage.removeItem(this.markKey);
    await this.save();
    this.onUpdate();
    await this.outbox.flush();
  }

  resume() {
    this.halt();
    // A fix from before a pause says nothing about where the worker is now.
    this.latest = null;
    this.source.start((fix) => { this.latest = fix; this.fixError = null; this.onUpdate(); },
      (err) => { this.fixError = err; this.onUpdate(); });
    this.timer = setInterval(() => this.tick(), config.sampleSeconds * 1000);
  }

  halt() {
    clearInterval(this.timer);
    this.timer = null;
    this.source.stop();
  }

  // The sample and the patrol state (with its count of samples) are written in one
  // transaction: after a crash the count still says exactly what is queued or sent.
  record(point) {
    this.state.recorded = (this.state.recorded || 0) + 1;
    const row = { ...point, user: this.user, crs: point.crs || this.source.crs };
    return tx(["points", "kv"], "readwrite", (points, kv) => {
      points.add(row);
      kv.put({ k: this.key, v: this.state });
    });
  }

  // One sample: the latest fix at this moment, or a "no fix" marker when positioning fails.
  async tick() {
    if (!this.state.active) return;
    this.ticks += 1;
    const t = Date.now();
    const f = this.latest;
    if (!f || this.fixError) {
      await this.record({ event: "no_fix", t });
    } else {
      await this.record({ t, lon: f.lon, lat: f.lat, accuracy: f.accuracy, speed: f.speed,
        heading: f.heading, crs: f.crs });
      await this.measure(toDisplay(f.lon, f.lat, f.crs), f.accuracy, t);
    }
    this.state.lastSampleAt = t;
    await this.save();
    if (await this.outbox.due(t)) this.outbox.flush().then(() => this.onTick(true));
    else this.onTick(false);
    this.onUpdate();
  }

  async measure(p, accuracy, t) {
    const s = this.state;
    s.samples += 1;
    if (this.grids.some((g) => inGeometry(p, g))) s.inGrid += 1;
    const good = accuracy === null || accuracy <= MAX_ACCURACY_M;
    if (good && s.last) {
      const step = haversine(s.last.p, p);
      if (step / Math.max(1, (t - s.last.t) / 1000) <= MAX_SPEED_MS) s.distance += step;
    }
    if (good) s.last = { p, t };
    await add("track", { lon: p[0], lat: p[1], t });
  }

  // The page went to the background (or is being unloaded): a web page cannot track there, so
  // say so in the data — the server reports the gap as "app hidden" instead of guessing.
  async hidden() {
    if (!this.state.active || this.state.hiddenAt) return;
    this.halt();
    const t = Date.now();
    // localStorage is written at once; IndexedDB may not finish before an unload.
    localStorage.setItem(this.markKey, JSON.stringify({ id: this.state.id, t }));
    this.state.hiddenAt = t;
    await this.record({ event: "hidden", t: this.state.hiddenAt });
    await this.save();
    this.outbox.flush({ keepalive: true });
  }

  async visible({ reopened = false } = {}) {
    if (!this.state.active) return;
    if (this.state.hiddenAt) {
      const paused = Date.now() - this.state.hiddenAt;
      this.state.pausedMs += paused;
      this.state.hiddenAt = null;
      this.state.lastPauseMs = paused;
      localStorage.removeItem(this.markKey);
      await this.save();
      const why = reopened ? "页面重新打开前" : "在后台";
      this.onNotice(`巡查${why}暂停了 ${fmtPause(paused)}：手机浏览器在后台、锁屏或关闭页面时无法定位，` +
        "这段时间已如实上报为「应用切到后台」。现已继续记录。");
    }
    this.resume();
    this.outbox.flush();
    this.onUpdate();
  }

  track() {
    return all("track");
  }

  figures(now = Date.now()) {
    const s = this.state;
    if (!s.startedAt) return { distance: 0, duration: 0, inGridShare: null };
    const end = s.active ? now : s.endedAt || now;
    return { distance: s.distance || 0, duration: end - s.startedAt,
      inGridShare: s.samples ? s.inGrid / s.samples : null, samples: s.samples || 0 };
  }
}
