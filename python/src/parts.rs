//! What `quiver.ray` needs from the engine: a plan cut into parts, one
//! part run in a worker with the tables it reads handed in, and the parts'
//! reports put back together into one run.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use petgraph::graph::NodeIndex;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quiver::cache::steps::{self, Step};
use quiver::cache::{Forecast, Store};
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

/// A Ray run through the cache, from cutting its plan to recording it:
/// kept by the driver.
#[pyclass(module = "quiver._native", frozen)]
pub struct CachedRun {
    store: Store,
    forecast: Forecast,
    /// The plan the run executes (what is loaded, stored or left).
    plan: QPlan,
}

/// The plan cut into parts (see `quiver::plan::parts`), as a dict:
/// `parts` (each `key`, `nodes`, `reads` and `pools`: node ids, and slots
/// per resource), `outputs` (the ids whose tables the run hands back, as
/// `Plan.run` keeps them), `aliases` (name asked for → id), `pools` (per
/// resource: `concurrency` or None, whether it has a `rate` and whether
/// the rate is `shared` in Redis) and `keep_going`. With `cache`, the plan
/// is the one a run through the cache in `cache_dir` executes: each part
/// also has `steps` (JSON: node id → what its worker does with the cache),
/// and the dict `cache_dir` (absolute) and `cache` (for `assemble`).
#[pyfunction]
#[pyo3(signature = (plan, outputs = None, cache = false, cache_dir = None))]
pub fn plan_parts<'py>(
    py: Python<'py>,
    plan: &Plan,
    outputs: Option<Vec<String>>,
    cache: bool,
    cache_dir: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let Prepared {
        plan: mut run_plan,
        keep,
        aliases,
    } = plan.prepare(outputs.as_deref())?;
    let mut cached = None;
    if cache {
        let (store, mut forecast) = plan.forecast(py, &keep, cache_dir.as_deref())?;
        let steps = steps::steps(&plan.inner, &forecast);
        run_plan = steps::apply(&plan.inner, |i| steps.get(i).cloned(), &store);
        forecast.forget_parts();
        cached = Some((store, forecast, steps));
    }
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
        if let Some((_, _, steps)) = &cached {
            let mine: BTreeMap<&str, &Step> = part
                .nodes
                .iter()
                .map(|&i| (graph[i].id.as_str(), &steps[i.index()]))
                .filter(|(_, step)| **step != Step::Run)
                .collect();
            let text = serde_json::to_string(&mine)
                .map_err(|e| PyValueError::new_err(format!("the steps do not write: {e}")))?;
            item.set_item("steps", text)?;
        }
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
    if let Some((store, forecast, _)) = cached {
        let dir = std::path::absolute(store.dir()).unwrap_or_else(|_| store.dir().to_path_buf());
        out.set_item("cache_dir", dir.to_string_lossy().into_owned())?;
        let handle = CachedRun {
            store,
            forecast,
            plan: run_plan,
        };
        out.set_item("cache", Py::new(py, handle)?)?;
    }
    Ok(out)
}

