// Streams one run with CklClient.stream until COUNT events arrived, re-reading the server's URL
// from URL_FILE before every connection (a restarted server listens on a new port).
// stdout: one JSON line per event delivered; stderr: one line per reconnect.
// Usage: node stream_across_restart.mjs URL_FILE RUN_ID COUNT
import { readFile } from "node:fs/promises";

import { CklClient } from "../../../../ckl/clients/js/ckl-client.mjs";

const [urlFile, runId, count] = process.argv.slice(2);
const client = new CklClient({ baseUrl: async () => (await readFile(urlFile, "utf8")).trim() });
const done = new AbortController();
const guard = setTimeout(() => {
  console.error("timed out");
  process.exit(3);
}, 60_000);
let seen = 0;
const { lastEventId } = await client.stream(runId, {
  signal: done.signal,
  onEvent: (event) => {
    console.log(JSON.stringify({ position: event.position, topic: event.topic, batch_index: event.batch_index }));
    seen += 1;
    if (seen >= Number(count)) done.abort();
  },
  onReconnect: ({ reason, lastEventId: last }) => console.error(`reconnect ${reason} after ${last}`),
});
clearTimeout(guard);
console.error(`done after ${lastEventId}`);
