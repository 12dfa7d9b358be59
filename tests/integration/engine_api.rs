//! The operator API seen from outside: a library user's operator run from
//! YAML, the thread budget that `--max-workers` sets for all the work, and
//! cancellation reaching blocking work.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::run_with;
use async_trait::async_trait;
use quiver::compile::{compile_file_with, compile_str_with};
use quiver::exec::{NodeStatus, RunOptions};
use quiver::operators::{
    Arity, ExecContext, Inputs, OpError, OpParams, Operator, ParamError, Registry, Table, Workload,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[path = "../../examples/custom_operator/range.rs"]
mod range;

fn workers(n: usize) -> RunOptions {
    RunOptions {
        max_workers: n,
        ..RunOptions::default()
    }
}

fn with_day_range() -> Registry {
    let mut registry = Registry::builtins();
    registry.register::<range::DayRangeParams>().unwrap();
    registry
}

#[test]
fn a_custom_operator_from_examples_runs_from_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wide.csv");
    let registry = with_day_range();
    let plan = compile_file_with(
        Path::new("examples/custom_operator/pipeline.yaml"),
        &[quiver::compile::Override::parse_set(&format!("out={}", out.display())).unwrap()],
        &registry,
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let report = run_with(&plan, workers(2));
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.totals.executions_by_op["example.day_range"], 3);

    // The same prices through SQL alone, as the independent check.
    let check_out = dir.path().join("check.csv");
    let check = compile_str_with(
        Path::new("check.yaml"),
        &format!(
            r#"
pipeline: check
nodes:
  prices:
    foreach: symbol in [FPT, VNM, HPG]
    op: fetch.synthetic
    with: {{dataset: prices, symbol: "${{symbol}}", start: 2026-01-05, end: 2026-03-31}}
  wide:
    op: transform.sql
    inputs: {{p: "prices[*]"}}
    with:
      query: |
        SELECT symbol, count(*) AS days,
               sum(CASE WHEN (high - low) / close * 100 >= 4.0 THEN 1 ELSE 0 END) AS wide_days,
               max((high - low) / close * 100) AS widest_pct
        FROM p GROUP BY symbol ORDER BY symbol
  save: {{op: sink.csv, inputs: [wide], with: {{path: "{}"}}}}
"#,
            check_out.display()
        ),
        &[],
        &registry,
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert!(run_with(&check, workers(2)).succeeded());
    let got = std::fs::read_to_string(&out).unwrap();
    let want = std::fs::read_to_string(&check_out).unwrap();
    assert_eq!(got, want);
    // 2026-01-05 .. 2026-03-31 holds 62 weekdays, of which HOSE is
    // closed 5 for Tết (16 to 20 February).
    assert!(
        got.lines()
            .skip(1)
            .all(|l| l.split(',').nth(1) == Some("57")),
        "{got}"
    );
}

#[test]
fn an_unregistered_operator_and_a_wrong_input_count_are_compile_errors() {
    let text = r#"
pipeline: p
nodes:
  prices: {op: fetch.synthetic, with: {dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-09}}
  more: {op: fetch.synthetic, with: {dataset: prices, symbol: VNM, start: 2026-01-05, end: 2026-01-09}}
  ranges: {op: example.day_range, inputs: [prices, more], with: {wide_pct: 4.0}}
  src: {op: fetch.synthetic, inputs: [prices], with: {dataset: stock_info, symbol: FPT}}
"#;
    let unknown = quiver::compile::compile_str(Path::new("p.yaml"), text, &[]).unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("unknown operator 'example.day_range'"),
        "{unknown}"
    );
    let wrong = compile_str_with(Path::new("p.yaml"), text, &[], &with_day_range()).unwrap_err();
    let text = wrong.to_string();
    assert!(
        text.contains(
            "p.yaml:6:11: error: nodes.ranges.inputs: operator 'example.day_range' takes \
             exactly 1 input, and this node has 2 (prices, more)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "nodes.src.inputs: operator 'fetch.synthetic' takes no inputs, and this node has \
             1 (prices); remove its `inputs:`"
        ),
        "{text}"
    );
    let mut registry = with_day_range();
    let again = registry.register::<range::DayRangeParams>().unwrap_err();
    assert!(
        again
            .to_string()
            .contains("'example.day_range' is already registered")
    );
}

/// `test.probe`: CPU work that asks for `threads` threads and records the
/// most threads of the run's budget it ever saw taken.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
struct ProbeParams {
    threads: usize,
    #[serde(default)]
    key: String,
    #[serde(default)]
    work_ms: u64,
}

/// The most threads taken at once, seen by the `busy` probes.
static SEEN_IN_USE: AtomicUsize = AtomicUsize::new(0);
/// Threads of the `slow` probe that have stopped working.
static SLOW_STOPPED: AtomicUsize = AtomicUsize::new(0);

