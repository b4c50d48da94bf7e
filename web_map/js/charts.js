// ECharts helpers (the vendored echarts.min.js is a plain script: global ``echarts``), shared by
// the map's statistics, the leader view and the cockpit.

const FONT = '"Microsoft YaHei", "WenQuanYi Micro Hei", "PingFang SC", sans-serif';
export const PALETTE = ["#1565c0", "#2e7d32", "#f9a825", "#c62828", "#6a1b9a", "#00838f", "#ef6c00",
  "#4e342e", "#ad1457", "#546e7a", "#9e9d24", "#283593"];

const observers = new WeakMap();
const ECHARTS = new URL("../vendor/echarts-5.6.0/echarts.min.js", import.meta.url).href;
let loading = null;

/** Load ECharts on first use: a megabyte the map page does not need until a chart is drawn. */
export function ensureECharts() {
  if (typeof echarts !== "undefined") return Promise.resolve();
  loading ||= new Promise((resolve, reject) => {
    const tag = document.createElement("script");
    tag.src = ECHARTS;
    tag.onload = () => resolve();
    tag.onerror = () => reject(new Error("ECharts failed to load"));
    document.head.appendChild(tag);
  });
  return loading;
}

/** Draw ``option`` into ``el`` (reusing its chart); ``big`` scales text for the big screen. */
export async function draw(el, option, { dark = false, big = false } = {}) {
  if (!el) return null;
  await ensureECharts();
  let chart = echarts.getInstanceByDom(el);
  if (!chart) {
    chart = echarts.init(el, dark ? "dark" : null, { renderer: "canvas" });
    const ro = new ResizeObserver(() => chart.resize());
    ro.observe(el);
    observers.set(el, ro);
  }
  const size = big ? 18 : 12;
  // Tooltips drawn on the canvas (richText), not as HTML: region and type names come from the API.
  const tooltip = option.tooltip ? { ...option.tooltip, renderMode: "richText" } : undefined;
  chart.setOption({
    color: PALETTE, backgroundColor: "transparent", animation: !big,
    aria: { enabled: true }, textStyle: { fontFamily: FONT, fontSize: size },
    ...option, tooltip,
  }, true);
  return chart;
}

const axisText = (big) => ({ fontSize: big ? 16 : 11 });

export function trendOption(rows, { big = false, unit = "month" } = {}) {
  const label = (p) => (unit === "month" ? p.slice(0, 7) : p.slice(5));
  return {
    tooltip: { trigger: "axis" },
    legend: { top: 0, textStyle: { fontSize: big ? 18 : 12 } },
    grid: { left: 40, right: 16, top: big ? 40 : 30, bottom: 28 },
    xAxis: { type: "category", data: rows.map((r) => label(r.period)), axisLabel: axisText(big) },
    yAxis: { type: "value", minInterval: 1, axisLabel: axisText(big) },
    series: [
      { name: "上报", type: "line", smooth: true, data: rows.map((r) => r.n), areaStyle: { opacity: 0.15 } },
      { name: "办结", type: "line", smooth: true, data: rows.map((r) => r.closed ?? null) },
    ],
  };
}

export function closureOption(rows, { big = false } = {}) {
  return {
    tooltip: { trigger: "axis" },
    legend: { top: 0, textStyle: { fontSize: big ? 18 : 12 } },
    grid: { left: 44, right: 44, top: 32, bottom: 28 },
    xAxis: { type: "category", data: rows.map((r) => r.period.slice(0, 7)), axisLabel: axisText(big) },
    yAxis: [{ type: "value", minInterval: 1, axisLabel: axisText(big) },
      { type: "value", min: 0, max: 100, axisLabel: { ...axisText(big), formatter: "{value}%" } }],
    series: [
      { name: "上报", type: "bar", data: rows.map((r) => r.n) },
      { name: "办结率", type: "line", yAxisIndex: 1, smooth: true,
        data: rows.map((r) => (r.n ? Math.round((r.closed / r.n) * 1000) / 10 : null)) },
    ],
  };
}

export function pieOption(items, { big = false, name = "" } = {}) {
  const empty = !items.some((i) => i.value);
  return {
    title: empty ? { text: "暂无数据", left: "center", top: "middle",
      textStyle: { fontSize: big ? 20 : 13, color: "#90a4ae", fontWeight: "normal" } } : undefined,
    tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
    legend: { type: "scroll", orient: "vertical", right: 0, top: "middle",
      textStyle: { fontSize: big ? 18 : 11 } },
    series: empty ? [] : [{ name, type: "pie", radius: ["38%", "68%"], center: ["36%", "50%"],
      label: { show: false }, data: items }],
  };
}

export function rankingOption(rows, { big = false, measure = "per_1000" } = {}) {
  const sorted = [...rows].reverse(); // ECharts draws the first category at the bottom
  return {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    grid: { left: big ? 120 : 80, right: 24, top: 8, bottom: 24 },
    xAxis: { type: "value", axisLabel: axisText(big) },
    yAxis: { type: "category", data: sorted.map((r) => `${r.rank}. ${r.name}`), axisLabel: axisText(big) },
    series: [{ type: "bar", data: sorted.map((r) => ({ value: r[measure],
      itemStyle: { color: r.own ? "#c62828" : "#90a4ae" } })) }],
  };
}

export function barOption(items, { big = false } = {}) {
  return {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    grid: { left: 40, right: 16, top: 16, bottom: 28 },
    xAxis: { type: "category", data: items.map((i) => i.name), axisLabel: axisText(big) },
    yAxis: { type: "value", minInterval: 1, axisLabel: axisText(big) },
    series: [{ type: "bar", data: items.map((i) => ({ value: i.value,
      itemStyle: i.color ? { color: i.color } : undefined })) }],
  };
}

/** Quantile class breaks (up to ``k`` classes) of the non-null values. */
export function breaks(values, k = 5) {
  const v = values.filter((x) => x != null && !Number.isNaN(x)).sort((a, b) => a - b);
  if (!v.length) return [];
  const out = [];
  for (let i = 1; i < k; i += 1) out.push(v[Math.min(v.length - 1, Math.floor((i * v.length) / k))]);
  return [...new Set(out)];
}

export function classOf(value, cuts) {
  if (value == null || Number.isNaN(value)) return -1;
  let c = 0;
  while (c < cuts.length && value > cuts[c]) c += 1;
  return c;
}

export const RAMP = ["#fff5eb", "#fdd0a2", "#fd8d3c", "#d94801", "#7f2704"];
