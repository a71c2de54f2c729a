// Building DOM and SVG nodes without HTML strings: text is always set as text, so nothing
// the API returns can inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(node, attrs) {
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("a", { href: "#/x", class: "link" }, "text", otherNode). */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  apply(node, attrs);
  return append(node, children);
}

/** An SVG element, as h() for HTML. */
export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  apply(node, attrs);
  return append(node, children);
}

/** Replace everything in `node` with `children`. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A table with a caption, header cells and one row per item: columns are
 * [{ label, cell: (item) => node or text, numeric? }]. */
export function table({ caption, columns, items, empty = "Nothing to show.", id }) {
  const head = h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.numeric ? "num" : null }, c.label)));
  const body = h("tbody");
  appendRows(body, columns, items);
  const node = h("table", { class: "data", id },
    caption ? h("caption", null, caption) : null,
    h("thead", null, head),
    body,
  );
  if (!items.length) {
    body.append(h("tr", { class: "empty" }, h("td", { colspan: columns.length }, empty)));
  }
  return node;
}

/** Add rows for `items` to a table body made by table(). */
export function appendRows(body, columns, items) {
  for (const item of items) {
    body.append(h("tr", null, columns.map((c) => h("td", { class: c.numeric ? "num" : null }, c.cell(item)))));
  }
}

/** A status word as a coloured badge. */
export function badge(status) {
  return h("span", { class: `badge status-${status}` }, status.replaceAll("_", " "));
}
