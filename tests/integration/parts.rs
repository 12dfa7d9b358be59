//! A plan cut into parts (what `quiver.ray` runs as tasks): every node in
//! exactly one part, parts in an order that runs, and the parts run one by
//! one with their inputs handed over compute what the whole plan computes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use petgraph::graph::NodeIndex;
use quiver::exec::{NodeStatus, Piece, RunOptions, RunReport};
use quiver::operators::Table;
use quiver::plan::parts::{Given, Part, cut, slice};
use quiver::plan::{Plan, Reuse};

use crate::support::{compile, run_with};

/// Three symbols: a shared reference fetch, a per-symbol chain, a fan-in
/// and its sink, then a per-symbol stage after the fan-in.
const PIPELINE: &str = r#"
pipeline: parts
params:
  symbols: {type: list, default: [FPT, VNM, HPG]}
  out: {type: string, default: out.parquet}
resources:
  api: {concurrency: 2}
nodes:
  bars:
    foreach: symbol in ${symbols}
    op: transform.sql
    inputs:
      p: {op: fetch.synthetic, resource: api, with: {dataset: prices, symbol: "${symbol}", start: 2026-01-05, end: 2026-01-16}}
      info: {op: fetch.synthetic, resource: api, with: {dataset: stock_info, symbol: FPT}}
    with: {query: "SELECT date, close FROM p ORDER BY date"}
  stats:
    foreach: symbol in ${symbols}
    op: transform.sql
    inputs: {b: "bars[${symbol}]"}
    with: {query: "SELECT avg(close) AS mean, count(*) AS n FROM b"}
  all:
    op: align.timestamps
    inputs: {bars: "bars[*]"}
    with: {key: symbol, time: date, layout: long, join: outer}
  save: {op: sink.parquet, inputs: [all], with: {path: "${out}"}}
  share:
    foreach: symbol in ${symbols}
    op: transform.sql
    inputs: {all: all, s: "stats[${symbol}]"}
    with: {query: "SELECT count(*) AS rows, max(s.n) AS n FROM \"all\", s"}
"#;

fn ids(plan: &Plan, nodes: &[NodeIndex]) -> Vec<String> {
    nodes.iter().map(|&i| plan.graph[i].id.clone()).collect()
}

