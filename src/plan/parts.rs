//! A plan cut into parts that run on their own, for an engine that spreads
//! a run over many processes (`quiver.ray`): each fan-out key's chain of
//! nodes is one part (`clean[AAPL]` → `features[AAPL]`, all its days), a
//! node that many keys share is a part of its own, and so is each fan-in
//! (with the nodes after it that read only it). A part reads only what
//! parts before it produce, so parts run as a DAG, each node in exactly
//! one part.
//!
//! [`slice`] makes the plan one part runs: its nodes run, the outputs it
//! reads from other parts are given, everything else is left out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use indexmap::IndexMap;
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use quiver_operators::{ExecContext, Inputs, OpError, Operator, Table, Workload};

use super::{Graph, NodePolicy, OnError, Plan, PlanNode, Rate, Reuse, Source, add_node};

/// Nodes of a plan that run together.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The fan-out key its nodes share (`AAPL`); `None` for a part of
    /// nodes no single key owns.
    pub key: Option<String>,
    /// Its nodes, in plan order.
    pub nodes: Vec<NodeIndex>,
    /// The nodes of other parts it reads, in plan order.
    pub reads: Vec<NodeIndex>,
    /// Its nodes per resource pool: how many of the pool's slots the part
    /// can use at once (never more than the pool's concurrency).
    pub pools: BTreeMap<String, u32>,
}

/// The parts of `plan`, each after every part it reads. Nodes the run
/// leaves alone (see [`Reuse`]) are in none.
pub fn cut(plan: &Plan) -> Vec<Part> {
    let graph = &plan.graph;
    let n = graph.node_count();
    // Per node: its part, and its stage (how many part boundaries lie
    // behind it). Inside a key, a node's stage is its inputs' highest;
    // across a boundary it is one more, so a boundary always goes up a
    // stage and the parts cannot form a cycle.
    let mut part_of: Vec<Option<usize>> = vec![None; n];
    // A keyed node's stage: its key's parts are numbered by how often a
    // path from the key leaves it and comes back. A node reading another
    // key or a keyless node is one stage past the highest stage of its own
    // key behind that input; otherwise at its own-key inputs' highest.
    // `behind[i]`: per key, the highest stage of that key's nodes at or
    // behind node `i`.
    let mut behind: Vec<HashMap<&str, usize>> = vec![HashMap::new(); n];
    let mut stage = vec![0usize; n];
    let mut parts: Vec<Part> = Vec::new();
    let mut by_key: HashMap<(&str, usize), usize> = HashMap::new();
    for (i, node) in plan.nodes() {
        if !matches!(node.reuse, Reuse::None | Reuse::Load) {
            continue;
        }
        let producers: Vec<NodeIndex> = graph.neighbors_directed(i, Direction::Incoming).collect();
        let key = key_of(node);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for p in &producers {
            for (k, s) in &behind[p.index()] {
                let at = seen.entry(k).or_insert(*s);
                *at = (*at).max(*s);
            }
        }
        let s = key.map_or(0, |key| {
            producers
                .iter()
                .map(|p| {
                    if key_of(&graph[*p]) == Some(key) {
                        stage[p.index()]
                    } else {
                        behind[p.index()].get(key).map_or(0, |s| s + 1)
                    }
                })
                .max()
                .unwrap_or(0)
        });
        stage[i.index()] = s;
        if let Some(key) = key {
            seen.insert(key, s);
        }
        behind[i.index()] = seen;
        let joins = match &key {
            Some(key) => by_key.get(&(*key, s)).copied(),
            // A node that reads only one keyless part joins it (a sink
            // after its fan-in).
            None => {
                let mut of: Vec<Option<usize>> =
                    producers.iter().map(|p| part_of[p.index()]).collect();
                of.sort();
                of.dedup();
                match of.as_slice() {
                    [Some(p)] if parts[*p].key.is_none() => Some(*p),
                    _ => None,
                }
            }
        };
        let p = joins.unwrap_or_else(|| {
            parts.push(Part {
                key: key.map(str::to_string),
                nodes: Vec::new(),
                reads: Vec::new(),
                pools: BTreeMap::new(),
            });
            if let Some(key) = key {
                by_key.insert((key, s), parts.len() - 1);
            }
            parts.len() - 1
        });
        part_of[i.index()] = Some(p);
        parts[p].nodes.push(i);
    }
    for part in &mut parts {
        let mut reads: Vec<NodeIndex> = part
            .nodes
            .iter()
            .flat_map(|&i| graph.neighbors_directed(i, Direction::Incoming))
            .filter(|p| !part.nodes.contains(p))
            .collect();
        reads.sort();
        reads.dedup();
        part.reads = reads;
        for &i in &part.nodes {
            let Some((name, pool)) = graph[i]
                .policy
                .resource
                .and_then(|r| plan.resources.get_index(r))
            else {
                continue;
            };
            let slots = part.pools.entry(name.clone()).or_insert(0);
            *slots = (*slots + 1).min(pool.concurrency.unwrap_or(u32::MAX));
        }
    }
    // Parts were made in the order of their first node; a part may read a
    // part made after it (a key's later stage), so order them by the
    // parts they read.
    let mut order = Vec::with_capacity(parts.len());
    let mut placed = vec![false; parts.len()];
    while order.len() < parts.len() {
        let before = order.len();
        for p in 0..parts.len() {
            let ready = !placed[p]
                && parts[p]
                    .reads
                    .iter()
                    .all(|r| part_of[r.index()].is_some_and(|q| placed[q]));
            if ready {
                placed[p] = true;
                order.push(p);
            }
        }
        assert!(order.len() > before, "the parts of a plan form a cycle");
    }
    let mut parts: Vec<Option<Part>> = parts.into_iter().map(Some).collect();
    order.into_iter().filter_map(|p| parts[p].take()).collect()
}

