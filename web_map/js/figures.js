// The figures behind the leader view and the cockpit, each from the API it belongs to.
import { api, codeOf } from "./api.js";
import { GRID_TYPES, SOURCE_NAMES } from "./labels.js";
import { shanghaiDay } from "./util.js";

export const OPEN_STATES = ["reported", "accepted", "dispatched", "signed", "return_requested",
  "returned", "handled", "verified"];

/** The code of the user's (first) jurisdiction root. */
export function rootCode(me) {
  const scope = me.scope.filter((p) => p !== "");
  return scope.length ? codeOf(scope[0]) : null;
}

/**
 * Gather the leader view's figures: each block on its own, so one failure leaves the rest.
 * ``items``: also the open events themselves (up to 200 per state, for the severity mix).
 */
export async function leaderData(code, me, { items = true } = {}) {
  const can = (p) => (me.permissions || []).includes(p);
  const yearAgo = shanghaiDay(-364);
  const today = shanghaiDay();
  const weekAgo = shanghaiDay(-6);
  const get = (path, params) => api(path, { params }).catch(() => null);
  const [info, grids, trend, ranking, patrol, open, sources, overdue] = await Promise.all([
    code ? get(`/api/v1/regions/${code}/info`) : null,
    Promise.all(Object.keys(GRID_TYPES).map((t) => get("/api/v1/grids", { grid_type: t, limit: 1 }))),
    can("statistics.read") ? get("/api/v1/statistics/trend", { subject: "event", unit: "month",
      region_code: code, date_from: yearAgo, date_to: today }) : null,
    can("statistics.read") ? get("/api/v1/statistics/ranking", { subject: "event", region_code: code,
      date_from: yearAgo, date_to: today }) : null,
    can("patrol.read") && code ? get("/api/v1/patrols/stats", { region: code, date_from: weekAgo,
      date_to: today }) : null,
    can("event.read") ? Promise.all(OPEN_STATES.map((s) => get("/api/v1/events", { state: s,
      limit: items ? 200 : 1 }))) : null,
    can("event.read") ? Promise.all(Object.keys(SOURCE_NAMES).map((s) =>
      get("/api/v1/events", { source: s, since: `${yearAgo}T00:00:00+08:00`, limit: 1 }))) : null,
    // Only open events have a running clock: every red one is overdue and open (超时在办).
    can("event.read") ? get("/api/v1/events", { sla: "red", limit: 1 }) : null,
  ]);
  return { info: info?.properties, grids, trend, ranking, patrol, open, sources, overdue,
    period: { yearAgo, weekAgo, today } };
}

