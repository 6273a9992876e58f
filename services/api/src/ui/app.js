// The dashboard: sign-in, hash routes to views, and live refresh from the event stream.
// Each view module exports `title`, `render(params)` (a promise of a node) and
// `affects(event, params)` (whether an event should refresh it).

import { ApiError, follow, get, setToken, token } from "./api.js";
import { h } from "./dom.js";
import * as overview from "./view-overview.js";
import * as agent from "./view-agent.js";
import * as policies from "./view-policies.js";
import * as task from "./view-task.js";
import * as runs from "./view-runs.js";
import * as repos from "./view-repos.js";
import * as snapshots from "./view-snapshots.js";
import * as snapshot from "./view-snapshot.js";

const ROUTES = [
  [/^\/?$/, overview],
  [/^\/agents\/([\w-]+)$/, agent],
  [/^\/policies$/, policies],
  [/^\/tasks\/([\w-]+)$/, task],
  [/^\/runs$/, runs],
  [/^\/repositories$/, repos],
  [/^\/snapshots$/, snapshots],
  [/^\/snapshots\/([0-9a-f]{64})$/, snapshot],
];

/** Waits this long after an event for more before refreshing, and at most `MAX_WAIT_MS`. */
const DEBOUNCE_MS = 250;
const MAX_WAIT_MS = 2000;
/**
 * Views that show when agents were last heard (`showsHeartbeats`) refresh this often:
 * heartbeats are not events, so the event stream alone would freeze "last seen".
 */
const HEARTBEAT_REFRESH_MS = 10000;

const $ = (id) => document.getElementById(id);
let stream = null;
let current = null;
let pending = null;
let firstPending = 0;
let rendering = Promise.resolve();

function route() {
  const path = location.hash.replace(/^#/, "") || "/";
  for (const [pattern, view] of ROUTES) {
    const match = path.match(pattern);
    if (match) return { view, params: match.slice(1) };
  }
  return null;
}

function setLive(state) {
  const words = { live: "● live", reconnecting: "○ reconnecting…", "signed-out": "" };
  $("live").textContent = words[state] ?? "";
  $("live").dataset.state = state;
  if (state === "signed-out") signOut("The token was refused or revoked.");
}

function signOut(message = "") {
  setToken(null);
  if (stream) stream.abort();
  stream = null;
  current = null;
  showSignIn(message);
}

function showSignIn(message) {
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("view").replaceChildren();
  $("live").textContent = "";
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  document.title = "Sign in · restic-fleet";
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const text = $("token").value.trim();
  if (!text) return;
  setToken(text);
  try {
    await get("/summary");
  } catch (error) {
    setToken(null);
    const refused = error instanceof ApiError && (error.status === 401 || error.status === 403);
    $("sign-in-error").textContent = refused ? "This token is not accepted." : `Cannot reach the API: ${error.message}`;
    return;
  }
  $("token").value = "";
  start();
}

function start() {
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  if (!stream) {
    stream = new AbortController();
    follow(onEvent, setLive, stream.signal);
  }
  show(true);
}

/** Renders the current route; `moved` when the route changed (focus goes to the view). */
function show(moved) {
  rendering = rendering.then(() => render(moved));
  return rendering;
}

async function render(moved) {
  if (!token()) return;
  const found = route();
  const target = $("view");
  for (const a of $("nav").querySelectorAll("a")) {
    const here = a.getAttribute("href") === (location.hash || "#/");
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!found) {
    current = null;
    target.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  current = found;
  // Keep the focused link or button focused across a live refresh.
  const focused = document.activeElement;
  const key = focused && target.contains(focused) ? focused.getAttribute("href") || focused.id : null;
  let node;
  try {
    node = await found.view.render(...found.params);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signOut("The token was refused or revoked.");
    node = h("div", { class: "panel error", role: "alert" }, h("h1", {}, "Cannot show this"), h("p", {}, error.message));
  }
  if (current !== found) return;
  target.replaceChildren(node);
  target.dataset.renders = String(Number(target.dataset.renders || 0) + 1);
  document.title = `${found.view.title} · restic-fleet`;
  if (moved) {
    $("main").focus({ preventScroll: true });
  } else if (key) {
    const again = [...target.querySelectorAll("a, button")].find((e) => (e.getAttribute("href") || e.id) === key);
    if (again) again.focus({ preventScroll: true });
  }
}

function onEvent(event) {
  const view = current;
  if (!view || !view.view.affects(event, ...view.params)) return;
  const now = Date.now();
  if (pending === null) firstPending = now;
  clearTimeout(pending);
  const wait = Math.max(0, Math.min(DEBOUNCE_MS, firstPending + MAX_WAIT_MS - now));
  pending = setTimeout(() => {
    pending = null;
    show(false);
  }, wait);
}

setInterval(() => {
  if (token() && current && current.view.showsHeartbeats && pending === null) show(false);
}, HEARTBEAT_REFRESH_MS);

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", () => token() && show(true));
if (token()) start();
else showSignIn("");
