// Chinese names and colours for the API's codes (one place, shared with the cockpit).

export const LEVEL_NAMES = {
  city: "市", county: "县(市、区)", township: "乡镇(街道)", village: "村(社区)",
  grid: "网格", micro_grid: "微网格",
};
export const GRID_TYPES = { general: "一般网格", key: "重点网格", dedicated: "专属网格" };
export const COUNT_NAMES = {
  persons: "实有人口", residences: "住所", buildings: "建筑物", key_places: "重点场所",
  enterprises: "企业", city_components: "城市部件", addresses: "标准地址",
};
export const POSITIONS = {
  grid_instructor: "网格指导员", grid_leader: "网格长", grid_worker: "专职网格员",
  part_time_grid_worker: "兼职网格员", party_group_leader: "党小组长",
  command_centre_staff: "指挥室", department_staff: "部门人员",
};

export const STATE_NAMES = {
  reported: "待受理", refused: "不予受理", accepted: "待派遣", dispatched: "待签收",
  signed: "处置中", return_requested: "申请退回", returned: "已退回", handled: "待核查",
  verified: "待办结", closed: "已办结", evaluated: "已评价", merged: "已合并",
};
export const FINAL_STATES = new Set(["closed", "evaluated", "refused", "merged"]);

export const QUEUE_NAMES = {
  to_accept: "待受理", to_dispatch: "待派遣", to_review: "待审核", to_sign: "待签收",
  to_handle: "待办理", to_verify: "待核查", to_close: "待办结", done: "已办理",
  closed: "已办结", mine: "我上报的",
};
/** Queues that hold work waiting for the caller (to-dos), in the order they are worked. */
export const TODO_QUEUES = ["to_accept", "to_dispatch", "to_review", "to_sign", "to_handle",
  "to_verify", "to_close"];

export const ACTION_NAMES = {
  report: "上报", accept: "受理", refuse: "不予受理", dispatch: "派遣", sign: "签收",
  handle: "处置", verify_pass: "核查通过", verify_fail: "核查不通过", close: "办结",
  evaluate: "评价", request_return: "申请退回", approve_return: "同意退回",
  reject_return: "驳回退回", reassign: "改派", request_extension: "延期申请",
  approve_extension: "同意延期", reject_extension: "驳回延期", escalate: "上报上级",
  remind: "催办", supervise: "督办", resolve_on_spot: "就地解决", merge: "合并",
  merged_from: "并入事件", overdue_remind: "超时催办", overdue_escalate: "超时上报",
};
export const SOURCE_NAMES = {
  patrol: "网格员巡查", commander: "指挥室录入", public: "群众上报", hotline_12345: "12345热线",
  police_110: "110联动", external: "其他平台",
};
export const SEVERITY_NAMES = { normal: "一般", major: "较大", urgent: "紧急" };
export const EVENT_LEVEL_NAMES = { township: "乡镇", county: "县级", city: "市级" };
export const PHASE_NAMES = { accept: "受理", sign: "签收", handle: "处置", verify: "核查" };
export const CLOCK_UNITS = {
  natural_hours: "自然时", working_hours: "工作时", working_days: "工作日", natural_days: "自然日",
};

/** SLA colours: red overdue, amber warning, green in time, grey no clock running. */
export const SLA_COLOURS = { red: "#d32f2f", amber: "#f9a825", green: "#2e7d32", none: "#546e7a" };

/** Text colour readable on a background (WCAG contrast: dark ink on light, white on dark). */
export function inkOn(hex) {
  const c = hex.replace("#", "").match(/../g).map((x) => {
    const v = parseInt(x, 16) / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  const lum = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  return (lum + 0.05) / 0.069 > 1.05 / (lum + 0.05) ? "#1d2733" : "#ffffff"; // ink #1d2733: L 0.019
}
export const SLA_NAMES = { red: "超时", amber: "预警", green: "正常", none: "无时限" };

export function slaOf(ev) {
  if (FINAL_STATES.has(ev.state)) return "none";
  return ev.sla_status || "none";
}
