//! Reruns through the cache (issue: parameterized reruns). Run:
//!
//!     cargo bench --bench rerun
//!
//! The VN30 pipeline (`pipelines/vn30.yaml`, its defaults: 30 symbols, 5
//! days) is run as `quiver run` runs it — compile, forecast against the
//! cache, run, record — into a fresh cache folder, then again five times.
//! Both are timed from compile to the recorded run. The reruns execute no
//! node, which the bench checks before it prints, along with the outputs
//! being the same bytes. Target: the rerun at least 50× faster than the
//! first run.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use quiver::cache::{self, Forecast, Options, Store};
use quiver::compile::{Override, compile_file};
use quiver::exec::{RunOptions, RunReport};

fn run_once(out: &Path, cache_dir: &Path) -> (Duration, RunReport) {
    let start = Instant::now();
    let set = Override::parse_set(&format!("out_dir={}", out.display())).unwrap();
    let plan = compile_file(Path::new("pipelines/vn30.yaml"), &[set]).unwrap();
    let store = Store::new(cache_dir);
    let forecast = Forecast::new(&plan, &store, &Options::default());
    let run_plan = cache::run_plan(&plan, &forecast, &store);
    let (_, report) = support::execute(&run_plan, RunOptions::default());
    cache::record(&plan, &forecast, &store);
    (start.elapsed(), report)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cache_dir = dir.path().join("cache");

    let (first, cold) = run_once(&out, &cache_dir);
    assert!(cold.succeeded(), "{cold}");
    let written = support::files(&out);

    let mut reruns = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let (took, report) = run_once(&out, &cache_dir);
        assert!(report.succeeded(), "{report}");
        assert_eq!(
            report.totals.executed, 0,
            "a rerun executed nodes:\n{report}"
        );
        reruns.push(took);
        last = Some(report);
    }
    let last = last.expect("five reruns");
    assert_eq!(support::files(&out), written, "a rerun changed the outputs");
    reruns.sort();
    let median = reruns[reruns.len() / 2];
    println!(
        "vn30 ({} nodes): first run {:.3} s (executed {}); rerun median of 5 {:.1} ms \
         (executed 0; {} cached, {} sinks up to date): {:.0}x faster (target >= 50x)",
        last.nodes.len(),
        first.as_secs_f64(),
        cold.totals.executed,
        median.as_secs_f64() * 1e3,
        last.totals.cached,
        last.totals.up_to_date,
        first.as_secs_f64() / median.as_secs_f64()
    );
}
