//! The scheduling loop: one task that starts every node whose inputs are
//! ready, collects the nodes that finish, and keeps the report file
//! current. It runs on a worker of the I/O runtime, so that starting an
//! I/O node and hearing back from it stay on one thread.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use quiver_operators::datafusion::execution::runtime_env::RuntimeEnv;
use quiver_operators::{Effect, ExecContext, Inputs, OpError, ThreadBudget, Workload};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument;

use super::RunOptions;
use super::attempt::{Attempts, Outcome};
use super::journal::{self, Journal};
use super::progress::Progress;
use super::report::{ReportSnapshot, RunHeader, RunReport, Tally, Totals};
use super::resources::Resource;
use super::state::{Gathered, RunState};
use crate::plan::{Graph, Plan};

pub struct Scheduler {
    graph: Arc<Graph>,
    /// The plan's resources, by index.
    resources: Vec<Arc<Resource>>,
    /// The runtime compute nodes run on.
    cpu: Handle,
    /// CPU slots: how many compute nodes (every node, in a sequential run)
    /// may run at once, and how many do.
    width: usize,
    busy: usize,
    /// Every piece of CPU work in the run, the operators' own threads
    /// included, takes a thread of this budget of `width`.
    budget: ThreadBudget,
    ctx: ExecContext,
    /// The process's CPU time when the run started.
    cpu_at_start: Option<Duration>,
    state: RunState,
    running: JoinSet<(usize, Instant, Outcome)>,
    /// Per node: how to stop it while it runs.
    handles: Vec<Option<AbortHandle>>,
    /// No new node starts (a failure, or a cancel).
    stopping: bool,
    cancelled: bool,
    header: RunHeader,
    journal: Option<Journal>,
}

impl Scheduler {
    pub fn new(
        plan: &Plan,
        options: &RunOptions,
        cpu: Handle,
        datafusion: Arc<RuntimeEnv>,
    ) -> Self {
        let graph = plan.graph.clone();
        let progress = Progress::new(plan, options.progress);
        let width = if options.sequential {
            1
        } else {
            options.max_workers.max(1)
        };
        let budget = ThreadBudget::new(width);
        let ctx = ExecContext::with_runtime(budget.clone(), datafusion, options.memory_limit);
        Self {
            resources: plan
                .resources
                .iter()
                .map(|(name, policy)| Arc::new(Resource::new(name, policy)))
                .collect(),
            cpu,
            width,
            busy: 0,
            budget,
            ctx,
            cpu_at_start: super::memory::process_cpu_time(),
            state: RunState::new(graph.clone(), options.sequential, progress),
            running: JoinSet::new(),
            handles: (0..graph.node_count()).map(|_| None).collect(),
            stopping: false,
            cancelled: false,
            header: RunHeader::of(plan),
            journal: options.report_file.clone().map(Journal::new),
            graph,
        }
    }

