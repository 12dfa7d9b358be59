// Draws a run's timeline from the page's data: one row per node under a
// row per group (operator and declaration), bars split into the wait for a
// resource and the work, retries and failures marked, the critical path
// outlined.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const LABEL = 320, ROW = 18, AXIS = 24;
  // An open group draws at most this many rows, the first to start.
  const SHOWN = 2000;
  const STATUS = { succeeded: "#5b9b4a", failed: "#d23c3c", defaulted: "#d28a3c", skipped: "#aaaaaa", cached: "#7aa7d8", running: "#c9b23c", cancelled: "#999999" };
  const total = D.groups.reduce((s, g) => s + g.nodes.length, 0);
  // Small runs open every group; big ones open groups on click.
  const open = new Set(D.groups.filter((g) => total <= 2000 && g.nodes.length <= 60).map((g) => g.key + g.op));


  const header = html("header", undefined, document.body);
  html("h1", `${D.pipeline}: run timeline${D.complete ? "" : " (incomplete)"}`, header);
  const table = html("table", undefined, header, "totals");
  const tr = html("tr", undefined, table);
  for (const [label, value] of D.totals) {
    const td = html("td", undefined, tr);
    html("b", `${label}: `, td);
    td.appendChild(document.createTextNode(value));
  }
  const legend = html("span", undefined, header, "legend");
  for (const [label, colour] of [["wait for resource", "#d9d9d9"], ["work", STATUS.succeeded], ["failed", STATUS.failed], ["critical path", "#ffffff"]]) {
    const s = html("span", label, legend);
    s.style.background = colour;
    s.style.borderColor = label === "critical path" ? "#111" : colour;
  }
  if (D.critical.length) {
    html("div", `critical path: ${D.critical.join(" → ")}`, header, "hint").id = "critical";
  }
  const main = html("main", undefined, document.body);
  const canvas = html("div", undefined, main);
  canvas.id = "canvas";

  function fmt(ms) {
    return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
  }

  function draw() {
    canvas.textContent = "";
    const rows = [];
    for (const g of D.groups) {
      const key = g.key + g.op;
      rows.push({ group: g, key });
      if (!open.has(key)) continue;
      for (const n of g.nodes.slice(0, SHOWN)) rows.push({ node: n });
      if (g.nodes.length > SHOWN) rows.push({ more: g.nodes.length - SHOWN });
    }
    const chart = Math.max(600, (canvas.clientWidth || 1200) - LABEL - 30);
    const scale = chart / Math.max(D.wall, 1e-3);
    const height = AXIS + rows.length * ROW + 10;
    const svg = el("svg", { width: LABEL + chart + 20, height, "font-family": "sans-serif", "font-size": 11 }, canvas);
    for (let i = 0; i <= 10; i++) {
      const x = LABEL + (chart * i) / 10;
      el("line", { x1: x, y1: AXIS - 4, x2: x, y2: height, stroke: "#eee" }, svg);
      el("text", { x, y: 14, "text-anchor": "middle", fill: "#666" }, svg).textContent = fmt((D.wall * i) / 10);
    }
    rows.forEach((r, i) => {
      const y = AXIS + i * ROW;
      if (r.more) {
        el("text", { x: 14, y: y + 13, fill: "#777" }, svg).textContent = `… and ${r.more} more nodes of this group (quiver report prints them all as JSON)`;
        return;
      }
      if (r.group) {
        const g = r.group, n = g.nodes.length;
        const row = el("g", { class: "group-row", "data-key": r.key }, svg);
        el("rect", { x: 0, y, width: LABEL + chart + 20, height: ROW, fill: "#f3f3f3" }, row);
        const sign = n > 1 ? (open.has(r.key) ? "▾ " : "▸ ") : "";
        el("text", { x: 4, y: y + 13, "font-weight": "bold" }, row).textContent = `${sign}${g.key} (${g.op}) ×${n}`;
        const start = Math.min(...g.nodes.map((x) => x[2])), end = Math.max(...g.nodes.map((x) => x[3]));
        el("rect", { x: LABEL + start * scale, y: y + 5, width: Math.max(1, (end - start) * scale), height: ROW - 10, fill: "#bbb" }, row);
        row.style.cursor = "pointer";
        row.onclick = () => { if (open.has(r.key)) open.delete(r.key); else open.add(r.key); draw(); };
        return;
      }
      const [id, status, start, end, wait, attempts, critical, error] = r.node;
      const row = el("g", { class: "row", "data-node": id }, svg);
      const title = el("title", {}, row);
      title.textContent = `${id}: ${status}, ${fmt(start)} – ${fmt(end)}, waited ${fmt(wait)}, ${attempts} attempt${attempts === 1 ? "" : "s"}${error ? "\n" + error : ""}`;
      el("text", { x: 14, y: y + 13, fill: status === "failed" ? STATUS.failed : "#222" }, row).textContent = id.length > 48 ? id.slice(0, 47) + "…" : id;
      const x0 = LABEL + start * scale;
      if (wait > 0) el("rect", { class: "wait", x: x0, y: y + 3, width: Math.max(1, wait * scale), height: ROW - 6, fill: "#d9d9d9" }, row);
      const work = el("rect", { class: "work", x: x0 + wait * scale, y: y + 3, width: Math.max(1, (end - start - wait) * scale), height: ROW - 6, fill: STATUS[status] || "#888" }, row);
      if (critical) { work.setAttribute("stroke", "#111"); work.setAttribute("stroke-width", 2); row.classList.add("critical"); }
      const after = LABEL + end * scale + 4;
      if (attempts > 1) el("text", { class: "retry", x: after, y: y + 13, fill: "#b35c00" }, row).textContent = `↻ ${attempts - 1} retr${attempts === 2 ? "y" : "ies"}`;
      if (status === "failed") el("text", { class: "failure", x: after + (attempts > 1 ? 70 : 0), y: y + 13, fill: STATUS.failed }, row).textContent = "✗ failed";
    });
  }

  draw();
  window.addEventListener("resize", draw);
  document.body.setAttribute("data-drawn", "true");
  // Milliseconds from navigation to the first picture, for the benchmark.
  document.body.setAttribute("data-drawn-ms", performance.now().toFixed(1));
})();
