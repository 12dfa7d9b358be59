//! The plan as Graphviz DOT.

use std::fmt;

use super::{Annotations, Summary};
use crate::plan::Plan;

pub struct Dot<'a>(pub &'a Plan, pub Option<&'a Annotations>);

/// Escapes text for a double-quoted DOT string.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl fmt::Display for Dot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        writeln!(f, "digraph \"{}\" {{", esc(&plan.name))?;
        writeln!(
            f,
            "  label=\"{}: {}\";",
            esc(&plan.name),
            esc(&Summary(&plan.stats).to_string())
        )?;
        if let Some(notes) = self.1 {
            writeln!(f, "  // {}", esc(&notes.summary))?;
        }
        writeln!(f, "  labelloc=t;")?;
        writeln!(f, "  rankdir=LR;")?;
        writeln!(f, "  node [shape=box, fontname=\"Helvetica\"];")?;
        for (i, node) in plan.nodes() {
            let merged = match node.aliases.len() {
                0 => String::new(),
                n => format!("\\n(+{n} merged)"),
            };
            let mut style = if node.aliases.is_empty() {
                String::new()
            } else {
                ", style=bold".to_string()
            };
            let mut status = String::new();
            if let Some(notes) = self.1 {
                status = format!("\\n{}", esc(&notes.line(i.index())));
                // Cached nodes grey, nodes that run filled.
                let fill = match notes.actions[i.index()] {
                    "run" => "#fff2cc",
                    "unselected" => "#ffffff",
                    _ => "#e6e6e6",
                };
                let bold = if node.aliases.is_empty() { "" } else { ",bold" };
                style = format!(", style=\"filled{bold}\", fillcolor=\"{fill}\"");
            }
            writeln!(
                f,
                "  n{} [label=\"{}\\n{}{merged}{status}\"{style}];",
                i.index(),
                esc(&node.id),
                esc(&node.op)
            )?;
        }
        for (i, node) in plan.nodes() {
            for input in &node.inputs {
                for src in input.source.nodes() {
                    writeln!(
                        f,
                        "  n{} -> n{} [label=\"{}\"];",
                        src.index(),
                        i.index(),
                        esc(&input.name)
                    )?;
                }
            }
        }
        writeln!(f, "}}")
    }
}
