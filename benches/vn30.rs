//! The VN30 pipeline (issue: VN30 done right). Run:
//!
//!     cargo bench --bench vn30               # both parts
//!     cargo bench --bench vn30 -- naive      # part 1
//!     cargo bench --bench vn30 -- scale      # part 2
//!     cargo bench --bench vn30 -- windows    # part 3
//!     cargo bench --bench vn30 -- windows-cache  # part 4
//!
//! 1. Side by side: `pipelines/vn30.yaml`, 30 symbols, 5 days, every fetch
//!    waiting 200 ms, 6 fetches in flight. The naive way (`--no-merge
//!    --sequential`: every declared fetch runs, one node at a time, as the
//!    hand-written pipeline did) against quiver (merged, parallel on the
//!    machine's cores); both warmed up on a small run first, and their
//!    output files compared byte for byte before any time is printed.
//!    quiver is held against ⌈fetches / 6⌉ × 0.2 s plus its compute, the
//!    compute measured as the same run with no fetch latency.
//! 2. Scale: 400 symbols over 50, 100 and 250 trading days, no latency, as
//!    `quiver run --no-cache` in a process of its own: the process's wall
//!    time (compile included), and the run's summary (its own time, the
//!    outputs held at the peak, peak resident memory).
//! 3. Windows: `quiver run --no-cache` as a user runs it (a window of days
//!    at a time, the default) at 400, 1,000 and 2,000 symbols over 250
//!    days and at 400 over 50 and 100, against one plan of every day
//!    (`--window-days 0`) where that fits: 400 × 250 and 2,000 × 50, their
//!    output files compared byte for byte before the times are printed.
//!    Each run is a process of its own; peak resident memory as the run
//!    reports it.
//! 4. The default path, the cache on, one plan against windows: a run
//!    into an empty cache, then the same run again (nothing to do).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use quiver::compile::{Options, Override, compile_file_with_options};
use quiver::exec::{RunOptions, RunReport};
use quiver::plan::Plan;
use support::{files, universe_of};

const PIPELINE: &str = "pipelines/vn30.yaml";

fn plan(sets: &[String], merge: bool) -> Plan {
    let overrides: Vec<Override> = sets
        .iter()
        .map(|s| Override::parse_set(s).unwrap())
        .collect();
    compile_file_with_options(
        Path::new(PIPELINE),
        &overrides,
        quiver::operators::registry(),
        Options { merge },
    )
    .unwrap_or_else(|d| panic!("{d}"))
}

fn execute(plan: &Plan, sequential: bool) -> (Duration, RunReport) {
    let options = RunOptions {
        sequential,
        ..RunOptions::default()
    };
    let (took, report) = support::execute(plan, options);
    assert!(report.succeeded(), "{report}");
    (took, report)
}

fn fetches(report: &RunReport) -> usize {
    report.totals.executions_by_op["fetch.synthetic"] as usize
}

