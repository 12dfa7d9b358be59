//! Helpers for tests that run plans: running with options, and plans built
//! by hand from test operators, for what no built-in operator does (panic,
//! block a thread, hand back its input's buffers).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use petgraph::graph::DiGraph;
use quiver::compile::compile_str;
use quiver::exec::{Executor, RunOptions, RunReport};
use quiver::operators::arrow::array::Float64Array;
use quiver::operators::arrow::datatypes::{DataType, Field, Schema};
use quiver::operators::arrow::record_batch::RecordBatch;
use quiver::operators::{Effect, ExecContext, Inputs, OpError, Operator, Table, Workload};
use quiver::plan::{Plan, PlanInput, PlanNode, Source, Stats};

pub fn run_with(plan: &Plan, options: RunOptions) -> RunReport {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = Executor::new(options).unwrap();
    let report = rt.block_on(executor.run(plan));
    drop(executor);
    report
}

pub fn run(plan: &Plan) -> RunReport {
    run_with(plan, RunOptions::default())
}

/// The local market-data API on a runtime of its own (kept alive with it),
/// for a test whose runs use another.
pub fn start_api(
    config: quiver::serve::ApiConfig,
) -> (tokio::runtime::Runtime, quiver::serve::SyntheticApi) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt
        .block_on(quiver::serve::SyntheticApi::start("127.0.0.1:0", config))
        .unwrap();
    (rt, api)
}

pub fn compile(text: &str) -> Plan {
    compile_str(Path::new("test.yaml"), text, &[]).unwrap_or_else(|d| panic!("{d}"))
}

/// Operators for plans built by hand.
#[derive(Debug)]
pub enum Test {
    /// `rows` floats, in one batch.
    Source(usize),
    /// The first half of its input: shares the input's buffers.
    Slice,
    /// Its input without the fan-in key column: shares the data columns.
    DropKey,
    Panic,
    /// An I/O error with a cause.
    Disk,
    /// An I/O node that waits this long.
    Wait(Duration),
    /// A compute node that waits this long without holding its thread.
    Think(Duration),
    /// A compute node that holds its thread this long.
    Block(Duration),
}

impl Test {
    fn workload(&self) -> Workload {
        match self {
            Test::Disk | Test::Wait(_) => Workload::Io,
            _ => Workload::Cpu,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Test::Source(_) => "test.source",
            Test::Slice => "test.slice",
            Test::DropKey => "test.drop_key",
            Test::Panic => "test.panic",
            Test::Disk => "test.disk",
            Test::Wait(_) => "test.wait",
            Test::Think(_) => "test.think",
            Test::Block(_) => "test.block",
        }
    }
}

#[async_trait]
impl Operator for Test {
    async fn execute(&self, _ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        match self {
            Test::Source(rows) => {
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "close",
                    DataType::Float64,
                    false,
                )]));
                let values = Float64Array::from_iter_values((0..*rows).map(|i| i as f64));
                let batch = RecordBatch::try_new(schema, vec![Arc::new(values)])?;
                Ok(Table::from_batch(batch))
            }
            Test::Slice => {
                let input = inputs.iter().next().expect("one input").table.concat()?;
                Ok(Table::from_batch(input.slice(0, input.num_rows() / 2)))
            }
            Test::DropKey => {
                let table = &inputs.iter().next().expect("one input").table;
                let batches = table
                    .batches()
                    .iter()
                    .map(|b| b.project(&[1]))
                    .collect::<Result<Vec<_>, _>>()?;
                let schema = Arc::new(table.schema().project(&[1])?);
                Ok(Table::new(schema, batches))
            }
            Test::Panic => panic!("the operator broke an invariant"),
            Test::Disk => Err(OpError::io(
                "cannot read prices.csv",
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied"),
            )),
            Test::Wait(d) | Test::Think(d) => {
                tokio::time::sleep(*d).await;
                Ok(Table::empty())
            }
            Test::Block(d) => {
                std::thread::sleep(*d);
                Ok(Table::empty())
            }
        }
    }
}

/// A plan of `nodes` (id, operator, inputs), in dependency order.
pub fn plan_of(nodes: Vec<(&str, Test, Vec<Source>)>) -> Plan {
    let mut graph = DiGraph::new();
    for (i, (id, op, inputs)) in nodes.into_iter().enumerate() {
        let n = graph.add_node(PlanNode {
            id: id.to_string(),
            aliases: Vec::new(),
            op: op.name().to_string(),
            params: "null".into(),
            resolved: "null".into(),
            version: 1,
            workload: op.workload(),
            operator: Arc::new(op),
            effect: Effect::Pure,
            inputs: inputs
                .iter()
                .enumerate()
                .map(|(k, source)| PlanInput {
                    name: format!("in{k}"),
                    source: source.clone(),
                })
                .collect(),
            policy: Default::default(),
            identity: i as u64,
            reuse: Default::default(),
        });
        for source in inputs {
            for p in source.nodes() {
                graph.add_edge(p, n, ());
            }
        }
    }
    Plan {
        name: "test".into(),
        file: "test.yaml".into(),
        params: IndexMap::new(),
        resources: IndexMap::new(),
        stats: Stats {
            declared: graph.node_count(),
            unique: graph.node_count(),
            ..Stats::default()
        },
        graph: Arc::new(graph),
        cache_dir: None,
        force_all: false,
        cache_max_size: None,
        keep_going: false,
        secrets: Default::default(),
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis server of the test's own (Debian's `redis-server`, which the
/// README's test command installs), stopped when dropped.
pub struct Redis {
    child: std::process::Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is not installed; .ci/test installs it (apt-get install redis-server)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
