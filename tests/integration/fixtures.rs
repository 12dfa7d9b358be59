//! The pipeline-language fixture suites.
//!
//! - `tests/pipelines/valid/NAME.yaml` must compile, and `NAME.stats` holds
//!   the node counts the compile must report, as one line:
//!   `declared=12 unique=9 merged=fetch.synthetic:3,transform.sql:1`
//!   (`merged=none` when nothing is merged).
//! - `tests/pipelines/invalid/NAME.yaml` must fail, and `NAME.expected` holds
//!   every diagnostic it must print, one per line, in order.
//!
//! Each fixture is checked twice: compiled into a plan (what `quiver run`
//! and `quiver plan` do) and checked over stages (what `quiver validate`
//! does, `compile::validate_file_with_options`); both must meet the same
//! expectations.
//!
//! Only top-level `*.yaml` files are pipelines: `fragments/` below each suite
//! holds files that the pipelines include. Every fixture is checked, and the
//! test fails once at the end listing every mismatch.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use quiver::compile::{Options, compile_file, validate_file_with_options};
use quiver::diag::Diagnostics;
use quiver::plan::Stats;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The top-level `*.yaml` files of a suite, sorted.
fn pipelines(suite: &str) -> Vec<PathBuf> {
    let dir = repo_root().join("tests/pipelines").join(suite);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The fixture's path relative to the repo root, for messages.
fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The two ways a pipeline is checked.
#[derive(Clone, Copy, Debug)]
enum How {
    Compile,
    Validate,
}

const BOTH: [How; 2] = [How::Compile, How::Validate];

/// Compiles or validates with an absolute path, so the suite does not
/// depend on the working directory; a panic is turned into an error message.
fn check(path: &Path, how: How) -> Result<Result<Stats, Diagnostics>, String> {
    catch_unwind(AssertUnwindSafe(|| match how {
        How::Compile => compile_file(path, &[]).map(|plan| plan.stats),
        How::Validate => {
            validate_file_with_options(path, &[], quiver::operators::registry(), Options::default())
                .map(|v| v.stats)
        }
    }))
    .map_err(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a non-string payload");
        format!("the compiler panicked ({how:?}): {what}")
    })
}

/// Diagnostics as the CLI prints them, file names relative to the repo root.
/// Messages that name a fragment file name it by the path the compiler
/// resolved, which is absolute here; it is shown relative as well.
fn render(diags: &Diagnostics) -> Vec<String> {
    let prefix = format!("{}/", repo_root().display());
    diags
        .0
        .iter()
        .map(|d| {
            d.display_relative(repo_root())
                .to_string()
                .replace(&prefix, "")
        })
        .collect()
}

/// `declared=N unique=N merged=OP:N,OP:N` (or `merged=none`).
fn stats_line(stats: &Stats) -> String {
    let merged = if stats.merged.is_empty() {
        "none".to_string()
    } else {
        stats
            .merged
            .iter()
            .map(|(op, n)| format!("{op}:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "declared={} unique={} merged={merged}",
        stats.declared, stats.unique
    )
}

fn read_sibling(path: &Path, ext: &str) -> Result<String, String> {
    let file = path.with_extension(ext);
    std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", relative(&file)))
}

/// A line-by-line diff: `-` expected but missing, `+` printed but not expected.
fn diff(expected: &[String], actual: &[String]) -> String {
    let mut out = String::new();
    for line in expected.iter().filter(|l| !actual.contains(l)) {
        let _ = writeln!(out, "    - {line}");
    }
    for line in actual.iter().filter(|l| !expected.contains(l)) {
        let _ = writeln!(out, "    + {line}");
    }
    if out.is_empty() {
        // Same lines, different order.
        let _ = writeln!(out, "    expected, in this order:");
        for line in expected {
            let _ = writeln!(out, "      {line}");
        }
        let _ = writeln!(out, "    printed:");
        for line in actual {
            let _ = writeln!(out, "      {line}");
        }
    }
    out
}

fn check_valid(path: &Path) -> Result<(), String> {
    let expected = read_sibling(path, "stats")?;
    let expected = expected.trim();
    let mut out = String::new();
    for how in BOTH {
        match check(path, how)? {
            Ok(stats) => {
                let actual = stats_line(&stats);
                if actual != expected {
                    let _ = write!(out, "    {how:?}:\n    - {expected}\n    + {actual}\n");
                }
            }
            Err(diags) => {
                let _ = write!(
                    out,
                    "    {how:?}: expected to compile, but it printed:\n{}",
                    render(&diags)
                        .iter()
                        .map(|l| format!("      {l}\n"))
                        .collect::<String>()
                );
            }
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

fn check_invalid(path: &Path) -> Result<(), String> {
    let expected: Vec<String> = read_sibling(path, "expected")?
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let mut out = String::new();
    for how in BOTH {
        match check(path, how)? {
            Ok(_) => {
                let _ = writeln!(out, "    {how:?}: no errors");
            }
            Err(diags) => {
                let actual = render(&diags);
                if actual != expected {
                    let _ = write!(out, "    {how:?}:\n{}", diff(&expected, &actual));
                }
            }
        }
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Runs `check` on every pipeline of `suite`; panics once, listing every failure.
fn run_suite(suite: &str, min: usize, check: fn(&Path) -> Result<(), String>) {
    let files = pipelines(suite);
    assert!(
        files.len() >= min,
        "tests/pipelines/{suite} holds {} pipelines; expected at least {min}",
        files.len()
    );
    let mut failures = String::new();
    let mut failed = 0;
    for path in &files {
        if let Err(why) = check(path) {
            failed += 1;
            let _ = write!(failures, "  {}:\n{why}", relative(path));
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} {suite} fixtures failed:\n{failures}",
        files.len()
    );
}

#[test]
fn valid_pipelines_compile_to_the_expected_counts() {
    run_suite("valid", 8, check_valid);
}

#[test]
fn invalid_pipelines_print_exactly_the_expected_diagnostics() {
    run_suite("invalid", 34, check_invalid);
}

/// A `.stats` or `.expected` file whose pipeline was renamed or removed
/// would silently stop being checked.
#[test]
fn every_expectation_file_has_its_pipeline() {
    let mut orphans = Vec::new();
    for (suite, ext) in [("valid", "stats"), ("invalid", "expected")] {
        let dir = repo_root().join("tests/pipelines").join(suite);
        for entry in std::fs::read_dir(&dir).expect("the suite directory") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == ext) && !path.with_extension("yaml").is_file()
            {
                orphans.push(relative(&path));
            }
        }
    }
    assert!(orphans.is_empty(), "no pipeline for: {orphans:?}");
}
