// #/executions?status=&limit=: executions newest first, filtered by status, a page at a
// time ("Load more" follows the API's next_cursor). Rows change in place as the live
// stream tells of status changes, and executions started meanwhile come in on top.

import { api } from "../api.js";
import { appendRows, badge, h, table } from "../dom.js";
import { between, duration, when } from "../format.js";
import { navigate } from "../router.js";
import { openStream } from "../stream.js";

export const STATUSES = [
  "running", "compensating", "completed", "failed", "compensated", "compensation_failed", "cancelled",
];

const PAGE_SIZE = 25;

const COLUMNS = [
  { label: "Execution", cell: (e) => h("a", { href: `#/executions/${encodeURIComponent(e.id)}` }, h("code", null, e.id)) },
  { label: "Definition", cell: (e) => `${e.name} v${e.version}` },
  { label: "Kind", cell: (e) => e.kind },
  { label: "Status", cell: (e) => badge(e.status) },
  { label: "Started", cell: (e) => when(e.created_at) },
  { label: "Duration", numeric: true, cell: (e) => duration(between(e.created_at, e.ended_at)) },
];

/** One row of the table, marked with its execution's id so that it can be replaced. */
function rowOf(execution) {
  return h("tr", { dataset: { id: execution.id } },
    COLUMNS.map((c) => h("td", { class: c.numeric ? "num" : null }, c.cell(execution))));
}

/** Mark the last `items.length` rows of `body` with their executions' ids. */
function markRows(body, items) {
  const rows = [...body.rows].slice(-items.length);
  rows.forEach((row, i) => { row.dataset.id = items[i].id; });
}

function filterForm(status) {
  const select = h("select", { id: "status-filter", name: "status" },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((value) => h("option", { value, selected: value === status }, value.replaceAll("_", " "))));
  select.addEventListener("change", () => navigate("/executions", { status: select.value }));
  return h("form", { class: "filters", role: "search", onsubmit: (event) => event.preventDefault() },
    h("label", { for: "status-filter" }, "Status"), select);
}

export const executionsView = {
  title: "Executions",
  async render({ outlet, query, signal }) {
    const status = query.get("status") ?? "";
    const limit = Number(query.get("limit")) || PAGE_SIZE;
    const summary = h("p", { class: "muted", id: "executions-count", "aria-live": "polite" });
    const more = h("button", { type: "button", class: "button secondary", id: "load-more", hidden: true }, "Load more");
    outlet.append(h("h1", null, "Executions"), filterForm(status));
    const page = await api.get("/executions", { query: { status, limit }, signal });
    const list = table({ id: "executions-table", columns: COLUMNS, items: page.items, empty: "No executions match." });
    const body = list.tBodies[0];
    if (page.items.length) markRows(body, page.items);
    let shown = page.items.length;
    let cursor = page.next_cursor;
    const update = () => {
      summary.textContent = `Showing ${shown} execution${shown === 1 ? "" : "s"}${cursor ? "; more available" : ""}.`;
      more.hidden = !cursor;
    };
    more.addEventListener("click", async () => {
      more.disabled = true;
      try {
        const next = await api.get("/executions", { query: { status, limit, cursor }, signal });
        appendRows(body, COLUMNS, next.items);
        markRows(body, next.items);
        shown += next.items.length;
        cursor = next.next_cursor;
        update();
      } finally {
        more.disabled = false;
      }
    });
    update();
    const card = h("section", { class: "card", id: "executions-card", dataset: { live: "connecting" } },
      list, h("div", { class: "table-foot" }, summary, more));
    outlet.append(card);

    // A change to a shown execution replaces its row; a new one that the filter admits
    // goes on top (the list is newest first).
    const changed = async (change) => {
      const row = body.querySelector(`tr[data-id="${CSS.escape(change.id)}"]`);
      const admitted = !status || status === change.status;
      if (!row && !(admitted && change.status === "running")) return;
      const execution = await api.get(`/executions/${encodeURIComponent(change.id)}`, { signal, quiet: true });
      const fresh = rowOf(execution);
      if (row) {
        row.replaceWith(fresh);
        return;
      }
      if (body.querySelector(`tr[data-id="${CSS.escape(change.id)}"]`)) return; // raced
      body.querySelector("tr.empty")?.remove();
      body.prepend(fresh);
      shown += 1;
      update();
    };
    openStream("/stream?topics=executions", {
      signal,
      onState: (state) => { card.dataset.live = state; },
      onEvent: (message) => {
        if (message.type === "execution") changed(JSON.parse(message.data)).catch(() => {});
      },
    });
  },
};
