// Taskforge web UI: plain browser JavaScript, no build step, no third-party code.
// Every page is a server-rendered shell (body data-page, data-ns, ...); this file fills it
// from the JSON API (/api/v1, checked by RBAC as the caller) and keeps it current with
// Server-Sent Events, one stream per page (the server feeds every viewer from one watch).
"use strict";

const body = document.body;
const NS = body.dataset.ns || "";
const API = "/api/v1/namespaces/" + encodeURIComponent(NS);
const TERMINAL = new Set(["Succeeded", "Failed", "Cancelled"]);
let perms = {}; // what RBAC lets the caller do here (GET .../permissions)

// ---------- small helpers ----------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => ESC[c]);
}

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  const m = Math.floor(s / 60);
  return m + " min " + Math.round(s % 60) + " s";
}

function phaseBadge(phase) {
  return el("span", {class: "phase phase-" + (phase || "Pending"), text: phase || "Pending"});
}

function flash(message) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message || "";
  box.hidden = !message;
}

class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

function loginRedirect() {
  location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
}

async function api(path, options) {
  const opts = Object.assign({credentials: "same-origin"}, options || {});
  opts.headers = Object.assign({"X-Taskforge-Request": "1"}, opts.headers || {});
  if (opts.json !== undefined) {
    opts.body = JSON.stringify(opts.json);
    opts.headers["Content-Type"] = "application/json";
    delete opts.json;
  }
  const answer = await fetch(path, opts);
  if (answer.status === 401) {
    loginRedirect();
    throw new ApiError(401, "not logged in");
  }
  if (!answer.ok) {
    let message = answer.status + " " + answer.statusText;
    let field = null;
    try {
      const err = (await answer.json()).error || {};
      message = err.message || message;
      field = err.field || null;
    } catch (_) { /* not JSON */ }
    throw new ApiError(answer.status, message, field);
  }
  const type = answer.headers.get("Content-Type") || "";
  return type.includes("json") ? answer.json() : answer.text();
}

// Shows every element marked data-needs="group.action" that the caller may use.
async function applyPermissions() {
  try {
    perms = await api(API + "/permissions");
  } catch (e) {
    if (e.status !== 401) flash("Could not read your permissions: " + e.message);
    return perms;
  }
  for (const node of document.querySelectorAll("[data-needs]")) {
    const [group, action] = node.dataset.needs.split(".");
    node.dataset.allowed = String(Boolean(perms[group] && perms[group][action]));
  }
  refreshButtons();
  return perms;
}

// A button is visible when RBAC allows it and the page's state does (data-state="on").
function refreshButtons() {
  for (const node of document.querySelectorAll("[data-needs]")) {
    node.hidden = !(node.dataset.allowed === "true" && node.dataset.state !== "off");
  }
}

// EventSource with the page's handlers. The browser reconnects by itself after a dropped
// stream, and the server sends a fresh snapshot on every (re)connect, so a reconnect needs no
// bookkeeping here. An answer that is not a stream (401, 503 while the API server is away,
// 404 for a run that is gone) closes it for good: then find out whether we were logged out
// or the object is gone (`gone`: asked with a GET of `gone.path`), and otherwise try again
// with a growing delay, saying so on the page.
function live(path, handlers, gone) {
  let source = null;
  let delay = 1000;
  function retry() {
    flash("Live updates are interrupted; trying again in " + Math.round(delay / 1000) + " s.");
    setTimeout(connect, delay);
    delay = Math.min(delay * 2, 30000);
  }
  function connect() {
    source = new EventSource(path, {withCredentials: true});
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
    }
    source.onopen = () => {
      if (delay > 1000) flash("");
      delay = 1000;
    };
    source.onerror = () => {
      if (source.readyState !== EventSource.CLOSED) return; // the browser retries
      api(gone ? gone.path : "/api/v1/whoami").then(retry).catch((e) => {
        if (gone && e.status === 404) gone.then();
        else if (e.status !== 401) retry(); // 401: api() went to the login page
      });
    };
  }
  connect();
  window.addEventListener("pagehide", () => source.close());
}

// ---------- login ----------
function pageLogin() {
  const form = document.getElementById("login-form");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const error = document.getElementById("login-error");
    error.hidden = true;
    try {
      await api("/api/v1/login", {method: "POST", json: {token: form.token.value.trim()}});
      location.assign(body.dataset.next || "/");
    } catch (e) {
      error.textContent = e.status === 401 ? "That token was not accepted." : e.message;
      error.hidden = false;
      form.token.focus();
    }
  });
}

