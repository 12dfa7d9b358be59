//! Running pipelines end to end: outputs written, each node executed once,
//! failures reported by node, and the CLI's exit codes.

use std::path::Path;
use std::process::Command;

use quiver::compile::{Override, compile_file, compile_str};
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

fn sets(items: &[String]) -> Vec<Override> {
    items
        .iter()
        .map(|s| Override::parse_set(s).unwrap())
        .collect()
}

fn parquet_rows(path: &Path) -> usize {
    use quiver::operators::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    reader.map(|b| b.unwrap().num_rows()).sum()
}

#[test]
fn vn30_runs_each_fetch_once_and_writes_parquet() {
    let out = tempfile::tempdir().unwrap();
    let overrides = sets(&[
        "symbols=[FPT, VNM]".into(),
        "start_date=2026-01-05".into(),
        "end_date=2026-01-06".into(),
        format!("out_dir={}", out.path().display()),
    ]);
    let plan = compile_file(Path::new("pipelines/vn30.yaml"), &overrides).unwrap();
    let report = run(&plan, 4);
    assert!(report.succeeded(), "{report}");
    // Every unique node ran exactly once; the 4 repeated tick fetches never ran.
    assert!(report.nodes.iter().all(|n| n.attempts == 1), "{report}");
    assert_eq!(report.totals.executions_by_op["fetch.synthetic"], 6);
    assert_eq!(report.totals.merged_avoided, 4);

    // HOSE sessions in 5-minute bars: 09:15–11:30 is 27 bars, 13:00–14:30 is
    // 18, and the 14:45 closing auction is one more: 46 a day, 2 days.
    assert_eq!(parquet_rows(&out.path().join("index.parquet")), 92);
    assert_eq!(parquet_rows(&out.path().join("features.parquet")), 2 * 92);
    // One row per symbol and day.
    assert_eq!(parquet_rows(&out.path().join("daily.parquet")), 4);
    assert_eq!(parquet_rows(&out.path().join("whale.parquet")), 4);
}

#[test]
fn parallel_and_single_worker_runs_write_the_same_bytes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (dir, workers) in [(&a, 1), (&b, 4)] {
        let overrides = sets(&[
            "symbols=[ACB, HPG, VCB]".into(),
            "end_date=2026-01-05".into(),
            format!("out_dir={}", dir.path().display()),
        ]);
        let plan = compile_file(Path::new("pipelines/vn30.yaml"), &overrides).unwrap();
        assert!(run(&plan, workers).succeeded());
    }
    for name in ["features", "index", "whale", "daily"] {
        let file = format!("{name}.parquet");
        let x = std::fs::read(a.path().join(&file)).unwrap();
        let y = std::fs::read(b.path().join(&file)).unwrap();
        assert!(x == y, "{file} differs between 1 and 4 workers");
    }
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
    assert!(stderr.contains("<--set>: error: --set interval: '7m' is not one of the allowed values: 1 minute, 5 minutes, 15 minutes"), "{stderr}");

    let usage = quiver(&["plan", "pipelines/vn30.yaml", "--format", "svg"]);
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
