//! Where the scheduler runs: on the compute runtime while only compute
//! nodes run, on the I/O runtime otherwise. Moving must change nothing a
//! run does: order, cancellation, and I/O nodes never waiting behind
//! compute threads that are all busy.

use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use quiver::exec::{Executor, NodeStatus, RunOptions};
use quiver::plan::Source;

use crate::support::{Test, plan_of, run, run_with};

const MS: Duration = Duration::from_millis(1);

#[test]
fn a_chain_alternating_io_and_compute_runs_in_order() {
    let names: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let nodes = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let op = if i % 2 == 0 {
                Test::Wait(MS)
            } else {
                Test::Think(MS)
            };
            let inputs = match i {
                0 => vec![],
                _ => vec![Source::One(NodeIndex::new(i - 1))],
            };
            (name.as_str(), op, inputs)
        })
        .collect();
    let report = run(&plan_of(nodes));
    assert!(report.succeeded(), "{report}");
    for pair in report.nodes.windows(2) {
        assert!(
            pair[0].end <= pair[1].start,
            "{} before {}",
            pair[0].id,
            pair[1].id
        );
    }
}

#[test]
fn io_nodes_do_not_wait_behind_busy_compute_threads() {
    // Two compute nodes hold both compute threads for 800 ms; meanwhile a
    // chain of ten 10 ms I/O nodes runs start to end.
    let names: Vec<String> = (0..10).map(|i| format!("io{i}")).collect();
    let mut nodes = vec![
        ("block_a", Test::Block(800 * MS), vec![]),
        ("block_b", Test::Block(800 * MS), vec![]),
    ];
    for (i, name) in names.iter().enumerate() {
        let inputs = match i {
            0 => vec![],
            _ => vec![Source::One(NodeIndex::new(i + 1))],
        };
        nodes.push((name.as_str(), Test::Wait(10 * MS), inputs));
    }
    let report = run_with(
        &plan_of(nodes),
        RunOptions {
            max_workers: 2,
            ..RunOptions::default()
        },
    );
    assert!(report.succeeded(), "{report}");
    let io_done = report.node("io9").unwrap().end;
    let blocks_done = report.node("block_a").unwrap().end;
    assert!(
        io_done < blocks_done.saturating_sub(200 * MS),
        "the I/O chain ended at {io_done:?}, the compute nodes at {blocks_done:?}"
    );
}

#[test]
fn a_run_of_compute_nodes_only_can_be_cancelled() {
    let plan = plan_of(vec![
        ("think", Test::Think(Duration::from_secs(30)), vec![]),
        (
            "after",
            Test::Think(MS),
            vec![Source::One(NodeIndex::new(0))],
        ),
    ]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = Executor::new(RunOptions::default()).unwrap();
    let started = Instant::now();
    let report =
        rt.block_on(executor.run_until(&plan, async { tokio::time::sleep(100 * MS).await }));
    drop(executor);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.totals.cancelled);
    assert_eq!(report.node("think").unwrap().status, NodeStatus::Cancelled);
    assert_eq!(report.node("after").unwrap().status, NodeStatus::NotRun);
}

#[test]
fn the_report_is_kept_current_while_only_compute_nodes_run() {
    // The scheduler is on the compute runtime here; its report timer is the
    // I/O runtime's.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    let plan = plan_of(vec![
        ("fast", Test::Think(MS), vec![]),
        ("slow", Test::Think(Duration::from_secs(2)), vec![]),
    ]);
    let watcher = {
        let file = file.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(bytes) = std::fs::read(&file) {
                    let report: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    if report["nodes"][0]["status"] == "succeeded" {
                        return report;
                    }
                }
                assert!(Instant::now() < deadline, "no report with 'fast' done");
                std::thread::sleep(10 * MS);
            }
        })
    };
    let report = run_with(
        &plan,
        RunOptions {
            report_file: Some(file.clone()),
            ..RunOptions::default()
        },
    );
    assert!(report.succeeded(), "{report}");
    let mid_run = watcher.join().unwrap();
    assert_eq!(mid_run["complete"], false);
    assert_eq!(mid_run["nodes"][1]["status"], "running");
}

/// 60 days of one stock's trades, each day counted: with a hold limit the
/// run fetches a day only once what it holds leaves room for it, so the
/// outputs held at once stay near the limit rather than growing with the
/// days; the results are the same.
#[test]
fn a_hold_limit_keeps_the_outputs_held_flat_as_days_grow() {
    let plan = crate::support::compile(
        r#"
pipeline: days
nodes:
  ticks:
    op: fetch.synthetic
    partition_by: date
    with: {dataset: ticks, symbol: FPT, start: 2026-01-05, end: 2026-03-31}
  trades:
    op: transform.sql
    partition_by: date
    inputs: [ticks]
    with: {query: "SELECT count(*) AS n FROM ticks"}
"#,
    );
    let with = |hold_limit: Option<usize>| {
        run_with(
            &quiver::cache::uncached(&plan),
            RunOptions {
                max_workers: 2,
                hold_limit,
                ..RunOptions::default()
            },
        )
    };
    let free = with(None);
    let held = with(Some(256 << 10));
    assert!(free.succeeded() && held.succeeded());
    let day = free.node("ticks@2026-01-05").unwrap().bytes_out;
    assert!(day > 50 << 10, "a day of trades is {day} bytes");
    // Without a limit every day is fetched before most are counted.
    assert!(
        free.totals.peak_output_bytes > 20 * day,
        "{}",
        free.totals.peak_output_bytes
    );
    // With one, the limit and the few fetches under way.
    assert!(
        held.totals.peak_output_bytes < (256 << 10) + 4 * day,
        "{} with days of {day} bytes",
        held.totals.peak_output_bytes
    );
    let rows = |r: &quiver::exec::RunReport| -> Vec<usize> {
        r.nodes.iter().map(|n| n.rows_out).collect()
    };
    assert_eq!(rows(&free), rows(&held));
}
