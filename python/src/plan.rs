//! A compiled plan and a finished run, as Python objects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use petgraph::Direction;
use petgraph::graph::NodeIndex;
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quiver::cache::{Forecast, Options, Store};
use quiver::diag::did_you_mean;
use quiver::exec::{Executor, ProgressMode, RunOptions, RunReport};
use quiver::plan::{Plan as QPlan, Reuse, Source};
use quiver::render::{self, Format};

use crate::table::Table;

/// What a run from Python executes (see [`Plan::prepare`]).
pub(crate) struct Prepared {
    pub plan: QPlan,
    /// The nodes whose tables it hands back.
    pub keep: Vec<NodeIndex>,
    /// Names asked for that are aliases, with their node's id.
    pub aliases: Vec<(String, String)>,
}

/// A compiled pipeline: render it, look at its nodes, run it.
#[pyclass(module = "quiver._native", frozen)]
pub struct Plan {
    pub(crate) inner: Arc<QPlan>,
    /// Node ids to indexes, made the first time a part of the plan runs
    /// (a Ray worker runs many parts of one plan).
    pub(crate) ids: std::sync::OnceLock<crate::parts::Ids>,
}

impl Plan {
    pub fn new(plan: QPlan) -> Self {
        Self {
            inner: Arc::new(plan),
            ids: std::sync::OnceLock::new(),
        }
    }

    /// The nodes `names` stand for: a node's name or alias, or a fan-out
    /// or partitioned stage's name (`features` for every `features[…]` and
    /// `features@…`).
    fn resolve(&self, names: &[String]) -> PyResult<Vec<NodeIndex>> {
        let plan = &self.inner;
        let mut out = Vec::new();
        for name in names {
            let found: Vec<NodeIndex> = if let Some(node) = plan.find(name) {
                vec![node]
            } else {
                let (bracket, at) = (format!("{name}["), format!("{name}@"));
                plan.nodes()
                    .filter(|(_, n)| {
                        n.names()
                            .any(|x| x.starts_with(&bracket) || x.starts_with(&at))
                    })
                    .map(|(i, _)| i)
                    .collect()
            };
            if found.is_empty() {
                return Err(PyKeyError::new_err(format!(
                    "no node '{name}' in pipeline '{}'{}",
                    plan.name,
                    did_you_mean(name, plan.nodes().map(|(_, n)| n.id.as_str()))
                )));
            }
            out.extend(found);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
    /// The plan a run from Python executes (as `quiver run --no-cache`:
    /// the union of a partitioned node's days runs only when asked for),
    /// the nodes whose tables it keeps (`outputs`, by default every node
    /// nothing else reads), and the names asked for that are aliases, with
    /// their node's id.
    pub(crate) fn prepare(&self, outputs: Option<&[String]>) -> PyResult<Prepared> {
        let wanted = match outputs {
            Some(names) => self.resolve(names)?,
            None => Vec::new(),
        };
        // A node asked for under an alias is handed back under it too.
        let aliases: Vec<(String, String)> = outputs
            .into_iter()
            .flatten()
            .filter_map(|name| {
                let id = &self.inner.graph[self.inner.find(name)?].id;
                (id != name).then(|| (name.clone(), id.clone()))
            })
            .collect();
        let plan = quiver::cache::uncached_keeping(&self.inner, &wanted);
        let keep = match outputs {
            Some(_) => wanted,
            None => plan
                .nodes()
                .filter(|&(i, n)| {
                    n.reuse != Reuse::AsDays
                        && plan
                            .graph
                            .neighbors_directed(i, Direction::Outgoing)
                            .next()
                            .is_none()
                })
                .map(|(i, _)| i)
                .collect(),
        };
        Ok(Prepared {
            plan,
            keep,
            aliases,
        })
    }
}

impl Plan {
    /// What the cache in `dir` (or the plan's own) has of the plan, with
    /// the nodes in `keep` loaded or run for the caller; its warnings
    /// (entries found corrupt) raised as Python warnings.
    pub(crate) fn forecast(
        &self,
        py: Python<'_>,
        keep: &[NodeIndex],
        dir: Option<&std::path::Path>,
    ) -> PyResult<(Store, Forecast)> {
        let store = Store::new(quiver::cache::dir_for(&self.inner, dir));
        let options = Options {
            wanted: keep.iter().map(|i| i.index()).collect(),
            ..Options::default()
        };
        let forecast = Forecast::new(&self.inner, &store, &options);
        for warning in &forecast.warnings {
            let message = std::ffi::CString::new(warning.replace('\0', " ")).unwrap_or_default();
            let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
            PyErr::warn(py, category.as_any(), &message, 1)?;
        }
        Ok((store, forecast))
    }
}

#[pymethods]
impl Plan {
    /// The pipeline's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.name
    }

    /// The parameter values the plan was compiled with, as JSON text.
    #[getter]
    fn params_json(&self) -> String {
        serde_json::to_string(&self.inner.params).unwrap_or_default()
    }

    /// The plan's nodes in dependency order, each a dict: id, aliases, op,
    /// params (JSON text), inputs (input name → producer ids).
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let graph = &self.inner.graph;
        let list = PyList::empty(py);
        for (_, node) in self.inner.nodes() {
            let item = PyDict::new(py);
            item.set_item("id", &node.id)?;
            item.set_item("aliases", &node.aliases)?;
            item.set_item("op", &node.op)?;
            item.set_item("params", &*node.params)?;
            let inputs = PyDict::new(py);
            for input in &node.inputs {
                let producers: Vec<&str> = match &input.source {
                    Source::One(n) => vec![graph[*n].id.as_str()],
                    Source::All { members, .. } => {
                        members.iter().map(|(_, n)| graph[*n].id.as_str()).collect()
                    }
                };
                inputs.set_item(&input.name, producers)?;
            }
            item.set_item("inputs", inputs)?;
            list.append(item)?;
        }
        Ok(list)
    }

