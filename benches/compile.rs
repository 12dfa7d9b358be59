//! Compile-time benchmark: a pipeline whose fan-out expands to 100,000
//! declared nodes (25,000 symbols × 4: ticks, prices, features, and a second
//! stage declaring the same ticks fetch again, which dedupe merges).
//!
//! Run: `cargo bench --bench compile` (optionally `-- SYMBOLS`).
//! Reports the median of several compiles; target: under 1 s for 100,000 nodes.

use std::path::Path;
use std::time::{Duration, Instant};

use quiver::compile::compile_str;

fn pipeline(symbols: usize) -> String {
    let list: Vec<String> = (0..symbols).map(|i| format!("S{i:06}")).collect();
    format!(
        r#"
pipeline: wide
params:
  symbols: {{type: list, default: [{}]}}
  start: {{type: date, default: 2026-01-05}}
  end: {{type: date, default: 2026-01-09}}
nodes:
  features:
    foreach: symbol in ${{symbols}}
    op: transform.sql
    inputs:
      ticks: {{op: fetch.synthetic, with: {{dataset: ticks, symbol: "${{symbol}}", start: "${{start}}", end: "${{end}}"}}}}
      prices: {{op: fetch.synthetic, with: {{dataset: prices, symbol: "${{symbol}}", start: "${{start}}", end: "${{end}}"}}}}
    with: {{query: "SELECT * FROM ticks JOIN prices USING (symbol)"}}
  index:
    op: transform.sql
    inputs:
      ticks: {{foreach: "symbol in ${{symbols}}", op: fetch.synthetic, with: {{dataset: ticks, symbol: "${{symbol}}", start: "${{start}}", end: "${{end}}"}}}}
    with: {{query: "SELECT count(*) AS n FROM ticks"}}
"#,
        list.join(", ")
    )
}

fn main() {
    let symbols: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(25_000);
    let text = pipeline(symbols);
    let mut times: Vec<Duration> = Vec::new();
    let mut stats = None;
    for _ in 0..7 {
        let start = Instant::now();
        let plan = compile_str(Path::new("wide.yaml"), &text, &[])
            .expect("the benchmark pipeline compiles");
        times.push(start.elapsed());
        stats = Some(plan.stats.clone());
        drop(plan);
    }
    times.sort();
    let stats = stats.expect("at least one run");
    let median = times[times.len() / 2];
    println!(
        "compile: {} declared nodes → {} unique: median {:.1} ms (min {:.1} ms, max {:.1} ms, 7 runs), {:.2} µs per declared node",
        stats.declared,
        stats.unique,
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e6 / stats.declared as f64,
    );
}
