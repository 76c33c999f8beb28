// The run page's lanes: one row per batch on a shared time axis (SVG). Each event is a mark
// at its time: yields as ticks, claims, takeovers, failures (transient / permanent), retries,
// resets, cancels, completions; between them a line shows what the batch was doing (waiting,
// running under a worker, waiting for a retry). The right column is the batch's progress
// against metadata.total_items.

import { s } from "./dom.js";
import { clock, cursor, ms, num, topicName } from "./format.js";

const LABEL_W = 56;
const PROGRESS_W = 210;
const ROW_H = 22;
const AXIS_H = 22;

export const MARKS = [
  ["yield", "yield (items)"],
  ["claim", "claim"],
  ["takeover", "takeover"],
  ["failed-transient", "transient failure"],
  ["failed-permanent", "permanent failure"],
  ["retry", "retry"],
  ["reset", "reset"],
  ["cancel", "cancel"],
  ["complete", "completed"],
];

/** The SVG mark of `kind` at (x, y). */
export function mark(kind, x, y) {
  switch (kind) {
    case "yield":
      return s("line", { x1: x, x2: x, y1: y - 6, y2: y + 6, class: "m-yield" });
    case "claim":
      return s("circle", { cx: x, cy: y, r: 3.2, class: "m-claim" });
    case "takeover":
      return s("path", { d: `M${x} ${y - 5.5}L${x + 5.5} ${y}L${x} ${y + 5.5}L${x - 5.5} ${y}Z`, class: "m-takeover" });
    case "failed-transient":
      return s("path", { d: `M${x} ${y - 5.5}L${x + 5.5} ${y + 4.5}L${x - 5.5} ${y + 4.5}Z`, class: "m-transient" });
    case "failed-permanent":
      return s(
        "g",
        { class: "m-permanent" },
        s("circle", { cx: x, cy: y, r: 6 }),
        s("path", { d: `M${x - 3} ${y - 3}L${x + 3} ${y + 3}M${x + 3} ${y - 3}L${x - 3} ${y + 3}` }),
      );
    case "retry":
      return s(
        "g",
        { class: "m-retry" },
        s("path", { d: `M${x + 4} ${y - 1.5}A4.2 4.2 0 1 1 ${x + 1.5} ${y - 4}` }),
        s("path", { d: `M${x + 0.5} ${y - 6.5}L${x + 2.5} ${y - 4}L${x - 0.2} ${y - 2}`, class: "head" }),
      );
    case "reset":
      return s("rect", { x: x - 4, y: y - 4, width: 8, height: 8, class: "m-reset" });
    case "cancel":
      return s(
        "g",
        { class: "m-cancel" },
        s("circle", { cx: x, cy: y, r: 5 }),
        s("path", { d: `M${x - 3.5} ${y + 3.5}L${x + 3.5} ${y - 3.5}` }),
      );
    case "complete":
      return s(
        "g",
        { class: "m-complete" },
        s("circle", { cx: x, cy: y, r: 6 }),
        s("path", { d: `M${x - 3} ${y}L${x - 0.8} ${y + 2.4}L${x + 3.2} ${y - 2.4}` }),
      );
    case "release":
      return s("rect", { x: x - 2.5, y: y - 2.5, width: 5, height: 5, class: "m-release" });
    case "renew":
      return s("circle", { cx: x, cy: y, r: 1.4, class: "m-renew" });
    default:
      return s("line", { x1: x, x2: x, y1: y - 4, y2: y + 4, class: "m-created" });
  }
}

/** What an event is on a lane, and how the batch goes on after it. */
function classify(entry) {
  const e = entry.event;
  switch (entry.topic) {
    case "checkpoint.Created":
      return ["created", "waiting"];
    case "checkpoint.Claimed":
      return [e.taken_over ? "takeover" : "claim", "running"];
    case "checkpoint.Yielded":
      return ["yield", "running"];
    case "checkpoint.LeaseRenewed":
      return ["renew", null];
    case "checkpoint.Released":
      return ["release", "waiting"];
    case "checkpoint.Failed":
      return e.transient ? ["failed-transient", "retrywait"] : ["failed-permanent", "end"];
    case "checkpoint.Retried":
      return ["retry", "waiting"];
    case "checkpoint.Reset":
      return ["reset", "waiting"];
    case "checkpoint.Cancelled":
      return ["cancel", "end"];
    case "checkpoint.Completed":
      return ["complete", "end"];
    default:
      return ["other", null];
  }
}

