// #/flags: the feature flags, as `hybridmesh flags list` has them. #/flags/:key: one flag in
// full, with the operator's two levers (turn it on or off; change the percentage rollout,
// when its last rule is one), each asking first, and an evaluate form that shows what a
// targeting key and a context get, and why. Evaluating changes nothing.

import { api } from "../api.js";
import { badge, h, replace, table } from "../dom.js";
import { confirmButton } from "../confirm.js";

const at = (seconds) => new Date(seconds * 1000).toLocaleString();
const json = (value) => JSON.stringify(value);
const state = (flag) => badge(flag.enabled ? "enabled" : "disabled");

/** "on 25%, off 75%", or a dash when the flag has no split of everyone. */
export function rolloutText(rollout) {
  if (!rollout) return "—";
  return Object.entries(rollout).map(([variant, percent]) => `${variant} ${percent}%`).join(", ");
}

/** The targeting in a few words: how many rules, and whether the last splits everyone. */
export function targetingText(flag) {
  if (!flag.rules) return "none (static)";
  const rules = flag.rules === 1 ? "1 rule" : `${flag.rules} rules`;
  return flag.rollout ? `${rules}, the last a split of everyone` : rules;
}

const LIST_COLUMNS = [
  { label: "Flag", cell: (f) => h("a", { href: `#/flags/${encodeURIComponent(f.key)}` }, f.key) },
  { label: "State", cell: state },
  { label: "Description", cell: (f) => f.description ?? "" },
  { label: "Type", cell: (f) => f.type },
  { label: "Variants", cell: (f) => f.variants.join(", ") },
  { label: "Default", cell: (f) => h("code", null, f.default_variant) },
  { label: "Rollout", cell: (f) => rolloutText(f.rollout) },
  { label: "Targeting", cell: targetingText },
];

export const flagsView = {
  title: "Flags",
  async render({ outlet, signal }) {
    outlet.append(h("h1", null, "Flags"));
    const flags = await api.get("/flags", { signal });
    outlet.append(h("section", { class: "card" }, table({ id: "flags-table", columns: LIST_COLUMNS, items: flags, empty: "No feature flags." })));
  },
};

function facts(flag) {
  const variants = flag.definition.variants ?? {};
  const pairs = [
    ["State", state(flag)],
    ["Description", flag.description ?? "—"],
    ["Type", flag.type],
    ["Variants", h("ul", { class: "plain-list" }, Object.entries(variants).map(([name, value]) => h("li", null, h("code", null, name), " = ", h("code", null, json(value)))))],
    ["Default variant", h("code", null, flag.default_variant)],
    ["Rollout", rolloutText(flag.rollout)],
    ["Targeting", targetingText(flag)],
    ["Version", `${flag.version} (store revision ${flag.revision})`],
    ["Changed", `${at(flag.updated_at)}${flag.source ? ` by ${flag.source}` : ""}`],
  ];
  return h("dl", { class: "facts", id: "flag-facts" }, pairs.flatMap(([term, value]) => [h("dt", null, term), h("dd", null, value)]));
}

function toggle(flag, change) {
  const verb = flag.enabled ? "disable" : "enable";
  const question = flag.enabled
    ? `Disable ${flag.key}? Everyone gets its default variant (${flag.default_variant}) at once.`
    : `Enable ${flag.key}? Its targeting and rollout apply again at once.`;
  return confirmButton({
    id: "flag-toggle",
    label: flag.enabled ? "Disable flag" : "Enable flag",
    question,
    yes: `Yes, ${verb}`,
    danger: flag.enabled,
    run: () => change({ enabled: !flag.enabled }),
  });
}

/** One percent field per variant of the split but the default, which takes the rest. */
function rolloutEditor(flag, change) {
  const shares = Object.entries(flag.rollout).filter(([variant]) => variant !== flag.default_variant);
  const inputs = shares.map(([variant, percent]) => {
    const id = `flag-percent-${variant}`;
    const input = h("input", { type: "number", id, min: 0, max: 100, step: 0.01, value: percent, dataset: { variant } });
    return { variant, input, field: h("div", { class: "percent-field" }, h("label", { for: id }, `Percent for ${variant}`), input) };
  });
  const rest = h("p", { class: "hint", id: "flag-rollout-rest" });
  const showRest = () => {
    const total = inputs.reduce((sum, { input }) => sum + (Number(input.value) || 0), 0);
    rest.textContent = `The default variant (${flag.default_variant}) takes the rest: ${Math.round((100 - total) * 100) / 100}%.`;
  };
  for (const { input } of inputs) input.addEventListener("input", showRest);
  showRest();
  const save = confirmButton({
    id: "flag-rollout",
    label: "Change rollout",
    question: `Change the rollout of ${flag.key} to the percents above? Users already on a growing variant stay on it.`,
    yes: "Yes, change it",
    run: () => change({ percents: Object.fromEntries(inputs.map(({ variant, input }) => [variant, input.value === "" ? null : Number(input.value)])) }),
  });
  return h("form", { class: "rollout-form", id: "flag-rollout-form", onsubmit: (event) => event.preventDefault() },
    h("div", { class: "percent-fields" }, inputs.map(({ field }) => field)), rest, save);
}

