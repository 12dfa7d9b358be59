//! Reruns through the cache: keys that stay put when nothing that matters
//! changed and move when anything does, a second run that executes
//! nothing, corrupt entries found and recomputed, TTLs, two processes on
//! one cache folder, selection, and a forecast that is what the run does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::support::run_with;
use async_trait::async_trait;
use quiver::cache::{self, Action, Forecast, Options, State, Store};
use quiver::compile::{compile_str, compile_str_with};
use quiver::exec::{NodeStatus, RunOptions, RunReport};
use quiver::operators::{
    Arity, ExecContext, Inputs, OpError, OpParams, Operator, ParamError, Registry, Table, Workload,
};
use quiver::plan::Plan;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn compile(text: &str) -> Plan {
    compile_str(Path::new("test.yaml"), text, &[]).unwrap_or_else(|d| panic!("{d}"))
}

/// Forecasts `plan` against the cache in `dir`, runs what it says, and
/// records the run, as `quiver run` does.
pub(crate) fn run_cached(plan: &Plan, dir: &Path, options: &Options) -> (Forecast, RunReport) {
    let store = Store::new(dir);
    let forecast = Forecast::new(plan, &store, options);
    let run_plan = cache::run_plan(plan, &forecast, &store);
    let report = run_with(&run_plan, RunOptions::default());
    cache::record(plan, &forecast, &store);
    (forecast, report)
}

/// Each node's cache key, by name.
fn keys(plan: &Plan) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let forecast = Forecast::new(plan, &Store::new(dir.path()), &Options::default());
    plan.nodes()
        .map(|(i, n)| (n.id.clone(), forecast.nodes[i.index()].key.hex()))
        .collect()
}

fn pipeline(out: &Path, end: &str) -> String {
    format!(
        r#"
pipeline: rerun
nodes:
  bars:
    foreach: symbol in [FPT, VNM]
    op: fetch.synthetic
    with: {{dataset: prices, symbol: "${{symbol}}", start: 2024-01-02, end: {end}}}
  closes:
    op: transform.sql
    inputs: {{bars: "bars[*]"}}
    with: {{query: "SELECT symbol, date, close FROM bars ORDER BY symbol, date"}}
  save:
    op: sink.parquet
    inputs: [closes]
    with: {{path: "{}"}}
"#,
        out.display()
    )
}

#[test]
fn keys_ignore_key_order_and_spelled_out_defaults() {
    let a = compile(
        r#"
pipeline: k
nodes:
  bars: {op: fetch.synthetic, with: {dataset: prices, symbol: FPT, start: 2024-01-02, end: 2024-02-01}}
"#,
    );
    let b = compile(
        r#"
pipeline: k
nodes:
  bars: {op: fetch.synthetic, with: {end: 2024-02-01, seed: 0, start: 2024-01-02, symbol: FPT, dataset: prices}}
"#,
    );
    assert_eq!(keys(&a), keys(&b));
}

#[test]
fn any_parameter_or_input_change_gives_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.parquet");
    let base = keys(&compile(&pipeline(&out, "2024-02-01")));
    let later = keys(&compile(&pipeline(&out, "2024-02-02")));
    for name in ["bars[FPT]", "bars[VNM]", "closes", "save"] {
        assert_ne!(base[name], later[name], "{name}");
    }
    let seeded = keys(&compile(
        &pipeline(&out, "2024-02-01")
            .replace("symbol: \"${symbol}\",", "symbol: \"${symbol}\", seed: 7,"),
    ));
    assert_ne!(base["bars[FPT]"], seeded["bars[FPT]"]);
    // Only what reads the changed node changes.
    let query = keys(&compile(
        &pipeline(&out, "2024-02-01").replace("ORDER BY symbol, date", "ORDER BY date, symbol"),
    ));
    assert_eq!(base["bars[FPT]"], query["bars[FPT]"]);
    assert_ne!(base["closes"], query["closes"]);
    assert_ne!(base["save"], query["save"]);
}

