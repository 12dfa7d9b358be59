//! Renderers: pure adapters from a [`Plan`] to text. None of them changes
//! or recomputes the plan.

mod dot;
pub mod html;
mod json;
pub mod layout;
mod mermaid;
mod stage_picture;
mod stages;
pub mod svg;
mod text;
pub mod timeline;
pub mod view;

use std::fmt;

use crate::plan::{Plan, PlanInput, Source, Stats};

pub use dot::Dot;
pub use html::Html;
pub use json::to_json;
pub use mermaid::Mermaid;
pub use stage_picture::{stages_dot, stages_html, stages_mermaid, stages_svg};
pub use stages::{StagesText, stages_json};
pub use svg::Svg;
pub use text::Text;

/// The formats `quiver plan` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Dot,
    Mermaid,
    Json,
    /// One standalone SVG picture.
    Svg,
    /// One self-contained page: the picture, search and node details.
    Html,
}

/// What a run would do with each node, shown beside it: made by
/// [`crate::cache`] from its forecast.
#[derive(Debug, Clone, Default)]
pub struct Annotations {
    /// The first line: `127 nodes: 90 cached, 37 to run`.
    pub summary: String,
    /// Per node: what the run does (`run`, `load`, `keep`, `unselected`).
    pub actions: Vec<&'static str>,
    /// Per node: whether it is cached, and why not (`stale: …`).
    pub states: Vec<String>,
    /// Per node: its cache key (short).
    pub keys: Vec<String>,
}

impl Annotations {
    /// `run · stale: parameter end: … → …`, for node `i`.
    fn line(&self, i: usize) -> String {
        format!("{} · {}", self.actions[i], self.states[i])
    }
}

/// Renders `plan` in `format`.
pub fn render(plan: &Plan, format: Format) -> String {
    render_with(plan, format, None)
}

/// Renders `plan` in `format`, each node with what a run would do.
pub fn render_with(plan: &Plan, format: Format, notes: Option<&Annotations>) -> String {
    let out = match format {
        Format::Text => Text(plan, notes).to_string(),
        Format::Dot => Dot(plan, notes).to_string(),
        Format::Mermaid => Mermaid(plan, notes).to_string(),
        Format::Json => serde_json::to_string_pretty(&to_json(plan, notes))
            .expect("JSON values always serialize"),
        Format::Svg => Svg(plan, notes).to_string(),
        Format::Html => Html(plan, notes).to_string(),
    };
    if plan.secrets.is_empty() {
        out
    } else {
        plan.secrets.redact(&out)
    }
}

/// `150 declared nodes → 90 unique (60 merged: fetch.synthetic ×60)`.
pub struct Summary<'a>(pub &'a Stats);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let plural = if s.declared == 1 { "" } else { "s" };
        write!(
            f,
            "{} declared node{plural} → {} unique",
            s.declared, s.unique
        )?;
        if s.merged.is_empty() {
            return f.write_str(" (nothing merged)");
        }
        write!(f, " ({} merged: ", s.merged_total())?;
        for (i, (op, n)) in s.merged.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{op} ×{n}")?;
        }
        f.write_str(")")
    }
}

/// The ids of the nodes an input reads.
fn input_sources<'p>(plan: &'p Plan, input: &PlanInput) -> Vec<&'p str> {
    input
        .source
        .nodes()
        .into_iter()
        .map(|n| plan.graph[n].id.as_str())
        .collect()
}

/// `ticks ← a`, `ticks ← {a, b} by symbol` or `ticks ← a, … (30 by symbol)`.
fn describe_input(plan: &Plan, input: &PlanInput) -> String {
    match &input.source {
        Source::One(n) => format!("{} ← {}", input.name, plan.graph[*n].id),
        Source::All { key, members } => {
            let ids: Vec<&str> = members
                .iter()
                .map(|(_, n)| plan.graph[*n].id.as_str())
                .collect();
            match ids.as_slice() {
                [] => format!("{} ← nothing (0 by {key})", input.name),
                few if few.len() <= 3 => {
                    format!("{} ← {{{}}} by {key}", input.name, few.join(", "))
                }
                [first, ..] => format!("{} ← {first}, … ({} by {key})", input.name, ids.len()),
            }
        }
    }
}
