//! Executor benchmarks (issue: the production executor). Run:
//!
//!     cargo bench --bench executor            # all three
//!     cargo bench --bench executor -- overhead
//!     cargo bench --bench executor -- overhead chain compute   # cases naming every word
//!
//! 1. Overhead per node: no-op nodes as a chain, a wide fan-out into one
//!    sink, and a width × depth grid, at 10,000 and 100,000 nodes.
//!    Overhead = (wall − lower bound) / nodes, the lower bound for no-op
//!    nodes being zero. Target ≤ 10 µs per node.
//! 2. Rate-limited fan-out: 90 fetches of 100 ms through a resource with
//!    concurrency 6 and rate 20/s. Lower bound max(90/20 s, ⌈90/6⌉ × 0.1 s)
//!    = 4.5 s. Target: wall ≤ 1.05 × lower bound.
//! 3. Shared upstream: one node feeding 32 consumers runs once and the peak
//!    of live outputs stays at one copy of it.
//! 4. The report file: a 100,000-node chain with its report kept on disk
//!    while it runs (as `quiver run` does) against the same run without.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod support;

use async_trait::async_trait;
use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use quiver::compile::compile_str;
use quiver::exec::{RunOptions, RunReport};
use quiver::operators::{Effect, ExecContext, Inputs, OpError, Operator, Table, Workload};
use quiver::plan::{Plan, PlanInput, PlanNode, Source, Stats};

/// Does nothing: what is left of a run is the executor's own cost.
#[derive(Debug)]
struct NoOp;

#[async_trait]
impl Operator for NoOp {
    async fn execute(&self, _ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        Ok(Table::empty())
    }
}

fn node(i: usize, workload: Workload) -> PlanNode {
    PlanNode {
        id: format!("n{i}"),
        aliases: Vec::new(),
        op: "noop".into(),
        params: "null".into(),
        resolved: "null".into(),
        version: 1,
        operator: Arc::new(NoOp),
        effect: Effect::Pure,
        workload,
        inputs: Vec::new(),
        policy: Default::default(),
        identity: i as u64,
        reuse: Default::default(),
    }
}

/// A plan of no-op nodes; `edges` lists (producer, consumer), producers first.
fn plan(n: usize, edges: impl Iterator<Item = (usize, usize)>, workload: Workload) -> Plan {
    let mut graph = DiGraph::new();
    for i in 0..n {
        graph.add_node(node(i, workload));
    }
    for (a, b) in edges {
        let (a, b) = (NodeIndex::new(a), NodeIndex::new(b));
        graph.add_edge(a, b, ());
        graph[b].inputs.push(PlanInput {
            name: format!("in{}", a.index()),
            source: Source::One(a),
        });
    }
    Plan {
        name: "bench".into(),
        file: "bench.yaml".into(),
        params: IndexMap::new(),
        resources: IndexMap::new(),
        graph: Arc::new(graph),
        cache_dir: None,
        force_all: false,
        cache_max_size: None,
        keep_going: false,
        secrets: Default::default(),
        stats: Stats {
            declared: n,
            unique: n,
            ..Stats::default()
        },
    }
}

fn chain(n: usize, w: Workload) -> Plan {
    plan(n, (1..n).map(|i| (i - 1, i)), w)
}

fn fan_out(n: usize, w: Workload) -> Plan {
    // One source, n − 2 middle nodes, one sink reading them all.
    let sink = n - 1;
    plan(
        n,
        (1..sink)
            .map(|i| (0, i))
            .chain((1..sink).map(move |i| (i, sink))),
        w,
    )
}

fn grid(width: usize, depth: usize, w: Workload) -> Plan {
    // Each node reads the node above it and the one above-left.
    let at = |r: usize, c: usize| r * width + c;
    let edges = (1..depth).flat_map(move |r| {
        (0..width).flat_map(move |c| {
            let mut e = vec![(at(r - 1, c), at(r, c))];
            if c > 0 {
                e.push((at(r - 1, c - 1), at(r, c)));
            }
            e
        })
    });
    plan(width * depth, edges, w)
}

fn run(plan: &Plan, options: RunOptions) -> (RunReport, Duration) {
    let (wall, report) = support::execute(plan, options);
    assert!(report.succeeded(), "{report}");
    (report, wall)
}

