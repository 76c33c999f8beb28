// The HTTP API (/v1) and its event streams, with the bearer token the user pasted (if any).

const TOKEN_KEY = "ckl.token";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? `${body.error}: ${body.message}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** fn(error) is called whenever the API answers 401 (the page then asks for a token). */
export function onUnauthorized(fn) {
  listeners.add(fn);
}

function unauthorized(error) {
  for (const fn of listeners) fn(error);
}

function headers(extra = {}) {
  const result = { Accept: "application/json", ...extra };
  const secret = token();
  if (secret) result.Authorization = `Bearer ${secret}`;
  return result;
}

/** "/runs" + {status: "failed", batch: [1, 2]} -> "/v1/runs?status=failed&batch=1&batch=2" */
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) query.append(key, String(item));
  }
  const text = query.toString();
  return `/v1${path}${text ? `?${text}` : ""}`;
}

async function errorBody(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** GET a JSON document; ApiError on any non-2xx status (401 also tells the listeners). */
export async function get(path, params = {}, { signal } = {}) {
  const response = await fetch(url(path, params), { headers: headers(), signal, cache: "no-store" });
  if (!response.ok) {
    const error = new ApiError(response.status, await errorBody(response));
    if (response.status === 401) unauthorized(error);
    throw error;
  }
  return response.json();
}

/** Every page of a paged list: follows `next_after` until it is null (or `max` rows). */
export async function getAll(path, params, key, { signal, max = 50000, pageSize = 1000 } = {}) {
  const rows = [];
  let after = params.after || 0;
  for (;;) {
    const page = await get(path, { ...params, after, limit: pageSize }, { signal });
    rows.push(...page[key]);
    if (page.next_after === null || page.next_after === undefined || rows.length >= max) {
      return { rows, truncated: page.next_after !== null && page.next_after !== undefined };
    }
    after = page.next_after;
  }
}

/**
 * Follow an SSE stream of the API: catch-up from `after`, then live, reconnecting forever.
 *
 * Why fetch() + ReadableStream and not EventSource: EventSource cannot send an
 * Authorization header, and a server with a token file needs one on the streams too. Rather
 * than two code paths (EventSource without tokens, fetch with), this one reader always runs:
 * it parses `id:` / `event:` / `data:` / `retry:` itself and, like EventSource, reconnects
 * with `Last-Event-ID` (the last `id:` it saw), so nothing is missed or repeated across a
 * reconnect. An `event: closing` frame (the server cut a slow client or is shutting down)
 * makes it reconnect from the frame's `last_event_id`; an `event: rewound` frame (the position
 * resumed from was lost in a failover) moves the last id back to the frame's `last_event_id`.
 *
 * onEvent({id, topic, data}) gets each event (data parsed from JSON); onState(state) gets
 * "connecting" | "live" | "reconnecting" | "unauthorized" | "closed". Returns stop().
 */
export function follow(path, { after = 0, onEvent, onState = () => {} }) {
  let lastId = after;
  let retry = 1000;
  let failures = 0;
  let stopped = false;
  let controller = null;
  let wake = null;

  const sleep = (delay) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, delay);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  async function once() {
    controller = new AbortController();
    const extra = { Accept: "text/event-stream" };
    if (lastId > 0) extra["Last-Event-ID"] = String(lastId);
    const response = await fetch(url(path), {
      headers: headers(extra),
      signal: controller.signal,
      cache: "no-store",
    });
    if (response.status === 401) {
      onState("unauthorized");
      unauthorized(new ApiError(401, await errorBody(response)));
      return "unauthorized";
    }
    if (!response.ok || !response.body) throw new ApiError(response.status, await errorBody(response));
    onState("live");
    failures = 0;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let frame = { id: null, event: "message", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "ended";
      buffer += value;
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          if (frame.data.length) {
            if (frame.id !== null) lastId = Number(frame.id);
            const data = JSON.parse(frame.data.join("\n"));
            if (frame.event === "rewound") {
              // The store no longer holds the position resumed from (lost in a failover):
              // the server goes on from an older one; so does our Last-Event-ID.
              if (typeof data.last_event_id === "number") lastId = data.last_event_id;
              frame = { id: null, event: "message", data: [] };
              continue;
            }
            if (frame.event === "closing") {
              if (typeof data.last_event_id === "number") lastId = Math.max(lastId, data.last_event_id);
              onState("reconnecting");
              return "closing";
            }
            onEvent({ id: lastId, topic: frame.event, data });
          }
          frame = { id: null, event: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "id") frame.id = text;
        else if (field === "event") frame.event = text;
        else if (field === "data") frame.data.push(text);
        else if (field === "retry" && /^\d+$/.test(text)) retry = Number(text);
      }
    }
  }

  (async () => {
    while (!stopped) {
      onState(lastId > after || failures ? "reconnecting" : "connecting");
      let outcome;
      try {
        outcome = await once();
      } catch (error) {
        if (stopped) break;
        failures += 1;
        outcome = "error";
      }
      if (stopped) break;
      if (outcome === "unauthorized") {
        // Wait for a token (the form calls resume()), then try again.
        await sleep(3600 * 1000);
        continue;
      }
      onState("reconnecting");
      await sleep(outcome === "error" ? Math.min(retry * 2 ** Math.min(failures, 4), 15000) : retry);
    }
    onState("closed");
  })();

  const stop = () => {
    stopped = true;
    if (controller) controller.abort();
    if (wake) wake();
  };
  stop.resume = () => {
    if (wake) wake();
  };
  stop.position = () => lastId;
  return stop;
}
