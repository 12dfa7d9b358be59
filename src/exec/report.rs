//! What a run did, node by node, and in total.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use quiver_operators::{Fault, OpError, Table};
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, PlanNode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Never started: the run stopped first.
    NotRun,
    Running,
    Succeeded,
    Failed,
    /// Failed with `on_error: skip`, or an input it needs produced nothing.
    Skipped,
    /// Failed with `on_error: {default: …}`: produced the declared default.
    Defaulted,
    /// Stopped by Ctrl-C.
    Cancelled,
    /// Not run: its output came from the cache (loaded for a consumer, or
    /// left there because nothing that ran needed it).
    Cached,
    /// A sink not run: its target already holds what it would write.
    UpToDate,
    /// Not run: outside `--select`.
    Unselected,
    /// Not run: a partitioned node nothing read whole; its days ran.
    AsDays,
}

impl NodeStatus {
    /// The status of a node the run leaves alone (see
    /// [`crate::plan::Reuse`]); `None` for one it runs or loads.
    pub fn left_alone(node: &PlanNode) -> Option<NodeStatus> {
        use crate::plan::Reuse;
        match node.reuse {
            Reuse::None | Reuse::Load => None,
            Reuse::Kept if node.effect == quiver_operators::Effect::Sink => {
                Some(NodeStatus::UpToDate)
            }
            Reuse::Kept => Some(NodeStatus::Cached),
            Reuse::Unselected => Some(NodeStatus::Unselected),
            Reuse::AsDays => Some(NodeStatus::AsDays),
        }
    }
}

impl NodeStatus {
    /// Whether the node left an output for its consumers.
    pub fn produced(self) -> bool {
        matches!(
            self,
            NodeStatus::Succeeded | NodeStatus::Defaulted | NodeStatus::Cached
        )
    }

    /// Whether the node ended as it should: ran, or had no need to.
    pub fn ok(self) -> bool {
        matches!(
            self,
            NodeStatus::Succeeded
                | NodeStatus::Skipped
                | NodeStatus::Defaulted
                | NodeStatus::Cached
                | NodeStatus::UpToDate
                | NodeStatus::Unselected
                | NodeStatus::AsDays
        )
    }
}

/// Why a node's operator failed, and whose fault it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeError {
    /// Who should act: `pipeline` (fix the pipeline), `environment` (a
    /// source, the network, the disk) or `bug` (report it).
    pub kind: Fault,
    pub message: String,
    /// The messages of the error's causes, outermost first.
    pub causes: Vec<String>,
}

impl From<&OpError> for NodeError {
    fn from(e: &OpError) -> Self {
        Self {
            kind: e.fault(),
            message: e.to_string(),
            causes: e.causes(),
        }
    }
}

impl fmt::Display for NodeError {
    /// `environment: MESSAGE`, then one `caused by: …` line per cause.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        for cause in &self.causes {
            write!(f, "\n  caused by: {cause}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeReport {
    pub id: String,
    pub op: String,
    pub status: NodeStatus,
    /// When the node started and ended, from the start of the run.
    pub start: Duration,
    pub end: Duration,
    /// Times the operator was executed (retries included).
    pub attempts: u32,
    /// Time spent waiting for its resource.
    pub wait: Duration,
    pub rows_out: usize,
    /// Bytes of the Arrow buffers its output holds, each counted once.
    pub bytes_out: usize,
    /// The failure of a failed, skipped or defaulted node.
    pub error: Option<NodeError>,
    /// Why a node that did not fail itself produced nothing (an input
    /// produced nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For fan-ins: keys whose instance produced nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl NodeReport {
    pub fn pending(node: &PlanNode) -> Self {
        Self {
            id: node.id.clone(),
            op: node.op.clone(),
            status: NodeStatus::NotRun,
            start: Duration::ZERO,
            end: Duration::ZERO,
            attempts: 0,
            wait: Duration::ZERO,
            rows_out: 0,
            bytes_out: 0,
            error: None,
            reason: None,
            missing: Vec::new(),
        }
    }

    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }

    /// Time spent working: the duration less the wait for the resource.
    pub fn busy(&self) -> Duration {
        self.duration().saturating_sub(self.wait)
    }

