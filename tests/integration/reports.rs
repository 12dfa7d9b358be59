//! What a run reports: whose fault each failure is, a report file kept
//! current while the run goes (and left behind by a killed run), and the
//! memory the run held, each shared buffer counted once.

use std::path::Path;
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use quiver::exec::{NodeStatus, RunOptions};
use quiver::operators::Fault;
use quiver::plan::Source;

use crate::support::{Test, compile, plan_of, run, run_with};

#[test]
fn failures_say_whose_fault_they_are_with_their_causes() {
    let plan = compile(
        r#"
pipeline: faults
nodes:
  down:
    op: fetch.synthetic
    on_error: skip
    with: {dataset: stock_info, symbol: FPT, fail_rate: 1.0}
  info: {op: fetch.synthetic, with: {dataset: stock_info, symbol: VNM}}
  typo:
    op: transform.sql
    inputs: [info]
    with: {query: "SELECT no_such_column FROM info"}
"#,
    );
    let report = run(&plan);
    let down = report.node("down").unwrap();
    assert_eq!(down.status, NodeStatus::Skipped);
    assert_eq!(down.error.as_ref().unwrap().kind, Fault::Environment);
    let typo = report.node("typo").unwrap();
    assert_eq!(typo.status, NodeStatus::Failed);
    assert_eq!(typo.error.as_ref().unwrap().kind, Fault::Pipeline);
    let text = report.to_string();
    assert!(
        text.contains("FAILED typo (transform.sql) — pipeline: "),
        "{text}"
    );
    assert!(
        text.contains("skipped down (fetch.synthetic) — environment: "),
        "{text}"
    );

    // The report file keeps the kind, the message and the causes.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    let plan = plan_of(vec![("disk", Test::Disk, vec![])]);
    let report = run_with(
        &plan,
        RunOptions {
            report_file: Some(file.clone()),
            ..RunOptions::default()
        },
    );
    let error = report.node("disk").unwrap().error.clone().unwrap();
    assert_eq!(error.kind, Fault::Environment);
    assert_eq!(error.causes, ["permission denied"]);
    assert!(
        report.to_string().contains(
            "FAILED disk (test.disk) — environment: cannot read prices.csv: permission denied\n  caused by: permission denied"
        ),
        "{report}"
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        json["nodes"][0]["error"],
        serde_json::json!({
            "kind": "environment",
            "message": "cannot read prices.csv: permission denied",
            "causes": ["permission denied"],
        })
    );
}

#[test]
fn a_panicking_operator_is_a_bug_and_the_run_goes_on_around_it() {
    let plan = plan_of(vec![
        ("boom", Test::Panic, vec![]),
        ("fine", Test::Source(10), vec![]),
    ]);
    let report = run(&plan);
    let boom = report.node("boom").unwrap();
    assert_eq!(boom.status, NodeStatus::Failed);
    let error = boom.error.as_ref().unwrap();
    assert_eq!(error.kind, Fault::Bug);
    assert!(
        error
            .message
            .contains("the node's task panicked: the operator broke an invariant"),
        "{}",
        error.message
    );
    assert!(
        report.to_string().contains("FAILED boom (test.panic) — bug: internal error: the node's task panicked: the operator broke an invariant. This is likely a bug in quiver, please report it"),
        "{report}"
    );
    assert_eq!(report.node("fine").unwrap().status, NodeStatus::Succeeded);
}

#[test]
fn shared_buffers_count_once_in_the_peak_of_live_outputs() {
    // One source read by 8 consumers that slice it and 8 fan-ins that drop
    // the key column: 16 outputs, all alive at the end, all the source's memory.
    let src = NodeIndex::new(0);
    let mut nodes = vec![("source", Test::Source(1 << 20), vec![])];
    let names: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        if i < 8 {
            nodes.push((name.as_str(), Test::Slice, vec![Source::One(src)]));
        } else {
            let all = Source::All {
                key: "symbol".into(),
                members: vec![("FPT".into(), src)],
            };
            nodes.push((name.as_str(), Test::DropKey, vec![all]));
        }
    }
    let report = run(&plan_of(nodes));
    assert!(report.succeeded(), "{report}");
    let source = report.node("source").unwrap().bytes_out;
    assert!(source >= 8 << 20, "{source}");
    let consumers: usize = report
        .nodes
        .iter()
        .filter(|n| n.id != "source")
        .map(|n| n.bytes_out)
        .sum();
    assert!(
        consumers >= 16 * source,
        "each consumer holds the source's buffers"
    );
    let peak = report.totals.peak_output_bytes;
    assert_eq!(
        peak, source,
        "the source's buffers count once, not once per holder"
    );
    if cfg!(target_os = "linux") {
        let resident = report.totals.peak_resident_bytes.unwrap();
        assert!(resident as usize > source, "{resident}");
        assert!(report.to_string().contains(", peak resident "), "{report}");
    }
}

