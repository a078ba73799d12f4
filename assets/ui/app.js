// Quarry web view: a page over the service's own API. The key lives in this tab's
// sessionStorage only and travels as a header; it is never put in a URL, a cookie or a log.
// Every value from the API is set as text (textContent), never parsed as HTML.
"use strict";

(function () {
  const KEY = "quarry.key";
  const KIND = "quarry.kind"; // "org" or "root"
  const ORG = "quarry.org"; // the org slug the pages show (an org key's own; the root key's pick)
  const SCOPES = "quarry.scopes"; // an org key's scopes, as whoami answered (actions shown by them)
  const LIVE = ["QUEUED", "PENDING", "RUNNING"];
  const TERMINAL = ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "ORPHANED", "REFUSED"];
  const STATUSES = ["QUEUED", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "ORPHANED"];
  const TRIGGERS = ["api", "rerun", "schedule", "backfill"];
  const SVG = "http://www.w3.org/2000/svg";

  const session = {
    key: () => sessionStorage.getItem(KEY),
    kind: () => sessionStorage.getItem(KIND) || "org",
    org: () => sessionStorage.getItem(ORG),
    isRoot: () => sessionStorage.getItem(KIND) === "root",
    // Whether the signed-in key may do what `scope` allows (the root key may do everything).
    can: (scope) => sessionStorage.getItem(KIND) === "root" ||
      JSON.parse(sessionStorage.getItem(SCOPES) || "[]").includes(scope),
    clear: () => { for (const k of [KEY, KIND, ORG, SCOPES]) sessionStorage.removeItem(k); },
  };

  let refreshTimer = null;
  // Counts the pages routed to: a read that answers after the page changed (a slow list, the
  // user already on a run's page) is dropped, so it never draws over the newer page.
  let routed = 0;
  class Stale extends Error { constructor() { super(""); } }
  // The run page's open event stream (see followRun), closed when the page changes.
  let liveStream = null;
  // A test alert just sent from the alerts page: the page refreshes until it shows (15 looks).
  let awaited = null;

  // ---- DOM helpers ---------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  }
  const view = () => document.getElementById("view");
  function show(...nodes) { view().replaceChildren(...nodes); }
  function statusPill(status) { return h("span", { class: "status " + (status || ""), text: status || "-" }); }
  function when(ts) { return ts ? ts.replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", "") : "-"; }
  function ms(v) {
    if (v === null || v === undefined) return "-";
    if (v < 1000) return Math.round(v) + " ms";
    if (v < 120000) return (v / 1000).toFixed(1) + " s";
    return (v / 60000).toFixed(1) + " min";
  }
  // A button that runs `action` once (disabled meanwhile; an error shows and enables it
  // again). With `confirm` (destructive actions) it asks once more: the first click turns it
  // into "Confirm …", the second runs `action`.
  function actionButton(id, label, action, { confirm = false, cls = null } = {}) {
    const button = h("button", { type: "button", id, class: confirm ? "danger" : cls, text: label });
    let armed = !confirm;
    button.addEventListener("click", async () => {
      if (!armed) { armed = true; button.textContent = "Confirm: " + label.toLowerCase(); button.classList.add("armed"); return; }
      button.disabled = true;
      try { await action(); } catch (e) { showError(e.message); button.disabled = false; }
    });
    return button;
  }
  function confirmButton(id, label, action) { return actionButton(id, label, action, { confirm: true }); }
  // One `label: value` line of a fields card (`-` when there is no value).
  function fieldRow(label, value) {
    return [h("dt", { text: label }), h("dd", {}, value === null || value === undefined || value === "" ? "-" : value)];
  }
  function orgPath(org) { return encodeURIComponent(org); }
  function pipelinePath(id) { return id.split("/").map(encodeURIComponent).join("/"); }
  function compact(value) { return value && Object.keys(value).length ? JSON.stringify(value) : "-"; }

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message;
    box.hidden = !message;
  }

  // ---- API ---------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body, requestId) {
      const err = (body && body.error) || {};
      const details = Object.entries(err)
        .filter(([k]) => k !== "code" && k !== "message")
        .map(([k, v]) => k + ": " + (typeof v === "string" ? v : JSON.stringify(v)));
      super(status + " " + (err.message || "Unexpected answer") +
        (details.length ? " (" + details.join("; ") + ")" : "") +
        (requestId ? " [request id " + requestId + "]" : ""));
      this.status = status;
    }
  }

  // What every call to the service sends: the key as its header, nothing cached, no cookie,
  // no referrer.
  function requestInit(accept, options) {
    const headers = { Accept: accept };
    const key = session.key();
    if (key) headers[session.isRoot() ? "X-CA-Root-Key" : "X-API-Key"] = key;
    return Object.assign({ headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" }, options || {});
  }

  async function api(path, options) {
    const init = requestInit("application/json", options);
    if (init.body) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(init.body); }
    const page = routed;
    const response = await fetch(path, init);
    const text = await response.text();
    if (page !== routed && (init.method || "GET") === "GET") throw new Stale();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!response.ok) {
      const error = new ApiError(response.status, body, (body && body.request_id) || response.headers.get("X-Request-Id"));
      if (response.status === 401) { session.clear(); }
      throw error;
    }
    return { body, headers: response.headers };
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    const text = q.toString();
    return text ? "?" + text : "";
  }

  // ---- routing -----------------------------------------------------------------------
  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/runs";
    const [path, search] = raw.split("?");
    return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(search || "") };
  }

  function nav() {
    const items = [["runs", "Runs"], ["stats", "Stats"], ["quota", "Quota"], ["catalog", "Catalog"], ["schedules", "Schedules"], ["alerts", "Alerts"]];
    if (session.isRoot()) items.push(["orgs", "Orgs"], ["all-runs", "All runs"]);
    const current = parseHash().parts[0];
    const el = document.getElementById("nav");
    el.replaceChildren(...items.map(([id, label]) =>
      h("a", { href: "#/" + id, id: "nav-" + id, class: current === id ? "active" : null, text: label })));
    el.hidden = false;
    const who = session.isRoot() ? "root" + (session.org() ? " · " + session.org() : "") : session.org();
    document.getElementById("who").textContent = who || "";
    document.getElementById("signout").hidden = false;
  }

  async function route() {
    routed += 1;
    if (refreshTimer) { clearTimeout(refreshTimer); refreshTimer = null; }
    if (liveStream) { liveStream.abort(); liveStream = null; }
    showError("");
    if (!session.key()) { return signIn(); }
    nav();
    const { parts, params } = parseHash();
    try {
      switch (parts[0]) {
        case "runs": return parts[1] ? await runPage(parts[1]) : await runsPage(params, false);
        case "backfills": return await backfillPage(parts[1]);
        case "all-runs": return await runsPage(params, true);
        case "stats": return await statsPage(params.get("by"));
        case "quota": return await quotaPage();
        case "catalog": return await catalogPage();
        case "schedules": return await schedulesPage();
        case "alerts": return await alertsPage();
        case "orgs": return await orgsPage();
        default: location.hash = "#/runs";
      }
    } catch (e) {
      if (e instanceof Stale) return;
      if (e.status === 401) { return signIn(e.message); }
      showError(e.message);
    }
  }

  function needOrg() {
    if (session.org()) return session.org();
    show(h("div", { class: "card empty" }, "Pick an org on the ", h("a", { href: "#/orgs", text: "Orgs" }), " page first."));
    return null;
  }

  // ---- sign in -----------------------------------------------------------------------
  function signIn(message) {
    document.getElementById("nav").hidden = true;
    document.getElementById("signout").hidden = true;
    document.getElementById("who").textContent = "";
    showError(message || "");
    const input = h("input", { type: "password", id: "key", name: "key", autocomplete: "off", spellcheck: "false", required: true });
    const kindOrg = h("input", { type: "radio", name: "kind", value: "org", id: "kind-org", checked: true });
    const kindRoot = h("input", { type: "radio", name: "kind", value: "root", id: "kind-root" });
    const form = h("form", { class: "card signin", id: "signin", method: "post", autocomplete: "off" },
      h("h1", { text: "Sign in to Quarry" }),
      h("label", { for: "key", text: "API key" }), input,
      h("div", { class: "kinds" },
        h("label", {}, kindOrg, " Org key (X-API-Key)"),
        h("label", {}, kindRoot, " Root key (admins)")),
      h("button", { type: "submit", class: "primary", id: "signin-submit", text: "Sign in" }),
      h("p", { class: "hint", text: "The key stays in this tab only (sessionStorage) and is sent as a header. Closing the tab signs you out." }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      input.value = "";
      if (!key) return;
      sessionStorage.setItem(KEY, key);
      sessionStorage.setItem(KIND, kindRoot.checked ? "root" : "org");
      try {
        const me = (await api("/api/v1/whoami")).body;
        if (me.principal === "org_key") {
          sessionStorage.setItem(ORG, me.org_slug);
          sessionStorage.setItem(SCOPES, JSON.stringify(me.scopes || []));
        } else sessionStorage.removeItem(ORG);
        // One render: a changed hash renders through hashchange, an unchanged one here.
        const target = me.principal === "root" ? "#/orgs" : "#/runs";
        if (location.hash === target) route();
        else location.hash = target;
      } catch (e) {
        session.clear();
        showError(e.message);
      }
    });
    show(form);
    input.focus();
  }

  // ---- runs --------------------------------------------------------------------------
  async function catalog() { return (await api("/api/v1/pipelines")).body.pipelines || []; }

  function select(name, label, options, current) {
    return h("label", {}, label, h("select", { name, id: "filter-" + name },
      h("option", { value: "", text: "any" }),
      options.map((o) => h("option", { value: o, text: o, selected: o === current }))));
  }

  async function runsPage(params, all) {
    const org = all ? null : needOrg();
    if (!all && !org) return;
    const pipelines = (await catalog()).map((p) => p.id);
    const filters = {
      status: params.get("status") || "", pipeline_id: params.get("pipeline_id") || "",
      trigger: params.get("trigger") || "", since: params.get("since") || "", until: params.get("until") || "",
      org_slug: all ? params.get("org_slug") || "" : "", page_token: params.get("page_token") || "", limit: params.get("limit") || "",
    };
    const path = all ? "/api/v1/admin/runs" : "/api/v1/pipelines/" + encodeURIComponent(org) + "/runs";
    const { body } = await api(path + query(Object.assign({}, filters, { limit: filters.limit || "25" })));
    // ISO dates (UTC), like every date on the page: not the browser's locale picker.
    const dateInput = (name, value) => h("input", { type: "text", name, id: "filter-" + name, value: value.slice(0, 10),
      placeholder: "YYYY-MM-DD", pattern: "\\d{4}-\\d{2}-\\d{2}", size: 10 });
    const sinceInput = dateInput("since", filters.since);
    const untilInput = dateInput("until", filters.until);
    const form = h("form", { class: "filters", id: "run-filters" },
      all ? h("label", {}, "Org", h("input", { name: "org_slug", id: "filter-org_slug", value: filters.org_slug, size: 12 })) : null,
      select("status", "Status", STATUSES, filters.status),
      select("pipeline_id", "Pipeline", pipelines, filters.pipeline_id),
      select("trigger", "Trigger", TRIGGERS, filters.trigger),
      h("label", {}, "Since (UTC)", sinceInput), h("label", {}, "Until (UTC)", untilInput),
      h("button", { type: "submit", text: "Apply" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const next = {};
      for (const [k, v] of data.entries()) {
        if (!v) continue;
        next[k] = (k === "since" || k === "until") ? v + "T00:00:00Z" : v;
      }
      location.hash = "#/" + (all ? "all-runs" : "runs") + query(next);
    });
    const runs = body.runs || [];
    const rows = runs.map((r) => h("tr", { class: "run-row" },
      all ? h("td", { text: r.org_slug }) : null,
      h("td", { class: "mono" }, h("a", { href: "#/runs/" + r.run_id, class: "run-link", text: r.run_id,
        onclick: all ? () => sessionStorage.setItem(ORG, r.org_slug) : null })),
      h("td", { text: r.pipeline_id }), h("td", {}, statusPill(r.status)), h("td", { text: r.trigger || "-" }),
      h("td", { class: "mono params", text: compact(r.parameters) }),
      h("td", { text: when(r.created_at) }), h("td", { text: ms(r.duration_ms) }),
      h("td", { text: r.error_class || "" })));
    const table = h("table", { id: "runs" },
      h("thead", {}, h("tr", {}, all ? h("th", { text: "Org" }) : null,
        ["Run", "Pipeline", "Status", "Trigger", "Parameters", "Created (UTC)", "Duration", "Error"].map((t) => h("th", { text: t })))),
      h("tbody", {}, rows));
    const pager = h("div", { class: "pager" });
    if (filters.page_token) {
      pager.append(h("button", { type: "button", id: "first-page", text: "First page",
        onclick: () => { const p = Object.assign({}, filters, { page_token: "" }); location.hash = "#/" + (all ? "all-runs" : "runs") + query(p); } }));
    }
    if (body.next_page_token) {
      pager.append(h("button", { type: "button", id: "next-page", text: "Next page",
        onclick: () => { const p = Object.assign({}, filters, { page_token: body.next_page_token }); location.hash = "#/" + (all ? "all-runs" : "runs") + query(p); } }));
    }
    pager.append(h("span", { class: "hint", text: runs.length + " run(s) on this page" }));
    // While a run on the page is live, the page looks again every 5 s (one request); never
    // otherwise.
    const live = runs.some((r) => LIVE.includes(r.status));
    if (live) pager.append(h("span", { class: "hint", id: "runs-live", text: " · refreshing every 5 s while runs are live" }));
    if (live) refreshTimer = setTimeout(route, 5000);
    show(h("h1", { text: all ? "Runs of every org" : "Runs of " + org }), form,
      runs.length ? table : h("div", { class: "card empty", id: "no-runs", text: "No run matches these filters in the window (default: the last 7 days)." }),
      pager);
  }

  async function runPage(runId) {
    const org = needOrg();
    if (!org) return;
    const base = "/api/v1/pipelines/" + encodeURIComponent(org) + "/runs/" + encodeURIComponent(runId);
    const [run, steps, pipelines] = await Promise.all([api(base), api(base + "/steps"), catalog()]);
    const declared = (pipelines.find((p) => p.id === run.body.pipeline_id) || {}).steps || [];
    renderRun(base, run.body, steps.body.steps || [], declared, null);
    if (!TERMINAL.includes(run.body.status)) followRun(base, declared);
  }

  // The run's changes as the service pushes them (its Server-Sent Events, read with fetch so
  // the key goes in a header): each event re-draws the page; at the run's end the stream
  // closes. Where no stream can be had, or it breaks, the page reloads every 2 s instead.
  async function followRun(base, declared) {
    const stream = new AbortController();
    liveStream = stream;
    try {
      const response = await fetch(base + "/events", requestInit("text/event-stream", { signal: stream.signal }));
      if (!response.ok || !response.body) throw new Error("no stream: " + response.status);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const data = buffer.slice(0, end).split("\n").find((l) => l.startsWith("data: "));
          buffer = buffer.slice(end + 2);
          if (!data || liveStream !== stream) continue;
          const event = JSON.parse(data.slice(6));
          renderRun(base, event.run, event.steps || [], declared, "live");
          if (TERMINAL.includes(event.run.status)) { liveStream = null; return; }
        }
      }
    } catch (_) {
      if (stream.signal.aborted) return;
    }
    if (liveStream === stream) {
      liveStream = null;
      refreshTimer = setTimeout(route, 2000);
    }
  }

  // `how`: "live" while the service pushes the run's changes, null on a plain load.
  function renderRun(base, r, attempts, declared, how) {
    // A run with a step attempt is running, even while its RUNNING event is not readable yet.
    if (r.status === "PENDING" && attempts.length) r.status = "RUNNING";
    // Each step's latest attempt colours its node.
    const states = {};
    for (const a of attempts) states[a.step_id] = a.status;
    const actions = h("div", { class: "actions", id: "run-actions" });
    if (session.can("pipelines:run") && LIVE.includes(r.status)) {
      actions.append(confirmButton("cancel-run", "Cancel run", async () => {
        await api(base + "/cancel", { method: "POST", body: {} });
        route();
      }));
    }
    if (session.can("pipelines:run") && ["FAILED", "CANCELLED", "TIMED_OUT", "ORPHANED"].includes(r.status)) {
      const params = h("textarea", { id: "rerun-parameters", rows: 2, cols: 60, spellcheck: "false" });
      params.value = JSON.stringify(r.parameters || {});
      const form = h("form", { class: "action-form", id: "rerun-form" },
        h("label", {}, "Parameters (JSON; the run's own by default)", params),
        h("button", { type: "submit", class: "primary", id: "rerun-submit", text: "Re-run from its failed steps" }));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const parameters = JSON.parse(params.value || "{}");
          const next = (await api(base + "/rerun", { method: "POST", body: { parameters } })).body;
          location.hash = "#/runs/" + next.run_id;
        } catch (e) { showError(e instanceof SyntaxError ? "Parameters: not JSON (" + e.message + ")" : e.message); }
      });
      actions.append(form);
    }
    const fields = h("dl", { class: "fields card", id: "run-fields" },
      fieldRow("Run", h("span", { class: "mono", text: r.run_id })),
      fieldRow("Pipeline", r.pipeline_id), fieldRow("Status", statusPill(r.status)),
      fieldRow("Trigger", r.trigger), fieldRow("Triggered by", r.triggered_by),
      fieldRow("Parameters", h("span", { class: "mono", text: JSON.stringify(r.parameters) })),
      fieldRow("Created", when(r.created_at)), fieldRow("Started", when(r.started_at)), fieldRow("Ended", when(r.ended_at)),
      fieldRow("Duration", ms(r.duration_ms)), fieldRow("Queued", r.queued_secs !== null && r.queued_secs !== undefined ? r.queued_secs.toFixed(1) + " s" : null),
      fieldRow("Billed", r.bytes_billed === null || r.bytes_billed === undefined ? null : bytes(r.bytes_billed) + " (" + usd(r.estimated_cost_usd) + ")"),
      fieldRow("Error", r.error_summary ? (r.error_class ? r.error_class + ": " : "") + r.error_summary : null),
      fieldRow("Re-run of", r.rerun_of ? h("a", { href: "#/runs/" + r.rerun_of, text: r.rerun_of }) : null),
      fieldRow("Schedule", r.schedule_id), fieldRow("Logical time", when(r.logical_time)), fieldRow("Backfill", r.backfill_id));
    const stepRows = attempts.map((a) => h("tr", { class: "step-row" },
      h("td", { class: "mono", text: a.step_id }), h("td", { text: a.attempt }), h("td", {}, statusPill(a.status)),
      h("td", { text: when(a.started_at) }), h("td", { text: ms(a.duration_ms) }),
      h("td", { text: a.rows_affected === null || a.rows_affected === undefined ? "-" : a.rows_affected }),
      h("td", { text: a.error_summary || "" })));
    const live = !TERMINAL.includes(r.status);
    show(h("h1", { text: "Run " + r.run_id.slice(0, 8) + " · " + r.pipeline_id }),
      h("p", {}, h("a", { href: "#/runs", text: "← all runs" }), live ? h("span", { class: "hint", id: "run-live", text: how === "live" ? "  · live" : "  · following" }) : null),
      actions,
      declared.length ? graph(declared, states, "run-graph") : h("div", { class: "empty", text: "The pipeline is no longer in the catalog." }),
      fields,
      h("h2", { text: "Steps" }),
      attempts.length ? timeline(attempts, r) : h("div", { class: "card empty", text: "No step has started." }),
      h("table", { id: "steps" },
        h("thead", {}, h("tr", {}, ["Step", "Attempt", "Status", "Started (UTC)", "Duration", "Rows", "Error"].map((t) => h("th", { text: t })))),
        h("tbody", {}, stepRows)));
  }

  // Each step attempt as a bar from its start to its end, on the run's time axis.
  function timeline(attempts, run) {
    const t = (x) => (x ? Date.parse(x) : null);
    const starts = attempts.map((a) => t(a.started_at)).filter((x) => x !== null);
    const origin = Math.min(...starts, t(run.started_at) || Infinity);
    const now = Date.now();
    const ends = attempts.map((a) => t(a.ended_at) || now);
    const span = Math.max(1, Math.max(...ends) - origin);
    const labelW = 190, width = 900, rowH = 26, chartW = width - labelW - 80;
    const svg = s("svg", { id: "timeline", class: "card", width: "100%", viewBox: "0 0 " + width + " " + (attempts.length * rowH + 30), role: "img", "aria-label": "Step timeline" });
    for (let i = 0; i <= 4; i++) {
      const x = labelW + (chartW * i) / 4;
      svg.append(s("line", { class: "grid", x1: x, x2: x, y1: 0, y2: attempts.length * rowH }),
        s("text", { x, y: attempts.length * rowH + 16, "text-anchor": "middle" }, ms((span * i) / 4)));
    }
    attempts.forEach((a, i) => {
      const start = t(a.started_at) || origin;
      const end = t(a.ended_at) || now;
      const x = labelW + ((start - origin) / span) * chartW;
      const w = Math.max(2, ((end - start) / span) * chartW);
      const y = i * rowH + 5;
      const known = ["SUCCEEDED", "REUSED", "FAILED", "TIMED_OUT", "INTERRUPTED", "RUNNING"].includes(a.status);
      svg.append(
        s("text", { x: 4, y: y + 12 }, a.step_id + " #" + a.attempt),
        s("rect", { class: "bar " + (known ? a.status : "other"), x, y, width: w, height: rowH - 10, rx: 3 },
          s("title", {}, a.step_id + " attempt " + a.attempt + ": " + a.status + ", " + ms(a.duration_ms) + (a.error_summary ? " — " + a.error_summary : ""))),
        s("text", { x: x + w + 6, y: y + 12 }, ms(a.duration_ms)));
    });
    return svg;
  }

  // The pipeline's steps as a graph: a column per depth (the longest chain of dependencies
  // before a step), an edge from each dependency; `states` (step id -> status) colours the
  // nodes of a run, and a step without a state reads "not started".
  function graph(steps, states, id) {
    const byId = Object.fromEntries(steps.map((st) => [st.id, st]));
    const depth = {};
    const depthOf = (sid, seen = new Set()) => {
      if (depth[sid] !== undefined) return depth[sid];
      if (seen.has(sid)) return 0;
      seen.add(sid);
      const deps = (byId[sid] && byId[sid].depends_on) || [];
      depth[sid] = deps.length ? 1 + Math.max(...deps.map((d) => depthOf(d, seen))) : 0;
      return depth[sid];
    };
    steps.forEach((st) => depthOf(st.id));
    const columns = [];
    steps.forEach((st) => { (columns[depth[st.id]] = columns[depth[st.id]] || []).push(st.id); });
    const nodeW = 170, nodeH = 40, gapX = 60, gapY = 18, pad = 10;
    const rows = Math.max(...columns.map((c) => c.length));
    const width = pad * 2 + columns.length * nodeW + (columns.length - 1) * gapX;
    const height = pad * 2 + rows * nodeH + (rows - 1) * gapY;
    const at = {};
    columns.forEach((col, x) => col.forEach((sid, y) => {
      const top = pad + y * (nodeH + gapY) + ((rows - col.length) * (nodeH + gapY)) / 2;
      at[sid] = { x: pad + x * (nodeW + gapX), y: top };
    }));
    const svg = s("svg", { id, class: "card dag", width: Math.min(width, 900), viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "Pipeline graph" });
    for (const st of steps) {
      for (const dep of st.depends_on || []) {
        if (!at[dep]) continue;
        const a = at[dep], b = at[st.id];
        const x1 = a.x + nodeW, y1 = a.y + nodeH / 2, x2 = b.x, y2 = b.y + nodeH / 2;
        svg.append(s("path", { class: "edge", "data-from": dep, "data-to": st.id,
          d: "M" + x1 + "," + y1 + " C" + (x1 + gapX / 2) + "," + y1 + " " + (x2 - gapX / 2) + "," + y2 + " " + x2 + "," + y2 }));
      }
    }
    for (const st of steps) {
      const state = states ? states[st.id] || "NOT_STARTED" : "DECLARED";
      const p = at[st.id];
      svg.append(s("g", { class: "node " + state, "data-step": st.id, "data-state": state },
        s("rect", { x: p.x, y: p.y, width: nodeW, height: nodeH, rx: 6 }),
        s("text", { x: p.x + 10, y: p.y + 17, class: "name" }, st.id.length > 20 ? st.id.slice(0, 19) + "…" : st.id),
        s("text", { x: p.x + 10, y: p.y + 32, class: "sub" }, states ? state.replace("_", " ").toLowerCase() : st.kind),
        s("title", {}, st.id + " (" + st.kind + ")" + (states ? ": " + state : ""))));
    }
    return svg;
  }

  // A form for one value per declared parameter: DATE as ISO text (YYYY-MM-DD, like the rest of
  // the page), INT64 as a number, BOOL as a choice, STRING as text; required ones marked.
  function parameterInputs(decls, prefix, values) {
    return decls.map((d) => {
      const name = prefix + d.name;
      const given = values && values[d.name] !== undefined ? values[d.name] : d.default;
      let input;
      if (d.type === "BOOL") {
        input = h("select", { name, id: name },
          h("option", { value: "", text: "(unset)" }),
          h("option", { value: "true", text: "true", selected: given === true }),
          h("option", { value: "false", text: "false", selected: given === false }));
      } else {
        input = h("input", { name, id: name, type: d.type === "INT64" ? "number" : "text",
          placeholder: d.type === "DATE" ? "YYYY-MM-DD" : d.type.toLowerCase(),
          pattern: d.type === "DATE" ? "\\d{4}-\\d{2}-\\d{2}" : null,
          value: given === undefined || given === null ? "" : String(given), required: d.required });
      }
      return h("label", {}, d.name + (d.required ? " *" : "") + " (" + d.type + ")", input);
    });
  }
  function parameterValues(form, decls, prefix) {
    const out = {};
    for (const d of decls) {
      const raw = form.elements[prefix + d.name].value.trim();
      if (raw === "") continue;
      out[d.name] = d.type === "INT64" ? Number(raw) : d.type === "BOOL" ? raw === "true" : raw;
    }
    return out;
  }

  function triggerForm(org, p) {
    const form = h("form", { class: "filters action-form trigger-form", "data-pipeline": p.id },
      parameterInputs(p.parameters || [], "param-"),
      h("label", {}, "When busy", h("select", { name: "when_busy" },
        h("option", { value: "refuse", text: "refuse (429)" }), h("option", { value: "queue", text: "wait in the queue" }))),
      h("button", { type: "submit", class: "primary trigger-submit", text: "Trigger" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = { parameters: parameterValues(form, p.parameters || [], "param-"), when_busy: form.elements.when_busy.value };
        const run = (await api("/api/v1/pipelines/run/" + orgPath(org) + "/" + pipelinePath(p.id), { method: "POST", body })).body;
        location.hash = "#/runs/" + run.run_id;
      } catch (e) { showError(e.message); }
    });
    return form;
  }

  function backfillForm(org, p) {
    const dates = (p.parameters || []).filter((d) => d.type === "DATE");
    const others = (p.parameters || []).filter((d) => d.type !== "DATE");
    const form = h("form", { class: "filters action-form backfill-form", "data-pipeline": p.id },
      h("label", {}, "Day parameter", h("select", { name: "parameter" }, dates.map((d) => h("option", { value: d.name, text: d.name })))),
      h("label", {}, "From", h("input", { name: "from", type: "text", placeholder: "YYYY-MM-DD", required: true, size: 10 })),
      h("label", {}, "To", h("input", { name: "to", type: "text", placeholder: "YYYY-MM-DD", required: true, size: 10 })),
      h("label", {}, "At once", h("input", { name: "max_parallel", type: "number", min: 1, value: 1, size: 3 })),
      parameterInputs(others, "bf-"),
      h("button", { type: "submit", class: "backfill-submit", text: "Start backfill" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const body = { pipeline_id: p.id, parameter: form.elements.parameter.value, from: form.elements.from.value.trim(),
          to: form.elements.to.value.trim(), max_parallel: Number(form.elements.max_parallel.value || 1),
          parameters: parameterValues(form, others, "bf-") };
        const started = (await api("/api/v1/backfills/" + orgPath(org), { method: "POST", body })).body;
        location.hash = "#/backfills/" + started.backfill_id;
      } catch (e) { showError(e.message); }
    });
    return form;
  }

  async function backfillPage(id) {
    const org = needOrg();
    if (!org) return;
    const base = "/api/v1/backfills/" + orgPath(org) + "/" + encodeURIComponent(id);
    const b = (await api(base)).body;
    const progress = Object.entries(b.progress || {}).map(([k, v]) => k + ": " + v).join(", ");
    const live = b.status === "ACTIVE";
    const actions = h("div", { class: "actions" });
    if (live && session.can("schedules:write")) {
      actions.append(confirmButton("cancel-backfill", "Cancel backfill", async () => {
        await api(base + "/cancel", { method: "POST", body: {} });
        route();
      }));
    }
    const byDay = Object.fromEntries((b.runs || []).map((r) => [r.day, r]));
    const days = [];
    for (let d = new Date(b.from + "T00:00:00Z"); d <= new Date(b.to + "T00:00:00Z"); d = new Date(d.getTime() + 86400000)) days.push(d.toISOString().slice(0, 10));
    show(h("h1", { text: "Backfill " + b.backfill_id.slice(0, 8) + " · " + b.pipeline_id }),
      h("p", {}, h("a", { href: "#/catalog", text: "← catalog" }), live ? h("span", { class: "hint", text: "  · refreshing every 3 s while it is active" }) : null),
      actions,
      h("dl", { class: "fields card", id: "backfill-fields" },
        fieldRow("Backfill", h("span", { class: "mono", text: b.backfill_id })), fieldRow("Pipeline", b.pipeline_id),
        fieldRow("Status", statusPill(b.status)), fieldRow("Days", b.from + " → " + b.to + " (" + b.days + ", " + b.parameter + ")"),
        fieldRow("At once", b.max_parallel), fieldRow("Progress", progress)),
      h("table", { id: "backfill-days" },
        h("thead", {}, h("tr", {}, ["Day", "Run", "Status"].map((t) => h("th", { text: t })))),
        h("tbody", {}, days.map((day) => {
          const r = byDay[day];
          return h("tr", { class: "backfill-day" }, h("td", { class: "mono", text: day }),
            h("td", { class: "mono" }, r ? h("a", { href: "#/runs/" + r.run_id, text: r.run_id.slice(0, 8) }) : "-"),
            h("td", {}, statusPill(r ? r.status : "WAITING")));
        }))));
    if (live) refreshTimer = setTimeout(route, 3000);
  }

  // ---- stats -------------------------------------------------------------------------
  // By day over 14 days; by hour over the last 48 hours when asked (#/stats?by=hour), or when
  // runs fall on two days or fewer, where a daily chart would be one or two bars.
  async function statsPage(by) {
    const org = needOrg();
    if (!org) return;
    const until = new Date();
    const since = new Date(until.getTime() - 14 * 86400000);
    const range = (from) => query({ since: from.toISOString(), until: until.toISOString() });
    const base = "/api/v1/pipelines/" + encodeURIComponent(org);
    const [summary, daily] = await Promise.all([api(base + "/stats" + range(since)), api(base + "/stats/daily" + range(since))]);
    const pipelines = summary.body.pipelines || [];
    const days = daily.body.days || [];
    const activeDays = new Set(days.map((d) => d.day)).size;
    const hourly = by === "hour" || (by !== "day" && activeDays > 0 && activeDays <= 2);
    let slots, points;
    if (hourly) {
      const from = new Date(Math.floor(until.getTime() / 3600000) * 3600000 - 47 * 3600000);
      const hours = (await api(base + "/stats/hourly" + range(from))).body.hours || [];
      slots = [];
      for (let t = from.getTime(); t <= until.getTime(); t += 3600000) slots.push(new Date(t).toISOString().slice(0, 13) + ":00:00Z");
      points = hours.map((d) => ({ ...d, slot: d.hour }));
    } else {
      slots = [];
      for (let d = new Date(Date.UTC(since.getUTCFullYear(), since.getUTCMonth(), since.getUTCDate())); d <= until; d = new Date(d.getTime() + 86400000)) {
        slots.push(d.toISOString().slice(0, 10));
      }
      points = days.map((d) => ({ ...d, slot: d.day }));
    }
    const other = hourly ? ["day", "By day, last 14 days"] : ["hour", "By hour, last 48 hours"];
    const nodes = [h("h1", { text: "Pipeline stats · last 14 days" })];
    if (!pipelines.length) nodes.push(h("div", { class: "card empty", text: "No run in the last 14 days." }));
    else nodes.push(h("table", { id: "stats" },
      h("thead", {}, h("tr", {}, ["Pipeline", "Runs", "Succeeded", "Failed", "Success rate", "p50", "p95", "Billed", "Cost (est.)"].map((x) => h("th", { text: x })))),
      h("tbody", {}, pipelines.map((p) => h("tr", {},
        h("td", { text: p.pipeline_id }), h("td", { text: p.runs }), h("td", { text: p.succeeded }), h("td", { text: p.failed }),
        h("td", { text: p.success_rate === null ? "-" : Math.round(p.success_rate * 100) + "%" }),
        h("td", { text: ms(p.p50_ms) }), h("td", { text: ms(p.p95_ms) }),
        h("td", { text: bytes(p.bytes_billed || 0) }), h("td", { text: usd(p.estimated_cost_usd) }))))),
      h("p", { class: "hint", id: "stats-period" },
        hourly ? "Charts by UTC hour, last 48 hours · " : "Charts by UTC day, last 14 days · ",
        h("a", { href: "#/stats?by=" + other[0], id: "stats-switch", text: other[1] })));
    for (const p of pipelines) {
      const series = points.filter((d) => d.pipeline_id === p.pipeline_id);
      nodes.push(h("h2", { text: p.pipeline_id }),
        h("div", { class: "legend" }, h("span", { class: "k50", text: "p50 duration" }), h("span", { class: "k95", text: "p95 duration" }), h("span", { class: "krate", text: "success rate" })),
        chart(series, slots, hourly));
    }
    show(...nodes);
  }

  // Per slot (a UTC day, or hour): success rate as bars (right scale, 0-100 %), p50 and p95
  // durations as lines; `series` holds the slots that had runs, by `slot`.
  function chart(series, slots, hourly) {
    const width = 900, height = 220, left = 60, right = 50, top = 10, bottom = 30;
    const bySlot = Object.fromEntries(series.map((d) => [d.slot, d]));
    const maxMs = Math.max(1, ...series.map((d) => d.p95_ms || d.p50_ms || 0));
    const w = (width - left - right) / slots.length;
    const y = (v) => top + (height - top - bottom) * (1 - v / maxMs);
    const svg = s("svg", { class: "card chart", width: "100%", viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "Duration and success rate per " + (hourly ? "hour" : "day") });
    for (let i = 0; i <= 4; i++) {
      const v = (maxMs * i) / 4;
      svg.append(s("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }),
        s("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, ms(v)),
        s("text", { x: width - right + 6, y: y(v) + 4 }, (25 * i) + "%"));
    }
    // Labels: every other day (MM-DD), or every sixth hour (HH:00, with MM-DD at midnight).
    const label = (slot, i) => hourly
      ? (slot.slice(11, 13) % 6 === 0 ? (slot.slice(11, 13) === "00" ? slot.slice(5, 10) : slot.slice(11, 16)) : null)
      : (i % 2 === 0 ? slot.slice(5) : null);
    const p50 = [], p95 = [];
    slots.forEach((slot, i) => {
      const d = bySlot[slot];
      const cx = left + w * i + w / 2;
      const text = label(slot, i);
      if (text) svg.append(s("text", { x: cx, y: height - 10, "text-anchor": "middle" }, text));
      if (!d) return;
      if (d.success_rate !== null && d.success_rate !== undefined) {
        const bh = (height - top - bottom) * d.success_rate;
        svg.append(s("rect", { class: "rate", x: cx - w * 0.3, y: height - bottom - bh, width: w * 0.6, height: bh },
          s("title", {}, slot + ": " + Math.round(d.success_rate * 100) + "% of " + d.runs + " run(s)")));
      }
      if (d.p50_ms !== null) p50.push([cx, y(d.p50_ms), ms(d.p50_ms)]);
      if (d.p95_ms !== null) p95.push([cx, y(d.p95_ms), ms(d.p95_ms)]);
    });
    svg.append(s("line", { class: "axis", x1: left, x2: width - right, y1: height - bottom, y2: height - bottom }));
    // A line through the slots, and a dot per slot (one slot alone is a dot, not an empty line).
    for (const [cls, pts] of [["p95", p95], ["p50", p50]]) {
      if (!pts.length) continue;
      svg.append(s("polyline", { class: cls, points: pts.map(([x, y]) => x + "," + y).join(" ") }));
      for (const [x, y, text] of pts) {
        svg.append(s("circle", { class: "dot " + cls, cx: x, cy: y, r: 4 }, s("title", {}, cls + ": " + text)));
      }
    }
    return svg;
  }

  // ---- quota, catalog, schedules, orgs -------------------------------------------------
  async function quotaPage() {
    const org = needOrg();
    if (!org) return;
    const q = (await api("/api/v1/organizations/" + encodeURIComponent(org) + "/quota")).body;
    const meter = (id, label, used, limit, show = String, cost = null) => h("div", { class: "card meter", id },
      h("div", { class: "label", text: label }),
      h("div", { class: "value", text: show(used) + " / " + (limit == null ? "no budget" : show(limit)) + (cost == null ? "" : " · " + usd(cost)) }),
      h("progress", { max: limit || 1, value: Math.min(used, limit || 1) }));
    show(h("h1", { text: "Quota of " + org }),
      h("div", { class: "meters" },
        meter("quota-today", "Runs today (UTC)", q.runs_today, q.daily_limit),
        meter("quota-month", "Runs this month", q.runs_month, q.monthly_limit),
        meter("quota-slots", "Slots in use", (q.active_run_ids || []).length, q.concurrent_limit),
        meter("quota-queue", "Queued runs", (q.queued_run_ids || []).length, q.queue_limit),
        meter("quota-bytes-today", "Billed today (UTC)", q.bytes_today || 0, q.bytes_daily_limit, bytes, q.estimated_cost_today_usd),
        meter("quota-bytes-month", "Billed this month", q.bytes_month || 0, q.bytes_monthly_limit, bytes, q.estimated_cost_month_usd)),
      h("h2", { text: "Running now" }), runList(q.active_run_ids),
      h("h2", { text: "Waiting in the queue (in order)" }), runList(q.queued_run_ids));
  }

  // An estimated cost: 6.25 as "$6.25", under a cent as "<$0.01" (the service's own figure).
  function usd(n) {
    if (n === null || n === undefined) return "-";
    return n > 0 && n < 0.01 ? "<$0.01" : "$" + n.toFixed(2);
  }

  // 1099511627776 as "1.0 TiB".
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
  }

  function runList(ids) {
    if (!ids || !ids.length) return h("div", { class: "empty", text: "None." });
    return h("ol", {}, ids.map((id) => h("li", { class: "mono" }, h("a", { href: "#/runs/" + id, text: id }))));
  }

  async function catalogPage() {
    const pipelines = await catalog();
    const org = session.org();
    const canRun = org && session.can("pipelines:run");
    const canBackfill = org && session.can("schedules:write");
    show(h("h1", { text: "Pipeline catalog" }),
      ...pipelines.map((p) => h("div", { class: "card pipeline", "data-pipeline": p.id },
        h("h2", { text: p.id }), h("p", { class: "hint", text: p.description || "" }),
        graph(p.steps || [], null, null),
        canRun ? h("details", { class: "action" }, h("summary", { text: "Trigger a run" }), triggerForm(org, p)) : null,
        canBackfill && (p.parameters || []).some((d) => d.type === "DATE")
          ? h("details", { class: "action" }, h("summary", { text: "Backfill a date range" }), backfillForm(org, p)) : null,
        h("p", {}, "Parameters: ", p.parameters && p.parameters.length
          ? p.parameters.map((d) => d.name + " (" + d.type + (d.required ? ", required" : "") + ")").join(", ") : "none"),
        h("table", {}, h("thead", {}, h("tr", {}, ["Step", "Kind", "Depends on", "Attempts", "Timeout"].map((t) => h("th", { text: t })))),
          h("tbody", {}, (p.steps || []).map((st) => h("tr", {},
            h("td", { class: "mono", text: st.id }), h("td", { text: st.kind }), h("td", { text: (st.depends_on || []).join(", ") || "-" }),
            h("td", { text: st.max_attempts }), h("td", { text: st.timeout_seconds + " s" }))))))));
  }

  async function schedulesPage() {
    const org = needOrg();
    if (!org) return;
    const list = (await api("/api/v1/schedules/" + encodeURIComponent(org))).body.schedules || [];
    show(h("h1", { text: "Schedules of " + org }),
      list.length ? h("table", { id: "schedules" },
        h("thead", {}, h("tr", {}, ["Schedule", "Cron", "Zone", "Status", "Next tick (UTC)", "Catch-up", "When busy", "Parameters", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, list.map((x) => h("tr", { class: "schedule-row", "data-schedule": x.schedule_id },
          h("td", { class: "mono", text: x.schedule_id }), h("td", { class: "mono", text: x.cron }), h("td", { text: x.timezone }),
          h("td", {}, statusPill(x.status)), h("td", { text: when(x.next_tick) }), h("td", { text: x.catch_up }), h("td", { text: x.when_busy }),
          h("td", { class: "mono params", text: compact(Object.assign({}, x.templates, x.parameters)) }),
          h("td", {}, session.can("schedules:write") ? scheduleAction(org, x) : null)))))
        : h("div", { class: "card empty", text: "The catalog declares no schedule." }));
  }

  // The org's alert channels (never their URL beyond scheme and host), a test alert per
  // channel, and the last attempt of each recent delivery.
  async function alertsPage() {
    const org = needOrg();
    if (!org) return;
    const base = "/api/v1/notifications/" + encodeURIComponent(org);
    const [channels, deliveries] = await Promise.all([api(base + "/channels"), api(base + "/deliveries")]);
    const list = channels.body.channels || [];
    const sent = deliveries.body.deliveries || [];
    const note = h("p", { class: "hint", id: "alert-note" });
    const test = async (id) => {
      try {
        const answer = (await api(base + "/channels/" + encodeURIComponent(id) + "/test", { method: "POST", body: {} })).body;
        awaited = { id: answer.delivery_id, looks: 15 };
        note.textContent = "Test alert sent (delivery " + answer.delivery_id + "); it shows below once attempted.";
        refreshTimer = setTimeout(route, 2000);
      } catch (e) { showError(e.message); }
    };
    if (awaited) {
      if (sent.some((d) => d.delivery_id === awaited.id) || --awaited.looks <= 0) awaited = null;
      else {
        note.textContent = "Test alert sent (delivery " + awaited.id + "); it shows below once attempted.";
        refreshTimer = setTimeout(route, 2000);
      }
    }
    const secs = (n) => (n === null || n === undefined ? "-" : n + " s");
    show(h("h1", { text: "Alerts of " + org }),
      h("p", { class: "hint", text: "Channels are added with the API or `quarry notifications add`; their URL and secret are never shown again." }),
      h("h2", { text: "Channels" }),
      list.length ? h("table", { id: "channels" },
        h("thead", {}, h("tr", {}, ["Channel", "Kind", "Target", "Events", "Pipelines", "Late after", "Queued after", "Created (UTC)", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, list.map((c) => h("tr", { class: "channel-row" },
          h("td", { class: "mono", text: c.channel_id.slice(0, 8) }), h("td", { text: c.kind }), h("td", { class: "mono", text: c.url_hint }),
          h("td", { text: (c.events || []).join(", ") }), h("td", { text: (c.pipelines || []).join(", ") || "all" }),
          h("td", { text: secs(c.late_after_seconds) }), h("td", { text: secs(c.queued_after_seconds) }), h("td", { text: when(c.created_at) }),
          h("td", {}, h("button", { type: "button", class: "test-channel", "data-channel": c.channel_id, text: "Send test", onclick: () => test(c.channel_id) }))))))
        : h("div", { class: "card empty", id: "no-channels", text: "No channel: nobody is told when a run fails." }),
      note,
      h("h2", { text: "Recent deliveries (last 7 days)" }),
      sent.length ? h("table", { id: "deliveries" },
        h("thead", {}, h("tr", {}, ["Attempted (UTC)", "Event", "Run", "Pipeline", "Channel", "Attempt", "Status", "HTTP", "Error"].map((t) => h("th", { text: t })))),
        h("tbody", {}, sent.map((d) => h("tr", { class: "delivery-row" },
          h("td", { text: when(d.attempted_at) }), h("td", { text: d.event }),
          h("td", { class: "mono" }, d.run_id ? h("a", { href: "#/runs/" + d.run_id, text: d.run_id.slice(0, 8) }) : "-"),
          h("td", { text: d.pipeline_id || "-" }), h("td", { class: "mono", text: d.channel_id.slice(0, 8) }),
          h("td", { text: d.attempt }), h("td", {}, statusPill(d.status)), h("td", { text: d.http_status || "-" }),
          h("td", { text: d.error || "" })))))
        : h("div", { class: "card empty", id: "no-deliveries", text: "No alert was sent in the last 7 days." }));
  }

  // Enable a schedule never enabled, pause an active one, resume a paused one.
  function scheduleAction(org, x) {
    const verb = { DISABLED: "enable", ACTIVE: "pause", PAUSED: "resume" }[x.status];
    if (!verb) return null;
    const name = x.schedule_id.slice(x.pipeline_id.length + 1);
    const run = async () => {
      await api("/api/v1/schedules/" + orgPath(org) + "/" + verb, { method: "POST", body: { pipeline_id: x.pipeline_id, schedule: name } });
      route();
    };
    const label = verb[0].toUpperCase() + verb.slice(1);
    return actionButton(verb + "-" + x.schedule_id.replace(/\W/g, "-"), label, run,
      { confirm: verb === "pause", cls: "schedule-" + verb });
  }

  async function orgsPage() {
    if (!session.isRoot()) { location.hash = "#/runs"; return; }
    const orgs = (await api("/api/v1/organizations")).body.organizations || [];
    show(h("h1", { text: "Organizations" }),
      h("p", { class: "hint", text: "Pick an org to see its runs, stats, quota and schedules." }),
      h("table", { id: "orgs" },
        h("thead", {}, h("tr", {}, ["Org", "Company", "Plan", "Status", "Created (UTC)", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, orgs.map((o) => h("tr", {},
          h("td", { class: "mono", text: o.org_slug }), h("td", { text: o.company_name }), h("td", { text: o.plan }),
          h("td", {}, statusPill(o.status)), h("td", { text: when(o.created_at) }),
          h("td", {}, h("button", { type: "button", class: "pick-org", "data-org": o.org_slug, text: "Open",
            onclick: () => { sessionStorage.setItem(ORG, o.org_slug); location.hash = "#/runs"; } })))))));
  }

  // ---- start -------------------------------------------------------------------------
  document.getElementById("signout").addEventListener("click", () => { session.clear(); location.hash = "#/runs"; signIn(); });
  window.addEventListener("hashchange", route);
  route();
})();
