// The Switchboard console: plain JavaScript, no build step, nothing from elsewhere.
// The server pushes the calls table over server-sent events (a snapshot, then changed
// rows); this page keeps every call in memory and renders only the rows in view, so 1,000
// live calls cost what 20 do. The session is an HttpOnly cookie: no token is ever kept
// here; actions carry the CSRF token the server gave for this session. One call's view and
// the actions on it are in call.js.
"use strict";

const ROW = 36; // px, as --row in console.css
const OVERSCAN = 8;
const RECENT_MAX = 100;

const $ = (id) => document.getElementById(id);
const state = {
  role: null, csrf: null, feed: null, callFeed: null,
  live: new Map(), recent: new Map(), rows: [], dirty: true, filter: "",
  selected: null, seen: new Set(), targets: {}, pending: null,
};

// ---- small helpers ---------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "");
function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
    : `${m}:${String(s % 60).padStart(2, "0")}`;
}
const since = (iso) => (iso ? duration((Date.now() - Date.parse(iso)) / 1000) : "");
const apiName = (api) => (api === "live" ? "Live" : "Realtime");
const short = (id) => id.replace(/^rtc_|^live_/, "").slice(0, 8);

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (options.method === "POST") {
    headers["Content-Type"] = "application/json";
    if (state.csrf) headers["X-CSRF-Token"] = state.csrf;
  }
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  let body = {};
  try { body = await response.json(); } catch { /* empty body */ }
  return { status: response.status, body };
}

// ---- signing in --------------------------------------------------------------------------
async function boot() {
  $("signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  $("filter").addEventListener("input", (e) => { state.filter = e.target.value.trim().toLowerCase(); state.dirty = true; render(); });
  $("scroller").addEventListener("scroll", () => render(), { passive: true });
  $("close-call").addEventListener("click", closeCall);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("call").hidden) closeCall(); });
  window.addEventListener("resize", () => render());
  setInterval(tick, 1000); // durations count up locally; nothing is fetched
  const { status, body } = await api("/console/api/session");
  if (status === 200) start(body); else showSignIn();
}

function showSignIn() {
  $("app").hidden = true; $("who").hidden = true; $("signout").hidden = true;
  $("signin").hidden = false; $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $("token");
  const error = $("signin-error");
  error.textContent = "";
  if (!input.value) { error.textContent = "Enter a token."; input.focus(); return; }
  const button = event.submitter || $("signin-form").querySelector("button");
  button.disabled = true;
  const { status, body } = await api("/console/api/signin", {
    method: "POST", body: JSON.stringify({ token: input.value }),
  });
  button.disabled = false;
  input.value = ""; // the token is not kept anywhere, not even in the field
  if (status === 200) start(body);
  else { error.textContent = body.error || `Sign-in failed (${status}).`; input.focus(); }
}

async function signOut() {
  await api("/console/api/signout", { method: "POST" });
  location.reload();
}

async function start(session) {
  state.role = session.role; state.csrf = session.csrf;
  $("signin").hidden = true; $("app").hidden = false;
  $("who").hidden = false; $("signout").hidden = false;
  $("who").textContent = session.role === "controller" ? "Signed in: controller (can act)" : "Signed in: viewer (read only)";
  const agents = await api("/console/api/agents");
  if (agents.status === 200) state.targets = agents.body.agents || {};
  connectFeed();
}

// ---- the calls table -----------------------------------------------------------------------
function connectFeed() {
  if (state.feed) state.feed.close();
  const feed = new EventSource("/console/api/stream");
  state.feed = feed;
  feed.addEventListener("snapshot", (e) => {
    state.live.clear(); state.recent.clear();
    for (const call of JSON.parse(e.data).calls) upsert(call);
    $("feed-state").textContent = "live";
    state.dirty = true; render(); renderRecent();
  });
  feed.addEventListener("calls", (e) => {
    let ended = false;
    for (const call of JSON.parse(e.data).calls) ended = upsert(call) || ended;
    state.dirty = true; render();
    if (ended) renderRecent();
  });
  feed.addEventListener("error", async () => {
    $("feed-state").textContent = "reconnecting…";
    const { status } = await api("/console/api/session");
    if (status === 401) { feed.close(); showSignIn(); }
  });
}

function upsert(call) {
  if (call.call_id === state.selected) showFacts(call);
  if (call.live) { state.live.set(call.call_id, call); return false; }
  state.live.delete(call.call_id);
  state.recent.delete(call.call_id);
  state.recent.set(call.call_id, call);
  if (state.recent.size > RECENT_MAX) state.recent.delete(state.recent.keys().next().value);
  return true;
}

function matches(call, filter) {
  return !filter || [call.agent, call.to, call.from].some((v) => (v || "").toLowerCase().includes(filter));
}

let frame = 0;
function render() {
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
}

