// #/migrations: the migration plans and where each stands. #/migrations/:name: one plan:
// where it stands, its traffic split over time, each gate's backend against its thresholds
// over time, its steps and audit, and a person's controls (each with a confirm step,
// offered only when the plan's status allows it). A plan that has not ended is read again
// every few seconds while the page is open.

import { api } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { when } from "../format.js";
import { lineChart } from "../charts.js";

const REFRESH_MS = 3000;
const ENDED = new Set(["completed", "rolled_back", "aborted"]);

/** The controls: which statuses allow each (as the store's), and what the confirm says. */
export const CONTROLS = [
  { action: "approve", label: "Approve", allowed: ["waiting_approval", "running", "paused"],
    question: "Approve the current step? The runner goes ahead with it.", kind: "primary" },
  { action: "pause", label: "Pause", allowed: ["running", "waiting_approval"],
    question: "Pause the plan? Traffic stays as it is until it is resumed.", kind: "secondary" },
  { action: "resume", label: "Resume", allowed: ["paused"],
    question: "Resume the plan? A step being monitored starts a new window.", kind: "secondary" },
  { action: "abort", label: "Abort", allowed: ["pending", "running", "waiting_approval", "paused"],
    question: "Abort the plan? Traffic is rolled back as its rollback strategy says, and the plan ends.", kind: "danger" },
];

const at = (seconds) => when(seconds ? seconds * 1000 : null);
const clock = (ms) => new Date(ms).toLocaleTimeString();
const percent = (value) => `${Math.round(value * 100) / 100}%`;
const stepOf = (p) => (p.steps ? `${Math.min(p.step + 1, p.steps)} of ${p.steps}` : "—");

const LIST_COLUMNS = [
  { label: "Plan", cell: (p) => h("a", { href: `#/migrations/${encodeURIComponent(p.name)}` }, p.name) },
  { label: "Strategy", cell: (p) => p.strategy.replaceAll("_", " ") },
  { label: "From → to", cell: (p) => `${p.source} → ${p.targets.join(", ")}` },
  { label: "Status", cell: (p) => badge(p.status) },
  { label: "Step", cell: (p) => `${stepOf(p)}${p.step_name ? `: ${p.step_name}` : ""}` },
  { label: "Updated", cell: (p) => at(p.updated_at) },
];

export const migrationsView = {
  title: "Migrations",
  async render({ outlet, signal }) {
    outlet.append(h("h1", null, "Migrations"));
    const plans = await api.get("/migrations", { signal });
    outlet.append(table({ id: "migrations-table", columns: LIST_COLUMNS, items: plans, empty: "No migration plans." }));
  },
};

function facts(p) {
  const pairs = [
    ["Status", h("span", null, badge(p.status), p.reason ? ` ${p.reason}` : "")],
    ["Step", `${stepOf(p)}${p.step_name ? ` (${p.step_name}, ${p.phase})` : ""}`],
    ["Strategy", `${p.strategy.replaceAll("_", " ")}: ${p.source} → ${p.targets.join(", ")}`],
    ["Version", String(p.version)],
  ];
  if (p.weights) pairs.push(["Weights", `${p.route}: ${Object.entries(p.weights).map(([b, w]) => `${b} ${percent(w)}`).join(", ")}`]);
  if (p.thresholds) {
    const last = p.last_measurement;
    let gate = "no measurement yet";
    if (last && last.error) gate = `could not measure: ${last.error}`;
    else if (last) {
      gate = `error rate ${percent(last.error_rate * 100)} (< ${percent(p.thresholds.max_error_rate * 100)}), `
        + `p95 ${last.p95_ms === null ? "—" : `${Math.round(last.p95_ms)} ms`} (< ${p.thresholds.max_p95_ms} ms), `
        + `${last.requests} requests (≥ ${p.thresholds.min_requests}): ${last.verdict}`;
    }
    pairs.push(["Gate", gate]);
    const m = p.measurements;
    pairs.push(["Window", `${m.taken} measurements: ${m.passed} passed, ${m.failed} failed, ${m.inconclusive} inconclusive`
      + (p.window_left_seconds !== undefined && p.window_left_seconds !== null ? `; ${p.window_left_seconds} s left` : "")]);
  }
  return h("dl", { class: "facts", id: "migration-facts" }, pairs.flatMap(([term, value]) => [h("dt", null, term), h("dd", null, value)]));
}

