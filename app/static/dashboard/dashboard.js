// Batchline dashboard: draws the monitoring and batch APIs, nothing more. Every string that came from
// the API is written with textContent (batch metadata and errors are client-controlled), never parsed as markup.
"use strict";

const POLL_MS = 2000;            // at most one refresh every 2 s
const ITEMS_PAGE = 100;          // requests shown per page in the drill-down
const FALLBACK_BATCHES = 50;     // batches listed when /v1/monitor is missing
const DONE = ["succeeded", "errored", "cancelled", "expired"];

const state = { selected: null, pages: [null], lastItems: [], timer: null, needKey: false };

// ---- batches ----------------------------------------------------------------------------------
function progress(counts) {
  const total = counts.total || 0;
  const done = DONE.reduce((sum, key) => sum + (counts[key] || 0), 0);
  return { total, done, percent: total ? Math.floor((done * 100) / total) : 100 };
}

function progressBar(counts) {
  const { total, percent } = progress(counts);
  const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                          "aria-valuenow": String(percent), title: `${percent} %` });
  for (const [cls, n] of [["ok", counts.succeeded], ["bad", (counts.errored || 0) + (counts.expired || 0)],
                          ["gone", counts.cancelled]]) {
    const part = el("span", { class: cls });
    part.style.width = `${total ? ((n || 0) * 100) / total : 0}%`;
    bar.append(part);
  }
  return bar;
}

function countsText(c) {
  return `${c.succeeded} ok · ${c.errored} errored · ${c.cancelled} cancelled · ${c.expired} expired · ` +
         `${c.running} running · ${c.pending} pending`;
}

function batchEntry(batch) {
  const counts = batch.request_counts;
  const { total, done, percent } = progress(counts);
  const extra = [];
  if (batch.throughput_per_s !== undefined && batch.throughput_per_s !== null)
    extra.push(`${batch.throughput_per_s.toFixed(2)}/s`);
  if (batch.eta_s !== undefined && batch.eta_s !== null) extra.push(`ETA ${seconds(batch.eta_s)}`);
  const item = el("li", { "data-batch-id": batch.id, class: batch.id === state.selected ? "selected" : "" },
    el("div", { class: "row" },
      el("code", { text: batch.id }),
      el("span", { class: `status status-${batch.status}`, "data-role": "status", text: batch.status }),
      el("span", { class: "muted", "data-role": "percent", text: `${done}/${total} · ${percent} %` }),
      el("span", { class: "muted", text: `created ${ago(batch.created_at)}` }),
      el("span", { class: "muted", text: extra.join(" · ") })),
    progressBar(counts),
    el("div", { class: "muted", text: countsText(counts) }));
  return item;
}

function drawBatches(running, recent) {
  $("running").replaceChildren(...(running.length ? running.map(batchEntry)
                                                   : [el("p", { class: "muted", text: "No running batch." })]));
  $("recent").replaceChildren(...(recent.length ? recent.map(batchEntry)
                                                 : [el("p", { class: "muted", text: "No batch yet." })]));
}

// ---- monitor sections -------------------------------------------------------------------------
function drawQueues(queues) {
  const body = $("queues").tBodies[0];
  if (!queues.length) return emptyRow(body, 6, "No queue.");
  body.replaceChildren(...queues.map((q) => el("tr", {}, cell(q.name), cell(q.ready), cell(q.delayed),
    cell(q.in_flight), cell(q.dead, q.dead ? "error" : ""), cell(seconds(q.latency_s)))));
}

function drawWorkers(workers) {
  const body = $("workers").tBodies[0];
  if (!workers.length) return emptyRow(body, 8, "No worker is alive.");
  body.replaceChildren(...workers.map((w) => el("tr", {}, el("td", {}, el("code", { text: w.id })), cell(w.host, "wrap"),
    cell(w.pid), cell(w.threads), cell(w.items_in_flight), cell(w.streams_open), cell(ago(w.started_at)),
    cell(ago(w.last_seen_at)))));
}

function drawModels(models) {
  $("models").textContent = `streams in flight ${dash(models.streams_in_flight)} · ` +
    `completed/min ${dash(models.completed_per_min_1m)} (1 min), ${dash(models.completed_per_min_5m)} (5 min) · ` +
    `ttft p50 ${seconds(models.ttft_p50_s)}, p95 ${seconds(models.ttft_p95_s)}`;
}


