// A button whose action asks first: a click shows the question with "yes" and "no"
// buttons; "yes" runs the action, "no" puts the button back. A failed action leaves the
// question up (the banner says why) so it can be tried again or declined.

import { h } from "./dom.js";

/**
 * The control for one confirmed action: `id` names the button (the question's parts are
 * `${id}-confirm`, `${id}-yes`, `${id}-no`); `run()` does the work and may throw.
 */
export function confirmButton({ id, label, question, yes, no = "Cancel", danger = false, run }) {
  const kind = danger ? "button danger" : "button";
  const button = h("button", { type: "button", class: kind, id }, label);
  const confirm = h("div", { class: "confirm", id: `${id}-confirm`, role: "group", "aria-labelledby": `${id}-question`, hidden: true },
    h("p", { id: `${id}-question` }, question),
    h("button", { type: "button", class: kind, id: `${id}-yes` }, yes),
    h("button", { type: "button", class: "button secondary", id: `${id}-no` }, no));
  const [accept, decline] = confirm.querySelectorAll("button");
  button.addEventListener("click", () => {
    button.hidden = true;
    confirm.hidden = false;
    decline.focus();
  });
  decline.addEventListener("click", () => {
    confirm.hidden = true;
    button.hidden = false;
    button.focus();
  });
  accept.addEventListener("click", async () => {
    accept.disabled = true;
    try {
      await run();
    } catch {
      // The API client has shown the problem in the banner.
    } finally {
      accept.disabled = false;
    }
  });
  return h("span", { class: "confirmable" }, button, confirm);
}