/// `test.count`: a source of `rows` rows, whose version the test chooses.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
struct CountParams {
    rows: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
struct CountParamsV2 {
    rows: usize,
}

#[derive(Debug)]
struct Count(usize);

#[async_trait]
impl Operator for Count {
    async fn execute(&self, _ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        use quiver::operators::arrow::array::Int64Array;
        use quiver::operators::arrow::record_batch::RecordBatch;
        let values = Int64Array::from_iter_values(0..self.0 as i64);
        let batch = RecordBatch::try_from_iter([("n", Arc::new(values) as _)])?;
        Ok(Table::from_batch(batch))
    }
}

impl OpParams for CountParams {
    const NAME: &'static str = "test.count";
    const DOC: &'static str = "Counts.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::None;
    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        Ok(Arc::new(Count(self.rows)))
    }
}

impl OpParams for CountParamsV2 {
    const NAME: &'static str = "test.count";
    const DOC: &'static str = "Counts, version 2.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::None;
    const VERSION: u32 = 2;
    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        Ok(Arc::new(Count(self.rows)))
    }
}

#[test]
fn an_operator_version_bump_gives_a_new_key_and_says_so() {
    let text = "pipeline: v\nnodes:\n  n: {op: test.count, with: {rows: 3}}\n";
    let mut v1 = Registry::builtins();
    v1.register::<CountParams>().unwrap();
    let mut v2 = Registry::builtins();
    v2.register::<CountParamsV2>().unwrap();
    let plan1 = compile_str_with(Path::new("v.yaml"), text, &[], &v1).unwrap();
    let plan2 = compile_str_with(Path::new("v.yaml"), text, &[], &v2).unwrap();
    assert_ne!(keys(&plan1)["n"], keys(&plan2)["n"]);

    let dir = tempfile::tempdir().unwrap();
    let (_, first) = run_cached(&plan1, dir.path(), &Options::default());
    assert!(first.succeeded(), "{first}");
    let forecast = Forecast::new(&plan2, &Store::new(dir.path()), &Options::default());
    assert_eq!(
        forecast.nodes[0].state,
        State::Stale("operator version 1 → 2".into())
    );
}

#[test]
fn a_second_run_executes_nothing_and_a_changed_parameter_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("closes.parquet");
    let cache = dir.path().join("cache");
    let plan = compile(&pipeline(&out, "2024-02-01"));

    let (first, report) = run_cached(&plan, &cache, &Options::default());
    assert!(report.succeeded(), "{report}");
    assert!(first.nodes.iter().all(|n| n.state == State::New));
    assert_eq!(report.totals.executed, 4);

    let (second, report) = run_cached(&plan, &cache, &Options::default());
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.totals.executed, 0, "{report}");
    assert!(second.nodes.iter().all(|n| n.action == Action::Keep));
    assert_eq!(report.totals.cached, 3);
    assert_eq!(report.totals.up_to_date, 1);

    // The sink's file removed: it is written again from the cached input.
    std::fs::remove_file(&out).unwrap();
    let (third, report) = run_cached(&plan, &cache, &Options::default());
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.totals.executions_by_op.get("sink.parquet"), Some(&1));
    assert_eq!(report.totals.executed, 1, "{report}");
    let closes = plan.find("closes").unwrap().index();
    assert_eq!(third.nodes[closes].action, Action::Load);
    assert!(out.exists());

    // One day more: the sources and everything after them are stale, saying why.
    let later = compile(&pipeline(&out, "2024-02-02"));
    let forecast = Forecast::new(&later, &Store::new(&cache), &Options::default());
    let fpt = later.find("bars[FPT]").unwrap().index();
    assert_eq!(
        forecast.nodes[fpt].state,
        State::Stale("parameter end: \"2024-02-01\" → \"2024-02-02\"".into())
    );
    let closes = later.find("closes").unwrap().index();
    assert!(
        matches!(&forecast.nodes[closes].state, State::Stale(why) if why.starts_with("inputs bars[symbol=FPT] and 1 more changed")),
        "{:?}",
        forecast.nodes[closes].state
    );
}

