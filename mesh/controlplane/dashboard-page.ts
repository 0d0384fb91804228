/**
 * The dashboard's page (dashboard.ts serves it at `/` of the control plane's admin port): one
 * table per service, its endpoints with health and zone, the service's RPS, error rate and p99,
 * LB policy and faults in force. It renders every snapshot `/events` sends (server-sent events;
 * EventSource reconnects on its own), so it changes live without a reload. No framework, no build
 * step, nothing fetched from elsewhere. What a test reads: `[data-service]` tables,
 * `tr[data-endpoint]` rows with `[data-health]` cells, `#connection`, `window.dashboardUpdates`.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>protomesh</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #f6f7f9; }
  header { display: flex; gap: 1rem; align-items: baseline; }
  h1 { font-size: 1.3rem; margin: 0; }
  #connection { font-size: .85rem; padding: .1rem .5rem; border-radius: .6rem; background: #ddd; }
  #connection.live { background: #cdeccd; }
  #connection.lost { background: #f6c9c9; }
  section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; margin: 1rem 0; padding: .6rem 1rem; }
  h2 { font-size: 1.05rem; margin: .2rem 0 .4rem; }
  .figures { display: flex; gap: 1.5rem; flex-wrap: wrap; font-size: .9rem; color: #444; margin-bottom: .4rem; }
  .figures b { color: #1d2330; }
  .fault { color: #9a3412; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  th, td { text-align: left; padding: .25rem .6rem; border-top: 1px solid #eef0f3; }
  th { color: #666; font-weight: 600; }
  td.health[data-health="HEALTHY"] { color: #15803d; font-weight: 600; }
  td.health[data-health="UNHEALTHY"] { color: #b91c1c; font-weight: 600; }
  td.health[data-health="PENDING"] { color: #a16207; font-weight: 600; }
  .muted { color: #888; }
</style>
</head>
<body>
<header>
  <h1>protomesh</h1>
  <span id="connection">connecting</span>
  <span class="muted">updated <span id="updated">never</span></span>
</header>
<main id="services"><p class="muted">No service registered yet.</p></main>
<script>
"use strict";
window.dashboardUpdates = 0;
const text = (value, unit) => (value === null || value === undefined ? "–" : value + (unit || ""));
function cell(tag, content, attributes) {
  const node = document.createElement(tag);
  node.textContent = content;
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  return node;
}
function render(snapshot) {
  const main = document.getElementById("services");
  main.replaceChildren();
  if (snapshot.services.length === 0) main.append(cell("p", "No service registered yet.", { class: "muted" }));
  for (const service of snapshot.services) {
    const section = document.createElement("section");
    section.setAttribute("data-service", service.name);
    section.append(cell("h2", service.name));
    const figures = document.createElement("div");
    figures.className = "figures";
    const figure = (label, value) => {
      const span = document.createElement("span");
      span.append(label + " ", cell("b", value));
      figures.append(span);
    };
    figure("RPS", text(service.rps));
    figure("errors", service.errorRate === null ? "–" : (service.errorRate * 100).toFixed(1) + "%");
    figure("p99", text(service.p99Ms, " ms"));
    figure("LB", service.lbPolicy);
    figure("healthy", service.endpoints.filter((e) => e.health === "HEALTHY").length + " of " + service.endpoints.length);
    section.append(figures);
    for (const fault of service.faults) {
      const words = [fault.delay && "delay " + fault.delay, fault.abort && "abort " + fault.abort].filter(Boolean).join(", ");
      section.append(cell("div", "fault on " + fault.method + ": " + words, { class: "fault", "data-fault": fault.method }));
    }
    const table = document.createElement("table");
    const head = document.createElement("tr");
    for (const name of ["endpoint", "zone", "health", "detail", "RPS"]) head.append(cell("th", name));
    table.append(head);
    for (const endpoint of service.endpoints) {
      const row = document.createElement("tr");
      row.setAttribute("data-endpoint", endpoint.id);
      row.append(
        cell("td", endpoint.id + (endpoint.isStatic ? " (static)" : "")),
        cell("td", endpoint.zone || "–"),
        cell("td", endpoint.health, { class: "health", "data-health": endpoint.health }),
        cell("td", endpoint.healthDetail, { class: "muted" }),
        cell("td", text(endpoint.rps), { "data-rps": endpoint.rps === null ? "" : String(endpoint.rps) }),
      );
      table.append(row);
    }
    section.append(table);
    main.append(section);
  }
  document.getElementById("updated").textContent = new Date(snapshot.at).toLocaleTimeString();
  window.dashboardUpdates += 1;
}
const connection = document.getElementById("connection");
const events = new EventSource("events");
events.onopen = () => { connection.textContent = "live"; connection.className = "live"; };
events.onerror = () => { connection.textContent = "reconnecting"; connection.className = "lost"; };
events.onmessage = (event) => render(JSON.parse(event.data));
</script>
</body>
</html>
`;
