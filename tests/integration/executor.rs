//! The production executor under fault injection: retries, timeouts, the
//! circuit breaker, failure policies, cancellation and sequential runs.

use std::path::Path;
use std::time::Duration;

use crate::support::run;
use quiver::compile::compile_str;
use quiver::exec::{Executor, NodeStatus, RunOptions, RunReport};
use quiver::plan::Plan;

fn compile(text: &str) -> Plan {
    compile_str(Path::new("test.yaml"), text, &[]).unwrap_or_else(|d| panic!("{d}"))
}

/// Ticks for several symbols written to `out`, the fetches failing at `fail_rate`.
fn flaky_pipeline(out: &Path, fail_rate: f64, retries: &str) -> String {
    format!(
        r#"
pipeline: flaky
resources:
  api: {{concurrency: 4, retries: {retries}}}
nodes:
  ticks:
    foreach: symbol in [ACB, FPT, HPG, MWG, VCB, VNM]
    op: fetch.synthetic
    resource: api
    with: {{dataset: ticks, symbol: "${{symbol}}", start: 2026-01-05, end: 2026-01-05, fail_rate: {fail_rate}}}
  save: {{op: sink.parquet, inputs: ["ticks[*]"], with: {{path: "{}"}}}}
"#,
        out.display()
    )
}

#[test]
fn transient_failures_with_retries_give_the_clean_output() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.parquet");
    let flaky = dir.path().join("flaky.parquet");
    let policy = "{max_attempts: 30, backoff: 1ms, max_backoff: 5ms}";
    let clean_report = run(&compile(&flaky_pipeline(&clean, 0.0, policy)));
    assert!(clean_report.succeeded(), "{clean_report}");
    assert_eq!(clean_report.totals.retries, 0);
    let flaky_report = run(&compile(&flaky_pipeline(&flaky, 0.6, policy)));
    assert!(flaky_report.succeeded(), "{flaky_report}");
    assert!(
        flaky_report.totals.retries > 0,
        "fail_rate 0.6 over 6 fetches should need retries"
    );
    assert_eq!(std::fs::read(clean).unwrap(), std::fs::read(flaky).unwrap());
}

#[test]
fn permanent_failures_fail_the_run_and_name_node_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.parquet");
    let report = run(&compile(&flaky_pipeline(&out, 1.0, "2")));
    assert!(!report.succeeded());
    let failed: Vec<&str> = report.failures().map(|n| n.id.as_str()).collect();
    assert!(!failed.is_empty());
    for n in report.failures() {
        assert_eq!(
            n.attempts, 3,
            "{}: two retries after the first attempt",
            n.id
        );
        assert!(
            n.error_message().unwrap().contains("synthetic failure"),
            "{:?}",
            n.error
        );
    }
    assert_eq!(report.node("save").unwrap().status, NodeStatus::NotRun);
    assert!(
        !out.exists(),
        "nothing is written when the run fails before the sink"
    );
}

#[test]
fn timeouts_fire_and_are_retried() {
    let plan = compile(
        r#"
pipeline: slow
nodes:
  slow:
    op: fetch.synthetic
    timeout: 50ms
    retries: 1
    with: {dataset: stock_info, symbol: FPT, latency: 10s}
"#,
    );
    let started = std::time::Instant::now();
    let report = run(&plan);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the 10 s fetch must be cut short"
    );
    let node = report.node("slow").unwrap();
    assert_eq!(node.status, NodeStatus::Failed);
    assert_eq!(node.attempts, 2);
    assert!(
        node.error_message()
            .unwrap()
            .contains("timed out after 50ms"),
        "{:?}",
        node.error
    );
}

