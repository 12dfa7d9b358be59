//! The compiled plan: parameters substituted, fan-outs expanded, fragments
//! inlined, duplicates merged, as a petgraph DAG of operators, each node
//! with the policy it runs under.

pub mod parts;
pub mod policy;
pub mod secrets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use quiver_operators::{Effect, Operator, Workload};

pub use policy::{
    AttemptPolicy, BreakerPolicy, CacheSetting, NodePolicy, OnError, Rate, Require, ResourcePolicy,
    RetryPolicy, SharedRate,
};
pub use secrets::Secrets;

/// A compiled pipeline, ready to render or run.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub file: PathBuf,
    /// The parameter values the plan was compiled with.
    pub params: IndexMap<String, serde_json::Value>,
    /// The resource pools, by name; nodes refer to them by index.
    pub resources: IndexMap<String, ResourcePolicy>,
    /// Edges point from producer to consumer. Node indexes are a topological
    /// order: every node comes after its inputs. Shared, so that the
    /// executor's tasks can read it without copying.
    pub graph: Arc<Graph>,
    pub stats: Stats,
    /// The cache folder the pipeline names (`cache: {dir: …}`), if any.
    pub cache_dir: Option<PathBuf>,
    /// The pipeline asks for every node to run whatever the cache holds
    /// (`cache: {force: true}`, usually from a parameter), as `--force`.
    pub force_all: bool,
    /// The most disk the cache may take (`cache: {max_size: …}`): a run
    /// evicts the least recently used days beyond it.
    pub cache_max_size: Option<u64>,
    /// A failed node fails the run but does not stop it: the nodes that do
    /// not need it still run (`keep_going: true`).
    pub keep_going: bool,
    /// The values of secret parameters and environment variables, masked in
    /// everything quiver writes.
    pub secrets: Secrets,
}

/// The nodes of a plan and the edges from producers to consumers.
pub type Graph = DiGraph<PlanNode, ()>;

/// One unique unit of work.
#[derive(Debug)]
pub struct PlanNode {
    /// The first name that declared the node.
    pub id: String,
    /// Every other declared name merged into this node.
    pub aliases: Vec<String>,
    pub op: String,
    /// The operator's parameters as written, as canonical JSON text (keys
    /// sorted; [`PlanNode::params_json`] reads it back), shared by the
    /// nodes that wrote the same ones. Text, not a JSON tree: a tree of a
    /// few keys takes most of a kilobyte, and a plan over a year of days
    /// holds 200,000 fetches with parameters of their own.
    pub params: Arc<str>,
    /// The parameters as the operator reads them, every default filled in,
    /// as canonical JSON text: what identity and the cache key are made of.
    pub resolved: Arc<str>,
    /// The operator's version (see [`quiver_operators::OperatorDef::version`]).
    pub version: u32,
    pub operator: Arc<dyn Operator>,
    pub effect: Effect,
    pub workload: Workload,
    pub inputs: Vec<PlanInput>,
    /// How the executor runs the node.
    pub policy: NodePolicy,
    /// A hash of the operator, its parameters and its inputs' identities:
    /// equal identity means equal output.
    pub identity: u64,
    /// What the run does with the node around its operator: set by
    /// [`crate::cache`] for a run plan, `Reuse::None` as compiled.
    pub reuse: Reuse,
}

/// What a run does with a node instead of running its operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reuse {
    /// Its operator runs.
    #[default]
    None,
    /// Its operator reads its stored output from the cache.
    Load,
    /// It does not run: its output is in the cache and nothing that runs
    /// needs it; for a sink, its target already holds what it would write.
    Kept,
    /// It does not run: it is outside the selection.
    Unselected,
    /// It does not run: a partitioned node nothing reads whole, its days
    /// standing for it.
    AsDays,
}

impl PlanNode {
    /// [`PlanNode::params`] as JSON.
    pub fn params_json(&self) -> serde_json::Value {
        json_of(&self.params)
    }

    /// [`PlanNode::resolved`] as JSON.
    pub fn resolved_json(&self) -> serde_json::Value {
        json_of(&self.resolved)
    }