    /// What compiling did: nodes declared, unique after merging, and the
    /// declared nodes merged away per operator.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = &self.inner.stats;
        let out = PyDict::new(py);
        out.set_item("declared", stats.declared)?;
        out.set_item("unique", stats.unique)?;
        out.set_item("merged", stats.merged.clone())?;
        Ok(out)
    }

    /// The plan as text, dot, mermaid, json, svg or html.
    #[pyo3(signature = (format = "text"))]
    fn render(&self, py: Python<'_>, format: &str) -> PyResult<String> {
        let format = match format {
            "text" => Format::Text,
            "dot" => Format::Dot,
            "mermaid" => Format::Mermaid,
            "json" => Format::Json,
            "svg" => Format::Svg,
            "html" => Format::Html,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown format '{other}': expected text, dot, mermaid, json, svg or html"
                )));
            }
        };
        let plan = self.inner.clone();
        Ok(py.detach(move || render::render(&plan, format)))
    }

    /// Runs the plan with the GIL released and returns the run.
    /// `outputs`: the nodes whose tables to keep (names as in `resolve`);
    /// by default every node nothing else reads. With `cache` (the
    /// default) the run goes through the cache as `quiver run` does: what
    /// is cached and unchanged is loaded or left, what runs is stored, in
    /// `cache_dir` (default: the pipeline's `cache: {dir}`, else
    /// `.quiver/cache`). `progress`: "bars", "lines" or "quiet"; by
    /// default bars on a terminal and quiet otherwise. Ctrl-C
    /// (KeyboardInterrupt) cancels the run as in the command.
    /// `on_progress(done, total)` is called every 100 ms and at the end
    /// with the nodes finished, for progress drawn by Python (a notebook).
    #[pyo3(signature = (max_workers = None, outputs = None, sequential = false, progress = None, on_progress = None, cache = true, cache_dir = None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        max_workers: Option<usize>,
        outputs: Option<Vec<String>>,
        sequential: bool,
        progress: Option<&str>,
        on_progress: Option<Py<PyAny>>,
        cache: bool,
        cache_dir: Option<std::path::PathBuf>,
    ) -> PyResult<Run> {
        let Prepared {
            mut plan,
            keep,
            aliases,
        } = self.prepare(outputs.as_deref())?;
        let cached = if cache {
            let (store, mut forecast) = self.forecast(py, &keep, cache_dir.as_deref())?;
            plan = quiver::cache::run_plan(&self.inner, &forecast, &store);
            forecast.forget_parts();
            Some((store, forecast))
        } else {
            None
        };
        let progress = match progress {
            None => {
                use std::io::IsTerminal;
                if std::io::stderr().is_terminal() {
                    ProgressMode::Bars
                } else {
                    ProgressMode::Quiet
                }
            }
            Some("bars") => ProgressMode::Bars,
            Some("lines") => ProgressMode::Lines,
            Some("quiet") => ProgressMode::Quiet,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "unknown progress '{other}': expected bars, lines or quiet"
                )));
            }
        };
        let mut options = RunOptions {
            sequential,
            progress,
            keep,
            ..RunOptions::default()
        };
        if let Some(n) = max_workers {
            if n == 0 {
                return Err(PyValueError::new_err("max_workers must be at least 1"));
            }
            options.max_workers = n;
        }
        let watch = on_progress.map(|callback| {
            let count = Arc::new(AtomicUsize::new(0));
            options.finished = Some(count.clone());
            Watch {
                callback,
                count,
                total: plan.graph.node_count(),
            }
        });
        if let Some((store, _)) = &cached {
            quiver::cache::bound_writes(store, &mut options);
        }
        let compiled = self.inner.clone();
        let report = py.detach(move || {
            let report = execute(&plan, options, watch);
            // Sealed whether the run succeeded or not: what was computed
            // before a failure or Ctrl-C is kept.
            if let Some((store, forecast)) = &cached {
                quiver::cache::record(&compiled, forecast, store);
            }
            report
        })?;
        Ok(Run { report, aliases })
    }

    fn __repr__(&self) -> String {
        format!(
            "quiver.Plan('{}': {} nodes, {} declared)",
            self.inner.name, self.inner.stats.unique, self.inner.stats.declared
        )
    }
}