    /// The message of the node's failure.
    pub fn error_message(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.message.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    /// Nodes whose operator ran at least once.
    pub executed: usize,
    /// Executions per operator, retries included.
    pub executions_by_op: BTreeMap<String, u32>,
    /// Declared nodes that did not run because an identical node did.
    pub merged_avoided: usize,
    pub retries: u32,
    pub failures: usize,
    pub skipped: usize,
    /// Nodes whose output came from the cache (loaded or left there).
    pub cached: usize,
    /// Sinks whose target already held what they would write.
    pub up_to_date: usize,
    /// Nodes outside `--select`.
    pub unselected: usize,
    pub wall: Duration,
    /// The chain of nodes that decided the run's length, first to last.
    pub critical_path: Vec<String>,
    /// The most bytes of memoized outputs alive at one time, each Arrow
    /// buffer counted once however many outputs share it.
    pub peak_output_bytes: usize,
    /// The most memory the process held resident (where the system says).
    pub peak_resident_bytes: Option<u64>,
    /// The most CPU threads of the run's budget (`--max-workers`) in use at
    /// once, operators' own threads included.
    pub peak_threads: usize,
    /// CPU time the process used (user + system) while the run went, where
    /// the system says: with `wall`, how many cores the run kept busy.
    pub cpu_time: Option<Duration>,
    pub cancelled: bool,
    /// Per resource (each source's pool): the calls made, how many failed,
    /// and the time spent waiting for the pool and working.
    #[serde(default)]
    pub by_resource: BTreeMap<String, ResourceTotals>,
}

/// What the nodes drawing from one resource did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceTotals {
    /// Nodes that ran.
    pub nodes: usize,
    /// Attempts, retries included: the calls made to the source.
    pub calls: u32,
    /// Calls that failed (retried or not).
    pub failed_calls: u32,
    /// Nodes that ended failed, skipped or on their default.
    pub failed_nodes: usize,
    pub wait: Duration,
    pub busy: Duration,
}

impl Totals {
    /// Adds the counts of `other`, a part of the same run that ran after
    /// this one (a later window): counts and times add up, peaks take the
    /// larger. The wall time, the critical path and the peak resident
    /// memory are the whole run's, set by the caller.
    pub fn add(&mut self, other: &Totals) {
        self.executed += other.executed;
        for (op, n) in &other.executions_by_op {
            *self.executions_by_op.entry(op.clone()).or_default() += n;
        }
        self.retries += other.retries;
        self.failures += other.failures;
        self.skipped += other.skipped;
        self.cached += other.cached;
        self.up_to_date += other.up_to_date;
        self.unselected += other.unselected;
        self.peak_output_bytes = self.peak_output_bytes.max(other.peak_output_bytes);
        self.peak_threads = self.peak_threads.max(other.peak_threads);
        if let Some(t) = other.cpu_time {
            self.cpu_time = Some(self.cpu_time.unwrap_or_default() + t);
        }
        self.cancelled |= other.cancelled;
        for (name, r) in &other.by_resource {
            let t = self.by_resource.entry(name.clone()).or_default();
            t.nodes += r.nodes;
            t.calls += r.calls;
            t.failed_calls += r.failed_calls;
            t.failed_nodes += r.failed_nodes;
            t.wait += r.wait;
            t.busy += r.busy;
        }
    }
}

/// What a report says of the run as a whole, known before it starts.
#[derive(Debug, Clone)]
pub struct RunHeader {
    pub pipeline: String,
    pub params: serde_json::Value,
    pub merged_avoided: usize,
    /// Per node, the resource it draws from.
    pub resources: Vec<Option<String>>,
}

impl RunHeader {
    pub fn of(plan: &Plan) -> Self {
        Self {
            pipeline: plan.name.clone(),
            params: plan
                .secrets
                .redact_json(&serde_json::to_value(&plan.params).unwrap_or_default()),
            merged_avoided: plan.stats.merged_total(),
            resources: plan
                .nodes()
                .map(|(_, n)| {
                    n.policy
                        .resource
                        .and_then(|r| plan.resources.get_index(r))
                        .map(|(name, _)| name.clone())
                })
                .collect(),
        }
    }
}

/// How the run went so far: what the totals are counted from.
pub struct Tally<'a> {
    pub nodes: &'a [NodeReport],
    pub wall: Duration,
    pub peak_output_bytes: usize,
    pub peak_threads: usize,
    pub cpu_time: Option<Duration>,
    pub cancelled: bool,
}