// ---------- workflows ----------
function pageWorkflows() {
  const rows = new Map();
  const tbody = document.querySelector("#workflows tbody");
  function render() {
    tbody.replaceChildren();
    const names = [...rows.keys()].sort();
    if (!names.length) tbody.append(el("tr", {}, el("td", {colspan: 6, class: "muted",
      text: "No workflows in this namespace."})));
    for (const name of names) {
      const w = rows.get(name);
      const link = "/namespaces/" + encodeURIComponent(NS) + "/workflows/" + encodeURIComponent(name);
      const last = w.lastRun ? el("span", {},
        el("a", {href: "/namespaces/" + encodeURIComponent(NS) + "/runs/" + encodeURIComponent(w.lastRun.name),
          text: w.lastRun.name}), " ", w.lastRun.phase ? phaseBadge(w.lastRun.phase) : "") : el("span", {class: "muted", text: "never"});
      const valid = w.valid === false
        ? el("span", {class: "bad", title: w.validMessage || "", text: "✗ " + (w.validMessage || "invalid")})
        : w.valid ? el("span", {class: "good", text: "✓ valid"}) : el("span", {class: "muted", text: "unknown"});
      const schedule = w.schedule ? (w.schedule + (w.suspended ? " (suspended)" : "")) : "";
      tbody.append(el("tr", {"data-workflow": name},
        el("th", {scope: "row"}, el("a", {href: link, text: name})),
        el("td", {title: (w.stepNames || []).join(", "), text: w.steps}),
        el("td", {text: schedule}), el("td", {}, last), el("td", {}, valid),
        el("td", {}, el("a", {href: link + "#run-h", class: "button", "data-needs": "runs.create",
          hidden: true, "data-allowed": String(Boolean(perms.runs && perms.runs.create)),
          text: "Run…"}))));
    }
    refreshButtons();
  }
  live(API + "/live/workflows", {
    snapshot: (d) => { rows.clear(); for (const w of d.items) rows.set(w.name, w); render(); },
    workflow: (d) => {
      if (d.type === "DELETED") rows.delete(d.workflow.name); else rows.set(d.workflow.name, d.workflow);
      render();
    },
  });
}

// ---------- one workflow: the run form ----------
function paramInput(p) {
  const id = "param-" + p.name;
  const type = p.type || "string";
  let input;
  if (type === "boolean") {
    input = el("select", {id, name: p.name}, el("option", {value: "", text: "(unset)"}),
      el("option", {value: "true", text: "true"}), el("option", {value: "false", text: "false"}));
    if (p.default !== null && p.default !== undefined) input.value = String(p.default);
  } else if (type === "object" || type === "array") {
    input = el("textarea", {id, name: p.name, rows: 3, spellcheck: "false",
      placeholder: p.default !== null && p.default !== undefined ? JSON.stringify(p.default) : "JSON " + type});
  } else {
    input = el("input", {id, name: p.name, type: type === "string" ? "text" : "number",
      step: type === "integer" ? "1" : "any", autocomplete: "off",
      placeholder: p.default !== null && p.default !== undefined ? String(p.default) : ""});
  }
  input.dataset.type = type;
  const required = p.required && (p.default === null || p.default === undefined);
  const label = el("label", {for: id}, p.name, required ? el("span", {class: "req", text: " (required)"}) : null,
    el("span", {class: "muted", text: " " + type}));
  const help = p.description ? el("small", {id: id + "-help", text: p.description}) : null;
  if (help) input.setAttribute("aria-describedby", id + "-help");
  return el("div", {class: "field"}, label, input, help);
}

function readParams(form) {
  const params = {};
  for (const input of form.querySelectorAll("[data-type]")) {
    const raw = input.value.trim();
    if (raw === "") continue; // unset: the server applies the default or says it is required
    const type = input.dataset.type;
    try {
      if (type === "number" || type === "integer") params[input.name] = Number(raw);
      else if (type === "boolean") params[input.name] = raw === "true";
      else if (type === "object" || type === "array") params[input.name] = JSON.parse(raw);
      else params[input.name] = raw;
    } catch (_) {
      throw new ApiError(422, "param '" + input.name + "' is not valid JSON", "params." + input.name);
    }
  }
  return params;
}