function drawThroughput(minutes) {
  barChart($("throughput"), minutes.map((m) => ({
    parts: [[m.finished || 0, "finished"], [m.failed || 0, "failed"]],
    title: `${m.minute}: ${m.finished} finished, ${m.failed} failed`,
  })), { left: "−60 min", right: "now", label: "items finished and failed per minute" });
}

function monitorUnavailable(available) {
  $("monitor-note").hidden = available;
  if (available) return;
  emptyRow($("queues").tBodies[0], 6, "Monitor API unavailable.");
  emptyRow($("workers").tBodies[0], 8, "Monitor API unavailable.");
  $("models").textContent = "";
  $("throughput").replaceChildren(el("p", { class: "muted", text: "Monitor API unavailable." }));
}

// ---- dead letters -----------------------------------------------------------------------------
function drawDead(letters) {
  const body = $("dead").tBodies[0];
  $("requeue-all").disabled = $("discard-all").disabled = !letters.length;
  if (!letters.length) return emptyRow(body, 7, "No dead letter.");
  body.replaceChildren(...letters.map((d) => el("tr", {},
    el("td", {}, el("code", { text: d.id })), cell(d.queue), cell(d.actor, "wrap"),
    el("td", {}, d.batch_id ? el("code", { text: d.batch_id }) : "—"), cell(ago(d.failed_at)), cell(d.retries),
    el("td", {}, el("button", { type: "button", "data-action": "requeue", "data-id": d.id, text: "Requeue" }), " ",
                 el("button", { type: "button", "data-action": "discard", "data-id": d.id, text: "Discard" })))));
}

async function refreshDead() {
  try {
    const found = await api("GET", "/v1/monitor/dead-letters?limit=100");
    $("dead-note").hidden = true;
    drawDead(found.dead_letters || []);
  } catch (error) {
    if (!(error instanceof HttpError) || error.status !== 404) throw error;
    $("dead-note").hidden = false;
    $("requeue-all").disabled = $("discard-all").disabled = true;
    emptyRow($("dead").tBodies[0], 7, "Dead-letter API unavailable.");
  }
}

async function deadAction(method, path, question) {
  if (!window.confirm(question)) return;
  await act(() => api(method, path));
}

// ---- drill-down -------------------------------------------------------------------------------
function field(name, value) { return [el("dt", { text: name }), el("dd", { text: String(dash(value)) })]; }

