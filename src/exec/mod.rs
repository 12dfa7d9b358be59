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
//! - With a report file, the report is on disk from the start and kept
//!   current while the run goes (see [`journal`]).
//!
//! The pieces: [`scheduler`] is the loop, [`state`] where the run stands,
//! [`attempt`] one node's attempts under its policy, [`memory`] the bytes
//! the run holds.

mod attempt;
mod fanin;
pub(crate) mod journal;
mod memory;
mod progress;
pub mod report;
pub mod resources;
mod scheduler;
mod shared_rate;
mod state;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use quiver_operators::ExecContext;
use quiver_operators::datafusion::execution::runtime_env::RuntimeEnv;

pub use fanin::fan_in;
pub use memory::peak_resident_bytes;
pub use progress::ProgressMode;
pub use report::{NodeError, NodeReport, NodeStatus, Piece, RunReport};

use crate::plan::Plan;
use scheduler::{Episode, Scheduler};

/// The default [`RunOptions::hold_limit`]: 512 MiB.
pub const DEFAULT_HOLD_LIMIT: usize = 512 << 20;

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Compute nodes running at once.
    pub max_workers: usize,
    /// One node at a time, in a fixed order.
    pub sequential: bool,
    pub progress: ProgressMode,
    /// Where to keep the run report (`report.json`) while the run goes.
    pub report_file: Option<PathBuf>,
    /// Bytes of memory operators may reserve (DataFusion spills to disk
    /// before it fails); `None` for no limit.
    pub memory_limit: Option<usize>,
    /// Bytes of node outputs held in memory above which no new source
    /// node starts until consumers have released some; `None` for no
    /// limit. Keeps a run over many days as flat in memory as one day.
    pub hold_limit: Option<usize>,
    /// Bytes of outputs handed to the cache's writer and not yet written
    /// (see [`crate::cache::Store::pending`]): they count against the
    /// hold limit as outputs held do.
    pub pending_writes: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// Nodes whose outputs the run hands back in [`RunReport::outputs`]
    /// instead of dropping them once their consumers are done (a library
    /// caller's results; the command line keeps none).
    pub keep: Vec<petgraph::graph::NodeIndex>,
    /// Counts the nodes that reached their final state (out of the
    /// plan's), for a caller that shows progress its own way.
    pub finished: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// The resource pools, one per entry of the plan's `resources:`, when
    /// several runs share them (the windows of one run, see
    /// [`crate::windows`]): a rate, a concurrency and a breaker go on
    /// across them. `None`: the run makes its own.
    pub pools: Option<Vec<Arc<resources::Resource>>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            max_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            sequential: false,
            progress: ProgressMode::Quiet,
            report_file: None,
            memory_limit: None,
            hold_limit: Some(DEFAULT_HOLD_LIMIT),
            pending_writes: None,
            keep: Vec::new(),
            finished: None,
            pools: None,
        }
    }
}

/// Runs plans. Owns the runtime that compute operators run on.
pub struct Executor {
    options: RunOptions,
    cpu: Option<tokio::runtime::Runtime>,
    /// The DataFusion runtime every query and scan shares: one memory pool.
    datafusion: Arc<RuntimeEnv>,
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

    /// The options the next runs take (a run a window of days at a time
    /// keeps other outputs in each window).
    pub fn options_mut(&mut self) -> &mut RunOptions {
        &mut self.options
    }

    pub async fn run(&self, plan: &Plan) -> RunReport {
        self.run_until(plan, std::future::pending()).await
    }

    /// Runs `plan`, or until `cancel` completes. Must be called within a
    /// tokio runtime: I/O nodes and the scheduler run on it.
    pub async fn run_until(&self, plan: &Plan, cancel: impl Future<Output = ()>) -> RunReport {
        let cpu = self
            .cpu
            .as_ref()
            .expect("the runtime lives as long as the executor")
            .handle()
            .clone();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let mut scheduler = Scheduler::new(
            plan,
            &self.options,
            cpu.clone(),
            self.datafusion.clone(),
            stopped,
        );
        let io = tokio::runtime::Handle::current();
        let mut cancel = std::pin::pin!(cancel);
        let mut stop = Some(stop);
        // The scheduler runs as a task of its own on a worker of the runtime
        // where its nodes run (see `scheduler`), not on whatever thread polls
        // this future; it comes back here only to move to the other runtime.
        // Dropping this future stops it.
        loop {
            let runtime = if scheduler.on_cpu() { &cpu } else { &io };
            let mut task = AbortOnDrop(runtime.spawn(scheduler.run()));
            let episode = loop {
                tokio::select! {
                    done = &mut task.0 => break done,
                    () = &mut cancel, if stop.is_some() => {
                        if let Some(stop) = stop.take() {
                            let _ = stop.send(());
                        }
                    }
                }
            };
            match episode {
                Ok(Episode::Move(next)) => scheduler = next,
                Ok(Episode::Done(report)) => return *report,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("the run's scheduler was stopped from outside: {e}"),
            }
        }
    }
}

/// Writes `report` to `path` whole, as a run keeps its report file.
pub fn save_report(path: &std::path::Path, report: &RunReport) -> Result<(), String> {
    let bytes = serde_json::to_vec(report).map_err(|e| e.to_string())?;
    journal::write(path, &bytes)
}

/// A task handle that aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
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
