// #/slo?window=24h: each service level objective over the window, as `hybridmesh slo
// report` measures it: the SLI against its objective, the error budget left as a bar,
// the burn rate and a status badge, then one row per subject (pair of services, saga or
// workflow, replication).

import { api } from "../api.js";
import { badge, h, s, table } from "../dom.js";
import { navigate } from "../router.js";

export const WINDOWS = ["1h", "24h", "30d"];

const percent = (value, digits = 2) => (value === null || value === undefined ? "—" : `${(value * 100).toFixed(digits)} %`);
const ratio = (value) => (value === null || value === undefined ? "—" : value.toFixed(2));
const count = (value) => value.toLocaleString();
const seconds = (value) => (value === null || value === undefined ? "—" : `${Math.round(value * 1000)} ms`);

/** What a subject is: a pair of services, a saga or workflow, or a replication. */
export function subjectLabel(m) {
  if (m.source && m.target) return `${m.source} → ${m.target}`;
  if (m.name) return `${m.kind ?? ""} ${m.name}`.trim();
  if (m.replication) return m.replication;
  return "overall";
}

/** The share of the error budget left, as a bar 0..100 %. */
function budgetBar(m, width = 240) {
  const left = m.error_budget_remaining;
  const label = left === null ? "No events: no budget spent" : `Error budget left: ${percent(left, 1)}`;
  return s("svg", { class: "budget-bar", width, height: 14, viewBox: `0 0 ${width} 14`, role: "img", "aria-label": label },
    s("title", null, label),
    s("rect", { class: "budget-track", x: 0, y: 0, width, height: 14, rx: 3 }),
    left === null ? null : s("rect", { class: `budget-fill budget-${m.status}`, x: 0, y: 0, width: Math.max(0, Math.min(1, left)) * width, height: 14, rx: 3 }));
}

function windowForm(window) {
  const select = h("select", { id: "slo-window", name: "window" },
    WINDOWS.map((value) => h("option", { value, selected: value === window }, `last ${value}`)));
  select.addEventListener("change", () => navigate("/slo", { window: select.value }));
  return h("form", { class: "filters", onsubmit: (event) => event.preventDefault() },
    h("label", { for: "slo-window" }, "Window"), select);
}

function panel(slo) {
  const o = slo.overall;
  const latency = o.p95_seconds !== undefined;
  const columns = [
    { label: "Subject", cell: (m) => subjectLabel(m) },
    { label: "SLI", numeric: true, cell: (m) => percent(m.sli) },
    { label: "Good / total", numeric: true, cell: (m) => `${count(m.good)} / ${count(m.total)}` },
    { label: "Budget left", numeric: true, cell: (m) => percent(m.error_budget_remaining, 1) },
    { label: "Burn rate", numeric: true, cell: (m) => ratio(m.burn_rate) },
    ...(latency ? [{ label: "p95", numeric: true, cell: (m) => seconds(m.p95_seconds) }] : []),
    { label: "Status", cell: (m) => badge(m.status) },
  ];
  return h("section", { class: "card slo-panel", id: `slo-${slo.name}`, "aria-labelledby": `slo-${slo.name}-title` },
    h("div", { class: "card-head" },
      h("h2", { id: `slo-${slo.name}-title` }, slo.name, " ", badge(o.status)),
      h("span", { class: "muted" }, slo.source)),
    h("p", { class: "hint" }, slo.sli_description),
    h("dl", { class: "facts slo-facts" },
      h("dt", null, "SLI"), h("dd", { class: "slo-sli" }, `${percent(o.sli)} of ${count(o.total)} (objective ${percent(slo.objective)})`),
      h("dt", null, "Error budget left"), h("dd", { class: "slo-budget" }, budgetBar(o), " ", percent(o.error_budget_remaining, 1)),
      h("dt", null, "Burn rate"), h("dd", { class: "slo-burn" }, ratio(o.burn_rate)),
      latency ? [h("dt", null, "p95"), h("dd", null, seconds(o.p95_seconds))] : null,
      o.excluded ? [h("dt", null, "Excluded"), h("dd", null, count(o.excluded))] : null),
    table({ caption: "By subject", columns, items: slo.subjects, empty: "No events in this window." }));
}

export const sloView = {
  title: "SLO",
  async render({ outlet, query, signal }) {
    const window = WINDOWS.includes(query.get("window")) ? query.get("window") : "24h";
    outlet.append(h("h1", null, "Service level objectives"), windowForm(window));
    const report = await api.get("/slo", { query: { window }, signal });
    outlet.append(
      h("p", { class: "muted", id: "slo-window-text" }, `Over the last ${report.window}, ending ${new Date(report.until * 1000).toLocaleString()}.`),
      ...report.slos.map(panel),
    );
  },
};
