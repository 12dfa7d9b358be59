//! Reruns that recompute only what changed.
//!
//! Every node has a key ([`key`]): a hash of its operator and version, its
//! parameters with defaults filled in, what it reads besides its inputs,
//! and its inputs' tokens. Outputs are stored under their keys in a cache
//! folder ([`store`]). Before a run, a [`Forecast`] decides each node: in
//! the cache or not (and why not), and whether the run runs it, loads it
//! for a consumer, or leaves it. [`run_plan`] turns that into the plan the
//! executor runs: loaded nodes read the cache instead of their inputs,
//! nodes that run store what they compute, sinks record what they write.
//!
//! The executor knows none of this beyond [`crate::plan::Reuse`].

pub mod forecast;
pub mod gc;
mod index;
pub mod key;
pub mod legacy;
pub mod pack;
pub mod select;
pub mod steps;
pub mod store;
mod wrap;
pub mod writer;

use std::path::{Path, PathBuf};

pub use forecast::{Action, Forecast, NodeForecast, Options, State};
pub use key::Key;
pub use store::Store;

use crate::exec::RunReport;
use crate::plan::{Plan, Reuse};
use store::UNDATED;

/// A day with more packs than this at the end of a run has them merged.
/// Two: one process's pack and a second when it reopened the day, or two
/// processes writing at once, are left as they are.
const MERGE_ABOVE: usize = 2;

/// The cache folder when neither `--cache-dir` nor the pipeline names one.
pub const DEFAULT_DIR: &str = ".quiver/cache";

