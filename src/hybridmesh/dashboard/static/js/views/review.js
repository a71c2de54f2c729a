// #/review?status=&origin=&id=: the manual review queue, newest first, filtered by status
// and origin, a page at a time ("Load more" follows the API's cursor). The item named by
// `id` is shown beside the table with its payload and the timeline of actions taken on it;
// while it is open it can be retried, resolved or discarded, with a note. Each action
// confirms first, then the view reads the queue again.

import { api } from "../api.js";
import { appendRows, badge, h, replace, table } from "../dom.js";
import { when } from "../format.js";
import { confirmButton } from "../confirm.js";
import { navigate } from "../router.js";

export const REVIEW_STATUSES = ["open", "retried", "resolved", "discarded", "all"];
export const ORIGINS = ["saga", "workflow", "batch", "dlq", "replication"];

const PAGE_SIZE = 50;

/** What each action does to an open item: [path verb, button, question, done]. */
const ACTIONS = [
  ["retry", "Retry", "Run this item's work again through its origin?", "retried"],
  ["resolve", "Resolve", "Mark this item resolved: it was dealt with by hand?", "resolved"],
  ["discard", "Discard", "Mark this item discarded: nothing more is to be done?", "discarded"],
];

function select(id, label, values, chosen, any) {
  const node = h("select", { id, name: id },
    any ? h("option", { value: "" }, any) : null,
    values.map((value) => h("option", { value, selected: value === chosen }, value)));
  return [h("label", { for: id }, label), node];
}

function filterForm(status, origin) {
  const [statusLabel, statusSelect] = select("review-status", "Status", REVIEW_STATUSES, status);
  const [originLabel, originSelect] = select("review-origin", "Origin", ORIGINS, origin, "Any origin");
  const go = () => navigate("/review", { status: statusSelect.value, origin: originSelect.value });
  statusSelect.addEventListener("change", go);
  originSelect.addEventListener("change", go);
  return h("form", { class: "filters", role: "search", onsubmit: (event) => event.preventDefault() },
    statusLabel, statusSelect, originLabel, originSelect);
}

function columns(status, origin, selected) {
  const link = (item) => h("a", {
    href: `#/review?${new URLSearchParams({ status, ...(origin ? { origin } : {}), id: item.id })}`,
    "aria-current": item.id === selected ? "true" : null,
  }, h("code", null, item.id));
  return [
    { label: "Item", cell: link },
    { label: "Origin", cell: (item) => item.origin },
    { label: "Refers to", cell: (item) => (item.origin_ref ? h("code", null, item.origin_ref) : "") },
    { label: "Status", cell: (item) => badge(item.status) },
    { label: "Filed", cell: (item) => when(item.created_at) },
    { label: "Reason", cell: (item) => h("span", { class: "clip" }, item.reason) },
  ];
}

function timeline(item) {
  return table({
    id: "review-actions",
    caption: "Actions",
    columns: [
      { label: "At", cell: (a) => when(a.at) },
      { label: "Action", cell: (a) => a.action.replaceAll("_", " ") },
      { label: "By", cell: (a) => a.actor ?? "" },
      { label: "Note", cell: (a) => a.note ?? "" },
    ],
    items: item.actions,
  });
}

function detail(item, act) {
  const facts = [
    ["Item", h("code", null, item.id)],
    ["Origin", item.origin],
    ["Refers to", item.origin_ref ? h("code", null, item.origin_ref) : "—"],
    ["Filed", when(item.created_at)],
    ["Updated", when(item.updated_at)],
    ["Reason", h("span", { class: "error-text" }, item.reason)],
  ];
  let controls = null;
  if (item.status === "open") {
    const note = h("textarea", { id: "review-note", class: "note-field", rows: 2, maxlength: 2000 });
    controls = h("div", { class: "actions" },
      h("label", { for: "review-note" }, "Note (kept on the item's timeline)"), note,
      h("div", { class: "confirmable" }, ACTIONS.map(([verb, label, question]) => confirmButton({
        id: `review-${verb}`,
        label,
        question,
        yes: `Yes, ${label.toLowerCase()}`,
        danger: verb === "discard",
        run: () => act(verb, note.value.trim()),
      }))));
  }
  return h("section", { class: "card", id: "review-detail", "aria-labelledby": "review-title" },
    h("h2", { id: "review-title" }, `${item.origin} item `, badge(item.status)),
    h("dl", { class: "facts" }, facts.flatMap(([term, value]) => [h("dt", null, term), h("dd", null, value)])),
    controls,
    h("h3", null, "Payload"),
    h("pre", { class: "json-block", id: "review-payload" }, h("code", null, JSON.stringify(item.payload, null, 2))),
    timeline(item));
}

export const reviewView = {
  title: "Review",
  async render({ outlet, query, signal }) {
    const status = query.get("status") || "open";
    const origin = query.get("origin") ?? "";
    const selected = query.get("id") ?? "";
    const message = h("p", { class: "muted", id: "review-status-line", role: "status" });
    const listing = h("section", { class: "card table-scroll" });
    const side = h("div");
    outlet.append(h("h1", null, "Review"), filterForm(status, origin), message, h("div", { class: "split" }, listing, side));
    const cols = columns(status, origin, selected);

    async function load(said = "") {
      const [page, item] = await Promise.all([
        api.get("/review-items", { query: { status, origin, limit: PAGE_SIZE }, signal }),
        selected ? api.get(`/review-items/${encodeURIComponent(selected)}`, { signal }) : null,
      ]);
      const list = table({ id: "review-table", columns: cols, items: page.items, empty: "No review items match." });
      const more = h("button", { type: "button", class: "button secondary", id: "load-more", hidden: !page.next_cursor }, "Load more");
      let cursor = page.next_cursor;
      more.addEventListener("click", async () => {
        more.disabled = true;
        try {
          const next = await api.get("/review-items", { query: { status, origin, limit: PAGE_SIZE, cursor }, signal });
          appendRows(list.tBodies[0], cols, next.items);
          cursor = next.next_cursor;
          more.hidden = !cursor;
        } finally {
          more.disabled = false;
        }
      });
      replace(listing, list, h("div", { class: "table-foot" }, h("span"), more));
      replace(side, item ? detail(item, async (verb, note) => {
        const done = await api.post(`/review-items/${encodeURIComponent(item.id)}/${verb}`, note ? { note } : {}, { signal });
        await load(`Item ${done.id} is ${done.status}.`);
      }) : h("section", { class: "card muted", id: "review-detail" }, page.items.length ? "Choose an item to see its payload and actions." : ""));
      message.textContent = said;
    }
    await load();
  },
};
