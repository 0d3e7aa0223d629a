// ecomwatch live dashboard: reads /api/stream (server-sent events over fetch, so that a bearer
// token can be sent), redraws without reloading. Every value from the server is shown with
// textContent: entity ids, user agents and categories are attacker-controlled text.
"use strict";

const TYPES = ["view", "cart", "remove_from_cart", "purchase"];
const SEVERITIES = ["info", "low", "medium", "high", "critical"];
const COLORS = { info: "#8a93a6", low: "#4f8bd6", medium: "#e0a100", high: "#e0662b", critical: "#c81e1e" };
const PAGE = 20;  // incidents per page: the feed's height never grows with the attack
let token = sessionStorage.getItem("ecomwatch-token") || "";
let latest = null;
let filters = { severity: "", state: "", kind: "", q: "" };
let offset = 0;
let feedRequest = 0;
let shownIncident = null;
let incidentShownAt = 0;
let members = [];
let sortKey = "severity", sortDown = true;

function headers() { return token ? { Authorization: "Bearer " + token } : {}; }

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(n) { return Number(n || 0).toLocaleString("en-US"); }

function setStatus(state, text) {
  const status = document.getElementById("status");
  status.dataset.state = state;
  status.textContent = text;
}

function fillTable(id, rows) {
  const table = document.getElementById(id);
  table.replaceChildren(...rows.map(([name, value]) => {
    const tr = el("tr");
    tr.append(el("td", name), el("td", value, "num"));
    return tr;
  }));
}

function alertItem(alert) {
  const li = el("li", null, "alert");
  li.dataset.alertId = alert.alert_id;
  const head = el("div");
  head.append(el("span", alert.severity, "sev " + alert.severity), el("span", alert.rule, "rule"));
  const link = el("a", alert.entity_type + " " + alert.entity, "entity");
  link.href = "#/entity/" + encodeURIComponent(alert.entity_type) + "/" + encodeURIComponent(alert.entity);
  head.append(link);
  const evidence = Object.entries(alert.evidence || {}).map(([k, v]) => k + "=" + v).join("  ");
  li.append(head, el("div", alert.explanation, "explanation"), el("div", evidence, "evidence"));
  return li;
}

function plot(id, traces, layout) {
  if (!window.Plotly) return;
  Plotly.react(id, traces, {
    // The legend above the plot: below it, it would cover the axis's second line (the date).
    barmode: "stack", margin: { t: 28, r: 8, b: 48, l: 48 },
    legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" }, ...layout,
  }, { displayModeBar: false, responsive: true });
}

function drawTraffic(minutes) {
  const x = minutes.map((m) => new Date(m.minute_us / 1000).toISOString());
  const all = (m) => TYPES.reduce((n, t) => n + (m[t] || 0), 0);
  plot("traffic-chart", [
    { type: "bar", name: "unflagged", x, y: minutes.map((m) => Math.max(0, all(m) - (m.flagged || 0))), marker: { color: "#8fb3e0" } },
    { type: "bar", name: "from flagged IPs", x, y: minutes.map((m) => m.flagged || 0), marker: { color: COLORS.high } },
  ]);
}

function drawIncidentsOverTime(buckets) {
  const x = buckets.map((b) => b.start);
  plot("incidents-chart", SEVERITIES.filter((sev) => buckets.some((b) => b[sev])).map((sev) => (
    { type: "bar", name: sev, x, y: buckets.map((b) => b[sev] || 0), marker: { color: COLORS[sev] } })));
}

// The feed: one compact row per incident, newest first, a page at a time. The stream brings
// the first unfiltered page; other pages and filters are asked for.
function ago(iso, nowUs) {
  const minutes = Math.round((nowUs / 1000 - Date.parse(iso)) / 60000);
  if (!nowUs || minutes < 1) return "now";
  return minutes < 120 ? minutes + " min ago" : Math.round(minutes / 60) + " h ago";
}

