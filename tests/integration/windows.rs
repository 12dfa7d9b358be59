//! Plans a window of days at a time (`compile::window`) against the full
//! compile: every node a window builds is the full plan's node of that
//! name, with its identity; every node of the full plan that runs is built
//! by exactly one window (see below for the one exception); and whatever a window is handed from the past
//! was made by an earlier window and kept long enough.

use std::collections::HashMap;
use std::path::Path;

use quiver::compile::window::{TO_THE_END, Windowed};
use quiver::compile::{Options, Override};
use quiver::plan::parts::{Given, handed};
use quiver::plan::{Plan, PlanNode};

/// Plans `text` in windows of `size` days and checks them against the
/// full plan; the number of windows (0 when the pipeline does not
/// compile, or is not run in windows).
pub fn windows_match(path: &Path, text: &str, overrides: &[Override], size: u32) -> usize {
    let registry = quiver::operators::registry();
    let Ok(full) = quiver::compile::compile_str(path, text, overrides) else {
        return 0;
    };
    let windowed = Windowed::new(path, text, overrides, registry, Options::default())
        .expect("what compiles is read");
    let Some(windowed) = windowed else {
        return 0;
    };
    let days = windowed.days().len() as u32;
    let mut plans: Vec<Plan> = Vec::new();
    // Name → (window, node), for every node a window built.
    let mut made: HashMap<String, (usize, petgraph::graph::NodeIndex)> = HashMap::new();
    let mut built: HashMap<u64, usize> = HashMap::new();
    let mut last: std::collections::HashSet<u64> = Default::default();
    let mut a = 0;
    while a < days.max(1) {
        let b = (a + size - 1).min(days.saturating_sub(1));
        let give = |name: &str| -> Option<PlanNode> {
            let &(w, i) = made.get(name)?;
            let node = &plans[w].graph[i];
            // Kept until at least this window's first day.
            let until = node
                .names()
                .filter_map(|n| windowed.kept_until(n))
                .max()
                .unwrap_or(0);
            assert!(
                until == TO_THE_END || until >= a,
                "{name} is read on day {a}, kept until {until}\n{text}"
            );
            Some(handed(node, Given::Nothing(String::new())))
        };
        let window = windowed
            .plan(registry, a, b, &give)
            .unwrap_or_else(|e| panic!("days {a}..={b}: {e}\n{text}"));
        let w = plans.len();
        for (i, node) in window.plan.nodes() {
            if window.handed.contains(&i) {
                continue;
            }
            let at = full
                .find(&node.id)
                .unwrap_or_else(|| panic!("{} is not in the full plan\n{text}", node.id));
            assert_eq!(
                full.graph[at].identity, node.identity,
                "{}\n{text}",
                node.id
            );
            assert_eq!(full.graph[at].op, node.op, "{}", node.id);
            *built.entry(node.identity).or_default() += 1;
            for name in node.names() {
                made.insert(name.to_string(), (w, i));
            }
        }
        if b + 1 >= days {
            last = window.plan.nodes().map(|(_, n)| n.identity).collect();
        }
        plans.push(window.plan);
        a = b + 1;
    }
    for (i, node) in full.nodes() {
        let idle_union = quiver::cache::forecast::is_union(node)
            && full
                .graph
                .neighbors_directed(i, petgraph::Direction::Outgoing)
                .next()
                .is_none();
        let times = built.get(&node.identity).copied().unwrap_or(0);
        let whole = node.names().any(|n| !n.contains('@'));
        if idle_union {
            assert_eq!(times, 0, "{} is built, and nothing reads it", node.id);
        } else if whole && times > 1 {
            // A lookback that covers every day of its input reads the
            // input whole: a day's node is the same as a node that reads
            // every day, one node in the full plan, and made again in the
            // last window for what reads it whole.
            assert!(
                last.contains(&node.identity),
                "{} is built {times} times\n{text}",
                node.id
            );
        } else {
            assert_eq!(times, 1, "{} is built {times} times\n{text}", node.id);
        }
    }
    plans.len()
}

#[test]
fn every_shipped_pipeline_plans_the_same_in_windows() {
    let mut checked = 0;
    for (path, text) in crate::stages::shipped_pipelines() {
        for size in [1, 3, 100] {
            checked += windows_match(&path, &text, &[], size);
        }
    }
    assert!(checked >= 20, "{checked} windows");
}