/// Every node's status in `report` is what `forecast` said it would be.
pub(crate) fn assert_forecast_held(plan: &Plan, forecast: &Forecast, report: &RunReport) {
    for (i, node) in plan.nodes() {
        let status = report.nodes[i.index()].status;
        let expected = match forecast.nodes[i.index()].action {
            Action::Run => NodeStatus::Succeeded,
            Action::Load => NodeStatus::Cached,
            Action::Keep if node.effect == quiver::operators::Effect::Sink => NodeStatus::UpToDate,
            Action::Keep => NodeStatus::Cached,
            Action::Unselected => NodeStatus::Unselected,
            Action::AsDays => NodeStatus::AsDays,
            Action::Given => unreachable!("a plan of every day hands nothing over"),
        };
        assert_eq!(status, expected, "{}", node.id);
    }
}

#[test]
fn selection_runs_what_it_names_and_what_that_needs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("closes.parquet");
    let cache = dir.path().join("cache");
    let text = pipeline(&out, "2024-02-01")
        + r#"
  other:
    op: fetch.synthetic
    with: {dataset: prices, symbol: HPG, start: 2024-01-02, end: 2024-02-01}
"#;
    let plan = compile(&text);
    let select = |args: &[&str]| Options {
        selected: Some(
            cache::select::select(
                &plan,
                &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .unwrap(),
        ),
        ..Options::default()
    };

    // Nothing cached: `closes` needs both fetches, which run though not selected.
    let (forecast, report) = run_cached(&plan, &cache, &select(&["closes"]));
    assert_forecast_held(&plan, &forecast, &report);
    let action = |f: &Forecast, name: &str| f.nodes[plan.find(name).unwrap().index()].action;
    assert_eq!(action(&forecast, "closes"), Action::Run);
    assert_eq!(action(&forecast, "bars[FPT]"), Action::Run);
    assert!(
        forecast.nodes[plan.find("bars[FPT]").unwrap().index()]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("runs because closes needs it"))
    );
    assert_eq!(action(&forecast, "save"), Action::Unselected);
    assert_eq!(action(&forecast, "other"), Action::Unselected);
    assert!(!out.exists());

    // `closes+` now: the sink runs from the cached `closes`, nothing else.
    let (forecast, report) = run_cached(&plan, &cache, &select(&["closes+"]));
    assert_forecast_held(&plan, &forecast, &report);
    assert_eq!(action(&forecast, "save"), Action::Run);
    assert_eq!(action(&forecast, "closes"), Action::Load);
    assert_eq!(action(&forecast, "bars[FPT]"), Action::Unselected);
    assert_eq!(report.totals.executed, 1);
    assert!(out.exists());

    // `--force` reruns a cached node even so.
    let forced = Options {
        force: [plan.find("closes").unwrap().index()].into(),
        ..select(&["closes"])
    };
    let (forecast, report) = run_cached(&plan, &cache, &forced);
    assert_forecast_held(&plan, &forecast, &report);
    assert_eq!(action(&forecast, "closes"), Action::Run);
    assert_eq!(action(&forecast, "bars[VNM]"), Action::Load);

    let unknown = cache::select::select(&plan, &["closs+".to_string()]).unwrap_err();
    assert!(unknown.contains("did you mean 'closes'"), "{unknown}");
}