/** One line describing an event (the marks' tooltips and the event table use it). */
export function describe(entry) {
  const e = entry.event || {};
  switch (entry.topic) {
    case "checkpoint.Created": {
      const parts = [];
      if (e.total_batches) parts.push(`of ${e.total_batches} batches`);
      if (e.metadata && Object.keys(e.metadata).length) parts.push(`metadata ${JSON.stringify(e.metadata)}`);
      return parts.join(", ") || "created";
    }
    case "checkpoint.Claimed":
      if (e.taken_over) return `${e.owner} took over from ${e.previous_owner || "?"} (ttl ${e.ttl} s)`;
      return `${e.owner} claimed${e.retried ? " (retry)" : ""} (ttl ${e.ttl} s)`;
    case "checkpoint.Yielded":
      return `${num(e.items_processed)} items, cursor ${cursor(e.cursor)}`;
    case "checkpoint.Completed":
      return e.result === null || e.result === undefined ? "completed" : `result ${cursor(e.result)}`;
    case "checkpoint.Failed": {
      const where = e.host ? ` on ${e.host}${e.pid ? `:${e.pid}` : ""}` : "";
      return `${e.transient ? "transient" : "permanent"} ${e.error_type}: ${e.message}${where}`;
    }
    case "checkpoint.Retried":
      return `attempt ${e.attempt} resumes from the last cursor`;
    case "checkpoint.Reset":
    case "checkpoint.Cancelled":
      return e.reason;
    case "checkpoint.LeaseRenewed":
      return `lease renewed until ${clock(e.lease_expires_at)}`;
    case "checkpoint.Released":
      return "lease released";
    default:
      return "";
  }
}

function ticks(t0, t1, count) {
  const span = Math.max(t1 - t0, 1);
  const steps = [10, 50, 100, 250, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 216e5, 432e5, 864e5];
  const step = steps.find((candidate) => span / candidate <= count) || span / count;
  const first = Math.ceil(t0 / step) * step;
  const result = [];
  for (let t = first; t <= t1; t += step) result.push(t);
  return { ticks: result, step };
}

function tickLabel(t, step) {
  const text = clock(new Date(t).toISOString());
  if (step >= 6e4) return text.slice(0, 5);
  if (step >= 1e3) return text.slice(0, 8);
  return text.slice(3);
}

/**
 * The lanes' SVG. `batches`: [{index, state (CheckpointState or null), events, stuck}];
 * `t0`/`t1`: the axis (ms); `cut`: the as_of moment (ms) or null; `selected`: a batch index.
 */
