// ckl-client.mjs: the JavaScript client of `ckl serve` (checkpoint-ledger's HTTP API, /v1).
//
// One ES module, no dependencies: Node 20+ (global fetch, ReadableStream, crypto.randomUUID)
// and browsers. One method per endpoint; JSON keys are the server's own (snake_case), the
// methods' options are camelCase. Every POST carries an Idempotency-Key (the command id: the
// caller's, or a fresh crypto.randomUUID() per call), so the client's own retries, after a
// lost reply or a 503 with Retry-After, are applied at most once. Errors are thrown as a
// CklError subclass named like the server's `error` (StaleAttempt, InvalidInput…), with the
// same hierarchy as the Python exceptions, so `err instanceof InvalidTransition` catches a
// StaleAttempt too. Types: ckl-client.d.mts.

// ------------------------------------------------------------------------------- errors

/** Every error of the service or of this client. `status` is the HTTP status (0: no reply). */
export class CklError extends Error {
  constructor(message, { status = 0, error, fields = {}, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** The server's error name (the class name, or the server's for an unknown one). */
    this.error = error ?? new.target.name;
    this.status = status;
    /** The error's facts as the Python exception carries them (checkpoint, attempt…). */
    this.fields = fields;
  }
}

// The tree of ledger/errors.py (and the HTTP layer's own NotFound, MethodNotAllowed).
export class InvalidInput extends CklError {}
export class PayloadTooLarge extends InvalidInput {}
export class PayloadMismatch extends InvalidInput {}
export class ProgressWentBackwards extends InvalidInput {}
export class FileNotWritable extends InvalidInput {}
export class InvalidStoreURL extends CklError {}
export class CheckpointNotFound extends CklError {}
export class RunNotFound extends CheckpointNotFound {}
export class InvalidTransition extends CklError {}
export class ConflictingCommand extends InvalidTransition {}
export class StaleAttempt extends InvalidTransition {}
export class LeaseLost extends StaleAttempt {}
export class CheckpointClaimed extends InvalidTransition {}
export class CheckpointCancelled extends InvalidTransition {}
export class CheckpointFailedError extends CklError {}
export class AwaitTimeout extends CklError {}
export class StoreUnavailable extends CklError {}
export class StoreFailure extends CklError {}
export class StoreNotADatabase extends StoreFailure {}
export class StoreCorrupt extends StoreFailure {}
export class StoreReadOnly extends StoreFailure {}
export class StoreDirectoryMissing extends StoreFailure {}
export class StoreFull extends StoreFailure {}
export class StoreAuthFailed extends StoreFailure {}
export class LedgerClosed extends StoreFailure {}
export class StoreSchemaMismatch extends CklError {}
export class TamperDetected extends CklError {}
export class ArchiveError extends CklError {}
export class RunNotFinished extends ArchiveError {}
export class RunArchived extends ArchiveError {}
export class ArchiveFileInvalid extends ArchiveError {}
export class ImportConflict extends ArchiveError {}
export class ServiceError extends CklError {}
export class Unauthorized extends ServiceError {}
export class OutOfScope extends ServiceError {}
export class TooManyStreams extends ServiceError {}
export class ServiceStopping extends ServiceError {}
/** A route or method the server does not have (404/405 outside the ledger's errors). */
export class NotFound extends CklError {}
export class MethodNotAllowed extends CklError {}
/** No reply: the server could not be reached, or the connection dropped (after retries). */
export class NetworkError extends CklError {}

const ERRORS = Object.fromEntries(
  [
    InvalidInput, PayloadTooLarge, PayloadMismatch, ProgressWentBackwards, FileNotWritable,
    InvalidStoreURL, CheckpointNotFound, RunNotFound, InvalidTransition, ConflictingCommand,
    StaleAttempt, LeaseLost, CheckpointClaimed, CheckpointCancelled, CheckpointFailedError,
    AwaitTimeout, StoreUnavailable, StoreFailure, StoreNotADatabase, StoreCorrupt,
    StoreReadOnly, StoreDirectoryMissing, StoreFull, StoreAuthFailed, LedgerClosed,
    StoreSchemaMismatch, TamperDetected, ArchiveError, RunNotFinished, RunArchived,
    ArchiveFileInvalid, ImportConflict, ServiceError, Unauthorized, OutOfScope,
    TooManyStreams, ServiceStopping, NotFound, MethodNotAllowed,
  ].map((kind) => [kind.name, kind]),
);