#[test]
fn the_breaker_opens_on_failures_and_recovers_after_the_cooldown() {
    // `down` fails and opens the breaker. `while_open` starts (after a
    // 100 ms wait upstream; sources take no inputs, so the waiting nodes
    // are queries) while it is open and is rejected without running.
    // `after_cooldown` starts after the 400 ms cooldown, is let through as the
    // trial, succeeds and closes the breaker.
    let plan = compile(
        r#"
pipeline: breaker
resources:
  api: {circuit_breaker: {failures: 1, cooldown: 400ms}}
nodes:
  down:
    op: fetch.synthetic
    resource: api
    on_error: skip
    with: {dataset: stock_info, symbol: FPT, fail_rate: 1.0}
  wait_short: {op: fetch.synthetic, with: {dataset: stock_info, symbol: VNM, latency: 100ms}}
  while_open:
    op: transform.sql
    resource: api
    on_error: skip
    inputs: [wait_short]
    with: {query: SELECT * FROM wait_short}
  wait_long: {op: fetch.synthetic, with: {dataset: stock_info, symbol: VCB, latency: 600ms}}
  after_cooldown:
    op: transform.sql
    resource: api
    inputs: [wait_long]
    with: {query: SELECT * FROM wait_long}
"#,
    );
    let report = run(&plan);
    let down = report.node("down").unwrap();
    assert_eq!((down.status, down.attempts), (NodeStatus::Skipped, 1));
    let open = report.node("while_open").unwrap();
    assert_eq!(open.status, NodeStatus::Skipped);
    assert_eq!(
        open.attempts, 0,
        "rejected by the open breaker without running"
    );
    assert!(
        open.error_message()
            .unwrap()
            .contains("circuit breaker of resource 'api' is open"),
        "{:?}",
        open.error
    );
    let recovered = report.node("after_cooldown").unwrap();
    assert_eq!(
        (recovered.status, recovered.attempts),
        (NodeStatus::Succeeded, 1),
        "{report}"
    );
}

const FAN_IN: &str = r#"
pipeline: policies
nodes:
  info:
    foreach: symbol in [ACB, BID, CTG, FPT, GAS, HPG, MBB, MSN, MWG, VCB, VIC, VNM]
    op: fetch.synthetic
    on_error: ON_ERROR
    with: {dataset: stock_info, symbol: "${symbol}", fail_rate: 0.5, seed: 7}
  count:
    op: transform.sql
    REQUIRE
    inputs: {info: "info[*]"}
    with: {query: "SELECT count(*) AS n, count(DISTINCT symbol) AS symbols FROM info"}
"#;

fn fan_in_pipeline(on_error: &str, require: bool) -> Plan {
    let text = FAN_IN
        .replace("ON_ERROR", on_error)
        .replace("REQUIRE", if require { "require: all" } else { "" });
    compile(&text)
}

/// The keys of the `info` instances with `status`.
fn keys_with(report: &RunReport, status: NodeStatus) -> Vec<String> {
    report
        .nodes
        .iter()
        .filter(|n| n.id.starts_with("info[") && n.status == status)
        .map(|n| {
            n.id.trim_start_matches("info[")
                .trim_end_matches(']')
                .to_string()
        })
        .collect()
}

#[test]
fn skip_gives_consumers_the_instances_that_succeeded_and_the_missing_keys() {
    let report = run(&fan_in_pipeline("skip", false));
    assert!(report.succeeded(), "{report}");
    let skipped = keys_with(&report, NodeStatus::Skipped);
    let ok = keys_with(&report, NodeStatus::Succeeded);
    assert!(
        !skipped.is_empty() && !ok.is_empty(),
        "fail_rate 0.5 over 12 should give both: {report}"
    );
    let count = report.node("count").unwrap();
    assert_eq!(count.status, NodeStatus::Succeeded);
    assert_eq!(count.missing, skipped);
}

#[test]
fn require_all_fails_naming_the_missing_keys() {
    let report = run(&fan_in_pipeline("skip", true));
    assert!(!report.succeeded());
    let skipped = keys_with(&report, NodeStatus::Skipped);
    let count = report.node("count").unwrap();
    assert_eq!(count.status, NodeStatus::Failed);
    let expected = format!(
        "info: {} of 12 symbols missing: {}",
        skipped.len(),
        skipped.join(", ")
    );
    assert_eq!(count.error_message(), Some(expected.as_str()));
}

