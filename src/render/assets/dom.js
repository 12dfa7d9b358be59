// Shared by the plan and the timeline pages: making SVG and HTML elements.
"use strict";
const SVG_NS = "http://www.w3.org/2000/svg";

// An SVG element with attributes, appended to `parent`.
function el(name, attrs, parent) {
  const e = document.createElementNS(SVG_NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

// An HTML element with text and a class, appended to `parent`.
function html(tag, text, parent, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

// The page below its header: a search results list, and a main area with
// the picture's canvas and a details panel showing `hint` at first.
function frame(hint) {
  const results = html("div", undefined, document.body);
  results.id = "results";
  results.hidden = true;
  const main = html("main", undefined, document.body);
  const canvas = html("div", undefined, main);
  canvas.id = "canvas";
  const details = html("aside", undefined, main);
  details.id = "details";
  html("p", hint, details, "hint");
  return { results, canvas, details };
}
