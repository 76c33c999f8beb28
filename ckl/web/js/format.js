// Numbers, times and durations, formatted the same way everywhere.

const nf = new Intl.NumberFormat("en-US");

export function num(value) {
  return value === null || value === undefined ? "–" : nf.format(value);
}

export function ms(iso) {
  return iso ? Date.parse(iso) : NaN;
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** Local wall-clock time with milliseconds: 14:03:07.123 */
export function clock(iso) {
  const t = ms(iso);
  if (Number.isNaN(t)) return "–";
  const d = new Date(t);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Local date and time: 2026-03-01 14:03:07 */
export function datetime(iso) {
  const t = ms(iso);
  if (Number.isNaN(t)) return "–";
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A duration in seconds, short: 850 ms, 4.2 s, 3 m 05 s, 2 h 10 m, 3 d 4 h */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const abs = Math.abs(seconds);
  if (abs < 1) return `${Math.round(seconds * 1000)} ms`;
  if (abs < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(abs / 60);
  if (m < 60) return `${m} m ${pad(Math.floor(abs % 60))} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${pad(m % 60)} m`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** How long ago: "12 s ago" (or "in 3 s" for the future, e.g. a lease's expiry). */
export function ago(iso, now = Date.now()) {
  const t = ms(iso);
  if (Number.isNaN(t)) return "–";
  const seconds = (now - t) / 1000;
  return seconds >= 0 ? `${duration(seconds)} ago` : `in ${duration(-seconds)}`;
}

/** An ISO-8601 UTC string with milliseconds, the form as_of takes. */
export function iso(t) {
  return new Date(t).toISOString();
}

/** A cursor (int, string or JSON) as short text. */
export function cursor(value) {
  if (value === null || value === undefined) return "–";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

/** "checkpoint.Yielded" -> "Yielded" */
export function topicName(topic) {
  return String(topic).replace(/^checkpoint\./, "");
}