/** Each moved backend's share as a staircase up to `end` (ms), and the rest of its route. */
export function trafficSeries(shifts, end) {
  const byBackend = new Map();
  for (const shift of shifts) {
    const key = `${shift.route}/${shift.backend}`;
    if (!byBackend.has(key)) byBackend.set(key, []);
    byBackend.get(key).push({ x: shift.at * 1000, y: shift.percent });
  }
  const series = [];
  for (const [key, points] of byBackend) {
    const stairs = [];
    points.forEach((point, i) => {
      if (i) stairs.push({ x: point.x, y: points[i - 1].y });
      stairs.push(point);
    });
    stairs.push({ x: Math.max(end, stairs[stairs.length - 1].x), y: stairs[stairs.length - 1].y });
    const [route] = key.split("/");
    series.push({ name: key, points: stairs });
    series.push({ name: `${route}: the other backends`, points: stairs.map((p) => ({ x: p.x, y: 100 - p.y })) });
  }
  return series;
}

function legend(series) {
  return h("ul", { class: "legend" }, series.map((line, index) => h("li", null, h("span", { class: `swatch swatch-line series-${index % 6}`, "aria-hidden": "true" }), line.name)));
}

function trafficCard(p) {
  const end = ENDED.has(p.status) ? p.updated_at * 1000 : Date.now();
  const body = p.traffic.length
    ? (() => {
      const series = trafficSeries(p.traffic, end);
      return h("div", null, legend(series), h("div", { class: "chart-scroll" },
        lineChart({ series, label: "Traffic split over time, percent", width: 960, height: 220, xFormat: clock, yFormat: (v) => `${v}%` })));
    })()
    : h("p", { class: "muted" }, "No traffic has moved yet.");
  return h("section", { class: "card", id: "traffic-split", "aria-labelledby": "traffic-title" }, h("h2", { id: "traffic-title" }, "Traffic split"), body);
}

function gateCharts(gate) {
  const points = gate.series.filter((point) => point.requests > 0);
  if (!points.length) {
    const note = gate.started_at ? "No request reached the backend yet." : "Not started.";
    return h("p", { class: "muted" }, note);
  }
  const t = gate.thresholds;
  const errors = lineChart({
    series: [{ name: "error rate", points: points.map((q) => ({ x: q.at * 1000, y: q.error_rate * 100 })) }],
    thresholds: [{ y: t.max_error_rate * 100, label: `max ${percent(t.max_error_rate * 100)}` }],
    label: `${gate.name}: error rate over time, percent`, width: 960, height: 180, xFormat: clock, yFormat: (v) => `${v}%`,
  });
  const latency = lineChart({
    series: [{ name: "p95", points: points.filter((q) => q.p95_ms !== null).map((q) => ({ x: q.at * 1000, y: q.p95_ms })) }],
    thresholds: [{ y: t.max_p95_ms, label: `max ${t.max_p95_ms} ms` }],
    label: `${gate.name}: p95 latency over time, ms`, width: 960, height: 180, xFormat: clock, yFormat: (v) => `${v} ms`,
  });
  const requests = points.reduce((sum, q) => sum + q.requests, 0);
  return h("div", { class: "gate-charts" },
    h("p", { class: "hint" }, `${requests} requests to ${gate.backend}, in slices of ${points[0].seconds} s (at least ${t.min_requests} needed per window)`),
    h("div", { class: "chart-scroll" }, errors), h("div", { class: "chart-scroll" }, latency));
}

function gatesCard(p) {
  const shown = p.gates.filter((gate) => gate.started_at);
  const body = shown.length
    ? shown.map((gate) => h("div", { class: "gate", dataset: { step: gate.step } },
      h("h3", null, `${gate.step + 1}. ${gate.name}`, gate.ended_at ? "" : h("span", { class: "muted" }, " (monitoring)")),
      gateCharts(gate)))
    : [h("p", { class: "muted" }, "No gated step has started yet.")];
  return h("section", { class: "card", id: "gates", "aria-labelledby": "gates-title" }, h("h2", { id: "gates-title" }, "Gates"), ...body);
}