/// A pipeline with a fast node and a slow one.
fn slow_pipeline(latency: &str) -> String {
    format!(
        r#"
pipeline: slow
nodes:
  fast: {{op: fetch.synthetic, with: {{dataset: stock_info, symbol: FPT}}}}
  slow: {{op: fetch.synthetic, with: {{dataset: stock_info, symbol: VNM, latency: {latency}}}}}
"#
    )
}

fn read_report(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    Some(serde_json::from_slice(&bytes).expect("the report file is always whole JSON"))
}

fn status(report: &serde_json::Value, id: &str) -> String {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .map(|n| n["status"].as_str().unwrap().to_string())
        .unwrap()
}

/// Waits until the report file at `path` shows node `fast` finished.
fn wait_for_fast(path: &Path) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(report) = read_report(path)
            && status(&report, "fast") == "succeeded"
        {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "the report never showed 'fast' finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_report_file_is_written_as_the_run_goes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs/1/report.json");
    let plan = compile(&slow_pipeline("2s"));
    let watcher = {
        let file = file.clone();
        std::thread::spawn(move || wait_for_fast(&file))
    };
    let report = run_with(
        &plan,
        RunOptions {
            report_file: Some(file.clone()),
            ..RunOptions::default()
        },
    );
    let mid_run = watcher.join().unwrap();
    assert_eq!(mid_run["complete"], false);
    assert_eq!(status(&mid_run, "slow"), "running");
    assert!(report.save_error.is_none());
    let last = read_report(&file).unwrap();
    assert_eq!(last["complete"], true);
    assert_eq!(status(&last, "slow"), "succeeded");
    assert_eq!(last["totals"]["executed"], 2);
    // Nothing but the report is left in its folder.
    let files: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["report.json"]);
}

#[cfg(unix)]
#[test]
fn a_killed_run_leaves_a_report_of_what_finished() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("slow.yaml");
    std::fs::write(&pipeline, slow_pipeline("60s")).unwrap();
    let file = dir.path().join("report.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["run", "--quiet", "--no-cache", "--report"])
        .arg(&file)
        .arg(&pipeline)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = wait_for_fast(&file);
    assert_eq!(seen["complete"], false);
    child.kill().unwrap(); // SIGKILL: nothing runs after this
    child.wait().unwrap();
    let left = read_report(&file).unwrap();
    assert_eq!(left["complete"], false);
    assert_eq!(status(&left, "fast"), "succeeded");
    assert_eq!(status(&left, "slow"), "running");
}

/// `quiver report` reads the saved reports back: the newest by default, as
/// text, HTML or the JSON itself; `--report-html` writes the timeline page.
#[test]
fn quiver_report_shows_the_latest_run_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "pipeline: two\nnodes:\n  info: {op: fetch.synthetic, with: {dataset: stock_info, symbol: FPT}}\n  n:\n    op: transform.sql\n    inputs: [info]\n    with: {query: SELECT count(*) AS n FROM info}\n",
    )
    .unwrap();
    let quiver = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let run = quiver(&[
        "run",
        "p.yaml",
        "--quiet",
        "--no-cache",
        "--report-html",
        "run.html",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let page = std::fs::read_to_string(dir.path().join("run.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("\"pipeline\":\"two\""));

    let text = quiver(&["report"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.starts_with("run of two\n"), "{text}");
    assert!(text.contains("critical path (2 nodes):"), "{text}");
    assert!(
        text.contains("info  ") && text.contains("fetch.synthetic"),
        "{text}"
    );

    let json = quiver(&["report", "latest", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["totals"]["executed"], 2);
    let html = quiver(&["report", "latest", "--format", "html"]);
    assert_eq!(String::from_utf8(html.stdout).unwrap(), page);

    let missing = quiver(&["report", "1234-5"]);
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert!(stderr.contains("no run '1234-5'"), "{stderr}");
    let none = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .arg("report")
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let stderr = String::from_utf8(none.stderr).unwrap();
    assert!(stderr.contains("no run report in .quiver/runs"), "{stderr}");
}
