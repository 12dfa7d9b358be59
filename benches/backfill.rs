//! The backfill pipeline (issue: parameterized reruns). Run:
//!
//!     cargo bench --bench backfill
//!
//! `pipelines/backfill.yaml` on its defaults (120 trading days, 3
//! portfolios, 30 stocks), as `quiver run` runs it:
//! 1. in parallel (the machine's cores) and with `--sequential`, without
//!    the cache; the two outputs are checked byte for byte before either
//!    time is printed;
//! 2. into a fresh cache, then with one more trading day: the forecast's
//!    count of nodes to run, and the time.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::files;

use quiver::cache::{self, Forecast, Options, Store};
use quiver::compile::{Override, compile_file};
use quiver::exec::{RunOptions, RunReport};
use quiver::plan::Plan;

fn plan(out: &Path, end: &str) -> Plan {
    let sets = [
        Override::parse_set(&format!("out_dir={}", out.display())).unwrap(),
        Override::parse_set(&format!("end={end}")).unwrap(),
    ];
    compile_file(Path::new("pipelines/backfill.yaml"), &sets).unwrap()
}

fn execute(plan: &Plan, options: RunOptions) -> (Duration, RunReport) {
    let (took, report) = support::execute(plan, options);
    assert!(report.succeeded(), "{report}");
    (took, report)
}

fn cached(plan: &Plan, dir: &Path) -> (Duration, usize, RunReport) {
    let start = Instant::now();
    let store = Store::new(dir);
    let forecast = Forecast::new(plan, &store, &Options::default());
    let to_run = forecast.count(cache::Action::Run);
    let run_plan = cache::run_plan(plan, &forecast, &store);
    let (_, report) = execute(&run_plan, RunOptions::default());
    cache::record(plan, &forecast, &store);
    (start.elapsed(), to_run, report)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (par, seq, warm) = (
        dir.path().join("par"),
        dir.path().join("seq"),
        dir.path().join("warm"),
    );

    // Warm-up: the same run once, its output thrown away.
    execute(&plan(&warm, "2025-11-18"), RunOptions::default());
    let (parallel, report) = execute(&plan(&par, "2025-11-18"), RunOptions::default());
    let sequential_options = RunOptions {
        sequential: true,
        ..RunOptions::default()
    };
    let (sequential, _) = execute(&plan(&seq, "2025-11-18"), sequential_options);
    let (a, b) = (files(&par), files(&seq));
    assert_eq!(a.len(), 4 * 120, "four outputs, one file per date each");
    assert!(a == b, "parallel and sequential outputs differ");
    println!(
        "backfill, 120 days x 3 portfolios ({} nodes, {} executed): parallel {:.2} s, \
         sequential {:.2} s ({:.2}x); the {} output files byte-identical",
        report.nodes.len(),
        report.totals.executed,
        parallel.as_secs_f64(),
        sequential.as_secs_f64(),
        sequential.as_secs_f64() / parallel.as_secs_f64(),
        a.len()
    );

    let cache_dir = dir.path().join("cache");
    let out = dir.path().join("cached");
    let (cold, cold_runs, _) = cached(&plan(&out, "2025-11-18"), &cache_dir);
    let (more, more_runs, report) = cached(&plan(&out, "2025-11-19"), &cache_dir);
    assert_eq!(
        more_runs, report.totals.executed,
        "the forecast is what ran"
    );
    println!(
        "with the cache: 120 days {:.2} s ({cold_runs} nodes run); one more day {:.3} s \
         ({more_runs} nodes run: {})",
        cold.as_secs_f64(),
        more.as_secs_f64(),
        cache::ran(&report)
    );
}
