// codebus console: plain JavaScript, no build step. Everything the server sends is put
// into the page with textContent (never innerHTML), so no event field can inject markup.
"use strict";

const state = { csrf: null, scope: null, source: null };
const MAX_EVENTS = 500;

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function show(message, kind) {
  const box = $("message");
  box.textContent = message;
  box.className = "message" + (kind === "info" ? " info" : "");
}

function clearMessage() { $("message").className = "message hidden"; }

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    if (state.csrf) init.headers["X-CSRF-Token"] = state.csrf;
    init.body = JSON.stringify(body || {});
  }
  const response = await fetch(path, init);
  let payload = null;
  try { payload = await response.json(); } catch (e) { payload = null; }
  if (!response.ok) {
    const detail = payload && payload.detail ? payload.detail : response.statusText;
    const error = new Error(response.status + " " + detail);
    error.status = response.status;
    throw error;
  }
  return payload;
}

async function guarded(action) {
  try {
    clearMessage();
    await action();
  } catch (error) {
    show(error.message);
    if (error.status === 401) signedOut();
  }
}

// --- session -------------------------------------------------------------------
function signedIn(info) {
  state.csrf = info.csrf;
  state.scope = info.scope;
  $("who").textContent = info.name + " (" + info.scope + ")";
  $("login").classList.add("hidden");
  $("app").classList.remove("hidden");
  $("logout").classList.remove("hidden");
  document.body.classList.toggle("readonly", info.scope !== "operator");
  startStream();
}

function signedOut() {
  stopStream();
  state.csrf = null;
  $("who").textContent = "";
  $("app").classList.add("hidden");
  $("logout").classList.add("hidden");
  $("login").classList.remove("hidden");
}

async function checkSession() {
  try {
    signedIn(await api("GET", "/api/session"));
  } catch (error) {
    signedOut();
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  guarded(async () => {
    const info = await api("POST", "/api/login", { key: $("key").value });
    $("key").value = "";
    signedIn(info);
  });
});

$("logout").addEventListener("click", () => guarded(async () => {
  await api("POST", "/api/logout");
  signedOut();
}));

// --- tabs ----------------------------------------------------------------------
const loaders = {};
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tab")) other.classList.remove("active");
    for (const panel of document.querySelectorAll(".panel")) panel.classList.add("hidden");
    tab.classList.add("active");
    $("tab-" + tab.dataset.tab).classList.remove("hidden");
    const load = loaders[tab.dataset.tab];
    if (load) guarded(load);
  });
}

function openTab(name) {
  document.querySelector('.tab[data-tab="' + name + '"]').click();
}

// --- live events -----------------------------------------------------------------
function stopStream() {
  if (state.source) state.source.close();
  state.source = null;
  const status = $("stream-status");
  status.textContent = "disconnected";
  status.className = "status";
}

function startStream() {
  stopStream();
  const params = new URLSearchParams();
  const types = $("filter-types").value.trim();
  const correlation = $("filter-correlation").value.trim();
  if (types) params.set("types", types);
  if (correlation) params.set("correlationid", correlation);
  const source = new EventSource("/api/events/stream?" + params.toString());
  state.source = source;
  $("stream-status").textContent = "connecting";
  source.addEventListener("ready", () => {
    $("stream-status").textContent = "live";
    $("stream-status").className = "status live";
  });
  source.addEventListener("bus", (msg) => addEvent(JSON.parse(msg.data)));
  source.addEventListener("lagged", (msg) => {
    const info = JSON.parse(msg.data);
    addNote("skipped " + info.skipped + " event(s): the page read too slowly");
  });
  source.onerror = () => {
    if (state.source !== source) return;
    $("stream-status").textContent = "reconnecting";
    $("stream-status").className = "status";
    // A refused stream (bad filter, signed out) answers JSON; show why.
    api("GET", "/api/events/stream/check?" + params.toString()).catch((e) => {
      show(e.message);
      if (e.status === 400 || e.status === 401) stopStream();
      if (e.status === 401) signedOut();
    });
  };
}

function addNote(text) {
  const list = $("events");
  list.prepend(el("li", text, "note"));
}

function addEvent(event) {
  const list = $("events");
  const item = el("li");
  item.dataset.id = event.id || "";
  item.dataset.type = event.type || "";
  item.append(el("span", event.time, "meta"));
  item.append(el("span", event.type, "type"));
  item.append(el("span", "id " + event.id, "meta"));
  if (event.correlationid) {
    const link = el("a", "correlation " + event.correlationid, "meta");
    link.href = "#";
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      $("correlation-id").value = event.correlationid;
      openTab("correlation");
      guarded(loadCorrelation);
    });
    item.append(link);
  }
  item.append(el("pre", JSON.stringify(event.data, null, 1)));
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

$("stream-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  clearMessage();
  $("events").replaceChildren();
  startStream();
});

// --- correlation view -------------------------------------------------------------
function renderNode(node) {
  const item = el("li");
  item.append(el("strong", node.type));
  item.append(el("span", "  " + node.time + "  " + node.id + "  from " + node.source, "meta"));
  const children = el("ul");
  for (const call of node.tool_calls || []) {
    children.append(el("li", "tool " + call.tool + ": " + call.outcome +
      (call.cache_hit ? " (cached)" : "") + ", " + call.duration_ms + " ms" +
      (call.error ? " - " + call.error : ""), "tool"));
  }
  for (const child of node.children || []) children.append(renderNode(child));
  if (children.children.length) item.append(children);
  return item;
}

