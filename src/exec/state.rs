//! Where a run stands between two scheduling decisions: each node's slot
//! (waiting, running, its output), how many inputs each node still waits
//! for and how many consumers still need its output, the ready nodes
//! longest remaining path first, the node reports, and the live bytes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use quiver_operators::{Input, Inputs, OpError, Table, Workload};

use super::attempt::Outcome;
use super::fanin::fan_in;
use super::memory::LiveBuffers;
use super::progress::Progress;
use super::report::{NodeError, NodeReport, NodeStatus};
use crate::plan::{Graph, OnError, Require, Reuse, Secrets, Source};

/// A node's state while the run goes.
enum Slot {
    Waiting,
    Running,
    /// Finished; the output while a consumer still needs it.
    Done(Option<Arc<Table>>),
    /// Finished without output (failed, skipped, not run).
    Nothing,
}

/// Ready nodes in the order they start: the greatest key first, the node
/// index last so that a sequential run always takes the same order.
type Heap = BinaryHeap<(Reverse<u32>, usize, Reverse<usize>)>;

/// The nodes ready to start, earliest day first, then the one with the
/// longest path of work after it. A node's day is its date partition's
/// (`features[FPT]@2026-01-05`), or the earliest day of what reads it; in a
/// pipeline without partitions all are equal and the longest path decides.
/// Day by day, one day's 400 feature nodes run before the next day's, so
/// the day's aggregate can run and their outputs be dropped, instead of
/// every day's outputs waiting for the last one.
///
/// Three heaps: nodes that need a CPU slot, I/O nodes with inputs, and
/// sources (held back while the outputs held are many).
struct ReadyQueue {
    /// Per node: the nodes on the longest path from it to the end.
    rank: Vec<usize>,
    /// Per node: its day (see [`day_groups`]).
    day: Vec<u32>,
    /// Per node: whether it needs a CPU slot to run.
    needs_slot: Vec<bool>,
    /// Per node: whether it reads no input.
    source: Vec<bool>,
    slotted: Heap,
    free: Heap,
    sources: Heap,
}

impl ReadyQueue {
    fn push(&mut self, i: usize) {
        let entry = (Reverse(self.day[i]), self.rank[i], Reverse(i));
        if self.needs_slot[i] {
            self.slotted.push(entry);
        } else if self.source[i] {
            self.sources.push(entry);
        } else {
            self.free.push(entry);
        }
    }

    /// The next node to start: I/O work with inputs (it waits on nothing),
    /// then compute when a slot is free, then a source when `sources`
    /// allows. The scheduler starts what it can until this says none.
    fn pop(&mut self, slot_free: bool, sources: bool) -> Option<usize> {
        let heap = if !self.free.is_empty() {
            &mut self.free
        } else if slot_free && !self.slotted.is_empty() {
            &mut self.slotted
        } else if sources {
            &mut self.sources
        } else {
            return None;
        };
        heap.pop().map(|(_, _, Reverse(i))| i)
    }
}

/// What starting a node found in its inputs.
pub enum Gathered {
    /// The inputs; the fan-in keys that produced nothing are in the report.
    Ready(Inputs),
    /// An input produced nothing, so the node was skipped.
    Skipped,
    /// The node failed before it started (`require: all` and instances are
    /// missing, fan-in instances that do not fit together).
    Failed(OpError),
}

pub struct RunState {
    graph: Arc<Graph>,
    started: Instant,
    slots: Vec<Slot>,
    /// Per node: inputs not yet in their final state.
    waiting: Vec<usize>,
    /// Per node: consumers not yet in their final state. Its output is
    /// dropped when this reaches zero.
    consumers_left: Vec<usize>,
    ready: ReadyQueue,
    pub reports: Vec<NodeReport>,
    pub progress: Progress,
    memory: LiveBuffers,
    /// A failure stops the run (`false`) or only what needs it (`true`).
    pub keep_going: bool,
    /// Masked in failures and log lines.
    pub secrets: Arc<Secrets>,
    /// Bytes of outputs held above which no new source starts.
    pub hold_limit: Option<usize>,
    /// Bytes of outputs handed to the cache and not yet written: held
    /// too, and counted against the hold limit.
    pub pending_writes: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// Sources started and not yet settled, and the largest output of the
    /// settled ones: the outputs about to be held.
    sources_running: usize,
    source_bytes: usize,
    /// Per node: its output is kept to the end of the run (see
    /// [`super::RunOptions::keep`]).
    kept: Vec<bool>,
}

