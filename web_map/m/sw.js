// Service worker of the phone page: the app shell is served from the cache (a reload costs no
// bytes and works offline); MapLibre is cached the first time a map is shown. API and tile
// requests are never cached here: answers are per user and per moment, and the page keeps what
// it needs for offline use in IndexedDB. Bump VERSION when any shell file changes.

const VERSION = "m-2026-11-2";
const SHELL = [
  "./", "./index.html", "./m.css", "./manifest.webmanifest", "./icon.svg",
  "./js/main.js", "./js/config.js", "./js/db.js", "./js/geo.js", "./js/location.js",
  "./js/mapview.js", "./js/outbox.js", "./js/patrol.js", "./js/photos.js", "./js/util.js",
  "./js/views/common.js", "./js/views/event.js", "./js/views/me.js", "./js/views/patrol.js",
  "./js/views/report.js", "./js/views/tasks.js",
  "../js/api.js", "../js/watermark.js",
];
const RUNTIME = ["/vendor/"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(VERSION).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

function cacheable(url) {
  if (url.origin !== self.location.origin) return false;
  if (url.pathname.startsWith("/api/") || url.pathname.startsWith("/tiles/")) return false;
  return true;
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (!cacheable(url)) return;
  event.respondWith((async () => {
    const cache = await caches.open(VERSION);
    // Navigations to /m/ (with ?interval=… or #view) all get the one cached page.
    const key = req.mode === "navigate" ? new URL("./", self.location.href).href : req;
    const hit = await cache.match(key, { ignoreSearch: req.mode === "navigate" });
    if (hit) return hit;
    const res = await fetch(req);
    if (res.ok && RUNTIME.some((p) => url.pathname.startsWith(p))) cache.put(req, res.clone());
    return res;
  })());
});
