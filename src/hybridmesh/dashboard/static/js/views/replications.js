// #/replications: each replication and bridge with what is asked of it, whether a process
// runs it, its phase and lag, and its latest reconciliation run, as `hybridmesh replicate
// list --json` has them.

import { api } from "../api.js";
import { badge, h, table } from "../dom.js";

function lag(status) {
  if (!status || status.lag_changes === undefined) return "—";
  const secs = typeof status.lag_seconds === "number" ? `, ${status.lag_seconds.toFixed(1)} s` : "";
  return `${status.lag_changes} changes${secs}`;
}

function reconciliation(run) {
  if (!run) return h("span", { class: "muted" }, "never");
  return h("span", null, badge(run.status), " ",
    `${run.missing}/${run.extra}/${run.different} of ${run.source_rows.toLocaleString()} rows`,
    h("span", { class: "muted" }, ` · ${new Date((run.finished_at ?? run.started_at) * 1000).toLocaleString()}`));
}

const COLUMNS = [
  { label: "Name", cell: (r) => h("code", null, r.name) },
  { label: "Kind", cell: (r) => r.kind },
  { label: "Asked", cell: (r) => r.desired + (r.reverse ? " + reverse" : "") },
  { label: "Running", cell: (r) => (r.running ? "yes" : "no") },
  { label: "Phase", cell: (r) => r.status?.phase ?? "—" },
  { label: "Lag", cell: (r) => lag(r.status) },
  { label: "Last reconciliation (missing/extra/different)", cell: (r) => reconciliation(r.last_reconciliation) },
];

export const replicationsView = {
  title: "Replications",
  async render({ outlet, signal }) {
    outlet.append(h("h1", null, "Replications"));
    const items = await api.get("/replications", { signal });
    outlet.append(h("section", { class: "card" },
      table({ id: "replications-table", columns: COLUMNS, items, empty: "No replication or bridge is stored (hybridmesh replicate apply FILE)." })));
  },
};
