//! The plan as a Mermaid flowchart.

use std::fmt;

use super::{Annotations, Summary};
use crate::plan::Plan;

pub struct Mermaid<'a>(pub &'a Plan, pub Option<&'a Annotations>);

/// Mermaid labels are double-quoted; quotes inside become `#quot;`.
fn esc(s: &str) -> String {
    s.replace('"', "#quot;")
}

impl fmt::Display for Mermaid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        writeln!(f, "---")?;
        writeln!(
            f,
            "title: \"{}: {}\"",
            esc(&plan.name),
            esc(&Summary(&plan.stats).to_string())
        )?;
        writeln!(f, "---")?;
        writeln!(f, "flowchart LR")?;
        if let Some(notes) = self.1 {
            writeln!(f, "  %% {}", notes.summary)?;
            writeln!(f, "  classDef run fill:#fff2cc")?;
            writeln!(f, "  classDef cached fill:#e6e6e6")?;
        }
        for (i, node) in plan.nodes() {
            let merged = match node.aliases.len() {
                0 => String::new(),
                n => format!("<br/>+{n} merged"),
            };
            let (status, class) = match self.1 {
                Some(notes) => (
                    format!("<br/>{}", esc(&notes.line(i.index()))),
                    match notes.actions[i.index()] {
                        "run" => ":::run",
                        "unselected" => "",
                        _ => ":::cached",
                    },
                ),
                None => (String::new(), ""),
            };
            writeln!(
                f,
                "  n{}[\"{}<br/><i>{}</i>{merged}{status}\"]{class}",
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
                        "  n{} -->|{}| n{}",
                        src.index(),
                        esc(&input.name),
                        i.index()
                    )?;
                }
            }
        }
        Ok(())
    }
}
