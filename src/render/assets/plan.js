// Draws the plan from the page's data: groups laid out by quiver (layer and
// order), expanded in place on click, searched by name.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const GAP_X = 28, GAP_Y = 64, MARGIN = 20;
  // An expanded group shows at most this many members; search finds the rest.
  const SHOWN = 600, MEMBER_H = 28, FRAME_HEAD = 26, PAD = 10;
  const expanded = new Set();
  let selected = null, zoom = 1;

  const groupOf = new Array(D.nodes.length);
  D.groups.forEach((g, gi) => g.m.forEach((n) => { groupOf[n] = gi; }));


  // Page frame: header with the dedupe summary, canvas, details panel.
  const header = html("header", undefined, document.body);
  html("h1", D.pipeline, header);
  html("span", D.summary, header, "summary");
  if (D.forecast) html("span", D.forecast, header, "forecast");
  const legend = html("span", undefined, header, "legend");
  for (const kind of ["source", "transform", "sink"]) {
    const s = html("span", kind, legend);
    s.style.background = D.colours[kind][0];
    s.style.borderColor = D.colours[kind][1];
  }
  const tools = html("span", undefined, header, "toolbar");
  const search = html("input", undefined, tools);
  search.id = "search";
  search.placeholder = "search nodes by name";
  for (const [label, f] of [["−", 1 / 1.25], ["+", 1.25]]) {
    const b = html("button", label, tools);
    b.onclick = () => { zoom *= f; draw(); };
  }
  const { results, canvas, details } =
    frame("Click a box to see its node; click a group (×N) to expand it.");

  function memberWidth(g) {
    let chars = 0;
    const shown = Math.min(g.m.length, SHOWN);
    for (let i = 0; i < shown; i++) chars = Math.max(chars, D.nodes[g.m[i]].i.length);
    return Math.min(Math.max(chars * 6.4 + 16, 90), 280);
  }

  // Box sizes: a group's own, or the frame holding its members.
  function sizes() {
    return D.groups.map((g) => {
      if (!expanded.has(g) || g.m.length < 2) return { w: g.w, h: g.h };
      const shown = Math.min(g.m.length, SHOWN);
      const cols = Math.max(1, Math.min(shown, Math.ceil(Math.sqrt(shown * 2.5))));
      const rows = Math.ceil(shown / cols) + (g.m.length > shown ? 1 : 0);
      const mw = memberWidth(g);
      g.grid = { cols, mw };
      return {
        w: Math.max(g.w, cols * (mw + 6) - 6 + 2 * PAD),
        h: FRAME_HEAD + rows * (MEMBER_H + 6) - 6 + 2 * PAD,
      };
    });
  }

  // Layers stacked, each centred on the widest: quiver's placement.
  function place(size) {
    const rows = [];
    D.groups.forEach((g, gi) => { (rows[g.layer] = rows[g.layer] || []).push(gi); });
    const width = (row) => row.reduce((s, gi) => s + size[gi].w, 0) + GAP_X * (row.length - 1);
    let widest = 0;
    for (const row of rows) if (row) { row.sort((a, b) => D.groups[a].order - D.groups[b].order); widest = Math.max(widest, width(row)); }
    const pos = new Array(D.groups.length);
    let top = MARGIN;
    for (const row of rows) {
      if (!row) continue;
      let left = MARGIN + (widest - width(row)) / 2;
      const tallest = Math.max(...row.map((gi) => size[gi].h));
      for (const gi of row) {
        pos[gi] = { x: left, y: top + (tallest - size[gi].h) / 2 };
        left += size[gi].w + GAP_X;
      }
      top += tallest + GAP_Y;
    }
    return { pos, width: widest + 2 * MARGIN, height: top - GAP_Y + MARGIN };
  }

  function box(parent, x, y, w, h, kind, stacked) {
    const [fill, stroke] = D.colours[kind];
    if (stacked) el("rect", { x: x + 4, y: y + 4, width: w, height: h, rx: 6, fill, stroke }, parent);
    el("rect", { class: "box", x, y, width: w, height: h, rx: 6, fill, stroke, "stroke-width": 1.5 }, parent);
  }

  function draw() {
    const size = sizes();
    const { pos, width, height } = place(size);
    canvas.textContent = "";
    const svg = el("svg", { width: width * zoom, height: height * zoom, viewBox: `0 0 ${width} ${height}`, "font-family": "sans-serif", "font-size": 12 }, canvas);
    const defs = el("defs", {}, svg);
    const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0L10,5L0,10z", fill: "#777" }, marker);
    const edges = el("g", {}, svg);
    for (const [from, to, label] of D.edges) {
      const a = pos[from], b = pos[to];
      let d, lx, ly;
      if (from === to) {
        const rx = a.x + size[from].w, ry = a.y + size[from].h / 2;
        d = `M${rx},${ry - 8} C${rx + 40},${ry - 30} ${rx + 40},${ry + 30} ${rx},${ry + 8}`;
        lx = rx + 44; ly = ry;
      } else {
        const x1 = a.x + size[from].w / 2, y1 = a.y + size[from].h;
        const x2 = b.x + size[to].w / 2, y2 = b.y, mid = (y1 + y2) / 2;
        d = `M${x1},${y1} C${x1},${mid} ${x2},${mid} ${x2},${y2}`;
        lx = (x1 + x2) / 2; ly = mid;
      }
      el("path", { class: "edge", d, "marker-end": "url(#arrow)" }, edges);
      el("text", { class: "edge-label", x: lx, y: ly, "text-anchor": "middle" }, edges).textContent = label;
    }
    D.groups.forEach((g, gi) => {
      const { x, y } = pos[gi], { w, h } = size[gi];
      if (expanded.has(g) && g.m.length > 1) {
        const frame = el("g", { class: "frame", "data-group": gi }, svg);
        el("rect", { x, y, width: w, height: h, rx: 8 }, frame);
        const head = el("text", { x: x + PAD, y: y + 18 }, frame);
        head.textContent = `▾ ${g.label} — click to fold`;
        head.onclick = () => { expanded.delete(g); draw(); };
        const { cols, mw } = g.grid;
        const shown = Math.min(g.m.length, SHOWN);
        for (let i = 0; i < shown; i++) {
          const n = g.m[i];
          const mx = x + PAD + (i % cols) * (mw + 6), my = y + FRAME_HEAD + PAD + Math.floor(i / cols) * (MEMBER_H + 6);
          const node = el("g", { class: "node member", "data-node": n }, frame);
          box(node, mx, my, mw, MEMBER_H, g.kind, false);
          const t = el("text", { x: mx + mw / 2, y: my + 18, "text-anchor": "middle", "font-size": 11 }, node);
          t.textContent = D.nodes[n].i;
          node.onclick = (e) => { e.stopPropagation(); show(n); };
          if (selected === n) node.classList.add("selected");
        }
        if (g.m.length > shown) {
          const t = el("text", { x: x + PAD, y: y + h - PAD, class: "hint" }, frame);
          t.textContent = `… and ${g.m.length - shown} more: search to find one`;
        }
        return;
      }
      const single = g.m.length === 1;
      const node = el("g", { class: single ? "node" : "node group", "data-group": gi }, svg);
      if (single) node.setAttribute("data-node", g.m[0]);
      box(node, x, y, w, h, g.kind, !single);
      const t1 = el("text", { x: x + w / 2, y: y + 19, "text-anchor": "middle", "font-weight": "bold" }, node);
      t1.textContent = g.label;
      const t2 = el("text", { x: x + w / 2, y: y + 35, "text-anchor": "middle", fill: "#555", "font-size": 10 }, node);
      t2.textContent = g.sub;
      node.onclick = () => {
        if (single) show(g.m[0]);
        else { expanded.add(g); draw(); }
      };
      if (single && selected === g.m[0]) node.classList.add("selected");
    });
  }

  function show(n) {
    selected = n;
    const node = D.nodes[n];
    const g = D.groups[groupOf[n]];
    details.textContent = "";
    html("h2", node.i, details);
    const dl = html("dl", undefined, details);
    const row = (term, value, pre) => {
      html("dt", term, dl);
      const dd = html("dd", undefined, dl);
      if (pre) html("pre", value, dd); else dd.textContent = value;
    };
    row("operator", `${D.ops[node.o]} (${g.kind})`);
    row("parameters", JSON.stringify(node.p, null, 2), true);
    const inputs = (node.in || []).map(([name, from]) => {
      const ids = from.slice(0, 12).map((f) => D.nodes[f].i);
      const more = from.length > 12 ? `, … ${from.length - 12} more` : "";
      return `${name} ← ${ids.join(", ")}${more}`;
    });
    row("inputs", inputs.length ? inputs.join("\n") : "none (a source)", true);
    const aliases = node.a || [];
    row("merged", aliases.length ? `${aliases.length + 1} declarations: also ${aliases.join(", ")}` : "declared once");
    row("identity", node.h);
    if (node.c) row("cache", `${node.c[0]} · ${node.c[1]}`);
    row("group", `${g.k} (${g.m.length} node${g.m.length === 1 ? "" : "s"})`);
    if (g.m.length > 1) expanded.add(g);
    draw();
    const mark = canvas.querySelector("g.node.selected");
    if (mark && mark.scrollIntoView) mark.scrollIntoView({ block: "center", inline: "center" });
  }

  search.oninput = () => {
    const q = search.value.trim().toLowerCase();
    results.textContent = "";
    if (!q) { results.hidden = true; return; }
    let found = 0;
    for (let n = 0; n < D.nodes.length && found < 50; n++) {
      const node = D.nodes[n];
      const names = [node.i].concat(node.a || []);
      const hit = names.find((name) => name.toLowerCase().includes(q));
      if (hit === undefined) continue;
      found++;
      const r = html("div", hit === node.i ? node.i : `${hit} → ${node.i}`, results);
      r.onclick = () => { results.hidden = true; show(n); };
    }
    if (!found) html("div", "no node matches", results);
    results.hidden = false;
  };

  draw();
  document.body.setAttribute("data-drawn", "true");
  // Milliseconds from navigation to the first picture, for the benchmark.
  document.body.setAttribute("data-drawn-ms", performance.now().toFixed(1));
})();
