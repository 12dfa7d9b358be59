//! The plan as JSON, for tools.

use serde_json::{Value, json};

use super::{Annotations, input_sources};
use crate::plan::{Plan, Source};

/// `{pipeline, params, stats: {declared, unique, merged, merged_total}, nodes: [...]}`.
pub fn to_json(plan: &Plan, notes: Option<&Annotations>) -> Value {
    let nodes: Vec<Value> = plan
        .nodes()
        .map(|(i, node)| {
            let inputs: Vec<Value> = node
                .inputs
                .iter()
                .map(|input| {
                    let mut v = json!({ "name": input.name, "from": input_sources(plan, input) });
                    if let Source::All { key, .. } = &input.source {
                        v["key"] = json!(key);
                    }
                    v
                })
                .collect();
            let mut v = json!({
                "id": node.id,
                "op": node.op,
                "params": node.params_json(),
                "inputs": inputs,
                "aliases": node.aliases,
                "identity": format!("{:016x}", node.identity),
            });
            if let Some(notes) = notes {
                v["cache"] = json!({
                    "action": notes.actions[i.index()],
                    "state": notes.states[i.index()],
                    "key": notes.keys[i.index()],
                });
            }
            v
        })
        .collect();
    let mut out = json!({
        "pipeline": plan.name,
        "params": plan.params,
        "stats": {
            "declared": plan.stats.declared,
            "unique": plan.stats.unique,
            "merged": plan.stats.merged,
            "merged_total": plan.stats.merged_total(),
            "unique_by_op": plan.count_by_op(),
        },
        "nodes": nodes,
    });
    if let Some(notes) = notes {
        out["forecast"] = json!(notes.summary);
    }
    out
}
