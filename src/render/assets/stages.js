// The stages page: the picture quiver drew, a panel for the clicked stage
// (its keys listed then, a page at a time), and search over stage names,
// keys and the stages merged with each.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const PAGE = 200;

  const header = html("header", undefined, document.body);
  html("h1", D.pipeline, header);
  html("span", D.summary, header, "summary");
  const tools = html("span", undefined, header, "toolbar");
  const search = html("input", undefined, tools);
  search.id = "search";
  search.placeholder = "search stages, keys, merged stages";
  const { results, canvas, details } = frame("Click a stage for its keys and inputs.");
  canvas.innerHTML = D.svg;

  const boxes = Array.from(canvas.querySelectorAll("g.stage"));
  boxes.forEach((g) => {
    g.style.cursor = "pointer";
    g.addEventListener("click", () => show(+g.getAttribute("data-stage")));
  });

  function select(i) {
    boxes.forEach((g) => {
      const on = +g.getAttribute("data-stage") === i;
      g.classList.toggle("selected", on);
      g.querySelectorAll("rect").forEach((r) => {
        r.setAttribute("stroke-width", on ? "3" : "1.5");
      });
    });
  }

  function show(i, key) {
    const s = D.stages[i];
    select(i);
    details.textContent = "";
    html("h2", s.name, details);
    const dl = html("dl", undefined, details);
    html("dt", "operator", dl);
    html("dd", s.op, dl);
    html("dt", "keys and days", dl);
    html("dd", s.space, dl);
    if (s.inputs.length) {
      html("dt", "reads", dl);
      for (const line of s.inputs) html("dd", line, dl);
    }
    if (s.same.length) {
      html("dt", "the same tasks as", dl);
      for (const [other, keys, days, tasks] of s.same) {
        html("dd", other + " (" + tasks + " tasks: " + keys + " keys" + (days ? " × " + days + " days" : "") + ")", dl);
      }
    }
    if (s.keys.length) {
      html("dt", s.keys.length + " keys", dl);
      const list = html("ul", undefined, details);
      list.id = "keys";
      let shown = 0;
      const more = html("button", "more", details);
      const page = () => {
        const end = Math.min(shown + PAGE, s.keys.length);
        for (; shown < end; shown++) {
          const li = html("li", s.keys[shown], list);
          if (s.keys[shown] === key) li.style.fontWeight = "bold";
        }
        more.hidden = shown >= s.keys.length;
      };
      more.onclick = page;
      page();
      if (key !== undefined && s.keys.indexOf(key) >= shown) {
        html("li", "… " + key, list).style.fontWeight = "bold";
      }
    }
  }

  search.addEventListener("input", () => {
    const q = search.value.trim().toLowerCase();
    results.textContent = "";
    if (!q) {
      results.hidden = true;
      return;
    }
    let found = 0;
    const add = (text, i, key) => {
      if (found++ >= 100) return;
      const row = html("div", text, results);
      row.onclick = () => {
        results.hidden = true;
        show(i, key);
      };
    };
    D.stages.forEach((s, i) => {
      if (s.name.toLowerCase().includes(q)) add(s.name, i);
      for (const [other] of s.same) {
        if (other.toLowerCase().includes(q)) add(s.name + " ≡ " + other, i);
      }
      for (const k of s.keys) {
        if (k.toLowerCase().includes(q)) add(s.name + " [" + k + "]", i, k);
      }
    });
    if (found === 0) html("div", "nothing matches", results, "hint");
    results.hidden = false;
  });

  document.body.setAttribute("data-drawn", "true");
})();
