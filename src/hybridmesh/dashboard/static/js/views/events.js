// #/events?type=: the bus's events as they are published, newest on top (the last few
// hundred), read from the control plane's live stream. The type filter (a NATS-style
// pattern: order.*, order.>) reopens the stream with it; pause holds new events back
// until resume; a row shows its event's JSON in the detail pane.

import { h, replace } from "../dom.js";
import { when } from "../format.js";
import { navigate } from "../router.js";
import { openStream } from "../stream.js";

/** The most events the table keeps. */
export const MAX_ROWS = 300;

const STATE_TEXT = { open: "live", reconnecting: "reconnecting…", closed: "closed", paused: "paused" };

function filterForm(type) {
  const input = h("input", {
    id: "event-type-filter", name: "type", value: type, placeholder: "order.* or order.>",
    autocomplete: "off", spellcheck: "false",
  });
  return h("form", {
    class: "filters", role: "search",
    onsubmit: (event) => {
      event.preventDefault();
      navigate("/events", { type: input.value.trim() });
    },
  },
  h("label", { for: "event-type-filter" }, "Type"), input,
  h("button", { type: "submit", class: "button secondary", id: "apply-filter" }, "Apply"));
}

export const eventsView = {
  title: "Events",
  async render({ outlet, query, signal }) {
    const type = query.get("type") ?? "";
    const state = h("span", { class: "badge live-state", id: "stream-state", "aria-live": "polite" }, "connecting…");
    const pause = h("button", { type: "button", class: "button secondary", id: "pause-stream", "aria-pressed": "false" }, "Pause");
    const count = h("p", { class: "muted", id: "events-count", "aria-live": "polite" });
    const body = h("tbody");
    const empty = h("tr", { class: "empty" }, h("td", { colspan: 4 }, "Waiting for events…"));
    body.append(empty);
    const detail = h("section", { class: "card event-detail", id: "event-detail", "aria-label": "Event detail" },
      h("h2", null, "Event"), h("p", { class: "muted" }, "Select an event to see it whole."));

    let paused = false;
    let held = [];
    let connection = "connecting";
    let selected = null;
    const showState = () => {
      const shown = paused ? "paused" : connection;
      state.textContent = STATE_TEXT[shown] ?? shown;
      state.className = `badge live-state live-${shown}`;
      const rows = body.querySelectorAll("tr.event-row").length;
      count.textContent = `${rows} event${rows === 1 ? "" : "s"} shown${held.length ? `; ${held.length} held while paused` : ""}.`;
    };

    const select = (row, event) => {
      selected?.classList.remove("selected");
      selected = row;
      row.classList.add("selected");
      replace(detail,
        h("h2", null, event.type),
        h("pre", null, h("code", { class: "json", id: "event-json" }, JSON.stringify(event, null, 2))));
    };

    const addRow = (event) => {
      empty.remove();
      const row = h("tr", { class: "event-row", tabindex: "0", dataset: { id: event.id } },
        h("td", null, when(event.time)),
        h("td", null, h("code", null, event.type)),
        h("td", null, event.source),
        h("td", null, event.subject ?? ""));
      row.addEventListener("click", () => select(row, event));
      row.addEventListener("keydown", (key) => {
        if (key.key === "Enter" || key.key === " ") {
          key.preventDefault();
          select(row, event);
        }
      });
      body.prepend(row);
      while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
    };

    pause.addEventListener("click", () => {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      pause.setAttribute("aria-pressed", String(paused));
      if (!paused) {
        for (const event of held) addRow(event);
        held = [];
      }
      showState();
    });

    outlet.append(
      h("h1", null, "Events", state),
      h("div", { class: "toolbar" }, filterForm(type), pause),
      h("div", { class: "split" },
        h("section", { class: "card" },
          h("table", { class: "data", id: "events-table" },
            h("caption", null, type ? `Events of type ${type}` : "Every event"),
            h("thead", null, h("tr", null, ["Time", "Type", "Source", "Subject"].map((label) => h("th", { scope: "col" }, label)))),
            body),
          h("div", { class: "table-foot" }, count)),
        detail),
    );
    showState();

    const path = `/stream?${new URLSearchParams(type ? { topics: "events", type } : { topics: "events" })}`;
    openStream(path, {
      signal,
      onState: (next) => {
        connection = next;
        showState();
      },
      onEvent: (message) => {
        if (message.type !== "cloudevent") return;
        const event = JSON.parse(message.data);
        if (paused) {
          held.push(event);
          if (held.length > MAX_ROWS) held.shift();
        } else {
          addRow(event);
        }
        showState();
      },
    });
  },
};
