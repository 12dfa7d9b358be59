//! The cache at scale (issue: a cache store built for a million entries).
//! Run:
//!
//!     cargo bench --bench cache               # both parts
//!     cargo bench --bench cache -- vn30       # part 1
//!     cargo bench --bench cache -- backfill   # part 2
//!
//! Every run is `quiver run` in a process of its own, on the path users
//! take (the cache on, its default folder), against the same run with
//! `--no-cache`:
//! 1. `pipelines/vn30.yaml`, 400 symbols × 250 trading days, no latency:
//!    `--no-cache`; then the default into an empty cache (cold); then the
//!    default again with nothing changed; then with 3 more trading days.
//!    The outputs of the cold cached run and the `--no-cache` run are
//!    compared byte for byte before any time is printed; the cache's files,
//!    bytes and inodes are counted.
//! 2. `pipelines/backfill.yaml` on its defaults: `--no-cache` against the
//!    default into an empty cache.
//!
//! Each pipeline is first run once, small, both ways (warm-up). Wall times
//! include compiling the pipeline; the peak resident memory is the
//! process's own (its summary line).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::{files, universe};

/// One `quiver run`, in `cwd`: wall seconds, peak resident MiB, and the
/// run's summary lines.
struct Ran {
    wall: f64,
    /// CPU seconds in user space and in the kernel.
    user: f64,
    system: f64,
    peak_mib: f64,
    summary: String,
}

fn quiver_run(cwd: &Path, pipeline: &str, sets: &[String], extra: &[&str]) -> Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quiver"));
    cmd.arg("run").arg(pipeline).arg("--quiet").args(extra);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let before = children_cpu();
    let started = Instant::now();
    let output = cmd.current_dir(cwd).output().unwrap();
    let wall = started.elapsed().as_secs_f64();
    let after = children_cpu();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains(": executed "))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"))
        .to_string();
    let peak_mib = summary
        .split("peak resident ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(f64::NAN);
    Ran {
        wall,
        user: after.0 - before.0,
        system: after.1 - before.1,
        peak_mib,
        summary,
    }
}

/// CPU seconds (user, system) of the children waited for so far.
fn children_cpu() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given, and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}

/// Files, bytes and inodes (files and folders) under `dir`.
fn usage(dir: &Path) -> (usize, u64, usize) {
    let mut out = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        out.2 += 1;
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.0 += 1;
                out.1 += m.len();
                out.2 += 1;
            }
        }
    }
    out
}

fn line(what: &str, r: &Ran, base: Option<&Ran>) {
    let ratio = base.map_or(String::new(), |b| {
        format!(
            " ({:.2}× wall, {:.2}× peak resident of --no-cache)",
            r.wall / b.wall,
            r.peak_mib / b.peak_mib
        )
    });
    println!(
        "   {what:<26} wall {:6.1} s (cpu {:5.1} s user, {:4.1} s system), peak resident {:5.0} MiB{ratio}",
        r.wall, r.user, r.system, r.peak_mib
    );
}

fn vn30() {
    let pipeline = format!("{}/pipelines/vn30.yaml", env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().unwrap();
    let sets = |dir: &Path, end: &str| {
        vec![
            universe(),
            "start_date=2024-12-31".to_string(),
            format!("end_date={end}"),
            "history_start=2024-12-24".to_string(),
            format!("out_dir={}", dir.join("out").display()),
        ]
    };
    // Warm-up: a week, both ways.
    let warm = root.path().join("warm");
    std::fs::create_dir_all(&warm).unwrap();
    let small = vec![
        "symbols=[FPT, VNM]".to_string(),
        "weight_cap=0.5".to_string(),
        format!("out_dir={}", warm.join("out").display()),
    ];
    quiver_run(&warm, &pipeline, &small, &["--no-cache"]);
    quiver_run(&warm, &pipeline, &small, &[]);

    let (plain, cached) = (root.path().join("plain"), root.path().join("cached"));
    for d in [&plain, &cached] {
        std::fs::create_dir_all(d).unwrap();
    }
    let none = quiver_run(
        &plain,
        &pipeline,
        &sets(&plain, "2025-12-31"),
        &["--no-cache"],
    );
    let cold = quiver_run(&cached, &pipeline, &sets(&cached, "2025-12-31"), &[]);
    assert!(
        files(&plain.join("out")) == files(&cached.join("out")),
        "the cached run wrote other files than --no-cache"
    );
    let (n_files, bytes, inodes) = usage(&cached.join(".quiver/cache"));
    let packs = usage(&cached.join(".quiver/cache/packs"));
    let again = quiver_run(&cached, &pipeline, &sets(&cached, "2025-12-31"), &[]);
    assert!(
        again.summary.contains("executed 0 nodes"),
        "{}",
        again.summary
    );
    let more = quiver_run(&cached, &pipeline, &sets(&cached, "2026-01-06"), &[]);

    println!(
        "1. vn30.yaml, 400 symbols × 250 trading days, quiver run in a process of its own \
         ({} output files equal):",
        files(&plain.join("out")).len()
    );
    line("--no-cache", &none, None);
    line("default, cold cache", &cold, Some(&none));
    println!(
        "   the cache: {n_files} files, {:.1} MiB, {inodes} inodes ({} pack files in {} day folders)",
        bytes as f64 / (1 << 20) as f64,
        packs.0,
        packs.2 - packs.0 - 1
    );
    line("default, nothing changed", &again, None);
    line("default, 3 more days", &more, None);
    println!("     {}", more.summary);
    println!("     {}", cold.summary);
}

fn backfill() {
    let pipeline = format!("{}/pipelines/backfill.yaml", env!("CARGO_MANIFEST_DIR"));
    let root = tempfile::tempdir().unwrap();
    let out = |d: &Path| vec![format!("out_dir={}", d.join("out").display())];
    let warm = root.path().join("warm");
    std::fs::create_dir_all(&warm).unwrap();
    let mut small = out(&warm);
    small.push("end=2025-06-20".into());
    quiver_run(&warm, &pipeline, &small, &["--no-cache"]);
    quiver_run(&warm, &pipeline, &small, &[]);
    let (plain, cached) = (root.path().join("plain"), root.path().join("cached"));
    for d in [&plain, &cached] {
        std::fs::create_dir_all(d).unwrap();
    }
    let none = quiver_run(&plain, &pipeline, &out(&plain), &["--no-cache"]);
    let cold = quiver_run(&cached, &pipeline, &out(&cached), &[]);
    assert!(
        files(&plain.join("out")) == files(&cached.join("out")),
        "the cached run wrote other files than --no-cache"
    );
    let (n_files, bytes, _) = usage(&cached.join(".quiver/cache"));
    println!(
        "2. backfill.yaml on its defaults ({} output files equal):",
        files(&plain.join("out")).len()
    );
    line("--no-cache", &none, None);
    line("default, cold cache", &cold, Some(&none));
    println!(
        "   the cache: {n_files} files, {:.1} MiB",
        bytes as f64 / (1 << 20) as f64
    );
}

fn main() {
    let wants = support::wanted_parts();
    if wants("vn30") {
        vn30();
    }
    if wants("backfill") {
        backfill();
    }
}
