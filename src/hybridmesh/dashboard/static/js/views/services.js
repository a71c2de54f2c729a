// #/services: the service map and a table of the registry; #/services/:name: one service.

import { api } from "../api.js";
import { h, table } from "../dom.js";
import { navigate } from "../router.js";
import { ARCHITECTURES, serviceMap } from "./service-map.js";

function legend() {
  return h("ul", { class: "legend", "aria-label": "Architectures" },
    ARCHITECTURES.map(([value, name]) => h("li", null, h("span", { class: `swatch arch-${value}`, "aria-hidden": "true" }), name)),
    h("li", null, h("span", { class: "swatch-line dep-sync", "aria-hidden": "true" }), "sync"),
    h("li", null, h("span", { class: "swatch-line dep-async", "aria-hidden": "true" }), "async"),
    h("li", null, h("span", { class: "swatch-line dep-batch", "aria-hidden": "true" }), "batch"));
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
    outlet.append(
      h("h1", null, "Services"),
      h("section", { class: "card", "aria-labelledby": "map-title" },
        h("div", { class: "card-head" }, h("h2", { id: "map-title" }, "Service map"), legend()),
        graph.nodes.length
          ? h("div", { class: "map-scroll" }, serviceMap(graph, { onSelect: (name) => navigate(`/services/${encodeURIComponent(name)}`) }))
          : h("p", { class: "muted" }, "The registry holds no services yet.")),
      h("section", { class: "card", "aria-labelledby": "list-title" },
        h("h2", { id: "list-title" }, "Registry"),
        table({
          id: "services-table",
          columns: [
            { label: "Name", cell: (d) => serviceLink(d.name) },
            { label: "Architecture", cell: (d) => h("span", { class: `tag arch-${d.architecture}` }, d.architecture) },
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
