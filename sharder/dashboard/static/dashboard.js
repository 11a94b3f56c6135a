// The sharder's live dashboard: one EventSource, a "hello" that sets everything, then a
// "tick" per interval. All text reaches the DOM through textContent, never innerHTML.
"use strict";

const MAX_POINTS = 300; // per sparkline series, as many as the server's history holds
const MAX_INCIDENTS = 50;
const BUSIEST_ROUTES = 10;
const DENSE_SHARDS = 256; // above this many shards, tiles get smaller
const SPARK_WIDTH = 120;
const SPARK_HEIGHT = 24;
const RECONNECT_MS = 3000;
const TOKEN_KEY = "sharder.adminToken";
const SVG_NS = "http://www.w3.org/2000/svg";
const MIB = 1024 * 1024;

// A state's colour: ok (green), wait (amber), bad (red), off (grey, also anything unknown).
const STATE_TONES = {
  ready: "ok", running: "ok", done: "ok",
  starting: "wait", spawning: "wait", connecting: "wait", identifying: "wait",
  waiting: "wait", waiting_identify: "wait", resuming: "wait", busy: "wait",
  stopping: "wait", rolling: "wait", moving: "wait", resharding: "wait",
  backoff: "bad", down: "bad", disconnected: "bad", failed: "bad",
};

const METRICS = [
  { key: "events_per_s", label: "events/s", fromZero: true, format: (v) => `${v.toFixed(1)}/s` },
  { key: "loop_lag_ms", label: "loop lag", fromZero: true, format: (v) => `${v.toFixed(1)} ms` },
  { key: "rss_bytes", label: "RSS", fromZero: false, format: (v) => `${(v / MIB).toFixed(0)} MiB` },
];

const dashboard = {
  source: null,
  lastEventAt: 0,
  host: "",
  admin: false,
  intervalS: 1,
  status: null,
  series: new Map(), // child name -> {events_per_s: [...], loop_lag_ms: [...], rss_bytes: [...]}
  incidents: [], // newest first
  unparsable: 0,
  lookedUpGuild: null,
  tiles: [], // aligned with status.shards
  rows: new Map(), // child name -> {tr, cells, sparks}
};

const byId = (id) => document.getElementById(id);

