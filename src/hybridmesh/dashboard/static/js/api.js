// The control-plane API client: every request carries the tab's token as a bearer token;
// every error answer (application/problem+json) becomes an ApiError and is shown in the
// banner. A 401 also signs the user out (see onUnauthorized); a 403 says the token's role
// is too low for what was asked.

import { showBanner } from "./banner.js";
import { getToken } from "./session.js";

export const API_BASE = "/api/v1";

/** An error answer of the API: `problem` holds its title, status, detail and errors. */
export class ApiError extends Error {
  constructor(problem) {
    super(describe(problem));
    this.name = "ApiError";
    this.status = problem.status;
    this.problem = problem;
  }
}

let unauthorized = () => {};

/** Call `handler(error)` when the API answers 401: the token is missing, unknown or revoked. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** What a problem says, in one line. */
export function describe(problem) {
  if (problem.status === 403) {
    return `Your token's role cannot do this. ${problem.detail ?? ""}`.trim();
  }
  const title = problem.title ?? `HTTP ${problem.status}`;
  return problem.detail ? `${title}: ${problem.detail}` : title;
}

/** The lines of a problem's `errors` member, "field: message". */
export function problemErrors(problem) {
  return (problem.errors ?? []).map((e) => (e.field ? `${e.field}: ${e.message}` : e.message));
}

async function problemOf(response) {
  const type = response.headers.get("Content-Type") ?? "";
  if (type.includes("json")) {
    try {
      const body = await response.json();
      return { status: response.status, ...body };
    } catch {
      // not JSON after all: fall through
    }
  }
  return { status: response.status, title: response.statusText || `HTTP ${response.status}` };
}

/**
 * Call the API. `path` is below /api/v1; `query` entries that are null or "" are left out.
 * Returns the parsed JSON body (null for 204). Throws ApiError for an error answer, after
 * showing it (unless `quiet`), and lets an AbortError through when `signal` aborts.
 */
export async function request(method, path, { query, body, signal, quiet = false } = {}) {
  const url = new URL(API_BASE + path, location.origin);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    const problem = { status: 0, title: "The server cannot be reached", detail: error.message };
    if (!quiet) showBanner(describe(problem));
    throw new ApiError(problem);
  }
  if (response.ok) {
    return response.status === 204 ? null : response.json();
  }
  throw await failure(response, { quiet });
}

/**
 * The ApiError of an error answer, once it has been dealt with as every answer is: a 401
 * signs the user out, anything else is shown in the banner (unless `quiet`).
 */
export async function failure(response, { quiet = false } = {}) {
  const error = new ApiError(await problemOf(response));
  if (response.status === 401) {
    unauthorized(error);
  } else if (!quiet) {
    showBanner(error.message, problemErrors(error.problem));
  }
  return error;
}

export const api = {
  get: (path, options) => request("GET", path, options),
  post: (path, body, options) => request("POST", path, { ...options, body }),
};
