//! The scheduling loop: one task that starts every node whose inputs are
//! ready, collects the nodes that finish, and keeps the report file
//! current.
//!
//! It runs where its nodes run, so that starting a node and hearing back
//! from it stay on one thread instead of waking another: on the I/O
//! runtime, or, while only compute nodes run, on the compute runtime. It
//! moves between the two (an [`Episode`] ends, the next is spawned on the
//! other runtime) only when the mix of running nodes changes, and never
//! stays on the compute runtime while I/O nodes run and every compute
//! thread may be busy, so I/O completions never wait behind long
//! computations. (While only compute nodes run and all of them hold their
//! threads, a stop or a report update waits for one to yield; there is
//! nothing else to do then.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use quiver_operators::datafusion::execution::runtime_env::RuntimeEnv;
use quiver_operators::{Effect, ExecContext, Inputs, ThreadBudget, Workload};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};
use tracing::Instrument;

use super::RunOptions;
use super::attempt::{Attempts, Finished, Outcome};
use super::journal::{self, Journal};
use super::progress::Progress;
use super::report::{NodeReport, ReportSnapshot, RunHeader, RunReport, Tally, Totals};
use super::resources::Resource;
use super::state::{Gathered, RunState};
use crate::plan::{Graph, Plan};

pub struct Scheduler {
    graph: Arc<Graph>,
    /// The plan's resources, by index.
    resources: Vec<Arc<Resource>>,
    /// The runtimes I/O nodes and compute nodes run on.
    io: Handle,
    cpu: Handle,
    /// The compute runtime's threads.
    cpu_threads: usize,
    /// Whether this episode runs on the compute runtime.
    on_cpu: bool,
    /// Running nodes, by runtime.
    io_running: usize,
    cpu_running: usize,
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
    running: JoinSet<Finished>,
    /// Per node: how to stop it while it runs.
    handles: Vec<Option<AbortHandle>>,
    /// No new node starts (a failure, or a cancel).
    stopping: bool,
    cancelled: bool,
    header: RunHeader,
    journal: Option<Journal>,
    ticks: tokio::time::Interval,
    stop: oneshot::Receiver<()>,
}

/// How a stretch of scheduling on one runtime ended.
pub enum Episode {
    /// Go on, on the other runtime.
    Move(Box<Scheduler>),
    Done(Box<RunReport>),
}

