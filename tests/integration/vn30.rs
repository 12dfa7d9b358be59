//! The VN30 pipeline end to end: what it writes, each fetch once, the
//! interval guard, completeness when a symbol fails, incremental reruns and
//! identical bytes whatever the parallelism.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use async_trait::async_trait;
use quiver::compile::{Override, compile_file, compile_str_with};
use quiver::exec::{NodeStatus, RunOptions, RunReport};
use quiver::operators::{
    Arity, DateRange, ExecContext, Inputs, OpError, OpParams, Operator, ParamError, Registry,
    Table, Workload, registry,
};
use quiver::plan::Plan;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bench_support::files;
use crate::support::run_with;

const PIPELINE: &str = "pipelines/vn30.yaml";

fn sets(items: &[String]) -> Vec<Override> {
    items
        .iter()
        .map(|s| Override::parse_set(s).unwrap())
        .collect()
}

/// Three symbols over `start..=end` into `out`, a cap the three can hold.
fn params(out: &Path, start: &str, end: &str) -> Vec<String> {
    vec![
        "symbols=[ACB, FPT, VNM]".into(),
        format!("start_date={start}"),
        format!("end_date={end}"),
        "history_start=2026-01-02".into(),
        "weight_cap=0.5".into(),
        format!("out_dir={}", out.display()),
    ]
}

fn compile(overrides: &[String]) -> Plan {
    compile_file(Path::new(PIPELINE), &sets(overrides)).unwrap_or_else(|d| panic!("{d}"))
}

fn workers(n: usize) -> RunOptions {
    RunOptions {
        max_workers: n,
        ..RunOptions::default()
    }
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
fn writes_features_per_symbol_and_day_and_the_index_per_day_fetching_each_thing_once() {
    let out = tempfile::tempdir().unwrap();
    let plan = compile(&params(out.path(), "2026-01-05", "2026-01-06"));
    let report = run_with(&plan, workers(4));
    assert!(report.succeeded(), "{report}");
    assert!(report.nodes.iter().all(|n| n.attempts <= 1), "{report}");
    // 3 symbols × (2 days of ticks, 3 days of prices from 2026-01-02, stock info).
    assert_eq!(report.totals.executions_by_op["fetch.synthetic"], 18);
    // The weights' prices and the session's ticks are the features' own.
    assert_eq!(plan.stats.merged["fetch.synthetic"], 12);

    let written = files(out.path());
    // HOSE sessions in 5-minute candles: 09:15–11:30 is 27, 13:00–14:30 is
    // 18, and the 14:45 closing auction is one more: 46 a day.
    for day in ["2026-01-05", "2026-01-06"] {
        // One file a day, the three symbols' candles in it.
        let file = PathBuf::from(format!("features/date={day}/part-0.parquet"));
        assert_eq!(parquet_rows(&out.path().join(&file)), 3 * 46);
        let file = PathBuf::from(format!("index/date={day}/part-0.parquet"));
        assert_eq!(
            parquet_rows(&out.path().join(&file)),
            46,
            "{}",
            file.display()
        );
    }
    assert_eq!(
        written.len(),
        4,
        "{:?}",
        written.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
}

#[test]
fn sequential_and_parallel_runs_write_identical_files() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (dir, sequential) in [(&a, true), (&b, false)] {
        let plan = compile(&params(dir.path(), "2026-01-05", "2026-01-07"));
        let options = RunOptions {
            sequential,
            max_workers: 4,
            ..RunOptions::default()
        };
        let report = run_with(&plan, options);
        assert!(report.succeeded(), "{report}");
        if sequential {
            // One node at a time: no two nodes' [start, end) overlap.
            let mut spans: Vec<_> = report.nodes.iter().map(|n| (n.start, n.end)).collect();
            spans.sort();
            assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0));
        }
    }
    let (x, y) = (files(a.path()), files(b.path()));
    assert_eq!(x.len(), 6);
    assert!(
        x == y,
        "the files differ between sequential and parallel runs"
    );
}

fn quiver(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_index_is_defined_on_five_minute_candles_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = quiver(&["validate", PIPELINE, "--set", "interval=1m"], root);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--set interval: '1m' is not one of the allowed values: 5m — the VN30 index is defined on 5-minute candles"),
        "{stderr}"
    );
}

