// The Switchboard console: plain JavaScript, no build step, nothing from elsewhere.
// The server pushes the calls table over server-sent events (a snapshot, then changed
// rows); this page keeps every call in memory and renders only the rows in view, so 1,000
// live calls cost what 20 do. The session is an HttpOnly cookie: no token is ever kept
// here; actions carry the CSRF token the server gave for this session.
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

// ---- one call --------------------------------------------------------------------------------
function openCall(callId) {
  closeFeedOfCall();
  state.selected = callId; state.seen = new Set(); state.pending = null;
  $("call").hidden = false;
  $("call-title").textContent = `Call ${short(callId)}`;
  $("timeline").replaceChildren();
  $("outcome").textContent = "";
  const call = state.live.get(callId) || state.recent.get(callId) || { call_id: callId, live: false };
  showFacts(call);
  $("controls-slot").replaceChildren();
  if (state.role === "controller") $("controls-slot").append(controls(call));
  setControlsEnabled(call.live);
  const feed = new EventSource(`/console/api/calls/${encodeURIComponent(callId)}/stream`);
  feed.addEventListener("events", (e) => { for (const event of JSON.parse(e.data).events) addEvent(event); });
  state.callFeed = feed;
  state.dirty = true; render();
  $("call-title").focus();
}

function closeFeedOfCall() { if (state.callFeed) { state.callFeed.close(); state.callFeed = null; } }
function closeCall() {
  closeFeedOfCall(); state.selected = null; $("call").hidden = true; state.dirty = true; render();
}

function showFacts(call) {
  const facts = [["Called", call.to], ["Caller", call.from], ["Agent", call.agent], ["API", call.api && apiName(call.api)],
    ["Direction", call.direction], ["Worker", call.worker && `${call.worker} (attempt ${call.attempt})`],
    ["State", call.live ? call.state : `${call.state}${call.end_reason ? ` (${call.end_reason})` : ""}`], ["Call id", call.call_id]];
  $("call-facts").replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]));
  setControlsEnabled(call.live);
}

function line(kind, text, event, who) {
  const item = el("li", { class: kind, "data-type": event.type, "data-seq": String(event.seq) },
    el("span", { class: "t", textContent: clock(event.ts) }));
  if (who) item.append(el("span", { class: "who", textContent: who }));
  item.append(text);
  return item;
}

function describe(event) {
  const d = event.data || {};
  switch (event.type) {
    case "transcript.agent": return line("agent", d.text || "", event, "Agent:");
    case "transcript.caller": return line(d.failed ? "caller failed" : "caller", d.failed ? "(not transcribed)" : d.text || "", event, "Caller:");
    case "tool.called": return line("tool", `${d.name}(${JSON.stringify(d.arguments ?? {})})`, event, "Tool");
    case "tool.completed": return line(d.error ? "tool failed" : "tool",
      `${d.name || ""} → ${JSON.stringify(d.error ?? d.output)}${d.duration_ms != null ? ` (${d.duration_ms} ms)` : ""}`, event, "Result");
    case "dtmf": return line("event", `Caller pressed ${d.digit}`, event);
    case "session.attached": return d.attempt > 1
      ? line("failover", `Re-attached to ${d.worker} (attempt ${d.attempt}): the call moved to another worker`, event)
      : line("event", `Attached to ${d.worker}`, event);
    case "session.detached": return line("event", `Detached from the worker (${d.reason || "?"})`, event);
    case "call.transferred": return line("event", `Transferred to ${d.target}`, event);
    case "transfer.failed": return line("failed", `Transfer to ${d.target} failed: ${d.reason}`, event);
    case "call.ended": return line("event", `Call ended: ${d.reason}`, event);
    case "call.report": return line("event",
      `Report: ${Number(d.duration_s || 0).toFixed(1)} s, ${d.turns ?? 0} turns, ${(d.tools || []).length} tools, ended ${d.end_reason}, attempts ${d.attempts ?? 1}`, event);
    case "call.received": return line("event", "Call received", event);
    case "call.accepted": return line("event", `Accepted by agent ${d.agent || "?"}`, event);
    default: return line(event.type.endsWith("failed") || event.type.endsWith("rejected") ? "failed" : "event",
      `${event.type}${d.reason ? `: ${d.reason}` : ""}`, event);
  }
}

function addEvent(event) {
  if (event.call_id !== state.selected || state.seen.has(event.seq)) return;
  state.seen.add(event.seq);
  const timeline = $("timeline");
  // Follow the conversation unless the reader scrolled up to read something earlier.
  const following = timeline.scrollTop + timeline.clientHeight >= timeline.scrollHeight - 8;
  timeline.append(describe(event));
  if (following) timeline.scrollTop = timeline.scrollHeight;
  settle(event);
}

// ---- acting ------------------------------------------------------------------------------------
function controls(call) {
  const node = $("controls-template").content.cloneNode(true);
  const select = node.querySelector("#transfer-named");
  for (const [name, uri] of Object.entries((state.targets[call.agent] || {}).targets || {})) {
    select.append(el("option", { value: name, textContent: `${name} (${uri})` }));
  }
  node.querySelector("#say-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("say-text").value.trim();
    if (text) act("say", { instructions: text }, "Asked the agent to speak…");
  });
  node.querySelector("#transfer-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const target = $("transfer-named").value || $("transfer-uri").value.trim();
    if (!target) { $("outcome").textContent = "Pick a target or type a tel: or sip: address."; return; }
    act("transfer", { target }, `Transferring to ${target}…`);
  });
  node.querySelector("#hangup").addEventListener("click", () => act("hangup", null, "Hanging up…"));
  return node;
}

function setControlsEnabled(live) {
  for (const control of document.querySelectorAll("#controls button, #controls input, #controls textarea, #controls select")) {
    control.disabled = !live;
  }
}

async function act(action, body, waiting) {
  const callId = state.selected;
  $("outcome").textContent = waiting;
  state.pending = action; // the call's events may settle it before the answer arrives
  const { status, body: reply } = await api(`/console/api/calls/${encodeURIComponent(callId)}/${action}`, {
    method: "POST", body: body ? JSON.stringify(body) : "",
  });
  if (callId !== state.selected) return;
  if (action === "say" && status === 200) $("say-text").value = "";
  if (state.pending !== action) return; // already settled by the events
  if (status !== 200) {
    state.pending = null;
    $("outcome").textContent = `Refused (${status}): ${reply.error || reply.detail || "error"}`;
  } else {
    $("outcome").textContent = action === "say" ? "Sent; the agent speaks next." : `${waiting} (waiting for the call's events)`;
  }
}

function settle(event) {
  const d = event.data || {};
  let outcome = null;
  if (event.type === "call.ended") { outcome = `Call ended (${d.reason}).`; setControlsEnabled(false); }
  else if (event.type === "call.transferred") outcome = `Transferred to ${d.target}.`;
  else if (event.type === "transfer.failed" && state.pending === "transfer") outcome = `Transfer failed: ${d.reason}.`;
  else if (event.type === "transcript.agent" && state.pending === "say") outcome = "The agent spoke.";
  if (outcome) { $("outcome").textContent = outcome; state.pending = null; }
}

boot();
