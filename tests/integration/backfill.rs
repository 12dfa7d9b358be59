//! `pipelines/backfill.yaml`: killed half-way through 120 trading days, the
//! rerun computes only the days that were missing; and a parallel run
//! writes the same bytes as a sequential one.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quiver::cache::{Action, Forecast, Options, State, Store};
use quiver::compile::{Override, compile_file};
use quiver::plan::Plan;

// The benchmarks' helper that reads a folder of outputs back.
use crate::bench_support::files;

/// One portfolio against eight stocks keeps the test short; the dates are
/// the pipeline's own 120 trading days.
const SETTINGS: [&str; 2] = [
    "portfolios=[P1]",
    "universe=[FPT,VNM,HPG,MWG,VCB,ACB,TCB,MBB]",
];

fn args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for s in SETTINGS.iter().chain(extra) {
        v.push("--set".to_string());
        v.push(s.to_string());
    }
    v.push("--set".into());
    v.push(format!("out_dir={}", out.display()));
    v
}

fn plan(out: &Path) -> Plan {
    let sets: Vec<Override> = args(out, &[])
        .chunks(2)
        .map(|pair| Override::parse_set(&pair[1]).unwrap())
        .collect();
    compile_file(Path::new("pipelines/backfill.yaml"), &sets).unwrap_or_else(|d| panic!("{d}"))
}

fn quiver(extra: &[&str], set: Vec<String>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quiver"));
    cmd.args(["run", "--quiet"])
        .args(extra)
        .args(set)
        .arg("pipelines/backfill.yaml");
    cmd
}

/// The days whose `valued` stage is in the cache.
fn valued_days(plan: &Plan, forecast: &Forecast) -> (usize, usize) {
    let mut cached = 0;
    let mut all = 0;
    for (i, node) in plan.nodes() {
        if node.id.starts_with("valued[P1]@") {
            all += 1;
            if forecast.nodes[i.index()].state == State::Cached {
                cached += 1;
            }
        }
    }
    (cached, all)
}

#[cfg(unix)]
#[test]
fn an_interrupted_backfill_reruns_only_the_missing_days() {
    interrupted_backfill(&[]);
}

/// The same, run a window of 10 days at a time (see `quiver::windows`):
/// what a killed run stored is what its windows finished.
#[cfg(unix)]
#[test]
fn an_interrupted_backfill_in_windows_reruns_only_the_missing_days() {
    interrupted_backfill(&["--window-days", "10"]);
}

/// Kills a backfill half-way (with `extra` flags), reruns it, then runs
/// one more day: each run computes only what is missing.
#[cfg(unix)]
fn interrupted_backfill(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let plan = plan(&out);
    let cache_arg = cache.to_str().unwrap();

    // Kill the run once some days, not all, are stored.
    fn with<'a>(flags: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        flags.iter().chain(extra).copied().collect()
    }
    let mut child = quiver(&with(&["--cache-dir", cache_arg], extra), args(&out, &[]))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = Store::new(&cache);
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let (cached, _) = valued_days(&plan, &Forecast::new(&plan, &store, &Options::default()));
        if cached >= 30 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL: nothing runs after this
    child.wait().unwrap();

    let before = Forecast::new(&plan, &store, &Options::default());
    let (cached, all) = valued_days(&plan, &before);
    assert_eq!(all, 120);
    assert!((30..120).contains(&cached), "{cached} of {all} days stored");
    let to_run = plan
        .nodes()
        .filter(|(i, n)| {
            n.id.starts_with("valued[P1]@") && before.nodes[i.index()].action == Action::Run
        })
        .count();
    assert_eq!(to_run, all - cached);

    // The rerun executes the missing days only.
    let rerun = |name: &str, more: &[&str]| -> serde_json::Value {
        let report = dir.path().join(name);
        let flags = [
            "--cache-dir",
            cache_arg,
            "--report",
            report.to_str().unwrap(),
        ];
        let status = quiver(&with(&flags, extra), args(&out, more))
            .status()
            .unwrap();
        assert!(status.success());
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap()
    };
    let report = rerun("rerun.json", &[]);
    let valued_runs = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["id"].as_str().unwrap().starts_with("valued[P1]@") && n["status"] == "succeeded"
        })
        .count();
    assert_eq!(valued_runs, all - cached);
    let after = Forecast::new(&plan, &store, &Options::default());
    assert_eq!(valued_days(&plan, &after), (120, 120));
    for name in ["values", "risk", "sectors", "stress"] {
        let days = std::fs::read_dir(out.join(name)).unwrap().count();
        assert_eq!(days, 120, "{name}");
    }

    // One more day fetches one more day: 8 stocks' prices and 1 portfolio's
    // positions, and computes that day alone.
    let report = rerun("more.json", &["end=2025-11-19"]);
    let by_op = &report["totals"]["executions_by_op"];
    assert_eq!(by_op["fetch.synthetic"], 9, "{by_op}");
    assert_eq!(by_op["sink.parquet"], 4, "{by_op}");
    let ran: Vec<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "succeeded" && n["op"] == "transform.sql")
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(ran.iter().all(|id| id.ends_with("@2025-11-19")), "{ran:?}");
    for name in ["values", "risk", "sectors", "stress"] {
        let days = std::fs::read_dir(out.join(name)).unwrap().count();
        assert_eq!(days, 121, "{name}");
    }
}

#[test]
fn parallel_and_sequential_backfills_write_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (par, seq) = (dir.path().join("par"), dir.path().join("seq"));
    // The first 20 of the 120 days: the same stages, a shorter wait.
    let short = ["end=2025-06-27"];
    let ok = quiver(&["--no-cache"], args(&par, &short))
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = quiver(&["--no-cache", "--sequential"], args(&seq, &short))
        .status()
        .unwrap();
    assert!(ok.success());
    let (a, b) = (files(&par), files(&seq));
    // Four outputs, a folder of one file per date each.
    assert_eq!(a.len(), 4 * 20);
    assert!(a == b, "parallel and sequential outputs differ");
}
