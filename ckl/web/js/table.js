// Small shared pieces of the views: tables, badges, progress bars.

import { h } from "./dom.js";
import { num } from "./format.js";

/**
 * A table: columns are {title, cls?, cell(row) -> node|string, title?(row)}; rows any objects.
 * `key(row)` goes to each <tr data-key>, `rowClass(row)` to its class.
 */
export function table(columns, rows, { key, rowClass, empty = "Nothing here.", cls = "" } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    { class: `grid ${cls}` },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.cls }, c.title)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          { class: rowClass ? rowClass(row) : null, "data-key": key ? key(row) : null },
          columns.map((c) => h("td", { class: c.cls }, c.cell(row))),
        ),
      ),
    ),
  );
}

const STATUS_LABEL = {
  open: "open",
  running: "running",
  completed: "completed",
  failed: "failed",
  cancelled: "cancelled",
  stuck: "stuck",
  transient: "transient",
  permanent: "permanent",
  pending: "pending",
};

export function badge(status, text = STATUS_LABEL[status] || status, title = null) {
  return h("span", { class: `badge b-${status}`, title }, text);
}

/** A bar of done/total (total unknown: an empty bar with the count only). */
export function bar(done, total, { cls = "", label = null } = {}) {
  const fraction = total ? Math.min(1, done / total) : 0;
  return h(
    "span",
    { class: `bar ${cls}`, title: total ? `${num(done)} of ${num(total)} (${Math.floor(fraction * 100)}%)` : `${num(done)}` },
    h("span", { class: "bar-track" }, h("span", { class: "bar-fill", style: `width:${(fraction * 100).toFixed(2)}%` })),
    h("span", { class: "bar-text" }, label ?? (total ? `${num(done)} / ${num(total)}` : num(done))),
  );
}
