//! The plan as text: the dedupe summary, then one line per node in
//! dependency order.

use std::fmt;

use super::{Annotations, Summary, describe_input};
use crate::plan::Plan;

pub struct Text<'a>(pub &'a Plan, pub Option<&'a Annotations>);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        if let Some(notes) = self.1 {
            writeln!(f, "{}", notes.summary)?;
        }
        writeln!(f, "{}", Summary(&plan.stats))?;
        writeln!(f, "pipeline {} ({})", plan.name, plan.file.display())?;
        let width = plan.nodes().map(|(_, n)| n.op.len()).max().unwrap_or(0);
        for (i, node) in plan.nodes() {
            write!(f, "{:>4}  {:<width$}  {}", i.index(), node.op, node.id)?;
            if !node.inputs.is_empty() {
                let inputs: Vec<String> = node
                    .inputs
                    .iter()
                    .map(|inp| describe_input(plan, inp))
                    .collect();
                write!(f, "  [{}]", inputs.join(", "))?;
            }
            match node.aliases.len() {
                0 => {}
                1..=3 => write!(f, "  (also {})", node.aliases.join(", "))?,
                n => write!(
                    f,
                    "  (also {}, … {} more)",
                    node.aliases[..2].join(", "),
                    n - 2
                )?,
            }
            if let Some(notes) = self.1 {
                write!(f, "  — {}", notes.line(i.index()))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
