//! The VN30 pipeline (issue: VN30 done right). Run:
//!
//!     cargo bench --bench vn30               # both parts
//!     cargo bench --bench vn30 -- naive      # part 1
//!     cargo bench --bench vn30 -- scale      # part 2
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

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use quiver::compile::{Options, Override, compile_file_with_options};
use quiver::exec::{RunOptions, RunReport};
use quiver::plan::Plan;
use support::{files, universe};

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
    let quiver = env!("CARGO_BIN_EXE_quiver");
    let symbols = universe();
    let pipeline = format!("{}/{PIPELINE}", env!("CARGO_MANIFEST_DIR"));
    println!("2. vn30.yaml, 400 symbols, no latency, quiver run --no-cache (own process):");
    // Each range ends on 2025-12-31; starts are 50, 100 and 250 HOSE
    // trading days before it, history 5 sessions earlier still.
    for (days, start, history) in [
        (50, "2025-10-23", "2025-10-16"),
        (100, "2025-08-12", "2025-08-05"),
        (250, "2024-12-31", "2024-12-24"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let output = Command::new(quiver)
            .args(["run", &pipeline, "--no-cache", "--set", &symbols])
            .args(["--set", &format!("start_date={start}")])
            .args(["--set", "end_date=2025-12-31"])
            .args(["--set", &format!("history_start={history}")])
            .args(["--set", &format!("out_dir={}", out.path().display())])
            .current_dir(out.path())
            .output()
            .unwrap();
        let wall = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let summary = stderr
            .lines()
            .find(|l| l.starts_with("vn30: executed"))
            .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
        println!(
            "   {days} days: process wall {:.1} s (compile included); {summary}",
            wall.as_secs_f64()
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
}
