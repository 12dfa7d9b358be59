//! Pictures of the stages as written (`quiver plan --stages --format
//! svg|html|dot|mermaid`): one box per declared node with its key space,
//! edges labelled with the inputs they carry and how each is read, no box
//! for the concatenations of days. Edge labels are placed so that no two
//! overlap, nor a label and a box.
//!
//! The page adds what a click and a search need: a stage's keys are listed
//! when it is clicked (built then, a page at a time), and search matches
//! stage names, keys and the stages merged with one.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Summary;
use super::html::page;
use super::layout::{Layout, layout};
use super::stages::space;
use super::svg::{BOX_HEIGHT, COLOURS, escape, self_loop};
use crate::compile::Validated;
use crate::compile::stages::{Read, Stage};

const STAGES_JS: &str = include_str!("assets/stages.js");

/// Width of a character of the 10px labels, with room to spare: the
/// browser's own measure is smaller, so labels kept this far apart never
/// touch.
const LABEL_CHAR: f64 = 6.2;
const LABEL_HEIGHT: f64 = 14.0;

/// An edge between two stages and the inputs it carries.
struct Edge {
    from: usize,
    to: usize,
    label: String,
}

/// A picture's geometry: boxes, edges and where each edge's label goes.
struct Picture {
    /// Stage indexes in drawing order (inputs first).
    order: Vec<usize>,
    sizes: Vec<(f64, f64)>,
    layout: Layout,
    edges: Vec<Edge>,
    /// Per edge: the label's centre.
    labels: Vec<(f64, f64)>,
}

fn kind(stage: &Stage) -> &'static str {
    if stage.sink {
        "sink"
    } else if stage.inputs.is_empty() {
        "source"
    } else {
        "transform"
    }
}

fn read_text(read: &Read) -> String {
    match read {
        Read::SameDay => "same day".to_string(),
        Read::Window(1) => "1 day back".to_string(),
        Read::Window(n) => format!("{n} days back"),
        Read::Previous => "day before".to_string(),
        Read::WholeRange => "every day".to_string(),
        Read::Once => "once".to_string(),
    }
}

fn subtitle(stage: &Stage) -> String {
    format!("{} · {}", stage.op, space(stage, false))
}

/// Stages in an order where every stage comes after those it reads (ties
/// in declaration order), and the edges between them.
fn graph(stages: &[Stage]) -> (Vec<usize>, Vec<Edge>) {
    let index = |name: &str| stages.iter().position(|s| s.name == name);
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    let mut edges: Vec<Edge> = Vec::new();
    for (to, stage) in stages.iter().enumerate() {
        for input in &stage.inputs {
            let Some(from) = index(&input.from) else {
                continue;
            };
            let every = if input.every_key { "[*]" } else { "" };
            let text = format!("{}{every} · {}", input.name, read_text(&input.read));
            match edges.iter_mut().find(|e| e.from == from && e.to == to) {
                Some(e) => {
                    e.label.push_str(", ");
                    e.label.push_str(&text);
                }
                None => edges.push(Edge {
                    from,
                    to,
                    label: text,
                }),
            }
            if from != to {
                deps[to].push(from);
            }
        }
    }
    let mut done = vec![false; stages.len()];
    let mut order = Vec::with_capacity(stages.len());
    while order.len() < stages.len() {
        let before = order.len();
        for s in 0..stages.len() {
            if !done[s] && deps[s].iter().all(|&d| done[d]) {
                done[s] = true;
                order.push(s);
            }
        }
        if order.len() == before {
            // A cycle (already an error): the rest in declaration order.
            order.extend((0..stages.len()).filter(|&s| !done[s]));
            break;
        }
    }
    (order, edges)
}

fn label_size(text: &str) -> (f64, f64) {
    (text.chars().count() as f64 * LABEL_CHAR + 8.0, LABEL_HEIGHT)
}

fn overlaps(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
}