#[test]
fn a_corrupt_entry_is_found_reported_and_computed_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("closes.parquet");
    let cache = dir.path().join("cache");
    let plan = compile(&pipeline(&out, "2024-02-01"));
    run_cached(&plan, &cache, &Options::default());
    let before = std::fs::read(&out).unwrap();

    // Damage one byte in the data of the stored `bars[FPT]`, `bars[VNM]`
    // (its first, where Arrow's framing is) and `closes`, all in one pack,
    // and remove the sink's output so that the run needs them.
    let store = Store::new(&cache);
    let damage = |node: &str, at: fn(u64) -> u64| {
        let entry = store
            .entries()
            .unwrap()
            .into_iter()
            .find(|e| e.header.node == node)
            .unwrap();
        let mut bytes = std::fs::read(&entry.path).unwrap();
        bytes[(entry.offset + at(entry.bytes)) as usize] ^= 0xff;
        std::fs::write(&entry.path, &bytes).unwrap();
    };
    damage("bars[FPT]", |n| n / 2);
    damage("bars[VNM]", |_| 0);
    damage("closes", |n| n / 2);
    std::fs::remove_file(&out).unwrap();
    let closes = plan.find("closes").unwrap();

    let (forecast, report) = run_cached(&plan, &cache, &Options::default());
    assert!(report.succeeded(), "{report}");
    assert_forecast_held(&plan, &forecast, &report);
    assert_eq!(forecast.nodes[closes.index()].action, Action::Run);
    let fpt = plan.find("bars[FPT]").unwrap().index();
    let vnm = plan.find("bars[VNM]").unwrap().index();
    assert!(
        matches!(&forecast.nodes[fpt].state, State::Stale(w) if w.contains("checksum does not match")),
        "{:?}",
        forecast.nodes[fpt].state
    );
    assert!(
        matches!(&forecast.nodes[vnm].state, State::Stale(w) if w.contains("corrupt")),
        "{:?}",
        forecast.nodes[vnm].state
    );
    assert_eq!(forecast.warnings.len(), 3, "{:?}", forecast.warnings);
    assert_eq!(report.totals.executed, 4);
    // Recomputed, the same file.
    assert_eq!(std::fs::read(&out).unwrap(), before);
    // And sound again.
    let again = Forecast::new(&plan, &store, &Options::default());
    assert!(again.nodes.iter().all(|n| n.state == State::Cached));
}

#[test]
fn a_ttl_expires() {
    let dir = tempfile::tempdir().unwrap();
    let plan = compile(
        r#"
pipeline: ttl
nodes:
  quotes:
    op: fetch.synthetic
    cache: {ttl: 300ms}
    with: {dataset: prices, symbol: FPT, start: 2024-01-02, end: 2024-01-10}
  total:
    op: transform.sql
    inputs: [quotes]
    with: {query: "SELECT sum(volume) AS v FROM quotes"}
"#,
    );
    run_cached(&plan, dir.path(), &Options::default());
    let store = Store::new(dir.path());
    let fresh = Forecast::new(&plan, &store, &Options::default());
    assert_eq!(fresh.nodes[0].state, State::Cached);
    assert_eq!(fresh.nodes[1].state, State::Cached);
    std::thread::sleep(Duration::from_millis(400));
    let old = Forecast::new(&plan, &store, &Options::default());
    assert!(
        matches!(&old.nodes[0].state, State::Stale(w) if w.contains("older than its TTL")),
        "{:?}",
        old.nodes[0].state
    );
    // What reads a live source is computed again with it.
    assert_eq!(old.nodes[1].action, Action::Run);
    let (_, report) = run_cached(&plan, dir.path(), &Options::default());
    assert_eq!(report.totals.executed, 2);

    let off = compile(
        r#"
pipeline: off
nodes:
  quotes:
    op: fetch.synthetic
    cache: false
    with: {dataset: prices, symbol: FPT, start: 2024-01-02, end: 2024-01-10}
"#,
    );
    run_cached(&off, dir.path(), &Options::default());
    let (forecast, report) = run_cached(&off, dir.path(), &Options::default());
    assert_eq!(
        forecast.nodes[0].state,
        State::Uncached("cache: false".into())
    );
    assert_eq!(report.totals.executed, 1);
}

#[test]
fn two_processes_share_one_cache_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let file = dir.path().join("p.yaml");
    let text = r#"
