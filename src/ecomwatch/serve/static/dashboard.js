// ecomwatch live dashboard: reads /api/stream (server-sent events over fetch, so that a bearer
// token can be sent), redraws without reloading. Every value from the server is shown with
// textContent: entity ids, user agents and categories are attacker-controlled text.
"use strict";

const TYPES = ["view", "cart", "remove_from_cart", "purchase"];
let token = sessionStorage.getItem("ecomwatch-token") || "";
let latest = null;

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

function drawTraffic(minutes) {
  if (!window.Plotly) return;
  const x = minutes.map((m) => new Date(m.minute_us / 1000).toISOString());
  const traces = TYPES.map((t) => ({ type: "bar", name: t, x, y: minutes.map((m) => m[t] || 0) }));
  Plotly.react("traffic-chart", traces, {
    // The legend above the plot: below it, it would cover the axis's second line (the date).
    barmode: "stack", margin: { t: 28, r: 8, b: 48, l: 48 },
    legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
  }, { displayModeBar: false, responsive: true });
}

function render(data) {
  latest = data;
  const s = data.summary, live = s.live;
  document.getElementById("events-total").textContent = fmt(s.events_processed);
  document.getElementById("revenue").textContent = fmt(Math.round(live.revenue));
  document.getElementById("active-sessions").textContent = fmt(live.active_sessions);
  document.getElementById("flagged-share").textContent = (100 * live.flagged_share).toFixed(1) + " %";
  document.getElementById("alerts-total").textContent = fmt(s.alerts.total);
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
  document.getElementById("alerts-feed").replaceChildren(...data.alerts.map(alertItem));
  drawTraffic(s.minutes);
}

// With tokens configured the data needs one: a sign-in form asks for it (again, if the one
// given was refused) and resolves once the user submits.
function askForToken(refused) {
  setStatus("locked", "signed out");
  document.getElementById("overview").hidden = true;
  document.getElementById("entity").hidden = true;
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
  document.getElementById("overview").hidden = true;
  document.getElementById("entity").hidden = false;
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

function route() {
  if (!document.getElementById("login").hidden) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "entity" && parts.length >= 3) {
    showEntity(decodeURIComponent(parts[1]), decodeURIComponent(parts.slice(2).join("/")));
  } else {
    document.getElementById("overview").hidden = false;
    document.getElementById("entity").hidden = true;
    if (latest) render(latest);
  }
}

window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", signOut);
route();
stream();