fn picture(stages: &[Stage]) -> Picture {
    let (order, edges) = graph(stages);
    // Boxes are numbered in drawing order for the layout.
    let place: Vec<usize> = {
        let mut p = vec![0; stages.len()];
        for (i, &s) in order.iter().enumerate() {
            p[s] = i;
        }
        p
    };
    let sizes: Vec<(f64, f64)> = order
        .iter()
        .map(|&s| {
            let chars = stages[s]
                .name
                .chars()
                .count()
                .max(subtitle(&stages[s]).chars().count());
            ((chars as f64 * 6.6 + 24.0).clamp(110.0, 420.0), BOX_HEIGHT)
        })
        .collect();
    let placed: Vec<(usize, usize)> = edges.iter().map(|e| (place[e.from], place[e.to])).collect();
    let mut layout = layout(&sizes, &placed);
    let boxes: Vec<(f64, f64, f64, f64)> = (0..sizes.len())
        .map(|b| (layout.x[b], layout.y[b], sizes[b].0, sizes[b].1))
        .collect();
    let mut taken: Vec<(f64, f64, f64, f64)> = boxes.clone();
    let mut labels = Vec::with_capacity(edges.len());
    for (e, &(from, to)) in edges.iter().zip(&placed) {
        let (w, h) = label_size(&e.label);
        let candidates: Vec<(f64, f64)> = if from == to {
            // A stage reading its own day before: a loop on the right.
            let (x, y) = (boxes[from].0 + boxes[from].2, boxes[from].1);
            (0..40)
                .map(|k| (x + 44.0 + w / 2.0 + k as f64 * 8.0, y + BOX_HEIGHT / 2.0))
                .collect()
        } else {
            let (x1, y1) = (
                boxes[from].0 + boxes[from].2 / 2.0,
                boxes[from].1 + BOX_HEIGHT,
            );
            let (x2, y2) = (boxes[to].0 + boxes[to].2 / 2.0, boxes[to].1);
            // Along the edge first, then to either side of its middle.
            let along = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78].map(|t: f64| {
                let u = 1.0 - t;
                // The cubic from (x1,y1) via (x1,mid), (x2,mid) to (x2,y2).
                let x =
                    u * u * u * x1 + 3.0 * u * u * t * x1 + 3.0 * u * t * t * x2 + t * t * t * x2;
                (x, y1 + (y2 - y1) * t)
            });
            let (mx, my) = along[0];
            along
                .into_iter()
                .chain((1..200).flat_map(|k| {
                    let dx = k as f64 * 12.0;
                    [(mx + dx, my), (mx - dx, my)]
                }))
                .collect()
        };
        let at = candidates
            .iter()
            .copied()
            .find(|&(cx, cy)| {
                let r = (cx - w / 2.0, cy - h / 2.0, w, h);
                r.0 >= 0.0 && !taken.iter().any(|&t| overlaps(r, t))
            })
            .unwrap_or(candidates[0]);
        taken.push((at.0 - w / 2.0, at.1 - h / 2.0, w, h));
        labels.push(at);
    }
    // Labels pushed to the right widen the picture.
    let right = taken.iter().map(|t| t.0 + t.2).fold(layout.width, f64::max);
    layout.width = right + 20.0;
    let edges = edges
        .into_iter()
        .zip(&placed)
        .map(|(e, &(from, to))| Edge {
            from,
            to,
            label: e.label,
        })
        .collect();
    Picture {
        order,
        sizes,
        layout,
        edges,
        labels,
    }
}

