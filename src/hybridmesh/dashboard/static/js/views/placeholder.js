// Views still to come: a heading and a line on what they will show.

import { h } from "../dom.js";

/** A view that says what will be here. */
export function placeholder(title, what) {
  return {
    title,
    render({ outlet }) {
      outlet.append(h("h1", null, title), h("section", { class: "card placeholder" }, h("p", { class: "muted" }, what)));
    },
  };
}
