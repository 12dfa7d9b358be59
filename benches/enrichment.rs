//! The news-enrichment cycle (issue: the data platform pieces). Run:
//!
//!     cargo bench --bench enrichment
//!
//! `pipelines/enrichment.yaml`, 120 items about 50 tickers, against the
//! local market-data API with the enrichment sources' latencies scaled
//! down ×0.1 (free float 250 ms, VWAP 60 ms, relative volume 60 ms). The
//! naive way (`--no-merge --sequential`: every item asks every source in
//! turn, as the hand-written cycle did) against quiver (merged, each
//! source within its own concurrency: 10, 15, 15), both warmed up on a
//! run without latency, their output files compared byte for byte before
//! any time is printed. quiver is held against the lower bound the
//! sources' limits set: the slowest source's ⌈50 / concurrency⌉ rounds of
//! its latency, plus the cycle's compute (the same run with no latency).

mod support;

use std::path::Path;
use std::time::Duration;

use quiver::compile::{Options, Override, compile_file_with_options};
use quiver::exec::{RunOptions, RunReport};
use quiver::serve::{ApiConfig, Route, SyntheticApi};
use support::files;

fn cycle(api: &SyntheticApi, out: &Path, merge: bool, sequential: bool) -> (Duration, RunReport) {
    let sets = [
        format!("api={}", api.url()),
        format!("out_dir={}", out.display()),
    ];
    let overrides: Vec<Override> = sets
        .iter()
        .map(|s| Override::parse_set(s).unwrap())
        .collect();
    let plan = compile_file_with_options(
        Path::new("pipelines/enrichment.yaml"),
        &overrides,
        quiver::operators::registry(),
        Options { merge },
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let options = RunOptions {
        sequential,
        ..RunOptions::default()
    };
    let (took, report) = support::execute(&quiver::cache::uncached(&plan), options);
    assert!(report.succeeded(), "{report}");
    (took, report)
}

fn main() {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| f != "enrichment") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = |latency: bool| {
        let mut config = ApiConfig::default();
        if latency {
            config.route_latency = [
                (Route::Float, Duration::from_millis(250)),
                (Route::Vwap, Duration::from_millis(60)),
                (Route::Rvol, Duration::from_millis(60)),
            ]
            .into();
        }
        rt.block_on(SyntheticApi::start("127.0.0.1:0", config))
            .unwrap()
    };
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str| root.path().join(name);

    // Warm-up, and the compute alone.
    let fast = start(false);
    cycle(&fast, &dir("warm-naive"), false, true);
    cycle(&fast, &dir("warm-quiver"), true, false);
    let (compute, _) = cycle(&fast, &dir("compute"), true, false);

    let api = start(true);
    let (naive, n) = cycle(&api, &dir("naive"), false, true);
    let naive_calls = api.stats().served_total();
    let api = start(true);
    let (quiver, q) = cycle(&api, &dir("quiver"), true, false);
    let quiver_calls = api.stats().served_total();
    assert!(
        files(&dir("naive")) == files(&dir("quiver")),
        "the naive way and quiver wrote different files"
    );
    let _ = (n, q);
    let bound = [(10u32, 0.25f64), (15, 0.06), (15, 0.06)]
        .iter()
        .map(|&(concurrency, latency)| 50u32.div_ceil(concurrency) as f64 * latency)
        .fold(0.0, f64::max)
        + compute.as_secs_f64();
    println!(
        "enrichment.yaml, 120 items about 50 tickers, latencies float 250 ms / vwap 60 ms / rvol 60 ms (output files equal):"
    );
    println!(
        "   naive (--no-merge --sequential): {naive_calls} calls, wall {:.2} s",
        naive.as_secs_f64()
    );
    println!(
        "   quiver (merged, per-source limits 10/15/15): {quiver_calls} calls, wall {:.2} s ({:.1}x faster)",
        quiver.as_secs_f64(),
        naive.as_secs_f64() / quiver.as_secs_f64()
    );
    println!(
        "   lower bound ⌈50 / 10⌉ × 0.25 s + compute {:.2} s = {bound:.2} s; quiver / bound = {:.3} (target ≤ 1.1)",
        compute.as_secs_f64(),
        quiver.as_secs_f64() / bound
    );
}
