// Geometry on the phone: step lengths, point in grid, and GCJ-02 → WGS84 for drawing what the
// 浙政钉 JSAPI reports (the server converts uploads itself; this is only for the screen).

const R = 6371008.8;
const rad = (d) => (d * Math.PI) / 180;

export function haversine(a, b) {
  const dlat = rad(b[1] - a[1]);
  const dlon = rad(b[0] - a[0]);
  const h = Math.sin(dlat / 2) ** 2 + Math.cos(rad(a[1])) * Math.cos(rad(b[1])) * Math.sin(dlon / 2) ** 2;
  return 2 * R * Math.asin(Math.sqrt(h));
}

function inRing(p, ring) {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if ((yi > p[1]) !== (yj > p[1]) && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function inPolygon(p, rings) {
  return inRing(p, rings[0]) && !rings.slice(1).some((hole) => inRing(p, hole));
}

// Whether a lon/lat lies in a GeoJSON Polygon or MultiPolygon.
export function inGeometry(p, g) {
  if (!g) return false;
  if (g.type === "Polygon") return inPolygon(p, g.coordinates);
  if (g.type === "MultiPolygon") return g.coordinates.some((poly) => inPolygon(p, poly));
  return false;
}

export function bbox(geometries) {
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      b[0] = Math.min(b[0], c[0]); b[1] = Math.min(b[1], c[1]);
      b[2] = Math.max(b[2], c[0]); b[3] = Math.max(b[3], c[1]);
    } else c.forEach(walk);
  };
  geometries.forEach((g) => walk(g.coordinates));
  return Number.isFinite(b[0]) ? b : null;
}

// GCJ-02 (国测局) offset, the published formula; mirrors geoserver/geo/crs.py.
const A = 6378245.0;
const EE = 0.00669342162296594323;

function offset(lon, lat) {
  const x = lon - 105.0;
  const y = lat - 35.0;
  const common = ((20 * Math.sin(6 * x * Math.PI) + 20 * Math.sin(2 * x * Math.PI)) * 2) / 3;
  let dlat = -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x)) + common;
  dlat += ((20 * Math.sin(y * Math.PI) + 40 * Math.sin((y / 3) * Math.PI)) * 2) / 3;
  dlat += ((160 * Math.sin((y / 12) * Math.PI) + 320 * Math.sin((y * Math.PI) / 30)) * 2) / 3;
  let dlon = 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x)) + common;
  dlon += ((20 * Math.sin(x * Math.PI) + 40 * Math.sin((x / 3) * Math.PI)) * 2) / 3;
  dlon += ((150 * Math.sin((x / 12) * Math.PI) + 300 * Math.sin((x / 30) * Math.PI)) * 2) / 3;
  const r = rad(lat);
  const magic = 1 - EE * Math.sin(r) ** 2;
  const sq = Math.sqrt(magic);
  return [(dlon * 180) / ((A / sq) * Math.cos(r) * Math.PI), (dlat * 180) / (((A * (1 - EE)) / (magic * sq)) * Math.PI)];
}

const inChina = (lon, lat) => lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271;

export function wgs84ToGcj02(lon, lat) {
  if (!inChina(lon, lat)) return [lon, lat];
  const [dx, dy] = offset(lon, lat);
  return [lon + dx, lat + dy];
}

export function gcj02ToWgs84(lon, lat) {
  if (!inChina(lon, lat)) return [lon, lat];
  let [x, y] = [lon, lat];
  for (let i = 0; i < 30; i++) {
    const [fx, fy] = wgs84ToGcj02(x, y);
    x -= fx - lon;
    y -= fy - lat;
    if (Math.abs(fx - lon) < 1e-10 && Math.abs(fy - lat) < 1e-10) break;
  }
  return [x, y];
}

// Lon/lat for the map (WGS84 ≈ CGCS2000 at metre level) from a fix in its own crs.
export function toDisplay(lon, lat, crs) {
  return crs === "GCJ-02" ? gcj02ToWgs84(lon, lat) : [lon, lat];
}