function element(tag, className = "", text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function toneOf(state) {
  return Object.hasOwn(STATE_TONES, state) ? STATE_TONES[state] : "off";
}

// data-state is always the state's exact string (tests read it); data-tone picks the colour.
function markState(node, state) {
  const text = String(state ?? "unknown");
  if (node.dataset.state === text) return false;
  node.dataset.state = text;
  node.dataset.tone = toneOf(text);
  return true;
}

function showState(node, state) {
  if (markState(node, state)) node.textContent = node.dataset.state;
}

// ---- formatting ------------------------------------------------------------------------------

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

function formatNumber(value, digits = 0) {
  return isNumber(value) ? value.toFixed(digits) : "–";
}

function formatDuration(seconds) {
  if (!isNumber(seconds)) return "–";
  const s = Math.floor(seconds);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  const pad = (n) => String(n).padStart(2, "0");
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${pad(m)} m`;
  if (m > 0) return `${m} m ${pad(s % 60)} s`;
  return `${s} s`;
}

function clockTime(unixSeconds) {
  const date = new Date(unixSeconds * 1000);
  return [date.getHours(), date.getMinutes(), date.getSeconds()]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
}

// [0, 1, 2, 3] -> "0-3", [4, 6, 8, 9] -> "4,6,8-9", as the terminal table shows them.
function shardRanges(ids) {
  const sorted = [...ids].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < sorted.length; i++) {
    const start = sorted[i];
    while (i + 1 < sorted.length && sorted[i + 1] === sorted[i] + 1) i++;
    parts.push(start === sorted[i] ? `${start}` : `${start}-${sorted[i]}`);
  }
  return parts.join(",");
}

// ---- history ---------------------------------------------------------------------------------

function trimmed(values) {
  return values.length > MAX_POINTS ? values.slice(-MAX_POINTS) : values;
}

function numberOrNull(value) {
  return isNumber(value) ? value : null;
}

// Series are drawn right-aligned (newest at the right edge), so they need no timestamps: one
// that starts later is simply shorter.
function loadHistory(history) {
  dashboard.series = new Map();
  for (const [name, metrics] of Object.entries(history?.series ?? {})) {
    const series = {};
    for (const { key } of METRICS) {
      const values = Array.isArray(metrics?.[key]) ? metrics[key] : [];
      series[key] = trimmed(values.map(numberOrNull));
    }
    dashboard.series.set(name, series);
  }
}

function appendSample(sample) {
  const values = sample && typeof sample === "object" ? sample : {};
  for (const name of Object.keys(values)) {
    if (!dashboard.series.has(name)) {
      dashboard.series.set(name, Object.fromEntries(METRICS.map(({ key }) => [key, []])));
    }
  }
  for (const [name, series] of dashboard.series) {
    for (const { key } of METRICS) {
      series[key].push(numberOrNull(values[name]?.[key]));
      if (series[key].length > MAX_POINTS) series[key].shift();
    }
  }
}

// ---- sparklines ------------------------------------------------------------------------------

function createSparkline(label) {
  const svg = document.createElementNS(SVG_NS, "svg");
  const viewBox = `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`;
  const attributes = { class: "spark", width: SPARK_WIDTH, height: SPARK_HEIGHT, viewBox };
  for (const [name, value] of Object.entries(attributes)) svg.setAttribute(name, value);
  const title = document.createElementNS(SVG_NS, "title");
  title.textContent = label;
  const path = document.createElementNS(SVG_NS, "path");
  svg.append(title, path);
  return { svg, path };
}

// On a fixed time scale, so a young series is short rather than stretched, and nulls (a child
// that was down) leave gaps instead of joining across them.
function sparklinePath(values, fromZero) {
  const present = values.filter((v) => v !== null);
  if (present.length === 0) return "";
  let low = fromZero ? Math.min(0, ...present) : Math.min(...present);
  let high = Math.max(...present);
  if (high === low) {
    high += 1;
    if (!fromZero) low -= 1;
  }
  const step = SPARK_WIDTH / (MAX_POINTS - 1);
  const commands = [];
  let penDown = false;
  values.forEach((value, i) => {
    if (value === null) {
      penDown = false;
      return;
    }
    const x = SPARK_WIDTH - (values.length - 1 - i) * step;
    const y = SPARK_HEIGHT - 1 - ((value - low) / (high - low)) * (SPARK_HEIGHT - 2);
    commands.push(`${penDown ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`);
    penDown = true;
  });
  return commands.join("");
}

// ---- rendering -------------------------------------------------------------------------------

function renderStatus(status) {
  if (!status || typeof status !== "object") return;
  dashboard.status = status;
  const shards = Array.isArray(status.shards) ? status.shards : [];
  renderHeader(status, shards);
  renderOperations(status);
  renderShards(shards);
  renderProcesses(processesOf(status));
  renderRestGate(status.rest_gate ?? null);
  renderComputePool(status.compute_pool ?? {});
  renderGuildLookup();
}

function renderHeader(status, shards) {
  byId("host").textContent = dashboard.host;
  showState(byId("state"), status.state);
  byId("uptime").textContent = formatDuration(status.uptime_s);
  byId("events-per-s").textContent = formatNumber(status.events_per_s, 1);
  const ready = shards.filter((shard) => shard.state === "ready").length;
  byId("shards-ready").textContent = `${ready}/${status.shard_count ?? shards.length} shards ready`;
  document.title = dashboard.host ? `sharder · ${dashboard.host}` : "sharder";
}

// The last rolling restart, shard move and reshard, each in one line while the status has it.
function operationItems(status) {
  const items = [];
  const add = (operation, text) => {
    const item = element("li", "", operation.reason ? `${text}: ${operation.reason}` : text);
    item.dataset.tone = toneOf(operation.state);
    items.push(item);
  };
  const { roll, move, reshard } = status;
  if (roll) {
    const replaced = roll.replaced?.length ?? 0;
    add(roll, `rolling restart: ${roll.state} (${replaced}/${roll.workers} replaced)`);
  }
  if (move) {
    const what = `shard ${move.shard}, worker ${move.source} → ${move.target}`;
    add(move, `shard move: ${move.state} (${what})`);
  }
  if (reshard) {
    const what = `${reshard.from_shards} → ${reshard.to_shards} shards`;
    add(reshard, `reshard: ${reshard.state} (${what})`);
  }
  return items;
}

function renderOperations(status) {
  const list = byId("operations");
  const items = operationItems(status);
  const key = items.map((item) => item.textContent).join("\n");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(...items);
  list.hidden = items.length === 0;
}

function shardTitle(shard) {
  const latency = isNumber(shard.latency_ms) ? `${shard.latency_ms.toFixed(1)} ms` : "–";
  const parts = [
    `shard ${shard.id}`,
    shard.state,
    `${shard.guilds} guilds (${shard.guilds_loaded ?? 0} loaded)`,
    `latency ${latency}`,
    `worker ${shard.worker}`,
    `host ${dashboard.host}`,
  ];
  if (isNumber(shard.identify_queue)) parts.push(`${shard.identify_queue} IDENTIFYs ahead`);
  return parts.join(" · ");
}

function renderShards(shards) {
  const grid = byId("shards");
  const sameTiles =
    shards.length === dashboard.tiles.length &&
    shards.every((shard, i) => dashboard.tiles[i].dataset.shard === String(shard.id));
  if (!sameTiles) {
    dashboard.tiles = shards.map((shard) => {
      const tile = element("div", "tile", String(shard.id));
      tile.dataset.shard = String(shard.id);
      return tile;
    });
    grid.replaceChildren(...dashboard.tiles);
    grid.classList.toggle("dense", shards.length > DENSE_SHARDS);
  }
  shards.forEach((shard, i) => {
    const tile = dashboard.tiles[i];
    markState(tile, shard.state);
    const title = shardTitle(shard);
    if (tile.title !== title) tile.title = title;
  });
}

function processesOf(status) {
  const workers = (status.workers ?? []).map((w) => ({
    name: `worker-${w.id}`, worker: w.id, state: w.state, pid: w.pid, restarts: w.restarts,
    lastExit: w.last_exit, detail: shardRanges(w.shards ?? []),
  }));
  const compute = (status.compute ?? []).map((c) => ({
    name: `compute-${c.id}`, worker: null, state: c.state, pid: c.pid, restarts: c.restarts,
    lastExit: c.last_exit, detail: c.task ? `running ${c.task}` : `${c.tasks_done} tasks done`,
  }));
  const gate = status.rest_gate;
  const gates = gate
    ? [{ name: "rest-gate", worker: null, state: gate.state, pid: gate.pid, restarts: gate.restarts,
         lastExit: gate.last_exit, detail: gate.url ?? "" }]
    : [];
  return [...workers, ...compute, ...gates];
}

function restartButton(workerId) {
  const button = element("button", "restart-worker", "restart");
  button.type = "button";
  button.dataset.worker = String(workerId);
  button.title = `restart worker ${workerId}`;
  return button;
}

function createRow(process) {
  const tr = element("tr");
  tr.dataset.name = process.name;
  const cells = {};
  for (const column of ["name", "state", "pid", "detail", "restarts", "exit"]) {
    cells[column] = tr.appendChild(element("td", column));
  }
  cells.name.textContent = process.name;
  cells.badge = cells.state.appendChild(element("span", "badge"));
  const sparks = {};
  for (const metric of METRICS) {
    const cell = tr.appendChild(element("td", "metric"));
    const span = formatDuration(MAX_POINTS * dashboard.intervalS);
    const spark = createSparkline(`${process.name} ${metric.label}, the last ${span}`);
    const value = element("span", "value");
    cell.append(spark.svg, value);
    sparks[metric.key] = { path: spark.path, value };
  }
  if (dashboard.admin) {
    const actions = tr.appendChild(element("td", "actions admin-only"));
    if (process.worker !== null) actions.append(restartButton(process.worker));
  }
  return { tr, cells, sparks };
}

function updateRow(row, process) {
  showState(row.cells.badge, process.state);
  row.cells.pid.textContent = process.pid ?? "–";
  row.cells.detail.textContent = process.detail;
  row.cells.restarts.textContent = process.restarts ?? 0;
  row.cells.exit.textContent = process.lastExit ?? "";
  row.cells.exit.title = process.lastExit ?? ""; // the cell cuts long reasons short
  const series = dashboard.series.get(process.name);
  for (const metric of METRICS) {
    const values = series?.[metric.key] ?? [];
    const latest = values.length ? values[values.length - 1] : null;
    row.sparks[metric.key].path.setAttribute("d", sparklinePath(values, metric.fromZero));
    row.sparks[metric.key].value.textContent = latest === null ? "–" : metric.format(latest);
  }
}

function renderProcesses(processes) {
  const body = byId("workers").tBodies[0];
  const names = processes.map((p) => p.name);
  for (const name of dashboard.rows.keys()) {
    if (!names.includes(name)) dashboard.rows.delete(name);
  }
  for (const process of processes) {
    if (!dashboard.rows.has(process.name)) dashboard.rows.set(process.name, createRow(process));
    updateRow(dashboard.rows.get(process.name), process);
  }
  // Reorder only on change: moving a row under the pointer would swallow a click on its button.
  const shown = [...body.rows].map((tr) => tr.dataset.name);
  if (shown.join("\n") !== names.join("\n")) {
    body.replaceChildren(...names.map((name) => dashboard.rows.get(name).tr));
  }
}

function routeRow(route) {
  const tr = element("tr");
  const mean = route.requests > 0 ? route.queued_ms / route.requests : 0;
  tr.append(
    element("td", "route", String(route.route)),
    element("td", "num", String(route.requests)),
    element("td", "num", formatNumber(mean, 1)),
    element("td", "num", formatNumber(route.queued_max_ms, 1)),
    element("td", "num", String(route.got_429)),
    element("td", "num", String(route.invalid)),
  );
  return tr;
}

function renderRestGate(gate) {
  const totals = byId("rest-gate-totals");
  const table = byId("routes");
  if (!gate) {
    totals.textContent = "no REST gate (workers call Discord directly)";
    table.hidden = true;
    return;
  }
  totals.textContent =
    `${gate.requests} requests · ${gate.got_429} 429s · ` +
    `${gate.invalid_10min} invalid in 10 min · ${gate.refused} refused`;
  const busiest = [...(gate.routes ?? [])]
    .sort((a, b) => b.requests - a.requests)
    .slice(0, BUSIEST_ROUTES);
  table.tBodies[0].replaceChildren(...busiest.map(routeRow));
  table.hidden = false;
}

function renderComputePool(pool) {
  byId("compute-pool").textContent =
    `queued ${pool.queued ?? 0}/${pool.queue_size ?? 0} · done ${pool.done ?? 0} · ` +
    `timed out ${pool.timed_out ?? 0} · busy ${pool.busy ?? 0} · lost ${pool.lost ?? 0}`;
}

function addIncidents(incidents) {
  if (!Array.isArray(incidents) || incidents.length === 0) return false;
  const newestFirst = [...incidents].reverse();
  dashboard.incidents = [...newestFirst, ...dashboard.incidents].slice(0, MAX_INCIDENTS);
  return true;
}

function incidentItem(incident) {
  const item = element("li", "incident");
  item.dataset.kind = String(incident.kind);
  const time = element("time", "time", isNumber(incident.time) ? clockTime(incident.time) : "–");
  if (isNumber(incident.time)) time.dateTime = new Date(incident.time * 1000).toISOString();
  const kind = element("span", "kind", String(incident.kind));
  item.append(time, kind, element("span", "text", String(incident.text)));
  return item;
}

function renderIncidents() {
  const items = dashboard.incidents.map(incidentItem);
  if (items.length === 0) items.push(element("li", "empty", "no incidents"));
  byId("incidents").replaceChildren(...items);
}

// ---- guild lookup ----------------------------------------------------------------------------

function guildAnswer(text, status) {
  if (!/^\d{1,20}$/.test(text)) return "not a guild id";
  const shardCount = status?.shard_count;
  if (!Number.isInteger(shardCount) || shardCount <= 0) return "no shard count yet";
  const guild = BigInt(text);
  const shardId = Number((guild >> 22n) % BigInt(shardCount));
  const shard = (status.shards ?? []).find((s) => s.id === shardId);
  const where = shard ? ` on worker ${shard.worker} (${shard.state})` : "";
  return `guild ${guild} → shard ${shardId}${where}`;
}

function renderGuildLookup() {
  if (dashboard.lookedUpGuild === null) return;
  byId("guild-result").textContent = guildAnswer(dashboard.lookedUpGuild, dashboard.status);
}

// ---- admin -----------------------------------------------------------------------------------

// Storage can be off (privacy settings): the token then lives in the field only.
function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

function storeToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {}
}

async function readAnswer(response) {
  try {
    const answer = await response.json();
    if (answer && typeof answer === "object") {
      const fallback = `HTTP ${response.status}`;
      return answer.ok === true
        ? { ok: true, text: String(answer.message ?? fallback) }
        : { ok: false, text: String(answer.error ?? fallback) };
    }
  } catch {
    // not JSON: a proxy's error page, say
  }
  return { ok: response.ok, text: `HTTP ${response.status}` };
}

async function requestRestart(body) {
  const result = byId("admin-result");
  result.textContent = "sending…";
  result.dataset.outcome = "pending";
  const authorization = `Bearer ${byId("admin-token").value}`;
  let answer;
  try {
    const response = await fetch("/api/restart", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: authorization },
      body: JSON.stringify(body),
    });
    answer = await readAnswer(response);
  } catch (error) {
    answer = { ok: false, text: `request failed: ${error.message}` };
  }
  result.textContent = answer.text;
  result.dataset.outcome = answer.ok ? "ok" : "error";
}

// ---- the stream ------------------------------------------------------------------------------

function setConnected(connected) {
  const indicator = byId("connection");
  indicator.textContent = connected ? "live" : "disconnected";
  indicator.dataset.connected = String(connected);
  byId("banner").hidden = connected;
  document.body.classList.toggle("stale", !connected);
}

function countUnparsable() {
  dashboard.unparsable += 1;
  const note = byId("unparsable");
  note.textContent = `${dashboard.unparsable} unreadable update(s) skipped`;
  note.hidden = false;
}

function onHello(hello) {
  dashboard.host = String(hello.host ?? "");
  dashboard.admin = hello.admin === true;
  dashboard.intervalS = isNumber(hello.interval_s) && hello.interval_s > 0 ? hello.interval_s : 1;
  loadHistory(hello.history);
  dashboard.incidents = [];
  addIncidents(hello.incidents);
  // A new hello replaces everything, admin or not included: rebuild rows and tiles from scratch.
  dashboard.rows.clear();
  byId("workers").tBodies[0].replaceChildren();
  dashboard.tiles = [];
  byId("admin").hidden = !dashboard.admin;
  document.body.classList.toggle("admin", dashboard.admin);
  setConnected(true);
  renderStatus(hello.status);
  renderIncidents();
}

function onTick(tick) {
  appendSample(tick.sample);
  const newIncidents = addIncidents(tick.incidents);
  renderStatus(tick.status);
  if (newIncidents) renderIncidents();
}

function listen(source, name, handle) {
  source.addEventListener(name, (event) => {
    dashboard.lastEventAt = Date.now();
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      data = null;
    }
    if (data === null || typeof data !== "object") {
      countUnparsable();
      return;
    }
    handle(data);
  });
}

function connect() {
  const source = new EventSource("/events");
  dashboard.source = source;
  dashboard.lastEventAt = Date.now();
  source.addEventListener("open", () => {
    dashboard.lastEventAt = Date.now();
    setConnected(true);
  });
  source.addEventListener("error", () => {
    setConnected(false);
    // EventSource retries a dropped connection by itself, but gives up for good on an HTTP
    // error (a proxy's 502 while the master restarts): then start a new one.
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(() => dashboard.source === source && connect(), RECONNECT_MS);
    }
  });
  listen(source, "hello", onHello);
  listen(source, "tick", onTick);
}

// A connection can die without an error reaching the browser (a proxy holding a dead socket):
// when ticks stop for far longer than their interval, start over.
function watchStream() {
  const silentMs = Date.now() - dashboard.lastEventAt;
  if (silentMs < Math.max(15000, 10000 * dashboard.intervalS)) return;
  dashboard.source?.close();
  setConnected(false);
  connect();
}

function start() {
  const token = byId("admin-token");
  token.value = storedToken();
  token.addEventListener("input", () => storeToken(token.value));
  // Enter in the token field must not reload the page; restarts go only through the buttons.
  byId("admin-form").addEventListener("submit", (event) => event.preventDefault());
  byId("rolling-restart").addEventListener("click", () => requestRestart({ rolling: true }));
  byId("workers").addEventListener("click", (event) => {
    const button = event.target.closest(".restart-worker");
    if (button) requestRestart({ worker: Number(button.dataset.worker) });
  });
  byId("guild-form").addEventListener("submit", (event) => {
    event.preventDefault();
    dashboard.lookedUpGuild = byId("guild-input").value.trim();
    renderGuildLookup();
  });
  renderIncidents();
  connect();
  setInterval(watchStream, 1000);
}

start();