impl Totals {
    pub fn count<N>(header: &RunHeader, graph: &DiGraph<N, ()>, tally: Tally) -> Self {
        let nodes = tally.nodes;
        let mut executions_by_op: BTreeMap<String, u32> = BTreeMap::new();
        for n in nodes.iter().filter(|n| n.attempts > 0) {
            match executions_by_op.get_mut(&n.op) {
                Some(count) => *count += n.attempts,
                None => {
                    executions_by_op.insert(n.op.clone(), n.attempts);
                }
            }
        }
        let with = |status| nodes.iter().filter(|n| n.status == status).count();
        Totals {
            executed: nodes.iter().filter(|n| n.attempts > 0).count(),
            executions_by_op,
            merged_avoided: header.merged_avoided,
            retries: nodes.iter().map(|n| n.attempts.saturating_sub(1)).sum(),
            failures: with(NodeStatus::Failed),
            skipped: with(NodeStatus::Skipped),
            cached: with(NodeStatus::Cached),
            up_to_date: with(NodeStatus::UpToDate),
            unselected: with(NodeStatus::Unselected),
            wall: tally.wall,
            critical_path: critical_path(graph, nodes),
            peak_output_bytes: tally.peak_output_bytes,
            peak_resident_bytes: super::memory::peak_resident_bytes(),
            peak_threads: tally.peak_threads,
            cpu_time: tally.cpu_time,
            cancelled: tally.cancelled,
            by_resource: by_resource(header, nodes),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub pipeline: String,
    pub params: serde_json::Value,
    /// False while the run goes (or when it was killed before it ended).
    pub complete: bool,
    pub totals: Totals,
    pub nodes: Vec<NodeReport>,
    /// Why the report file could not be written, when it could not.
    #[serde(skip)]
    pub save_error: Option<String>,
    /// The outputs of the nodes the run was asked to keep
    /// ([`super::RunOptions::keep`]) that produced one, by node id.
    #[serde(skip)]
    pub outputs: Vec<(String, Arc<Table>)>,
}

/// A report of the run so far, borrowing its nodes: serialized exactly as
/// a [`RunReport`].
#[derive(Serialize)]
pub struct ReportSnapshot<'a> {
    pub pipeline: &'a str,
    pub params: &'a serde_json::Value,
    pub complete: bool,
    pub totals: Totals,
    pub nodes: &'a [NodeReport],
}

impl RunReport {
    /// True when no node failed and the run was not cancelled.
    pub fn succeeded(&self) -> bool {
        !self.totals.cancelled && self.nodes.iter().all(|n| n.status.ok())
    }

    pub fn failures(&self) -> impl Iterator<Item = &NodeReport> {
        self.nodes.iter().filter(|n| n.status == NodeStatus::Failed)
    }