function metadataText(metadata) {
  const lines = Object.entries(metadata || {}).map(([key, value]) =>
    `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  return lines.length ? lines.join("\n") : null;
}

function drawDetail(batch, items) {
  $("detail").hidden = false;
  $("detail-id").textContent = batch.id;
  const status = $("detail-status");
  status.textContent = batch.status;
  status.className = `status status-${batch.status}`;
  $("detail-counts").textContent = countsText(batch.request_counts);
  $("cancel").disabled = batch.status !== "running";
  $("detail-fields").replaceChildren(
    ...field("Created", batch.created_at), ...field("Completed", batch.completed_at),
    ...field("Stop reason", batch.stop_reason), ...field("Metadata", metadataText(batch.metadata)),
    ...field("Callback URL", batch.callback_url),
    ...field("Callback sent", batch.callback_sent_at), ...field("Callback status", batch.callback_status_code),
    ...field("Callback error", batch.callback_error));
  const body = $("items").tBodies[0];
  if (!items.length) emptyRow(body, 7, "No request on this page.");
  else body.replaceChildren(...items.map((it) => el("tr", { "data-item-id": it.id },
    cell(it.index), cell(it.status, `status status-${it.status}`), cell(it.stop_reason), cell(ns(it.ttft_ns)),
    cell(ns(it.total_duration_ns)), cell(it.attempts), cell(it.error, "wrap"))));
  const page = state.pages.length;
  $("items-page").textContent = `page ${page}`;
  $("items-prev").disabled = page <= 1;
  $("items-next").disabled = items.length < ITEMS_PAGE;
  drawTtft(items);
}

function drawTtft(items) {
  const values = items.map((it) => it.ttft_ns).filter((v) => v !== null && v !== undefined).map((v) => v / 1e9);
  if (!values.length) {
    $("ttft").replaceChildren(el("p", { class: "muted", text: "No first token yet." }));
    return;
  }
  const low = Math.min(...values), high = Math.max(...values), bins = 20;
  const width = (high - low) / bins || 1;
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v - low) / width))] += 1;
  barChart($("ttft"), counts.map((n, i) => ({ parts: [[n, "ttft"]],
    title: `${seconds(low + i * width)}–${seconds(low + (i + 1) * width)}: ${n}` })),
    { left: seconds(low), right: seconds(high), label: "time to first token distribution" });
}

async function refreshDetail() {
  const id = state.selected;
  if (!id) return;
  const after = state.pages[state.pages.length - 1];
  const query = new URLSearchParams({ limit: String(ITEMS_PAGE), order: "asc" });
  if (after) query.set("after", after);
  const base = `/v1/messages/batches/${encodeURIComponent(id)}`;
  const [batch, items] = await Promise.all([api("GET", base), api("GET", `${base}/requests?${query}`)]);
  if (state.selected !== id) return;  // another batch was chosen meanwhile
  state.lastItems = items;
  drawDetail(batch, items);
}

function select(id) {
  state.selected = id;
  state.pages = [null];
  for (const li of document.querySelectorAll("ul.batches li"))
    li.classList.toggle("selected", li.dataset.batchId === id);
  if (!id) { $("detail").hidden = true; return; }
  // On a phone the drill-down is far below the list: bring it into view once it is drawn.
  act(async () => {}).then(() => { if (window.innerWidth < 700 && !$("detail").hidden) $("detail").scrollIntoView(); });
}

// ---- refresh loop -----------------------------------------------------------------------------
async function refresh() {
  let monitor = null;
  try {
    monitor = await api("GET", "/v1/monitor");
  } catch (error) {
    if (!(error instanceof HttpError) || error.status !== 404) throw error;
  }
  monitorUnavailable(monitor !== null);
  if (monitor) {
    drawQueues(monitor.queues || []);
    drawWorkers(monitor.workers || []);
    drawModels(monitor.models || {});
    drawThroughput(monitor.throughput || []);
    drawBatches(monitor.batches || [], monitor.recent_batches || []);
  } else {
    const listed = await api("GET", `/v1/messages/batches?limit=${FALLBACK_BATCHES}`);
    drawBatches(listed.filter((b) => b.status === "running"), listed.filter((b) => b.status !== "running"));
  }
  await Promise.all([refreshDead(), refreshDetail()]);
  $("content").hidden = false;
  $("forget-key").hidden = !storedKey();
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

async function act(action) {
  // Run an operator's action, then redraw at once instead of waiting for the next poll.
  clearTimeout(state.timer);
  try {
    await action();
    await refresh();
    showError(null);
  } catch (error) {
    failed(error);
  }
  schedule();
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function schedule() {
  clearTimeout(state.timer);
  if (!state.needKey) state.timer = setTimeout(tick, POLL_MS);
}

async function tick() {
  if (state.needKey) return;
  if (document.hidden) return schedule();  // no polling from a background tab
  try { await refresh(); showError(null); } catch (error) { failed(error); }
  schedule();
}

function wire() {
  for (const list of [$("running"), $("recent")]) {
    list.addEventListener("click", (event) => {
      const li = event.target.closest("li[data-batch-id]");
      if (li) select(li.dataset.batchId);
    });
  }
  $("detail-close").addEventListener("click", () => select(null));
  $("cancel").addEventListener("click", () => {
    const id = state.selected;
    if (id && window.confirm(`Cancel batch ${id}? Its unfinished requests stop.`))
      act(() => api("PATCH", `/v1/messages/batches/${encodeURIComponent(id)}/cancel`));
  });
  $("items-next").addEventListener("click", () => {
    if (!state.lastItems.length) return;
    state.pages.push(state.lastItems[state.lastItems.length - 1].id);
    act(async () => {});
  });
  $("items-prev").addEventListener("click", () => {
    if (state.pages.length > 1) state.pages.pop();
    act(async () => {});
  });
  $("dead").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const id = button.dataset.id, path = `/v1/monitor/dead-letters/${encodeURIComponent(id)}`;
    if (button.dataset.action === "requeue") deadAction("POST", `${path}/requeue`, `Requeue message ${id}?`);
    else deadAction("DELETE", path, `Discard message ${id} for good?`);
  });
  $("requeue-all").addEventListener("click", () =>
    deadAction("POST", "/v1/monitor/dead-letters/requeue", "Requeue every dead letter?"));
  $("discard-all").addEventListener("click", () =>
    deadAction("DELETE", "/v1/monitor/dead-letters", "Discard every dead letter for good?"));
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !state.needKey) act(async () => {}); });
  $("key-form").addEventListener("submit", useKey);
  $("forget-key").addEventListener("click", () => askForKey("Enter an API key to open the dashboard."));
}

wire();
tick();
