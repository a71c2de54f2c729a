// Live updates from GET /api/v1/stream (server-sent events). The browser's EventSource
// cannot send an Authorization header, and the API takes its token from nowhere else, so
// the stream is read with fetch() and parsed here, line by line, as the SSE format says.
//
// openStream() reconnects after a dropped connection, waiting 1 s, then twice as long each
// time up to 30 s, and sends the id of the last event it got as Last-Event-ID, so the
// server can send what was missed meanwhile. An error answer (a bad filter, a revoked
// token) is shown as any API error is, and ends the stream: trying again would not help.

import { API_BASE, failure } from "./api.js";
import { getToken } from "./session.js";

const FIRST_PAUSE_MS = 1000;
const MAX_PAUSE_MS = 30_000;

/**
 * Read the stream at `path` (below /api/v1) until `signal` aborts. `onEvent({ type, id,
 * data })` is called for each event (`data` is the text of its data lines); `onState(state)`
 * with "open", "reconnecting" or "closed" as the connection changes.
 */
export function openStream(path, { onEvent, onState = () => {}, signal }) {
  let lastEventId = null;
  let pause = FIRST_PAUSE_MS;

  const deliver = (message) => {
    if (message.id !== null) lastEventId = message.id;
    onEvent(message);
  };

  async function connect() {
    const headers = { Accept: "text/event-stream" };
    const token = getToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
    const response = await fetch(API_BASE + path, { headers, signal, credentials: "omit", cache: "no-store" });
    if (!response.ok) {
      throw await failure(response);
    }
    onState("open");
    pause = FIRST_PAUSE_MS;
    await readEvents(response.body, deliver, (retry) => { pause = retry; });
  }

  (async () => {
    while (!signal.aborted) {
      try {
        await connect();
      } catch (error) {
        if (signal.aborted || error.name === "AbortError") break;
        if (error.name === "ApiError" && error.status !== 0 && error.status < 500) {
          onState("closed");
          return;
        }
      }
      if (signal.aborted) break;
      onState("reconnecting");
      await sleep(pause, signal);
      pause = Math.min(pause * 2, MAX_PAUSE_MS);
    }
    onState("closed");
  })();
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Parse a text/event-stream body, calling `dispatch({ type, id, data })` for each event
 * and `retry(ms)` for a retry field. Returns when the body ends.
 */
export async function readEvents(body, dispatch, retry = () => {}) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split(/\r\n|\n|\r/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === "") {
        if (data.length) dispatch({ type: type || "message", id, data: data.join("\n") });
        type = "";
        data = [];
        id = null;
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the server's heartbeat
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "event") type = text;
      else if (field === "data") data.push(text);
      else if (field === "id" && !text.includes("\0")) id = text;
      else if (field === "retry" && /^\d+$/.test(text)) retry(Number(text));
    }
  }
}
