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

/// Two symbols on one day, with no history before it.
fn two_symbols() -> Plan {
    vn30(&[
        "symbols=[FPT, VNM]",
        "start_date=2026-01-05",
        "end_date=2026-01-05",
        "history_start=2026-01-05",
        "weight_cap=0.5",
    ])
}

#[test]
fn vn30_compiles_to_one_fetch_per_dataset_and_symbol() {
    let plan = vn30(&[]);
    let json = render(&plan, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // One fetch per dataset, symbol and day: 30 symbols × (5 days of ticks,
    // 5 + 5 days of prices (the 5 sessions before for relative volume),
    // stock info) = 150 + 300 + 30.
    assert_eq!(v["stats"]["unique_by_op"]["fetch.synthetic"], 480);
    // Declared: features (ticks, prices), weights (prices of the 5 days,
    // stock info), session (ticks): 150 + 300 + 150 + 30 + 150 = 780, of
    // which the weights' prices and the session's ticks are repeats.
    assert_eq!(v["stats"]["merged"]["fetch.synthetic"], 300);
    let fetches: Vec<&serde_json::Value> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["op"] == "fetch.synthetic")
        .collect();
    assert_eq!(fetches.len(), 480);
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
        "38 declared nodes → 28 unique (10 merged: fetch.synthetic ×4, transform.concat ×6)"
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
            out.contains(
                "38 declared nodes → 28 unique (10 merged: fetch.synthetic ×4, transform.concat ×6)"
            ),
            "{format:?}:\n{out}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&render(&plan, Format::Json)).unwrap();
    assert_eq!(json["stats"]["declared"], 38);
    assert_eq!(json["stats"]["unique"], 28);
    assert_eq!(json["stats"]["merged"]["fetch.synthetic"], 4);
}

#[test]
fn no_merge_keeps_every_declared_node() {
    let sets: Vec<Override> = [
        "symbols=[FPT, VNM]",
        "start_date=2026-01-05",
        "end_date=2026-01-05",
        "history_start=2026-01-05",
        "weight_cap=0.5",
    ]
    .iter()
    .map(|s| Override::parse_set(s).unwrap())
    .collect();
    let naive = quiver::compile::compile_file_with_options(
        Path::new("pipelines/vn30.yaml"),
        &sets,
        quiver::operators::registry(),
        quiver::compile::Options { merge: false },
    )
    .unwrap_or_else(|d| panic!("{d}"));
    // The 10 fetches declared (features: trades and prices, weights:
    // prices and stock info, session: trades; for each of 2 symbols) all
    // stay, where merging leaves 6.
    assert_eq!(naive.count_by_op()["fetch.synthetic"], 10);
    assert_eq!(naive.stats.declared, 38);
    assert_eq!(naive.stats.unique, 38);
    assert!(naive.stats.merged.is_empty());
    // Every node its own identity, so no two share a cache entry.
    let identities: std::collections::HashSet<u64> =
        naive.nodes().map(|(_, n)| n.identity).collect();
    assert_eq!(identities.len(), 38);
}