function incidentRow(incident, nowUs) {
  const tr = el("tr");
  tr.dataset.incidentId = incident.incident_id;
  const severity = el("td");
  severity.append(el("span", incident.severity, "sev " + incident.severity));
  const title = el("td", null, "title");
  const link = el("a", incident.title);
  link.href = "#/incident/" + encodeURIComponent(incident.incident_id);
  title.append(link);
  tr.append(severity, title, el("td", fmt(incident.ip_count), "num"), el("td", fmt(incident.events), "num"),
            el("td", ago(incident.last_seen, nowUs)), el("td", incident.state, "state " + incident.state));
  tr.onclick = () => { location.hash = link.hash; };
  return tr;
}

function renderFeed(page) {
  const nowUs = latest ? latest.summary.live.latest_event_us : 0;
  document.getElementById("incidents-feed").replaceChildren(...page.incidents.map((r) => incidentRow(r, nowUs)));
  document.getElementById("page-info").textContent = page.total
    ? (offset + 1) + "-" + (offset + page.incidents.length) + " of " + fmt(page.total) : "no incidents";
  document.getElementById("page-newer").disabled = offset === 0;
  document.getElementById("page-older").disabled = offset + PAGE >= page.total;
}

function filtered() { return offset > 0 || Object.values(filters).some((v) => v); }

async function refreshFeed() {
  if (!filtered()) { if (latest) renderFeed(latest.incidents); return; }
  const params = new URLSearchParams({ limit: PAGE, offset });
  for (const [key, value] of Object.entries(filters)) if (value) params.set(key, value);
  const mine = ++feedRequest;
  const response = await fetch("/api/incidents?" + params, { headers: headers() });
  if (response.ok && mine === feedRequest) renderFeed(await response.json());
}

function watchFilters() {
  let typing = null;
  const changed = () => {
    filters = {
      severity: document.getElementById("filter-severity").value,
      state: document.getElementById("filter-state").value,
      kind: document.getElementById("filter-kind").value,
      q: document.getElementById("filter-text").value.trim(),
    };
    offset = 0;
    refreshFeed();
  };
  for (const id of ["filter-severity", "filter-state", "filter-kind"]) {
    document.getElementById(id).addEventListener("change", changed);
  }
  document.getElementById("filter-text").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(changed, 250);
  });
  document.getElementById("incident-filters").addEventListener("submit", (e) => { e.preventDefault(); changed(); });
  document.getElementById("page-newer").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); refreshFeed(); });
  document.getElementById("page-older").addEventListener("click", () => { offset += PAGE; refreshFeed(); });
}

function percent(part, whole) { return whole ? (100 * part / whole).toFixed(1) + " %" : "–"; }

// A web log's requests: shown only when the service has received some.
function renderWeb(web) {
  document.getElementById("web-panels").hidden = !web;
  if (!web) return;
  const mix = [["requests", fmt(web.requests)],
    ["from self-declared bots", percent(web.bot_requests, web.requests)]];
  for (const [status, n] of Object.entries(web.status)) mix.push(["status " + status, percent(n, web.requests)]);
  for (const [kind, n] of Object.entries(web.request_kinds)) mix.push([kind, fmt(n)]);
  fillTable("web-mix", mix);
  fillTable("web-top-paths", web.top_paths.map((r) => [r.path, fmt(r.requests)]));
  fillTable("web-top-4xx", web.top_4xx_paths.map((r) => [r.path, fmt(r.requests)]));
}

function render(data) {
  latest = data;
  const s = data.summary, live = s.live;
  document.getElementById("events-total").textContent = fmt(s.events_processed);
  document.getElementById("revenue").textContent = fmt(Math.round(live.revenue));
  document.getElementById("active-sessions").textContent = fmt(live.active_sessions);
  document.getElementById("flagged-share").textContent = (100 * live.flagged_share).toFixed(1) + " %";
  const open = (data.incidents.by_state.open || 0) + (data.incidents.by_state.acknowledged || 0);
  document.getElementById("alerts-total").textContent = fmt(open) + " · " + fmt(s.alerts.total);
  document.getElementById("pipeline").textContent = fmt(s.queue_depth) + " · " + fmt(s.lake_commits);
  const f = s.funnel;
  fillTable("funnel", [
    ["views", fmt(f.views)], ["carts", fmt(f.carts)], ["purchases", fmt(f.purchases)],
    ["view → cart", f.view_to_cart === null ? "–" : (100 * f.view_to_cart).toFixed(1) + " %"],
    ["cart → purchase", f.cart_to_purchase === null ? "–" : (100 * f.cart_to_purchase).toFixed(1) + " %"],
  ]);
  fillTable("top-categories", live.top_categories.map((r) => [r.name, fmt(r.events)]));
  fillTable("top-brands", live.top_brands.map((r) => [r.name, fmt(r.events)]));
  fillTable("top-products", live.top_products.map((r) => [r.name, fmt(r.events)]));
  renderWeb(s.web);
  if (!document.getElementById("overview").hidden) {
    refreshFeed();
    drawTraffic(s.minutes);
    drawIncidentsOverTime(data.incidents_over_time);
  }
  // An open incident page follows the incident too, every few seconds.
  if (shownIncident && !document.getElementById("incident").hidden && Date.now() - incidentShownAt > 3000) {
    showIncident(shownIncident.incident_id);
  }
}