#[test]
fn days_already_persisted_are_skipped_unless_forced_and_one_more_day_computes_one_day() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pipeline = root.join(PIPELINE);
    let pipeline = pipeline.to_str().unwrap();
    let with = |extra: &[&str], end: &str| -> Vec<String> {
        let mut args: Vec<String> = params(Path::new("out"), "2026-01-05", end)
            .into_iter()
            .flat_map(|p| ["--set".to_string(), p])
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>| -> String {
        let mut all = vec!["run".to_string(), pipeline.to_string()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = quiver(&refs, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
    };
    let first = run(with(&[], "2026-01-06"));
    assert!(first.contains("sink.parquet ×4"), "{first}");
    let again = run(with(&[], "2026-01-06"));
    assert!(again.contains("executed 0 nodes"), "{again}");
    assert!(again.contains("4 sinks up to date"), "{again}");

    // The plan says how many days each stage will run.
    let plan = {
        let mut args = vec!["plan".to_string(), pipeline.to_string()];
        args.extend(with(&[], "2026-01-07"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        String::from_utf8_lossy(&quiver(&refs, dir.path()).stdout).into_owned()
    };
    assert!(
        plan.contains("index.level: 1 of 3 partitions to run"),
        "{plan}"
    );
    assert!(
        plan.contains("features.intraday: 3 of 9 partitions to run"),
        "{plan}"
    );
    let more = run(with(&[], "2026-01-07"));
    assert!(
        more.contains("features.intraday ×3") && more.contains("index.level ×1"),
        "{more}"
    );

    let forced = run(with(&["--set", "force_recalculate=true"], "2026-01-07"));
    assert!(forced.contains("sink.parquet ×6"), "{forced}");
    assert!(forced.contains("index.level ×3"), "{forced}");
}

/// `fetch.synthetic`, except that VNM's trades always fail.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
struct FlakyParams {
    dataset: String,
    symbol: String,
    start: Option<String>,
    end: Option<String>,
    latency: Option<String>,
}

impl OpParams for FlakyParams {
    const NAME: &'static str = "test.synthetic";
    const DOC: &'static str = "fetch.synthetic, with VNM's trades failing";
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::None;
    const DATE_RANGE: Option<DateRange> = Some(DateRange {
        start: "start",
        end: "end",
        end_inclusive: true,
    });

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        let failing = self.symbol == "VNM" && self.dataset == "ticks";
        let mut params = serde_json::to_value(&self).unwrap();
        params.as_object_mut().unwrap().retain(|_, v| !v.is_null());
        let inner = registry().get("fetch.synthetic").unwrap().build(params)?;
        Ok(Arc::new(Flaky { inner, failing }))
    }
}

#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn Operator>,
    failing: bool,
}

#[async_trait]
impl Operator for Flaky {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        if self.failing {
            return Err(OpError::Invalid("VNM's trades are not available".into()));
        }
        self.inner.execute(ctx, inputs).await
    }
}

#[test]
fn a_failed_symbol_fails_the_run_by_name_and_the_others_are_persisted() {
    let out = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(PIPELINE)
        .unwrap()
        .replace("op: fetch.synthetic", "op: test.synthetic");
    let mut registry = Registry::builtins();
    registry.register::<FlakyParams>().unwrap();
    let plan = compile_str_with(
        Path::new(PIPELINE),
        &text,
        &sets(&params(out.path(), "2026-01-05", "2026-01-06")),
        &registry,
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let report: RunReport = run_with(&plan, workers(2));
    assert!(!report.succeeded(), "{report}");
    let status = |id: &str| report.node(id).unwrap_or_else(|| panic!("no {id}")).status;
    for day in ["2026-01-05", "2026-01-06"] {
        // The index and the aggregate need every symbol: not computed, and
        // their failure names the symbol missing.
        for id in [format!("session@{day}"), format!("whale@{day}")] {
            assert_eq!(status(&id), NodeStatus::Failed, "{id}");
            let error = report.node(&id).unwrap().error_message().unwrap();
            assert!(error.contains("VNM"), "{id}: {error}");
        }
        assert_ne!(status(&format!("save_index@{day}")), NodeStatus::Succeeded);
        // The other symbols' features are still persisted.
        assert_eq!(
            status(&format!("save_features@{day}")),
            NodeStatus::Succeeded
        );
    }
    let written: Vec<PathBuf> = files(out.path()).into_iter().map(|(p, _)| p).collect();
    let expected: Vec<PathBuf> = ["2026-01-05", "2026-01-06"]
        .iter()
        .map(|day| PathBuf::from(format!("features/date={day}/part-0.parquet")))
        .collect();
    assert_eq!(written, expected);
    for file in &expected {
        // ACB's and FPT's candles, 46 each; none of VNM's.
        assert_eq!(parquet_rows(&out.path().join(file)), 2 * 46);
    }
}