function pageWorkflow() {
  const name = body.dataset.workflow;
  const form = document.getElementById("run-form");
  const fields = document.getElementById("param-fields");
  const error = document.getElementById("run-error");
  api(API + "/workflows/" + encodeURIComponent(name)).then((wf) => {
    const spec = wf.spec || {};
    const steps = (spec.steps || []).length;
    const sched = ((spec.triggers || {}).schedule || {}).cron || "";
    document.getElementById("wf-summary").textContent =
      steps + " step" + (steps === 1 ? "" : "s") + (sched ? " · schedule " + sched : "");
    const params = spec.params || [];
    if (!params.length) fields.append(el("p", {class: "muted", text: "This workflow declares no params."}));
    for (const p of params) fields.append(paramInput(p));
  }).catch((e) => flash(e.message));
  api(API + "/runs?limit=10&workflow=" + encodeURIComponent(name)).then((page) => {
    const list = document.getElementById("recent-runs");
    list.replaceChildren(...page.items.map((r) => el("li", {},
      el("a", {href: "/namespaces/" + encodeURIComponent(NS) + "/runs/" + encodeURIComponent(r.name), text: r.name}),
      " ", phaseBadge(r.phase), " ", el("span", {class: "muted", text: fmtTime(r.startedAt || r.created)}))));
    if (!page.items.length) list.append(el("li", {class: "muted", text: "No runs yet."}));
  }).catch(() => { /* the list of all runs is one link away */ });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    for (const bad of form.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
    const button = document.getElementById("run-submit");
    button.disabled = true;
    try {
      const created = await api(API + "/runs", {method: "POST", json: {workflow: name, params: readParams(form)}});
      location.assign("/namespaces/" + encodeURIComponent(NS) + "/runs/" + encodeURIComponent(created.name));
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
      const param = e.field && e.field.startsWith("params.") ? e.field.slice(7) : null;
      const input = param && document.getElementById("param-" + param);
      if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
    } finally {
      button.disabled = false;
    }
  });
}

// ---------- runs list ----------
function pageRuns() {
  const rows = new Map();
  const tbody = document.querySelector("#runs tbody");
  const count = document.getElementById("runs-count");
  const filter = document.getElementById("phase-filter");
  const wf = body.dataset.workflow;
  function selected() {
    return new Set([...filter.querySelectorAll("input[name=phase]:checked")].map((i) => i.value));
  }
  function row(r) {
    const [done, total] = (r.progress || "").split("/").map(Number);
    const progress = total ? el("span", {}, el("progress", {value: done, max: total}), " " + r.progress) : "";
    return el("tr", {"data-run": r.name, "data-phase": r.phase || "Pending"},
      el("th", {scope: "row"}, el("a", {href: "/namespaces/" + encodeURIComponent(NS) + "/runs/" + encodeURIComponent(r.name), text: r.name})),
      el("td", {text: r.workflow || ""}), el("td", {}, phaseBadge(r.phase)), el("td", {}, progress),
      el("td", {text: fmtTime(r.startedAt || r.created)}), el("td", {text: r.duration || ""}),
      el("td", {text: r.trigger || ""}));
  }
  let pending = false;
  function render() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const want = selected();
      const items = [...rows.values()]
        .filter((r) => !want.size || want.has(r.phase || "Pending"))
        .sort((a, b) => (b.created || "").localeCompare(a.created || "") || a.name.localeCompare(b.name));
      const shown = items.slice(0, 500);
      tbody.replaceChildren(...shown.map(row));
      if (!items.length) tbody.append(el("tr", {}, el("td", {colspan: 7, class: "muted", text: "No runs."})));
      count.textContent = items.length > shown.length
        ? "Showing the newest " + shown.length + " of " + items.length + " runs." : items.length + " runs.";
    });
  }
  filter.addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.delete("phase");
    for (const p of selected()) url.searchParams.append("phase", p);
    history.replaceState(null, "", url);
    render();
  });
  live(API + "/live/runs" + (wf ? "?workflow=" + encodeURIComponent(wf) : ""), {
    snapshot: (d) => { rows.clear(); for (const r of d.items) rows.set(r.name, r); render(); },
    run: (d) => { if (d.type === "DELETED") rows.delete(d.run.name); else rows.set(d.run.name, d.run); render(); },
  });
}

