// The outbox: everything the phone sends goes through here, in order, exactly once.
//
// Patrol samples wait in `points`; a flush first seals them into batches, each with a uuid made
// once and kept in IndexedDB, so a batch whose answer was lost is re-sent with the same id and
// the server stores it once (201 the first time, 200 "duplicate" after). Reports and actions
// carry a client key made when the worker tapped "submit", for the same reason. Items leave the
// store only after the server's 2xx; a network failure leaves everything in place and retries
// with back-off; a refusal (4xx) is kept aside, shown to the worker, never retried blindly.

import { all, del, put, req, tx, kvGet, kvSet } from "./db.js";
import { config } from "./config.js";
import { csrfToken, uuid } from "./util.js";

const RETRY_MS = [5_000, 15_000, 30_000, 60_000, 120_000, 300_000];

// Move the user's waiting samples into batches (one transaction: none lost, none twice).
export function sealPoints(user, maxBatch) {
  return tx(["points", "batches"], "readwrite", async (points, batches) => {
    const mine = (await req(points.getAll())).filter((p) => p.user === user);
    let chunk = [];
    const flush = async () => {
      if (!chunk.length) return;
      await req(batches.add({ id: uuid(), user, crs: chunk[0].crs, created: Date.now(),
        attempts: 0, points: chunk.map(({ user: _u, crs: _c, seq: _s, ...p }) => p) }));
      chunk = [];
    };
    for (const p of mine) {
      // A batch has one crs; a phone switching sources (浏览器 ↔ 浙政钉) starts a new one.
      if (chunk.length && (chunk[0].crs !== p.crs || chunk.length >= maxBatch)) await flush();
      chunk.push(p);
      await req(points.delete(p.seq));
    }
    await flush();
    return mine.length;
  });
}

async function send(url, { json, form, keepalive = false }) {
  const headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  try {
    const res = await fetch(url, { method: "POST", headers, credentials: "same-origin", keepalive,
      body: json !== undefined ? JSON.stringify(json) : form });
    const data = await res.json().catch(() => null);
    return { status: res.status, ok: res.ok, data };
  } catch {
    return { status: 0, ok: false, data: null };
  }
}

const problemText = (r) => (r.data && (r.data.detail || r.data.title)) || `HTTP ${r.status}`;

export class Outbox {
  constructor({ user, onChange = () => {}, onAuthLost = () => {}, onSent = () => {} }) {
    this.user = user;
    this.onChange = onChange;
    this.onAuthLost = onAuthLost;
    this.onSent = onSent;
    this.running = null;
    this.again = null;
    this.sealedAt = 0;
    this.failures = 0;
    this.retryAt = 0;
    this.retryTimer = null;
    this.offline = !navigator.onLine;
    this.uploads = 0; // requests that reached the server (for the app status and the bench)
  }

  // One flush at a time; callers may ask as often as they like. A request made while a flush
  // runs (a stop marker recorded after that flush sealed its batches) gets one more flush after
  // it, and its promise covers both.
  flush(opts = {}) {
    if (this.running) {
      const next = () => { this.again = null; return this.flush(opts); };
      this.again = this.again || this.running.then(next, next);
      return this.again;
    }
    this.running = this._flush(opts).finally(() => { this.running = null; this.onChange(); });
    return this.running;
  }

  // Whether the samples waiting are due for an upload (the patrol tick asks, so uploads need no
  // timer of their own): a marker at once, else uploadSeconds after the last batch was sealed.
  // Half a sample of slack, so a tick arriving a few ms early does not push the upload a
  // whole sample later.
  async due(now = Date.now()) {
    if (now < this.retryAt) return false;
    const waiting = (await all("points")).filter((p) => p.user === this.user);
    if (!waiting.length) return (await this.counts()).batches > 0;
    if (waiting.length >= config.maxBatch) return true;
    if (waiting.some((p) => p.event && p.event !== "no_fix")) return true;
    const since = this.sealedAt || waiting[0].t;
    return now - since >= (config.uploadSeconds - config.sampleSeconds / 2) * 1000;
  }

  async _flush({ keepalive = false } = {}) {
    this.sealedAt = Date.now();
    await sealPoints(this.user, config.maxBatch);
    const ok = (await this._sendBatches(keepalive)) && (await this._sendOutbox());
    if (ok) {
      this.failures = 0;
      this.retryAt = 0;
    }
    return ok;
  }