impl OpParams for ProbeParams {
    const NAME: &'static str = "test.probe";
    const DOC: &'static str = "Busy CPU work inside the thread budget.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::AtLeast(0);
    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        Ok(Arc::new(Probe(self)))
    }
}

#[derive(Debug)]
struct Probe(ProbeParams);

#[async_trait]
impl Operator for Probe {
    async fn execute(&self, ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        let work = Duration::from_millis(self.0.work_ms);
        let slow = self.0.key == "slow";
        ctx.run_cpu(self.0.threads, move |ctx, n| {
            std::thread::scope(|s| {
                for _ in 0..n {
                    s.spawn(|| {
                        let start = Instant::now();
                        while start.elapsed() < work && !ctx.is_cancelled() {
                            if !slow {
                                SEEN_IN_USE.fetch_max(ctx.budget().in_use(), Ordering::Relaxed);
                            }
                            std::hint::spin_loop();
                        }
                        if slow {
                            SLOW_STOPPED.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            ctx.check_cancelled()?;
            Ok(Table::empty())
        })
        .await
    }
}

/// Probes, synthetic generation, SQL and a sink side by side.
const BUSY: &str = r#"
pipeline: busy
nodes:
  probe:
    foreach: key in [a, b, c, d, e, f]
    op: test.probe
    with: {threads: 4, key: "${key}", work_ms: 30}
  ticks:
    foreach: symbol in [FPT, VNM, HPG, VCB]
    op: fetch.synthetic
    with: {dataset: ticks, symbol: "${symbol}", start: 2026-01-05, end: 2026-01-30}
  bars:
    op: transform.sql
    inputs: {t: "ticks[*]"}
    with: {query: "SELECT symbol, date_bin(INTERVAL '5 minutes', ts) AS bar, avg(price) AS p FROM t GROUP BY 1, 2"}
"#;

#[test]
fn max_workers_bounds_every_piece_of_cpu_work() {
    let mut registry = Registry::builtins();
    registry.register::<ProbeParams>().unwrap();
    let plan = compile_str_with(Path::new("busy.yaml"), BUSY, &[], &registry)
        .unwrap_or_else(|d| panic!("{d}"));
    // Tests in this binary run at once, so the probes' statics are read
    // only for the budgets this test sets: 1, then 2.
    for n in [1, 2] {
        SEEN_IN_USE.store(0, Ordering::Relaxed);
        let report = run_with(&plan, workers(n));
        assert!(report.succeeded(), "{report}");
        assert!(
            report.totals.peak_threads <= n,
            "{} threads at once with --max-workers {n}",
            report.totals.peak_threads
        );
        let seen = SEEN_IN_USE.load(Ordering::Relaxed);
        assert!(
            (1..=n).contains(&seen),
            "the probes saw {seen} threads taken"
        );
        if n == 2 {
            assert_eq!(
                report.totals.peak_threads, 2,
                "two threads are used when allowed"
            );
        }
    }
    let sequential = run_with(
        &plan,
        RunOptions {
            sequential: true,
            ..workers(2)
        },
    );
    assert!(sequential.succeeded(), "{sequential}");
    assert_eq!(sequential.totals.peak_threads, 1);
}

#[test]
fn a_timeout_stops_blocking_work_within_100_ms() {
    let mut registry = Registry::builtins();
    registry.register::<ProbeParams>().unwrap();
    let plan = compile_str_with(
        Path::new("slow.yaml"),
        "pipeline: slow\nnodes:\n  slow: {op: test.probe, timeout: 50ms, \
         with: {threads: 2, key: slow, work_ms: 10000}}\n",
        &[],
        &registry,
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let report = run_with(&plan, workers(2));
    let timed_out = Instant::now();
    assert_eq!(report.nodes[0].status, NodeStatus::Failed);
    assert!(format!("{report}").contains("timed out"), "{report}");
    // Both threads of the blocking work see the cancellation and stop.
    while SLOW_STOPPED.load(Ordering::Relaxed) < 2 {
        assert!(
            timed_out.elapsed() < Duration::from_millis(100),
            "the blocking work still runs 100 ms after its timeout"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_memory_limit_makes_sql_spill_and_other_operators_say_so() {
    let text = r#"
pipeline: memory
nodes:
  ticks:
    foreach: symbol in [FPT, VNM, HPG, VCB, ACB, MWG]
    op: fetch.synthetic
    with: {dataset: ticks, symbol: "${symbol}", start: 2026-01-05, end: 2026-03-31}
  sorted:
    op: transform.sql
    inputs: {t: "ticks[*]"}
    with: {query: "SELECT symbol, ts, price, volume FROM t ORDER BY price DESC, volume, ts"}
  features:
    op: features.compute
    inputs: [sorted]
    with:
      ts: ts
      close: price
      partition_by: [symbol]
      features: [{kind: rolling_mean, window: 5}, {kind: rolling_std, window: 5}, {kind: ema, window: 5}]
"#;
    let plan = quiver::compile::compile_str(Path::new("memory.yaml"), text, &[])
        .unwrap_or_else(|d| panic!("{d}"));
    let unlimited = run_with(&plan, workers(2));
    assert!(unlimited.succeeded(), "{unlimited}");
    let sorted = unlimited.nodes.iter().find(|n| n.id == "sorted").unwrap();
    let sorted_rows = sorted.rows_out;
    assert!(
        sorted.bytes_out > 16 << 20,
        "{} bytes sort within the limit without spilling",
        sorted.bytes_out
    );

    // 16 MiB is less than the sorted ticks: the sort spills and still
    // succeeds; features.compute cannot spill and fails naming the limit.
    let limited = run_with(
        &plan,
        RunOptions {
            memory_limit: Some(16 << 20),
            ..workers(1)
        },
    );
    let sorted = limited.nodes.iter().find(|n| n.id == "sorted").unwrap();
    assert_eq!(sorted.status, NodeStatus::Succeeded, "{limited}");
    assert_eq!(sorted.rows_out, sorted_rows);
    let features = limited.nodes.iter().find(|n| n.id == "features").unwrap();
    assert_eq!(features.status, NodeStatus::Failed, "{limited}");
    let text = format!("{limited}");
    assert!(text.contains("memory limit of 16.0 MiB"), "{text}");
}

/// CPU-heavy and unthrottled: generation, SQL and features, no resource.
const HEAVY: &str = r#"
pipeline: heavy
nodes:
  ticks:
    foreach: symbol in [FPT, VNM, HPG, VCB, ACB, MWG]
    op: fetch.synthetic
    with: {dataset: ticks, symbol: "${symbol}", start: 2026-01-05, end: 2026-03-31}
  bars:
    foreach: symbol in [FPT, VNM, HPG, VCB, ACB, MWG]
    op: transform.sql
    inputs: {t: "ticks[${symbol}]"}
    with: {query: "SELECT symbol, date_bin(INTERVAL '1 minute', ts) AS bar, avg(price) AS close, sum(volume) AS volume FROM t GROUP BY 1, 2 ORDER BY 2"}
  features:
    op: features.compute
    inputs: {b: "bars[*]"}
    with: {ts: bar, partition_by: [symbol], features: [{kind: rolling_std, window: 20}, {kind: rsi, window: 14}]}
"#;

#[test]
fn max_workers_1_keeps_the_process_on_one_core() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("heavy.yaml");
    std::fs::write(&pipeline, HEAVY).unwrap();
    let report_file = dir.path().join("report.json");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args([
            "run",
            "--quiet",
            "--no-cache",
            "--max-workers",
            "1",
            "--report",
        ])
        .arg(&report_file)
        .arg(&pipeline)
        .status()
        .unwrap();
    assert!(status.success());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    let totals = &report["totals"];
    assert_eq!(totals["peak_threads"], 1);
    let seconds =
        |v: &serde_json::Value| v["secs"].as_f64().unwrap() + v["nanos"].as_f64().unwrap() / 1e9;
    let (cpu, wall) = (seconds(&totals["cpu_time"]), seconds(&totals["wall"]));
    assert!(wall > 0.3, "{wall} s is too short a run to judge");
    // Busy on more than one core would show as CPU time above the wall
    // time; a loaded machine only lowers the ratio.
    assert!(
        cpu <= wall * 1.15,
        "--max-workers 1 used {cpu:.2} s of CPU in {wall:.2} s"
    );
}

/// A library caller asks for node outputs and gets them after the run, even
/// those consumed (and so dropped) along the way; nodes not asked for are
/// not handed back.
#[test]
fn kept_outputs_come_back_with_the_report() {
    let plan = quiver::compile::compile_str(
        Path::new("keep.yaml"),
        r#"
pipeline: keep
nodes:
  prices:
    op: fetch.synthetic
    with: {dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-09}
  closes:
    op: transform.sql
    inputs: {p: prices}
    with: {query: "SELECT date, close FROM p WHERE close > 0 ORDER BY date"}
  count:
    op: transform.sql
    inputs: {c: closes}
    with: {query: "SELECT count(*) AS n FROM c"}
"#,
        &[],
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let keep = vec![plan.find("prices").unwrap(), plan.find("count").unwrap()];
    let report = run_with(&plan, RunOptions { keep, ..workers(2) });
    assert!(report.succeeded(), "{report}");
    let names: Vec<&str> = report.outputs.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(names, ["prices", "count"]);
    // Five weekdays of prices, all of them with a close.
    assert_eq!(report.outputs[0].1.num_rows(), 5);
    let count = report.outputs[1].1.concat().unwrap();
    let n = count
        .column(0)
        .as_any()
        .downcast_ref::<quiver::operators::arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 5);
}