/// The fan-out key every name of `node` carries: `AAPL` for
/// `features[AAPL]@2026-01-05` declared under no other key; `None` for a
/// node outside any fan-out, or merged across keys.
fn key_of(node: &PlanNode) -> Option<&str> {
    fn of(name: &str) -> Option<&str> {
        let open = name.find('[')?;
        let close = open + name[open..].find(']')?;
        Some(&name[open + 1..close])
    }
    let mut names = node.names();
    let first = of(names.next()?)?;
    names.all(|name| of(name) == Some(first)).then_some(first)
}

/// An output a part reads from another part.
#[derive(Debug, Clone)]
pub enum Given {
    Table(Arc<Table>),
    /// Its node produced nothing; why.
    Nothing(String),
    /// A node of the part that reads its output from the cache: this
    /// operator reads it (see `cache::steps`).
    Loaded(Arc<dyn Operator>),
}

/// The plan that runs `run` alone: those nodes as compiled, and the nodes
/// of other parts they read, which hand over the table they were `given`
/// (or fail with its message, as an input that produced nothing). Nothing
/// else is in it, so its size is the part's, not the whole plan's; its
/// nodes are the given ones first, then `run` in plan order. `pools`
/// caps a resource's concurrency, and divides its rate, for this part.
pub fn slice(
    plan: &Plan,
    run: &[NodeIndex],
    given: Vec<(NodeIndex, Given)>,
    pools: &BTreeMap<String, (u32, u32)>,
) -> Result<Plan, String> {
    let whole = &plan.graph;
    let mut given: Vec<(NodeIndex, Given)> = given;
    given.sort_by_key(|(i, _)| *i);
    let mut run: Vec<NodeIndex> = run.to_vec();
    run.sort();
    run.dedup();
    if let Some(i) = run
        .iter()
        .chain(given.iter().map(|(i, _)| i))
        .find(|i| i.index() >= whole.node_count())
    {
        return Err(format!("the plan has no node number {}", i.index()));
    }
    let mut graph = Graph::with_capacity(given.len() + run.len(), 0);
    let mut index: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    for (i, given) in given {
        index.insert(i, add_node(&mut graph, handed(&whole[i], given)));
    }
    for &i in &run {
        let node = &whole[i];
        let mut inputs = node.inputs.clone();
        for input in &mut inputs {
            let place = |n: &mut NodeIndex| match index.get(n) {
                Some(&m) => {
                    *n = m;
                    Ok(())
                }
                None => Err(format!(
                    "node '{}' reads '{}', which is neither run nor given",
                    node.id, whole[*n].id
                )),
            };
            match &mut input.source {
                Source::One(n) => place(n)?,
                Source::All { members, .. } => {
                    for (_, n) in members {
                        place(n)?;
                    }
                }
            }
        }
        let node = node.remade(
            node.operator.clone(),
            Reuse::None,
            node.workload,
            inputs,
            node.policy.clone(),
        );
        index.insert(i, add_node(&mut graph, node));
    }
    let mut sliced = plan.over(graph);
    // Left out: the part's report is a piece of the run's, which takes
    // them from the whole plan (and a symbol list of thousands would be
    // copied and reported again by every part).
    sliced.params = IndexMap::new();
    for (name, &(slots, of)) in pools {
        let Some(pool) = sliced.resources.get_mut(name) else {
            return Err(format!("the plan has no resource '{name}'"));
        };
        pool.concurrency = Some(pool.concurrency.map_or(slots, |c| c.min(slots)).max(1));
        // Parts in flight on the pool at once share its rate.
        if let Some(rate) = pool.rate.as_mut().filter(|_| pool.shared.is_none()) {
            *rate = Rate {
                count: rate.count,
                per: rate.per.saturating_mul(of.max(1)),
            };
        }
    }
    Ok(sliced)
}

/// `node` as a node with no inputs that hands over its output, `given`,
/// made elsewhere: by another part, or an earlier window of the run.
pub fn handed(node: &PlanNode, given: Given) -> PlanNode {
    let (operator, policy): (Arc<dyn Operator>, _) = match given {
        // A load that fails is this part's failure.
        Given::Loaded(operator) => (operator, NodePolicy::default()),
        // One that produced nothing is skipped here: its failure is
        // the other part's.
        given => (
            Arc::new(Handed {
                node: node.id.clone(),
                given,
            }),
            NodePolicy {
                on_error: OnError::Skip,
                ..NodePolicy::default()
            },
        ),
    };
    node.remade(operator, Reuse::Load, Workload::Io, Vec::new(), policy)
}

/// Hands over an output another part produced.
#[derive(Debug)]
struct Handed {
    node: String,
    given: Given,
}

#[async_trait]
impl Operator for Handed {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        match &self.given {
            Given::Table(table) => Ok(Table::clone(table)),
            Given::Nothing(why) => Err(OpError::Source {
                message: format!("'{}' produced nothing: {why}", self.node),
                transient: false,
            }),
            Given::Loaded(operator) => operator.execute(ctx, inputs).await,
        }
    }
}
