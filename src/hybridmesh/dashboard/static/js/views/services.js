// #/services: the service map and a table of the registry, each service with its health
// (from the serving process's circuit breakers and the gateway's last minute), read again
// every few seconds while the view is open; #/services/:name: one service.

import { api } from "../api.js";
import { h, table } from "../dom.js";
import { navigate } from "../router.js";
import { ARCHITECTURES, HEALTH, healthOf, serviceMap, serviceTraffic, showHealth } from "./service-map.js";

const POLL_MS = 5000;
const WINDOW = "60s";

function legend() {
  return h("ul", { class: "legend", "aria-label": "Architectures" },
    ARCHITECTURES.map(([value, name]) => h("li", null, h("span", { class: `swatch arch-${value}`, "aria-hidden": "true" }), name)),
    h("li", null, h("span", { class: "swatch-line dep-sync", "aria-hidden": "true" }), "sync"),
    h("li", null, h("span", { class: "swatch-line dep-async", "aria-hidden": "true" }), "async"),
    h("li", null, h("span", { class: "swatch-line dep-batch", "aria-hidden": "true" }), "batch"));
}

function healthLegend() {
  return h("ul", { class: "legend", id: "health-legend", "aria-label": "Health" },
    HEALTH.map(([state, label]) => h("li", null, h("span", { class: `swatch-ring health-${state}`, "aria-hidden": "true" }), label)),
    h("li", null, h("span", { class: "swatch-line broken", "aria-hidden": "true" }), "into an open breaker"));
}

/** What the breakers and the gateway say now: { breakers, traffic }. A part that cannot be
 * read says nothing (the health shows as unknown rather than the view failing). */
async function readSignals(signal) {
  const quietly = (path, query) => api.get(path, { query, signal, quiet: true }).catch(() => null);
  const [breakers, routes] = await Promise.all([quietly("/breakers"), quietly("/routes")]);
  const known = routes ?? [];
  const stats = await Promise.all(known.map((route) => quietly(`/routes/${encodeURIComponent(route.name)}/stats`, { window: WINDOW })));
  return { breakers: breakers ?? [], traffic: serviceTraffic(known, stats) };
}

const healthCell = (found) => h("span", { class: `health health-${found.state}`, title: found.reasons.join("; ") || null }, found.label);

/** Read the health of `names` every few seconds until `signal` aborts; `draw(health)`
 * gets a Map of name to `healthOf`'s answer. The first read is awaited. */
function poll(names, signal, draw) {
  let timer = null;
  async function tick() {
    const { breakers, traffic } = await readSignals(signal);
    if (signal.aborted) return;
    draw(new Map(names.map((name) => [name, healthOf(name, breakers, traffic)])));
    timer = setTimeout(() => tick().catch(() => {}), POLL_MS);
  }
  signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
  return tick();
}

const serviceLink = (name) => h("a", { href: `#/services/${encodeURIComponent(name)}` }, name);

export const servicesView = {
  title: "Services",
  async render({ outlet, signal }) {
    const [services, graph] = await Promise.all([
      api.get("/services", { signal }),
      api.get("/registry/graph", { signal }),
    ]);
    const items = Array.isArray(services) ? services : services.items;
    const map = graph.nodes.length ? serviceMap(graph, { onSelect: (name) => navigate(`/services/${encodeURIComponent(name)}`) }) : null;
    const updated = h("p", { class: "hint", id: "health-updated" });
    outlet.append(
      h("h1", null, "Services"),
      h("section", { class: "card", "aria-labelledby": "map-title" },
        h("div", { class: "card-head" }, h("h2", { id: "map-title" }, "Service map"), legend()),
        healthLegend(),
        map ? h("div", { class: "map-scroll" }, map) : h("p", { class: "muted" }, "The registry holds no services yet."),
        updated),
      h("section", { class: "card", "aria-labelledby": "list-title" },
        h("h2", { id: "list-title" }, "Registry"),
        table({
          id: "services-table",
          columns: [
            { label: "Name", cell: (d) => serviceLink(d.name) },
            { label: "Architecture", cell: (d) => h("span", { class: `tag arch-${d.architecture}` }, d.architecture) },
            { label: "Health", cell: (d) => h("span", { class: "health-of", dataset: { service: d.name } }, healthCell(healthOf(d.name, [], []))) },
            { label: "Version", cell: (d) => d.version },
            { label: "Lifecycle", cell: (d) => d.lifecycle ?? "" },
            { label: "Team", cell: (d) => d.team ?? d.owner ?? "" },
            { label: "Patterns", cell: (d) => (d.integration_patterns ?? []).map((p) => p.type).join(", ") },
            { label: "Depends on", cell: (d) => (d.dependencies ?? []).map((dep) => dep.service).join(", ") },
          ],
          items,
          empty: "No services are registered.",
        })),
    );
    const names = [...new Set([...items.map((d) => d.name), ...graph.nodes.map((n) => n.name)])];
    await poll(names, signal, (health) => {
      if (map) showHealth(map, health);
      for (const cell of outlet.querySelectorAll("#services-table .health-of")) {
        cell.replaceChildren(healthCell(health.get(cell.dataset.service)));
      }
      updated.textContent = `Health from the circuit breakers and the gateway's last minute; updated ${new Date().toLocaleTimeString()}.`;
    });
  },
};

export const serviceView = {
  title: "Service",
  async render({ outlet, params, signal }) {
    const d = await api.get(`/services/${encodeURIComponent(params.name)}`, { signal });
    const links = d.links ?? [];
    outlet.append(
      h("p", { class: "crumbs" }, h("a", { href: "#/services" }, "Services"), " / ", d.name),
      h("h1", null, d.name, " ", h("span", { class: `tag arch-${d.architecture}` }, d.architecture)),
      d.description ? h("p", null, d.description) : null,
      h("section", { class: "card" },
        h("h2", null, "Definition"),
        h("dl", { class: "facts" },
          h("dt", null, "Base URL"), h("dd", null, h("code", null, d.base_url)),
          h("dt", null, "Version"), h("dd", null, d.version),
          h("dt", null, "Lifecycle"), h("dd", null, d.lifecycle ?? "—"),
          h("dt", null, "Team"), h("dd", null, d.team ?? d.owner ?? "—"),
          h("dt", null, "Tags"), h("dd", null, (d.tags ?? []).join(", ") || "—"))),
      h("section", { class: "card" },
        h("h2", null, "Dependencies"),
        table({
          columns: [
            { label: "Service", cell: (l) => serviceLink(l.service) },
            { label: "Type", cell: (l) => l.type },
            { label: "Patterns", cell: (l) => l.patterns.join(", ") || "—" },
            { label: "Purpose", cell: (l) => l.purpose || "" },
          ],
          items: links,
          empty: "No dependencies.",
        })),
    );
  },
};