/// `quiver run` in `dir` (the repo's pipelines are read from the crate).
fn quiver_run(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .current_dir(dir)
        .args(["run", "--quiet"])
        .args(args)
        .output()
        .expect("quiver runs")
}

/// The report of a run in `dir`.
fn report_of(dir: &Path, output: &std::process::Output) -> quiver::exec::RunReport {
    let text = String::from_utf8_lossy(&output.stderr);
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report in:\n{text}"));
    let path = dir.join(path.trim());
    serde_json::from_slice(&std::fs::read(path).expect("the report")).expect("a report")
}

/// Runs `pipeline` every day at once and in windows of several sizes,
/// with and without the cache: the same files, byte for byte, and the
/// same nodes run; then a rerun in windows finds everything in the cache
/// the whole run stored, and the other way round.
/// Then one more day (`more`) in windows reads the cached days before it
/// from the cache and writes what one plan of every day writes.
fn same_in_windows(pipeline: &str, sets: &[&str], sizes: &[&str], more: &str) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().expect("a temp dir");
    let file = repo.join("pipelines").join(pipeline);
    let run = |name: &str, extra: &[&str]| {
        let out = work.path().join(name);
        let out_set = format!("out_dir={}", out.display());
        let mut args: Vec<&str> = vec![file.to_str().unwrap(), "--set", &out_set];
        for s in sets {
            args.extend(["--set", s]);
        }
        args.extend(extra);
        let output = quiver_run(work.path(), &args);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            crate::bench_support::files(&out),
            report_of(work.path(), &output),
        )
    };
    let (whole, report) = run("whole", &["--window-days", "0", "--no-cache"]);
    assert!(!whole.is_empty());
    let ran = |r: &quiver::exec::RunReport| {
        let mut ids: Vec<(String, quiver::exec::NodeStatus)> = r
            .nodes
            .iter()
            .filter(|n| n.status != quiver::exec::NodeStatus::AsDays)
            .map(|n| (n.id.clone(), n.status))
            .collect();
        ids.sort_by(|a, b| a.0.cmp(&b.0));
        ids
    };
    for size in sizes {
        let (files, windowed) = run(size, &["--window-days", size, "--no-cache"]);
        assert!(
            files == whole,
            "{pipeline}: windows of {size} days write other bytes"
        );
        assert_eq!(
            ran(&windowed),
            ran(&report),
            "{pipeline}, windows of {size}"
        );
        assert_eq!(windowed.totals.executed, report.totals.executed);
        assert_eq!(
            windowed.totals.executions_by_op,
            report.totals.executions_by_op
        );
        // The chain that decided the run's length ends at the node that
        // finished last, and goes back across windows.
        let path = &windowed.totals.critical_path;
        let last = windowed.nodes.iter().max_by_key(|n| n.end).expect("nodes");
        assert_eq!(path.last(), Some(&last.id), "{path:?}");
        assert!(path.len() > 2, "{path:?}");
    }
    // Through the cache: windows store what the whole run finds, and the
    // other way round.
    let cache = work.path().join("cache");
    let cache = cache.to_str().unwrap();
    let (files, first) = run("cached", &["--window-days", sizes[0], "--cache-dir", cache]);
    assert!(files == whole);
    assert_eq!(first.totals.executed, report.totals.executed);
    let (_, again) = run("cached", &["--window-days", "0", "--cache-dir", cache]);
    assert_eq!(again.totals.executed, 0, "the whole rerun finds every day");
    let (_, again) = run("cached", &["--window-days", sizes[1], "--cache-dir", cache]);
    assert_eq!(
        again.totals.executed, 0,
        "a rerun in windows finds every day"
    );
    // What later windows read stays in the cache when nothing reads it:
    // no node hands on rows it loaded.
    let loaded: usize = again.nodes.iter().map(|n| n.rows_out).sum();
    assert_eq!(loaded, 0, "a rerun with nothing to do loads nothing");
    let more = ["--set", more];
    let extra: Vec<&str> = ["--window-days", sizes[1], "--cache-dir", cache]
        .into_iter()
        .chain(more)
        .collect();
    let (files, extended) = run("cached", &extra);
    let (whole_more, all_more) = run(
        "whole_more",
        &["--window-days", "0", "--no-cache", more[0], more[1]],
    );
    assert!(
        files == whole_more,
        "{pipeline}: one more day in windows writes other bytes"
    );
    let new = all_more.totals.executed - report.totals.executed;
    assert!(
        extended.totals.executed <= new && extended.totals.executed > 0,
        "{} run for {new} new nodes",
        extended.totals.executed
    );
    assert_eq!(
        again.totals.cached + again.totals.up_to_date,
        first.totals.executed
    );
}

