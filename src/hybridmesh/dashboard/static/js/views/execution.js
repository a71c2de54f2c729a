// #/executions/:id: one execution, its steps, a timeline of its history, and a Cancel
// action (with a confirm step) while it runs. A running execution is read again every few
// seconds until it ends or the user leaves the page.

import { api } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { between, duration, when } from "../format.js";
import { ganttChart } from "../charts.js";
import { TIMELINE_KINDS, timelineOf } from "./timeline.js";

const REFRESH_MS = 2000;
const TERMINAL = new Set(["completed", "failed", "compensated", "compensation_failed", "cancelled"]);

function facts(e) {
  const pairs = [
    ["Execution", h("code", null, e.id)],
    ["Definition", `${e.name} v${e.version} (${e.kind})`],
    ["Status", badge(e.status)],
    ["Started", when(e.created_at)],
    ["Updated", when(e.updated_at)],
    ["Ended", when(e.ended_at)],
    ["Duration", duration(between(e.created_at, e.ended_at))],
  ];
  if (e.error) pairs.push(["Error", h("span", { class: "error-text" }, e.error)]);
  return h("dl", { class: "facts", id: "execution-facts" }, pairs.flatMap(([term, value]) => [h("dt", null, term), h("dd", null, value)]));
}

function steps(e) {
  return table({
    id: "steps-table",
    caption: "Steps",
    columns: [
      { label: "Step", cell: (s) => s.step_id },
      { label: "Status", cell: (s) => badge(s.status) },
      { label: "Attempts", numeric: true, cell: (s) => s.attempt },
      { label: "Compensation", cell: (s) => (s.compensation && s.compensation !== "none" ? s.compensation : "—") },
      { label: "Error", cell: (s) => s.error ?? s.compensation_error ?? "" },
    ],
    items: e.steps ?? [],
    empty: "No steps yet.",
  });
}

function timeline(history) {
  if (!history.length) return h("p", { class: "muted" }, "No history yet.");
  const data = timelineOf(history);
  const chart = ganttChart({
    ...data,
    label: `Timeline of ${data.rows.length} steps`,
    axisFormat: (t) => `+${duration(t - data.start)}`,
  });
  const legend = h("ul", { class: "legend" }, TIMELINE_KINDS.map(([kind, name]) => h("li", null, h("span", { class: `swatch kind-${kind}`, "aria-hidden": "true" }), name)));
  return h("div", { id: "timeline" }, legend, h("div", { class: "chart-scroll" }, chart));
}

function historyTable(history) {
  return h("details", { class: "history" },
    h("summary", null, `History (${history.length} records)`),
    table({
      columns: [
        { label: "#", numeric: true, cell: (r) => r.seq },
        { label: "At", cell: (r) => when(r.at) },
        { label: "Type", cell: (r) => h("code", null, r.type) },
        { label: "Step", cell: (r) => r.step_id ?? "" },
        { label: "Attempt", numeric: true, cell: (r) => r.attempt ?? "" },
        { label: "Data", cell: (r) => (r.data ? h("code", { class: "json" }, JSON.stringify(r.data)) : "") },
      ],
      items: history,
    }));
}

/** The Cancel button and its confirm step; `onCancel()` sends the request. */
function cancelControl(onCancel) {
  const button = h("button", { type: "button", class: "button danger", id: "cancel-execution" }, "Cancel execution");
  const confirm = h("div", { class: "confirm", id: "cancel-confirm", role: "group", "aria-labelledby": "cancel-question", hidden: true },
    h("p", { id: "cancel-question" }, "Cancel this execution? Nothing new starts, and completed steps are compensated."),
    h("button", { type: "button", class: "button danger", id: "cancel-confirm-yes" }, "Yes, cancel it"),
    h("button", { type: "button", class: "button secondary", id: "cancel-confirm-no" }, "Keep it running"));
  const [yes, no] = confirm.querySelectorAll("button");
  button.addEventListener("click", () => {
    button.hidden = true;
    confirm.hidden = false;
    no.focus();
  });
  no.addEventListener("click", () => {
    confirm.hidden = true;
    button.hidden = false;
    button.focus();
  });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try {
      await onCancel();
      confirm.replaceChildren(h("p", { class: "muted", role: "status" }, "Cancel requested; waiting for the execution to stop."));
    } catch {
      yes.disabled = false; // the banner says why
    }
  });
  return h("div", { class: "actions" }, button, confirm);
}

export const executionView = {
  title: "Execution",
  async render({ outlet, params, signal }) {
    const path = `/executions/${encodeURIComponent(params.id)}`;
    const heading = h("h1");
    const actions = h("div");
    const body = h("div");
    outlet.append(h("p", { class: "crumbs" }, h("a", { href: "#/executions" }, "Executions"), " / ", params.id), heading, actions, body);
    let cancellable = null;

    async function load() {
      const e = await api.get(path, { signal });
      replace(heading, `${e.name} `, badge(e.status));
      if (e.status === "running" && !cancellable) {
        cancellable = cancelControl(() => api.post(`${path}/cancel`, {}, { signal }));
        actions.append(cancellable);
      } else if (e.status !== "running" && cancellable && TERMINAL.has(e.status)) {
        cancellable.remove();
        cancellable = null;
      }
      const history = e.history ?? [];
      replace(body,
        h("section", { class: "card" }, facts(e)),
        h("section", { class: "card", "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), timeline(history)),
        h("section", { class: "card" }, steps(e)),
        h("section", { class: "card" }, historyTable(history)));
      if (!TERMINAL.has(e.status)) {
        const timer = setTimeout(() => load().catch(() => {}), REFRESH_MS);
        signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
      }
    }
    await load();
  },
};
