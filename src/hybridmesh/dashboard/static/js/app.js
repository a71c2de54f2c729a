// The shell: sign-in, sign-out, the nav bar and the routes. A new view is a module under
// views/ exporting { title, render(ctx) }, registered with route() below and, when it is a
// top-level page, listed in NAV.

import { ApiError, api, onUnauthorized } from "./api.js";
import { clearBanner, initBanner } from "./banner.js";
import { h } from "./dom.js";
import { route, startRouter, stopView } from "./router.js";
import { clearToken, getToken, setToken } from "./session.js";
import { deadLettersView } from "./views/dead-letters.js";
import { executionView } from "./views/execution.js";
import { executionsView } from "./views/executions.js";
import { eventsView } from "./views/events.js";
import { flagView, flagsView } from "./views/flags.js";
import { migrationView, migrationsView } from "./views/migrations.js";
import { replicationsView } from "./views/replications.js";
import { reviewView } from "./views/review.js";
import { routeView, routesView } from "./views/routes.js";
import { serviceView, servicesView } from "./views/services.js";
import { sloView } from "./views/slo.js";

/** The nav bar: [path, label]. */
const NAV = [
  ["/services", "Services"],
  ["/executions", "Executions"],
  ["/migrations", "Migrations"],
  ["/routes", "Routes"],
  ["/flags", "Flags"],
  ["/events", "Events"],
  ["/dead-letters", "Dead letters"],
  ["/review", "Review"],
  ["/slo", "SLO"],
  ["/replications", "Replications"],
];

route("/services", servicesView);
route("/services/:name", serviceView);
route("/executions", executionsView);
route("/executions/:id", executionView);
route("/migrations", migrationsView);
route("/migrations/:name", migrationView);
route("/routes", routesView);
route("/routes/:name", routeView);
route("/flags", flagsView);
route("/flags/:key", flagView);
route("/events", eventsView);
route("/dead-letters", deadLettersView);
route("/review", reviewView);
route("/slo", sloView);
route("/replications", replicationsView);

const $ = (id) => document.getElementById(id);
let routerStarted = false;

function buildNav() {
  $("nav-links").replaceChildren(...NAV.map(([path, label]) => h("li", null, h("a", { href: `#${path}`, dataset: { path } }, label))));
}

function markCurrent(pattern) {
  for (const link of $("nav-links").querySelectorAll("a")) {
    const current = pattern === link.dataset.path || pattern.startsWith(`${link.dataset.path}/`);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showSignIn(message = "") {
  stopView();
  for (const id of ["nav", "session", "main"]) $(id).hidden = true;
  $("main").replaceChildren();
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  $("token").value = "";
  $("token").focus();
}

function showShell() {
  clearBanner();
  $("sign-in").hidden = true;
  for (const id of ["nav", "session", "main"]) $(id).hidden = false;
  if (!routerStarted) {
    routerStarted = true;
    return startRouter($("main"), {
      fallback: "/services",
      changed: markCurrent,
      active: () => Boolean(getToken()),
    });
  }
  window.dispatchEvent(new HashChangeEvent("hashchange"));
  return undefined;
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) {
    $("sign-in-error").textContent = "Enter an API token.";
    return;
  }
  setToken(token);
  $("sign-in-error").textContent = "";
  try {
    // Any read will do: it proves the token is known and not revoked. (The services
    // listing takes no parameters: the API refuses unknown ones with a 400.)
    await api.get("/services", { quiet: true });
  } catch (error) {
    clearToken();
    $("sign-in-error").textContent = error instanceof ApiError ? error.message : String(error);
    return;
  }
  await showShell();
}

function signOut() {
  clearToken();
  clearBanner();
  showSignIn();
}

function init() {
  initBanner();
  buildNav();
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  onUnauthorized((error) => {
    clearToken();
    showSignIn(error.message);
  });
  if (getToken()) showShell();
  else showSignIn();
}

init();
