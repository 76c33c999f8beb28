// The page: hash routes (#/ the run list, #/runs/<run_id>?as_of=ISO a run), the header's
// live indicator, and the token form shown when the API answers 401.

import * as api from "./api.js";
import { replace } from "./dom.js";
import { setLive } from "./chrome.js";
import { RunListView } from "./runs.js";
import { RunView } from "./run.js";

const view = document.getElementById("view");
let current = null; // {key, view}

function parse(hash) {
  const text = hash.replace(/^#/, "") || "/";
  const [path, query = ""] = text.split("?");
  const params = new URLSearchParams(query);
  const match = path.match(/^\/runs\/(.+)$/);
  if (match) {
    const runId = decodeURIComponent(match[1]);
    return { key: `run:${runId}`, make: () => new RunView(runId), params };
  }
  return { key: "runs", make: () => new RunListView(), params };
}

function route(force = false) {
  const next = parse(location.hash);
  if (!force && current && current.key === next.key) {
    current.view.update(next.params);
    return;
  }
  if (current) current.view.dispose();
  setLive("idle");
  const made = next.make();
  current = { key: next.key, view: made };
  replace(view, made.element);
  made.start(next.params);
}

// ---------------------------------------------------------------- token form

const overlay = document.getElementById("token-overlay");
const form = document.getElementById("token-form");
const input = document.getElementById("token-input");
const tokenError = document.getElementById("token-error");

api.onUnauthorized((error) => {
  if (!overlay.hidden) return;
  const had = api.token();
  tokenError.hidden = !had;
  tokenError.textContent = had ? `The server refused the token (${error.message}).` : "";
  overlay.hidden = false;
  input.value = "";
  input.focus();
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  api.setToken(input.value.trim());
  overlay.hidden = true;
  loadHealth();
  route(true);
});

// ---------------------------------------------------------------- start

async function loadHealth() {
  try {
    const health = await api.get("/health");
    const store = document.getElementById("store");
    store.textContent = health.store;
    store.title = `store ${health.store} · checkpoint-ledger ${health.version}`;
  } catch {
    /* the views show their own errors */
  }
}

window.addEventListener("hashchange", () => route());
loadHealth();
route();
