// The run list (#/): every run with its counts, progress and stuck batches, kept live by the
// all-runs event stream (a burst of events costs one refetch per 300 ms, not one per event).

import * as api from "./api.js";
import { setCrumbs, setLive } from "./chrome.js";
import { debounce, h, replace } from "./dom.js";
import { ago, datetime, num } from "./format.js";
import { badge, bar } from "./table.js";

const FILTERS = ["all", "running", "failed", "stuck", "completed"];
const REFETCH_MS = 300;
const REFRESH_MS = 5000;

export class RunListView {
  constructor() {
    this.status = "all";
    this.text = "";
    this.runs = [];
    this.stuck = new Map(); // run_id -> [StuckCheckpoint]
    this.touched = new Set(); // runs with events since the last render (their rows flash)
    this.error = null;
    this.stop = null;
    this.abort = new AbortController();
    this.refetch = debounce(() => this.load(), REFETCH_MS);

    this.search = h("input", {
      type: "search",
      id: "run-filter",
      placeholder: "Filter by run id…",
      spellcheck: "false",
      oninput: () => {
        this.text = this.search.value.trim();
        this.remember();
        this.refetch();
      },
    });
    this.buttons = FILTERS.map((name) =>
      h("button", { type: "button", class: "seg", "data-filter": name, onclick: () => this.setStatus(name) }, name),
    );
    this.summary = h("div", { class: "summary", id: "runs-summary" });
    this.body = h("div", { class: "runs-body" });
    this.element = h(
      "section",
      { class: "runs-view" },
      h(
        "div",
        { class: "toolbar" },
        h("h1", {}, "Runs"),
        this.summary,
        h("span", { class: "spacer" }),
        h("div", { class: "segmented", role: "group", "aria-label": "status" }, this.buttons),
        this.search,
      ),
      this.body,
    );
  }

  start(params) {
    setCrumbs();
    this.update(params);
    this.follow();
    // Stuck batches and "last activity" change with no event: a slow poll of /v1/stuck keeps
    // them true. The runs themselves change only with events (the stream).
    this.timer = setInterval(() => this.load({ stuckOnly: true }), REFRESH_MS);
  }

  update(params) {
    this.status = FILTERS.includes(params.get("status")) ? params.get("status") : "all";
    this.text = params.get("q") || "";
    this.search.value = this.text;
    this.load();
  }

  dispose() {
    this.abort.abort();
    this.refetch.cancel();
    clearInterval(this.timer);
    if (this.stop) this.stop();
  }

  setStatus(name) {
    this.status = name;
    this.remember();
    this.load();
  }

  remember() {
    const query = new URLSearchParams();
    if (this.status !== "all") query.set("status", this.status);
    if (this.text) query.set("q", this.text);
    const text = query.toString();
    history.replaceState(null, "", `#/${text ? `?${text}` : ""}`);
  }

  async follow() {
    // Start the stream at the views' position: the list is fetched fresh, the stream only
    // has to say what changes from now on (no replay of the store's history).
    let after = 0;
    try {
      after = (await api.get("/health", {}, { signal: this.abort.signal })).stream_position;
    } catch {
      /* from the start, then */
    }
    if (this.abort.signal.aborted) return;
    this.stop = api.follow("/stream", {
      after,
      onState: (state) => setLive(state),
      onEvent: ({ data }) => {
        this.touched.add(data.run_id);
        this.refetch();
      },
    });
  }

  async load({ stuckOnly = false } = {}) {
    const status = ["running", "failed", "completed"].includes(this.status) ? this.status : null;
    const signal = this.abort.signal;
    try {
      const [list, stuck] = await Promise.all([
        stuckOnly ? { runs: this.runs } : api.get("/runs", { status, contains: this.text || null }, { signal }),
        api.get("/stuck", {}, { signal }),
      ]);
      this.stuck = new Map();
      for (const row of stuck.stuck) {
        if (!this.stuck.has(row.run_id)) this.stuck.set(row.run_id, []);
        this.stuck.get(row.run_id).push(row);
      }
      this.runs = list.runs;
      this.error = null;
    } catch (error) {
      if (this.abort.signal.aborted) return;
      this.error = error;
    }
    this.render();
  }

