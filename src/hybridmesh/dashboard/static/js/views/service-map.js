// The service map: a layered drawing of the registry graph. Callers sit left of what they
// depend on (each node one layer right of its furthest caller); within a layer, nodes are
// ordered by where their callers are, to keep edges short and crossings few. Each node
// carries a health marker (a ring and a labelled dot), set and reset by `showHealth`.

import { s } from "../dom.js";

/** The registry's architectures, in legend order, with how the legend names them. */
export const ARCHITECTURES = [
  ["microservice", "Microservice"],
  ["modular-monolith", "Modular monolith"],
  ["traditional-monolith", "Legacy monolith"],
  ["serverless", "Serverless"],
];

/** Health states, worst first, with the label every marker shows (never colour alone). */
export const HEALTH = [
  ["down", "Down"],
  ["degraded", "Degraded"],
  ["ok", "OK"],
  ["unknown", "No data"],
];

const HEALTH_LABEL = new Map(HEALTH);
const RANK = new Map(HEALTH.map(([state], i) => [state, i]));

/** Gateway error rates above which a service is degraded, and down. */
export const ERROR_RATE = { degraded: 0.05, down: 0.5 };

const BREAKER_HEALTH = { open: "down", half_open: "degraded", closed: "ok" };

/** Whether the breaker named `breaker` guards calls to `service`: a service's own name
 * for HTTP calls, `pattern:service` for the others. */
export function guards(breaker, service) {
  return breaker === service || breaker.endsWith(`:${service}`);
}

/** One row per gateway backend that names a registry service (`service:<name>` targets;
 * a URL backend belongs to no service): `routes` as `/routes` lists them, `stats` their
 * `/routes/{name}/stats` answers in the same order (null where it could not be read). */
export function serviceTraffic(routes, stats) {
  const rows = [];
  routes.forEach((route, i) => {
    const figures = new Map((stats[i]?.backends ?? []).map((b) => [b.backend, b]));
    for (const backend of route.backends) {
      if (!backend.target.startsWith("service:")) continue;
      const b = figures.get(backend.name);
      rows.push({ service: backend.target.slice("service:".length), route: route.name, backend: backend.name, requests: b?.requests ?? 0, errors: b?.errors ?? 0 });
    }
  });
  return rows;
}

/** A service's health from what the serving process's circuit breakers and the gateway
 * say of it. Each breaker that guards it counts (open: down, half open: degraded, closed:
 * ok); so does the gateway's traffic to it over the stats window (error rate above 5 %:
 * degraded, above 50 %: down, else ok; no requests say nothing). The worst wins; with
 * nothing said at all, the health is unknown. `routeStats` is `serviceTraffic`'s rows.
 * Answers { state, label, breakerOpen, reasons } (reasons: sentences for a tooltip). */
export function healthOf(service, breakers, routeStats) {
  const name = typeof service === "string" ? service : service.name;
  const states = [];
  const reasons = [];
  let breakerOpen = false;
  for (const b of breakers ?? []) {
    if (!guards(b.name, name)) continue;
    states.push(BREAKER_HEALTH[b.state] ?? "unknown");
    breakerOpen ||= b.state === "open";
    reasons.push(`breaker ${b.name} ${b.state.replace("_", " ")}`);
  }
  const traffic = (routeStats ?? []).filter((r) => r.service === name);
  const requests = traffic.reduce((sum, r) => sum + r.requests, 0);
  if (requests > 0) {
    const rate = traffic.reduce((sum, r) => sum + r.errors, 0) / requests;
    states.push(rate > ERROR_RATE.down ? "down" : rate > ERROR_RATE.degraded ? "degraded" : "ok");
    reasons.push(`gateway error rate ${(rate * 100).toFixed(1)}% of ${requests} requests`);
  }
  const state = states.reduce((worst, s) => (RANK.get(s) < RANK.get(worst) ? s : worst), states.length ? "ok" : "unknown");
  return { state, label: HEALTH_LABEL.get(state), breakerOpen, reasons };
}

const NODE = { width: 168, height: 62 };
const GAP = { x: 120, y: 28 };
const PAD = 24;

/** Layer (column) of each node: the longest caller chain leading to it, cycles broken. */
export function layers(names, edges) {
  const callers = new Map(names.map((n) => [n, []]));
  for (const e of edges) if (callers.has(e.target) && callers.has(e.source)) callers.get(e.target).push(e.source);
  const layer = new Map();
  const visiting = new Set();
  function depth(name) {
    if (layer.has(name)) return layer.get(name);
    if (visiting.has(name)) return -1; // a cycle: this edge does not push the node right
    visiting.add(name);
    const value = Math.max(-1, ...callers.get(name).map(depth)) + 1;
    visiting.delete(name);
    layer.set(name, value);
    return value;
  }
  names.forEach(depth);
  return layer;
}

/** Positions { name: { x, y } } for the nodes, and the drawing's size. */
export function layout(nodes, edges) {
  const names = nodes.map((n) => n.name);
  const layer = layers(names, edges);
  const columns = [];
  for (const name of names) (columns[layer.get(name)] ??= []).push(name);
  const position = new Map();
  columns.forEach((column, c) => {
    if (c > 0) {
      const rank = (name) => {
        const from = edges.filter((e) => e.target === name && position.has(e.source));
        if (!from.length) return Number.MAX_SAFE_INTEGER;
        return from.reduce((sum, e) => sum + position.get(e.source).y, 0) / from.length;
      };
      column.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    } else {
      column.sort((a, b) => a.localeCompare(b));
    }
    column.forEach((name, r) => {
      position.set(name, { x: PAD + c * (NODE.width + GAP.x), y: PAD + r * (NODE.height + GAP.y) });
    });
  });
  const tallest = Math.max(1, ...columns.map((col) => col.length));
  return {
    position,
    width: PAD * 2 + columns.length * NODE.width + Math.max(0, columns.length - 1) * GAP.x,
    height: PAD * 2 + tallest * NODE.height + (tallest - 1) * GAP.y,
  };
}

