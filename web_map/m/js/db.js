// IndexedDB: what the phone must not lose. Samples wait in `points` until they are sealed into
// `batches` (each with a uuid kept across retries, so the server stores a retried batch once);
// reports and actions wait in `outbox` with their photos as Blobs; `track` holds the current
// patrol's line for the map; `kv` holds patrol state and cached answers for offline use.

const NAME = "gridgov-m";
const VERSION = 1;
let opened = null;

export function db() {
  if (!opened) {
    opened = new Promise((resolve, reject) => {
      const r = indexedDB.open(NAME, VERSION);
      r.onupgradeneeded = () => {
        const d = r.result;
        for (const s of ["points", "batches", "outbox", "track"]) {
          d.createObjectStore(s, { keyPath: "seq", autoIncrement: true });
        }
        d.createObjectStore("kv", { keyPath: "k" });
      };
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
  }
  return opened;
}

export const req = (r) => new Promise((resolve, reject) => {
  r.onsuccess = () => resolve(r.result);
  r.onerror = () => reject(r.error);
});

// Run fn(store, …) in one transaction; resolves with fn's result once the transaction commits.
export async function tx(names, mode, fn) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const t = d.transaction(names, mode);
    let result;
    Promise.resolve(fn(...names.map((n) => t.objectStore(n)))).then((v) => { result = v; },
      (e) => { try { t.abort(); } catch { /* already finished */ } reject(e); });
    t.oncomplete = () => resolve(result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new Error("transaction aborted"));
  });
}

export const add = (store, value) => tx([store], "readwrite", (s) => req(s.add(value)));
export const put = (store, value) => tx([store], "readwrite", (s) => req(s.put(value)));
export const del = (store, key) => tx([store], "readwrite", (s) => req(s.delete(key)));
export const all = (store) => tx([store], "readonly", (s) => req(s.getAll()));
export const clear = (store) => tx([store], "readwrite", (s) => req(s.clear()));

export async function kvGet(k, fallback = null) {
  const row = await tx(["kv"], "readonly", (s) => req(s.get(k)));
  return row ? row.v : fallback;
}

export const kvSet = (k, v) => put("kv", { k, v });