/// The picture as SVG.
fn svg(v: &Validated, p: &Picture) -> String {
    let stages = &v.stages.stages;
    let l = &p.layout;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="12">"#,
        w = l.width,
        h = l.height
    );
    let _ = writeln!(out, "<title>{}</title>", escape(&v.name));
    out.push_str(concat!(
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">"##,
        r##"<path d="M0,0L10,5L0,10z" fill="#777"/></marker></defs>"##,
        "\n"
    ));
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let size = |b: usize| p.sizes[b];
    for (e, &(lx, ly)) in p.edges.iter().zip(&p.labels) {
        let path = if e.from == e.to {
            self_loop(l.x[e.from] + size(e.from).0, l.y[e.from] + BOX_HEIGHT / 2.0)
        } else {
            let (x1, y1) = (l.x[e.from] + size(e.from).0 / 2.0, l.y[e.from] + BOX_HEIGHT);
            let (x2, y2) = (l.x[e.to] + size(e.to).0 / 2.0, l.y[e.to]);
            let mid = (y1 + y2) / 2.0;
            format!("M{x1:.1},{y1:.1} C{x1:.1},{mid:.1} {x2:.1},{mid:.1} {x2:.1},{y2:.1}")
        };
        let _ = writeln!(
            out,
            r##"<path class="edge" d="{path}" fill="none" stroke="#999" stroke-width="1.2" marker-end="url(#arrow)"/>"##
        );
        let (w, h) = label_size(&e.label);
        let _ = writeln!(
            out,
            r##"<rect class="edge-label-bg" x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" fill="#ffffff" opacity="0.85"/>"##,
            lx - w / 2.0,
            ly - h / 2.0
        );
        let _ = writeln!(
            out,
            r##"<text class="edge-label" x="{lx:.1}" y="{:.1}" text-anchor="middle" fill="#555" font-size="10">{}</text>"##,
            ly + 3.5,
            escape(&e.label)
        );
    }
    for (b, &s) in p.order.iter().enumerate() {
        let stage = &stages[s];
        let (fill, stroke) = COLOURS
            .iter()
            .find(|(k, _, _)| *k == kind(stage))
            .map(|(_, fill, stroke)| (*fill, *stroke))
            .unwrap_or(("#eee", "#888"));
        let (x, y, (w, h)) = (l.x[b], l.y[b], size(b));
        let _ = writeln!(out, r#"<g class="stage {}" data-stage="{s}">"#, kind(stage));
        let same: Vec<&str> = stage.same_as.iter().map(|m| m.stage.as_str()).collect();
        if !same.is_empty() {
            let _ = writeln!(
                out,
                "<title>the same tasks as: {}</title>",
                escape(&same.join(", "))
            );
        }
        if stage.keys.len() > 1 || stage.days.as_ref().is_some_and(|d| d.count > 1) {
            let _ = writeln!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" rx="6" fill="{fill}" stroke="{stroke}"/>"#,
                x + 4.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            x + w / 2.0,
            y + 19.0,
            escape(&stage.name)
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555" font-size="10">{}</text>"##,
            x + w / 2.0,
            y + 35.0,
            escape(&subtitle(stage))
        );
        let _ = writeln!(out, "</g>");
    }
    out.push_str("</svg>\n");
    out
}

/// `quiver plan --stages --format svg`.
pub fn stages_svg(v: &Validated) -> String {
    svg(v, &picture(&v.stages.stages))
}

/// `quiver plan --stages --format html`: the picture, a panel for the
/// clicked stage with its keys, and search.
pub fn stages_html(v: &Validated) -> String {
    let p = picture(&v.stages.stages);
    let data = json!({
        "pipeline": v.name,
        "summary": Summary(&v.stats).to_string(),
        "svg": svg(v, &p),
        "stages": v.stages.stages.iter().map(|s| json!({
            "name": s.name,
            "op": s.op,
            "space": space(s, true),
            "keys": s.keys,
            "inputs": s.inputs.iter().map(|i| {
                let every = if i.every_key { "[*]" } else { "" };
                format!("{} ← {}{every}, {}", i.name, i.from, read_text(&i.read))
            }).collect::<Vec<_>>(),
            "same": s.same_as.iter().map(|m| json!([m.stage, m.keys, m.days, m.tasks])).collect::<Vec<_>>(),
        })).collect::<Vec<Value>>(),
    });
    page(&format!("quiver stages — {}", v.name), &data, STAGES_JS)
}

/// `quiver plan --stages --format dot`.
pub fn stages_dot(v: &Validated) -> String {
    let stages = &v.stages.stages;
    let (_, edges) = graph(stages);
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, style=rounded];\n",
        v.name
    );
    for (i, s) in stages.iter().enumerate() {
        let _ = writeln!(
            out,
            "  s{i} [label=\"{}\\n{}\"];",
            s.name.replace('"', "\\\""),
            subtitle(s).replace('"', "\\\"")
        );
    }
    for e in &edges {
        let _ = writeln!(
            out,
            "  s{} -> s{} [label=\"{}\"];",
            e.from,
            e.to,
            e.label.replace('"', "\\\"")
        );
    }
    out.push_str("}\n");
    out
}

/// `quiver plan --stages --format mermaid`.
pub fn stages_mermaid(v: &Validated) -> String {
    let stages = &v.stages.stages;
    let (_, edges) = graph(stages);
    let clean = |t: &str| t.replace('"', "'");
    let mut out = String::from("flowchart TD\n");
    for (i, s) in stages.iter().enumerate() {
        let _ = writeln!(
            out,
            "  s{i}[\"{}<br/>{}\"]",
            clean(&s.name),
            clean(&subtitle(s))
        );
    }
    for e in &edges {
        let _ = writeln!(out, "  s{} -->|\"{}\"| s{}", e.from, clean(&e.label), e.to);
    }
    out
}