/// Runs the part made of `nodes` alone, with the GIL released: `given`
/// are the tables it reads from other parts, `nothing` the inputs whose
/// node produced nothing (id → why), `keep` the nodes whose tables to hand
/// back, `pools` per resource the slots the part may use and how many
/// parts share the resource's rate. `steps` (from `plan_parts`) say which
/// nodes load their output from the cache in `cache_dir` and which store
/// theirs there; the packs this process writes are sealed (and recorded
/// in the index) before it returns.
#[pyfunction]
#[pyo3(signature = (plan, nodes, given, nothing, keep, pools, max_workers = 1, steps = None, cache_dir = None))]
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
    steps: Option<String>,
    cache_dir: Option<std::path::PathBuf>,
) -> PyResult<Run> {
    let whole = &plan.inner;
    let ids = plan.ids.get_or_init(|| Ids::of(whole));
    let steps: BTreeMap<String, Step> = match &steps {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| PyValueError::new_err(format!("the part's steps do not read: {e}")))?,
        None => BTreeMap::new(),
    };
    let store = match (&cache_dir, steps.is_empty()) {
        (_, true) => None,
        // A store of the task's own: nothing one task's cache did (a
        // write that failed and turned caching off) carries over to the
        // next task of the same worker.
        (Some(dir), false) => Some(Store::new(dir)),
        (None, false) => return Err(PyValueError::new_err("steps need the cache_dir they use")),
    };
    let mut handed = Vec::new();
    let mut run = Vec::with_capacity(nodes.len());
    for id in &nodes {
        let i = ids.get(whole, id)?;
        match (steps.get(id), &store) {
            // Read from the cache: handed in, not run.
            (Some(Step::Load(key)), Some(store)) => {
                handed.push((i, Given::Loaded(steps::loader(store, *key))));
            }
            _ => run.push(i),
        }
    }
    for (id, table) in &given {
        handed.push((ids.get(whole, id)?, Given::Table(table.inner.clone())));
    }
    for (id, why) in nothing {
        handed.push((ids.get(whole, &id)?, Given::Nothing(why)));
    }
    let mut sliced = slice(whole, &run, handed, &pools).map_err(PyValueError::new_err)?;
    if let Some(store) = &store {
        let at: Vec<Option<&Step>> = sliced
            .nodes()
            .map(|(_, n)| steps.get(&n.id).filter(|s| !matches!(s, Step::Load(_))))
            .collect();
        sliced = steps::apply(&sliced, |i| at[i].cloned(), store);
    }
    let ids = Ids::of(&sliced);
    let keep = keep
        .iter()
        .map(|id| ids.get(&sliced, id))
        .collect::<PyResult<Vec<_>>>()?;
    let mut options = RunOptions {
        max_workers: max_workers.max(1),
        progress: ProgressMode::Quiet,
        keep,
        ..RunOptions::default()
    };
    if let Some(store) = &store {
        quiver::cache::bound_writes(store, &mut options);
    }
    let report = py.detach(move || {
        let report = execute(&sliced, options, None);
        if let Some(store) = &store {
            store.finish();
        }
        report
    })?;
    Ok(Run {
        report,
        aliases: Vec::new(),
    })
}

/// One run's report from its parts' (`pieces`: the ids a part ran, its
/// report JSON, and when it started, in seconds from the start of the
/// run). `lost` are nodes whose part never reported (id → why), `tables`
/// the outputs handed back (id → table), `outputs` and `aliases` as
/// `plan_parts` was given them. With `cache` (from `plan_parts`), the run
/// is recorded in the cache, and the packs its workers wrote for a day
/// merged into one.
#[pyfunction]
#[pyo3(signature = (plan, outputs, pieces, lost, tables, wall, cancelled, cache = None))]
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    py: Python<'_>,
    plan: &Plan,
    outputs: Option<Vec<String>>,
    pieces: Vec<(Vec<String>, String, f64)>,
    lost: HashMap<String, String>,
    tables: Vec<(String, PyRef<'_, Table>)>,
    wall: f64,
    cancelled: bool,
    cache: Option<PyRef<'_, CachedRun>>,
) -> PyResult<Run> {
    let Prepared {
        plan: uncached,
        aliases,
        ..
    } = plan.prepare(outputs.as_deref())?;
    let run_plan: &QPlan = match &cache {
        Some(cached) => {
            let (whole, cached): (&QPlan, &CachedRun) = (&plan.inner, cached);
            py.detach(|| quiver::cache::record(whole, &cached.forecast, &cached.store));
            &cached.plan
        }
        None => &uncached,
    };
    let ids = Ids::of(run_plan);
    let mut assembled = Vec::with_capacity(pieces.len());
    for (nodes, json, offset) in pieces {
        let report: RunReport = serde_json::from_str(&json)
            .map_err(|e| PyValueError::new_err(format!("a part's report does not read: {e}")))?;
        assembled.push(Piece {
            nodes: nodes
                .iter()
                .map(|id| ids.get(run_plan, id))
                .collect::<PyResult<_>>()?,
            report,
            offset: Duration::from_secs_f64(offset.max(0.0)),
        });
    }
    let lost = lost
        .into_iter()
        .map(|(id, why)| Ok((ids.get(run_plan, &id)?, why)))
        .collect::<PyResult<Vec<_>>>()?;
    let mut report = RunReport::assemble(
        run_plan,
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