    /// Runs every node, or until `cancel` fires.
    pub async fn run(mut self, mut cancel: oneshot::Receiver<()>) -> RunReport {
        let mut ticks = tokio::time::interval(journal::INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.write_snapshot();
        loop {
            self.start_ready();
            if self.running.is_empty() {
                break;
            }
            tokio::select! {
                joined = self.running.join_next() => match joined {
                    Some(Ok((i, start, outcome))) => self.finished(i, start, outcome),
                    // Aborted by a cancel: what was running is marked at the end.
                    Some(Err(_)) => {}
                    None => break,
                },
                _ = &mut cancel, if !self.cancelled => self.cancel(),
                _ = ticks.tick(), if self.journal.is_some() => self.write_snapshot(),
            }
        }
        if self.cancelled {
            self.state.cancel_running();
        }
        self.into_report().await
    }

    /// Starts every ready node that can start, longest remaining path first.
    fn start_ready(&mut self) {
        while !self.stopping {
            let Some(i) = self.state.pop_ready(self.busy < self.width) else {
                break;
            };
            match self.state.start(i) {
                Gathered::Ready(inputs) => self.spawn(i, inputs),
                Gathered::Skipped => self.state.release(i),
                Gathered::Failed(e) => {
                    self.stopping |= self.state.fail_before_start(i, e);
                    self.state.release(i);
                }
            }
            if let Some(journal) = &mut self.journal {
                journal.touch();
            }
        }
    }

    fn spawn(&mut self, i: usize, inputs: Inputs) {
        let index = NodeIndex::new(i);
        let node = &self.graph[index];
        let attempts = Attempts {
            graph: self.graph.clone(),
            node: index,
            operator: node.operator.clone(),
            policy: node.policy.attempts,
            resource: node.policy.resource.map(|r| self.resources[r].clone()),
            jitter_seed: node.identity,
            ctx: self.ctx.clone(),
            held: usize::from(self.state.needs_slot(i)),
        };
        // The node's own thread of the budget. The scheduler starts no more
        // such nodes than the budget holds, but an operator may still be
        // using threads it borrowed: then the node waits for one to free.
        let slot = self.state.needs_slot(i).then(|| self.budget.clone());
        let span =
            tracing::info_span!("node", id = %node.id, op = %node.op, workload = ?node.workload);
        let task = async move {
            let _thread = match slot {
                Some(budget) => Some(budget.acquire_one().await),
                None => None,
            };
            let start = Instant::now();
            let outcome = catch_unwind(attempts.run(inputs))
                .await
                .unwrap_or_else(|panic| Outcome {
                    result: Err(OpError::Internal(format!(
                        "the node's task panicked: {panic}"
                    ))),
                    attempts: 1,
                    wait: Duration::ZERO,
                });
            (i, start, outcome)
        }
        .instrument(span);
        if self.state.needs_slot(i) {
            self.busy += 1;
        }
        // Compute nodes run whole on the compute runtime: one task, no hop.
        let handle = match node.workload {
            Workload::Cpu => self.running.spawn_on(task, &self.cpu),
            Workload::Io => self.running.spawn(task),
        };
        self.handles[i] = Some(handle);
    }

    fn finished(&mut self, i: usize, start: Instant, outcome: Outcome) {
        self.handles[i] = None;
        if self.state.needs_slot(i) {
            self.busy -= 1;
        }
        self.stopping |= self.state.settle(i, start, Instant::now(), outcome);
        self.state.release(i);
        if let Some(journal) = &mut self.journal {
            journal.touch();
        }
    }

    fn cancel(&mut self) {
        self.cancelled = true;
        self.stopping = true;
        tracing::warn!("Cancelling: running nodes are stopped, sinks finish their write");
        for (i, handle) in self.handles.iter().enumerate() {
            if let Some(handle) = handle
                && self.graph[NodeIndex::new(i)].effect != Effect::Sink
            {
                handle.abort();
            }
        }
    }

    fn tally(&self) -> Tally<'_> {
        Tally {
            nodes: &self.state.reports,
            wall: self.state.started().elapsed(),
            peak_output_bytes: self.state.peak_output_bytes(),
            peak_threads: self.budget.peak(),
            cpu_time: super::memory::process_cpu_time()
                .zip(self.cpu_at_start)
                .map(|(now, then)| now.saturating_sub(then)),
            cancelled: self.cancelled,
        }
    }

    fn write_snapshot(&mut self) {
        let Some(mut journal) = self.journal.take() else {
            return;
        };
        journal.maybe_write(|| ReportSnapshot {
            pipeline: &self.header.pipeline,
            params: &self.header.params,
            complete: false,
            totals: Totals::count(&self.header, &self.graph, self.tally()),
            nodes: &self.state.reports,
        });
        self.journal = Some(journal);
    }

    async fn into_report(mut self) -> RunReport {
        let totals = Totals::count(&self.header, &self.graph, self.tally());
        let journal = self.journal.take();
        let mut report = RunReport {
            pipeline: self.header.pipeline,
            params: self.header.params,
            complete: true,
            totals,
            nodes: self.state.reports,
            save_error: None,
        };
        if let Some(journal) = journal {
            report.save_error = journal.finish(&report).await.err();
        }
        report
    }
}

/// Runs `future`, turning a panic into an error that says what panicked.
async fn catch_unwind<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message")
                .to_string())),
        }
    })
    .await
}