export function lanes({ batches, t0, t1, cut, width, selected, onSelect }) {
  const height = AXIS_H + batches.length * ROW_H + 6;
  const x0 = LABEL_W;
  const x1 = Math.max(x0 + 100, width - PROGRESS_W - 14);
  const span = Math.max(t1 - t0, 1);
  const x = (t) => x0 + ((Math.min(Math.max(t, t0), t1) - t0) / span) * (x1 - x0);
  const root = s("svg", { class: "lanes", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "batch lanes" });

  const axis = s("g", { class: "axis" });
  const { ticks: marks, step } = ticks(t0, t1, Math.max(2, Math.floor((x1 - x0) / 90)));
  for (const t of marks) {
    if (x(t) > x1 - 24 || x(t) < x0 + 24) continue; // keep clear of the columns' heads
    axis.append(
      s("line", { x1: x(t), x2: x(t), y1: AXIS_H - 4, y2: height, class: "grid-line" }),
      s("text", { x: x(t), y: AXIS_H - 8, "text-anchor": "middle" }, tickLabel(t, step)),
    );
  }
  axis.append(
    s("text", { x: 4, y: AXIS_H - 8, class: "head" }, "batch"),
    s("text", { x: x1 + 14, y: AXIS_H - 8, class: "head" }, "items"),
  );
  root.append(axis);

  batches.forEach((batch, row) => {
    const y = AXIS_H + row * ROW_H + ROW_H / 2;
    const state = batch.state;
    const status = state ? state.status : "missing";
    const classes = ["lane", `s-${status}`];
    if (batch.stuck) classes.push("is-stuck");
    if (selected === batch.index) classes.push("selected");
    const g = s("g", {
      class: classes.join(" "),
      "data-batch": batch.index,
      "data-status": status,
      "data-yields": batch.events.filter((e) => e.topic === "checkpoint.Yielded").length,
      onclick: () => onSelect(batch.index),
    });
    g.append(
      s("rect", { x: 0, y: y - ROW_H / 2, width, height: ROW_H, class: "lane-bg" }),
      s("text", { x: 8, y: y + 4, class: "lane-label" }, `#${batch.index}`),
    );

    // What the batch was doing between its events.
    let phase = null;
    let since = null;
    const segment = (from, to, kind) => {
      if (kind && kind !== "end" && to > from) {
        g.append(s("line", { x1: x(from), x2: x(to), y1: y, y2: y, class: `lseg lseg-${kind}` }));
      }
    };
    const marksGroup = s("g", { class: "marks" });
    for (const entry of batch.events) {
      const t = ms(entry.at);
      const [kind, next] = classify(entry);
      if (next !== null) {
        segment(since, t, phase);
        phase = next;
        since = t;
      }
      const m = mark(kind, x(t), y);
      m.classList.add("ev", `ev-${kind}`);
      m.append(s("title", {}, `#${batch.index} ${topicName(entry.topic)} · ${clock(entry.at)} · attempt ${entry.event.attempt ?? "–"}\n${describe(entry)}`));
      marksGroup.append(m);
    }
    if (phase !== null) segment(since, cut ?? t1, phase);
    if (batch.stuck) {
      const xe = x(cut ?? t1);
      marksGroup.append(
        s(
          "g",
          { class: "ev m-stuck" },
          s("path", { d: `M${xe} ${y - 6}L${xe + 6} ${y}L${xe} ${y + 6}Z` }),
          s("title", {}, `#${batch.index} stuck: ${batch.stuck.reason}, idle ${Math.round(batch.stuck.idle_seconds)} s (${batch.stuck.owner || "no owner"})`),
        ),
      );
    }
    g.append(marksGroup);

    // Progress against metadata.total_items.
    const px = x1 + 14;
    const bw = 86;
    const done = state ? state.items_processed : 0;
    const total = state && Number.isInteger(state.metadata?.total_items) ? state.metadata.total_items : null;
    const fraction = total ? Math.min(1, done / total) : status === "completed" ? 1 : 0;
    g.append(
      s("rect", { x: px, y: y - 4, width: bw, height: 8, rx: 2, class: "pbar-track" }),
      s("rect", { x: px, y: y - 4, width: bw * fraction, height: 8, rx: 2, class: `pbar-fill pf-${status}` }),
      s(
        "text",
        { x: px + bw + 8, y: y + 4, class: "lane-progress" },
        state ? (total ? `${num(done)} / ${num(total)}` : num(done)) : "not created",
      ),
    );
    root.append(g);
  });

  if (cut !== null && cut !== undefined) {
    const label = `as of ${clock(new Date(cut).toISOString())}`;
    const w = label.length * 6.2 + 10;
    const lx = Math.max(2, x(cut) - w);
    root.append(
      s("line", { x1: x(cut), x2: x(cut), y1: 3, y2: height, class: "cut" }),
      s("rect", { x: lx, y: 3, width: w, height: 15, rx: 3, class: "cut-tag" }),
      s("text", { x: lx + 5, y: 14, class: "cut-label" }, label),
    );
  }
  return root;
}
