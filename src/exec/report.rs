//! What a run did, node by node, and in total.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::plan::{Plan, PlanNode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

impl NodeStatus {
    /// Whether the node left an output for its consumers.
    pub fn produced(self) -> bool {
        matches!(self, NodeStatus::Succeeded | NodeStatus::Defaulted)
    }
}

#[derive(Debug, Clone, Serialize)]
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
    pub bytes_out: usize,
    pub error: Option<String>,
    /// For fan-ins: keys whose instance produced nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
}

#[derive(Debug, Clone, Serialize)]
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
    pub wall: Duration,
    /// The chain of nodes that decided the run's length, first to last.
    pub critical_path: Vec<String>,
    /// The most bytes of memoized outputs alive at one time.
    pub peak_output_bytes: usize,
    /// The most CPU threads of the run's budget (`--max-workers`) in use at
    /// once, operators' own threads included.
    pub peak_threads: usize,
    pub cancelled: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub params: serde_json::Value,
    pub totals: Totals,
    pub nodes: Vec<NodeReport>,
}

impl RunReport {
    pub fn new(
        nodes: Vec<NodeReport>,
        wall: Duration,
        peak_output_bytes: usize,
        cancelled: bool,
        plan: &Plan,
    ) -> Self {
        let mut executions_by_op = BTreeMap::new();
        for n in nodes.iter().filter(|n| n.attempts > 0) {
            *executions_by_op.entry(n.op.clone()).or_insert(0) += n.attempts;
        }
        let totals = Totals {
            executed: nodes.iter().filter(|n| n.attempts > 0).count(),
            executions_by_op,
            merged_avoided: plan.stats.merged_total(),
            retries: nodes.iter().map(|n| n.attempts.saturating_sub(1)).sum(),
            failures: nodes
                .iter()
                .filter(|n| n.status == NodeStatus::Failed)
                .count(),
            skipped: nodes
                .iter()
                .filter(|n| n.status == NodeStatus::Skipped)
                .count(),
            wall,
            critical_path: critical_path(plan, &nodes),
            peak_output_bytes,
            peak_threads: 0,
            cancelled,
        };
        Self {
            pipeline: plan.name.clone(),
            params: serde_json::to_value(&plan.params).unwrap_or_default(),
            totals,
            nodes,
        }
    }

    /// True when no node failed and the run was not cancelled.
    pub fn succeeded(&self) -> bool {
        !self.totals.cancelled
            && self.nodes.iter().all(|n| {
                matches!(
                    n.status,
                    NodeStatus::Succeeded | NodeStatus::Skipped | NodeStatus::Defaulted
                )
            })
    }

    pub fn failures(&self) -> impl Iterator<Item = &NodeReport> {
        self.nodes.iter().filter(|n| n.status == NodeStatus::Failed)
    }

    pub fn node(&self, id: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// From the node that finished last, back through the input that finished
/// last, to a node with no inputs.
fn critical_path(plan: &Plan, nodes: &[NodeReport]) -> Vec<String> {
    let ran = |i: usize| nodes[i].attempts > 0;
    let Some(mut at) = (0..nodes.len())
        .filter(|&i| ran(i))
        .max_by_key(|&i| nodes[i].end)
    else {
        return Vec::new();
    };
    let mut path = vec![nodes[at].id.clone()];
    loop {
        let idx = petgraph::graph::NodeIndex::new(at);
        let prev = plan
            .graph
            .neighbors_directed(idx, petgraph::Direction::Incoming)
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

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.totals;
        for n in self.failures() {
            writeln!(
                f,
                "FAILED {} ({}): {}",
                n.id,
                n.op,
                n.error.as_deref().unwrap_or("unknown error")
            )?;
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
            writeln!(
                f,
                "{what} {} ({}): {}",
                n.id,
                n.op,
                n.error.as_deref().unwrap_or("")
            )?;
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
        writeln!(
            f,
            "{}: executed {} nodes in {:.2?} ({}); {} duplicate executions avoided by merging; {} retries, {} failed, {} skipped; peak outputs {:.1} MiB",
            self.pipeline,
            t.executed,
            t.wall,
            by_op.join(", "),
            t.merged_avoided,
            t.retries,
            t.failures,
            t.skipped,
            t.peak_output_bytes as f64 / (1 << 20) as f64,
        )
    }
}
