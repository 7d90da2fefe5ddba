// Modelship dashboard: fleet and rollout pages, live through server-sent events. No build step.
"use strict";
const main = document.getElementById("main");
const esc = (v) => String(v ?? "-").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const ago = (s) => s == null ? "-" : s < 120 ? `${Math.round(s)}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
const route = () => location.pathname.match(/^\/rollouts\/([^/]+)\/([^/]+)/);

async function getJSON(url) {
  const response = await fetch(url);
  return response.json();
}

// --- fleet ------------------------------------------------------------------------------------------------
async function fleet() {
  const filter = new URLSearchParams(location.search).get("namespace") || "";
  const data = await getJSON(`/api/fleet${filter ? `?namespace=${encodeURIComponent(filter)}` : ""}`);
  who(data);
  const rows = data.rows.map((r) => `<tr data-key="${esc(r.namespace)}/${esc(r.name)}">
      <td>${esc(r.namespace)}</td><td><a href="/rollouts/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}">${esc(r.name)}</a></td>
      <td class="phase-${esc(r.phase)}">${esc(r.phase)}${r.awaitingApproval ? " (awaiting approval)" : ""}</td>
      <td>${esc(r.stage)}</td><td>${esc(r.step)}</td><td>${r.canaryWeight}%${r.mirrorPercent ? ` (+${r.mirrorPercent}% mirror)` : ""}</td>
      <td>${esc(r.stable)}</td><td>${esc(r.canary)}</td><td class="verdict-${esc(r.verdict)}">${esc(r.verdict)}</td>
      <td>${ago(r.inStepSeconds)}</td></tr>`).join("");
  main.innerHTML = `
    <form class="toolbar" id="filter"><label>Namespace <input name="namespace" value="${esc(filter === "" ? "" : filter)}" placeholder="all"></label><button>Filter</button></form>
    ${data.error ? `<div class="notice error">${esc(data.error)}</div>` : ""}${refused(data)}
    <table id="fleet"><thead><tr><th>Namespace</th><th>Name</th><th>Phase</th><th>Stage</th><th>Step</th>
      <th>Canary weight</th><th>Stable</th><th>Canary</th><th>Last verdict</th><th>In step</th></tr></thead>
      <tbody>${rows || `<tr><td colspan="10">No ModelDeployments${filter ? ` in ${esc(filter)}` : ""}.</td></tr>`}</tbody></table>`;
}

// --- one rollout ------------------------------------------------------------------------------------------
function line(points, width, height, top, bottom, color, dashed) {
  const xs = points.map((p) => p[0]), t0 = Math.min(...xs), t1 = Math.max(...xs, t0 + 1);
  const x = (t) => 30 + (width - 40) * (t - t0) / (t1 - t0);
  const y = (v) => 10 + (height - 30) * (1 - (v - bottom) / ((top - bottom) || 1));
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
  return `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${dashed ? ' stroke-dasharray="4 3"' : ""}/>`;
}

function chart(title, series, unit) {
  const width = 420, height = 150, all = series.flatMap((s) => s.points);
  if (!all.length) return "";
  const values = all.map((p) => p[1]), top = Math.max(...values) * 1.1 || 1, bottom = Math.min(0, ...values);
  const paths = series.filter((s) => s.points.length).map((s) => line(s.points, width, height, top, bottom, s.color, s.dashed)).join("");
  const legend = series.filter((s) => s.points.length).map((s) => `<span style="color:${s.color}">${s.dashed ? "- -" : "—"} ${esc(s.name)}</span>`).join(" ");
  const times = all.map((p) => p[0]), clock = (t) => new Date(t * 1000).toISOString().slice(11, 19);
  return `<div class="chart" data-chart="${esc(title)}"><h3>${esc(title)} ${unit ? `(${esc(unit)})` : ""}</h3>
    <svg width="${width}" height="${height}" role="img" aria-label="${esc(title)}">
      <text x="2" y="12">${top.toPrecision(3)}</text><text x="2" y="${height - 18}">${bottom}</text>
      <text x="30" y="${height - 4}">${clock(Math.min(...times))}</text><text x="${width - 60}" y="${height - 4}">${clock(Math.max(...times))}</text>${paths}</svg>
    <div>${legend}</div></div>`;
}

function timeline(points) {
  const t = (p) => Date.parse(p.time) / 1000;
  const charts = [chart("Traffic", [
    {name: "canary weight", color: "#1565c0", points: points.map((p) => [t(p), p.canaryWeight])},
    {name: "mirror", color: "#8e24aa", dashed: true, points: points.map((p) => [t(p), p.mirrorPercent])}], "%")];
  const names = [...new Set(points.flatMap((p) => Object.keys(p.slos || {})))];
  for (const name of names) {
    const checks = points.filter((p) => p.slos && p.slos[name]);
    const valued = checks.filter((p) => p.slos[name].value != null);
    const bound = (k) => checks.filter((p) => p.slos[name][k] != null).map((p) => [t(p), p.slos[name][k]]);
    charts.push(chart(name, [
      {name: "canary", color: "#1d2430", points: valued.map((p) => [t(p), p.slos[name].value])},
      {name: "max", color: "#c62828", dashed: true, points: bound("max")},
      {name: "min", color: "#ef6c00", dashed: true, points: bound("min")}], ""));
  }
  return `<div class="charts">${charts.join("")}</div>`;
}

function table(headers, rows) {
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead>
    <tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("") || `<tr><td colspan="${headers.length}">none</td></tr>`}</tbody></table>`;
}