#[test]
fn a_plan_is_cut_into_key_chains_shared_nodes_and_fan_ins() {
    let plan = compile(PIPELINE);
    let parts = cut(&plan);
    let shown: Vec<(Option<&str>, Vec<String>)> = parts
        .iter()
        .map(|p| (p.key.as_deref(), ids(&plan, &p.nodes)))
        .collect();
    let find = |id: &str| {
        shown
            .iter()
            .position(|(_, nodes)| nodes.iter().any(|n| n == id))
            .unwrap_or_else(|| panic!("{id} is in no part: {shown:?}"))
    };
    // The info fetch every symbol declares is one node, in a part of its own.
    let info = find("bars[FPT].info");
    assert_eq!(shown[info], (None, vec!["bars[FPT].info".to_string()]));
    // A symbol's fetch, bars and stats run together.
    let fpt = find("bars[FPT]");
    assert_eq!(
        shown[fpt],
        (
            Some("FPT"),
            vec!["bars[FPT].p", "bars[FPT]", "stats[FPT]"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    assert_eq!(parts[fpt].pools, BTreeMap::from([("api".to_string(), 1)]));
    // The fan-in and its sink are one part; the stage after it is a
    // second part per symbol.
    let all = find("all");
    assert_eq!(
        shown[all],
        (None, vec!["all".to_string(), "save".to_string()])
    );
    let share = find("share[FPT]");
    assert_eq!(shown[share].0, Some("FPT"));
    assert_ne!(share, fpt);
    assert!(share > all && all > fpt && fpt > info, "{shown:?}");
    // Every node in exactly one part, every part after those it reads.
    let mut seen = vec![0; plan.graph.node_count()];
    for (n, part) in parts.iter().enumerate() {
        for i in &part.nodes {
            seen[i.index()] += 1;
        }
        for r in &part.reads {
            let producer = parts.iter().position(|p| p.nodes.contains(r)).unwrap();
            assert!(
                producer < n,
                "part {n} reads part {producer}, placed after it"
            );
        }
    }
    assert!(seen.iter().all(|&s| s == 1), "{seen:?}");
    assert_eq!(parts.len(), 1 + 3 + 1 + 3);
}

/// Runs each part on its own, in order, handing each the outputs it reads:
/// what a distributed engine does, in one process.
fn run_in_parts(plan: &Plan, parts: &[Part]) -> (RunReport, HashMap<NodeIndex, Arc<Table>>) {
    let mut outputs: HashMap<NodeIndex, Arc<Table>> = HashMap::new();
    let mut pieces = Vec::new();
    let start = std::time::Instant::now();
    for part in parts {
        let given = part
            .reads
            .iter()
            .map(|r| (*r, Given::Table(outputs[r].clone())))
            .collect();
        let pools = part
            .pools
            .iter()
            .map(|(k, v)| (k.clone(), (*v, 2)))
            .collect();
        let sliced = slice(plan, &part.nodes, given, &pools).unwrap();
        let slots = if part.pools.is_empty() { 2 } else { 1 };
        assert_eq!(sliced.resources["api"].concurrency, Some(slots));
        let offset = start.elapsed();
        let report = run_with(
            &sliced,
            RunOptions {
                // The slice's own indexes.
                keep: part
                    .nodes
                    .iter()
                    .map(|&i| sliced.find(&plan.graph[i].id).unwrap())
                    .collect(),
                max_workers: 1,
                ..RunOptions::default()
            },
        );
        for (id, table) in &report.outputs {
            outputs.insert(plan.find(id).unwrap(), table.clone());
        }
        // Only the part's nodes ran in it; the slice holds them and what
        // they read, nothing else.
        assert_eq!(report.nodes.len(), part.nodes.len() + part.reads.len());
        for node in &report.nodes {
            let ours = part.nodes.contains(&plan.find(&node.id).unwrap());
            assert_eq!(node.attempts > 0, ours, "{}", node.id);
        }
        pieces.push(Piece {
            nodes: part.nodes.clone(),
            report,
            offset,
        });
    }
    let report = RunReport::assemble(plan, &pieces, &[], start.elapsed(), false);
    (report, outputs)
}

#[test]
fn parts_run_one_by_one_compute_what_the_whole_plan_computes() {
    let dir = tempfile::tempdir().unwrap();
    let whole = compile(&PIPELINE.replace(
        "out.parquet",
        &dir.path().join("whole.parquet").display().to_string(),
    ));
    let keep: Vec<NodeIndex> = whole.nodes().map(|(i, _)| i).collect();
    let local = run_with(
        &whole,
        RunOptions {
            keep,
            ..RunOptions::default()
        },
    );
    assert!(local.succeeded(), "{local}");

    let split = compile(&PIPELINE.replace(
        "out.parquet",
        &dir.path().join("parts.parquet").display().to_string(),
    ));
    let (report, outputs) = run_in_parts(&split, &cut(&split));
    assert!(report.succeeded(), "{report}");
    // Every node ran exactly once, across all the parts.
    for node in &report.nodes {
        assert_eq!(
            (node.status, node.attempts),
            (NodeStatus::Succeeded, 1),
            "{}",
            node.id
        );
    }
    assert_eq!(report.totals.executed, split.graph.node_count());
    assert_eq!(
        report.totals.executions_by_op,
        local.totals.executions_by_op
    );
    for (id, table) in &local.outputs {
        if id == "save" {
            continue; // its summary names the file it wrote
        }
        let other = &outputs[&split.find(id).unwrap()];
        assert_eq!(table.concat().unwrap(), other.concat().unwrap(), "{id}");
    }
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert!(read("whole.parquet") == read("parts.parquet"));
}

#[test]
fn a_part_whose_input_produced_nothing_skips_what_reads_it() {
    let plan = compile(PIPELINE);
    let parts = cut(&plan);
    let stats = parts
        .iter()
        .find(|p| p.key.as_deref() == Some("FPT"))
        .unwrap();
    let fetch = stats.nodes[0];
    // The chain alone, its fetch as if it had failed elsewhere.
    let rest: Vec<NodeIndex> = stats.nodes[1..].to_vec();
    let info = plan.find("bars[FPT].info").unwrap();
    let given = vec![
        (fetch, Given::Nothing("the API said 500".into())),
        (info, Given::Table(Arc::new(Table::empty()))),
    ];
    let sliced = slice(&plan, &rest, given, &BTreeMap::new()).unwrap();
    let report = run_with(&sliced, RunOptions::default());
    let bars = report.node("bars[FPT]").unwrap();
    // As in a whole run that keeps going: what reads nothing is skipped,
    // saying which input produced nothing.
    assert_eq!(bars.status, NodeStatus::Skipped, "{report}");
    assert_eq!(
        bars.reason.as_deref(),
        Some("input 'p' (bars[FPT].p) produced nothing")
    );
    // The given nodes hand over; nothing else is in the slice.
    let ids: Vec<&str> = sliced.nodes().map(|(_, n)| n.id.as_str()).collect();
    assert_eq!(
        ids,
        ["bars[FPT].p", "bars[FPT].info", "bars[FPT]", "stats[FPT]"]
    );
    for (_, node) in sliced.nodes().take(2) {
        assert_eq!(node.reuse, Reuse::Load, "{}", node.id);
    }
}

#[test]
fn a_slice_refuses_a_node_whose_input_is_neither_run_nor_given() {
    let plan = compile(PIPELINE);
    let bars = plan.find("bars[FPT]").unwrap();
    let e = slice(&plan, &[bars], Vec::new(), &BTreeMap::new()).unwrap_err();
    assert!(
        e.starts_with("node 'bars[FPT]' reads 'bars[FPT].")
            && e.ends_with("which is neither run nor given"),
        "{e}"
    );
}

#[test]
fn a_part_shares_a_rate_with_the_parts_in_flight() {
    let plan = compile(&PIPELINE.replace("{concurrency: 2}", "{concurrency: 2, rate: 10/s}"));
    let pools = BTreeMap::from([("api".to_string(), (1, 4))]);
    let sliced = slice(&plan, &[], Vec::new(), &pools).unwrap();
    let api = &sliced.resources["api"];
    assert_eq!(api.concurrency, Some(1));
    let rate = api.rate.unwrap();
    assert_eq!((rate.count, rate.per), (10, Duration::from_secs(4)));
}

#[test]
fn the_command_sends_ray_runs_to_the_python_package() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["run", "pipelines/symbols.yaml", "--engine", "ray"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("python -m quiver run pipelines/symbols.yaml --engine ray"),
        "{stderr}"
    );
}
