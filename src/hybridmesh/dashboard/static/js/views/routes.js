// #/routes: the gateway's routes and, for each backend, its live request rate, error rate
// and p95 over the last minute (read again every few seconds while the page is open; the
// router's signal stops it on leaving). #/routes/:name: one route, its backends' figures,
// and the mirror mismatches kept for it.

import { api } from "../api.js";
import { h, replace, table } from "../dom.js";
import { when } from "../format.js";

const POLL_MS = 3000;
const WINDOW = "60s";

const rate = (b, seconds) => `${(b.requests / seconds).toFixed(2)}/s`;
const percent = (value) => `${(value * 100).toFixed(2)}%`;
const ms = (value) => (value === null || value === undefined ? "—" : `${value.toFixed(1)} ms`);

/** One row per backend of the route: its weight and its figures over the window. */
export function backendRows(route, stats) {
  const figures = new Map((stats?.backends ?? []).map((b) => [b.backend, b]));
  const rows = route.backends.map((b) => ({ route: route.name, name: b.name, weight: b.weight, figures: figures.get(b.name) }));
  for (const [name, b] of figures) {
    if (!route.backends.some((backend) => backend.name === name)) rows.push({ route: route.name, name, weight: null, figures: b });
  }
  return rows;
}

function figuresTable(rows, seconds, id) {
  return table({
    id,
    columns: [
      { label: "Route", cell: (r) => h("a", { href: `#/routes/${encodeURIComponent(r.route)}` }, r.route) },
      { label: "Backend", cell: (r) => r.name },
      { label: "Weight", numeric: true, cell: (r) => (r.weight === null ? "—" : `${r.weight}%`) },
      { label: "Requests", numeric: true, cell: (r) => (r.figures ? rate(r.figures, seconds) : "0/s") },
      { label: "Error rate", numeric: true, cell: (r) => (r.figures ? percent(r.figures.error_rate) : "—") },
      { label: "p95", numeric: true, cell: (r) => ms(r.figures?.p95_ms) },
    ],
    items: rows,
    empty: "No routes.",
  });
}

/** Read the figures of `routes` every few seconds until `signal` aborts. */
function poll(routes, signal, draw) {
  let timer = null;
  async function tick() {
    const all = await Promise.all(routes.map((route) => api.get(`/routes/${encodeURIComponent(route.name)}/stats`, { query: { window: WINDOW }, signal, quiet: true }).catch(() => null)));
    if (signal.aborted) return;
    draw(all);
    timer = setTimeout(() => tick().catch(() => {}), POLL_MS);
  }
  signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
  return tick();
}

export const routesView = {
  title: "Routes",
  async render({ outlet, signal }) {
    const routes = await api.get("/routes", { signal });
    const status = h("p", { class: "hint", id: "routes-updated", "aria-live": "polite" });
    const holder = h("div", { id: "routes-figures" });
    outlet.append(h("h1", null, "Routes"), h("p", { class: "muted" }, `Each backend over the last ${WINDOW}, every gateway replica together.`), holder, status);
    await poll(routes, signal, (all) => {
      const rows = routes.flatMap((route, i) => backendRows(route, all[i]));
      const seconds = all.find(Boolean)?.window_seconds ?? 60;
      replace(holder, figuresTable(rows, seconds, "routes-table"));
      status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    });
  },
};

function mismatchesTable(found) {
  return table({
    id: "mismatches-table",
    caption: "Mirror mismatches (newest first)",
    columns: [
      { label: "At", cell: (m) => when(m.at * 1000) },
      { label: "Request", cell: (m) => `${m.method} ${m.path}` },
      { label: "Status", cell: (m) => (m.primary_status === m.candidate_status ? String(m.primary_status) : `${m.primary_status} → ${m.candidate_status}`) },
      { label: "Differences", cell: (m) => h("code", { class: "json" }, JSON.stringify(m.differences)) },
    ],
    items: found,
    empty: "No mismatches kept.",
  });
}

export const routeView = {
  title: "Route",
  async render({ outlet, params, signal }) {
    const path = `/routes/${encodeURIComponent(params.name)}`;
    const [route, found] = await Promise.all([api.get(path, { signal }), api.get(`${path}/mismatches`, { signal })]);
    const holder = h("div", { id: "route-figures" });
    const match = [...route.hosts, ...Object.entries(route.path).map(([kind, value]) => `${kind} ${value}`), ...route.methods].join(" ");
    outlet.append(
      h("p", { class: "crumbs" }, h("a", { href: "#/routes" }, "Routes"), " / ", route.name),
      h("h1", null, route.name),
      h("section", { class: "card" }, h("dl", { class: "facts", id: "route-facts" },
        h("dt", null, "Match"), h("dd", null, match),
        h("dt", null, "Policies"), h("dd", null, route.policies.join(", ") || "—"),
        h("dt", null, "Mirror"), h("dd", null, route.mirror ? `${route.mirror.backend} (${route.mirror.percent}%)` : "—"),
        h("dt", null, "Revision"), h("dd", null, `${route.revision} (${route.source ?? "—"})`))),
      h("section", { class: "card" }, holder),
      h("section", { class: "card" }, mismatchesTable(found)));
    await poll([route], signal, ([stats]) => replace(holder, figuresTable(backendRows(route, stats), stats?.window_seconds ?? 60, "route-backends")));
  },
};
