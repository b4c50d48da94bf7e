// Where positions come from. Every source says which crs its numbers are in, and every sample
// is uploaded with it: a browser's Geolocation API gives WGS84; the 浙政钉 (Zhezhengding) JSAPI
// gives GCJ-02, ~500 m off in Wenzhou if mislabelled. The server converts; we only label.
//
// A source: { name, crs, start(onFix, onError), stop(), once() → Promise<fix> }.
// A fix: { lon, lat, accuracy, speed, heading, crs, at }.

function fromBrowser(pos) {
  const c = pos.coords;
  const num = (v) => (v === null || v === undefined || Number.isNaN(v) ? null : v);
  return { lon: c.longitude, lat: c.latitude, accuracy: num(c.accuracy), speed: num(c.speed),
    heading: num(c.heading), crs: "WGS84", at: Date.now() };
}

export class BrowserLocation {
  constructor() {
    this.name = "浏览器定位";
    this.crs = "WGS84";
    this.watchId = null;
  }

  available() {
    return "geolocation" in navigator;
  }

  start(onFix, onError) {
    this.stop();
    if (!this.available()) { onError({ code: 2, message: "此浏览器不支持定位" }); return; }
    // maximumAge 0: a cached position would be recorded as if it were fresh.
    this.watchId = navigator.geolocation.watchPosition((p) => onFix(fromBrowser(p)), onError,
      { enableHighAccuracy: true, maximumAge: 0, timeout: 30_000 });
  }

  stop() {
    if (this.watchId !== null) navigator.geolocation.clearWatch(this.watchId);
    this.watchId = null;
  }

  once() {
    return new Promise((resolve, reject) => {
      if (!this.available()) { reject(new Error("此浏览器不支持定位")); return; }
      navigator.geolocation.getCurrentPosition((p) => resolve(fromBrowser(p)), reject,
        { enableHighAccuracy: true, maximumAge: 0, timeout: 20_000 });
    });
  }
}

// The 浙政钉 micro-app container: the JSAPI (gdt-jsapi, bundled by the deployment, which exposes
// it as window.dd) has getGeolocation but no watch, so it is polled at the sampling interval.
export class ZhezhengdingLocation {
  constructor(dd, intervalSeconds) {
    this.name = "浙政钉定位";
    this.crs = "GCJ-02";
    this.dd = dd;
    this.intervalMs = intervalSeconds * 1000;
    this.timer = null;
  }

  available() {
    return Boolean(this.dd && typeof this.dd.getGeolocation === "function");
  }

  async once() {
    // coordinate 1: 高德 (GCJ-02), the JSAPI's recommended and most accurate mode.
    const r = await this.dd.getGeolocation({ targetAccuracy: 100, coordinate: 1,
      withReGeocode: false, useCache: false });
    return { lon: Number(r.longitude), lat: Number(r.latitude), accuracy: r.accuracy ?? null,
      speed: null, heading: null, crs: this.crs, at: Date.now() };
  }

  start(onFix, onError) {
    this.stop();
    const poll = () => this.once().then(onFix, (e) => onError({ code: 2, message: String(e) }));
    poll();
    this.timer = setInterval(poll, this.intervalMs);
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

// The platform decides: inside 浙政钉 (its JSAPI present) use it, else the browser.
export function chooseSource(intervalSeconds) {
  const zzd = new ZhezhengdingLocation(window.dd, intervalSeconds);
  return zzd.available() ? zzd : new BrowserLocation();
}

export async function permissionState() {
  try {
    const p = await navigator.permissions.query({ name: "geolocation" });
    return p.state;
  } catch {
    return "unknown";
  }
}
