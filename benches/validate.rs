//! Validating a pipeline as large as a market (issue: plans as large as the
//! pipeline). Run: `cargo bench --bench validate`.
//!
//! `quiver validate pipelines/vn30.yaml` and `quiver plan --stages`, each
//! in a process of its own, at
//! symbols × trading days from the default 30 × 5 up to 2,000 × 2,500; and,
//! for the sizes that fit, the compile that builds the plan `quiver run` and
//! `quiver plan` run (a node per symbol and day; what `quiver validate` did
//! before), in a process of its own too (this benchmark, started again), to
//! compare. Each figure is the median of 3 runs after one warm-up; the peak
//! resident memory is the child process's own (`wait4`). The counts both
//! print are checked equal before any figure is printed.

use std::process::{Command, Stdio};
use std::time::Instant;

/// `symbols=[…]`: the first `n` of a made-up universe.
fn symbols(n: usize) -> String {
    let list: Vec<String> = (0..n).map(|i| format!("S{i:04}")).collect();
    format!("symbols=[{}]", list.join(","))
}

/// Parameters for `n` symbols over about `days` trading days ending on
/// 2026-12-31 (HOSE trades about 250 days a year).
fn sets(n: usize, days: usize) -> Vec<String> {
    let (start, history) = match days {
        5 => return vec![symbols(n)],
        250 => ("2026-01-02", "2025-12-24"),
        1000 => ("2023-01-03", "2022-12-26"),
        2500 => ("2017-01-03", "2016-12-26"),
        _ => panic!("no dates for {days} days"),
    };
    vec![
        symbols(n),
        format!("start_date={start}"),
        format!("history_start={history}"),
        "end_date=2026-12-31".to_string(),
    ]
}

struct Ran {
    wall: f64,
    peak_mib: f64,
    out: String,
}

fn quiver(args: &[&str], sets: &[String]) -> Ran {
    // `compile` is this benchmark's own child mode (see `main`).
    let mut cmd = if args[0] == "compile" {
        Command::new(std::env::current_exe().expect("the benchmark's path"))
    } else {
        Command::new(env!("CARGO_BIN_EXE_quiver"))
    };
    cmd.args(args);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().expect("quiver starts");
    let pid = child.id() as libc::pid_t;
    // Read the output while it runs, then reap it with wait4 for its own
    // peak resident memory.
    let output = std::thread::spawn(move || {
        let mut child = child;
        let mut out = String::new();
        let mut err = String::new();
        use std::io::Read;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        std::mem::forget(child); // reaped below
        (out, err)
    })
    .join()
    .unwrap();
    let mut status = 0;
    // SAFETY: wait4 fills `status` and `usage` for the child it names.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut usage);
        usage
    };
    let wall = started.elapsed().as_secs_f64();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "quiver {args:?} failed:\n{}",
        output.1
    );
    Ran {
        wall,
        peak_mib: usage.ru_maxrss as f64 / 1024.0,
        out: output.0,
    }
}

/// The median run of three, after a warm-up.
fn median(args: &[&str], sets: &[String]) -> Ran {
    quiver(args, sets);
    let mut runs: Vec<Ran> = (0..3).map(|_| quiver(args, sets)).collect();
    runs.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    runs.swap_remove(1)
}

/// "N declared nodes → M unique" from either command's output.
fn counts(validate: &str) -> (u64, u64) {
    let after = |key: &str| -> u64 {
        let at = validate
            .find(key)
            .unwrap_or_else(|| panic!("no '{key}' in {validate}"));
        validate[..at]
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number before '{key}' in {validate}"))
    };
    (after(" declared nodes"), after(" unique"))
}

/// The child mode: compiles the plan and prints its counts as `quiver
/// validate` does.
fn compile_child(args: &[String]) {
    let mut overrides = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        if a == "--set" {
            let set = rest.next().expect("--set VALUE");
            overrides.push(quiver::compile::Override::parse_set(set).expect("an override"));
        }
    }
    let plan = quiver::compile::compile_file(std::path::Path::new(&args[0]), &overrides)
        .expect("the pipeline compiles");
    println!(
        "{} declared nodes → {} unique",
        plan.stats.declared, plan.stats.unique
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "compile") {
        return compile_child(&args[1..]);
    }
    let pipeline = "pipelines/vn30.yaml";
    println!("quiver validate {pipeline} (median of 3, a process each)");
    println!(
        "  {:>7} × {:>5}  {:>21}  {:>9}  {:>9}  {:>19}    the plan compiled, to compare",
        "symbols", "days", "declared → unique", "wall", "peak", "plan --stages"
    );
    for (n, days) in [(30, 5), (400, 250), (400, 1000), (1000, 250), (2000, 2500)] {
        let sets = sets(n, days);
        let v = median(&["validate", pipeline], &sets);
        let (declared, unique) = counts(&v.out);
        let s = median(&["plan", pipeline, "--stages"], &sets);
        assert_eq!(
            counts(&s.out),
            (declared, unique),
            "plan --stages counts alike"
        );
        let full = if declared <= 2_500_000 {
            let p = median(&["compile", pipeline], &sets);
            assert_eq!(
                counts(&p.out),
                (declared, unique),
                "validate and the compiled plan count alike at {n} × {days}"
            );
            format!("{:7.2} s  {:6.0} MiB", p.wall, p.peak_mib)
        } else {
            "does not fit".to_string()
        };
        println!(
            "  {n:>7} × {days:>5}  {:>10} → {:>9}  {:7.3} s  {:5.0} MiB  {:7.3} s {:5.0} MiB    {full}",
            declared, unique, v.wall, v.peak_mib, s.wall, s.peak_mib
        );
    }
}
