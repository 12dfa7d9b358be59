//! A run a window of days at a time, so that what it holds follows the
//! window and not the range (`docs/design/stages.md`, phase 3).
//!
//! Each window is planned on its own ([`compile::window`]), forecast
//! against the cache and run by the executor like a whole plan; the
//! outputs later days read (a lookback's history, the day before,
//! reference data) are kept from the window that made them and handed to
//! the windows that read them, then dropped. Every node has the key it
//! has in a run of every day at once, so the cache is shared between the
//! two, and the outputs are the same.
//!
//! Windows run one after another: a window starts when the one before has
//! finished. With thousands of tasks a window, the wait at the end of a
//! window is a small part of it. The next window is planned while one is
//! forecast and run: its plan needs only which nodes this one hands over,
//! and their outputs are put in once this one has run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use petgraph::graph::NodeIndex;
use quiver_operators::{Registry, Table};

use crate::cache::{self, Forecast, Key, NodeForecast, Store};
use crate::compile::window::{WindowPlan, Windowed};
use crate::diag::Diagnostics;
use crate::exec::resources::Resource;
use crate::exec::{Executor, NodeReport, NodeStatus, RunReport};
use crate::plan::parts::{Given, handed};
use crate::plan::{PlanNode, Reuse};

mod report;
use report::{Assembly, Finish};

/// Tasks a window holds when the days are not given: enough that the
/// wait at its end (a day's fan-ins, the last to run) is small next to
/// the window, few enough that its plan and bookkeeping stay in the
/// hundreds of MiB. At 2,000 symbols of `vn30.yaml`, 6 days: as fast as
/// one plan of every day (`cargo bench --bench vn30 -- windows`).
pub const WINDOW_TASKS: usize = 50_000;

/// Days a window takes for a pipeline of `tasks` tasks over `days` days.
pub fn days_per_window(tasks: usize, days: usize) -> u32 {
    let per_day = tasks.div_ceil(days.max(1)).max(1);
    (WINDOW_TASKS / per_day).clamp(1, u32::MAX as usize) as u32
}

/// How to run a pipeline in windows.
pub struct WindowedRun {
    pub windowed: Arc<Windowed>,
    pub registry: &'static Registry,
    /// Days planned and run together.
    pub days: u32,
    /// The cache; `None` runs every node and stores nothing.
    pub store: Option<Store>,
    /// Every node runs, whatever the cache holds.
    pub force_all: bool,
    /// Executions the full plan avoids by merging, for the report.
    pub merged_avoided: usize,
    /// Print a line as each window starts.
    pub announce: bool,
    /// Where the report is kept while the run goes, and written at the end.
    pub report_file: Option<std::path::PathBuf>,
}

/// An output a later window reads.
struct Kept {
    /// The node, handing over its output.
    node: PlanNode,
    forecast: Option<NodeForecast>,
    /// Where it finished, and the chain that led to it.
    finish: Finish,
    /// The last day that reads it.
    until: u32,
}

/// What a windowed run did.
pub struct Outcome {
    /// The run's totals and its notable nodes (failed, skipped, not run,
    /// the slowest); the report file has every node.
    pub report: RunReport,
    /// What ran and what was cached, as [`cache::ran`] says it.
    pub ran: String,
    pub windows: usize,
    /// Cache warnings (corrupt entries), as the forecast found them.
    pub warnings: Vec<String>,
}

