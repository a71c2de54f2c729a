// #/executions?status=&kind=&name=&limit=: executions newest first, filtered by status,
// kind (saga or workflow) and definition name, a page at a time ("Load more" follows the
// API's next_cursor with the same filters). Rows change in place as the live stream tells
// of status changes, and executions started meanwhile that the filters admit come in on top.

import { api } from "../api.js";
import { appendRows, badge, h, table } from "../dom.js";
import { between, duration, when } from "../format.js";
import { navigate } from "../router.js";
import { openStream } from "../stream.js";

export const KINDS = ["saga", "workflow"];

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

/** The filters of the address: { status, kind, name }, each "" when absent. */
function filtersOf(query) {
  return { status: query.get("status") ?? "", kind: query.get("kind") ?? "", name: (query.get("name") ?? "").trim() };
}

/** Whether an execution (or a stream's change of one) passes `filters`. */
export function admits(filters, execution) {
  return (!filters.status || filters.status === execution.status)
    && (!filters.kind || filters.kind === execution.kind)
    && (!filters.name || filters.name === execution.name);
}

function filterForm(filters) {
  const status = h("select", { id: "status-filter", name: "status" },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((value) => h("option", { value, selected: value === filters.status }, value.replaceAll("_", " "))));
  const kind = h("select", { id: "kind-filter", name: "kind" },
    h("option", { value: "" }, "Any kind"),
    KINDS.map((value) => h("option", { value, selected: value === filters.kind }, value)));
  const name = h("input", { id: "name-filter", name: "name", type: "search", value: filters.name, placeholder: "Any definition", autocomplete: "off", spellcheck: "false" });
  // A new filter starts from the first page again (the page size is kept out of it).
  const apply = () => navigate("/executions", { status: status.value, kind: kind.value, name: name.value.trim() });
  status.addEventListener("change", apply);
  kind.addEventListener("change", apply);
  name.addEventListener("change", apply);
  return h("form", { class: "filters", role: "search", onsubmit: (event) => { event.preventDefault(); apply(); } },
    h("label", { for: "status-filter" }, "Status"), status,
    h("label", { for: "kind-filter" }, "Kind"), kind,
    h("label", { for: "name-filter" }, "Definition"), name);
}

export const executionsView = {
  title: "Executions",
  async render({ outlet, query, signal }) {
    const filters = filtersOf(query);
    const limit = Number(query.get("limit")) || PAGE_SIZE;
    const summary = h("p", { class: "muted", id: "executions-count", "aria-live": "polite" });
    const more = h("button", { type: "button", class: "button secondary", id: "load-more", hidden: true }, "Load more");
    outlet.append(h("h1", null, "Executions"), filterForm(filters));
    const page = await api.get("/executions", { query: { ...filters, limit }, signal });
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
        const next = await api.get("/executions", { query: { ...filters, limit, cursor }, signal });
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

    // A change to a shown execution replaces its row; one the filters admit that is not
    // shown goes on top if it started after the newest first shown (the list is newest first):
    // it started meanwhile, perhaps ending before the stream told of it running. An older
    // one belongs further down, on a page not loaded yet.
    const since = page.items[0]?.created_at ?? "";
    const changed = async (change) => {
      const row = body.querySelector(`tr[data-id="${CSS.escape(change.id)}"]`);
      if (!row && !admits(filters, change)) return;
      const execution = await api.get(`/executions/${encodeURIComponent(change.id)}`, { signal, quiet: true });
      const fresh = rowOf(execution);
      if (row) {
        row.replaceWith(fresh);
        return;
      }
      if (body.querySelector(`tr[data-id="${CSS.escape(change.id)}"]`)) return; // raced
      if (Date.parse(execution.created_at) < Date.parse(since)) return;
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