// ---------- one run ----------
function pageRun() {
  const runName = body.dataset.run;
  const runApi = API + "/runs/" + encodeURIComponent(runName);
  const runPage = (n) => "/namespaces/" + encodeURIComponent(NS) + "/runs/" + encodeURIComponent(n);
  const stepRows = new Map(); // name -> [row, last JSON]
  // A run gone from the cluster may be in the run archive (where one is configured; its page
  // says so when not): point there instead of retrying a stream that cannot come back.
  function runGone(message) {
    const box = document.getElementById("flash");
    if (!box) return;
    const href = "/namespaces/" + encodeURIComponent(NS) + "/archive/" + encodeURIComponent(runName);
    box.replaceChildren(message + " ", el("a", {id: "archive-link", href: href,
                                                 text: "Look for it in the run archive"}), ".");
    box.hidden = false;
  }
  let graphShape = null;
  let current = null;
  let logs = null; // {step, controller}

  const shapeOf = (detail) => JSON.stringify([detail.steps.map((s) => s.name), detail.edges, detail.finally]);

  let drawnEdges = null; // the edges array of the graph drawn: a change list keeps it
  async function drawGraph(detail) {
    if (detail.edges === drawnEdges) return; // same shape: no string to build per update
    const shape = shapeOf(detail);
    drawnEdges = detail.edges;
    if (shape === graphShape) return;
    graphShape = shape;
    performance.mark("tf:graph-asked");
    const svg = await api("/ui/graph", {method: "POST", json: {
      steps: detail.steps.map((s) => s.name), edges: detail.edges || [], finally: detail.finally || []}});
    performance.mark("tf:graph-answered");
    document.getElementById("graph").innerHTML = svg;
    colourGraph(current);
    performance.mark("tf:graph");
  }

  function colourGraph(detail) {
    if (!detail) return;
    const nodes = document.querySelectorAll("#graph .node");
    const phases = new Map(detail.steps.map((s) => [s.name, s.phase || "Pending"]));
    for (const node of nodes) {
      const phase = phases.get(node.dataset.step) || "Pending";
      if (node.dataset.phase !== phase) {
        node.classList.remove("phase-" + (node.dataset.phase || "Pending"));
        node.classList.add("phase-" + phase);
        node.dataset.phase = phase;
      }
    }
  }

  // Rows as HTML strings (every value escaped): for a 1,000-step run one innerHTML is several
  // times faster than building 10,000 elements one by one.
  function stepRowHtml(s) {
    const attempts = (s.attemptHistory || []).map((a) => "#" + a.attempt + " " + (a.reason || "") +
      (a.exitCode !== null && a.exitCode !== undefined ? " (exit " + a.exitCode + ")" : "") +
      (a.message ? ": " + a.message : "")).join("\n");
    const phase = s.phase || "Pending";
    const outputs = s.outputs === null || s.outputs === undefined ? "" :
      "<details><summary>outputs</summary><pre>" + esc(JSON.stringify(s.outputs, null, 2)) + "</pre></details>";
    // no attempt, no pod: nothing to show yet (the row is replaced when the step starts)
    const logs = s.attempts ? '<button type="button" class="link" data-logs="' + esc(s.name) +
      '" aria-label="logs of ' + esc(s.name) + '">logs</button>' : "";
    return '<tr id="step-' + esc(s.name) + '" data-step="' + esc(s.name) + '" data-phase="' + esc(phase) + '">' +
      '<th scope="row">' + esc(s.name) + (s.finally ? " (finally)" : "") + "</th>" +
      "<td>" + esc(s.type || "") + "</td>" +
      '<td><span class="phase phase-' + esc(phase) + '">' + esc(phase) + "</span></td>" +
      '<td title="' + esc(attempts) + '">' + esc(s.attempts || 0) + "</td>" +
      "<td>" + esc(fmtSeconds(s.durationSeconds)) + "</td>" +
      '<td class="msg">' + esc(s.message || "") + "</td>" +
      "<td>" + outputs + "</td><td>" + logs + "</td></tr>";
  }

  // A big run's table shows at most STEP_ROWS rows until asked for all (laying out 1,000
  // table rows costs the browser about a second; the graph above shows every step anyway):
  // the steps that are doing something (running, failed, retrying...) first, then the rest
  // in graph order, displayed in graph order.
  const STEP_ROWS = 150;
  let showAll = false;
  function shownSteps(all) {
    if (showAll || all.length <= STEP_ROWS) return all;
    const busy = new Set();
    for (const s of all) if (busy.size < STEP_ROWS && !["Pending", "Succeeded"].includes(s.phase)) busy.add(s.name);
    for (const s of all) if (busy.size < STEP_ROWS) busy.add(s.name);
    return all.filter((s) => busy.has(s.name));
  }

  function renderSteps(detail) {
    const tbody = document.querySelector("#steps tbody");
    const steps = shownSteps(detail.steps);
    const more = document.getElementById("steps-more");
    more.hidden = steps.length === detail.steps.length;
    more.textContent = "Show all " + detail.steps.length + " steps (" + steps.length + " shown)";
    const keys = steps.map((s) => JSON.stringify(s));
    const sameSet = stepRows.size === steps.length && steps.every((s) => stepRows.has(s.name));
    if (!sameSet) { // first render (or other rows are shown): all at once
      tbody.innerHTML = steps.map(stepRowHtml).join("");
      stepRows.clear();
      steps.forEach((s, i) => stepRows.set(s.name, [tbody.rows[i], keys[i]]));
      return;
    }
    steps.forEach((s, i) => { // an update: only the rows that changed
      const had = stepRows.get(s.name);
      if (had[1] === keys[i]) return;
      const holder = document.createElement("tbody");
      holder.innerHTML = stepRowHtml(s);
      const fresh = holder.rows[0];
      had[0].replaceWith(fresh);
      stepRows.set(s.name, [fresh, keys[i]]);
    });
  }

  function expandSteps() {
    if (showAll || !current) return;
    showAll = true;
    renderSteps(current);
  }
  document.getElementById("steps-more").addEventListener("click", expandSteps);
  // a graph node links to its row: make sure the row is there
  document.getElementById("graph").addEventListener("click", (ev) => {
    const node = ev.target.closest(".node");
    if (node && !document.getElementById("step-" + node.dataset.step)) expandSteps();
  });
  document.querySelector("#steps tbody").addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-logs]");
    if (button) followLogs(button.dataset.logs);
  });

  function renderSummary(detail) {
    const s = detail.summary || {};
    const badge = document.getElementById("run-phase");
    badge.className = "phase phase-" + (s.phase || "Pending");
    badge.textContent = s.phase || "Pending";
    const dl = document.getElementById("run-summary");
    const pairs = [["Workflow", s.workflow], ["Progress", s.progress], ["Started", fmtTime(s.startedAt)],
      ["Finished", fmtTime(s.finishedAt)], ["Duration", s.duration], ["Trigger", s.trigger], ["Message", s.message]];
    dl.replaceChildren();
    for (const [k, v] of pairs) if (v) dl.append(el("dt", {text: k}), el("dd", {text: v}));
    const terminal = TERMINAL.has(s.phase);
    const cancelling = Boolean(s.cancelRequested);
    document.getElementById("btn-cancel").dataset.state = terminal || cancelling ? "off" : "on";
    document.getElementById("btn-retry").dataset.state =
      s.phase === "Failed" || s.phase === "Cancelled" ? "on" : "off";
    refreshButtons();
  }

  // Events: read once on load (and on Refresh, and when the stream starts over), then live
  // from the run's stream (`event` messages, from the server's one Events watch). Kept by
  // name, the newer resourceVersion winning, so the read and the stream may cross.
  const events = new Map();
  let eventsFrame = 0;
  const newer = (a, b) => Number(a.resourceVersion || 0) >= Number(b.resourceVersion || 0);
  function keepEvent(e) {
    const had = events.get(e.name);
    if (!had || newer(e, had)) events.set(e.name, e);
  }
  function renderEvents() {
    if (eventsFrame) return;
    eventsFrame = requestAnimationFrame(() => {
      eventsFrame = 0;
      const items = [...events.values()].sort((a, b) => String(b.last || "").localeCompare(String(a.last || "")));
      document.querySelector("#events tbody").replaceChildren(...items.slice(0, 200).map((e) =>
        el("tr", {"data-event": e.name}, el("td", {text: fmtTime(e.last || e.first)}), el("td", {text: e.type || ""}),
          el("td", {text: e.reason || ""}), el("td", {text: e.object || ""}), el("td", {class: "msg", text: e.message || ""}),
          el("td", {text: e.count || 1}))));
    });
  }
  function onEvent(d) {
    if (d.type === "DELETED") events.delete(d.event.name); else keepEvent(d.event);
    renderEvents();
  }
  let eventsLoading = false;
  async function loadEvents() {
    if (eventsLoading) return;
    eventsLoading = true;
    try {
      const ev = await api(runApi + "/events");
      for (const e of ev.items) keepEvent(e);
      renderEvents();
    } catch (e) {
      if (e.status === 403) document.querySelector("#events tbody").replaceChildren(
        el("tr", {}, el("td", {colspan: 6, class: "muted", text: e.message})));
    } finally {
      eventsLoading = false;
    }
  }
  document.getElementById("events-refresh").addEventListener("click", () => loadEvents());

  async function loadDeadLetters() {
    const tbody = document.querySelector("#deadletters tbody");
    try {
      const dl = await api(API + "/deadletters?run=" + encodeURIComponent(runName));
      tbody.replaceChildren(...dl.items.map((d) => deadLetterRow(d, false)));
      if (!dl.items.length) tbody.append(el("tr", {}, el("td", {colspan: 6, class: "muted", text: "None."})));
      refreshButtons();
    } catch (e) {
      tbody.replaceChildren(el("tr", {}, el("td", {colspan: 6, class: "muted", text: e.message})));
    }
  }

  async function followLogs(step) {
    if (logs) logs.controller.abort();
    const controller = new AbortController();
    logs = {step, controller};
    const pre = document.getElementById("logs");
    document.getElementById("logs-section").hidden = false;
    document.getElementById("logs-step").textContent = step;
    pre.textContent = "";
    pre.dataset.state = "loading";
    try {
      const answer = await fetch(runApi + "/steps/" + encodeURIComponent(step) + "/logs?follow=1&tail=1000",
        {credentials: "same-origin", signal: controller.signal});
      if (!answer.ok) {
        let message = answer.status + "";
        try { message = (await answer.json()).error.message; } catch (_) { /* keep status */ }
        pre.textContent = message;
        pre.dataset.state = "error";
        logs.retry = answer.status === 404; // no pod yet: try again when the step moves
        return;
      }
      pre.dataset.state = "streaming";
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.append(decoder.decode(value, {stream: true}));
        if (stick) pre.scrollTop = pre.scrollHeight;
      }
      pre.dataset.state = "done";
    } catch (e) {
      if (e.name !== "AbortError") { pre.append("\n[" + e.message + "]"); pre.dataset.state = "error"; }
    }
  }

  // A live update is the run's summary and only the steps that changed since the version this
  // page holds (the server sends the whole detail when the page is not at that version).
  function withChanges(detail, changes) {
    const fresh = new Map(changes.steps.map((s) => [s.name, s]));
    return {...detail, summary: changes.summary, steps: detail.steps.map((s) => fresh.get(s.name) || s)};
  }

  function onDetail(detail) {
    const previous = current;
    current = detail;
    if (!previous) performance.mark("tf:first-state");
    renderSummary(detail);
    renderSteps(detail);
    if (!previous) {
      performance.mark("tf:steps");
      requestAnimationFrame(() => setTimeout(() => performance.mark("tf:steps-painted")));
    }
    drawGraph(detail).catch((e) => flash("Could not draw the graph: " + e.message));
    colourGraph(detail);
    if (!previous) loadEvents();
    if (logs && logs.retry) {
      const step = detail.steps.find((s) => s.name === logs.step);
      const was = previous && previous.steps.find((s) => s.name === logs.step);
      if (step && (!was || was.phase !== step.phase || was.attempts !== step.attempts)) followLogs(logs.step);
    }
    if (previous && TERMINAL.has((detail.summary || {}).phase) && !TERMINAL.has((previous.summary || {}).phase)) {
      loadDeadLetters();
    }
  }

  document.getElementById("btn-cancel").addEventListener("click", async (ev) => {
    ev.target.disabled = true;
    try { await api(runApi + "/cancel", {method: "POST"}); flash(""); } catch (e) { flash(e.message); }
    ev.target.disabled = false;
  });
  document.getElementById("btn-retry").addEventListener("click", async (ev) => {
    ev.target.disabled = true;
    try {
      const created = await api(runApi + "/retry", {method: "POST"});
      location.assign(runPage(created.name));
    } catch (e) { flash(e.message); ev.target.disabled = false; }
  });

  // The page comes with the run's state (the stream's shape, as JSON) and its graph drawn
  // and coloured: show them now, and ask the stream only for what changed since.
  let since = "";
  let starts = 0;
  const first = document.getElementById("run-initial");
  if (first) {
    try {
      const detail = JSON.parse(first.textContent);
      if (document.querySelector("#graph svg")) { graphShape = shapeOf(detail); drawnEdges = detail.edges; }
      onDetail(detail);
      since = (detail.summary || {}).resourceVersion || "";
    } catch (e) { flash("Could not read the run's state: " + e.message); }
  }
  live(API + "/live/runs/" + encodeURIComponent(runName) + (since ? "?rv=" + encodeURIComponent(since) : ""), {
    // each (re)start of the stream after the first may follow a gap: read the Events again
    snapshot: (d) => { if (starts++) loadEvents(); onDetail(d); },
    current: () => { if (starts++) loadEvents(); }, // the run is at the page's version
    event: onEvent,
    run: (d) => {
      if (d.type === "DELETED") runGone("This run was deleted.");
      else if (d.detail) onDetail(d.detail);
      else if (d.changes && current) onDetail(withChanges(current, d.changes));
    },
  }, {path: runApi, then: () => runGone("This run is not in the cluster (deleted, or removed by its workflow's history limits).")});
  loadDeadLetters();
}