#[test]
fn default_replaces_a_failed_output_with_the_declared_value() {
    let plan = compile(
        r#"
pipeline: defaults
nodes:
  info:
    op: fetch.synthetic
    on_error: {default: [{symbol: FPT, free_float: 0.5}, {symbol: VNM, free_float: 0.25}]}
    with: {dataset: stock_info, symbol: FPT, fail_rate: 1.0}
  total:
    op: transform.sql
    inputs: [info]
    with: {query: "SELECT sum(free_float) AS total FROM info"}
"#,
    );
    let report = run(&plan);
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.node("info").unwrap().status, NodeStatus::Defaulted);
    assert_eq!(report.node("info").unwrap().rows_out, 2);
    assert_eq!(report.node("total").unwrap().rows_out, 1);
}

#[test]
fn other_branches_keep_their_outputs_when_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.parquet");
    let plan = compile(&format!(
        r#"
pipeline: branches
nodes:
  good: {{op: fetch.synthetic, with: {{dataset: stock_info, symbol: FPT}}}}
  save_good: {{op: sink.parquet, inputs: [good], with: {{path: "{}"}}}}
  bad: {{op: fetch.synthetic, with: {{dataset: stock_info, symbol: VNM, latency: 300ms, fail_rate: 1.0}}}}
"#,
        kept.display()
    ));
    let report = run(&plan);
    assert!(!report.succeeded());
    assert_eq!(
        report.node("save_good").unwrap().status,
        NodeStatus::Succeeded
    );
    assert!(kept.exists());
}

#[test]
fn cancelling_stops_running_nodes_and_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let plan = compile(&format!(
        r#"
pipeline: cancel
nodes:
  slow:
    foreach: symbol in [FPT, VNM, HPG]
    op: fetch.synthetic
    with: {{dataset: stock_info, symbol: "${{symbol}}", latency: 10s}}
  save: {{op: sink.parquet, inputs: ["slow[*]"], with: {{path: "{}/out.parquet"}}}}
"#,
        dir.path().display()
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = Executor::new(RunOptions::default()).unwrap();
    let started = std::time::Instant::now();
    let report = rt.block_on(executor.run_until(&plan, async {
        tokio::time::sleep(Duration::from_millis(100)).await
    }));
    drop(executor);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.totals.cancelled);
    assert!(!report.succeeded());
    assert_eq!(keys_cancelled(&report), 3);
    assert_eq!(report.node("save").unwrap().status, NodeStatus::NotRun);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no file, whole or partial"
    );
}

fn keys_cancelled(report: &RunReport) -> usize {
    report
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Cancelled)
        .count()
}

#[test]
fn a_shared_output_is_computed_once_and_dropped_after_its_last_consumer() {
    let mut text = String::from(
        "pipeline: shared\nnodes:\n  source: {op: fetch.synthetic, with: {dataset: ticks, symbol: FPT, start: 2026-01-05, end: 2026-01-09}}\n",
    );
    for i in 0..32 {
        text.push_str(&format!(
            "  c{i}: {{op: transform.sql, inputs: [source], with: {{query: \"SELECT count(*) + {i} AS n FROM source\"}}}}\n"
        ));
    }
    let plan = compile(&text);
    let report = run(&plan);
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.node("source").unwrap().attempts, 1);
    let source_bytes = report.node("source").unwrap().bytes_out;
    let consumer_bytes: usize = report
        .nodes
        .iter()
        .filter(|n| n.id != "source")
        .map(|n| n.bytes_out)
        .sum();
    // One copy of the source at most, plus the consumers' one-row outputs.
    assert!(
        report.totals.peak_output_bytes <= source_bytes + consumer_bytes,
        "{}",
        report.totals.peak_output_bytes
    );
    assert!(report.totals.peak_output_bytes >= source_bytes);
}
