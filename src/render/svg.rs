//! The plan as one standalone SVG picture (`quiver plan --format svg`):
//! fan-outs folded into one box each, laid out in layers, coloured by
//! kind. Nothing in it is fetched from anywhere.

use std::fmt::{self, Write as _};

use super::Annotations;
use super::layout::{Layout, layout};
use super::view::{Group, View};
use crate::plan::Plan;

/// Colours by kind: source, transform, sink (fill, stroke).
pub const COLOURS: [(&str, &str, &str); 3] = [
    ("source", "#e3f0ff", "#3b78c4"),
    ("transform", "#eef7e8", "#4c8c3a"),
    ("sink", "#fff1e0", "#c27a21"),
];

pub const BOX_HEIGHT: f64 = 46.0;

/// A picture of the plan, one box per group.
pub struct Svg<'a>(pub &'a Plan, pub Option<&'a Annotations>);

/// The second line of a box: `fetch.synthetic · 300 merged · 5 run`.
pub fn subtitle(group: &Group, notes: Option<&Annotations>) -> String {
    let mut line = group.op.clone();
    if group.merged > 0 {
        line.push_str(&format!(" · {} merged", group.merged));
    }
    if let Some(notes) = notes {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for &m in &group.members {
            let action = notes.actions[m];
            match counts.iter_mut().find(|(a, _)| *a == action) {
                Some((_, n)) => *n += 1,
                None => counts.push((action, 1)),
            }
        }
        for (action, n) in counts {
            if group.members.len() == 1 {
                line.push_str(&format!(" · {action}"));
            } else {
                line.push_str(&format!(" · {n} {action}"));
            }
        }
    }
    line
}

/// Width and height of each group's box, from its text.
pub fn box_sizes(plan: &Plan, view: &View, notes: Option<&Annotations>) -> Vec<(f64, f64)> {
    view.groups
        .iter()
        .map(|g| {
            let chars = g
                .label(plan)
                .chars()
                .count()
                .max(subtitle(g, notes).chars().count());
            let width = (chars as f64 * 6.6 + 24.0).clamp(110.0, 360.0);
            (width, BOX_HEIGHT)
        })
        .collect()
}

pub fn laid_out(
    plan: &Plan,
    view: &View,
    notes: Option<&Annotations>,
) -> (Vec<(f64, f64)>, Layout) {
    let sizes = box_sizes(plan, view, notes);
    let edges: Vec<(usize, usize)> = view.edges.iter().map(|e| (e.from, e.to)).collect();
    let layout = layout(&sizes, &edges);
    (sizes, layout)
}

/// The path of an edge from a box to itself: a loop out of its right
/// side at (`rx`, `ry`) and back.
pub fn self_loop(rx: f64, ry: f64) -> String {
    format!(
        "M{rx:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {rx:.1},{:.1}",
        ry - 8.0,
        rx + 40.0,
        ry - 30.0,
        rx + 40.0,
        ry + 30.0,
        ry + 8.0
    )
}

/// `&`, `<`, `>` and quotes escaped for XML text and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

impl fmt::Display for Svg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (plan, notes) = (self.0, self.1);
        let view = View::of(plan);
        let (sizes, l) = laid_out(plan, &view, notes);
        writeln!(
            f,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="12">"#,
            w = l.width,
            h = l.height
        )?;
        writeln!(f, "<title>{}</title>", escape(&plan.name))?;
        f.write_str(concat!(
            r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">"##,
            r##"<path d="M0,0L10,5L0,10z" fill="#777"/></marker></defs>"##,
            "\n"
        ))?;
        writeln!(f, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##)?;
        for e in &view.edges {
            let (x1, y1) = (
                l.x[e.from] + sizes[e.from].0 / 2.0,
                l.y[e.from] + sizes[e.from].1,
            );
            let (x2, y2) = (l.x[e.to] + sizes[e.to].0 / 2.0, l.y[e.to]);
            let mid = (y1 + y2) / 2.0;
            let path = if e.from == e.to {
                // A node reading its own earlier partition: a loop on the right.
                self_loop(
                    l.x[e.from] + sizes[e.from].0,
                    l.y[e.from] + sizes[e.from].1 / 2.0,
                )
            } else {
                format!("M{x1:.1},{y1:.1} C{x1:.1},{mid:.1} {x2:.1},{mid:.1} {x2:.1},{y2:.1}")
            };
            writeln!(
                f,
                r##"<path class="edge" d="{path}" fill="none" stroke="#999" stroke-width="1.2" marker-end="url(#arrow)"/>"##
            )?;
            let (lx, ly) = if e.from == e.to {
                (
                    l.x[e.from] + sizes[e.from].0 + 44.0,
                    l.y[e.from] + sizes[e.from].1 / 2.0,
                )
            } else {
                ((x1 + x2) / 2.0, mid)
            };
            writeln!(
                f,
                r##"<text class="edge-label" x="{lx:.1}" y="{ly:.1}" text-anchor="middle" fill="#555" font-size="10">{}</text>"##,
                escape(&e.label())
            )?;
        }
        for (g, group) in view.groups.iter().enumerate() {
            let (fill, stroke) = COLOURS
                .iter()
                .find(|(kind, _, _)| *kind == group.kind.name())
                .map(|(_, fill, stroke)| (*fill, *stroke))
                .unwrap_or(("#eee", "#888"));
            let (x, y, (w, h)) = (l.x[g], l.y[g], sizes[g]);
            let mut title = String::new();
            for &m in group.members.iter().take(1) {
                let node = &plan.graph[petgraph::graph::NodeIndex::new(m)];
                if !node.aliases.is_empty() {
                    let _ = write!(title, "also declared as: {}", node.aliases.join(", "));
                }
            }
            writeln!(
                f,
                r#"<g class="node {}" data-group="{g}">"#,
                group.kind.name()
            )?;
            if !title.is_empty() {
                writeln!(f, "<title>{}</title>", escape(&title))?;
            }
            if group.members.len() > 1 {
                writeln!(
                    f,
                    r#"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{h:.1}" rx="6" fill="{fill}" stroke="{stroke}"/>"#,
                    x + 4.0,
                    y + 4.0
                )?;
            }
            writeln!(
                f,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>"#
            )?;
            writeln!(
                f,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
                x + w / 2.0,
                y + 19.0,
                escape(&group.label(plan))
            )?;
            writeln!(
                f,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555" font-size="10">{}</text>"##,
                x + w / 2.0,
                y + 35.0,
                escape(&subtitle(group, notes))
            )?;
            writeln!(f, "</g>")?;
        }
        writeln!(f, "</svg>")
    }
}