/** The typed error of an error reply's body ({error, message, status, fields}). */
export function errorFromBody(body, status) {
  const known = body && typeof body === "object" && typeof body.error === "string";
  if (!known) {
    return new CklError(`HTTP ${status}: ${typeof body === "string" ? body : "no error body"}`, {
      status,
      error: "HTTPError",
    });
  }
  const Kind = ERRORS[body.error] ?? CklError;
  return new Kind(body.message ?? body.error, {
    status,
    error: body.error,
    fields: body.fields ?? {},
  });
}

// ------------------------------------------------------------------------------- helpers

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", abort);
      resolve();
    }
    function abort() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal?.addEventListener("abort", abort, { once: true });
  });

const isAbort = (signal) => Boolean(signal?.aborted);

/** `(token, opts)` or `(runId, batchIndex, opts)`: a checkpoint's path and the options. */
function checkpointArgs(args) {
  if (args[0] !== null && typeof args[0] === "object") {
    const { run_id: runId, batch_index: batchIndex } = args[0].token ?? args[0];
    return [checkpointPath(runId, batchIndex), args[1] ?? {}];
  }
  return [checkpointPath(args[0], args[1]), args[2] ?? {}];
}

function checkpointPath(runId, batchIndex) {
  if (typeof runId !== "string") throw new TypeError("runId must be a string");
  if (!Number.isInteger(batchIndex)) throw new TypeError("batchIndex must be an integer");
  return `/runs/${encodeURIComponent(runId)}/checkpoints/${batchIndex}`;
}

const runPath = (runId) => {
  if (typeof runId !== "string") throw new TypeError("runId must be a string");
  return `/runs/${encodeURIComponent(runId)}`;
};

/** Drop undefined keys: an option not given is not sent (the server's default applies). */
function compact(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined));
}

