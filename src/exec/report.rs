//! What a run did, node by node.

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
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub id: String,
    pub op: String,
    pub status: NodeStatus,
    /// When the node started, from the start of the run.
    pub start: Duration,
    pub duration: Duration,
    /// Times the operator was executed.
    pub attempts: u32,
    pub rows_out: usize,
    pub bytes_out: usize,
    pub error: Option<String>,
}

impl NodeReport {
    pub fn pending(node: &PlanNode) -> Self {
        Self {
            id: node.id.clone(),
            op: node.op.clone(),
            status: NodeStatus::NotRun,
            start: Duration::ZERO,
            duration: Duration::ZERO,
            attempts: 0,
            rows_out: 0,
            bytes_out: 0,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub pipeline: String,
    pub nodes: Vec<NodeReport>,
    pub wall: Duration,
    /// Executions per operator, counted as they happen.
    pub executed: BTreeMap<String, u32>,
    /// Declared nodes that did not run because an identical node did.
    pub merged_avoided: usize,
    /// The most bytes of memoized outputs alive at one time.
    pub peak_output_bytes: usize,
}

impl RunReport {
    pub fn new(
        nodes: Vec<NodeReport>,
        wall: Duration,
        peak_output_bytes: usize,
        plan: &Plan,
    ) -> Self {
        let mut executed = BTreeMap::new();
        for n in &nodes {
            if n.attempts > 0 {
                *executed.entry(n.op.clone()).or_insert(0) += n.attempts;
            }
        }
        Self {
            pipeline: plan.name.clone(),
            nodes,
            wall,
            executed,
            merged_avoided: plan.stats.merged_total(),
            peak_output_bytes,
        }
    }

    pub fn succeeded(&self) -> bool {
        self.nodes.iter().all(|n| n.status == NodeStatus::Succeeded)
    }

    pub fn failures(&self) -> impl Iterator<Item = &NodeReport> {
        self.nodes.iter().filter(|n| n.status == NodeStatus::Failed)
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ran: u32 = self.executed.values().sum();
        let by_op: Vec<String> = self
            .executed
            .iter()
            .map(|(op, n)| format!("{op} ×{n}"))
            .collect();
        writeln!(
            f,
            "{}: executed {ran} nodes in {:.2?} ({}); {} duplicate executions avoided by merging",
            self.pipeline,
            self.wall,
            by_op.join(", "),
            self.merged_avoided
        )?;
        let mut slowest: Vec<&NodeReport> = self.nodes.iter().filter(|n| n.attempts > 0).collect();
        slowest.sort_by(|a, b| b.duration.cmp(&a.duration));
        let shown: Vec<String> = slowest
            .iter()
            .take(3)
            .map(|n| format!("{} {:.2?}", n.id, n.duration))
            .collect();
        if !shown.is_empty() {
            writeln!(f, "slowest: {}", shown.join(", "))?;
        }
        let not_run = self
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::NotRun)
            .count();
        for n in self.failures() {
            writeln!(
                f,
                "FAILED {} ({}): {}",
                n.id,
                n.op,
                n.error.as_deref().unwrap_or("unknown error")
            )?;
        }
        if not_run > 0 {
            writeln!(
                f,
                "{not_run} nodes did not run because the run stopped at the first failure"
            )?;
        }
        Ok(())
    }
}
