// #/dead-letters?group=&id=: the bus's dead letters, newest first, filtered by consumer
// group; the letter named by `id` is shown beside the table with its reason, attempts and
// event, and a Replay action. Purge deletes the listed group's letters (or all of them).
// Both actions confirm first, then the view reads the letters again.

import { api } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { when } from "../format.js";
import { confirmButton } from "../confirm.js";
import { navigate } from "../router.js";

const LIMIT = 200;

function filterForm(group) {
  const input = h("input", { id: "group-filter", name: "group", value: group, placeholder: "every group", spellcheck: "false" });
  return h("form", { class: "filters", role: "search", onsubmit: (event) => {
    event.preventDefault();
    navigate("/dead-letters", { group: input.value.trim() });
  } },
  h("label", { for: "group-filter" }, "Consumer group"), input,
  h("button", { type: "submit", class: "button secondary" }, "Filter"));
}

function replayed(letter) {
  return letter.replayed_at ? badge("replayed") : "";
}

function letterTable(letters, group, selected) {
  const link = (x) => h("a", {
    href: `#/dead-letters?${new URLSearchParams({ ...(group ? { group } : {}), id: x.id })}`,
    "aria-current": x.id === selected ? "true" : null,
  }, h("code", null, x.id));
  return table({
    id: "dead-letters-table",
    columns: [
      { label: "Dead letter", cell: (x) => [link(x), " ", replayed(x)] },
      { label: "Group", cell: (x) => x.group },
      { label: "Type", cell: (x) => x.event?.type ?? "(not a CloudEvent)" },
      { label: "Attempts", numeric: true, cell: (x) => x.attempts },
      { label: "Failed", cell: (x) => when(x.failed_at) },
    ],
    items: letters,
    empty: group ? `No dead letters in group ${group}.` : "No dead letters.",
  });
}

function detail(letter, onReplay) {
  const facts = [
    ["Dead letter", h("code", null, letter.id)],
    ["Group", letter.group],
    ["Attempts", String(letter.attempts)],
    ["Failed", when(letter.failed_at)],
    ["Replayed", letter.replayed_at ? when(letter.replayed_at) : "never"],
    ["Reason", h("span", { class: "error-text" }, letter.reason)],
  ];
  const raw = letter.event ? JSON.stringify(letter.event, null, 2) : letter.body;
  return h("section", { class: "card", id: "dead-letter-detail", "aria-labelledby": "detail-title" },
    h("h2", { id: "detail-title" }, letter.event ? `${letter.event.type} ` : "Unparsed event ", replayed(letter)),
    h("dl", { class: "facts" }, facts.flatMap(([term, value]) => [h("dt", null, term), h("dd", null, value)])),
    h("h3", null, letter.event ? "Event" : "Body (not a CloudEvent)"),
    h("pre", { class: "json-block", id: "dead-letter-event" }, h("code", null, raw)),
    h("div", { class: "actions" }, confirmButton({
      id: "replay",
      label: letter.replayed_at ? "Replay again" : "Replay",
      question: `Deliver this event again to group ${letter.group}?`,
      yes: "Yes, replay it",
      run: onReplay,
    })));
}

export const deadLettersView = {
  title: "Dead letters",
  async render({ outlet, query, signal }) {
    const group = query.get("group") ?? "";
    const selected = query.get("id") ?? "";
    const status = h("p", { class: "muted", id: "dead-letters-status", role: "status" });
    const listing = h("section", { class: "card table-scroll" });
    const side = h("div");
    outlet.append(h("h1", null, "Dead letters"), filterForm(group), status, h("div", { class: "split" }, listing, side));

    async function load(message = "") {
      const [letters, letter] = await Promise.all([
        api.get("/dead-letters", { query: { group, limit: LIMIT }, signal }),
        selected ? api.get(`/dead-letters/${encodeURIComponent(selected)}`, { signal }) : null,
      ]);
      const purge = letters.length ? confirmButton({
        id: "purge",
        label: group ? `Purge group ${group}` : "Purge all",
        question: group
          ? `Delete every dead letter of group ${group} for good?`
          : "Delete every dead letter of every group for good?",
        yes: "Yes, purge",
        danger: true,
        run: async () => {
          const done = await api.post("/dead-letters/purge", group ? { group } : {}, { signal });
          if (selected) navigate("/dead-letters", { group });
          else await load(`Purged ${done.purged} dead letter${done.purged === 1 ? "" : "s"}.`);
        },
      }) : null;
      replace(listing, letterTable(letters, group, selected), h("div", { class: "table-foot" },
        h("span", { class: "muted" }, `${letters.length} dead letter${letters.length === 1 ? "" : "s"}${letters.length === LIMIT ? " (the newest)" : ""}`),
        purge));
      replace(side, letter ? detail(letter, async () => {
        await api.post(`/dead-letters/${encodeURIComponent(letter.id)}/replay`, {}, { signal });
        await load(`Replayed ${letter.id} to group ${letter.group}.`);
      }) : h("section", { class: "card muted", id: "dead-letter-detail" }, letters.length ? "Choose a dead letter to see its event." : ""));
      status.textContent = message;
    }
    await load();
  },
};