function moment(value) {
  return value instanceof Date ? value.toISOString() : value;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    for (const one of Array.isArray(value) ? value : [value]) search.append(name, String(moment(one)));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

function retryAfterMs(response) {
  const header = response.headers.get("retry-after");
  if (header === null) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

// ------------------------------------------------------------------------------- client

export class CklClient {
  /**
   * @param {object} options
   * @param {string | (() => string | Promise<string>)} options.baseUrl the server, e.g.
   *   "http://127.0.0.1:8000" (a function is asked again before every request and reconnect).
   * @param {string} [options.token] a bearer token (`ckl token`).
   * @param {number} [options.retries=3] repeats of a request after a 503 with Retry-After or
   *   a lost connection (POSTs repeat with the same Idempotency-Key: applied at most once).
   * @param {number} [options.retryDelayMs=250] first wait after a lost connection (doubles).
   * @param {number} [options.maxRetryDelayMs=10000] longest wait between two attempts.
   * @param {typeof fetch} [options.fetch] the fetch to use (default: the global one).
   */
  constructor({
    baseUrl,
    token,
    retries = 3,
    retryDelayMs = 250,
    maxRetryDelayMs = 10_000,
    fetch: fetchImpl,
  } = {}) {
    if (!baseUrl) throw new TypeError("baseUrl is required, e.g. http://127.0.0.1:8000");
    this.baseUrl = baseUrl;
    this.token = token;
    this.retries = retries;
    this.retryDelayMs = retryDelayMs;
    this.maxRetryDelayMs = maxRetryDelayMs;
    this.fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
  }

  async #base() {
    const base = typeof this.baseUrl === "function" ? await this.baseUrl() : this.baseUrl;
    return String(base).replace(/\/+$/, "");
  }

  #headers(extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  }

  /** One request with its retries; the parsed JSON body (`raw`: the text), or a typed error. */
  async request(method, path, { body, idempotencyKey, signal, raw = false } = {}) {
    const headers = this.#headers();
    if (method === "POST") {
      headers["Content-Type"] = "application/json";
      headers["Idempotency-Key"] = idempotencyKey ?? globalThis.crypto.randomUUID();
    }
    const payload = method === "POST" ? JSON.stringify(body ?? {}) : undefined;
    let delay = this.retryDelayMs;
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        response = await this.fetch((await this.#base()) + "/v1" + path, {
          method,
          headers,
          body: payload,
          signal,
        });
      } catch (err) {
        if (isAbort(signal)) throw err;
        if (attempt >= this.retries) {
          throw new NetworkError(`${method} ${path}: no reply (${err?.cause?.code ?? err})`, {
            cause: err,
          });
        }
        await sleep(Math.min(delay, this.maxRetryDelayMs), signal);
        delay *= 2;
        continue;
      }
      const text = await response.text();
      if (raw && response.ok) return text;
      let parsed = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        // not JSON: kept as text for the error message
      }
      if (response.ok) return parsed;
      const wait = response.status === 503 ? retryAfterMs(response) : null;
      if (wait !== null && attempt < this.retries) {
        await sleep(Math.min(wait, this.maxRetryDelayMs), signal);
        continue;
      }
      throw errorFromBody(parsed, response.status);
    }
  }

  // ----------------------------------------------------------------- commands (POST)
  // Each takes (runId, batchIndex, options) or (token, options), a token being any object
  // with run_id and batch_index (a CheckpointState's `token`, or the state itself).

  /** Create a checkpoint (idempotent: an existing one is returned unchanged). */
  createCheckpoint(...args) {
    const [path, { totalBatches, metadata, ...rest }] = checkpointArgs(args);
    return this.request("POST", path, {
      ...rest,
      body: compact({ total_batches: totalBatches, metadata }),
    });
  }

  /** Record progress (cursor, itemsProcessed, accumulatedResults); durable when it resolves. */
  checkpointYield(...args) {
    const [path, { cursor, itemsProcessed, accumulatedResults, attempt, lease, ...rest }] =
      checkpointArgs(args);
    return this.request("POST", `${path}/yield`, {
      ...rest,
      body: compact({
        cursor,
        items_processed: itemsProcessed,
        accumulated_results: accumulatedResults,
        attempt,
        lease,
      }),
    });
  }

  /** Complete the checkpoint with its result: the durable confirmation. */
  completeCheckpoint(...args) {
    const [path, { result, attempt, lease, ...rest }] = checkpointArgs(args);
    return this.request("POST", `${path}/complete`, {
      ...rest,
      body: compact({ result, attempt, lease }),
    });
  }

  /**
   * Fail the current attempt. `error` is a message or an Error (its name, message and stack
   * become errorType, error and traceback unless given).
   */
  failCheckpoint(...args) {
    const [path, options] = checkpointArgs(args);
    const { error, errorType, transient = false, traceback, host, pid, attempt, lease, ...rest } =
      options;
    const thrown = error instanceof Error ? error : null;
    return this.request("POST", `${path}/fail`, {
      ...rest,
      body: compact({
        error: thrown ? thrown.message : String(error),
        error_type: errorType ?? thrown?.name,
        transient,
        traceback: traceback ?? thrown?.stack,
        host,
        pid,
        attempt,
        lease,
      }),
    });
  }

  /** Retry a transient failure: a new attempt from the last cursor (operate scope). */
  retryCheckpoint(...args) {
    const [path, rest] = checkpointArgs(args);
    return this.request("POST", `${path}/retry`, rest);
  }

  /** Reset: clear cursor and progress, fence the worker, redo from scratch (operate scope). */
  resetCheckpoint(...args) {
    const [path, { reason, ...rest }] = checkpointArgs(args);
    return this.request("POST", `${path}/reset`, { ...rest, body: { reason } });
  }

  /** Cancel: the worker learns it at its next write (operate scope). */
  cancelCheckpoint(...args) {
    const [path, { reason, ...rest }] = checkpointArgs(args);
    return this.request("POST", `${path}/cancel`, { ...rest, body: { reason } });
  }

  /** Claim the checkpoint's lease (take over an expired one, or renew one's own). */
  claimCheckpoint(...args) {
    const [path, { owner, ttl, ...rest }] = checkpointArgs(args);
    return this.request("POST", `${path}/claim`, { ...rest, body: { owner, ttl } });
  }

  /** Renew a lease without a yield; the renewed lease. */
  heartbeat(lease, options = {}) {
    const [path] = checkpointArgs([lease.token]);
    return this.request("POST", `${path}/heartbeat`, { ...options, body: { lease } });
  }

  /** Give a lease back: the checkpoint stays open, for anyone to claim. */
  release(lease, options = {}) {
    const [path] = checkpointArgs([lease.token]);
    return this.request("POST", `${path}/release`, { ...options, body: { lease } });
  }

  /** Claim the run's first claimable checkpoint, in batch order: its lease, or null. */
  async claimNext(runId, { owner, ttl, retryDelay, maxRetryDelay, ...rest } = {}) {
    const found = await this.request("POST", `${runPath(runId)}/claim-next`, {
      ...rest,
      body: compact({ owner, ttl, retry_delay: retryDelay, max_retry_delay: maxRetryDelay }),
    });
    return found.lease;
  }

  /**
   * Archive a finished run into the server's --archive-dir: export, check, purge (operate
   * scope); what was archived (path, events, file_sha256…).
   */
  archiveRun(runId, options = {}) {
    return this.request("POST", `${runPath(runId)}/archive`, options);
  }

  /** Recompute the hash chains of one run, or of the whole store (operate scope). */
  verify(runId = null, options = {}) {
    return this.request("POST", "/verify", { ...options, body: compact({ run_id: runId ?? undefined }) });
  }

  // ----------------------------------------------------------------- queries (GET)

  /** A checkpoint's state, now or `asOf` a version (1, 2…) or a moment (ISO string, Date). */
  getCheckpoint(...args) {
    const [path, { asOf, ...rest }] = checkpointArgs(args);
    return this.request("GET", path + query({ as_of: asOf }), rest);
  }

  /** One page of a checkpoint's events, oldest first: {events, next_after_version}. */
  checkpointEvents(...args) {
    const [path, { afterVersion, limit, ...rest }] = checkpointArgs(args);
    return this.request("GET", `${path}/events` + query({ after_version: afterVersion, limit }), rest);
  }

  /** A checkpoint's bounded history: its latest yields. */
  history(...args) {
    const [path, rest] = checkpointArgs(args);
    return this.request("GET", `${path}/history`, rest);
  }

  /**
   * Wait until the checkpoint settles (long-poll, `timeout` seconds, default 30).
   *
   * Resolves with the completed state. A failed checkpoint rejects with
   * CheckpointFailedError (fields: checkpoint, error_type, message, transient, attempt;
   * `state`: the state), a cancelled one with CheckpointCancelled, a timeout with
   * AwaitTimeout (408), as the Effect seed's awaitCheckpoint fails. With `settled: true` it
   * resolves with the state however it ended.
   */
  async awaitCheckpoint(...args) {
    const [path, { timeout, settled = false, ...rest }] = checkpointArgs(args);
    const state = await this.request("GET", `${path}/await` + query({ timeout }), rest);
    if (settled || state.status === "completed") return state;
    const id = `${state.token.run_id}/${state.token.batch_index}`;
    if (state.status === "cancelled") {
      const err = new CheckpointCancelled(`checkpoint ${id} was cancelled: ${state.cancel_reason}`, {
        status: 200,
        fields: { checkpoint: id, reason: state.cancel_reason },
      });
      err.state = state;
      throw err;
    }
    const failure = state.error ?? {};
    const kind = failure.transient ? "transient" : "permanent";
    const err = new CheckpointFailedError(
      `checkpoint ${id} failed (${kind}, attempt ${state.attempt}): ${failure.type}: ` +
        `${failure.message}; ${failure.transient ? "retryCheckpoint resumes it" : "reset it to redo it"}`,
      {
        status: 200,
        fields: {
          checkpoint: id,
          error_type: failure.type,
          message: failure.message,
          transient: Boolean(failure.transient),
          attempt: state.attempt,
        },
      },
    );
    err.state = state;
    throw err;
  }

  /** The store's runs, latest activity first: {runs}. */
  listRuns({ status, contains, limit, ...rest } = {}) {
    return this.request("GET", "/runs" + query({ status, contains, limit }), rest);
  }

  /** A run's progress and each batch's state, now or `asOf` a moment. */
  getRun(runId, { asOf, ...rest } = {}) {
    return this.request("GET", runPath(runId) + query({ as_of: asOf }), rest);
  }

  /** One page of a run's events in global order: {entries, next_after}. */
  timeline(runId, { after, since, until, batch, topic, limit, ...rest } = {}) {
    return this.request(
      "GET",
      `${runPath(runId)}/timeline` + query({ after, since, until, batch, topic, limit }),
      rest,
    );
  }

  /** A run's open checkpoints: {pending}. */
  pending(runId, options = {}) {
    return this.request("GET", `${runPath(runId)}/pending`, options);
  }

  /** Stuck checkpoints of one run, or of every run (runId null): {stuck}. */
  stuck(runId = null, { idle, ...rest } = {}) {
    const path = runId === null || runId === undefined ? "/stuck" : `${runPath(runId)}/stuck`;
    return this.request("GET", path + query({ idle }), rest);
  }

  /** One page of the failure audit: {failures, next_after}. */
  failures({ runId, since, until, errorType, transient, kind, batch, after, limit, ...rest } = {}) {
    return this.request(
      "GET",
      "/failures" +
        query({ run_id: runId, since, until, error_type: errorType, transient, kind, batch, after, limit }),
      rest,
    );
  }

  /** Every event of a run as the JSON-lines archive `ckl export` writes (a string). */
  exportRun(runId, options = {}) {
    return this.request("GET", `${runPath(runId)}/export`, { ...options, raw: true });
  }

  /** Liveness, the store and the views' and streams' positions. */
  health(options = {}) {
    return this.request("GET", "/health", options);
  }

  // ----------------------------------------------------------------- streams (SSE)

  /**
   * Follow one run's events (or every run's, runId null) as Server-Sent Events.
   *
   * Calls `onEvent(event)` once per global position, in order (a StreamEvent: position,
   * run_id, batch_index, checkpoint_id, topic, at, event). A dropped connection, the end of
   * the response or an `event: closing` (slow client, shutdown) is followed by a reconnect
   * with Last-Event-ID, after the server's `retry:` delay; a position already delivered is
   * never delivered again. Runs until `signal` aborts (then resolves with {lastEventId}) or
   * the server refuses the stream (400, 401, 403, 404: rejects with the typed error).
   *
   * @param {string | null} runId
   * @param {object} options
   * @param {number} [options.after=0] start after this global position.
   * @param {(event: object) => void | Promise<void>} options.onEvent awaited before the next.
   * @param {AbortSignal} [options.signal]
   * @param {(info: {reason: string, detail?: string, lastEventId: number}) => void}
   *   [options.onReconnect] told why before each reconnect.
   */
  async stream(runId, { after = 0, onEvent, signal, onReconnect, idleTimeoutMs = 60_000 } = {}) {
    if (typeof onEvent !== "function") throw new TypeError("stream needs onEvent");
    const path = runId === null || runId === undefined ? "/stream" : `${runPath(runId)}/stream`;
    let lastEventId = after;
    let retryMs = 1000;
    let failures = 0;
    while (!isAbort(signal)) {
      // One connection: ended by the caller's signal, or by silence longer than idleTimeoutMs
      // (the server sends a keep-alive comment every 15 s; a dead peer sends nothing).
      const connection = new AbortController();
      const abort = () => connection.abort(signal.reason);
      signal?.addEventListener("abort", abort, { once: true });
      let idle;
      const alive = () => {
        clearTimeout(idle);
        idle = setTimeout(() => connection.abort(new Error("idle")), idleTimeoutMs);
      };
      let why;
      try {
        alive();
        const response = await this.fetch((await this.#base()) + "/v1" + path, {
          headers: this.#headers({
            Accept: "text/event-stream",
            "Last-Event-ID": String(lastEventId),
          }),
          signal: connection.signal,
        });
        if (!response.ok) {
          const err = errorFromBody(parseJson(await response.text()), response.status);
          // 429 (a closed stream not yet uncounted), 503 and 5xx: wait and reconnect.
          if (response.status !== 429 && response.status < 500) throw err;
          why = { reason: err.error, detail: err.message };
          retryMs = Math.max(retryMs, retryAfterMs(response) ?? 0);
        } else {
          why = await readEvents(response.body, {
            alive,
            isNew: (id) => id > lastEventId,
            onEvent: async (id, data) => {
              lastEventId = id;
              failures = 0;
              await onEvent(data);
            },
            onRetry: (ms) => {
              retryMs = ms;
            },
            onRewound: (id) => {
              lastEventId = Math.min(lastEventId, id);
            },
          });
        }
      } catch (err) {
        if (isAbort(signal)) break;
        if (err instanceof CklError) throw err;
        const detail = connection.signal.aborted
          ? `nothing received for ${idleTimeoutMs} ms`
          : String(err?.cause?.code ?? err?.message ?? err);
        why = { reason: "disconnected", detail };
      } finally {
        clearTimeout(idle);
        signal?.removeEventListener("abort", abort);
      }
      if (isAbort(signal)) break;
      failures += 1;
      onReconnect?.({ ...why, lastEventId });
      // The server's retry: delay; after 5 failed tries in a row, doubling up to the maximum.
      const wait = Math.min(retryMs * 2 ** Math.max(0, failures - 5), this.maxRetryDelayMs);
      try {
        await sleep(wait, signal);
      } catch {
        break;
      }
    }
    return { lastEventId };
  }
}

