//! The executor: runs a plan's nodes as soon as their inputs are ready, up
//! to `max_workers` at a time, keeping each output once and handing the same
//! `Arc` to every consumer.
//!
//! Operators that compute (`Workload::Cpu`) run on a dedicated runtime so
//! they never stall the I/O runtime that drives fetches and timers — the
//! split DataFusion recommends for mixing query execution with I/O.

mod fanin;
pub mod report;

use std::sync::Arc;
use std::time::Instant;

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use quiver_operators::{Input, Inputs, OpError, Table, Workload};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use fanin::fan_in;
pub use report::{NodeReport, NodeStatus, RunReport};

use crate::plan::{Plan, Source};

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Nodes running at once.
    pub max_workers: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            max_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Runs plans. Owns the runtime that compute operators run on.
pub struct Executor {
    options: RunOptions,
    cpu: Option<tokio::runtime::Runtime>,
}

impl Executor {
    pub fn new(options: RunOptions) -> std::io::Result<Self> {
        let cpu = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.max_workers.max(1))
            .thread_name("quiver-cpu")
            .enable_all()
            .build()?;
        Ok(Self {
            options,
            cpu: Some(cpu),
        })
    }

    /// Runs every node of `plan`. On the first failure no new node starts;
    /// nodes already running finish (so no sink is interrupted half-way), and
    /// the report says which failed and which never ran.
    pub async fn run(&self, plan: &Plan) -> RunReport {
        let started = Instant::now();
        let graph = &plan.graph;
        let n = graph.node_count();
        let mut waiting: Vec<usize> = graph
            .node_indices()
            .map(|i| graph.neighbors_directed(i, Direction::Incoming).count())
            .collect();
        let mut consumers_left: Vec<usize> = graph
            .node_indices()
            .map(|i| graph.neighbors_directed(i, Direction::Outgoing).count())
            .collect();
        let mut outputs: Vec<Option<Arc<Table>>> = vec![None; n];
        let mut reports: Vec<NodeReport> = graph.node_weights().map(NodeReport::pending).collect();
        let mut ready: std::collections::VecDeque<NodeIndex> = graph
            .node_indices()
            .filter(|&i| waiting[i.index()] == 0)
            .collect();
        let slots = Arc::new(Semaphore::new(self.options.max_workers.max(1)));
        let mut running = JoinSet::new();
        let mut failed = false;
        let mut live_bytes: usize = 0;
        let mut peak_bytes: usize = 0;

        loop {
            while !failed && let Some(i) = ready.pop_front() {
                let node = &graph[i];
                let inputs = gather(plan, i, &outputs);
                let operator = node.operator.clone();
                let workload = node.workload;
                let cpu = self
                    .cpu
                    .as_ref()
                    .expect("runtime lives as long as the executor")
                    .handle()
                    .clone();
                let slots = slots.clone();
                reports[i.index()].status = NodeStatus::Running;
                running.spawn(async move {
                    let _slot = slots
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    let start = Instant::now();
                    let result = match inputs {
                        Err(e) => Err(e),
                        Ok(inputs) => match workload {
                            Workload::Io => operator.execute(inputs).await,
                            Workload::Cpu => cpu
                                .spawn(async move { operator.execute(inputs).await })
                                .await
                                .unwrap_or_else(|e| {
                                    Err(OpError::Internal(format!(
                                        "operator task ended abnormally: {e}"
                                    )))
                                }),
                        },
                    };
                    (i, start, start.elapsed(), result)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (i, start, elapsed, result) = match joined {
                Ok(done) => done,
                Err(e) => {
                    // A panic inside an operator is a bug; the run cannot know which node.
                    failed = true;
                    tracing::error!(error = %e, "A node task ended abnormally");
                    continue;
                }
            };
            let report = &mut reports[i.index()];
            report.start = start.duration_since(started);
            report.duration = elapsed;
            report.attempts = 1;
            match result {
                Ok(table) => {
                    report.rows_out = table.num_rows();
                    report.bytes_out = table.memory_size();
                    report.status = NodeStatus::Succeeded;
                    tracing::debug!(node = %graph[i].id, op = %graph[i].op, rows = table.num_rows(), ms = elapsed.as_millis() as u64, "Node finished");
                    live_bytes += report.bytes_out;
                    peak_bytes = peak_bytes.max(live_bytes);
                    outputs[i.index()] = Some(Arc::new(table));
                    for consumer in graph.neighbors_directed(i, Direction::Outgoing) {
                        waiting[consumer.index()] -= 1;
                        if waiting[consumer.index()] == 0 {
                            ready.push_back(consumer);
                        }
                    }
                    // Inputs no consumer still needs are dropped now, not at the end.
                    for producer in graph.neighbors_directed(i, Direction::Incoming) {
                        consumers_left[producer.index()] -= 1;
                        if consumers_left[producer.index()] == 0
                            && let Some(t) = outputs[producer.index()].take()
                        {
                            live_bytes -= reports[producer.index()].bytes_out.min(live_bytes);
                            drop(t);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(node = %graph[i].id, op = %graph[i].op, error = %e, "Node failed");
                    report.status = NodeStatus::Failed;
                    report.error = Some(e.to_string());
                    failed = true;
                }
            }
        }
        RunReport::new(reports, started.elapsed(), peak_bytes, plan)
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime.
        if let Some(rt) = self.cpu.take() {
            rt.shutdown_background();
        }
    }
}

/// The inputs of node `i`, from the memoized outputs.
fn gather(plan: &Plan, i: NodeIndex, outputs: &[Option<Arc<Table>>]) -> Result<Inputs, OpError> {
    let output = |n: NodeIndex| {
        outputs[n.index()].clone().ok_or_else(|| {
            OpError::Internal(format!("the output of '{}' is missing", plan.graph[n].id))
        })
    };
    let mut inputs = Vec::with_capacity(plan.graph[i].inputs.len());
    for input in &plan.graph[i].inputs {
        let table = match &input.source {
            Source::One(n) => output(*n)?,
            Source::All { key, members } => {
                let tables = members
                    .iter()
                    .map(|(k, n)| output(*n).map(|t| (k.clone(), t)))
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(fan_in(key, &tables)?)
            }
        };
        inputs.push(Input {
            name: input.name.clone(),
            table,
        });
    }
    Ok(Inputs(inputs))
}