function controlsCard(flag, change) {
  const parts = [h("h2", null, "Change"), h("div", { class: "actions" }, toggle(flag, change))];
  if (flag.rollout) parts.push(h("h3", null, "Percentage rollout"), rolloutEditor(flag, change));
  return h("section", { class: "card", id: "flag-controls" }, ...parts);
}

function definitionCard(flag) {
  return h("section", { class: "card" }, h("details", { class: "history", id: "flag-definition" },
    h("summary", null, "Definition (as a flags file has it)"),
    h("pre", { class: "json-block" }, JSON.stringify(flag.definition, null, 2))));
}

/** The context the textarea holds, or a message saying why it is not one. */
export function parseContext(text) {
  if (!text.trim()) return { context: {} };
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { error: `The context is not JSON: ${error.message}` };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { error: "The context is a JSON object: {\"plan\": \"pro\"}, say." };
  }
  return { context: value };
}

function evaluation(found) {
  const pairs = [
    ["Variant", found.variant === null ? "—" : h("code", null, found.variant)],
    ["Value", h("code", null, json(found.value))],
    ["Reason", h("code", null, found.reason)],
  ];
  if (found.error_code) pairs.push(["Error", `${found.error_code}${found.error_message ? `: ${found.error_message}` : ""}`]);
  return h("dl", { class: "facts", id: "flag-evaluation" }, pairs.flatMap(([term, value]) => [h("dt", null, term), h("dd", null, value)]));
}

function evaluateCard(path, signal) {
  const key = h("input", { type: "text", id: "evaluate-key", maxlength: 256, placeholder: "user-42", autocomplete: "off" });
  const context = h("textarea", { id: "evaluate-context", class: "note-field json-field", rows: 4, spellcheck: "false" }, "{}");
  const said = h("p", { class: "form-error", id: "evaluate-error", role: "status" });
  const result = h("div", { id: "evaluate-result", "aria-live": "polite" });
  async function submit(event) {
    event.preventDefault();
    const parsed = parseContext(context.value);
    said.textContent = parsed.error ?? "";
    if (parsed.error) {
      result.replaceChildren(); // an answer shown would be for another context
      return;
    }
    const targeting = key.value.trim();
    const found = await api.post(`${path}/evaluate`, { context: parsed.context, targeting_key: targeting || undefined }, { signal });
    replace(result, evaluation(found));
  }
  const form = h("form", { id: "evaluate-form", onsubmit: (event) => submit(event).catch(() => {}) },
    h("label", { for: "evaluate-key" }, "Targeting key"), key,
    h("label", { for: "evaluate-context" }, "Context (JSON)"), context,
    said,
    h("button", { type: "submit", class: "button" }, "Evaluate"));
  return h("section", { class: "card", "aria-labelledby": "evaluate-title" },
    h("h2", { id: "evaluate-title" }, "Evaluate"),
    h("p", { class: "hint" }, "What a caller with this targeting key and context gets, and why. Evaluating changes nothing."),
    form, result);
}

export const flagView = {
  title: "Flag",
  async render({ outlet, params, signal }) {
    const path = `/flags/${encodeURIComponent(params.key)}`;
    const heading = h("h1");
    const about = h("div");
    outlet.append(h("p", { class: "crumbs" }, h("a", { href: "#/flags" }, "Flags"), " / ", params.key), heading, about);

    async function change(body) {
      await api.post(path, body, { signal });
      await load();
    }

    async function load() {
      const flag = await api.get(path, { signal });
      replace(heading, `${flag.key} `, state(flag));
      replace(about, h("section", { class: "card" }, facts(flag)), controlsCard(flag, change), definitionCard(flag));
    }
    await load();
    outlet.append(evaluateCard(path, signal));
  },
};