// ---------- dead letters ----------
function deadLetterRow(d, withRun) {
  const replay = el("button", {type: "button", "data-needs": "deadletters.replay", hidden: true,
    "data-allowed": String(Boolean(perms.deadletters && perms.deadletters.replay)),
    text: "Replay"});
  replay.addEventListener("click", async () => {
    replay.disabled = true;
    try {
      const out = await api(API + "/deadletters/" + encodeURIComponent(d.id) + "/replay", {method: "POST"});
      location.assign("/namespaces/" + encodeURIComponent(NS) + "/runs/" + encodeURIComponent(out.run.name));
    } catch (e) { flash(e.message); replay.disabled = false; }
  });
  const runLink = (n) => n ? el("a", {href: "/namespaces/" + encodeURIComponent(NS) + "/runs/" + encodeURIComponent(n), text: n}) : "";
  return el("tr", {"data-id": d.id},
    el("td", {text: fmtTime(d.failedAt)}), withRun ? el("td", {}, runLink(d.run)) : null,
    el("td", {text: d.step || ""}), el("td", {class: "msg", text: d.error || ""}), el("td", {text: d.attempts || ""}),
    el("td", {}, runLink(d.replayedAs)), el("td", {}, replay));
}

function pageDeadLetters() {
  const tbody = document.querySelector("#deadletters tbody");
  const more = document.getElementById("more");
  let next = null;
  async function load(before) {
    try {
      const dl = await api(API + "/deadletters?limit=50" + (before ? "&before=" + encodeURIComponent(before) : ""));
      if (!before) tbody.replaceChildren();
      tbody.append(...dl.items.map((d) => deadLetterRow(d, true)));
      if (!tbody.children.length) tbody.append(el("tr", {}, el("td", {colspan: 7, class: "muted", text: "No dead letters."})));
      next = dl.continue;
      more.hidden = !next;
      refreshButtons();
    } catch (e) { flash(e.message); }
  }
  more.addEventListener("click", () => load(next));
  load(null);
}

// ---------- start ----------
document.addEventListener("DOMContentLoaded", () => {
  if (NS) document.cookie = "taskforge_ns=" + encodeURIComponent(NS) + "; path=/; SameSite=Strict";
  const logout = document.getElementById("logout");
  if (logout) logout.addEventListener("click", async () => {
    await api("/api/v1/logout", {method: "POST"}).catch(() => {});
    location.assign("/login");
  });
  const page = body.dataset.page;
  // Permissions and the page's data load side by side: elements made before the answer
  // are updated by applyPermissions, those made after read `perms`.
  if (NS && page !== "login") applyPermissions();
  ({login: pageLogin, workflows: pageWorkflows, workflow: pageWorkflow, runs: pageRuns,
    run: pageRun, deadletters: pageDeadLetters}[page] || (() => {}))();
});