/// The cache folder for `plan`: `flag` (`--cache-dir`), else the
/// pipeline's `cache: {dir: …}`, else [`DEFAULT_DIR`].
pub fn dir_for(plan: &Plan, flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| plan.cache_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// The plan a run executes for `forecast`: the same nodes, in the same
/// order, each marked with what the run does with it. Loaded nodes read
/// the cache and have no inputs; nodes that stay in the cache or outside
/// the selection have neither inputs nor consumers left; nodes that run
/// store their output (or, for sinks, what they wrote).
pub fn run_plan(plan: &Plan, forecast: &Forecast, store: &Store) -> Plan {
    steps::apply(plan, |i| Some(steps::step(plan, forecast, i)), store)
}

/// Readies `options` for a run that writes to `store`: outputs waiting
/// for the disk are counted in the hold limit, and may take at most half
/// of it.
pub fn bound_writes(store: &Store, options: &mut crate::exec::RunOptions) {
    if let Some(limit) = options.hold_limit {
        store.set_write_budget(limit / 2);
    }
    options.pending_writes = Some(store.pending());
}

/// Ends a run in the cache: seals the packs it wrote (each output and
/// what made its key recorded in the index as its pack is), and records
/// the run's keys and days, for `gc --keep-runs` and eviction by least
/// recent use. What was written, for the summary.
pub fn record(plan: &Plan, forecast: &Forecast, store: &Store) -> writer::Written {
    let written = store.finish();
    let keys: Vec<Key> = forecast.nodes.iter().map(|n| n.key).collect();
    let days: Vec<&str> = plan
        .nodes()
        .filter_map(|(_, n)| forecast::partition_day(n))
        .collect();
    record_run(store, &plan.name, plan.cache_max_size, &keys, days);
    written
}

/// The end of [`record`], for a run whose packs are sealed already: the
/// run's `keys` and `days` recorded, packs of those days merged, the cache
/// kept within `max_size`.
pub fn record_run(
    store: &Store,
    pipeline: &str,
    max_size: Option<u64>,
    keys: &[Key],
    mut days: Vec<&str>,
) {
    days.sort_unstable();
    days.dedup();
    days.push(UNDATED);
    store.record_run(pipeline, keys, &days);
    store.remove_abandoned();
    // Days written by many processes (the tasks of a Ray run) end with
    // one pack, not one per process.
    if !store.disabled()
        && let Err(e) = gc::merge(store, &days, MERGE_ABOVE)
    {
        tracing::warn!(error = %e, "Could not merge the packs of the run's days");
    }
    if let Some(max) = max_size
        && !store.disabled()
    {
        let policy = gc::Policy {
            max_size: Some(max),
            protect: days.iter().map(|d| d.to_string()).collect(),
            ..gc::Policy::default()
        };
        if let Err(e) = gc::gc(store, &policy) {
            tracing::warn!(error = %e, "Could not keep the cache within its max_size");
        }
    }
}

/// The first line of a forecast: `127 nodes: 90 cached, 37 to run
/// (…); fetch.synthetic: 30 of 3,000 partitions to run`.
pub fn summary(plan: &Plan, forecast: &Forecast) -> String {
    let outcome = |i: usize| match forecast.nodes[i].action {
        Action::Run => Outcome::Runs,
        Action::Load | Action::Keep => Outcome::Cached,
        Action::Unselected => Outcome::Unselected,
        Action::AsDays => Outcome::AsDays,
        Action::Given => Outcome::Other,
    };
    let mut counts = Counts::default();
    for (i, n) in plan.nodes() {
        counts.add(&n.op, &n.id, outcome(i.index()));
    }
    counts.line("to run")
}

/// The same line, counted from what a run did: `127 nodes: 90 cached, 37
/// ran (…); …`. Equal to the forecast's when the run went as forecast.
pub fn ran(report: &RunReport) -> String {
    let mut ran = Ran::default();
    for node in &report.nodes {
        ran.add(node);
    }
    ran.line()
}

/// [`ran`]'s line, counted a node at a time (a run in windows never holds
/// every node's report at once).
#[derive(Default)]
pub struct Ran(Counts);

impl Ran {
    pub fn add(&mut self, node: &crate::exec::NodeReport) {
        use crate::exec::NodeStatus;
        let outcome = match node.status {
            NodeStatus::Cached | NodeStatus::UpToDate => Outcome::Cached,
            NodeStatus::Unselected => Outcome::Unselected,
            NodeStatus::AsDays => Outcome::AsDays,
            NodeStatus::NotRun | NodeStatus::Cancelled => Outcome::Other,
            _ => Outcome::Runs,
        };
        self.0.add(&node.op, &node.id, outcome);
    }

    pub fn line(&self) -> String {
        self.0.line("ran")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Runs,
    Cached,
    Unselected,
    AsDays,
    Other,
}

/// Nodes by outcome, operator and partition, for [`summary`] and [`ran`].
#[derive(Default)]
struct Counts {
    total: usize,
    counts: std::collections::BTreeMap<Outcome, usize>,
    by_op: std::collections::BTreeMap<String, usize>,
    /// Per operator: partitions (`node@date`) in all, and those that run.
    partitions: std::collections::BTreeMap<String, (usize, usize)>,
}

impl Counts {
    fn add(&mut self, op: &str, id: &str, o: Outcome) {
        self.total += 1;
        *self.counts.entry(o).or_default() += 1;
        if o == Outcome::Runs {
            match self.by_op.get_mut(op) {
                Some(n) => *n += 1,
                None => {
                    self.by_op.insert(op.to_string(), 1);
                }
            }
        }
        if id.contains('@') {
            if !self.partitions.contains_key(op) {
                self.partitions.insert(op.to_string(), (0, 0));
            }
            let slot = self.partitions.get_mut(op).expect("just inserted");
            slot.0 += 1;
            slot.1 += usize::from(o == Outcome::Runs);
        }
    }

    fn line(&self, verb: &str) -> String {
        let counts = &self.counts;
        let count = |o: Outcome| counts.get(&o).copied().unwrap_or(0);
        let as_days = count_of(counts, Outcome::AsDays);
        let mut text = format!(
            "{} nodes: {} cached, {} {verb}",
            self.total,
            count(Outcome::Cached),
            count(Outcome::Runs)
        );
        if !self.by_op.is_empty() {
            let parts: Vec<String> = self
                .by_op
                .iter()
                .map(|(op, n)| format!("{op} ×{n}"))
                .collect();
            text.push_str(&format!(" ({})", parts.join(", ")));
        }
        if count(Outcome::Unselected) > 0 {
            text.push_str(&format!(", {} not selected", count(Outcome::Unselected)));
        }
        if as_days > 0 {
            text.push_str(&format!(", {as_days} partitioned left as days"));
        }
        if count(Outcome::Other) > 0 {
            text.push_str(&format!(", {} not run", count(Outcome::Other)));
        }
        for (op, (all, runs)) in &self.partitions {
            text.push_str(&format!("; {op}: {runs} of {all} partitions {verb}"));
        }
        text
    }
}

fn count_of(counts: &std::collections::BTreeMap<Outcome, usize>, o: Outcome) -> usize {
    counts.get(&o).copied().unwrap_or(0)
}

/// The forecast as the renderers show it beside each node.
pub fn annotations(plan: &Plan, forecast: &Forecast) -> crate::render::Annotations {
    crate::render::Annotations {
        summary: summary(plan, forecast),
        actions: forecast.nodes.iter().map(|n| n.action_text()).collect(),
        states: plan
            .nodes()
            .map(|(i, node)| {
                let n = &forecast.nodes[i.index()];
                let mut text = n.state_text();
                if let Some(note) = &n.note {
                    text.push_str(&format!("; {note}"));
                }
                if forecast::is_union(node) {
                    // Its days: how many the cache has, how many will run.
                    let days = node.inputs.iter().flat_map(|input| input.source.nodes());
                    let (mut cached, mut runs, mut all) = (0, 0, 0);
                    for d in days {
                        all += 1;
                        match forecast.nodes[d.index()].action {
                            Action::Run => runs += 1,
                            Action::Load | Action::Keep => cached += 1,
                            Action::Unselected | Action::AsDays | Action::Given => {}
                        }
                    }
                    text.push_str(&format!(
                        "; {all} partitions: {cached} cached, {runs} to run"
                    ));
                }
                text
            })
            .collect(),
        keys: forecast.nodes.iter().map(|n| n.key.short()).collect(),
    }
}

/// The plan as `--no-cache` runs it: every node runs, except the unions of
/// the days of a partitioned node that nothing reads together (see
/// [`forecast::Action::AsDays`]), which would only hold every day in memory
/// at once.
pub fn uncached(plan: &Plan) -> Plan {
    uncached_keeping(plan, &[])
}

/// [`uncached`], where the unions in `wanted` run too: a library caller
/// asked for their tables. Node indexes stay those of `plan`.
pub fn uncached_keeping(plan: &Plan, wanted: &[petgraph::graph::NodeIndex]) -> Plan {
    use petgraph::Direction;
    crate::plan::rebuild(plan, |i, node| {
        let index = petgraph::graph::NodeIndex::new(i);
        let idle = forecast::is_union(node)
            && !wanted.contains(&index)
            && plan
                .graph
                .neighbors_directed(index, Direction::Outgoing)
                .next()
                .is_none();
        (
            node.operator.clone(),
            if idle { Reuse::AsDays } else { node.reuse },
            node.workload,
            if idle {
                Vec::new()
            } else {
                node.inputs.clone()
            },
            node.policy.clone(),
        )
    })
}
