//! The local market-data API (`quiver serve-synthetic`) against quiver's
//! own HTTP source: it serves the rows `fetch.synthetic` makes, limits its
//! rate with 429 and Retry-After (which clients honour), fails on demand,
//! and counts what it answered.

use std::time::Duration;

use quiver::exec::NodeStatus;
use quiver::serve::{ApiConfig, Route};
use serde_json::Value;

use crate::support::{compile, run, start_api as start};

fn pipeline(url: &str, resource: &str, out: &std::path::Path) -> String {
    format!(
        r#"
pipeline: api_bars
params:
  symbols: {{type: list, default: [FPT, VNM, HPG, SSI, VIC, MWG]}}
resources:
  api: {resource}
nodes:
  served:
    foreach: symbol in ${{symbols}}
    op: fetch.http
    resource: api
    with: {{url: "{url}/v1/bars/${{symbol}}", query: {{start: 2026-01-05, end: 2026-01-09}}, records_path: data}}
  made:
    foreach: symbol in ${{symbols}}
    op: fetch.synthetic
    with: {{dataset: prices, symbol: "${{symbol}}", start: 2026-01-05, end: 2026-01-09}}
  compare:
    op: transform.sql
    inputs: {{s: "served[*]", m: "made[*]"}}
    with:
      query: >
        SELECT count(*) AS rows, sum(CASE WHEN abs(s.close - m.close) < 1e-9 THEN 1 ELSE 0 END) AS equal
        FROM s JOIN m ON s.symbol = m.symbol AND s.date = CAST(m.date AS VARCHAR)
  save:
    op: sink.csv
    inputs: [compare]
    with: {{path: "{out}"}}
"#,
        out = out.display()
    )
}

/// Runs the pipeline; every served bar must equal the generated one.
fn compared(url: &str, resource: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("compare.csv");
    let report = run(&compile(&pipeline(url, resource, &out)));
    assert!(report.succeeded(), "{report}");
    // 6 symbols × 5 trading days.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "rows,equal\n30,30\n"
    );
}

#[test]
fn the_api_serves_what_fetch_synthetic_makes() {
    let (_rt, api) = start(ApiConfig::default());
    compared(&api.url(), "{concurrency: 4}");
    let stats = api.stats();
    assert_eq!(stats.served["bars"], 6);
    assert_eq!((stats.limited, stats.failed, stats.bad), (0, 0, 0));
}

#[test]
fn over_its_rate_it_answers_429_and_clients_honour_retry_after() {
    let config = ApiConfig {
        rate_per_second: Some(2),
        ..ApiConfig::default()
    };
    let (_rt, api) = start(config);
    // No limit of quiver's own: the API refuses, quiver retries after the
    // wait it is told.
    compared(
        &api.url(),
        "{concurrency: 6, retries: {max_attempts: 8, backoff: 10ms}}",
    );
    let stats = api.stats();
    assert!(stats.limited > 0, "{stats:?}");
    assert!(stats.busiest_second() <= 2, "{stats:?}");
    assert_eq!(stats.served["bars"], 6);

    // Held to the API's rate by quiver itself: never refused.
    let (_rt2, api) = start(ApiConfig {
        rate_per_second: Some(2),
        ..ApiConfig::default()
    });
    compared(&api.url(), "{concurrency: 6, rate: 2/s}");
    let stats = api.stats();
    assert_eq!(stats.limited, 0, "{stats:?}");
    assert!(stats.busiest_second() <= 2, "{stats:?}");
}

#[test]
fn a_source_that_is_down_degrades_to_defaults_and_is_counted() {
    let (_rt, api) = start(ApiConfig {
        down: vec![Route::Vwap],
        route_latency: [(Route::Float, Duration::from_millis(50))].into(),
        ..ApiConfig::default()
    });
    let yaml = format!(
        r#"
pipeline: enrich
nodes:
  float:
    op: fetch.http
    with: {{url: "{0}/v1/float/FPT"}}
  vwap:
    op: fetch.http
    retries: 2                    # three attempts in all
    on_error: {{default: {{ticker: [FPT], vwap: [null]}}}}
    with: {{url: "{0}/v1/vwap/FPT", query: {{date: 2026-01-05}}}}
"#,
        api.url()
    );
    let report = run(&compile(&yaml));
    assert_eq!(report.node("float").unwrap().status, NodeStatus::Succeeded);
    let vwap = report.node("vwap").unwrap();
    assert_eq!((vwap.status, vwap.attempts), (NodeStatus::Defaulted, 3));
    let stats = api.stats();
    assert_eq!(stats.failed, 3);
    assert_eq!(stats.served["float"], 1);

    // The counts are served too, for clients in other processes.
    let body = reqwest_free_get(&format!("{}/stats", api.url()));
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["failed"], 3);
}

/// A GET over a plain socket: the body.
fn reqwest_free_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_string()
}
