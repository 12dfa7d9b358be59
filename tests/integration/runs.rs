//! Running pipelines end to end: outputs written, each node executed once,
//! failures reported by node, and the CLI's exit codes.

use std::path::Path;
use std::process::Command;

use quiver::compile::compile_str;
use quiver::exec::{Executor, NodeStatus, RunOptions, RunReport};
use quiver::plan::Plan;

fn run(plan: &Plan, max_workers: usize) -> RunReport {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = Executor::new(RunOptions {
        max_workers,
        ..RunOptions::default()
    })
    .unwrap();
    let report = rt.block_on(executor.run(plan));
    drop(executor);
    report
}

const FAILING: &str = r#"
pipeline: failing
nodes:
  good:
    op: fetch.synthetic
    with: {dataset: stock_info, symbol: FPT}
  bad:
    op: fetch.synthetic
    with: {dataset: stock_info, symbol: VNM, fail_rate: 1.0}
  after_bad:
    op: transform.sql
    inputs: [bad]
    with: {query: "SELECT * FROM bad"}
"#;

#[test]
fn a_failure_names_the_node_and_stops_its_consumers() {
    let plan = compile_str(Path::new("failing.yaml"), FAILING, &[]).unwrap();
    let report = run(&plan, 2);
    assert!(!report.succeeded());
    let failed: Vec<&str> = report.failures().map(|n| n.id.as_str()).collect();
    assert_eq!(failed, ["bad"]);
    let error = report.failures().next().unwrap().error_message().unwrap();
    assert!(error.contains("VNM"), "{error}");
    let after = report.nodes.iter().find(|n| n.id == "after_bad").unwrap();
    assert_eq!(after.status, NodeStatus::NotRun);
    assert!(
        report.to_string().contains("FAILED bad (fetch.synthetic)"),
        "{report}"
    );
}

fn quiver(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_exit_codes() {
    let ok = quiver(&["validate", "pipelines/vn30.yaml"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let invalid = quiver(&["validate", "pipelines/vn30.yaml", "--set", "interval=7m"]);
    assert_eq!(invalid.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        stderr
            .contains("<--set>: error: --set interval: '7m' is not one of the allowed values: 5m"),
        "{stderr}"
    );

    let usage = quiver(&["plan", "pipelines/vn30.yaml", "--format", "png"]);
    assert_eq!(usage.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("failing.yaml");
    std::fs::write(&failing, FAILING).unwrap();
    let failed = quiver(&["run", failing.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("FAILED bad"));

    let plan = quiver(&[
        "plan",
        "pipelines/vn30.yaml",
        "--format",
        "json",
        "--set",
        "symbols=[FPT,VNM]",
        "--set",
        "end_date=2026-01-05",
        "--set",
        "history_start=2026-01-05",
    ]);
    assert_eq!(plan.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(v["stats"]["unique_by_op"]["fetch.synthetic"], 6);

    let ops = quiver(&["ops", "fetch.synthetic"]);
    assert_eq!(ops.status.code(), Some(0));
    let text = String::from_utf8_lossy(&ops.stdout);
    assert!(text.contains("fail_rate"), "{text}");
    assert_eq!(quiver(&["ops", "fetch.synthetc"]).status.code(), Some(2));
}
