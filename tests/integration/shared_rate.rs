//! A rate limit shared across processes through a real Redis server
//! (Debian's `redis-server`, started here on a free port; the README's
//! test command installs it): three `quiver run` processes against the
//! local API limited at 20 requests a second together stay under it and
//! are never refused; each keeping 20/s alone, they are refused. With
//! Redis unreachable, a process keeps the rate alone and says so once.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use quiver::serve::{ApiConfig, SyntheticApi};

use crate::support::{Redis, free_port, start_api};

/// A pipeline fetching `n` symbols' bars from `url`, keeping its rate of
/// 20/s in Redis when `shared` names it.
fn pipeline(url: &str, shared: Option<&str>, n: usize) -> String {
    let symbols: Vec<String> = (0..n).map(|i| format!("S{i:02}")).collect();
    let shared = shared
        .map(|s| format!(", shared: \"{s}\""))
        .unwrap_or_default();
    format!(
        r#"pipeline: shared_rate
params:
  symbols: {{type: list, default: [{}]}}
resources:
  api: {{concurrency: 8, rate: 20/s, retries: {{max_attempts: 6, backoff: 100ms}}{shared}}}
nodes:
  bars:
    foreach: symbol in ${{symbols}}
    op: fetch.http
    resource: api
    with: {{url: "{url}/v1/bars/${{symbol}}", query: {{start: 2026-01-05, end: 2026-01-05}}, records_path: data}}
"#,
        symbols.join(", ")
    )
}

/// Runs `processes` quiver processes on `yaml` at once.
fn run_together(dir: &Path, yaml: &str, processes: usize) -> Vec<Output> {
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    let children: Vec<Child> = (0..processes)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_quiver"))
                .args(["run", "p.yaml", "--no-cache", "--quiet"])
                .current_dir(dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// The local API, limited at 20 requests a second.
fn api() -> (tokio::runtime::Runtime, SyntheticApi) {
    start_api(ApiConfig {
        rate_per_second: Some(20),
        ..ApiConfig::default()
    })
}

#[test]
fn three_processes_sharing_the_rate_in_redis_stay_under_it() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();

    let (_rt, shared) = api();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    for out in run_together(dir.path(), &pipeline(&shared.url(), Some(&url), 30), 3) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("cannot be used"), "{stderr}");
    }
    let stats = shared.stats();
    assert_eq!(stats.served["bars"], 90);
    assert_eq!(stats.limited, 0, "{stats:?}");
    assert!(stats.busiest_second() <= 20, "{stats:?}");

    // Each keeping 20/s alone, together they pass it and are refused. Each
    // fetches for 3 s, so that the three overlap even when a loaded machine
    // starts them far apart.
    let (_rt2, alone) = api();
    // Some may even run out of retries: only the refusals are checked.
    run_together(dir.path(), &pipeline(&alone.url(), None, 60), 3);
    let stats = alone.stats();
    assert!(stats.limited > 0, "{stats:?}");
    assert!(
        stats.busiest_second() <= 20,
        "the API holds its limit: {stats:?}"
    );
}

#[test]
fn with_redis_down_a_process_keeps_the_rate_alone_and_says_so_once() {
    let (_rt, api) = api();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redis://127.0.0.1:{}", free_port());
    let outs = run_together(dir.path(), &pipeline(&api.url(), Some(&url), 30), 1);
    let out = &outs[0];
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("cannot be used").count(), 1, "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    let stats = api.stats();
    assert_eq!((stats.served["bars"], stats.limited), (30, 0), "{stats:?}");
}