impl Scheduler {
    /// A scheduler for `plan`, stopped early when `stop` fires, whose
    /// operators share the DataFusion runtime `datafusion`. Call within the
    /// I/O runtime. Writes the first report when there is a report file.
    pub fn new(
        plan: &Plan,
        options: &RunOptions,
        cpu: Handle,
        datafusion: Arc<RuntimeEnv>,
        stop: oneshot::Receiver<()>,
    ) -> Box<Self> {
        let graph = plan.graph.clone();
        let progress = Progress::new(plan, options.progress).counting(options.finished.clone());
        let width = if options.sequential {
            1
        } else {
            options.max_workers.max(1)
        };
        let budget = ThreadBudget::new(width);
        let ctx = ExecContext::with_runtime(budget.clone(), datafusion, options.memory_limit);
        let mut ticks = tokio::time::interval(journal::INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut scheduler = Box::new(Self {
            resources: options.pools.clone().unwrap_or_else(|| {
                plan.resources
                    .iter()
                    .map(|(name, policy)| Arc::new(Resource::new(name, policy)))
                    .collect()
            }),
            io: Handle::current(),
            cpu,
            cpu_threads: options.max_workers.max(1),
            on_cpu: false,
            io_running: 0,
            cpu_running: 0,
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
            ticks,
            stop,
            graph,
        });
        scheduler.state.keep_going = plan.keep_going;
        scheduler.state.secrets = Arc::new(plan.secrets.clone());
        scheduler.state.hold_limit = options.hold_limit;
        scheduler.state.pending_writes = options.pending_writes.clone();
        scheduler.state.keep(&options.keep);
        scheduler.write_first_report();
        scheduler
    }

    /// Whether this episode runs on the compute runtime.
    pub fn on_cpu(&self) -> bool {
        self.on_cpu
    }

    /// Schedules until every node is done or a stop, or until the scheduler
    /// should move to the other runtime.
    pub async fn run(mut self: Box<Self>) -> Episode {
        loop {
            self.start_ready();
            if self.running.is_empty() {
                break;
            }
            if self.wants_cpu() != self.on_cpu {
                self.on_cpu = !self.on_cpu;
                return Episode::Move(self);
            }
            tokio::select! {
                // A stop first and the report on time, however busy the run.
                biased;
                _ = &mut self.stop, if !self.cancelled => self.cancel(),
                _ = self.ticks.tick(), if self.journal.is_some() => self.write_snapshot(),
                joined = self.running.join_next() => match joined {
                    Some(Ok((i, start, outcome))) => self.finished(i, start, outcome),
                    Some(Err(e)) if e.is_panic() => self.panicked(e),
                    // Aborted by a cancel: what was running is marked at the end.
                    Some(Err(_)) => {}
                    None => break,
                },
            }
        }
        if self.cancelled {
            self.state.cancel_running();
        }
        Episode::Done(Box::new(self.into_report().await))
    }

    /// Where the scheduler should run: on the compute runtime while only
    /// compute nodes run; on the I/O runtime while I/O nodes run and the
    /// compute threads may all be busy; otherwise where it is.
    fn wants_cpu(&self) -> bool {
        if self.cancelled {
            self.on_cpu
        } else if self.io_running == 0 {
            self.cpu_running > 0
        } else if self.cpu_running >= self.cpu_threads {
            false
        } else {
            self.on_cpu
        }
    }

    /// Starts every ready node that can start, in the ready queue's order.
    fn start_ready(&mut self) {
        while !self.stopping {
            let running = !self.running.is_empty();
            let Some(i) = self.state.pop_ready(self.busy < self.width, running) else {
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
        let resource = node.policy.resource.map(|r| self.resources[r].clone());
        let attempts = Attempts {
            graph: self.graph.clone(),
            node: index,
            operator: node.operator.clone(),
            policy: node.policy.attempts,
            ctx: (self.ctx.clone()).on_resource(resource.as_ref().map(|r| r.slot().clone())),
            resource,
            jitter_seed: node.identity,
            held: usize::from(self.state.needs_slot(i)),
            secrets: self.state.secrets.clone(),
        };
        let span =
            tracing::info_span!("node", id = %node.id, op = %node.op, workload = ?node.workload);
        let task = attempts.run(inputs).instrument(span);
        if self.state.needs_slot(i) {
            self.busy += 1;
        }
        // Compute nodes run whole on the compute runtime: one task, no hop.
        let handle = match node.workload {
            Workload::Cpu => {
                self.cpu_running += 1;
                self.running.spawn_on(task, &self.cpu)
            }
            Workload::Io => {
                self.io_running += 1;
                self.running.spawn_on(task, &self.io)
            }
        };
        self.handles[i] = Some(handle);
    }

    fn finished(&mut self, i: usize, start: Instant, outcome: Outcome) {
        self.handles[i] = None;
        if self.state.needs_slot(i) {
            self.busy -= 1;
        }
        match self.graph[NodeIndex::new(i)].workload {
            Workload::Cpu => self.cpu_running -= 1,
            Workload::Io => self.io_running -= 1,
        }
        self.stopping |= self.state.settle(i, start, Instant::now(), outcome);
        self.state.release(i);
        if let Some(journal) = &mut self.journal {
            journal.touch();
        }
    }

    /// A node's task panicked outside its operator (whose panics are
    /// caught): a bug, reported as the node's failure.
    fn panicked(&mut self, e: tokio::task::JoinError) {
        let id = e.id();
        let Some(i) = self
            .handles
            .iter()
            .position(|h| h.as_ref().is_some_and(|h| h.id() == id))
        else {
            return;
        };
        let what = e.into_panic();
        let what = what
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| what.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        let now = Instant::now();
        let outcome = Outcome {
            result: Err(quiver_operators::OpError::Internal(format!(
                "the node's task panicked: {what}"
            ))),
            attempts: 1,
            wait: Duration::ZERO,
            buffers: None,
        };
        self.finished(i, now, outcome);
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

    /// The report before any node ran, made from the plan off the scheduler.
    fn write_first_report(&mut self) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        let graph = self.graph.clone();
        let header = self.header.clone();
        journal.start(move || {
            let nodes: Vec<NodeReport> = graph.node_weights().map(NodeReport::pending).collect();
            let tally = Tally {
                nodes: &nodes,
                wall: Duration::ZERO,
                peak_output_bytes: 0,
                peak_threads: 0,
                cpu_time: None,
                cancelled: false,
            };
            let snapshot = ReportSnapshot {
                pipeline: &header.pipeline,
                params: &header.params,
                complete: false,
                totals: Totals::count(&header, &graph, tally),
                nodes: &nodes,
            };
            serde_json::to_vec(&snapshot).unwrap_or_default()
        });
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

    async fn into_report(mut self: Box<Self>) -> RunReport {
        let totals = Totals::count(&self.header, &self.graph, self.tally());
        let journal = self.journal.take();
        let outputs = self
            .state
            .take_kept()
            .into_iter()
            .map(|(i, table)| (self.graph[NodeIndex::new(i)].id.clone(), table))
            .collect();
        let mut report = RunReport {
            pipeline: self.header.pipeline,
            params: self.header.params,
            complete: true,
            totals,
            nodes: self.state.reports,
            save_error: None,
            outputs,
        };
        if let Some(journal) = journal {
            report.save_error = journal.finish(&report).await.err();
        }
        report
    }
}
