//! What `quiver.ray` needs from the engine: a plan cut into parts, one
//! part run in a worker with the tables it reads handed in, and the parts'
//! reports put back together into one run.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use petgraph::graph::NodeIndex;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quiver::exec::{Piece, ProgressMode, RunOptions, RunReport};
use quiver::plan::Plan as QPlan;
use quiver::plan::parts::{Given, cut, slice};

use crate::plan::{Plan, Prepared, Run, execute};
use crate::table::Table;

/// Node ids to indexes.
pub(crate) struct Ids(HashMap<String, NodeIndex>);

impl Ids {
    pub(crate) fn of(plan: &QPlan) -> Self {
        Self(plan.nodes().map(|(i, n)| (n.id.clone(), i)).collect())
    }

    fn get(&self, plan: &QPlan, id: &str) -> PyResult<NodeIndex> {
        self.0.get(id).copied().ok_or_else(|| {
            PyKeyError::new_err(format!(
                "no node '{id}' in pipeline '{}': the plan in this process differs from the \
                 one that was cut (another version of the pipeline file or its parameters?)",
                plan.name
            ))
        })
    }
}

/// The plan cut into parts (see `quiver::plan::parts`), as a dict:
/// `parts` (each `key`, `nodes`, `reads` and `pools`: node ids, and slots
/// per resource), `outputs` (the ids whose tables the run hands back, as
/// `Plan.run` keeps them), `aliases` (name asked for → id), `pools` (per
/// resource: `concurrency` or None, whether it has a `rate` and whether
/// the rate is `shared` in Redis) and `keep_going`.
#[pyfunction]
#[pyo3(signature = (plan, outputs = None))]
pub fn plan_parts<'py>(
    py: Python<'py>,
    plan: &Plan,
    outputs: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyDict>> {
    let Prepared {
        plan: run_plan,
        keep,
        aliases,
    } = plan.prepare(outputs.as_deref())?;
    let parts = py.detach(|| cut(&run_plan));
    let graph = &run_plan.graph;
    let ids = |nodes: &[NodeIndex]| -> Vec<&str> {
        nodes.iter().map(|&i| graph[i].id.as_str()).collect()
    };
    let out = PyDict::new(py);
    let list = PyList::empty(py);
    for part in &parts {
        let item = PyDict::new(py);
        item.set_item("key", &part.key)?;
        item.set_item("nodes", ids(&part.nodes))?;
        item.set_item("reads", ids(&part.reads))?;
        item.set_item("pools", part.pools.clone())?;
        list.append(item)?;
    }
    out.set_item("parts", list)?;
    out.set_item("outputs", ids(&keep))?;
    out.set_item("aliases", aliases.into_iter().collect::<BTreeMap<_, _>>())?;
    let pools = PyDict::new(py);
    for (name, pool) in &run_plan.resources {
        let item = PyDict::new(py);
        item.set_item("concurrency", pool.concurrency)?;
        item.set_item("rate", pool.rate.is_some())?;
        item.set_item("shared", pool.shared.is_some())?;
        pools.set_item(name, item)?;
    }
    out.set_item("pools", pools)?;
    out.set_item("keep_going", run_plan.keep_going)?;
    Ok(out)
}

/// Runs the part made of `nodes` alone, with the GIL released: `given`
/// are the tables it reads from other parts, `nothing` the inputs whose
/// node produced nothing (id → why), `keep` the nodes whose tables to hand
/// back, `pools` per resource the slots the part may use and how many
/// parts share the resource's rate.
#[pyfunction]
#[pyo3(signature = (plan, nodes, given, nothing, keep, pools, max_workers = 1))]
#[allow(clippy::too_many_arguments)]
pub fn run_part(
    py: Python<'_>,
    plan: &Plan,
    nodes: Vec<String>,
    given: HashMap<String, PyRef<'_, Table>>,
    nothing: HashMap<String, String>,
    keep: Vec<String>,
    pools: BTreeMap<String, (u32, u32)>,
    max_workers: usize,
) -> PyResult<Run> {
    let whole = &plan.inner;
    let ids = plan.ids.get_or_init(|| Ids::of(whole));
    let run = nodes
        .iter()
        .map(|id| ids.get(whole, id))
        .collect::<PyResult<Vec<_>>>()?;
    let mut handed = Vec::new();
    for (id, table) in &given {
        handed.push((ids.get(whole, id)?, Given::Table(table.inner.clone())));
    }
    for (id, why) in nothing {
        handed.push((ids.get(whole, &id)?, Given::Nothing(why)));
    }
    let sliced = slice(whole, &run, handed, &pools).map_err(PyValueError::new_err)?;
    let ids = Ids::of(&sliced);
    let keep = keep
        .iter()
        .map(|id| ids.get(&sliced, id))
        .collect::<PyResult<Vec<_>>>()?;
    let options = RunOptions {
        max_workers: max_workers.max(1),
        progress: ProgressMode::Quiet,
        keep,
        ..RunOptions::default()
    };
    let report = py.detach(move || execute(&sliced, options, None))?;
    Ok(Run {
        report,
        aliases: Vec::new(),
    })
}

/// One run's report from its parts' (`pieces`: the ids a part ran, its
/// report JSON, and when it started, in seconds from the start of the
/// run). `lost` are nodes whose part never reported (id → why), `tables`
/// the outputs handed back (id → table), `outputs` and `aliases` as
/// `plan_parts` was given them.
#[pyfunction]
#[pyo3(signature = (plan, outputs, pieces, lost, tables, wall, cancelled))]
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    plan: &Plan,
    outputs: Option<Vec<String>>,
    pieces: Vec<(Vec<String>, String, f64)>,
    lost: HashMap<String, String>,
    tables: Vec<(String, PyRef<'_, Table>)>,
    wall: f64,
    cancelled: bool,
) -> PyResult<Run> {
    let Prepared {
        plan: run_plan,
        aliases,
        ..
    } = plan.prepare(outputs.as_deref())?;
    let ids = Ids::of(&run_plan);
    let mut assembled = Vec::with_capacity(pieces.len());
    for (nodes, json, offset) in pieces {
        let report: RunReport = serde_json::from_str(&json)
            .map_err(|e| PyValueError::new_err(format!("a part's report does not read: {e}")))?;
        assembled.push(Piece {
            nodes: nodes
                .iter()
                .map(|id| ids.get(&run_plan, id))
                .collect::<PyResult<_>>()?,
            report,
            offset: Duration::from_secs_f64(offset.max(0.0)),
        });
    }
    let lost = lost
        .into_iter()
        .map(|(id, why)| Ok((ids.get(&run_plan, &id)?, why)))
        .collect::<PyResult<Vec<_>>>()?;
    let mut report = RunReport::assemble(
        &run_plan,
        &assembled,
        &lost,
        Duration::from_secs_f64(wall.max(0.0)),
        cancelled,
    );
    report.outputs = tables
        .into_iter()
        .map(|(id, table)| (id, table.inner.clone()))
        .collect();
    Ok(Run { report, aliases })
}
