use std::process::ExitCode;

use clap::Args;
use quiver::diag::did_you_mean;
use quiver::operators::{Effect, OperatorDef, Workload, registry};

#[derive(Args)]
pub struct OpsArgs {
    /// Show one operator's parameters.
    name: Option<String>,
}

pub fn ops(args: OpsArgs) -> anyhow::Result<ExitCode> {
    let reg = registry();
    let Some(name) = args.name else {
        for def in reg.iter() {
            println!("{:<18} {}", def.name(), first_sentence(def.doc()));
        }
        println!("\n`quiver ops NAME` shows an operator's parameters.");
        return Ok(ExitCode::SUCCESS);
    };
    let Some(def) = reg.get(&name) else {
        eprintln!(
            "error: unknown operator '{name}'{}",
            did_you_mean(&name, reg.names())
        );
        return Ok(ExitCode::from(super::EXIT_INVALID));
    };
    print!("{}", describe(def));
    Ok(ExitCode::SUCCESS)
}

/// The operator's doc and a table of its parameters, from its JSON schema.
fn describe(def: &dyn OperatorDef) -> String {
    let mut out = format!("{}\n\n{}\n\n", def.name(), def.doc());
    let kind = match (def.effect(), def.workload()) {
        (Effect::Sink, _) => "sink (never merged)",
        (Effect::Pure, Workload::Io) => "pure, I/O-bound (identical nodes are merged)",
        (Effect::Pure, Workload::Cpu) => "pure, compute (identical nodes are merged)",
    };
    out.push_str(&format!(
        "kind: {kind}\ninputs: {}\n\nparameters (with:):\n",
        def.arity()
    ));
    let schema = def.params_schema();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
        out.push_str("  (none)\n");
        return out;
    };
    for (name, prop) in props {
        let ty = type_name(prop, schema.as_value());
        let req = if required.contains(&name.as_str()) {
            "required"
        } else {
            "optional"
        };
        let default = prop
            .get("default")
            .map(|d| format!(", default {d}"))
            .unwrap_or_default();
        out.push_str(&format!("  {name}: {ty} ({req}{default})\n"));
        if let Some(desc) = prop.get("description").and_then(|d| d.as_str()) {
            for line in desc.lines() {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    out
}

/// A short type for a schema property.
fn type_name(prop: &serde_json::Value, root: &serde_json::Value) -> String {
    if let Some(t) = prop.get("type") {
        return match t {
            serde_json::Value::Array(ts) => ts
                .iter()
                .filter_map(|t| t.as_str())
                .filter(|t| *t != "null")
                .collect::<Vec<_>>()
                .join(" | "),
            other => other.as_str().unwrap_or("any").to_string(),
        };
    }
    let reference = prop
        .get("$ref")
        .or_else(|| {
            prop.get("anyOf")
                .and_then(|a| a.get(0))
                .and_then(|a| a.get("$ref"))
        })
        .and_then(|r| r.as_str());
    if let Some(r) = reference {
        let name = r.rsplit('/').next().unwrap_or(r);
        let def = root.get("$defs").and_then(|d| d.get(name));
        if let Some(values) = def.and_then(|d| d.get("enum")).and_then(|e| e.as_array()) {
            return values
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" | ");
        }
        if let Some(values) = def.and_then(|d| d.get("oneOf")).and_then(|e| e.as_array()) {
            let names: Vec<&str> = values
                .iter()
                .filter_map(|v| v.get("const").and_then(|c| c.as_str()))
                .collect();
            if !names.is_empty() {
                return names.join(" | ");
            }
        }
        return name.to_string();
    }
    "any".to_string()
}

/// Up to the first ". " that starts a new sentence (not "e.g. ").
fn first_sentence(doc: &str) -> &str {
    let bytes = doc.as_bytes();
    for (i, _) in doc.match_indices(". ") {
        if bytes.get(i + 2).is_some_and(|b| b.is_ascii_uppercase()) {
            return &doc[..i];
        }
    }
    doc.lines().next().unwrap_or(doc)
}