    pub fn node(&self, id: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The report of a run made of parts that ran apart (see
    /// [`crate::plan::parts`]): each node as the piece that ran it tells,
    /// its times moved by when that piece started. A node no piece ran is
    /// as the plan leaves it, or not run. `failed` are nodes whose piece
    /// was lost before it could tell (its process died), with why.
    pub fn assemble(
        plan: &Plan,
        pieces: &[Piece],
        failed: &[(NodeIndex, String)],
        wall: Duration,
        cancelled: bool,
    ) -> RunReport {
        let mut nodes: Vec<NodeReport> = plan
            .nodes()
            .map(|(_, node)| {
                let mut report = NodeReport::pending(node);
                report.status = NodeStatus::left_alone(node).unwrap_or(NodeStatus::NotRun);
                report
            })
            .collect();
        let (mut peak_output_bytes, mut peak_threads) = (0, 0);
        let (mut cpu, mut resident): (Option<Duration>, Option<u64>) = (None, None);
        for piece in pieces {
            let totals = &piece.report.totals;
            peak_output_bytes = peak_output_bytes.max(totals.peak_output_bytes);
            peak_threads = peak_threads.max(totals.peak_threads);
            if let Some(t) = totals.cpu_time {
                cpu = Some(cpu.unwrap_or_default() + t);
            }
            resident = resident.max(totals.peak_resident_bytes);
            for &i in &piece.nodes {
                let Some(mut report) = piece.report.node(&plan.graph[i].id).cloned() else {
                    continue;
                };
                report.start += piece.offset;
                report.end += piece.offset;
                nodes[i.index()] = report;
            }
        }
        for (i, why) in failed {
            let report = &mut nodes[i.index()];
            report.status = NodeStatus::Failed;
            report.error = Some(NodeError {
                kind: Fault::Environment,
                message: why.clone(),
                causes: Vec::new(),
            });
        }
        let tally = Tally {
            nodes: &nodes,
            wall,
            peak_output_bytes,
            peak_threads,
            cpu_time: cpu,
            cancelled,
        };
        let header = RunHeader::of(plan);
        let mut totals = Totals::count(&header, &plan.graph, tally);
        totals.peak_resident_bytes = resident;
        RunReport::ended(header, totals, nodes)
    }

    /// The report of a run that ended, from what it was counted from.
    pub fn ended(header: RunHeader, totals: Totals, nodes: Vec<NodeReport>) -> RunReport {
        RunReport {
            pipeline: header.pipeline,
            params: header.params,
            complete: true,
            totals,
            nodes,
            save_error: None,
            outputs: Vec::new(),
        }
    }
}

/// What one part of a run did (see [`RunReport::assemble`]).
pub struct Piece {
    /// The nodes the part ran.
    pub nodes: Vec<NodeIndex>,
    pub report: RunReport,
    /// When the part started, from the start of the whole run.
    pub offset: Duration,
}

fn by_resource(header: &RunHeader, nodes: &[NodeReport]) -> BTreeMap<String, ResourceTotals> {
    let mut out: BTreeMap<String, ResourceTotals> = BTreeMap::new();
    for (node, resource) in nodes.iter().zip(&header.resources) {
        let Some(name) = resource else { continue };
        if node.attempts == 0 {
            continue;
        }
        let t = out.entry(name.clone()).or_default();
        t.nodes += 1;
        t.calls += node.attempts;
        let failed_node = matches!(
            node.status,
            NodeStatus::Failed | NodeStatus::Skipped | NodeStatus::Defaulted
        );
        // Every attempt but a last one that succeeded failed.
        t.failed_calls += node.attempts - u32::from(!failed_node);
        t.failed_nodes += usize::from(failed_node);
        t.wait += node.wait;
        t.busy += node.busy();
    }
    out
}

/// From the node that finished last, back through the input that finished
/// last, to a node with no inputs.
fn critical_path<N>(graph: &DiGraph<N, ()>, nodes: &[NodeReport]) -> Vec<String> {
    let ran = |i: usize| nodes[i].attempts > 0;
    let Some(mut at) = (0..nodes.len())
        .filter(|&i| ran(i))
        .max_by_key(|&i| nodes[i].end)
    else {
        return Vec::new();
    };
    let mut path = vec![nodes[at].id.clone()];
    loop {
        let prev = graph
            .neighbors_directed(NodeIndex::new(at), petgraph::Direction::Incoming)
            .map(|n| n.index())
            .filter(|&n| ran(n))
            .max_by_key(|&n| nodes[n].end);
        match prev {
            Some(p) => {
                path.push(nodes[p].id.clone());
                at = p;
            }
            None => break,
        }
    }
    path.reverse();
    path
}

fn mib(bytes: f64) -> f64 {
    bytes / (1 << 20) as f64
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        for n in self.failures() {
            match &n.error {
                Some(e) => writeln!(f, "FAILED {} ({}) — {e}", n.id, n.op)?,
                None => writeln!(f, "FAILED {} ({})", n.id, n.op)?,
            }
        }
        for n in self
            .nodes
            .iter()
            .filter(|n| matches!(n.status, NodeStatus::Skipped | NodeStatus::Defaulted))
        {
            let what = if n.status == NodeStatus::Skipped {
                "skipped"
            } else {
                "defaulted"
            };
            match (&n.error, &n.reason) {
                (Some(e), _) => writeln!(f, "{what} {} ({}) — {e}", n.id, n.op)?,
                (None, Some(reason)) => writeln!(f, "{what} {} ({}): {reason}", n.id, n.op)?,
                (None, None) => writeln!(f, "{what} {} ({})", n.id, n.op)?,
            }
        }
        let mut slowest: Vec<&NodeReport> = self.nodes.iter().filter(|n| n.attempts > 0).collect();
        slowest.sort_by_key(|n| std::cmp::Reverse(n.busy()));
        let shown: Vec<String> = slowest
            .iter()
            .take(3)
            .map(|n| format!("{} {:.2?}", n.id, n.busy()))
            .collect();
        if !shown.is_empty() {
            writeln!(f, "slowest: {}", shown.join(", "))?;
        }
        let not_run = self
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::NotRun)
            .count();
        if not_run > 0 {
            let why = if t.cancelled {
                "the run was cancelled"
            } else {
                "the run stopped at the first failure"
            };
            writeln!(f, "{not_run} nodes did not run because {why}")?;
        }
        let by_op: Vec<String> = t
            .executions_by_op
            .iter()
            .map(|(op, n)| format!("{op} ×{n}"))
            .collect();
        let resident = match t.peak_resident_bytes {
            Some(bytes) => format!(", peak resident {:.1} MiB", mib(bytes as f64)),
            None => String::new(),
        };
        let mut reused = String::new();
        if t.cached > 0 {
            reused.push_str(&format!("; {} cached", t.cached));
        }
        if t.up_to_date > 0 {
            let sinks = if t.up_to_date == 1 { "sink" } else { "sinks" };
            reused.push_str(&format!("; {} {sinks} up to date", t.up_to_date));
        }
        if t.unselected > 0 {
            reused.push_str(&format!("; {} not selected", t.unselected));
        }
        writeln!(
            f,
            "{}: executed {} nodes in {:.2?}{}{reused}; {} duplicate executions avoided by merging; {} retries, {} failed, {} skipped; peak outputs {:.1} MiB{resident}",
            self.pipeline,
            t.executed,
            t.wall,
            if by_op.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_op.join(", "))
            },
            t.merged_avoided,
            t.retries,
            t.failures,
            t.skipped,
            mib(t.peak_output_bytes as f64),
        )
    }
}
