// Client settings: timers, batch size and message settings. Stored in localStorage so reloads
// keep them; tests (and a commissioning engineer) speed time up with query parameters, e.g.
// /m/?interval=0.5&upload=2 — sample every 0.5 s, upload every 2 s.

const KEY = "gridgov.m.config";

export const DEFAULTS = Object.freeze({
  // One GPS sample per interval: 10 s gives ~14 m steps at walking pace, enough for mileage
  // and coverage, at 360 samples an hour.
  sampleSeconds: 10,
  // Upload the queued samples once a minute (60 uploads an hour): commanders see a live
  // position at most a minute old, and the radio wakes once a minute, not every sample.
  uploadSeconds: 60,
  // A batch never holds more than this (the server takes 20,000; small batches retry cheaply).
  maxBatch: 500,
  // My tasks are refreshed with an upload when this much time has passed (no timer of their own
  // during a patrol, so the radio wakes once for both).
  taskPollSeconds: 120,
  photoMaxPx: 1600,
  photoQuality: 0.8,
  // Message settings (消息设置): what the phone signals when tasks or broadcasts arrive.
  notifyTasks: true,
  notifyBroadcasts: true,
  vibrate: true,
});

const QUERY = { interval: "sampleSeconds", upload: "uploadSeconds", batch: "maxBatch",
  poll: "taskPollSeconds" };

function load() {
  let stored = {};
  try { stored = JSON.parse(localStorage.getItem(KEY) || "{}"); } catch { stored = {}; }
  const q = new URLSearchParams(window.location.search);
  for (const [param, key] of Object.entries(QUERY)) {
    const v = Number(q.get(param));
    if (q.has(param) && Number.isFinite(v) && v > 0) stored[key] = v;
  }
  localStorage.setItem(KEY, JSON.stringify(stored));
  return { ...DEFAULTS, ...stored };
}

export const config = load();

export function saveConfig(patch) {
  Object.assign(config, patch);
  const stored = {};
  for (const k of Object.keys(DEFAULTS)) if (config[k] !== DEFAULTS[k]) stored[k] = config[k];
  localStorage.setItem(KEY, JSON.stringify(stored));
}