fn side_by_side() {
    let root = tempfile::tempdir().unwrap();
    let run = |name: &str, latency: &str, extra: &[&str], merge: bool, sequential: bool| {
        let out = root.path().join(name);
        let mut sets = vec![
            format!("out_dir={}", out.display()),
            format!("api_latency={latency}"),
            "api_concurrency=6".to_string(),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        let (took, report) = execute(&plan(&sets, merge), sequential);
        (took, report, out)
    };
    // Warm-up: page cache, allocator, the synthetic walks.
    let small = [
        "symbols=[FPT, VNM]",
        "weight_cap=0.5",
        "end_date=2026-01-05",
    ];
    run("warm-quiver", "0ms", &small, true, false);
    run("warm-naive", "0ms", &small, false, true);

    let (compute, _, _) = run("compute", "0ms", &[], true, false);
    let (quiver, q, q_out) = run("quiver", "200ms", &[], true, false);
    let (naive, n, n_out) = run("naive", "200ms", &[], false, true);
    assert!(
        files(&q_out) == files(&n_out),
        "quiver and the naive way wrote different files"
    );
    let (fq, fnaive) = (fetches(&q), fetches(&n));
    let bound = fq.div_ceil(6) as f64 * 0.2 + compute.as_secs_f64();
    println!(
        "1. vn30.yaml, 30 symbols × 5 days, 200 ms per fetch, 6 in flight ({} output files equal):",
        files(&q_out).len()
    );
    println!(
        "   naive (--no-merge --sequential): {fnaive} fetches, {} nodes, wall {:.2} s",
        n.nodes.len(),
        naive.as_secs_f64()
    );
    println!(
        "   quiver (merged, parallel):        {fq} fetches, {} nodes, wall {:.2} s ({:.1}x faster)",
        q.nodes.len(),
        quiver.as_secs_f64(),
        naive.as_secs_f64() / quiver.as_secs_f64()
    );
    println!(
        "   lower bound ⌈{fq} / 6⌉ × 0.2 s + compute {:.2} s = {bound:.2} s; quiver / bound = {:.3} (target ≤ 1.02)",
        compute.as_secs_f64(),
        quiver.as_secs_f64() / bound
    );
}

fn scale() {
    println!("2. vn30.yaml, 400 symbols, no latency, quiver run --no-cache (own process):");
    for (days, _, _) in RANGES {
        let out = tempfile::tempdir().unwrap();
        let (wall, summary) = run_summary(400, days, &["--no-cache"], &out.path().join("out"));
        println!("   {days} days: process wall {wall:.1} s (compile included); {summary}");
    }
}

/// The ranges ending on 2025-12-31: (days, start, history start 5
/// sessions earlier).
const RANGES: [(usize, &str, &str); 3] = [
    (50, "2025-10-23", "2025-10-16"),
    (100, "2025-08-12", "2025-08-05"),
    (250, "2024-12-31", "2024-12-24"),
];

/// One `quiver run --no-cache` of `symbols` over `days`, in a process of
/// its own, writing to `out`: its wall time, executed nodes, and peak
/// resident MiB as its summary says.
fn run_once(symbols: usize, days: usize, extra: &[&str], out: &Path) -> (f64, String, f64) {
    run_with(symbols, days, &[&["--no-cache"], extra].concat(), out)
}

/// [`run_once`] with the flags given (the cache on unless they say).
fn run_with(symbols: usize, days: usize, extra: &[&str], out: &Path) -> (f64, String, f64) {
    let (wall, summary) = run_summary(symbols, days, extra, out);
    let executed = summary
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let resident = summary
        .split("peak resident ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or(f64::NAN);
    (wall, executed, resident)
}

/// One `quiver run` of `symbols` over `days` (a range of [`RANGES`]) with
/// the flags given, in a process of its own, writing to `out`: its wall
/// time and its summary line.
fn run_summary(symbols: usize, days: usize, extra: &[&str], out: &Path) -> (f64, String) {
    let (_, start, history) = RANGES.iter().find(|r| r.0 == days).expect("a range");
    let pipeline = format!("{}/{PIPELINE}", env!("CARGO_MANIFEST_DIR"));
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["run", &pipeline, "--quiet"])
        .args(["--set", &universe_of(symbols)])
        .args(["--set", &format!("start_date={start}")])
        .args(["--set", "end_date=2025-12-31"])
        .args(["--set", &format!("history_start={history}")])
        .args(["--set", &format!("out_dir={}", out.display())])
        .args(extra)
        .current_dir(out.parent().expect("a parent"))
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("vn30: executed"))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    (wall, summary.to_string())
}

fn windows() {
    println!("3. vn30.yaml, quiver run --no-cache (own process, 2 cores):");
    // One plan of every day against windows, same data, outputs equal.
    for (symbols, days) in [(400, 250), (2000, 50)] {
        let dir = tempfile::tempdir().unwrap();
        let (whole_out, windowed_out) = (dir.path().join("whole"), dir.path().join("windows"));
        let whole = run_once(symbols, days, &["--window-days", "0"], &whole_out);
        let windowed = run_once(symbols, days, &[], &windowed_out);
        assert!(
            files(&whole_out) == files(&windowed_out),
            "windows write other bytes"
        );
        println!(
            "   {symbols} × {days}: one plan {:.1} s, {:.0} MiB; windows {:.1} s, {:.0} MiB \
             ({} nodes each, outputs equal)",
            whole.0, whole.2, windowed.0, windowed.2, whole.1
        );
    }
    // Flat in days, then in symbols.
    for (symbols, days) in [(400, 50), (400, 100), (400, 250), (1000, 250), (2000, 250)] {
        let dir = tempfile::tempdir().unwrap();
        let (wall, executed, resident) = run_once(symbols, days, &[], &dir.path().join("out"));
        let per = wall / executed.parse::<f64>().unwrap_or(f64::NAN) * 1e6;
        println!(
            "   {symbols} × {days}: {wall:.1} s, {resident:.0} MiB peak resident, \
             {executed} nodes, {per:.0} µs a node"
        );
    }
}

fn windows_cached() {
    println!("4. vn30.yaml, 400 symbols × 250 days, quiver run (own process, 2 cores):");
    // The default path, the cache on: a cold run into an empty cache, then
    // the same run again (nothing to do).
    for (name, extra) in [
        ("one plan", &["--window-days", "0"][..]),
        ("windows", &[][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let flags: Vec<&str> = extra
            .iter()
            .copied()
            .chain(["--cache-dir", cache.to_str().unwrap()])
            .collect();
        let out = dir.path().join("out");
        let cold = run_with(400, 250, &flags, &out);
        let again = run_with(400, 250, &flags, &out);
        assert_eq!(again.1, "0", "the rerun executed nodes");
        println!(
            "   400 × 250 with the cache, {name}: cold {:.1} s, {:.0} MiB; rerun with nothing to do \
             {:.1} s, {:.0} MiB",
            cold.0, cold.2, again.0, again.2
        );
    }
}

fn main() {
    let wants = support::wanted_parts();
    if wants("naive") {
        side_by_side();
    }
    if wants("scale") {
        scale();
    }
    if wants("windows") {
        windows();
    }
    if wants("windows-cache") {
        windows_cached();
    }
}