  _later(reason) {
    this.offline = reason === "offline";
    this.retryAt = Date.now() + RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
    this.failures += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.flush(), this.retryAt - Date.now());
    return false;
  }

  // Handle one answer; return "next", "stop" or "kept" (refused, set aside).
  _verdict(r) {
    if (r.status === 0) { this._later("offline"); return "stop"; }
    this.offline = false;
    this.uploads += 1;
    if (r.ok) return "next";
    if (r.status === 401) { this.onAuthLost(); return "stop"; }
    if (r.status === 429 || r.status >= 500) { this._later("server"); return "stop"; }
    return "kept";
  }

  async _sendBatches(keepalive) {
    const batches = (await all("batches")).filter((b) => b.user === this.user && !b.refused);
    for (const b of batches) {
      const r = await send("/api/v1/patrols/points",
        { json: { batch_id: b.id, crs: b.crs, points: b.points }, keepalive });
      const verdict = this._verdict(r);
      if (verdict === "stop") return false;
      if (verdict === "next") {
        await del("batches", b.seq);
        await kvSet(`lastUpload:${this.user}`, { at: Date.now(), points: b.points.length,
          duplicate: r.status === 200 });
      } else {
        await put("batches", { ...b, refused: problemText(r), attempts: b.attempts + 1 });
      }
      this.onChange();
    }
    return true;
  }

  async _sendOutbox() {
    const items = (await all("outbox")).filter((i) => i.user === this.user && !i.refused);
    for (const item of items) {
      const form = new FormData();
      form.append("client_key", item.key);
      form.append("body", JSON.stringify(item.body));
      item.photos.forEach((blob, i) => form.append("photos", blob, `photo-${i + 1}.jpg`));
      const r = await send(item.url, { form });
      const verdict = this._verdict(r);
      if (verdict === "stop") return false;
      if (verdict === "next") {
        await del("outbox", item.seq);
        await kvSet(`lastUpload:${this.user}`, { at: Date.now(), item: item.label });
        this.onSent(item, r.data);
      } else if (await this._rebased(item, r)) {
        this.flush(); // runs once this flush is done
      } else {
        await put("outbox", { ...item, refused: problemText(r), attempts: item.attempts + 1 });
      }
      this.onChange();
    }
    return true;
  }

  // An action carries the event version the worker saw; a 催办 or 督办 while it waited offline
  // makes that stale (409 with current_version). The server applied nothing and kept no record
  // of the key, so the action goes once more on the current version under a new key: still
  // exactly once, and the server still refuses what the event's state no longer allows.
  async _rebased(item, r) {
    const current = r.data && r.data.current_version;
    if (item.kind !== "action" || r.status !== 409 || !Number.isInteger(current)
        || item.rebasedFrom !== undefined) return false;
    await put("outbox", { ...item, key: uuid(), body: { ...item.body, version: current },
      rebasedFrom: item.body.version, attempts: item.attempts + 1 });
    return true;
  }

  // Queue a report or an action; it is safe in IndexedDB before anything is sent.
  async enqueue({ kind, url, body, photos = [], label }) {
    const item = { key: uuid(), user: this.user, kind, url, body, photos, label,
      created: Date.now(), attempts: 0 };
    item.seq = await tx(["outbox"], "readwrite", (s) => req(s.add(item)));
    this.onChange();
    return item;
  }

  async discard(store, seq) {
    await del(store, seq);
    this.onChange();
  }

  async retryRefused(seq) {
    const item = (await all("outbox")).find((i) => i.seq === seq);
    // The worker chose to try again: a stale version may be brought up to date once more.
    if (item) await put("outbox", { ...item, refused: undefined, rebasedFrom: undefined });
    this.failures = 0;
    this.retryAt = 0;
    return this.flush();
  }

  async counts() {
    const mine = (rows) => rows.filter((r) => r.user === this.user);
    const [points, batches, outbox] = await Promise.all([all("points"), all("batches"), all("outbox")]);
    const b = mine(batches);
    const o = mine(outbox);
    return {
      points: mine(points).length + b.filter((x) => !x.refused).reduce((n, x) => n + x.points.length, 0),
      batches: b.filter((x) => !x.refused).length,
      refusedBatches: b.filter((x) => x.refused).length,
      outbox: o.filter((x) => !x.refused).length,
      refused: o.filter((x) => x.refused).length,
    };
  }

  lastUpload() {
    return kvGet(`lastUpload:${this.user}`);
  }
}
