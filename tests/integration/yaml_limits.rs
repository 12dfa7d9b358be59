//! Hostile and broken YAML through the real `quiver validate`: refused
//! quickly, in little memory, with a diagnostic that says where and why.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one `quiver` run printed, and what it cost.
struct Measured {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
    /// The largest resident set seen, in KiB.
    peak_rss_kib: Option<u64>,
}

/// Runs `quiver ARGS`, sampling the child's peak resident set (`VmHWM` in
/// `/proc/PID/status`) every millisecond while it runs.
///
/// Not `getrusage`/`wait4`: Linux counts into a child's `ru_maxrss` the
/// peak of the memory it had before `exec`, which for a child of fork or
/// vfork is this test binary's (DataFusion and all). Sampling misses memory
/// allocated and freed within the last millisecond; expanding an alias bomb
/// takes far longer than that to reach the limits asserted here.
fn quiver_measured(args: &[&str]) -> Measured {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("quiver starts");
    // Drained meanwhile, so a full pipe never stalls the child.
    let mut pipe = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).map(|_| text)
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_rss_kib = None;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(&status_file) {
            peak_rss_kib = peak_rss_kib.max(Some(kib));
        }
        if let Some(status) = child.try_wait().expect("waiting for quiver") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            child.kill().ok();
            child.wait().ok();
            panic!("quiver {args:?} ran for more than 30 s; killed");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let elapsed = start.elapsed();
    let stderr = reader
        .join()
        .expect("the stderr reader")
        .expect("stderr is UTF-8");
    Measured {
        code: status.code(),
        stderr,
        elapsed,
        peak_rss_kib,
    }
}

/// `VmHWM`, the peak resident set, of a live process; `None` once it has
/// exited (a zombie has no memory to report) or where there is no `/proc`.
fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Twelve lines that expand to 10^10 nodes: ten aliases a level, ten levels.
fn alias_bomb() -> String {
    let mut text = String::from("pipeline: bomb\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text + "nodes: *a9\n"
}

#[test]
fn an_alias_bomb_is_refused_in_under_a_second_and_200_mb() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = alias_bomb();
    assert_eq!(bomb.lines().count(), 12);
    let file = write(dir.path(), "bomb.yaml", &bomb);
    let run = quiver_measured(&["validate", &file]);

    assert_eq!(run.code, Some(2), "{}", run.stderr);
    // a0..a4 fit (246,916 nodes built or kept by the end of line 6); the
    // first alias of a5 would copy a4's 111,111 nodes once more.
    let expected = format!(
        "{file}:7:10: error: a5[0]: expanding alias '*a4' (111,111 nodes) would take the \
         document past 250,000 YAML nodes, the limit for a YAML file quiver reads"
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(1),
        "took {:?}",
        run.elapsed
    );
    if cfg!(target_os = "linux") {
        let peak = run.peak_rss_kib.expect("VmHWM sampled at least once");
        assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
        eprintln!("alias bomb: {:?}, peak RSS {peak} KiB", run.elapsed);
    }
}

#[test]
fn an_unclosed_bracket_is_reported_where_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "unclosed.yaml",
        "pipeline: unclosed\nnodes:\n  x: {op: fetch.synthetic, with: [unclosed\n",
    );
    let run = quiver_measured(&["validate", &file]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "{file}:3:34: error: YAML syntax: this '[' is never closed: the file ends at 4:1 \
             without its ']'"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn deep_nesting_is_a_diagnostic_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let flow = format!("pipeline: deep\nnodes: {}\n", "[".repeat(1_000_000));
    let block: String = (0..100_000).map(|_| "- ").collect();
    for (name, text) in [
        ("flow.yaml", flow),
        (
            "block.yaml",
            format!("pipeline: deep\nnodes:\n  {block}x\n"),
        ),
    ] {
        let file = write(dir.path(), name, &text);
        let run = quiver_measured(&["validate", &file]);
        assert_eq!(run.code, Some(2), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(": error: nodes")
                && run.stderr.contains(
                    "lists and mappings nest more than 64 deep here, the limit for a YAML file \
                 quiver reads; flatten this value"
                ),
            "{name}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_file_over_the_size_limit_is_refused_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let line = format!("# {}\n", "x".repeat(1021));
    let file = write(
        dir.path(),
        "huge.yaml",
        &format!("pipeline: huge\n{}", line.repeat(8 * 1024)),
    );
    let run = quiver_measured(&["validate", &file]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("is longer than 4,194,304 bytes (4 MiB)"),
        "{}",
        run.stderr
    );
}