#[test]
fn vn30_writes_the_same_bytes_in_windows() {
    same_in_windows(
        "vn30.yaml",
        &[
            "symbols=[ACB,FPT,VNM,HPG,VCB]",
            "weight_cap=0.3",
            "end_date=2026-01-14",
        ],
        &["1", "3"],
        "end_date=2026-01-15",
    );
}

#[test]
fn backfill_writes_the_same_bytes_in_windows() {
    same_in_windows(
        "backfill.yaml",
        &[
            "portfolios=[P1]",
            "universe=[FPT,VNM,HPG,MWG]",
            "start=2025-10-01",
        ],
        &["7", "1"],
        "end=2025-11-19",
    );
}

/// A symbol whose prices never come: with `keep_going`, its days fail
/// and what reads them (through a lookback, across windows) is skipped,
/// exactly as in a run of every day at once; the other symbol's days run.
#[test]
fn a_failure_is_isolated_the_same_in_windows() {
    let work = tempfile::tempdir().expect("a temp dir");
    let file = work.path().join("flaky.yaml");
    std::fs::write(
        &file,
        r#"pipeline: flaky
keep_going: true
nodes:
  good:
    op: fetch.synthetic
    partition_by: date
    with: {dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-16}
  bad:
    op: fetch.synthetic
    partition_by: date
    retries: 0
    with: {dataset: prices, symbol: VNM, start: 2026-01-07, end: 2026-01-16, fail_rate: 1.0}
  both:
    op: transform.sql
    partition_by: date
    lookback: {bad: 2}
    inputs: {good: good, bad: bad}
    with: {query: "SELECT (SELECT count(*) FROM good) AS g, (SELECT count(*) FROM bad) AS b"}
  alone:
    op: transform.sql
    partition_by: date
    previous: before
    inputs: {good: good}
    with: {query: "SELECT max(date) AS date, count(*) AS n FROM good"}
  save:
    op: sink.parquet
    partition_by: date
    inputs: [alone]
    with: {path: out, partition_by: [date]}
"#,
    )
    .unwrap();
    let statuses = |days: &str| {
        let output = quiver_run(
            work.path(),
            &[file.to_str().unwrap(), "--no-cache", "--window-days", days],
        );
        assert_eq!(output.status.code(), Some(1), "{days}");
        let report = report_of(work.path(), &output);
        assert_eq!(
            (report.totals.failures, report.totals.skipped),
            (
                report
                    .nodes
                    .iter()
                    .filter(|n| n.status == quiver::exec::NodeStatus::Failed)
                    .count(),
                report
                    .nodes
                    .iter()
                    .filter(|n| n.status == quiver::exec::NodeStatus::Skipped)
                    .count(),
            )
        );
        let mut s: Vec<(String, quiver::exec::NodeStatus)> = report
            .nodes
            .iter()
            .filter(|n| n.status != quiver::exec::NodeStatus::AsDays)
            .map(|n| (n.id.clone(), n.status))
            .collect();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        (s, crate::bench_support::files(&work.path().join("out")))
    };
    let (whole, written) = statuses("0");
    let failed = whole
        .iter()
        .filter(|(_, s)| *s == quiver::exec::NodeStatus::Failed)
        .count();
    let skipped = whole
        .iter()
        .filter(|(_, s)| *s == quiver::exec::NodeStatus::Skipped)
        .count();
    assert_eq!((failed, skipped > 0), (8, true), "{whole:?}");
    for days in ["1", "3"] {
        let (windowed, files) = statuses(days);
        assert_eq!(windowed, whole, "windows of {days}");
        assert!(files == written);
    }
}

