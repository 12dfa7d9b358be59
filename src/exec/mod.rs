//! The executor: runs a plan's nodes as soon as their inputs are ready,
//! keeps each output once and hands the same `Arc` to every consumer, and
//! drops it when the last consumer is done.
//!
//! - Compute nodes (`Workload::Cpu`) need one of `max_workers` CPU slots and
//!   run on a dedicated runtime, so they never stall the I/O runtime that
//!   drives fetches and timers. I/O nodes hold no CPU slot while they wait;
//!   their limits come from their resource (concurrency, rate, breaker).
//! - When several nodes are ready, the one with the longest path of work
//!   after it starts first.
//! - On a failure with `on_error: fail` no new node starts; nodes already
//!   running finish, so sinks complete their atomic writes and outputs of
//!   other branches are kept. `skip` and `default` let the run go on.
//! - Cancelling (Ctrl-C) aborts running nodes except sinks, which finish
//!   their write (a sink's file appears whole or not at all).

mod attempt;
mod fanin;
mod progress;
pub mod report;
pub mod resources;

use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use quiver_operators::{
    Effect, ExecContext, Input, Inputs, OpError, Table, ThreadBudget, Workload,
};
use tokio::task::JoinSet;
use tracing::Instrument;

pub use fanin::fan_in;
pub use progress::ProgressMode;
pub use report::{NodeReport, NodeStatus, RunReport};

use crate::plan::{OnError, Plan, Require, Source};
use attempt::{Attempts, Outcome};
use resources::Resource;

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Compute nodes running at once.
    pub max_workers: usize,
    /// One node at a time, in a fixed order.
    pub sequential: bool,
    pub progress: ProgressMode,
    /// Bytes of memory operators may reserve (DataFusion spills to disk
    /// before it fails); `None` for no limit.
    pub memory_limit: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            max_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            sequential: false,
            progress: ProgressMode::Quiet,
            memory_limit: None,
        }
    }
}

/// Runs plans. Owns the runtime that compute operators run on.
pub struct Executor {
    options: RunOptions,
    cpu: Option<tokio::runtime::Runtime>,
    /// The DataFusion runtime every query and scan shares: one memory pool.
    datafusion: Arc<quiver_operators::datafusion::execution::runtime_env::RuntimeEnv>,
}

/// A node's state while the run goes.
enum Slot {
    Waiting,
    Running,
    /// Finished; the output while a consumer still needs it.
    Done(Option<Arc<Table>>),
    /// Finished without output (failed, skipped, not run).
    Nothing,
}