/// A Python callback told how many nodes have finished.
pub(crate) struct Watch {
    callback: Py<PyAny>,
    count: Arc<AtomicUsize>,
    total: usize,
}

impl Watch {
    fn tell(&self, py: Python<'_>) -> PyResult<()> {
        let done = self.count.load(Ordering::Relaxed);
        self.callback.call1(py, (done, self.total)).map(drop)
    }
}

/// Runs `plan` on runtimes of its own; a pending KeyboardInterrupt (checked
/// every 100 ms) cancels it, as does an exception in `watch`'s callback.
pub(crate) fn execute(
    plan: &QPlan,
    options: RunOptions,
    watch: Option<Watch>,
) -> PyResult<RunReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the async runtime: {e}")))?;
    let executor = Executor::new(options)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the compute runtime: {e}")))?;
    let failed = std::sync::Mutex::new(None);
    let interrupted = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let told = Python::attach(|py| {
                py.check_signals()?;
                watch.as_ref().map_or(Ok(()), |w| w.tell(py))
            });
            if let Err(e) = told {
                *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                return;
            }
        }
    };
    let report = runtime.block_on(executor.run_until(plan, interrupted));
    drop(executor);
    if let Some(watch) = &watch {
        Python::attach(|py| watch.tell(py))?;
    }
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = failed.filter(|e| {
        !Python::attach(|py| e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py))
    }) {
        return Err(e);
    }
    if report.totals.cancelled {
        return Err(pyo3::exceptions::PyKeyboardInterrupt::new_err(format!(
            "the run was cancelled\n{report}"
        )));
    }
    Ok(report)
}

/// A finished run: its report and the tables it kept.
#[pyclass(module = "quiver._native", frozen)]
pub struct Run {
    pub(crate) report: RunReport,
    /// Names asked for that are aliases, with the id of their node.
    pub(crate) aliases: Vec<(String, String)>,
}

#[pymethods]
impl Run {
    /// Whether every node succeeded (or was skipped by its policy).
    #[getter]
    fn succeeded(&self) -> bool {
        self.report.succeeded()
    }

    /// The kept outputs, node id → table (and alias → table for the
    /// aliases asked for).
    #[getter]
    fn tables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (id, table) in &self.report.outputs {
            out.set_item(id, Table::new(table.clone()))?;
        }
        for (alias, id) in &self.aliases {
            if let Some((_, table)) = self.report.outputs.iter().find(|(i, _)| i == id) {
                out.set_item(alias, Table::new(table.clone()))?;
            }
        }
        Ok(out)
    }

    /// The run report as `quiver run` saves it (JSON text).
    #[getter]
    fn report_json(&self) -> String {
        serde_json::to_string(&self.report).unwrap_or_default()
    }

    /// The summary `quiver run` prints.
    #[getter]
    fn summary(&self) -> String {
        self.report.to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "quiver.Run('{}': {} in {:.2}s, {} tables)",
            self.report.pipeline,
            if self.report.succeeded() {
                "succeeded"
            } else {
                "failed"
            },
            self.report.totals.wall.as_secs_f64(),
            self.report.outputs.len(),
        )
    }
}