/// A resource's rate holds across windows as across days: one set of
/// pools serves every window, so a window does not start with a fresh
/// allowance (counted from when the fetches started, not from the wall).
#[test]
fn a_rate_limit_holds_across_windows() {
    let work = tempfile::tempdir().expect("a temp dir");
    let file = work.path().join("paced.yaml");
    std::fs::write(
        &file,
        r#"pipeline: paced
resources:
  api: {rate: 10/s}
nodes:
  prices:
    op: fetch.synthetic
    partition_by: date
    resource: api
    with: {dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-23}
"#,
    )
    .unwrap();
    let output = quiver_run(
        work.path(),
        &[file.to_str().unwrap(), "--no-cache", "--window-days", "1"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report_of(work.path(), &output);
    let mut starts: Vec<std::time::Duration> = report
        .nodes
        .iter()
        .filter(|n| n.op == "fetch.synthetic")
        .map(|n| n.start + n.wait)
        .collect();
    starts.sort();
    assert_eq!(starts.len(), 15);
    // 10 a second, spaced evenly: 100 ms apart, less the timer's slack.
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= std::time::Duration::from_millis(80), "{starts:?}");
    }
}

/// `vn30.yaml` run in one-day windows in `dir`, with 100 ms a fetch, read
/// until its third window starts: the process, the lines so far, the rest.
#[cfg(unix)]
fn at_the_third_window(
    dir: &Path,
) -> (
    std::process::Child,
    Vec<String>,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::{BufRead, BufReader};
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/vn30.yaml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .current_dir(dir)
        .args([
            "run",
            file.to_str().unwrap(),
            "--no-cache",
            "--window-days",
            "1",
        ])
        .args(["--set", "api_latency=100ms", "--set", "end_date=2026-01-23"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("quiver starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a line");
        let third = line.starts_with("days ") && line.contains("(3 of ");
        seen.push(line);
        if third {
            break;
        }
    }
    (child, seen, lines)
}

/// Ctrl-C in the middle of a run in windows stops it there: the window
/// running cancels, no later window starts, the exit code says so and the
/// report is written.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_run_in_windows() {
    let work = tempfile::tempdir().expect("a temp dir");
    let (mut child, seen, lines) = at_the_third_window(work.path());
    // SAFETY: kill has no preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("quiver ends");
    assert_eq!(status.code(), Some(130), "{seen:?}\n{rest:?}");
    let windows: Vec<&String> = seen
        .iter()
        .chain(&rest)
        .filter(|l| l.starts_with("days "))
        .collect();
    assert_eq!(
        windows.len(),
        3,
        "no window starts after Ctrl-C: {windows:?}"
    );
    let report = rest
        .iter()
        .find_map(|l| l.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no report in {rest:?}"));
    let report: quiver::exec::RunReport =
        serde_json::from_slice(&std::fs::read(work.path().join(report)).unwrap()).unwrap();
    assert!(report.totals.cancelled);
}

/// A run in windows killed outright leaves a report of the windows run
/// so far, marked incomplete, as a run of one plan does.
#[cfg(unix)]
#[test]
fn a_run_in_windows_killed_leaves_the_report_so_far() {
    let work = tempfile::tempdir().expect("a temp dir");
    let (mut child, seen, _rest) = at_the_third_window(work.path());
    child.kill().expect("killed");
    child.wait().expect("quiver ends");
    let runs: Vec<_> = std::fs::read_dir(work.path().join(".quiver/runs"))
        .expect("a runs folder")
        .map(|e| e.expect("an entry").path().join("report.json"))
        .collect();
    assert_eq!(runs.len(), 1, "{seen:?}");
    let report: quiver::exec::RunReport =
        serde_json::from_slice(&std::fs::read(&runs[0]).expect("a report")).expect("whole JSON");
    assert!(!report.complete, "{seen:?}");
    // `days 2025-12-26 to 2025-12-26 (1 of 20): 60 nodes`
    let day = seen
        .iter()
        .find_map(|l| l.strip_prefix("days ")?.split(' ').next())
        .expect("a first window");
    let first_day: Vec<_> = report
        .nodes
        .iter()
        .filter(|n| n.id.ends_with(&format!("@{day}")))
        .collect();
    assert!(!first_day.is_empty(), "the first window's nodes are in it");
    assert!(
        first_day
            .iter()
            .all(|n| n.status == quiver::exec::NodeStatus::Succeeded),
        "{first_day:?}"
    );
}