impl WindowedRun {
    /// Runs every window in order, or until `cancel` completes. Must be
    /// called within a tokio runtime, as [`Executor::run_until`].
    pub async fn run_until(
        &self,
        executor: &mut Executor,
        cancel: impl Future<Output = ()>,
    ) -> Result<Outcome, Diagnostics> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let watch = async move {
            cancel.await;
            let _ = stop.send(true);
            std::future::pending::<()>().await;
        };
        let work = self.windows(executor, stopped);
        tokio::select! {
            outcome = work => outcome,
            () = watch => unreachable!("pending"),
        }
    }

    async fn windows(
        &self,
        executor: &mut Executor,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Outcome, Diagnostics> {
        let started = Instant::now();
        let days = self.windowed.days().len() as u32;
        let size = self.days.max(1);
        let count = days.div_ceil(size).max(1) as usize;
        let mut kept: HashMap<String, Arc<Kept>> = HashMap::new();
        let mut all = Assembly::new(self.report_file.as_deref()).map_err(|e| self.unwritable(e))?;
        let mut keys: Vec<Key> = Vec::new();
        let mut run_days: BTreeSet<String> = BTreeSet::new();
        let mut warnings = Vec::new();
        let mut keep_going = true;
        let mut ran = 0;
        let mut a = 0;
        // The next window's plan, made while this one runs.
        let mut next: Option<tokio::task::JoinHandle<Result<WindowPlan, Diagnostics>>> = None;
        while a < days.max(1) && keep_going {
            let b = window_end(a, size, days);
            let mut window = match next.take() {
                Some(planning) => match planning.await {
                    Ok(window) => window?,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                },
                None => self.windowed.plan(self.registry, a, b, &|name| {
                    kept.get(name).map(|k| loading(&k.node))
                })?,
            };
            // What the windows before hand over, now that they have run.
            let graph = Arc::get_mut(&mut window.plan.graph).expect("a window's plan, unshared");
            for &i in &window.handed {
                if let Some(k) = kept.get(&graph[i].id) {
                    graph[i] = loading(&k.node);
                }
            }
            let plan = &window.plan;
            ran += 1;
            if self.announce {
                let dates = self.windowed.days();
                let (first, last) = (
                    dates.get(a as usize).map_or("", String::as_str),
                    dates.get(b as usize).map_or("", String::as_str),
                );
                eprintln!(
                    "days {first} to {last} ({ran} of {count}): {} nodes",
                    plan.graph.node_count() - window.handed.len()
                );
            }
            let given_here: HashSet<NodeIndex> = window.handed.iter().copied().collect();
            // What later days read: kept from this window.
            let later: Vec<(NodeIndex, u32)> = plan
                .nodes()
                .filter(|(i, _)| !given_here.contains(i))
                .filter_map(|(i, node)| {
                    let until = node
                        .names()
                        .filter_map(|n| self.windowed.kept_until(n))
                        .max()?;
                    (until > b).then_some((i, until))
                })
                .collect();
            if b + 1 < days {
                next =
                    Some(self.plan_next(b + 1, window_end(b + 1, size, days), &kept, plan, &later));
            }
            let (run_plan, forecast) = match &self.store {
                Some(store) => {
                    let options = cache::Options {
                        force_all: self.force_all,
                        given: window
                            .handed
                            .iter()
                            .filter_map(|&i| {
                                let k = kept.get(&plan.graph[i].id)?;
                                Some((i.index(), k.forecast.clone()?))
                            })
                            .collect(),
                        ..cache::Options::default()
                    };
                    let forecast = Forecast::new(plan, store, &options);
                    warnings.extend(forecast.warnings.iter().cloned());
                    (cache::run_plan(plan, &forecast, store), Some(forecast))
                }
                None => (
                    cache::uncached_keeping(
                        plan,
                        &later.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                    ),
                    None,
                ),
            };
            {
                let options = executor.options_mut();
                // One set of pools for every window: a rate limit, a
                // concurrency and a breaker hold across windows as they
                // do across days.
                options.pools.get_or_insert_with(|| {
                    plan.resources
                        .iter()
                        .map(|(name, policy)| Arc::new(Resource::new(name, policy)))
                        .collect()
                });
                options.keep = later.iter().map(|(i, _)| *i).collect();
                // The report file is the run's, written by `all`.
                options.report_file = None;
            }
            let offset = started.elapsed();
            let mut stopped = stopped.clone();
            let report = executor
                .run_until(&run_plan, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
            // Hand over what later days read (the cache's writer goes on
            // in the background: a later window is handed what it reads
            // of this one, it does not look it up).
            let outputs: HashMap<&str, &Arc<Table>> = report
                .outputs
                .iter()
                .map(|(id, t)| (id.as_str(), t))
                .collect();
            let mut handing: Vec<(NodeIndex, u32, Given)> = Vec::with_capacity(later.len());
            for &(i, until) in &later {
                let node = &plan.graph[i];
                let left_in_cache = forecast.as_ref().and_then(|f| {
                    let f = &f.nodes[i.index()];
                    let stored = f.state == cache::State::Cached;
                    (f.action == cache::Action::Keep && stored).then_some(f.key)
                });
                let given = match (outputs.get(node.id.as_str()), left_in_cache, &self.store) {
                    (Some(&table), _, _) => Given::Table(table.clone()),
                    // Cached, and nothing here read it: loaded if a later
                    // window runs something that does.
                    (None, Some(key), Some(store)) => {
                        Given::Loaded(cache::steps::loader(store, key))
                    }
                    _ => Given::Nothing(nothing(report.node(&node.id))),
                };
                handing.push((i, until, given));
            }
            drop(outputs);
            if let Some(f) = &forecast {
                for (i, _) in plan.nodes().filter(|(i, _)| !given_here.contains(i)) {
                    keys.push(f.nodes[i.index()].key);
                }
            }
            for (_, node) in plan.nodes() {
                if let Some(day) = cache::forecast::partition_day(node) {
                    run_days.insert(day.to_string());
                }
            }
            let (succeeded, cancelled) = (report.succeeded(), report.totals.cancelled);
            let finished_before: HashMap<NodeIndex, Finish> = window
                .handed
                .iter()
                .filter_map(|&i| Some((i, kept.get(&plan.graph[i].id)?.finish.clone())))
                .collect();
            let ends: Vec<NodeIndex> = handing.iter().map(|(i, _, _)| *i).collect();
            let finishes = all
                .add(
                    report::Window {
                        plan,
                        run_plan: &run_plan,
                        report,
                        handed: &finished_before,
                        offset,
                    },
                    &ends,
                )
                .map_err(|e| self.unwritable(e))?;
            all.progress(
                started.elapsed(),
                self.merged_avoided,
                self.report_file.as_deref(),
            );
            for ((i, until, given), finish) in handing.into_iter().zip(finishes) {
                let node = &plan.graph[i];
                let forecast = forecast.as_ref().map(|f| {
                    let mut f = f.nodes[i.index()].clone();
                    f.parts = Default::default();
                    f
                });
                let entry = Arc::new(Kept {
                    node: handed(node, given),
                    forecast,
                    finish,
                    until,
                });
                for name in node.names() {
                    kept.insert(name.to_string(), entry.clone());
                }
            }
            kept.retain(|_, k| k.until > b);
            keep_going = !cancelled && (succeeded || plan.keep_going);
            a = b + 1;
        }
        if let Some(store) = &self.store {
            store.finish();
            let name = self.windowed.name();
            let days: Vec<&str> = run_days.iter().map(String::as_str).collect();
            cache::record_run(store, name, self.windowed.cache_max_size(), &keys, days);
        }
        let (report, ran_line) = all.finish(
            started.elapsed(),
            self.merged_avoided,
            self.report_file.as_deref(),
        );
        Ok(Outcome {
            report,
            ran: ran_line,
            windows: ran,
            warnings,
        })
    }
}

impl WindowedRun {
    /// Plans the window of days `a..=b` in the background. The nodes it is
    /// handed (kept from earlier windows, or `later` of this window's
    /// `plan`) stand in with the identity they have; their outputs are put
    /// in when it comes to run.
    fn plan_next(
        &self,
        a: u32,
        b: u32,
        kept: &HashMap<String, Arc<Kept>>,
        plan: &crate::plan::Plan,
        later: &[(NodeIndex, u32)],
    ) -> tokio::task::JoinHandle<Result<WindowPlan, Diagnostics>> {
        let mut handing: HashMap<String, PlanNode> = HashMap::new();
        for (name, k) in kept.iter().filter(|(_, k)| k.until >= a) {
            handing.insert(name.clone(), loading(&k.node));
        }
        for &(i, _) in later {
            let node = &plan.graph[i];
            for name in node.names() {
                handing.insert(name.to_string(), loading(node));
            }
        }
        let (windowed, registry) = (self.windowed.clone(), self.registry);
        tokio::task::spawn_blocking(move || {
            windowed.plan(registry, a, b, &|name| handing.get(name).map(loading))
        })
    }

    /// The error for a report that cannot be written.
    fn unwritable(&self, e: std::io::Error) -> Diagnostics {
        let file = self
            .report_file
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        Diagnostics(vec![crate::diag::Diagnostic::new(
            &Arc::from(file),
            None,
            "",
            format!("cannot write the run report beside {}: {e}", file.display()),
        )])
    }
}

/// The last day of the window of `size` days from day `a`, of `days`.
fn window_end(a: u32, size: u32, days: u32) -> u32 {
    (a + size - 1).min(days.saturating_sub(1))
}

/// `node` as a window that reads its output has it: no inputs, loaded.
fn loading(node: &PlanNode) -> PlanNode {
    node.remade(
        node.operator.clone(),
        Reuse::Load,
        node.workload,
        Vec::new(),
        node.policy.clone(),
    )
}

/// Why a node later days read has no output to hand over.
fn nothing(report: Option<&NodeReport>) -> String {
    match report {
        Some(r) => match (&r.error, r.status) {
            (Some(e), _) => e.message.clone(),
            (None, NodeStatus::Skipped) => "skipped".into(),
            (None, status) => format!("{status:?}").to_lowercase(),
        },
        None => "not run".into(),
    }
}