impl RunState {
    /// Every node waiting, the ones without inputs ready. `sequential`:
    /// every node needs the one slot, I/O included.
    pub fn new(graph: Arc<Graph>, sequential: bool, progress: Progress) -> Self {
        let n = graph.node_count();
        let count = |dir| -> Vec<usize> {
            graph
                .node_indices()
                .map(|i| graph.neighbors_directed(i, dir).count())
                .collect()
        };
        let waiting = count(Direction::Incoming);
        let consumers_left = count(Direction::Outgoing);
        let needs_slot = graph
            .node_weights()
            .map(|node| sequential || node.workload == Workload::Cpu)
            .collect();
        let source = graph
            .node_indices()
            .map(|i| graph.neighbors_directed(i, Direction::Incoming).count() == 0)
            .collect();
        let mut ready = ReadyQueue {
            rank: longest_paths(&graph),
            day: day_groups(&graph),
            needs_slot,
            source,
            slotted: Heap::new(),
            free: Heap::new(),
            sources: Heap::new(),
        };
        let mut reports: Vec<NodeReport> = graph.node_weights().map(NodeReport::pending).collect();
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::Waiting).collect();
        let mut progress = progress;
        // Nodes the run leaves alone (see `Reuse`) end before it starts;
        // the run plan gave them no inputs and no consumers.
        for (i, node) in graph.node_weights().enumerate() {
            let Some(status) = NodeStatus::left_alone(node) else {
                continue;
            };
            reports[i].status = status;
            slots[i] = Slot::Nothing;
            progress.finished(i, &reports[i]);
        }
        for (i, _) in waiting.iter().enumerate().filter(|(_, w)| **w == 0) {
            if matches!(slots[i], Slot::Waiting) {
                ready.push(i);
            }
        }
        Self {
            started: Instant::now(),
            slots,
            waiting,
            consumers_left,
            ready,
            reports,
            progress,
            memory: LiveBuffers::default(),
            keep_going: false,
            secrets: Arc::default(),
            hold_limit: None,
            pending_writes: None,
            sources_running: 0,
            source_bytes: 0,
            kept: vec![false; n],
            graph,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn peak_output_bytes(&self) -> usize {
        self.memory.peak()
    }

    pub fn needs_slot(&self, i: usize) -> bool {
        self.ready.needs_slot[i]
    }

    /// The next node to start: the ready one with the longest path after
    /// it, among those that need a CPU slot only when `slot_free`.
    /// The next node to start. While the outputs held exceed the hold
    /// limit and something runs (so that outputs will be released), no new
    /// source starts: the run works through what it has fetched first, and
    /// its memory stays flat however many days it covers.
    pub fn pop_ready(&mut self, slot_free: bool, running: bool) -> Option<usize> {
        let sources = !running
            || self
                .hold_limit
                .is_none_or(|limit| self.expected_held() < limit);
        self.ready.pop(slot_free, sources)
    }

    /// The bytes held once the sources running have finished: what is held
    /// now and their outputs at the largest a source has output so far, or
    /// 1 MiB if that is more (small sources finishing first say nothing of
    /// the large ones after them). So at most 512 sources are under way
    /// within the default limit.
    fn expected_held(&self) -> usize {
        let largest = self.source_bytes.max(1 << 20);
        let pending = self
            .pending_writes
            .as_ref()
            .map_or(0, |p| p.load(std::sync::atomic::Ordering::Relaxed));
        self.memory.live() + pending + self.sources_running * largest
    }

    /// Starts node `i` if its inputs allow: its inputs, from the memoized
    /// outputs. A node that cannot start reaches its final state here.
    pub fn start(&mut self, i: usize) -> Gathered {
        match self.gather(i) {
            Ok((inputs, missing)) => {
                let report = &mut self.reports[i];
                report.missing = missing;
                report.status = NodeStatus::Running;
                self.slots[i] = Slot::Running;
                if self.ready.source[i] {
                    self.sources_running += 1;
                }
                Gathered::Ready(inputs)
            }
            Err(Some(e)) => Gathered::Failed(e),
            Err(None) => {
                self.slots[i] = Slot::Nothing;
                Gathered::Skipped
            }
        }
    }

    /// The inputs of node `i` and the fan-in keys missing from them; `None`
    /// for a node skipped because an input produced nothing.
    fn gather(&mut self, i: usize) -> Result<(Inputs, Vec<String>), Option<OpError>> {
        let graph = &*self.graph;
        let node = &graph[NodeIndex::new(i)];
        let slots = &self.slots;
        let output = |n: NodeIndex| match &slots[n.index()] {
            Slot::Done(Some(t)) => Some(t.clone()),
            _ => None,
        };
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut all_missing = Vec::new();
        let mut skip = |reason: String| {
            self.reports[i].status = NodeStatus::Skipped;
            self.reports[i].reason = Some(reason);
            Err(None)
        };
        for input in &node.inputs {
            let table = match &input.source {
                Source::One(n) => match output(*n) {
                    Some(t) => t,
                    None => {
                        return skip(format!(
                            "input '{}' ({}) produced nothing",
                            input.name, graph[*n].id
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
                        return Err(Some(OpError::Invalid(format!(
                            "{}: {} of {} {key}s missing: {}",
                            input.name,
                            missing.len(),
                            members.len(),
                            missing.join(", ")
                        ))));
                    }
                    if present.is_empty() && !members.is_empty() {
                        return skip(format!(
                            "every instance of input '{}' produced nothing",
                            input.name
                        ));
                    }
                    let table = fan_in(key, &present).map_err(Some)?;
                    all_missing.extend(missing);
                    Arc::new(table)
                }
            };
            inputs.push(Input {
                name: input.name.clone(),
                table,
            });
        }
        Ok((Inputs(inputs), all_missing))
    }

    /// Records how node `i` ended, applying its `on_error` policy. Returns
    /// whether the run must stop.
    pub fn settle(&mut self, i: usize, start: Instant, end: Instant, outcome: Outcome) -> bool {
        let node = &self.graph[NodeIndex::new(i)];
        if self.ready.source[i] && self.sources_running > 0 {
            self.sources_running -= 1;
        }
        let report = &mut self.reports[i];
        report.start = start.saturating_duration_since(self.started);
        report.end = end.saturating_duration_since(self.started);
        report.attempts = outcome.attempts;
        report.wait = outcome.wait;
        let output = match outcome.result {
            Ok(table) if node.reuse == Reuse::Load => {
                // Read from the cache: not an execution.
                report.status = NodeStatus::Cached;
                report.attempts = 0;
                Arc::new(table)
            }
            Ok(table) => {
                report.status = NodeStatus::Succeeded;
                Arc::new(table)
            }
            Err(e) => {
                let mut error = NodeError::from(&e);
                if !self.secrets.is_empty() {
                    error.message = self.secrets.redact(&error.message);
                    for cause in &mut error.causes {
                        *cause = self.secrets.redact(cause);
                    }
                }
                let fault = error.kind;
                let e = error.message.clone();
                report.error = Some(error);
                match &node.policy.on_error {
                    OnError::Fail => {
                        tracing::error!(node = %node.id, op = %node.op, fault = %fault, error = %e, "Node failed");
                        report.status = NodeStatus::Failed;
                        self.slots[i] = Slot::Nothing;
                        return !self.keep_going;
                    }
                    OnError::Skip => {
                        tracing::warn!(node = %node.id, fault = %fault, error = %e, "Node failed and is skipped");
                        report.status = NodeStatus::Skipped;
                        self.slots[i] = Slot::Nothing;
                        return false;
                    }
                    OnError::Default(table) => {
                        tracing::warn!(node = %node.id, fault = %fault, error = %e, "Node failed; using its default");
                        report.status = NodeStatus::Defaulted;
                        table.clone()
                    }
                }
            }
        };
        report.rows_out = output.num_rows();
        let buffers = outcome
            .buffers
            .unwrap_or_else(|| super::memory::buffers(&output));
        report.bytes_out = self.memory.add(i, buffers);
        if self.ready.source[i] {
            self.source_bytes = self.source_bytes.max(report.bytes_out);
        }
        tracing::debug!(node = %node.id, op = %node.op, rows = report.rows_out, attempts = report.attempts, "Node finished");
        self.slots[i] = Slot::Done(Some(output));
        false
    }

    /// Node `i` failed before it ran (see [`Gathered::Failed`]).
    pub fn fail_before_start(&mut self, i: usize, e: OpError) -> bool {
        let now = Instant::now();
        let outcome = Outcome {
            result: Err(e),
            attempts: 0,
            wait: Default::default(),
            buffers: None,
        };
        self.settle(i, now, now, outcome)
    }

    /// Node `i` reached its final state: count it, wake its consumers and
    /// drop the outputs of producers no one needs any more.
    pub fn release(&mut self, i: usize) {
        self.progress.finished(i, &self.reports[i]);
        let idx = NodeIndex::new(i);
        let graph = &*self.graph;
        for consumer in graph.neighbors_directed(idx, Direction::Outgoing) {
            let c = consumer.index();
            self.waiting[c] -= 1;
            if self.waiting[c] == 0 && matches!(self.slots[c], Slot::Waiting) {
                self.ready.push(c);
            }
        }
        for producer in graph.neighbors_directed(idx, Direction::Incoming) {
            let p = producer.index();
            self.consumers_left[p] -= 1;
            if self.consumers_left[p] == 0
                && !self.kept[p]
                && let Slot::Done(output) = &mut self.slots[p]
                && output.take().is_some()
            {
                self.memory.remove(p);
            }
        }
    }

    /// Keeps the outputs of `nodes` to the end of the run.
    pub fn keep(&mut self, nodes: &[NodeIndex]) {
        for node in nodes {
            self.kept[node.index()] = true;
        }
    }

    /// The outputs kept (see [`Self::keep`]) of the nodes that made one,
    /// in node order; each leaves the run's memory count.
    pub fn take_kept(&mut self) -> Vec<(usize, Arc<Table>)> {
        let mut out = Vec::new();
        for i in (0..self.slots.len()).filter(|&i| self.kept[i]) {
            if let Slot::Done(output) = &mut self.slots[i]
                && let Some(table) = output.take()
            {
                self.memory.remove(i);
                out.push((i, table));
            }
        }
        out
    }

    /// After a cancel: the nodes still running were stopped.
    pub fn cancel_running(&mut self) {
        let end = self.started.elapsed();
        for i in 0..self.slots.len() {
            if matches!(self.slots[i], Slot::Running) {
                self.slots[i] = Slot::Nothing;
                let report = &mut self.reports[i];
                report.status = NodeStatus::Cancelled;
                report.end = end;
                self.progress.finished(i, &self.reports[i]);
            }
        }
    }
}

/// For each node, the number of nodes on the longest path from it to the
/// end of the graph (itself included): the work still waiting behind it.
/// Per node, the day it works for: its date partition's, as days since
/// 1970 (a window `node@first..last` counts as its last day), or for a node
/// outside the partitions the earliest day of its consumers (`u32::MAX`
/// when none has one).
fn day_groups(graph: &Graph) -> Vec<u32> {
    let mut day = vec![u32::MAX; graph.node_count()];
    for i in graph.node_indices().rev() {
        let own = graph[i]
            .id
            .rsplit_once('@')
            .and_then(|(_, d)| d.rsplit("..").next())
            .and_then(date_number);
        day[i.index()] = own.unwrap_or_else(|| {
            graph
                .neighbors_directed(i, Direction::Outgoing)
                .map(|c| day[c.index()])
                .min()
                .unwrap_or(u32::MAX)
        });
    }
    day
}

/// `2026-01-05` as 20260105, which orders as the dates do.
fn date_number(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 8 {
        return None;
    }
    digits.parse().ok()
}

fn longest_paths(graph: &Graph) -> Vec<usize> {
    let mut rank = vec![1usize; graph.node_count()];
    // Node indexes are a topological order, so walking them backwards sees
    // every consumer before its producers.
    for i in graph.node_indices().rev() {
        let best = graph
            .neighbors_directed(i, Direction::Outgoing)
            .map(|c| rank[c.index()])
            .max()
            .unwrap_or(0);
        rank[i.index()] = best + 1;
    }
    rank
}
