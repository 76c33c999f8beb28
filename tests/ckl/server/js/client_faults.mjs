// The client against a real server behind a fault proxy: replies lost after the server applied
// a command, a 503 with Retry-After, bad input, unknown runs, a stale attempt, tokens.
// Prints one JSON summary on stdout; the test checks it and the store's events.
// Usage: node client_faults.mjs URL RUN_ID WRITE_TOKEN READ_TOKEN OPERATE_TOKEN
import http from "node:http";

import {
  CheckpointNotFound,
  CklClient,
  CklError,
  InvalidInput,
  InvalidTransition,
  NetworkError,
  OutOfScope,
  RunArchived,
  RunNotFound,
  StaleAttempt,
  Unauthorized,
} from "../../../../ckl/clients/js/ckl-client.mjs";

const [upstream, runId, writeToken, readToken, operateToken] = process.argv.slice(2);

// Faults, consumed in order by the first request whose path ends with `match`.
const plan = [
  { match: "/yield", fault: "drop" }, // forwarded and applied, then the reply is lost
  { match: "/complete", fault: "503" }, // refused by the proxy, Retry-After: 1
  { match: "/complete", fault: "drop" },
];
const forwarded = []; // [path suffix, Idempotency-Key] of every request the server received

const proxy = http.createServer(async (request, response) => {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  const index = plan.findIndex((step) => request.url.endsWith(step.match));
  const fault = index === -1 ? null : plan.splice(index, 1)[0].fault;
  if (fault === "503") {
    response.writeHead(503, { "Content-Type": "application/json", "Retry-After": "1" });
    response.end(JSON.stringify({ error: "ServiceStopping", message: "injected", status: 503, fields: { operation: "x" } }));
    return;
  }
  const headers = { ...request.headers };
  delete headers.host;
  delete headers.connection;
  const reply = await fetch(upstream + request.url, {
    method: request.method,
    headers,
    body: chunks.length ? Buffer.concat(chunks) : undefined,
  });
  const body = Buffer.from(await reply.arrayBuffer());
  if (request.method === "POST") {
    forwarded.push([request.url.split("/").pop(), request.headers["idempotency-key"] ?? null]);
  }
  if (fault === "drop") {
    request.socket.destroy(); // the server applied it; the client never hears back
    return;
  }
  response.writeHead(reply.status, { "Content-Type": reply.headers.get("content-type") ?? "" });
  response.end(body);
});
await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
const viaProxy = `http://127.0.0.1:${proxy.address().port}`;

const out = {};
const kind = (err) => (err instanceof CklError ? { name: err.name, status: err.status, fields: err.fields } : { name: String(err) });
async function refused(label, call, ...kinds) {
  try {
    await call();
    out[label] = { name: "no error" };
  } catch (err) {
    out[label] = { ...kind(err), instances: kinds.map((k) => err instanceof k) };
  }
}

const worker = new CklClient({ baseUrl: viaProxy, token: writeToken, retryDelayMs: 50 });
const created = await worker.createCheckpoint(runId, 0, { totalBatches: 1 });
out.created = created.status;
const yielded = await worker.checkpointYield(created.token, { cursor: 10, itemsProcessed: 10 });
out.yielded = [yielded.cursor, yielded.items_processed, yielded.version];
await refused("stale", () => worker.checkpointYield(runId, 0, { cursor: 11, itemsProcessed: 11, attempt: 7 }), StaleAttempt, InvalidTransition);
const started = Date.now();
const completed = await worker.completeCheckpoint(created.token, {
  result: { rows: 10 },
  idempotencyKey: "complete-once",
});
out.completed = [completed.status, completed.version];
out.completeWaitedMs = Date.now() - started;
out.forwarded = [...forwarded]; // what reached the server for create, yield and complete
out.events = (await worker.checkpointEvents(created.token)).events.map(({ event: e }) => [e.originator_version, e.cursor ?? null, e.result ?? null]);

// Typed errors (nothing written by any of them).
await refused("badInput", () => worker.checkpointYield(runId, 0, { cursor: 11, itemsProcessed: "11" }), InvalidInput);
await refused("unknownRun", () => worker.getRun(`${runId}-nope`), RunNotFound, CheckpointNotFound);
await refused("completedAgain", () => worker.checkpointYield(runId, 0, { cursor: 12, itemsProcessed: 12 }), InvalidTransition);
await refused("outOfScope", () => new CklClient({ baseUrl: upstream, token: writeToken }).retryCheckpoint(runId, 0), OutOfScope);
await refused("readOnly", () => new CklClient({ baseUrl: upstream, token: readToken }).createCheckpoint(runId, 1), OutOfScope);
await refused("noToken", () => new CklClient({ baseUrl: upstream }).getRun(runId), Unauthorized);
out.readable = (await new CklClient({ baseUrl: upstream, token: readToken }).getRun(runId)).progress.completed;
const operator = new CklClient({ baseUrl: upstream, token: operateToken });
out.exported = (await worker.exportRun(runId)).trim().split("\n").map((line) => Object.keys(JSON.parse(line)).length > 0);
const archived = await operator.archiveRun(runId);
out.archived = [archived.run_id, archived.events, archived.purged];
await refused("writeArchived", () => worker.createCheckpoint(runId, 1), RunArchived);
proxy.closeAllConnections();
proxy.close();
await refused("unreachable", () => new CklClient({ baseUrl: viaProxy, retries: 1, retryDelayMs: 10 }).health(), NetworkError);
console.log(JSON.stringify(out));
process.exit(0);
