// Small fetch wrapper: same-origin cookies, the CSRF header on writes, problem+json errors.

function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.split("=")[1]) : null;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

let csrfToken = null;

export function setCsrf(token) {
  csrfToken = token;
}

export async function api(path, { method = "GET", body, params, headers: extra } = {}) {
  const url = new URL(path, window.location.origin);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    }
  }
  const headers = { Accept: "application/json", ...(extra || {}) };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = csrfToken || cookie("gridgov_csrf") || "";
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const res = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const codeOf = (path) => path.split(".").pop();