function edgePath(from, to) {
  const x1 = from.x + NODE.width;
  const y1 = from.y + NODE.height / 2;
  const x2 = to.x;
  const y2 = to.y + NODE.height / 2;
  if (x2 > x1) {
    const bend = (x2 - x1) / 2;
    return { d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, mid: [(x1 + x2) / 2, (y1 + y2) / 2] };
  }
  // Same column or backwards (a cycle): loop around below the nodes.
  const low = Math.max(from.y, to.y) + NODE.height + GAP.y / 2;
  const d = `M${from.x + NODE.width / 2},${from.y + NODE.height} C${from.x + NODE.width / 2},${low} ${to.x + NODE.width / 2},${low} ${to.x + NODE.width / 2},${to.y + NODE.height}`;
  return { d, mid: [(from.x + to.x + NODE.width) / 2, low - 4] };
}

/** The map as an <svg>: graph is { nodes: [{ name, architecture }], edges: [{ source,
 * target, type, patterns }] }; `onSelect(name)` is called when a node is activated. */
export function serviceMap(graph, { onSelect = () => {} } = {}) {
  const { nodes } = graph;
  const known = new Set(nodes.map((n) => n.name));
  const edges = graph.edges.filter((e) => known.has(e.source) && known.has(e.target));
  const { position, width, height } = layout(nodes, edges);
  const label = `Service map: ${nodes.length} services, ${edges.length} dependencies`;
  const svg = s("svg", {
    class: "service-map", viewBox: `0 0 ${width} ${height}`, width: "100%", role: "group", "aria-label": label,
  },
  s("defs", null,
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse", markerWidth: 10, markerHeight: 10, orient: "auto-start-reverse" },
      s("path", { class: "arrow-head", d: "M0,0 L10,5 L0,10 z" })),
    s("marker", { id: "arrow-broken", viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse", markerWidth: 10, markerHeight: 10, orient: "auto-start-reverse" },
      s("path", { class: "arrow-head broken", d: "M0,0 L10,5 L0,10 z" }))));
  const edgeLayer = s("g", { class: "edges" });
  const labelLayer = s("g", { class: "edge-labels" });
  for (const e of edges) {
    const { d, mid } = edgePath(position.get(e.source), position.get(e.target));
    const text = (e.patterns?.length ? e.patterns : [e.type]).join(", ");
    edgeLayer.append(s("path", {
      class: `edge dep-${e.type}`, d, "marker-end": "url(#arrow)", dataset: { source: e.source, target: e.target },
    }, s("title", null, `${e.source} → ${e.target} (${e.type}${e.patterns?.length ? `: ${e.patterns.join(", ")}` : ""})`)));
    labelLayer.append(s("text", { class: "edge-label", x: mid[0], y: mid[1] - 4, "text-anchor": "middle" }, text));
  }
  const nodeLayer = s("g", { class: "nodes" });
  for (const node of nodes) {
    const { x, y } = position.get(node.name);
    const group = s("g", {
      class: `node arch-${node.architecture} health-unknown`,
      transform: `translate(${x},${y})`,
      tabindex: 0,
      role: "link",
      "aria-label": `${node.name}, ${node.architecture}, health unknown`,
      dataset: { name: node.name, architecture: node.architecture, health: "unknown" },
      onclick: () => onSelect(node.name),
      onkeydown: (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); onSelect(node.name); } },
    },
    s("rect", { class: "health-ring", x: -4, y: -4, width: NODE.width + 8, height: NODE.height + 8, rx: 11 }),
    s("rect", { class: "node-box", width: NODE.width, height: NODE.height, rx: 8 }),
    s("text", { class: "node-name", x: 12, y: 20 }, node.name),
    s("text", { class: "node-arch", x: 12, y: 35 }, node.architecture),
    s("circle", { class: "health-dot", cx: 17, cy: 48, r: 5 }),
    s("text", { class: "health-label", x: 27, y: 52 }, HEALTH_LABEL.get("unknown")),
    s("title", null, `${node.name}: no health data`));
    nodeLayer.append(group);
  }
  svg.append(edgeLayer, labelLayer, nodeLayer);
  return svg;
}

/** Mark each node of `svg` (a `serviceMap`) with its health, `health` a Map of name to
 * `healthOf`'s answer (a name it lacks is unknown), and draw the edges into a service
 * whose breaker is open as broken. Changes the drawing in place, so focus stays put. */
export function showHealth(svg, health) {
  const none = { state: "unknown", label: HEALTH_LABEL.get("unknown"), breakerOpen: false, reasons: [] };
  for (const group of svg.querySelectorAll("g.node")) {
    const { name, architecture } = group.dataset;
    const found = health.get(name) ?? none;
    group.dataset.health = found.state;
    for (const [state] of HEALTH) group.classList.toggle(`health-${state}`, state === found.state);
    group.setAttribute("aria-label", `${name}, ${architecture}, health ${found.label}`);
    group.querySelector(".health-label").textContent = found.label;
    group.querySelector("title").textContent = `${name}: ${found.label}${found.reasons.length ? ` (${found.reasons.join("; ")})` : ""}`;
  }
  for (const edge of svg.querySelectorAll("path.edge")) {
    const broken = (health.get(edge.dataset.target) ?? none).breakerOpen;
    edge.classList.toggle("broken", broken);
    edge.setAttribute("marker-end", broken ? "url(#arrow-broken)" : "url(#arrow)");
  }
}