function stepsCard(p) {
  const verdicts = new Map(p.evaluations.map((e) => [e.step, e]));
  const mark = (index) => {
    if (p.status === "completed" || index < p.step) return "done";
    if (index > p.step) return "";
    return p.status.replaceAll("_", " ");
  };
  return h("section", { class: "card" }, table({
    id: "migration-steps",
    caption: "Steps",
    columns: [
      { label: "#", numeric: true, cell: (s) => s.index + 1 },
      { label: "Step", cell: (s) => s.name },
      { label: "Type", cell: (s) => s.type },
      { label: "Waits for approval", cell: (s) => (s.approval ? "yes" : "") },
      { label: "Where", cell: (s) => mark(s.index) },
      { label: "Gate verdict", cell: (s) => verdicts.get(s.index)?.verdict ?? "" },
    ],
    items: p.plan.steps.map((step, index) => ({ ...step, index })),
  }));
}

function auditCard(p) {
  return h("section", { class: "card" }, h("details", { class: "history" },
    h("summary", null, `Audit (${p.audit.length} entries)`),
    table({
      id: "migration-audit",
      columns: [
        { label: "When", cell: (e) => at(e.at) },
        { label: "Who", cell: (e) => e.actor },
        { label: "What", cell: (e) => h("code", null, e.action) },
        { label: "Step", numeric: true, cell: (e) => (e.step === null ? "" : e.step + 1) },
        { label: "Why", cell: (e) => e.reason ?? "" },
      ],
      items: p.audit.slice().reverse(),
    })));
}

/** A button per control, enabled when the status allows it, each asking first. */
function controls(p, run) {
  const confirm = h("div", { class: "confirm", id: "migration-confirm", role: "group", "aria-labelledby": "migration-question", hidden: true });
  const buttons = CONTROLS.map((control) => {
    const button = h("button", {
      type: "button", class: `button ${control.kind}`, id: `migration-${control.action}`,
      disabled: !control.allowed.includes(p.status),
    }, control.label);
    button.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: `button ${control.kind}`, id: "migration-confirm-yes" }, `Yes, ${control.action}`);
      const no = h("button", { type: "button", class: "button secondary", id: "migration-confirm-no" }, "No");
      const reason = h("input", { type: "text", id: "migration-reason", maxlength: 1000, placeholder: "Why (for the audit)" });
      replace(confirm, h("p", { id: "migration-question" }, control.question), h("label", { for: "migration-reason" }, "Reason"), reason, yes, no);
      confirm.hidden = false;
      no.focus();
      no.addEventListener("click", () => {
        confirm.hidden = true;
        button.focus();
      });
      yes.addEventListener("click", async () => {
        yes.disabled = true;
        try {
          await run(control.action, reason.value.trim() || null);
        } catch {
          yes.disabled = false; // the banner says why
        }
      });
    });
    return button;
  });
  return h("div", { class: "actions", id: "migration-controls" }, ...buttons, confirm);
}

export const migrationView = {
  title: "Migration",
  async render({ outlet, params, signal }) {
    const path = `/migrations/${encodeURIComponent(params.name)}`;
    const heading = h("h1");
    const actions = h("div");
    const body = h("div");
    outlet.append(h("p", { class: "crumbs" }, h("a", { href: "#/migrations" }, "Migrations"), " / ", params.name), heading, actions, body);
    let timer = null;
    signal.addEventListener("abort", () => clearTimeout(timer), { once: true });

    async function act(action, reason) {
      await api.post(`${path}/${action}`, reason ? { reason } : {}, { signal });
      actions.replaceChildren(); // done: the controls are made again for the new status
      await load();
    }

    async function load() {
      clearTimeout(timer);
      const p = await api.get(path, { signal });
      replace(heading, `${p.name} `, badge(p.status));
      const asking = actions.querySelector(".confirm:not([hidden])");
      if (!asking) replace(actions, controls(p, act)); // a question open stays as it is
      replace(body,
        h("section", { class: "card" }, facts(p)),
        trafficCard(p),
        gatesCard(p),
        stepsCard(p),
        auditCard(p));
      if (!ENDED.has(p.status) && !signal.aborted) timer = setTimeout(() => load().catch(() => {}), REFRESH_MS);
    }
    await load();
  },
};