    /// Every name the node was declared under.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// JSON text read back; text that is not JSON (a plan made by hand) as a
/// JSON string.
fn json_of(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

/// A named input of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    pub name: String,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// One node's output.
    One(NodeIndex),
    /// All instances of a fan-out, seen as one table with the fan-out key
    /// in column `key`.
    All {
        key: String,
        members: Vec<(String, NodeIndex)>,
    },
}

impl Source {
    pub fn nodes(&self) -> Vec<NodeIndex> {
        match self {
            Source::One(n) => vec![*n],
            Source::All { members, .. } => members.iter().map(|(_, n)| *n).collect(),
        }
    }
}

/// What compiling did to the declared nodes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// Node instances declared, after fan-out and fragment expansion.
    pub declared: usize,
    /// Nodes left after merging duplicates.
    pub unique: usize,
    /// Declared nodes merged into another, per operator.
    pub merged: BTreeMap<String, usize>,
}

impl Stats {
    pub fn merged_total(&self) -> usize {
        self.merged.values().sum()
    }
}

impl Plan {
    /// The nodes in dependency order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeIndex, &PlanNode)> {
        self.graph.node_indices().map(|i| (i, &self.graph[i]))
    }

    /// The node declared under `name`.
    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.nodes()
            .find(|(_, n)| n.names().any(|x| x == name))
            .map(|(i, _)| i)
    }

    /// Unique nodes per operator.
    pub fn count_by_op(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for (_, n) in self.nodes() {
            *out.entry(n.op.as_str()).or_insert(0) += 1;
        }
        out
    }
}

/// `plan` with each node's operator, reuse, workload, inputs and policy as
/// `each` says (the rest as they were), and the edges its inputs make.
pub(crate) fn rebuild(
    plan: &Plan,
    mut each: impl FnMut(
        usize,
        &PlanNode,
    ) -> (
        Arc<dyn Operator>,
        Reuse,
        Workload,
        Vec<PlanInput>,
        NodePolicy,
    ),
) -> Plan {
    let mut graph = DiGraph::with_capacity(plan.graph.node_count(), plan.graph.edge_count());
    for (i, node) in plan.nodes() {
        let (operator, reuse, workload, inputs, policy) = each(i.index(), node);
        add_node(
            &mut graph,
            node.remade(operator, reuse, workload, inputs, policy),
        );
    }
    plan.over(graph)
}

impl PlanNode {
    /// The node with another operator, reuse, workload, inputs and policy:
    /// the same node of a plan made from this one.
    pub(crate) fn remade(
        &self,
        operator: Arc<dyn Operator>,
        reuse: Reuse,
        workload: Workload,
        inputs: Vec<PlanInput>,
        policy: NodePolicy,
    ) -> PlanNode {
        PlanNode {
            id: self.id.clone(),
            aliases: self.aliases.clone(),
            op: self.op.clone(),
            params: self.params.clone(),
            resolved: self.resolved.clone(),
            version: self.version,
            operator,
            effect: self.effect,
            workload,
            inputs,
            policy,
            identity: self.identity,
            reuse,
        }
    }
}

/// Adds `node` to `graph`, with the edges from the producers its inputs
/// name (already in `graph`).
pub(crate) fn add_node(graph: &mut Graph, node: PlanNode) -> NodeIndex {
    let producers: Vec<NodeIndex> = node
        .inputs
        .iter()
        .flat_map(|input| input.source.nodes())
        .collect();
    let n = graph.add_node(node);
    for m in producers {
        graph.update_edge(m, n, ());
    }
    n
}

impl Plan {
    /// A plan like this one over another graph of its nodes.
    pub(crate) fn over(&self, graph: Graph) -> Plan {
        Plan {
            name: self.name.clone(),
            file: self.file.clone(),
            params: self.params.clone(),
            resources: self.resources.clone(),
            graph: Arc::new(graph),
            stats: self.stats.clone(),
            cache_dir: self.cache_dir.clone(),
            force_all: self.force_all,
            cache_max_size: self.cache_max_size,
            keep_going: self.keep_going,
            secrets: self.secrets.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::json_of;
    use serde_json::json;

    #[test]
    fn parameters_read_back_as_written_and_text_that_is_not_json_stays_text() {
        let text = json!({"end": "2026-01-05", "seed": 7, "symbols": ["ACB", "FPT"]}).to_string();
        assert_eq!(
            json_of(&text),
            json!({"end": "2026-01-05", "seed": 7, "symbols": ["ACB", "FPT"]})
        );
        assert_eq!(json_of(&text).to_string(), text);
        assert_eq!(json_of(""), json!(""));
        assert_eq!(json_of("{not json"), json!("{not json"));
    }
}
