//! `quiver plan`: every format, on the real VN30 pipeline narrowed to two
//! symbols so the snapshots stay readable, plus the counts the issue fixes.

use std::path::Path;

use quiver::compile::{Override, compile_file};
use quiver::plan::Plan;
use quiver::render::{Format, render};

fn vn30(sets: &[&str]) -> Plan {
    let overrides: Vec<Override> = sets
        .iter()
        .map(|s| Override::parse_set(s).unwrap())
        .collect();
    compile_file(Path::new("pipelines/vn30.yaml"), &overrides).unwrap_or_else(|d| panic!("{d}"))
}

fn two_symbols() -> Plan {
    vn30(&["symbols=[FPT, VNM]"])
}

#[test]
fn vn30_compiles_to_one_fetch_per_dataset_and_symbol() {
    let plan = vn30(&[]);
    let json = render(&plan, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // 30 symbols × (ticks, prices, stock info).
    assert_eq!(v["stats"]["unique_by_op"]["fetch.synthetic"], 90);
    // Declared: features (ticks, prices), index (ticks, stock info) and the
    // whale fragment (ticks), each per symbol: 150 fetches, 60 of them repeats.
    assert_eq!(v["stats"]["merged"]["fetch.synthetic"], 60);
    let declared = v["stats"]["declared"].as_u64().unwrap();
    let unique = v["stats"]["unique"].as_u64().unwrap();
    assert_eq!(declared - unique, 60);
    let fetches: Vec<&serde_json::Value> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["op"] == "fetch.synthetic")
        .collect();
    assert_eq!(fetches.len(), 90);
    for node in v["nodes"].as_array().unwrap() {
        for key in ["id", "op", "inputs", "aliases"] {
            assert!(node.get(key).is_some(), "node without '{key}': {node}");
        }
    }
}

#[test]
fn narrowing_symbols_with_set_gives_six_fetches() {
    let plan = two_symbols();
    assert_eq!(plan.count_by_op()["fetch.synthetic"], 6);
    assert_eq!(plan.stats.merged["fetch.synthetic"], 4);
}

#[test]
fn text_starts_with_the_dedupe_summary_and_lists_inputs_first() {
    let plan = two_symbols();
    let text = render(&plan, Format::Text);
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "19 declared nodes → 15 unique (4 merged: fetch.synthetic ×4)"
    );
    // Dependency order: a node's line comes after every input's line.
    let position = |id: &str| {
        text.lines()
            .position(|l| l.split_whitespace().nth(2) == Some(id))
            .unwrap()
    };
    for (i, node) in plan.nodes() {
        for src in plan
            .graph
            .neighbors_directed(i, petgraph::Direction::Incoming)
        {
            assert!(position(&plan.graph[src].id) < position(&node.id));
        }
    }
}

#[test]
fn snapshot_text() {
    insta::assert_snapshot!(
        "vn30_two_symbols_text",
        render(&two_symbols(), Format::Text)
    );
}

#[test]
fn snapshot_dot() {
    insta::assert_snapshot!("vn30_two_symbols_dot", render(&two_symbols(), Format::Dot));
}

#[test]
fn snapshot_mermaid() {
    insta::assert_snapshot!(
        "vn30_two_symbols_mermaid",
        render(&two_symbols(), Format::Mermaid)
    );
}

#[test]
fn snapshot_json() {
    insta::assert_snapshot!(
        "vn30_two_symbols_json",
        render(&two_symbols(), Format::Json)
    );
}

#[test]
fn every_format_reports_the_dedupe_result() {
    let plan = two_symbols();
    for format in [Format::Text, Format::Dot, Format::Mermaid] {
        let out = render(&plan, format);
        assert!(
            out.contains("19 declared nodes → 15 unique (4 merged: fetch.synthetic ×4)"),
            "{format:?}:\n{out}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&render(&plan, Format::Json)).unwrap();
    assert_eq!(json["stats"]["declared"], 19);
    assert_eq!(json["stats"]["unique"], 15);
    assert_eq!(json["stats"]["merged"]["fetch.synthetic"], 4);
}
