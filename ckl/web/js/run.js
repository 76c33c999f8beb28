// A run's page (#/runs/<run_id>[?as_of=ISO]): its lanes, progress, failures, pending and stuck
// batches and its events, live over the run's event stream; `as_of` shows the run as it was
// at a moment (the lanes and tables cut there, live updates paused until "Live").

import * as api from "./api.js";
import { setCrumbs, setLive } from "./chrome.js";
import { debounce, h, replace, s } from "./dom.js";
import { ago, clock, cursor, datetime, duration, iso, ms, num, topicName } from "./format.js";
import { MARKS, describe, lanes, mark } from "./lanes.js";
import { badge, bar, table } from "./table.js";

const RENDER_MS = 250;
const REFETCH_MS = 400;
const REFRESH_MS = 5000;
const EVENT_ROWS = 200;
const MAX_LANES = 2000;

export class RunView {
  constructor(runId) {
    this.runId = runId;
    this.path = `/runs/${encodeURIComponent(runId)}`;
    this.events = []; // timeline entries, by position
    this.position = 0; // the last position in this.events
    this.detail = null; // RunDetail now
    this.past = null; // RunDetail as of this.asOf
    this.asOf = null; // the ISO string asked for
    this.failures = [];
    this.pending = [];
    this.stuck = [];
    this.missing = false;
    this.selected = null; // a batch index filtering the event table
    this.topic = "";
    this.eventRows = EVENT_ROWS;
    this.streamState = "connecting";
    this.abort = new AbortController();
    this.stop = null;
    this.renderSoon = debounce(() => this.render(), RENDER_MS);
    this.refetch = debounce(() => this.loadState(), REFETCH_MS);
    this.onResize = debounce(() => this.renderLanes(), 150);

    this.head = h("div", { class: "run-head" });
    this.timebar = this.makeTimebar();
    this.legend = h(
      "div",
      { class: "legend" },
      MARKS.map(([kind, label]) =>
        h("span", {}, s("svg", { width: 16, height: 16, viewBox: "0 0 16 16", class: "lanes legend-mark" }, mark(kind, 8, 8)), label),
      ),
      h("span", {}, h("i", { class: "lkey lk-running" }), "running"),
      h("span", {}, h("i", { class: "lkey lk-waiting" }), "waiting"),
      h("span", {}, h("i", { class: "lkey lk-retrywait" }), "awaiting retry"),
    );
    this.lanesBox = h("div", { class: "lanes-box", id: "lanes" });
    this.failuresBox = h("div", { id: "failures" });
    this.pendingBox = h("div", { id: "pending" });
    this.stuckBox = h("div", { id: "stuck" });
    this.eventsBox = h("div", { id: "events" });
    this.counts = {
      failures: h("span", { class: "count" }),
      pending: h("span", { class: "count" }),
      stuck: h("span", { class: "count" }),
      events: h("span", { class: "count" }),
    };
    this.topicSelect = h("select", {
      id: "topic-filter",
      onchange: () => {
        this.topic = this.topicSelect.value;
        this.renderEvents();
      },
    });
    this.batchChip = h("span", { class: "chip", hidden: true });
    this.element = h(
      "section",
      { class: "run-view", "data-run-id": runId },
      this.head,
      this.timebar,
      h(
        "div",
        { class: "panel" },
        h("div", { class: "panel-head" }, h("h2", {}, "Batches"), this.legend),
        this.lanesBox,
      ),
      h(
        "div",
        { class: "columns" },
        h("div", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "Failures", this.counts.failures)), this.failuresBox),
        h(
          "div",
          { class: "panel" },
          h("div", { class: "panel-head" }, h("h2", {}, "Pending", this.counts.pending)),
          this.pendingBox,
          h("div", { class: "panel-head sub" }, h("h2", {}, "Stuck", this.counts.stuck)),
          this.stuckBox,
        ),
      ),
      h(
        "div",
        { class: "panel" },
        h("div", { class: "panel-head" }, h("h2", {}, "Events", this.counts.events), this.batchChip, h("span", { class: "spacer" }), this.topicSelect),
        this.eventsBox,
      ),
    );
  }

  makeTimebar() {
    this.slider = h("input", {
      type: "range",
      id: "asof-slider",
      min: 0,
      max: 1000,
      step: 1,
      value: 1000,
      oninput: () => {
        this.asofInput.value = iso(this.sliderTime());
      },
      onchange: () => this.setAsOf(iso(this.sliderTime())),
    });
    this.asofInput = h("input", {
      type: "text",
      id: "asof-input",
      placeholder: "now (live) — or an ISO time, e.g. 2026-03-01T10:00:00Z",
      spellcheck: "false",
      onkeydown: (event) => {
        if (event.key === "Enter") this.setAsOf(this.asofInput.value.trim() || null);
      },
      onchange: () => this.setAsOf(this.asofInput.value.trim() || null),
    });
    this.liveButton = h("button", { type: "button", id: "asof-live", onclick: () => this.setAsOf(null) }, "Live");
    this.asofNote = h("span", { class: "asof-note", id: "asof-note" });
    return h(
      "div",
      { class: "timebar" },
      h("label", { for: "asof-slider" }, "Time travel"),
      this.slider,
      this.asofInput,
      this.liveButton,
      this.asofNote,
    );
  }

  // ------------------------------------------------------------ life cycle

  start(params) {
    setCrumbs(h("a", { href: "#/" }, "Runs"), this.runId);
    window.addEventListener("resize", this.onResize);
    this.asOf = params.get("as_of");
    // Idle times and lease expiries change with no event: a slow poll keeps the tables true.
    // The lanes and the event table change only with events (the stream), never by this poll.
    this.timer = setInterval(() => {
      if (!this.asOf && !this.missing) this.loadState({ tablesOnly: true });
    }, REFRESH_MS);
    this.load();
  }

  update(params) {
    const asOf = params.get("as_of");
    if (asOf !== this.asOf) this.applyAsOf(asOf);
  }

  dispose() {
    this.abort.abort();
    this.renderSoon.cancel();
    this.refetch.cancel();
    this.onResize.cancel();
    clearInterval(this.timer);
    window.removeEventListener("resize", this.onResize);
    if (this.stop) this.stop();
  }

  // ------------------------------------------------------------ loading

  async load() {
    const signal = this.abort.signal;
    try {
      const { rows } = await api.getAll(`${this.path}/timeline`, {}, "entries", { signal });
      this.events = rows;
      this.position = rows.length ? rows[rows.length - 1].position : 0;
      this.missing = false;
    } catch (error) {
      if (signal.aborted) return;
      if (error.status === 404) {
        this.missing = true;
      } else {
        this.fail(error);
        return;
      }
    }
    if (!this.missing) await this.loadState();
    if (this.asOf) await this.applyAsOf(this.asOf, { force: true });
    this.render();
    this.follow();
  }

  async loadState({ tablesOnly = false } = {}) {
    const signal = this.abort.signal;
    try {
      const [detail, failures, pending, stuck] = await Promise.all([
        api.get(this.path, {}, { signal }),
        api.getAll("/failures", { run_id: this.runId }, "failures", { signal }),
        api.get(`${this.path}/pending`, {}, { signal }),
        api.get(`${this.path}/stuck`, {}, { signal }),
      ]);
      this.detail = detail;
      this.failures = failures.rows;
      this.pending = pending.pending;
      this.stuck = stuck.stuck;
      this.error = null;
    } catch (error) {
      if (signal.aborted) return;
      this.error = error;
    }
    if (this.asOf) return;
    if (tablesOnly) {
      this.renderHead();
      this.renderFailures();
      this.renderPending();
    } else {
      this.renderSoon();
    }
  }

  follow() {
    this.stop = api.follow(`${this.path}/stream`, {
      after: this.position,
      onState: (state) => {
        this.streamState = state;
        if (!this.asOf) setLive(state);
      },
      onEvent: ({ id, data }) => {
        if (id <= this.position) return;
        this.position = id;
        this.events.push({
          position: data.position,
          at: data.at,
          batch_index: data.batch_index,
          version: data.event.originator_version,
          topic: data.topic,
          event: data.event,
        });
        if (this.missing) {
          this.missing = false;
        }
        // While time-travelling the view stands still; the events are kept for "Live".
        if (!this.asOf) {
          this.renderSoon();
          this.refetch();
        }
      },
    });
  }

  fail(error) {
    replace(this.head, h("p", { class: "error", id: "run-error" }, `Could not load run ${this.runId}: ${error.message}`));
  }

  // ------------------------------------------------------------ time travel

  bounds() {
    const first = this.events.length ? ms(this.events[0].at) : Date.now();
    const last = this.events.length ? ms(this.events[this.events.length - 1].at) : Date.now();
    return [first, Math.max(last, first + 1)];
  }

  sliderTime() {
    const [first, last] = this.bounds();
    return first + ((last - first) * Number(this.slider.value)) / 1000;
  }

  setAsOf(value) {
    const hash = `#/runs/${encodeURIComponent(this.runId)}${value ? `?as_of=${encodeURIComponent(value)}` : ""}`;
    history.replaceState(null, "", hash);
    this.applyAsOf(value);
  }

  async applyAsOf(value, { force = false } = {}) {
    if (!force && value === this.asOf && (value === null || this.past)) return;
    this.asOf = value;
    this.past = null;
    if (value === null) {
      this.asofNote.textContent = "";
      setLive(this.streamState);
      await this.loadState();
      this.render();
      return;
    }
    if (Number.isNaN(ms(value))) {
      this.asofNote.textContent = `"${value}" is not an ISO-8601 time`;
      this.asofNote.className = "asof-note error";
      return;
    }
    setLive("paused");
    try {
      this.past = await api.get(this.path, { as_of: value }, { signal: this.abort.signal });
      this.asofNote.className = "asof-note";
      this.asofNote.textContent = "";
    } catch (error) {
      if (this.abort.signal.aborted) return;
      this.asofNote.className = "asof-note error";
      this.asofNote.textContent = error.status === 404 ? "The run had no batch yet at that moment." : error.message;
      this.past = { checkpoints: [], progress: null, items_processed: 0, total_items: null, as_of: value };
    }
    if (this.asOf === value) this.render();
  }

  // ------------------------------------------------------------ rendering

  cutMs() {
    return this.asOf ? ms(this.asOf) : null;
  }

  visibleEvents() {
    const cut = this.cutMs();
    return cut === null ? this.events : this.events.filter((e) => ms(e.at) <= cut);
  }

  render() {
    this.element.classList.toggle("travelling", Boolean(this.asOf));
    this.renderHead();
    this.renderTimebar();
    this.renderLanes();
    this.renderFailures();
    this.renderPending();
    this.renderEvents();
  }

  shown() {
    return this.asOf ? this.past : this.detail;
  }

  renderHead() {
    if (this.missing) {
      replace(
        this.head,
        h("h1", { class: "run-title" }, this.runId),
        h("p", { class: "empty", id: "run-missing" }, "No such run (yet): this page fills in when its first checkpoint is created."),
      );
      return;
    }
    const detail = this.shown();
    if (!detail) return;
    const p = detail.progress;
    const runStatus = !p ? "open" : p.failed ? "failed" : p.open ? "running" : "completed";
    const total = p ? p.total_batches ?? p.created : 0;
    const last = this.visibleEvents().at(-1);
    replace(
      this.head,
      h(
        "div",
        { class: "title-row" },
        h("h1", { class: "run-title", id: "run-title" }, this.runId),
        badge(runStatus),
        this.stuck.length && !this.asOf ? badge("stuck", `${this.stuck.length} stuck`) : null,
        this.asOf ? h("span", { class: "asof-banner", id: "asof-banner" }, `as of ${datetime(this.asOf)} — live updates paused`) : null,
      ),
      h(
        "div",
        { class: "stats" },
        stat("Batches completed", p ? bar(p.completed, total, { cls: `bar-${runStatus}` }) : "–", "stat-batches"),
        stat(
          "Items processed",
          detail.total_items ? bar(detail.items_processed, detail.total_items, { cls: "bar-items" }) : num(detail.items_processed),
          "stat-items",
        ),
        stat(
          "Batches",
          p
            ? h(
                "span",
                { class: "counts" },
                h("span", { class: "n-completed" }, `✓ ${p.completed} completed`),
                h("span", { class: "n-failed" }, `✗ ${p.failed} failed`),
                h("span", { class: "n-open" }, `● ${p.open} open`),
                p.cancelled ? h("span", { class: "n-cancelled" }, `⊘ ${p.cancelled} cancelled`) : null,
              )
            : "–",
          "stat-counts",
        ),
        stat(
          this.asOf ? "Last event before" : "Last event",
          last ? h("span", { title: last.at }, `${topicName(last.topic)} #${last.batch_index} · ${ago(last.at, this.asOf ? ms(this.asOf) : Date.now())}`) : "–",
          "stat-last",
        ),
      ),
    );
  }

  renderTimebar() {
    const [first, last] = this.bounds();
    if (this.asOf) {
      const t = ms(this.asOf);
      this.slider.value = String(Math.round(((t - first) / (last - first)) * 1000));
      if (document.activeElement !== this.asofInput) this.asofInput.value = this.asOf;
    } else {
      this.slider.value = "1000";
      if (document.activeElement !== this.asofInput) this.asofInput.value = "";
    }
    this.liveButton.disabled = !this.asOf;
    this.slider.title = `${datetime(iso(first))} … ${datetime(iso(last))}`;
  }

  batches() {
    const detail = this.shown();
    const states = new Map();
    for (const state of detail ? detail.checkpoints : []) states.set(state.token.batch_index, state);
    const byBatch = new Map();
    for (const entry of this.visibleEvents()) {
      if (!byBatch.has(entry.batch_index)) byBatch.set(entry.batch_index, []);
      byBatch.get(entry.batch_index).push(entry);
    }
    const stuck = new Map(this.asOf ? [] : this.stuck.map((row) => [row.batch_index, row]));
    const indexes = new Set([...states.keys(), ...byBatch.keys()]);
    const declared = detail && detail.progress ? detail.progress.total_batches : null;
    if (declared && declared <= MAX_LANES) for (let i = 0; i < declared; i += 1) indexes.add(i);
    return [...indexes]
      .sort((a, b) => a - b)
      .slice(0, MAX_LANES)
      .map((index) => ({ index, state: states.get(index) || null, events: byBatch.get(index) || [], stuck: stuck.get(index) || null }));
  }

  renderLanes() {
    if (this.missing) {
      replace(this.lanesBox, h("p", { class: "empty" }, "Waiting for the run's first event…"));
      return;
    }
    if (!this.shown()) return;
    const batches = this.batches();
    if (!batches.length) {
      replace(this.lanesBox, h("p", { class: "empty" }, "No batch yet at this moment."));
      return;
    }
    const [first, last] = this.bounds();
    const open = (this.detail?.progress?.open ?? 0) > 0;
    const cut = this.cutMs();
    // A run that is moving gets an axis up to now; a quiet one (open batches nobody touched
    // for long) ends at its last event, or its events would be squeezed into a corner.
    const now = Date.now();
    const recent = now - last <= Math.max(0.25 * (last - first), 30000);
    const t1 = cut ?? (open && recent ? Math.max(last, now) : last);
    const t0 = first;
    const pad = Math.max((t1 - t0) * 0.02, 20);
    const width = Math.max(640, this.lanesBox.clientWidth || 1200);
    replace(
      this.lanesBox,
      lanes({
        batches,
        t0: t0 - pad,
        t1: Math.max(t1, cut ?? 0) + pad,
        cut,
        width,
        selected: this.selected,
        onSelect: (index) => {
          this.selected = this.selected === index ? null : index;
          this.renderLanes();
          this.renderEvents();
        },
      }),
    );
  }

  renderFailures() {
    const cut = this.cutMs();
    const rows = cut === null ? this.failures : this.failures.filter((f) => ms(f.failed_at) <= cut);
    this.counts.failures.textContent = rows.length ? String(rows.length) : "";
    replace(
      this.failuresBox,
      table(
        [
          { title: "Time", cls: "time", cell: (f) => h("span", { title: f.failed_at }, clock(f.failed_at)) },
          { title: "Batch", cls: "num", cell: (f) => `#${f.batch_index}` },
          { title: "Att.", cls: "num", cell: (f) => String(f.attempt) },
          {
            title: "Kind",
            cell: (f) =>
              f.kind === "failure" ? badge(f.transient ? "transient" : "permanent") : badge(f.kind === "takeover" ? "takeover" : "cancelled", f.kind),
          },
          {
            title: "Error",
            cls: "message",
            cell: (f) =>
              h(
                "div",
                {},
                h("span", { class: "etype" }, f.error_type), " ",
                h("span", { class: "emsg" }, f.message),
                f.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, f.traceback)) : null,
              ),
          },
          { title: "Items", cls: "num", cell: (f) => num(f.items_processed) },
          { title: "Where", cell: (f) => (f.host ? `${f.host}${f.pid ? `:${f.pid}` : ""}` : "–") },
          {
            title: "Resolution",
            cell: (f) => (f.resolution && (cut === null || ms(f.resolved_at) <= cut) ? h("span", { title: f.resolved_at }, `${f.resolution} ${clock(f.resolved_at)}`) : h("span", { class: "muted" }, "–")),
          },
        ],
        [...rows].reverse(),
        {
          key: (f) => f.position,
          rowClass: (f) => `failure k-${f.kind} ${f.kind === "failure" ? (f.transient ? "is-transient" : "is-permanent") : ""}`,
          empty: "No failures.",
          cls: "failures",
        },
      ),
    );
  }

  renderPending() {
    const now = this.asOf ? ms(this.asOf) : Date.now();
    let pending;
    if (this.asOf) {
      pending = (this.past ? this.past.checkpoints : [])
        .filter((c) => c.status === "open")
        .map((c) => ({ batch_index: c.token.batch_index, attempt: c.attempt, owner: c.owner, cursor: c.cursor, items_processed: c.items_processed, lease_expires_at: c.lease_expires_at, last_activity: c.updated_at }));
    } else {
      pending = this.pending;
    }
    this.counts.pending.textContent = pending.length ? String(pending.length) : "";
    replace(
      this.pendingBox,
      table(
        [
          { title: "Batch", cls: "num", cell: (c) => `#${c.batch_index}` },
          { title: "Att.", cls: "num", cell: (c) => String(c.attempt) },
          { title: "Owner", cell: (c) => c.owner || h("span", { class: "muted" }, "unclaimed") },
          { title: "Cursor", cls: "mono", cell: (c) => cursor(c.cursor) },
          { title: "Items", cls: "num", cell: (c) => num(c.items_processed) },
          { title: "Lease", cell: (c) => (c.lease_expires_at ? leaseText(c.lease_expires_at, now) : h("span", { class: "muted" }, "–")) },
          { title: "Last activity", cls: "time", cell: (c) => h("span", { title: c.last_activity }, ago(c.last_activity, now)) },
        ],
        pending,
        { key: (c) => c.batch_index, empty: "Nothing pending.", cls: "pending" },
      ),
    );
    this.counts.stuck.textContent = !this.asOf && this.stuck.length ? String(this.stuck.length) : "";
    replace(
      this.stuckBox,
      this.asOf
        ? h("p", { class: "empty" }, "Stuck batches are shown live only.")
        : table(
            [
              { title: "Batch", cls: "num", cell: (c) => `#${c.batch_index}` },
              { title: "Owner", cell: (c) => c.owner || h("span", { class: "muted" }, "no owner") },
              { title: "Why", cell: (c) => c.reason },
              { title: "Idle", cls: "num", cell: (c) => duration(c.idle_seconds) },
              { title: "Lease expired", cls: "time", cell: (c) => (c.lease_expires_at ? ago(c.lease_expires_at) : "–") },
            ],
            this.stuck,
            { key: (c) => c.batch_index, rowClass: () => "stuck-row", empty: "Nothing stuck.", cls: "stuck" },
          ),
    );
  }

  renderEvents() {
    const all = this.visibleEvents();
    const topics = [...new Set(this.events.map((e) => e.topic))].sort();
    if (this.topicSelect.options.length !== topics.length + 1) {
      replace(this.topicSelect, h("option", { value: "" }, "all topics"), topics.map((t) => h("option", { value: t }, topicName(t))));
      this.topicSelect.value = this.topic;
    }
    if (this.selected === null) {
      this.batchChip.hidden = true;
    } else {
      this.batchChip.hidden = false;
      replace(this.batchChip, `batch #${this.selected} `, h("button", { type: "button", class: "x", title: "all batches", onclick: () => { this.selected = null; this.renderLanes(); this.renderEvents(); } }, "×"));
    }
    const filtered = all.filter((e) => (this.selected === null || e.batch_index === this.selected) && (!this.topic || e.topic === this.topic));
    const rows = filtered.slice(-this.eventRows).reverse();
    this.counts.events.textContent = String(filtered.length);
    const more = filtered.length > rows.length
      ? h("button", { type: "button", class: "more", onclick: () => { this.eventRows += EVENT_ROWS * 5; this.renderEvents(); } }, `Show older (${num(filtered.length - rows.length)} more)`)
      : null;
    replace(
      this.eventsBox,
      table(
        [
          { title: "Pos.", cls: "num mono", cell: (e) => String(e.position) },
          { title: "Time", cls: "time", cell: (e) => h("span", { title: e.at }, clock(e.at)) },
          { title: "Batch", cls: "num", cell: (e) => `#${e.batch_index}` },
          { title: "Att.", cls: "num", cell: (e) => String(e.event.attempt ?? "–") },
          { title: "Event", cell: (e) => h("span", { class: `topic t-${topicName(e.topic)}${e.event.taken_over ? " t-takeover" : ""}${e.event.transient === false ? " t-permanent" : ""}` }, e.event.taken_over ? "Takeover" : topicName(e.topic)) },
          { title: "Details", cls: "details", cell: (e) => describe(e) },
        ],
        rows,
        { key: (e) => e.position, empty: this.asOf ? "No events before this moment." : "No events yet.", cls: "events" },
      ),
      more,
    );
  }
}

function stat(label, value, id) {
  return h("div", { class: "stat", id }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value));
}

function leaseText(expires, now) {
  const left = (ms(expires) - now) / 1000;
  return h("span", { class: left < 0 ? "lease-expired" : "lease-ok", title: expires }, left < 0 ? `expired ${duration(-left)} ago` : `${duration(left)} left`);
}