// The identity actions use, and why none may run here (read-only, or no signed-in viewer): said once, plainly.
function who(data) {
  document.getElementById("viewer").textContent = data.viewer ? `viewing as ${data.viewer}` : data.refusal ? "read-only" : "";
}
const refused = (data) => data.refusal ? `<div class="notice readonly" id="read-only">${esc(data.refusal)}</div>` : "";

let notice = "";
async function rollout(namespace, name) {
  const view = await getJSON(`/api/rollouts/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`);
  if (view.error) { main.innerHTML = `<div class="notice error">${esc(view.error)}</div>`; return; }
  who(view);
  const buttons = Object.entries(view.actions).map(([action, why]) =>
    `<button data-action="${action}" ${why ? "disabled" : ""} title="${esc(why || `${action} as you`)}">${action}</button>`).join("");
  const metric = (m) => [esc(m.name), esc(m.value), esc(m.stableValue), esc(m.max ?? m.min), `<span class="verdict-${esc(m.verdict)}">${esc(m.verdict)}</span>`, esc(m.message)];
  main.innerHTML = `
    <h2><a href="/?namespace=${encodeURIComponent(namespace)}">${esc(namespace)}</a> / ${esc(name)}
      <span class="phase-${esc(view.phase)}">${esc(view.phase)}</span></h2>
    <div>${esc(view.message)}</div>
    <div>stage ${esc(view.stage)} step ${esc(view.step)} · canary ${view.canaryWeight}% · stable v${esc(view.stable)} · canary v${esc(view.canary)}${view.previous ? ` · previous v${esc(view.previous)} (warm)` : ""}</div>
    <div class="toolbar" id="actions">${buttons}</div>
    ${refused(view)}${notice}
    <section><h2>Timeline</h2>${timeline(view.timeline)}</section>
    <section><h2>Evidence of the last check ${view.lastCheckAt ? `(${esc(view.lastCheckAt)})` : ""}</h2>
      ${table(["SLO", "canary", "stable", "bound", "verdict", "why"], view.evidence.map(metric))}</section>
    ${view.comparison.length ? `<section><h2>Answers: canary against stable (${esc(view.compared)} compared pairs)</h2>
      ${table(["SLO", "value", "stable", "bound", "verdict", "why"], view.comparison.map(metric))}</section>` : ""}
    <section><h2>History</h2>${table(["time", "event", "version", "stage", "by", "reason"], view.history.map((h) =>
      [esc(h.time), esc(h.event), esc(h.version), esc(h.stage), esc(h.by), esc(h.reason)]))}</section>
    <section><h2>Revisions</h2>${table(["version", "promoted", "retired", "outcome", "by"], view.revisions.map((r) =>
      [esc(r.version), esc(r.promotedAt), esc(r.retiredAt), esc(r.outcome), esc(r.by)]))}</section>
    <section><h2>Conditions</h2>${table(["type", "status", "reason", "message"], view.conditions.map((c) =>
      [esc(c.type), esc(c.status), esc(c.reason), esc(c.message)]))}</section>`;
  for (const button of document.querySelectorAll("#actions button")) {
    button.addEventListener("click", async () => {
      const response = await fetch(`/api/rollouts/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${button.dataset.action}`, {method: "POST", headers: {"X-Modelship-Dashboard": "1"}});
      const answer = await response.json();
      notice = `<div class="notice ${response.ok ? "ok" : "error"}" id="notice">${esc(response.ok ? answer.message : answer.error)}</div>`;
      await rollout(namespace, name);
    });
  }
}

// --- routing and live updates ---------------------------------------------------------------------------
async function render() {
  const match = route();
  if (match) await rollout(decodeURIComponent(match[1]), decodeURIComponent(match[2]));
  else await fleet();
}

document.addEventListener("submit", (event) => {
  if (event.target.id !== "filter") return;
  event.preventDefault();
  const value = new FormData(event.target).get("namespace");
  history.pushState({}, "", value ? `/?namespace=${encodeURIComponent(value)}` : "/");
  render();
});
window.addEventListener("popstate", render);

let pending = false;
const source = new EventSource("/api/events");
source.onopen = () => { const live = document.getElementById("live"); live.textContent = "live"; live.classList.add("on"); };
source.onerror = () => { const live = document.getElementById("live"); live.textContent = "reconnecting"; live.classList.remove("on"); };
source.onmessage = (message) => {
  const change = JSON.parse(message.data);
  const match = route();
  if (match && (decodeURIComponent(match[1]) !== change.row.namespace || decodeURIComponent(match[2]) !== change.row.name)) return;
  if (pending) return;
  pending = true;
  setTimeout(() => { pending = false; render(); }, 200);  // a burst of changes is one redraw
};
render();
