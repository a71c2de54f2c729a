// A hash router: "#/executions/0190?status=running" runs the view registered for
// "/executions/:id" with params { id: "0190" } and query { status: "running" }.
//
// A view is { title, render(ctx) }; ctx holds `outlet` (the element to fill), `params`,
// `query` (a URLSearchParams) and `signal`, aborted when the user leaves the view: pass it
// to API calls and check it before timers, so a view left behind stops working.

const routes = [];
let current = null;

/** Register `view` for `pattern` ("/services", "/executions/:id"). */
export function route(pattern, view) {
  const names = [];
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  routes.push({ pattern, regex: new RegExp(`^${source}$`), names, view });
}

/** Where the hash points: { path, query }. */
export function currentLocation() {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = hash.split("?", 2);
  return { path, query: new URLSearchParams(search) };
}

/** Go to `path` (with an optional query object). */
export function navigate(path, query = {}) {
  const search = new URLSearchParams(
    Object.entries(query).filter(([, value]) => value !== null && value !== undefined && value !== ""),
  ).toString();
  window.location.hash = `#${path}${search ? `?${search}` : ""}`;
}

function match(path) {
  for (const r of routes) {
    const found = r.regex.exec(path);
    if (found) {
      const params = Object.fromEntries(r.names.map((name, i) => [name, decodeURIComponent(found[i + 1])]));
      return { route: r, params };
    }
  }
  return null;
}

/**
 * Render the current hash's view into `outlet` now and on every hash change. `fallback` is
 * the path shown for an empty or unknown hash; `changed(pattern)` is told of each view shown;
 * while `active()` is false (signed out) hash changes render nothing.
 */
export function startRouter(outlet, { fallback, changed = () => {}, active = () => true }) {
  async function show() {
    if (!active()) return;
    const { path, query } = currentLocation();
    const found = match(path);
    if (!found) {
      navigate(fallback);
      return;
    }
    current?.abort();
    current = new AbortController();
    const { view } = found.route;
    document.title = `${view.title} · hybridmesh`;
    changed(found.route.pattern);
    outlet.replaceChildren();
    try {
      await view.render({ outlet, params: found.params, query, signal: current.signal });
    } catch (error) {
      // The API client has shown API errors already; a left view's abort is no error.
      if (error.name !== "AbortError" && error.name !== "ApiError") throw error;
    }
  }
  window.addEventListener("hashchange", show);
  return show();
}

/** Stop the current view (on sign-out). */
export function stopView() {
  current?.abort();
  current = null;
}
