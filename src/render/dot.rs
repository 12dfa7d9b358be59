//! The plan as Graphviz DOT.

use std::fmt;

use super::Summary;
use crate::plan::Plan;

pub struct Dot<'a>(pub &'a Plan);

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
        writeln!(f, "  labelloc=t;")?;
        writeln!(f, "  rankdir=LR;")?;
        writeln!(f, "  node [shape=box, fontname=\"Helvetica\"];")?;
        for (i, node) in plan.nodes() {
            let merged = match node.aliases.len() {
                0 => String::new(),
                n => format!("\\n(+{n} merged)"),
            };
            let style = if node.aliases.is_empty() {
                ""
            } else {
                ", style=bold"
            };
            writeln!(
                f,
                "  n{} [label=\"{}\\n{}{merged}\"{style}];",
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
