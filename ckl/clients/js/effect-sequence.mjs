#!/usr/bin/env node
// The Effect-TS CheckpointCoordinator seed's sequence, over HTTP with ckl-client.mjs:
//
//   create -> process (yields) -> complete -> await confirmation -> progress
//
// Batch 0 goes through it. Batch 1 fails (transiently) while processing: awaiting it reports
// the failure, progress stays below the total, completing it is refused; then it is retried,
// resumes from its last durable cursor, completes, and only then does progress reach the total.
//
// Usage: node effect-sequence.mjs [URL] [RUN_ID]    (or env CKL_URL, CKL_TOKEN)
// Exits 0 when every expectation held, 1 when one did not, 2 when the server is unreachable.

import {
  CheckpointFailedError,
  CklClient,
  InvalidTransition,
  NetworkError,
} from "./ckl-client.mjs";

const url = process.argv[2] ?? process.env.CKL_URL ?? "http://127.0.0.1:8000";
const runId = process.argv[3] ?? `effect-${new Date().toISOString().replace(/[-:.]/g, "")}`;
const ckl = new CklClient({ baseUrl: url, token: process.env.CKL_TOKEN });

const BATCHES = [range(0, 300), range(300, 600)]; // two batches of 300 items
const CHUNK = 100;
let progress = 0; // the seed's runService progress: moved only after a confirmation
const broken = [];

function range(start, end) {
  return Array.from({ length: end - start }, (_, i) => start + i);
}

function log(line) {
  console.log(line);
}

function expect(ok, what) {
  log(`  ${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) broken.push(what);
}

class UpstreamTimeout extends Error {
  name = "UpstreamTimeout";
}

/** The batch's work: resume from the durable cursor, yield after every chunk. */
async function processBatch(token, items, { failAt = null } = {}) {
  const state = await ckl.getCheckpoint(token);
  let offset = state.cursor ?? 0;
  let sum = state.accumulated_results?.sum ?? 0;
  log(`  process ${token.run_id}/${token.batch_index} from cursor ${offset} (attempt ${state.attempt})`);
  while (offset < items.length) {
    if (failAt !== null && offset >= failAt) {
      throw new UpstreamTimeout(`upstream timed out reading items ${offset}..${offset + CHUNK - 1}`);
    }
    for (const item of items.slice(offset, offset + CHUNK)) sum += item;
    offset = Math.min(offset + CHUNK, items.length);
    await ckl.checkpointYield(token, {
      cursor: offset,
      itemsProcessed: offset,
      accumulatedResults: { sum },
      attempt: state.attempt,
    });
    log(`    yield cursor=${offset} items=${offset} sum=${sum}`);
  }
  return { sum, attempt: state.attempt };
}

/** The seed's updateProgress: only after the confirmation; checked against the server's view. */
async function updateProgress(done) {
  progress = done;
  const run = await ckl.getRun(runId);
  log(`progress ${progress}/${BATCHES.length}`);
  expect(run.progress.completed === progress, `the server counts ${progress} completed batch(es)`);
}

async function runBatch(batchIndex, options = {}) {
  // 1. create the checkpoint token
  const { token } = await ckl.createCheckpoint(runId, batchIndex, {
    totalBatches: BATCHES.length,
    metadata: { total_items: BATCHES[batchIndex].length },
  });
  log(`batch ${batchIndex}: created ${token.checkpoint_id}`);
  // 2. process, then 3. save and signal: complete on success, fail on error
  try {
    const { sum, attempt } = await processBatch(token, BATCHES[batchIndex], options);
    await ckl.completeCheckpoint(token, { result: { sum }, attempt });
    log(`  complete result={"sum":${sum}}`);
  } catch (err) {
    if (!(err instanceof UpstreamTimeout)) throw err;
    await ckl.failCheckpoint(token, { error: err, transient: true });
    log(`  fail ${err.name}: ${err.message} (transient)`);
  }
  // 4. wait for the durable confirmation
  const confirmed = await ckl.awaitCheckpoint(token, { timeout: 10 });
  log(`  confirmed: ${confirmed.status}, result=${JSON.stringify(confirmed.result)}`);
  // 5. only then move progress
  await updateProgress(batchIndex + 1);
  return token;
}

async function main() {
  log(`run ${runId} on ${url}`);
  const token0 = await runBatch(0);
  const first = await ckl.getCheckpoint(token0);
  expect(first.status === "completed" && first.result.sum === sum(BATCHES[0]), "batch 0 completed with its sum");

  // The second batch fails while processing: the await reports it and progress is blocked.
  let token1 = null;
  try {
    await runBatch(1, { failAt: 200 });
    expect(false, "awaiting the failed batch 1 reports its failure");
  } catch (err) {
    if (!(err instanceof CheckpointFailedError)) throw err;
    token1 = err.state.token;
    log(`  await reported: ${err.name}: ${err.message}`);
    expect(err.fields.error_type === "UpstreamTimeout" && err.fields.transient, "awaiting the failed batch 1 reports its failure");
  }
  let run = await ckl.getRun(runId);
  log(`progress ${progress}/${BATCHES.length} (blocked: batch 1 failed)`);
  expect(progress === 1 && run.progress.completed === 1 && run.progress.failed === 1, "progress stays below the total while batch 1 is failed");
  try {
    await ckl.completeCheckpoint(token1, { result: { sum: 0 } });
    expect(false, "completing the failed batch 1 is refused");
  } catch (err) {
    if (!(err instanceof InvalidTransition)) throw err;
    expect(err.status === 409, `completing the failed batch 1 is refused: ${err.name} (${err.status})`);
  }

  // Retry: a new attempt resumes from the last durable cursor, then the sequence goes on.
  const retried = await ckl.retryCheckpoint(token1);
  log(`batch 1: retried, attempt ${retried.attempt} resumes from cursor ${retried.cursor}`);
  expect(retried.status === "open" && retried.cursor === 200, "the retry resumes from cursor 200");
  const { sum: total, attempt } = await processBatch(token1, BATCHES[1]);
  await ckl.completeCheckpoint(token1, { result: { sum: total }, attempt });
  log(`  complete result={"sum":${total}}`);
  const confirmed = await ckl.awaitCheckpoint(token1, { timeout: 10 });
  log(`  confirmed: ${confirmed.status}, result=${JSON.stringify(confirmed.result)}`);
  expect(confirmed.result.sum === sum(BATCHES[1]), "batch 1 completed with its sum");
  await updateProgress(2);

  run = await ckl.getRun(runId);
  const { pending } = await ckl.pending(runId);
  expect(run.progress.completed === BATCHES.length && pending.length === 0, "every batch completed, none pending");
  log(`run ${runId}: ${run.progress.completed}/${run.progress.total_batches} batches, ${run.items_processed} items`);
}

function sum(items) {
  return items.reduce((a, b) => a + b, 0);
}

try {
  await main();
} catch (err) {
  console.error(`error: ${err.name}: ${err.message}`);
  process.exit(err instanceof NetworkError ? 2 : 1);
}
if (broken.length > 0) {
  console.error(`${broken.length} expectation(s) failed: ${broken.join("; ")}`);
  process.exit(1);
}
log("all expectations held");
