//! Secrets: `${env:NAME}` reads an environment variable and a parameter
//! can be `secret: true`. Neither value appears in any plan format, in the
//! run's log lines, errors and report, or in the cache, which keeps only
//! hashes; a variable that is not set is a validation error naming it.

use std::path::Path;
use std::process::{Command, Output};

const KEY: &str = "k3y-in-the-path-0451";
const TOKEN: &str = "t0ken-from-the-environment-77";

const PIPELINE: &str = r#"pipeline: secret_demo
keep_going: true
params:
  api_key: {type: string, secret: true, required: true}
resources:
  api: {concurrency: 2, retries: {max_attempts: 2, backoff: 10ms}}
nodes:
  quotes:
    op: fetch.http
    resource: api
    with:
      url: "http://127.0.0.1:9/v1/${api_key}/quotes"
      headers: {Authorization: "Bearer ${env:QV_SECRET_TOKEN}"}
  info:
    op: fetch.synthetic
    with: {dataset: stock_info, symbol: FPT}
  named:
    op: transform.sql
    inputs: [info]
    with: {query: "SELECT symbol, '${env:QV_SECRET_TOKEN}' <> '' AS authorised FROM info"}
"#;

fn quiver(dir: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quiver"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("QV_SECRET_TOKEN");
    if let Some(token) = token {
        cmd.env("QV_SECRET_TOKEN", token);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The files under `dir` that hold a secret.
fn leaks(dir: &Path) -> Vec<String> {
    crate::bench_support::files(dir)
        .into_iter()
        .filter(|(_, bytes)| {
            let content = String::from_utf8_lossy(bytes);
            content.contains(KEY) || content.contains(TOKEN)
        })
        .map(|(path, _)| path.display().to_string())
        .collect()
}

#[test]
fn secrets_never_appear_in_plans_logs_reports_or_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).unwrap();
    let key = format!("api_key={KEY}");
    let set = ["--set", key.as_str()];

    let valid = quiver(
        dir.path(),
        &["validate", "p.yaml", set[0], set[1]],
        Some(TOKEN),
    );
    assert!(valid.status.success(), "{}", text(&valid));
    for format in ["text", "json", "dot", "mermaid", "svg", "html"] {
        let out = quiver(
            dir.path(),
            &["plan", "p.yaml", "--format", format, set[0], set[1]],
            Some(TOKEN),
        );
        assert!(out.status.success(), "{}", text(&out));
        let shown = text(&out);
        assert!(
            !shown.contains(KEY) && !shown.contains(TOKEN),
            "{format}:\n{shown}"
        );
        if format == "json" || format == "html" {
            assert!(shown.contains("‹secret›"), "{format}:\n{shown}");
        }
    }

    // The fetch fails (nothing listens on port 9) and is retried: its
    // error, the retry's log line and the report all name the URL.
    let run = quiver(
        dir.path(),
        &[
            "-vv",
            "run",
            "p.yaml",
            set[0],
            set[1],
            "--report-html",
            "run.html",
        ],
        Some(TOKEN),
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let shown = text(&run);
    assert!(!shown.contains(KEY) && !shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("v1/‹secret›/quotes"), "{shown}");
    assert!(shown.contains("Retrying"), "the retry is logged:\n{shown}");
    let report = quiver(dir.path(), &["report", "--format", "text"], None);
    assert!(
        text(&report).contains("failed                 1"),
        "{}",
        text(&report)
    );
    assert_eq!(leaks(dir.path()), Vec::<String>::new());

    // The cache keeps a hash: a new token is a change, said without it.
    let again = quiver(
        dir.path(),
        &["plan", "p.yaml", set[0], set[1]],
        Some("another-token-99"),
    );
    let shown = text(&again);
    assert!(shown.contains("stale: parameter query"), "{shown}");
    assert!(!shown.contains("another-token-99"), "{shown}");
}

#[test]
fn an_unset_environment_variable_is_a_validation_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).unwrap();
    let out = quiver(
        dir.path(),
        &["validate", "p.yaml", "--set", "api_key=xxxxxxxx"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let shown = text(&out);
    assert!(
        shown.contains("p.yaml:13:")
            && shown.contains("environment variable 'QV_SECRET_TOKEN' is not set"),
        "{shown}"
    );
}

#[test]
fn a_secret_parameter_is_not_repeated_in_its_own_errors() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "pipeline: s\nparams:\n  day: {type: date, secret: true, default: 2026-01-05}\nnodes:\n  a: {op: fetch.synthetic, with: {dataset: stock_info, symbol: FPT}}\n";
    std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
    let out = quiver(
        dir.path(),
        &["validate", "p.yaml", "--set", "day=not-a-day-4412"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let shown = text(&out);
    assert!(
        !shown.contains("not-a-day-4412") && shown.contains("‹secret›"),
        "{shown}"
    );
}

#[test]
fn a_secret_too_short_to_mask_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).unwrap();
    let out = quiver(
        dir.path(),
        &["validate", "p.yaml", "--set", "api_key=abc"],
        Some(TOKEN),
    );
    assert_eq!(out.status.code(), Some(2));
    let shown = text(&out);
    assert!(
        shown.contains("the secret 'api_key' is shorter than 4 characters"),
        "{shown}"
    );
}