// With tokens configured the data needs one: a sign-in form asks for it (again, if the one
// given was refused) and resolves once the user submits.
function askForToken(refused) {
  setStatus("locked", "signed out");
  document.getElementById("overview").hidden = true;
  document.getElementById("entity").hidden = true;
  document.getElementById("incident").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("login-message").textContent = refused ? "That token was refused." : "";
  const form = document.getElementById("login-form");
  const input = document.getElementById("token-input");
  input.value = "";
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      token = input.value.trim();
      sessionStorage.setItem("ecomwatch-token", token);
      document.getElementById("login").hidden = true;
      route();
      resolve();
    };
  });
}

function signOut() {
  token = "";
  sessionStorage.removeItem("ecomwatch-token");
  if (controller) controller.abort();
}

let controller = null;

async function stream() {
  for (;;) {
    try {
      controller = new AbortController();
      const response = await fetch("/api/stream", { headers: headers(), signal: controller.signal });
      if (response.status === 401) {
        await askForToken(token !== "");
        continue;
      }
      document.getElementById("sign-out").hidden = token === "";
      setStatus("live", "live");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = message.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("");
          if (data) render(JSON.parse(data));
        }
      }
    } catch (error) {
      if (error.name === "AbortError") continue;  // signed out: ask for a token at once
      setStatus("error", "disconnected; retrying");
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function showEntity(kind, id) {
  showPage("entity");
  document.getElementById("entity-title").textContent = kind + " " + id;
  const response = await fetch("/api/entities/" + encodeURIComponent(kind) + "/" + encodeURIComponent(id), { headers: headers() });
  if (!response.ok) return;  // 401: the stream asks for a token
  const data = await response.json();
  document.getElementById("entity-alerts").replaceChildren(...data.alerts.map(alertItem));
  if (window.Plotly) {
    const spans = data.alerts.map((a) => ({
      type: "scatter", mode: "lines+markers", name: a.rule + " (" + a.severity + ")",
      x: [a.first_seen, a.last_seen], y: [a.rule, a.rule],
    }));
    Plotly.react("entity-timeline", spans, { margin: { t: 8, r: 8, b: 40, l: 160 }, showlegend: false },
                 { displayModeBar: false, responsive: true });
  }
}

// An incident's page: what it is, why, its members (a sortable table), ack and resolve.
function showPage(id) {
  for (const page of ["overview", "entity", "incident"]) document.getElementById(page).hidden = page !== id;
}

async function showIncident(id) {
  showPage("incident");
  incidentShownAt = Date.now();
  const response = await fetch("/api/incidents/" + encodeURIComponent(id), { headers: headers() });
  if (!response.ok) {
    if (response.status === 404) document.getElementById("incident-title").textContent = "No incident " + id;
    return;
  }
  const data = await response.json();
  const first = !shownIncident || shownIncident.incident_id !== data.incident_id;
  shownIncident = data;
  document.getElementById("incident-title").textContent = data.title;
  const state = document.getElementById("incident-state");
  state.textContent = data.state;
  state.className = "state " + data.state;
  document.getElementById("incident-ack").disabled = data.state !== "open";
  document.getElementById("incident-resolve").disabled = data.state === "resolved";
  const by = data.acknowledged_by || data.resolved_by;
  fillTable("incident-facts", [
    ["id", data.incident_id], ["kind", data.kind], ["severity", data.severity],
    ["first seen", data.first_seen], ["last seen", data.last_seen],
    ["IPs", fmt(data.ip_count) + (data.ips.length ? ": " + data.ips.slice(0, 5).join(", ") + (data.ip_count > 5 ? " …" : "") : "")],
    ["events", fmt(data.events)], ["alerts", fmt(data.alerts)],
    ["rules", Object.entries(data.rules).map(([rule, n]) => rule + " (" + n + ")").join(", ")],
    ...(by ? [[data.state + " by", by]] : []),
  ]);
  document.getElementById("incident-explanation").textContent = data.explanation;
  document.getElementById("incident-evidence").textContent =
    Object.entries(data.evidence || {}).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join("  ");
  members = data.alert_lines;
  if (first) { sortKey = "severity"; sortDown = true; }
  drawMembers(data);
  const perMinute = {};
  for (const alert of members) {
    const minute = alert.detected_at.slice(0, 16) + ":00Z";
    perMinute[minute] = (perMinute[minute] || 0) + 1;
  }
  const minutes = Object.keys(perMinute).sort();
  plot("incident-timeline", [{ type: "bar", name: "alerts raised", x: minutes, y: minutes.map((m) => perMinute[m]),
                               width: 50000, marker: { color: COLORS[data.severity] } }],
       { showlegend: false, xaxis: { type: "date" }, yaxis: { title: { text: "alerts per minute" } } });
}

function drawMembers(data) {
  const rank = (a) => (sortKey === "severity" ? SEVERITIES.indexOf(a.severity)
    : sortKey === "count" ? a.count : String(a[sortKey]));
  const sorted = [...members].sort((a, b) => (rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : 0) * (sortDown ? -1 : 1));
  const table = document.getElementById("incident-members");
  for (const th of table.querySelectorAll("th")) {
    if (th.dataset.key === sortKey) th.setAttribute("aria-sort", sortDown ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
  table.tBodies[0].replaceChildren(...sorted.map((a) => {
    const tr = el("tr");
    const severity = el("td");
    severity.append(el("span", a.severity, "sev " + a.severity));
    const entity = el("td");
    const link = el("a", a.entity_type + " " + a.entity, "entity");
    link.href = "#/entity/" + encodeURIComponent(a.entity_type) + "/" + encodeURIComponent(a.entity);
    entity.append(link);
    tr.append(severity, el("td", a.rule), entity, el("td", fmt(a.count), "num"), el("td", a.first_seen), el("td", a.last_seen));
    return tr;
  }));
  const held = data.alerts_held > members.length ? " (the " + fmt(members.length) + " worst of " + fmt(data.alerts_held) + ")" : "";
  document.getElementById("incident-members-title").textContent =
    "Members: " + fmt(members.length) + (members.length === 1 ? " alert" : " alerts") + held;
}

async function act(action) {
  if (!shownIncident) return;
  const message = document.getElementById("incident-message");
  const response = await fetch("/api/incidents/" + encodeURIComponent(shownIncident.incident_id) + "/" + action, {
    method: "POST", headers: { ...headers(), "Content-Type": "application/json" }, body: JSON.stringify({ by: "dashboard" }),
  });
  const body = await response.json();
  message.textContent = response.ok ? "" : (body.detail || "refused");
  await showIncident(shownIncident.incident_id);
}

function route() {
  if (!document.getElementById("login").hidden) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "entity" && parts.length >= 3) {
    showEntity(decodeURIComponent(parts[1]), decodeURIComponent(parts.slice(2).join("/")));
  } else if (parts[0] === "incident" && parts.length >= 2) {
    document.getElementById("incident-message").textContent = "";
    showIncident(decodeURIComponent(parts[1]));
  } else {
    showPage("overview");
    if (latest) render(latest);
  }
}

window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", signOut);
document.getElementById("incident-ack").addEventListener("click", () => act("ack"));
document.getElementById("incident-resolve").addEventListener("click", () => act("resolve"));
for (const th of document.querySelectorAll("#incident-members th")) {
  th.addEventListener("click", () => {
    sortDown = th.dataset.key === sortKey ? !sortDown : true;
    sortKey = th.dataset.key;
    if (shownIncident) drawMembers(shownIncident);
  });
}
watchFilters();
route();
stream();
