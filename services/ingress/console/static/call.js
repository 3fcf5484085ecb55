// The console's view of one call: its events streamed in (past, then live) and, for a
// controller, say / transfer / hang up, whose outcome shows when the call's events arrive.
// Shares console.js's globals (state, $, el, api, ...); both are plain scripts, no build.
"use strict";

// ---- one call --------------------------------------------------------------------------------
function openCall(callId) {
  closeFeedOfCall();
  state.selected = callId; state.seen = new Set(); state.pending = null;
  $("call").hidden = false;
  $("call-title").textContent = `Call ${short(callId)}`;
  $("timeline").replaceChildren();
  $("outcome").textContent = "";
  const call = state.live.get(callId) || state.recent.get(callId) || { call_id: callId, live: false };
  $("controls-slot").replaceChildren();
  if (state.role === "controller") $("controls-slot").append(controls());
  showFacts(call);
  const feed = new EventSource(`/console/api/calls/${encodeURIComponent(callId)}/stream`);
  feed.addEventListener("events", (e) => { for (const event of JSON.parse(e.data).events) addEvent(event); });
  state.callFeed = feed;
  state.dirty = true; render();
  $("call-title").focus();
}

function closeFeedOfCall() { if (state.callFeed) { state.callFeed.close(); state.callFeed = null; } }
function closeCall() {
  const id = state.selected;
  closeFeedOfCall(); state.selected = null; $("call").hidden = true; state.dirty = true; render();
  // Back to where the keyboard was: the call's row if it is still there, else the filter.
  const back = id && document.querySelector(`tr[data-call="${CSS.escape(id)}"] button`);
  (back || $("filter")).focus();
}

function showFacts(call) {
  const facts = [["Called", call.to], ["Caller", call.from], ["Agent", call.agent], ["API", call.api && apiName(call.api)],
    ["Direction", call.direction], ["Worker", call.worker && `${call.worker} (attempt ${call.attempt})`],
    ["State", call.live ? call.state : `${call.state}${call.end_reason ? ` (${call.end_reason})` : ""}`], ["Call id", call.call_id]];
  fillTargets(call.agent);
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
function controls() {
  const node = $("controls-template").content.cloneNode(true);
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

function fillTargets(agent) {
  // The agent is known from call.accepted on, which may come after the view opened.
  const select = $("transfer-named");
  if (!select || select.dataset.agent === (agent || "")) return;
  select.dataset.agent = agent || "";
  const named = Object.entries((state.targets[agent] || {}).targets || {});
  select.replaceChildren(el("option", { value: "", textContent: "(or type an address)" }),
    ...named.map(([name, uri]) => el("option", { value: name, textContent: `${name} (${uri})` })));
}

function setControlsEnabled(live) {
  // A control about to be disabled would drop the keyboard's focus on the page's body.
  if (!live && document.activeElement?.closest?.("#controls")) $("call-title").focus();
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

