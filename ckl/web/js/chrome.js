// The header's parts a view sets: its breadcrumbs and the live indicator of its stream.

import { h, replace } from "./dom.js";

const crumbs = document.getElementById("crumbs");
const live = document.getElementById("live");

const LIVE_TEXT = {
  idle: "–",
  connecting: "connecting",
  live: "live",
  reconnecting: "reconnecting",
  unauthorized: "needs a token",
  paused: "paused (as of)",
  closed: "closed",
};

/** The header's indicator of the current view's event stream. */
export function setLive(state) {
  live.dataset.state = state;
  live.querySelector("span").textContent = LIVE_TEXT[state] || state;
}

export function setCrumbs(...items) {
  replace(crumbs, items.map((item) => h("span", { class: "crumb" }, item)));
}