async function loadCorrelation() {
  const cid = $("correlation-id").value.trim();
  if (!cid) return;
  const result = await api("GET", "/api/correlation/" + encodeURIComponent(cid));
  $("correlation-summary").textContent = result.events + " event(s) with correlation id " +
    result.correlationid + " (" + result.scanned + " log entries scanned)";
  const root = el("ul");
  for (const node of result.tree) root.append(renderNode(node));
  for (const call of result.tool_calls) {
    root.append(el("li", "tool " + call.tool + ": " + call.outcome, "tool"));
  }
  $("correlation-tree").replaceChildren(root);
}

$("correlation-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  guarded(loadCorrelation);
});

// --- dead letters -----------------------------------------------------------------
function cell(row, text, cls) { row.append(el("td", text, cls)); }

function button(label, cls, action) {
  const b = el("button", label, cls);
  b.type = "button";
  b.addEventListener("click", () => guarded(action));
  return b;
}

async function loadDeadLetters() {
  const result = await api("GET", "/api/dead-letters?limit=200");
  const body = $("dlq-table").querySelector("tbody");
  body.replaceChildren();
  for (const item of result.items) {
    const row = el("tr");
    row.dataset.id = item.id || "";
    cell(row, item.id);
    cell(row, item.type);
    cell(row, item.kind);
    cell(row, item.queue || "-");
    cell(row, item.attempts === null ? "-" : item.attempts);
    cell(row, item.reason, "reason");
    const actions = el("td");
    actions.append(button("Show", "show", async () => {
      const detail = await api("GET", "/api/dead-letters/" + encodeURIComponent(item.id));
      $("dlq-detail").textContent = JSON.stringify(detail, null, 2);
      $("dlq-detail").classList.remove("hidden");
    }));
    actions.append(button("Replay", "replay operator", async () => {
      const done = await api("POST", "/api/dead-letters/" + encodeURIComponent(item.id) + "/replay");
      show("replayed " + done.replayed.map((r) => r.id + " to " + r.queue).join(", "), "info");
      await loadDeadLetters();
    }));
    row.append(actions);
    body.append(row);
  }
  if (!result.items.length) {
    const row = el("tr");
    const empty = el("td", "no dead letters");
    empty.colSpan = 7;
    row.append(empty);
    body.append(row);
  }
}
loaders.deadletters = loadDeadLetters;
$("dlq-refresh").addEventListener("click", () => guarded(loadDeadLetters));
$("dlq-purge").addEventListener("click", () => guarded(async () => {
  const typed = window.prompt("Delete EVERY dead letter? Type purge to confirm.");
  if (typed === null) return;
  const done = await api("POST", "/api/dead-letters/purge", { confirm: typed });
  show("purged " + done.purged + " dead letter(s)", "info");
  await loadDeadLetters();
}));

// --- breakers -----------------------------------------------------------------------
function seconds(value) { return value === null || value === undefined ? "-" : value.toFixed(1) + " s"; }

async function loadBreakers() {
  const result = await api("GET", "/api/breakers");
  const body = $("breakers-table").querySelector("tbody");
  body.replaceChildren();
  for (const b of result.items) {
    const row = el("tr");
    row.dataset.server = b.server;
    cell(row, b.server);
    cell(row, b.state + (b.probing ? " (probe in flight)" : ""), "state");
    cell(row, b.failures);
    cell(row, seconds(b.opened_for));
    cell(row, seconds(b.retry_after || null));
    const actions = el("td");
    actions.append(button("Reset", "reset operator", async () => {
      await api("POST", "/api/breakers/" + encodeURIComponent(b.server) + "/reset");
      show("breaker of " + b.server + " reset (closed)", "info");
      await loadBreakers();
    }));
    row.append(actions);
    body.append(row);
  }
  if (!result.items.length) {
    const row = el("tr");
    const empty = el("td", "no breaker state in Redis: every breaker is closed");
    empty.colSpan = 6;
    row.append(empty);
    body.append(row);
  }
}
loaders.breakers = loadBreakers;
$("breakers-refresh").addEventListener("click", () => guarded(loadBreakers));

// --- rollouts -----------------------------------------------------------------------
async function rolloutCommand(id, command, body) {
  const done = await api("POST", "/api/rollouts/" + encodeURIComponent(id) + "/" + command, body);
  show(done.type + " " + done.event_id + " sent for " + id, "info");
}

async function loadRollouts() {
  const result = await api("GET", "/api/rollouts");
  const body = $("rollouts-table").querySelector("tbody");
  body.replaceChildren();
  for (const f of result.items) {
    const row = el("tr");
    row.dataset.id = f.id;
    cell(row, f.id);
    cell(row, f.app + " " + f.version + " -> " + f.environment);
    cell(row, f.strategy);
    cell(row, f.phase + (f.stalled ? " (stalled)" : ""), "phase");
    cell(row, f.step);
    cell(row, (f.desired_weight ?? "-") + " / " + (f.actual_weight ?? "-"));
    cell(row, (f.measurements || []).map((m) => m.metric + ": " + m.phase).join("; ") || "-");
    const actions = el("td");
    actions.append(button("Promote", "promote operator", () => rolloutCommand(f.id, "promote", {})));
    actions.append(button("Approve", "approve operator", () => rolloutCommand(f.id, "approve", {})));
    actions.append(button("Abort", "abort operator danger", async () => {
      const reason = window.prompt("Why abort " + f.id + "? (recorded and announced)");
      if (reason === null) return;
      await rolloutCommand(f.id, "abort", { reason });
    }));
    row.append(actions);
    body.append(row);
  }
  if (!result.items.length) {
    const row = el("tr");
    const empty = el("td", "no deployment flows");
    empty.colSpan = 8;
    row.append(empty);
    body.append(row);
  }
}
loaders.rollouts = loadRollouts;
$("rollouts-refresh").addEventListener("click", () => guarded(loadRollouts));

checkSession();