impl Executor {
    pub fn new(options: RunOptions) -> std::io::Result<Self> {
        let cpu = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.max_workers.max(1))
            .thread_name("quiver-cpu")
            .enable_all()
            .build()?;
        let datafusion = ExecContext::runtime(options.memory_limit)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self {
            options,
            cpu: Some(cpu),
            datafusion,
        })
    }

    pub async fn run(&self, plan: &Plan) -> RunReport {
        self.run_until(plan, std::future::pending()).await
    }

    /// Runs `plan`, or until `cancel` completes.
    pub async fn run_until(&self, plan: &Plan, cancel: impl Future<Output = ()>) -> RunReport {
        let started = Instant::now();
        let graph = &plan.graph;
        let n = graph.node_count();
        let cpu = self
            .cpu
            .as_ref()
            .expect("the runtime lives as long as the executor")
            .handle()
            .clone();
        let resources: Vec<Arc<Resource>> = plan
            .resources
            .iter()
            .map(|(name, policy)| Arc::new(Resource::new(name, policy)))
            .collect();
        let rank = longest_paths(plan);
        let mut progress = progress::Progress::new(plan, self.options.progress);

        let mut waiting: Vec<usize> = graph
            .node_indices()
            .map(|i| graph.neighbors_directed(i, Direction::Incoming).count())
            .collect();
        let mut consumers_left: Vec<usize> = graph
            .node_indices()
            .map(|i| graph.neighbors_directed(i, Direction::Outgoing).count())
            .collect();
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::Waiting).collect();
        let mut reports: Vec<NodeReport> = graph.node_weights().map(NodeReport::pending).collect();
        let mut ready: BinaryHeap<(usize, std::cmp::Reverse<usize>)> = graph
            .node_indices()
            .filter(|&i| waiting[i.index()] == 0)
            .map(|i| (rank[i.index()], std::cmp::Reverse(i.index())))
            .collect();

        let width = if self.options.sequential {
            1
        } else {
            self.options.max_workers.max(1)
        };
        // Every piece of CPU work in the run, the operators' own threads
        // included, takes a thread of this budget.
        let budget = ThreadBudget::new(width);
        let ctx = ExecContext::with_runtime(
            budget.clone(),
            self.datafusion.clone(),
            self.options.memory_limit,
        );
        // Sequential runs put every node, I/O included, through the one slot.
        let everything_needs_a_slot = self.options.sequential;
        let mut running: JoinSet<(usize, Instant, Outcome)> = JoinSet::new();
        let mut tasks: HashMap<tokio::task::Id, (usize, tokio::task::AbortHandle)> = HashMap::new();
        let mut stopping = false;
        let mut cancelled = false;
        let mut live_bytes = 0usize;
        let mut peak_bytes = 0usize;
        let mut cancel = std::pin::pin!(cancel);

        loop {
            // Start every ready node that can start, longest remaining path first.
            let mut deferred = Vec::new();
            while !stopping && let Some((r, std::cmp::Reverse(i))) = ready.pop() {
                let node = &graph[NodeIndex::new(i)];
                let inputs = match gather(plan, NodeIndex::new(i), &slots) {
                    Gathered::Ready(inputs, missing) => {
                        reports[i].missing = missing;
                        inputs
                    }
                    Gathered::Skip(reason) => {
                        reports[i].status = NodeStatus::Skipped;
                        reports[i].error = Some(reason);
                        slots[i] = Slot::Nothing;
                        progress.finished(i, &reports[i]);
                        release(
                            plan,
                            i,
                            &mut waiting,
                            &mut consumers_left,
                            &mut slots,
                            &mut ready,
                            &rank,
                            &reports,
                            &mut live_bytes,
                        );
                        continue;
                    }
                    Gathered::Fail(e) => {
                        let outcome = Outcome {
                            result: Err(e),
                            attempts: 0,
                            wait: Default::default(),
                        };
                        let now = Instant::now();
                        stopping |= self.settle(
                            plan,
                            i,
                            now,
                            now,
                            started,
                            outcome,
                            &mut slots,
                            &mut reports,
                            &mut live_bytes,
                            &mut peak_bytes,
                        );
                        progress.finished(i, &reports[i]);
                        release(
                            plan,
                            i,
                            &mut waiting,
                            &mut consumers_left,
                            &mut slots,
                            &mut ready,
                            &rank,
                            &reports,
                            &mut live_bytes,
                        );
                        continue;
                    }
                };
                let needs_slot = everything_needs_a_slot || node.workload == Workload::Cpu;
                let permit = if needs_slot {
                    match budget.try_acquire_one() {
                        Some(p) => Some(p),
                        None => {
                            deferred.push((r, std::cmp::Reverse(i)));
                            continue;
                        }
                    }
                } else {
                    None
                };
                let resource = node.policy.resource.map(|r| resources[r].clone());
                let attempts = Attempts {
                    node: node.id.clone(),
                    operator: node.operator.clone(),
                    policy: node.policy.attempts,
                    resource,
                    jitter_seed: node.identity,
                    ctx: ctx.clone(),
                    held: usize::from(permit.is_some()),
                };
                slots[i] = Slot::Running;
                reports[i].status = NodeStatus::Running;
                let span = tracing::info_span!("node", id = %node.id, op = %node.op, workload = ?node.workload);
                let task = async move {
                    let _slot = permit;
                    let start = Instant::now();
                    (i, start, attempts.run(inputs).await)
                }
                .instrument(span);
                // Compute nodes run whole on the compute runtime: one task, no hop.
                let handle = match node.workload {
                    Workload::Cpu => running.spawn_on(task, &cpu),
                    Workload::Io => running.spawn(task),
                };
                tasks.insert(handle.id(), (i, handle));
            }
            ready.extend(deferred);

            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next_with_id() => joined,
                () = &mut cancel, if !cancelled => {
                    cancelled = true;
                    stopping = true;
                    tracing::warn!("Cancelling: running nodes are stopped, sinks finish their write");
                    for (i, handle) in tasks.values() {
                        if graph[NodeIndex::new(*i)].effect != Effect::Sink {
                            handle.abort();
                        }
                    }
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            let (i, start, outcome) = match joined {
                Ok((id, done)) => {
                    tasks.remove(&id);
                    done
                }
                Err(e) => {
                    let Some((i, _)) = tasks.remove(&e.id()) else {
                        continue;
                    };
                    if e.is_cancelled() {
                        reports[i].status = NodeStatus::Cancelled;
                        reports[i].end = started.elapsed();
                        slots[i] = Slot::Nothing;
                    } else {
                        let outcome = Outcome {
                            result: Err(OpError::Internal(format!(
                                "the node's task panicked: {e}"
                            ))),
                            attempts: 1,
                            wait: Default::default(),
                        };
                        let now = Instant::now();
                        stopping |= self.settle(
                            plan,
                            i,
                            now,
                            now,
                            started,
                            outcome,
                            &mut slots,
                            &mut reports,
                            &mut live_bytes,
                            &mut peak_bytes,
                        );
                    }
                    progress.finished(i, &reports[i]);
                    continue;
                }
            };
            stopping |= self.settle(
                plan,
                i,
                start,
                Instant::now(),
                started,
                outcome,
                &mut slots,
                &mut reports,
                &mut live_bytes,
                &mut peak_bytes,
            );
            progress.finished(i, &reports[i]);
            if !cancelled {
                release(
                    plan,
                    i,
                    &mut waiting,
                    &mut consumers_left,
                    &mut slots,
                    &mut ready,
                    &rank,
                    &reports,
                    &mut live_bytes,
                );
            }
        }
        let mut report = RunReport::new(reports, started.elapsed(), peak_bytes, cancelled, plan);
        report.totals.peak_threads = budget.peak();
        report
    }

    /// Records how node `i` ended, applying its `on_error` policy. Returns
    /// whether the run must stop.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        plan: &Plan,
        i: usize,
        start: Instant,
        end: Instant,
        run_start: Instant,
        outcome: Outcome,
        slots: &mut [Slot],
        reports: &mut [NodeReport],
        live_bytes: &mut usize,
        peak_bytes: &mut usize,
    ) -> bool {
        let node = &plan.graph[NodeIndex::new(i)];
        let report = &mut reports[i];
        report.start = start.duration_since(run_start);
        report.end = end.duration_since(run_start);
        report.attempts = outcome.attempts;
        report.wait = outcome.wait;
        let output = match outcome.result {
            Ok(table) => {
                report.status = NodeStatus::Succeeded;
                table
            }
            Err(e) => {
                report.error = Some(e.to_string());
                match &node.policy.on_error {
                    OnError::Fail => {
                        tracing::error!(node = %node.id, op = %node.op, error = %e, "Node failed");
                        report.status = NodeStatus::Failed;
                        slots[i] = Slot::Nothing;
                        return true;
                    }
                    OnError::Skip => {
                        tracing::warn!(node = %node.id, error = %e, "Node failed and is skipped");
                        report.status = NodeStatus::Skipped;
                        slots[i] = Slot::Nothing;
                        return false;
                    }
                    OnError::Default(table) => {
                        tracing::warn!(node = %node.id, error = %e, "Node failed; using its default");
                        report.status = NodeStatus::Defaulted;
                        table.as_ref().clone()
                    }
                }
            }
        };
        report.rows_out = output.num_rows();
        report.bytes_out = output.memory_size();
        tracing::debug!(node = %node.id, op = %node.op, rows = report.rows_out, attempts = report.attempts, "Node finished");
        *live_bytes += report.bytes_out;
        *peak_bytes = (*peak_bytes).max(*live_bytes);
        slots[i] = Slot::Done(Some(Arc::new(output)));
        false
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

/// Node `i` reached its final state: wake its consumers and drop the
/// outputs of producers no one needs any more.
#[allow(clippy::too_many_arguments)]
fn release(
    plan: &Plan,
    i: usize,
    waiting: &mut [usize],
    consumers_left: &mut [usize],
    slots: &mut [Slot],
    ready: &mut BinaryHeap<(usize, std::cmp::Reverse<usize>)>,
    rank: &[usize],
    reports: &[NodeReport],
    live_bytes: &mut usize,
) {
    let idx = NodeIndex::new(i);
    for consumer in plan.graph.neighbors_directed(idx, Direction::Outgoing) {
        let c = consumer.index();
        waiting[c] -= 1;
        if waiting[c] == 0 && matches!(slots[c], Slot::Waiting) {
            ready.push((rank[c], std::cmp::Reverse(c)));
        }
    }
    for producer in plan.graph.neighbors_directed(idx, Direction::Incoming) {
        let p = producer.index();
        consumers_left[p] -= 1;
        if consumers_left[p] == 0
            && let Slot::Done(output) = &mut slots[p]
            && output.take().is_some()
        {
            *live_bytes = live_bytes.saturating_sub(reports[p].bytes_out);
        }
    }
}

enum Gathered {
    /// The inputs, and the fan-in keys that produced nothing.
    Ready(Inputs, Vec<String>),
    /// A single input produced nothing: so does this node.
    Skip(String),
    /// `require: all` and instances are missing.
    Fail(OpError),
}

/// The inputs of node `i`, from the memoized outputs.
fn gather(plan: &Plan, i: NodeIndex, slots: &[Slot]) -> Gathered {
    let node = &plan.graph[i];
    let output = |n: NodeIndex| match &slots[n.index()] {
        Slot::Done(Some(t)) => Some(t.clone()),
        _ => None,
    };
    let mut inputs = Vec::with_capacity(node.inputs.len());
    let mut all_missing = Vec::new();
    for input in &node.inputs {
        let table = match &input.source {
            Source::One(n) => match output(*n) {
                Some(t) => t,
                None => {
                    return Gathered::Skip(format!(
                        "input '{}' ({}) produced nothing",
                        input.name, plan.graph[*n].id
                    ));
                }
            },
            Source::All { key, members } => {
                let mut present = Vec::with_capacity(members.len());
                let mut missing = Vec::new();
                for (k, n) in members {
                    match output(*n) {
                        Some(t) => present.push((k.clone(), t)),
                        None => missing.push(k.clone()),
                    }
                }
                if !missing.is_empty() && node.policy.require == Require::All {
                    return Gathered::Fail(OpError::Invalid(format!(
                        "{}: {} of {} {key}s missing: {}",
                        input.name,
                        missing.len(),
                        members.len(),
                        missing.join(", ")
                    )));
                }
                if present.is_empty() && !members.is_empty() {
                    return Gathered::Skip(format!(
                        "every instance of input '{}' produced nothing",
                        input.name
                    ));
                }
                let table = match fan_in(key, &present) {
                    Ok(t) => t,
                    Err(e) => return Gathered::Fail(e),
                };
                all_missing.extend(missing);
                Arc::new(table)
            }
        };
        inputs.push(Input {
            name: input.name.clone(),
            table,
        });
    }
    Gathered::Ready(Inputs(inputs), all_missing)
}

/// For each node, the number of nodes on the longest path from it to the
/// end of the graph (itself included): the work still waiting behind it.
fn longest_paths(plan: &Plan) -> Vec<usize> {
    let mut rank = vec![1usize; plan.graph.node_count()];
    // Node indexes are a topological order, so walking them backwards sees
    // every consumer before its producers.
    for i in plan.graph.node_indices().rev() {
        let best = plan
            .graph
            .neighbors_directed(i, Direction::Outgoing)
            .map(|c| rank[c.index()])
            .max()
            .unwrap_or(0);
        rank[i.index()] = best + 1;
    }
    rank
}
