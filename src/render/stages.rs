//! The stages as written (`quiver plan --stages`): one entry per declared
//! node with its keys and days, how it reads each input, and the stages
//! that declare the same tasks; drawn from the stage count, without a node
//! per trading day.

use std::fmt;

use super::Summary;
use crate::compile::Validated;
use crate::compile::stages::{Read, Stage};

pub struct StagesText<'a>(pub &'a Validated);

impl fmt::Display for StagesText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let stages = &v.stages.stages;
        writeln!(
            f,
            "{}: {} stage{} as written, {}",
            v.name,
            stages.len(),
            if stages.len() == 1 { "" } else { "s" },
            Summary(&v.stats)
        )?;
        let name_width = stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
        let op_width = stages.iter().map(|s| s.op.len()).max().unwrap_or(0);
        for stage in stages {
            writeln!(
                f,
                "{:<name_width$}  {:<op_width$}  {}",
                stage.name,
                stage.op,
                space(stage, true)
            )?;
            for input in &stage.inputs {
                let every = if input.every_key { "[*]" } else { "" };
                let read = match input.read {
                    Read::SameDay => "the same day".to_string(),
                    Read::Window(1) => "the day and the one before".to_string(),
                    Read::Window(n) => format!("the day and the {n} before"),
                    Read::Previous => "the day before".to_string(),
                    Read::WholeRange => "every day".to_string(),
                    Read::Once => "once".to_string(),
                };
                writeln!(f, "    {} ← {}{every}, {read}", input.name, input.from)?;
            }
            for same in &stage.same_as {
                let over = if same.keys * same.days.max(1) == same.tasks {
                    match same.days {
                        0 => format!("over {} key{}", same.keys, plural(same.keys)),
                        d => format!("over {} × {d}", same.keys),
                    }
                } else {
                    format!("on {} tasks", same.tasks)
                };
                writeln!(f, "    ≡ {} {over}", same.stage)?;
            }
        }
        Ok(())
    }
}

/// `30 keys × 5 days (2026-01-05 … 2026-01-09)`, `5 days (…)`, `30 keys`
/// or `once`; the dates only with `dates`.
pub(super) fn space(stage: &Stage, dates: bool) -> String {
    let keys = stage.keys.len();
    let keys = (keys > 0).then(|| format!("{keys} key{}", plural(keys)));
    let days = stage.days.as_ref().map(|d| {
        let mut text = format!("{} day{}", d.count, plural(d.count));
        if dates {
            text.push_str(&format!(" ({} … {})", d.first, d.last));
        }
        text
    });
    match (keys, days) {
        (Some(k), Some(d)) => format!("{k} × {d}"),
        (Some(k), None) => k,
        (None, Some(d)) => d,
        (None, None) => "once".to_string(),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `{pipeline, stats, stages: [...]}`.
pub fn stages_json(v: &Validated) -> String {
    let value = serde_json::json!({
        "pipeline": v.name,
        "stats": {
            "declared": v.stats.declared,
            "unique": v.stats.unique,
            "merged": v.stats.merged,
            "merged_total": v.stats.merged_total(),
        },
        "stages": v.stages.stages,
    });
    serde_json::to_string_pretty(&value).expect("the stage plan serialises")
}
