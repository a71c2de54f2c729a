// An execution's history as Gantt rows: one row per step, with its attempts, the backoff
// between them, the wait for a completion event and its compensation as bars, skips and
// recoveries as markers, and the execution's turning points (cancel requested,
// compensation begun) as lines across all rows.
//
// The history's records are { seq, type, step_id, attempt, data, at }; the types are the
// engine's: step.started/completed/failed/retried/waiting/skipped/recovered,
// step.compensated, step.compensation_failed, compensation.started/retried/recovered/
// reopened, timer.fired and execution.*.

const ATTEMPT_ENDS = {
  "step.completed": "completed",
  "step.failed": "failed",
  "step.retried": "retried",
  "step.waiting": "accepted",
};
const COMPENSATION_ENDS = {
  "step.compensated": "compensation",
  "compensation.retried": "compensation-retried",
  "step.compensation_failed": "compensation-failed",
};
const MARKERS = {
  "step.skipped": "skipped",
  "step.recovered": "recovered",
  "compensation.recovered": "recovered",
};
const ENDINGS = new Set([
  "execution.completed", "execution.failed", "execution.compensated",
  "execution.compensation_failed", "execution.cancelled",
]);
const LINES = {
  "execution.cancel_requested": "cancel",
  "execution.compensating": "compensating",
};

function label(type, record) {
  const attempt = record.attempt ? ` (attempt ${record.attempt})` : "";
  const error = record.data?.error ? `: ${record.data.error}` : "";
  return `${type}${attempt}${error}`;
}

/** { rows, lines, start, end } for ganttChart(), times in epoch ms; `now` closes what is open. */
export function timelineOf(history, now = Date.now()) {
  const rows = new Map();
  const lines = [];
  const row = (stepId) => {
    if (!rows.has(stepId)) rows.set(stepId, { label: stepId, bars: [], markers: [], open: {} });
    return rows.get(stepId);
  };
  const times = history.map((r) => Date.parse(r.at));
  const start = Math.min(...times);
  const lastAt = Math.max(...times);
  const ended = history.some((r) => ENDINGS.has(r.type));
  const end = ended ? lastAt : Math.max(lastAt, now);
  const close = (r, key, at, kind, title) => {
    const open = r.open[key];
    if (!open) return;
    r.bars.push({ start: open.at, end: at, kind, title: `${open.title} → ${title}` });
    delete r.open[key];
  };
  for (const record of history) {
    const at = Date.parse(record.at);
    const { type } = record;
    if (LINES[type]) {
      lines.push({ at, kind: LINES[type], title: `${type}${record.data?.reason ? `: ${record.data.reason}` : ""}` });
      continue;
    }
    if (!record.step_id) continue;
    const r = row(record.step_id);
    if (type === "step.started") {
      close(r, "backoff", at, "backoff", "retried");
      r.open.attempt = { at, title: label(type, record) };
    } else if (ATTEMPT_ENDS[type]) {
      close(r, "attempt", at, ATTEMPT_ENDS[type], label(type, record));
      close(r, "wait", at, "wait", label(type, record));
      if (type === "step.retried") r.open.backoff = { at, title: label(type, record) };
      if (type === "step.waiting") r.open.wait = { at, title: "waiting for its completion event" };
    } else if (type === "compensation.started") {
      close(r, "comp-backoff", at, "backoff", "compensation retried");
      r.open.comp = { at, title: label(type, record) };
    } else if (COMPENSATION_ENDS[type]) {
      close(r, "comp", at, COMPENSATION_ENDS[type], label(type, record));
      if (type === "compensation.retried") r.open["comp-backoff"] = { at, title: label(type, record) };
    } else if (MARKERS[type]) {
      r.markers.push({ at, kind: MARKERS[type], title: label(type, record) });
    }
  }
  // What is still open runs until the end of the chart.
  for (const r of rows.values()) {
    const kinds = { attempt: "running", wait: "wait", backoff: "backoff", comp: "compensating", "comp-backoff": "backoff" };
    for (const key of Object.keys(r.open)) close(r, key, end, kinds[key], "still open");
    delete r.open;
  }
  return { rows: [...rows.values()], lines, start, end };
}

/** The kinds of bar, marker and line the timeline draws, for its legend. */
export const TIMELINE_KINDS = [
  ["completed", "Attempt completed"],
  ["retried", "Attempt failed, retried"],
  ["failed", "Attempt failed"],
  ["running", "Running"],
  ["wait", "Waiting for event"],
  ["backoff", "Backoff"],
  ["compensation", "Compensation"],
  ["compensation-failed", "Compensation failed"],
  ["skipped", "Skipped"],
  ["cancel", "Cancel requested"],
];