/**
 * Read one SSE response to its end: dispatch each event whose id is new; the reason it ended
 * ({reason: "closing", …} for the server's closing event, "ended" for the end of the body).
 */
async function readEvents(body, { alive, isNew, onEvent, onRetry, onRewound }) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let id = null;
  let type = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return { reason: "ended", detail: "the response ended" };
      alive();
      buffer += value;
      // Lines end with \r\n, \n or \r; a trailing \r may be half of a \r\n still to come.
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          // Blank line: dispatch the event gathered so far.
          if (type === "closing") {
            const info = parseJson(data.join("\n")) ?? {};
            return { reason: info.reason ?? "closing", detail: info.detail, closing: true };
          }
          if (type === "rewound") {
            // The store no longer holds the position we resumed from (a failover lost it):
            // the server goes on from an older one, and so does the "already seen" mark.
            const info = parseJson(data.join("\n")) ?? {};
            if (Number.isInteger(info.last_event_id)) onRewound(info.last_event_id);
          }
          if (data.length > 0 && id !== null && isNew(id)) {
            await onEvent(id, parseJson(data.join("\n")));
          }
          id = null;
          type = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: `: keep-alive`
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let text = colon === -1 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") data.push(text);
        else if (field === "event") type = text;
        else if (field === "id" && /^\d+$/.test(text)) id = Number(text);
        else if (field === "retry" && /^\d+$/.test(text)) onRetry(Number(text));
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export default CklClient;