  render() {
    for (const button of this.buttons) button.classList.toggle("on", button.dataset.filter === this.status);
    const runs = this.status === "stuck" ? this.runs.filter((r) => this.stuck.has(r.run_id)) : this.runs;
    const counts = { failed: 0, running: 0, completed: 0 };
    for (const run of this.runs) counts[run.status] = (counts[run.status] || 0) + 1;
    replace(
      this.summary,
      h("span", {}, `${num(this.runs.length)} runs`),
      counts.running ? h("span", { class: "c-running" }, `${counts.running} running`) : null,
      counts.failed ? h("span", { class: "c-failed" }, `${counts.failed} failed`) : null,
      this.stuck.size ? h("span", { class: "c-stuck" }, `${this.stuck.size} with stuck batches`) : null,
    );
    if (this.error) {
      replace(this.body, h("p", { class: "error", id: "runs-error" }, `Could not load the runs: ${this.error.message}`));
      return;
    }
    if (!runs.length) {
      const filtered = this.status !== "all" || this.text;
      replace(
        this.body,
        h("p", { class: "empty", id: "runs-empty" }, filtered ? "No run matches the filter." : "No runs yet: create a checkpoint and it shows up here."),
      );
      return;
    }
    const now = Date.now();
    const rows = runs.map((run) => this.row(run, now));
    replace(
      this.body,
      h(
        "table",
        { class: "grid runs", id: "runs-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "Status"),
            h("th", {}, "Run"),
            h("th", { class: "w-progress" }, "Progress (batches)"),
            h("th", {}, "Batches"),
            h("th", { class: "num" }, "Items"),
            h("th", {}, "Stuck"),
            h("th", {}, "Created"),
            h("th", {}, "Last activity"),
          ),
        ),
        h("tbody", {}, rows),
      ),
    );
    this.touched.clear();
  }

  row(run, now) {
    const stuck = this.stuck.get(run.run_id) || [];
    const total = run.total_batches ?? run.created;
    const href = `#/runs/${encodeURIComponent(run.run_id)}`;
    const classes = [`run-row`, `s-${run.status}`];
    if (stuck.length) classes.push("is-stuck");
    if (this.touched.has(run.run_id)) classes.push("flash");
    return h(
      "tr",
      { class: classes.join(" "), "data-run-id": run.run_id, "data-status": run.status },
      h("td", {}, badge(run.status)),
      h("td", { class: "run-id" }, h("a", { href, class: "run-link" }, run.run_id)),
      h("td", { class: "w-progress" }, bar(run.completed, total, { cls: `bar-${run.status}` })),
      h(
        "td",
        {},
        h(
          "span",
          { class: "counts" },
          h("span", { class: "n-completed", title: "completed" }, `✓ ${run.completed}`),
        run.failed ? h("span", { class: "n-failed", title: "failed" }, `✗ ${run.failed}`) : null,
        run.open ? h("span", { class: "n-open", title: "open" }, `● ${run.open}`) : null,
        run.cancelled ? h("span", { class: "n-cancelled", title: "cancelled" }, `⊘ ${run.cancelled}`) : null,
        run.total_batches && run.created < run.total_batches
          ? h("span", { class: "n-missing", title: "not created yet" }, `○ ${run.total_batches - run.created}`)
          : null,
        ),
      ),
      h("td", { class: "num items" }, num(run.items_processed)),
      h(
        "td",
        {},
        stuck.length
          ? badge("stuck", `${stuck.length} stuck`, stuck.map((s) => `#${s.batch_index} ${s.reason} (${s.owner || "no owner"})`).join("\n"))
          : h("span", { class: "muted" }, "–"),
      ),
      h("td", { class: "time", title: run.created_at }, datetime(run.created_at)),
      h("td", { class: "time", title: datetime(run.last_activity) }, ago(run.last_activity, now)),
    );
  }
}
