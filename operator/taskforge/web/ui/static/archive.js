// Taskforge web UI, the run archive's pages: plain browser JavaScript, no build step.
// Self-contained (its own small helpers) so that it does not depend on app.js's internals.
// It reads /api/v1/namespaces/{ns}/archive/..., which checks RBAC as the caller.
"use strict";

(() => {
  const page = document.body.dataset.page;
  if (page !== "archive" && page !== "archived-run") return;
  const NS = document.body.dataset.ns || "";
  const BASE = "/api/v1/namespaces/" + encodeURIComponent(NS) + "/archive/runs";

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

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function phase(p) {
    return el("span", {class: "phase phase-" + (p || "Pending"), text: p || "?"});
  }

  function flash(message) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  async function get(path) {
    const answer = await fetch(path, {credentials: "same-origin"});
    if (answer.status === 401) {
      location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
      throw new Error("not logged in");
    }
    if (!answer.ok) {
      let message = answer.status + " " + answer.statusText;
      try { message = ((await answer.json()).error || {}).message || message; } catch (_) { /* text */ }
      throw new Error(message);
    }
    const type = answer.headers.get("Content-Type") || "";
    return type.includes("json") ? answer.json() : answer.text();
  }

  function runLink(run) {
    const href = "/namespaces/" + encodeURIComponent(NS) + "/archive/" +
      encodeURIComponent(run.name) + "?uid=" + encodeURIComponent(run.uid);
    return el("a", {href: href, text: run.name});
  }

  function listPage() {
    const tbody = document.querySelector("#archived-runs tbody");
    const more = document.getElementById("archive-more");
    const query = new URLSearchParams({limit: "50"});
    const phases = document.body.dataset.phases;
    if (phases) query.set("phase", phases);
    if (document.body.dataset.workflow) query.set("workflow", document.body.dataset.workflow);
    let next = null;
    async function load(token) {
      const q = new URLSearchParams(query);
      if (token) q.set("continue", token);
      try {
        const answer = await get(BASE + "?" + q.toString());
        if (!token) tbody.replaceChildren();
        for (const r of answer.items) {
          tbody.append(el("tr", {},
            el("th", {scope: "row"}, runLink(r)), el("td", {text: r.workflow || "(inline)"}),
            el("td", {}, phase(r.phase)), el("td", {text: when(r.startedAt)}),
            el("td", {text: when(r.finishedAt)}), el("td", {text: r.trigger || ""}),
            el("td", {class: "msg", text: r.message || ""})));
        }
        if (!tbody.children.length) {
          tbody.append(el("tr", {}, el("td", {colspan: 7, class: "muted", text: "No archived runs."})));
        }
        next = answer.continue;
        more.hidden = !next;
      } catch (e) {
        tbody.replaceChildren(el("tr", {}, el("td", {colspan: 7, class: "muted", text: "—"})));
        flash(e.message);
      }
    }
    more.addEventListener("click", () => load(next));
    load(null);
  }

  async function showLog(name, uid, step, attempt) {
    const box = document.getElementById("archived-log");
    const text = document.getElementById("archived-log-text");
    document.getElementById("archived-log-title").textContent =
      "Log of " + step + ", attempt " + attempt + " (from the run archive)";
    box.hidden = false;
    text.textContent = "Loading…";
    try {
      const q = new URLSearchParams({attempt: String(attempt), uid: uid});
      text.textContent = await get(BASE + "/" + encodeURIComponent(name) + "/steps/" +
                                   encodeURIComponent(step) + "/logs?" + q.toString());
    } catch (e) {
      text.textContent = "";
      flash(e.message);
    }
    text.focus();
  }

  async function runPage() {
    const name = document.body.dataset.run;
    const uid = document.body.dataset.uid;
    const tbody = document.querySelector("#archived-attempts tbody");
    let run;
    try {
      run = await get(BASE + "/" + encodeURIComponent(name) + (uid ? "?uid=" + encodeURIComponent(uid) : ""));
    } catch (e) {
      tbody.replaceChildren();
      flash(e.message);
      return;
    }
    document.getElementById("archived-phase").replaceChildren(phase(run.phase));
    document.getElementById("archived-at").textContent = " (archived " + when(run.archivedAt) + ")";
    const summary = document.getElementById("archived-summary");
    const rows = [["Workflow", run.workflow], ["UID", run.uid], ["Trigger", run.trigger],
      ["Creator", run.creator], ["Started", when(run.startedAt)], ["Finished", when(run.finishedAt)],
      ["Message", run.message], ["Params", run.params && JSON.stringify(run.params)],
      ["Outputs", run.outputs && JSON.stringify(run.outputs)]];
    for (const [k, v] of rows) {
      if (v === null || v === undefined || v === "") continue;
      summary.append(el("dt", {text: k}), el("dd", {text: v}));
    }
    const others = (run.sameName || []).filter((r) => r.uid !== run.uid);
    if (others.length) {
      document.getElementById("same-name").hidden = false;
      document.getElementById("same-name-list").replaceChildren(...others.map((r) =>
        el("li", {}, runLink({name: run.name, uid: r.uid}), " ", phase(r.phase),
           " finished " + when(r.finishedAt))));
    }
    tbody.replaceChildren();
    for (const a of run.attempts || []) {
      const button = el("button", {type: "button", class: "link", text: "Log"});
      button.addEventListener("click", () => showLog(run.name, run.uid, a.step, a.attempt));
      tbody.append(el("tr", {},
        el("th", {scope: "row", text: a.step}), el("td", {text: a.attempt}),
        el("td", {text: a.reason || ""}), el("td", {text: a.exitCode === null ? "" : a.exitCode}),
        el("td", {text: when(a.startedAt)}), el("td", {text: when(a.finishedAt)}),
        el("td", {class: "msg", text: a.message || ""}),
        el("td", {}, a.logNote && !a.logSize ? el("span", {class: "muted", text: a.logNote}) : button)));
    }
    if (!tbody.children.length) {
      tbody.append(el("tr", {}, el("td", {colspan: 8, class: "muted", text: "No attempts archived."})));
    }
  }

  document.addEventListener("DOMContentLoaded", () => (page === "archive" ? listPage : runPage)());
})();
