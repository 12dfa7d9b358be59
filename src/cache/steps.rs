//! What a run does with each node, as data: the forecast turned into one
//! [`Step`] per node, and [`apply`], which makes the run plan from them.
//! The steps travel to processes that compile the pipeline themselves (a
//! Ray worker) and make the same run plan there, against the same cache
//! folder, without forecasting again: a live source's token is the one
//! the driver chose.

use std::sync::Arc;

use quiver_operators::{Effect, Freshness, Operator, Workload};
use serde::{Deserialize, Serialize};

use super::forecast::{self, Action, Forecast};
use super::key::Key;
use super::store::{Store, UNDATED};
use super::wrap::{self, Filing};
use crate::plan::{NodePolicy, Plan, Reuse};

/// What a run does with one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Runs, nothing stored (not worth it, or `cache: false`).
    Run,
    /// Runs and stores its output.
    Store(Filing),
    /// A sink: runs, records what it wrote (for the day of a partitioned
    /// sink, that day's), and stores its summary.
    Sink { filing: Filing, day: Option<String> },
    /// Reads its stored output instead of running.
    Load(Key),
    /// Left alone: cached and nothing that runs reads it.
    Keep,
    /// Left alone: outside the selection.
    Unselected,
    /// Left alone: a union of days nothing reads whole.
    AsDays,
    /// Left as it is: handed over from an earlier window of the run.
    Given,
}

/// The step of every node of `plan`, in node order.
pub fn steps(plan: &Plan, forecast: &Forecast) -> Vec<Step> {
    (0..plan.graph.node_count())
        .map(|i| step(plan, forecast, i))
        .collect()
}

/// The step of node `i`.
pub fn step(plan: &Plan, forecast: &Forecast, i: usize) -> Step {
    let node = &plan.graph[petgraph::graph::NodeIndex::new(i)];
    let f = &forecast.nodes[i];
    let filing = || Filing {
        key: f.key,
        token: f.token.clone(),
        pipeline: plan.name.clone(),
        node: node.id.clone(),
        op: node.op.clone(),
        day: forecast::partition_day(node).unwrap_or(UNDATED).to_string(),
        made: f.made_json(),
    };
    match f.action {
        Action::Run => match node.effect {
            Effect::Sink => Step::Sink {
                filing: filing(),
                day: forecast::partition_day(node).map(str::to_string),
            },
            Effect::Pure if f.freshness != Freshness::Never && node.operator.worth_storing() => {
                Step::Store(filing())
            }
            Effect::Pure => Step::Run,
        },
        Action::Load => Step::Load(f.key),
        Action::Keep => Step::Keep,
        Action::Unselected => Step::Unselected,
        Action::AsDays => Step::AsDays,
        Action::Given => Step::Given,
    }
}

/// The plan a run executes: the same nodes, in the same order, each as
/// its step says (see [`super::run_plan`]). `step(i)` is node `i`'s step;
/// a node without one stays as it is.
pub fn apply(plan: &Plan, mut step: impl FnMut(usize) -> Option<Step>, store: &Store) -> Plan {
    crate::plan::rebuild(plan, |i, node| {
        let stored = |inner: Arc<dyn Operator>, filing: Filing| -> Arc<dyn Operator> {
            Arc::new(wrap::Stored {
                inner,
                store: store.clone(),
                filing,
            })
        };
        let runs = |operator: Arc<dyn Operator>| {
            (
                operator,
                Reuse::None,
                node.workload,
                node.inputs.clone(),
                node.policy.clone(),
            )
        };
        let left = |reuse: Reuse| {
            (
                node.operator.clone(),
                reuse,
                node.workload,
                Vec::new(),
                node.policy.clone(),
            )
        };
        match step(i) {
            None | Some(Step::Given) => (
                node.operator.clone(),
                node.reuse,
                node.workload,
                node.inputs.clone(),
                node.policy.clone(),
            ),
            Some(Step::Run) => runs(node.operator.clone()),
            Some(Step::Store(filing)) => runs(stored(node.operator.clone(), filing)),
            // A sink records what it wrote, and keeps its summary for
            // consumers of a later run that finds it up to date.
            Some(Step::Sink { filing, day }) => runs(stored(
                Arc::new(wrap::Receipted {
                    inner: node.operator.clone(),
                    store: store.clone(),
                    filing: filing.clone(),
                    day,
                }),
                filing,
            )),
            Some(Step::Load(key)) => (
                loader(store, key),
                Reuse::Load,
                Workload::Io,
                Vec::new(),
                NodePolicy::default(),
            ),
            Some(Step::Keep) => left(Reuse::Kept),
            Some(Step::Unselected) => left(Reuse::Unselected),
            Some(Step::AsDays) => left(Reuse::AsDays),
        }
    })
}

/// The operator that reads the output stored under `key`, for a node of a
/// part that loads it (see `crate::plan::parts::Given::Loaded`).
pub fn loader(store: &Store, key: Key) -> Arc<dyn Operator> {
    Arc::new(wrap::Load {
        store: store.clone(),
        key,
    })
}
