//! The plan as one self-contained HTML page (`quiver plan --format html`):
//! the grouped, laid-out graph drawn as SVG by a small script in the page,
//! groups that expand on click, search by name, and a panel with a node's
//! operator, parameters, inputs, aliases, identity and cache status.
//!
//! Everything is in the file: no font, script or style is fetched, and the
//! page's Content-Security-Policy forbids any request, so it opens the same
//! from `file://` on a machine with no network.

use std::fmt;

use serde_json::{Value, json};

use super::svg::{COLOURS, escape, laid_out, subtitle};
use super::view::View;
use super::{Annotations, Summary};
use crate::plan::Plan;

const CSS: &str = include_str!("assets/page.css");
const PLAN_JS: &str = include_str!("assets/plan.js");
/// The element helpers both pages' scripts use.
const DOM_JS: &str = include_str!("assets/dom.js");

/// No request of any kind leaves the page.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:";

pub struct Html<'a>(pub &'a Plan, pub Option<&'a Annotations>);

/// The page's data: what the script draws.
fn data(plan: &Plan, notes: Option<&Annotations>) -> Value {
    let view = View::of(plan);
    let (sizes, layout) = laid_out(plan, &view, notes);
    let mut ops: Vec<&str> = Vec::new();
    let nodes: Vec<Value> = plan
        .nodes()
        .map(|(i, node)| {
            let op = match ops.iter().position(|o| *o == node.op) {
                Some(p) => p,
                None => {
                    ops.push(&node.op);
                    ops.len() - 1
                }
            };
            let inputs: Vec<Value> = node
                .inputs
                .iter()
                .map(|input| {
                    let from: Vec<usize> = input.source.nodes().iter().map(|n| n.index()).collect();
                    json!([input.name, from])
                })
                .collect();
            let mut v = json!({
                "i": node.id,
                "o": op,
                "p": node.params_json(),
                "h": format!("{:016x}", node.identity),
            });
            if !inputs.is_empty() {
                v["in"] = Value::Array(inputs);
            }
            if !node.aliases.is_empty() {
                v["a"] = json!(node.aliases);
            }
            if let Some(notes) = notes {
                v["c"] = json!([notes.actions[i.index()], notes.states[i.index()]]);
            }
            v
        })
        .collect();
    let groups: Vec<Value> = view
        .groups
        .iter()
        .enumerate()
        .map(|(g, group)| {
            json!({
                "k": group.key,
                "label": group.label(plan),
                "sub": subtitle(group, notes),
                "kind": group.kind.name(),
                "m": group.members,
                "w": sizes[g].0,
                "h": sizes[g].1,
                "layer": layout.layer[g],
                "order": layout.order[g],
            })
        })
        .collect();
    let edges: Vec<Value> = view
        .edges
        .iter()
        .map(|e| json!([e.from, e.to, e.label()]))
        .collect();
    let colours: serde_json::Map<String, Value> = COLOURS
        .iter()
        .map(|(kind, fill, stroke)| (kind.to_string(), json!([fill, stroke])))
        .collect();
    json!({
        "pipeline": plan.name,
        "summary": Summary(&plan.stats).to_string(),
        "forecast": notes.map(|n| n.summary.clone()),
        "ops": ops,
        "nodes": nodes,
        "groups": groups,
        "edges": edges,
        "colours": colours,
    })
}

/// JSON safe inside a `<script>` element: no `</script>` can close it early.
pub fn script_json(value: &Value) -> String {
    serde_json::to_string(value)
        .expect("JSON values always serialize")
        .replace('<', "\\u003c")
}

/// The page around a drawing script: `title`, the page's `data`, and the
/// script that draws it.
pub fn page(title: &str, data: &Value, script: &str) -> String {
    format!(
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
            "<title>{title}</title>\n<style>\n{css}</style>\n</head>\n<body>\n",
            "<script id=\"data\" type=\"application/json\">{data}</script>\n",
            "<script>\n{dom}{script}</script>\n</body>\n</html>\n"
        ),
        csp = CSP,
        title = escape(title),
        css = CSS,
        data = script_json(data),
        dom = DOM_JS,
        script = script,
    )
}

impl fmt::Display for Html<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = format!("quiver plan — {}", self.0.name);
        f.write_str(&page(&title, &data(self.0, self.1), PLAN_JS))
    }
}