/// `cases`: words a case's description must all contain (none: every case).
fn overhead(cases: &[String]) {
    println!("1. overhead per no-op node (median of 5 runs; lower bound 0)");
    for &n in &[10_000usize, 100_000] {
        let side = (n as f64).sqrt() as usize;
        type MakePlan = Box<dyn Fn(Workload) -> Plan>;
        let shapes: Vec<(String, MakePlan)> = vec![
            ("chain".into(), Box::new(move |w| chain(n, w))),
            (
                "fan-out into one sink".into(),
                Box::new(move |w| fan_out(n, w)),
            ),
            (
                format!("grid {side}×{side}"),
                Box::new(move |w| grid(side, side, w)),
            ),
        ];
        for (name, make) in &shapes {
            for (wname, w) in [("I/O", Workload::Io), ("compute", Workload::Cpu)] {
                let case = format!("{n} {name} {wname}");
                if !cases.iter().all(|word| case.contains(word.as_str())) {
                    continue;
                }
                let plan = make(w);
                let nodes = plan.graph.node_count();
                let mut walls: Vec<Duration> = (0..5)
                    .map(|_| run(&plan, RunOptions::default()).1)
                    .collect();
                walls.sort();
                let median = walls[2];
                println!(
                    "   {nodes:>7} nodes, {name:<22} {wname:<8} wall {:>8.1} ms  → {:>5.2} µs/node",
                    median.as_secs_f64() * 1e3,
                    median.as_secs_f64() * 1e6 / nodes as f64
                );
            }
        }
    }
}

fn rate_limited() {
    let mut text = String::from(
        "pipeline: rate\nresources:\n  api: {concurrency: 6, rate: 20/s}\nnodes:\n  fetch:\n    foreach: symbol in [",
    );
    let symbols: Vec<String> = (0..90).map(|i| format!("S{i:02}")).collect();
    text.push_str(&symbols.join(", "));
    text.push_str("]\n    op: fetch.synthetic\n    resource: api\n    with: {dataset: stock_info, symbol: \"${symbol}\", latency: 100ms}\n");
    let plan = compile_str(Path::new("rate.yaml"), &text, &[]).unwrap();
    let lower = f64::max(90.0 / 20.0, (90f64 / 6.0).ceil() * 0.1);
    let (report, wall) = run(&plan, RunOptions::default());
    let wait: Duration = report.nodes.iter().map(|n| n.wait).sum();
    println!(
        "2. rate-limited fan-out: 90 fetches × 100 ms, concurrency 6, 20/s: wall {:.3} s, lower bound {lower:.3} s, ratio {:.3} (target ≤ 1.05); mean resource wait {:.0} ms",
        wall.as_secs_f64(),
        wall.as_secs_f64() / lower,
        wait.as_secs_f64() * 1e3 / 90.0
    );
}

fn shared_upstream() {
    let mut text = String::from(
        "pipeline: shared\nnodes:\n  source: {op: fetch.synthetic, with: {dataset: ticks, symbol: FPT, start: 2026-01-05, end: 2026-01-30}}\n",
    );
    for i in 0..32 {
        text.push_str(&format!(
            "  c{i}: {{op: transform.sql, inputs: [source], with: {{query: \"SELECT max(price) + {i} AS p FROM source\"}}}}\n"
        ));
    }
    let plan = compile_str(Path::new("shared.yaml"), &text, &[]).unwrap();
    let (report, wall) = run(&plan, RunOptions::default());
    let source = report.node("source").unwrap();
    let consumers: usize = report
        .nodes
        .iter()
        .filter(|n| n.id != "source")
        .map(|n| n.bytes_out)
        .sum();
    println!(
        "3. shared upstream: source ran {} time(s) for 32 consumers; source output {:.2} MiB, peak live outputs {:.2} MiB ({:.3} copies of the source, consumers' outputs included); wall {:.0} ms",
        source.attempts,
        source.bytes_out as f64 / (1 << 20) as f64,
        report.totals.peak_output_bytes as f64 / (1 << 20) as f64,
        (report.totals.peak_output_bytes - consumers.min(report.totals.peak_output_bytes)) as f64
            / source.bytes_out as f64,
        wall.as_secs_f64() * 1e3
    );
}

fn report_file() {
    let plan = chain(100_000, Workload::Io);
    let dir = std::env::temp_dir().join(format!("quiver-bench-{}", std::process::id()));
    let file = dir.join("report.json");
    let median = |options: &dyn Fn() -> RunOptions| {
        let mut walls: Vec<Duration> = (0..3).map(|_| run(&plan, options()).1).collect();
        walls.sort();
        walls[1]
    };
    let without = median(&RunOptions::default);
    let with = median(&|| RunOptions {
        report_file: Some(file.clone()),
        ..RunOptions::default()
    });
    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "4. report file: 100000-node chain, I/O: {:.2} µs/node without, {:.2} µs/node with the report kept on disk ({:.1} MiB, written at the start, while running and at the end)",
        without.as_secs_f64() * 1e6 / 100_000.0,
        with.as_secs_f64() * 1e6 / 100_000.0,
        size as f64 / (1 << 20) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| args.first().is_none_or(|f| name.contains(f.as_str()));
    if wanted("overhead") {
        overhead(args.get(1..).unwrap_or_default());
    }
    if wanted("rate") {
        rate_limited();
    }
    if wanted("shared") {
        shared_upstream();
    }
    if wanted("report") {
        report_file();
    }
}