pipeline: shared
nodes:
  bars:
    foreach: symbol in [FPT, VNM, HPG, MWG, VCB, TCB]
    op: fetch.synthetic
    with: {dataset: ticks, symbol: "${symbol}", start: 2024-01-02, end: 2024-01-20}
  vwap:
    foreach: symbol in [FPT, VNM, HPG, MWG, VCB, TCB]
    op: transform.sql
    inputs: {bars: "bars[${symbol}]"}
    with: {query: "SELECT sum(price * volume) / sum(volume) AS vwap FROM bars"}
"#;
    std::fs::write(&file, text).unwrap();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(["run", "--quiet", "--cache-dir"])
            .arg(&cache)
            .arg("--report")
            .arg(dir.path().join(format!("r{}.json", rand_suffix())))
            .arg(&file)
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let plan = compile(text);
    let store = Store::new(&cache);
    let forecast = Forecast::new(&plan, &store, &Options::default());
    for (i, node) in plan.nodes() {
        assert_eq!(
            forecast.nodes[i.index()].state,
            State::Cached,
            "{}",
            node.id
        );
        store
            .verify(&forecast.nodes[i.index()].key)
            .unwrap_or_else(|e| panic!("{}: {e:?}", node.id));
    }
    // No temporary file left behind.
    let mut stack = vec![cache.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let name = p.to_string_lossy();
            assert!(
                !name.contains(".tmp-") && !name.ends_with(".tmp"),
                "{}",
                p.display()
            );
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn the_cache_commands_list_measure_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "pipeline: listed\nnodes:\n  a: {op: fetch.synthetic, with: {dataset: prices, symbol: FPT, start: 2024-01-02, end: 2024-01-10}}\n  b: {op: transform.sql, inputs: [a], with: {query: SELECT count(*) AS n FROM a}}\n",
    )
    .unwrap();
    let quiver = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let cache_dir = cache.to_str().unwrap();
    let report = dir.path().join("r.json");
    quiver(&[
        "run",
        "--quiet",
        "--cache-dir",
        cache_dir,
        "--report",
        report.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let ls = quiver(&["cache", "ls", "--cache-dir", cache_dir]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("KEY"), "{ls}");
    assert!(
        ls.contains("fetch.synthetic") && ls.contains("listed") && ls.contains(" a\n"),
        "{ls}"
    );
    assert!(
        lines.last().unwrap().starts_with("2 stored outputs,"),
        "{ls}"
    );
    let du = quiver(&["cache", "du", "--cache-dir", cache_dir]);
    assert!(du.contains("1 outputs  listed fetch.synthetic"), "{du}");
    assert!(du.contains("2 outputs  in all"), "{du}");
    let gc = quiver(&[
        "cache",
        "gc",
        "--older-than",
        "7d",
        "--cache-dir",
        cache_dir,
    ]);
    assert!(gc.starts_with("removed 0 outputs"), "{gc}");
    assert!(gc.contains("last used more than 7d ago"), "{gc}");
    let verify = quiver(&["cache", "verify", "--cache-dir", cache_dir]);
    assert!(verify.contains("checked 2 outputs"), "{verify}");
    assert!(verify.contains("0 bad"), "{verify}");
    let du = quiver(&["cache", "du", "--by-day", "--cache-dir", cache_dir]);
    assert!(du.contains("listed fetch.synthetic undated"), "{du}");
    // The last run used both: kept.
    let gc = quiver(&["cache", "gc", "--keep-runs", "1", "--cache-dir", cache_dir]);
    assert!(gc.starts_with("removed 0 outputs"), "{gc}");
    // No room at all: every day goes.
    let gc = quiver(&["cache", "gc", "--max-size", "1", "--cache-dir", cache_dir]);
    assert!(gc.starts_with("removed 2 outputs"), "{gc}");
    assert!(gc.contains("1 packs removed"), "{gc}");
    let clear = quiver(&["cache", "clear", "--cache-dir", cache_dir]);
    assert!(clear.starts_with("removed "), "{clear}");
    let ls = quiver(&["cache", "ls", "--cache-dir", cache_dir]);
    assert!(ls.ends_with(": no stored outputs\n"), "{ls}");
}