function draw() {
  if (state.dirty) {
    state.rows = [...state.live.values()].filter((c) => matches(c, state.filter))
      .sort((a, b) => (a.started < b.started ? 1 : a.started > b.started ? -1 : 0));
    state.dirty = false;
  }
  const rows = state.rows;
  $("live-count").textContent = String(state.live.size);
  $("empty").hidden = rows.length > 0;
  $("empty").textContent = state.live.size ? "No live call matches the filter." : "No live calls.";
  const scroller = $("scroller");
  const head = scroller.querySelector("thead").offsetHeight;
  const first = Math.max(0, Math.floor((scroller.scrollTop - head) / ROW) - OVERSCAN);
  // The window's height bounds the scroller's, even while it is still growing to it.
  const last = Math.min(rows.length, first + Math.ceil(window.innerHeight / ROW) + 2 * OVERSCAN);
  spacers.top.firstChild.style.height = `${first * ROW}px`;
  spacers.bottom.firstChild.style.height = `${(rows.length - last) * ROW}px`;
  const visible = new Map();
  for (let i = first; i < last; i++) visible.set(rows[i].call_id, rowFor(rows[i], i));
  for (const [id, tr] of rowCache) if (!visible.has(id)) { tr.remove(); rowCache.delete(id); }
  // Place rows without moving those already in order: a moved node loses keyboard focus.
  const body = $("rows");
  let cursor = body.firstChild;
  for (const node of [spacers.top, ...visible.values(), spacers.bottom]) {
    if (node === cursor) cursor = cursor.nextSibling;
    else body.insertBefore(node, cursor);
  }
  $("calls").setAttribute("aria-rowcount", String(rows.length + 1));
}

function spacer() {
  return el("tr", { class: "spacer", "aria-hidden": "true" }, el("td", { colSpan: 8 }));
}
const spacers = { top: spacer(), bottom: spacer() };
const rowCache = new Map(); // call_id → the <tr> on screen

function rowFor(call, index) {
  let tr = rowCache.get(call.call_id);
  if (!tr) {
    const open = el("button", { type: "button", class: "link" });
    open.addEventListener("click", () => openCall(call.call_id));
    tr = el("tr", { "data-call": call.call_id }, el("td", { class: "num" }, open));
    for (const cls of ["num", "", "", "", "", "dur", ""]) tr.append(el("td", { class: cls }));
    rowCache.set(call.call_id, tr);
  }
  tr.setAttribute("aria-rowindex", String(index + 2));
  tr.classList.toggle("selected", call.call_id === state.selected);
  if (tr.call === call) return tr; // unchanged since last drawn
  tr.call = call;
  tr.dataset.ts = call.last_ts;
  const cells = tr.children;
  const open = cells[0].firstChild;
  open.textContent = call.to || short(call.call_id);
  open.setAttribute("aria-label", `Open call to ${call.to || "unknown"} from ${call.from || "unknown"}`);
  const worker = call.worker ? (call.attempt > 1 ? `${call.worker} (re-attached, ${call.attempt})` : call.worker) : "—";
  const last = call.snippet || call.last_type;
  cells[1].textContent = call.from || "—";
  cells[2].textContent = call.agent || "—";
  cells[3].textContent = apiName(call.api);
  cells[4].textContent = worker; cells[4].title = worker;
  cells[5].textContent = call.state; cells[5].className = `state-${call.state}`;
  cells[6].textContent = since(call.started);
  cells[7].textContent = last; cells[7].title = last;
  return tr;
}

function tick() {
  for (const tr of $("rows").querySelectorAll("tr[data-call]")) {
    const call = state.live.get(tr.dataset.call);
    if (call) tr.querySelector("td.dur").textContent = since(call.started);
  }
}

function renderRecent() {
  const calls = [...state.recent.values()].reverse();
  $("recent-empty").hidden = calls.length > 0;
  $("recent-rows").replaceChildren(...calls.map((call) => {
    const r = call.report || {};
    const open = el("button", { type: "button", class: "link", textContent: clock(call.ended),
      "aria-label": `Open ended call to ${call.to || "unknown"} at ${clock(call.ended)}` });
    open.addEventListener("click", () => openCall(call.call_id));
    return el("tr", { "data-call": call.call_id },
      el("td", {}, open),
      el("td", { class: "num", textContent: call.to || "—" }),
      el("td", { class: "num", textContent: call.from || "—" }),
      el("td", { textContent: call.agent || "—" }),
      el("td", { textContent: r.duration_s != null ? `${Number(r.duration_s).toFixed(1)} s` : "—" }),
      el("td", { textContent: call.end_reason || call.state }),
      el("td", { textContent: r.turns != null ? String(r.turns) : "—" }),
      el("td", { textContent: r.tools != null ? String(r.tools) : "—" }));
  }));
}

document.addEventListener("DOMContentLoaded", boot); // after call.js has loaded too
