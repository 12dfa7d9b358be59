//! Plans for a window of days: the tasks of a run over many days, a few
//! days at a time, so that what a run holds follows the window and not
//! the range (see `docs/design/stages.md`, phase 3).
//!
//! [`Windowed`] keeps the pipeline as written (the declared instances,
//! each partitioned one with its days) and makes the plan of days
//! `a..=b` on demand: the day partitions of those days, built and merged
//! as the full compile builds them, so every node has the identity it has
//! in the full plan. What they read of earlier days (a lookback, the day
//! before, reference data) is *handed over*: a node with no inputs that a
//! caller makes from what the earlier window produced, under its name.
//! Windows are run in order, so everything a window reads of the past was
//! made by a window before it; [`Windowed::kept_until`] says how long
//! each output is read, so the caller keeps only that.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use indexmap::IndexMap;
use quiver_operators::{DateRange, Registry};

use super::expand::{Decl, Target};
use super::partition::{self, CONCAT};
use super::{Front, Options, front, redacted};
use crate::diag::Diagnostics;
use crate::plan::{NodePolicy, Plan, PlanNode, ResourcePolicy, Secrets};
use crate::spec::{Value, Yaml};

/// Read to the end of the run.
pub const TO_THE_END: u32 = u32::MAX;

/// A pipeline ready to be planned a window of days at a time.
pub struct Windowed {
    name: String,
    file: PathBuf,
    params: IndexMap<String, serde_json::Value>,
    resources: IndexMap<String, ResourcePolicy>,
    secrets: Secrets,
    cache_dir: Option<PathBuf>,
    force_all: bool,
    cache_max_size: Option<u64>,
    keep_going: bool,
    merge: bool,
    decls: Vec<Decl>,
    /// Per declared node split by date: its days, as indexes into `days`.
    dates: Vec<Option<Vec<u32>>>,
    /// Per partitioned source: the parameters that hold its range.
    ranges: Vec<Option<DateRange>>,
    /// Every day a node is split into, in order.
    days: Vec<String>,
    /// Per declared node: how many of its days after a day still read that
    /// day (a lookback of 5: 5; `previous:`: 1), or [`TO_THE_END`].
    reach: Vec<u32>,
    /// Per declared node: not partitioned, and reads a partitioned node
    /// whole: it runs once every day has.
    after: Vec<bool>,
    by_name: HashMap<String, usize>,
}

/// The plan of one window, and which of its nodes are handed over.
pub struct WindowPlan {
    pub plan: Plan,
    /// The nodes that stand for outputs of earlier windows.
    pub handed: Vec<petgraph::graph::NodeIndex>,
}

impl Windowed {
    /// [`Windowed::new`] for the pipeline file at `path`.
    pub fn from_file(
        path: &Path,
        overrides: &[super::Override],
        registry: &Registry,
        options: Options,
    ) -> Result<Option<Windowed>, Diagnostics> {
        match crate::spec::yaml::read_file(path) {
            Ok(text) => Self::new(path, &text, overrides, registry, options),
            Err(e) => Err(super::unreadable(path, e)),
        }
    }

    /// The cache folder the pipeline names (`cache: {dir: …}`), if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// The pipeline asks for every node to run (`cache: {force: true}`).
    pub fn force_all(&self) -> bool {
        self.force_all
    }

    /// Reads the pipeline; `None` when its shape cannot be run in windows
    /// (a partitioned stage reading something that reads every day of a
    /// partitioned node): such a pipeline runs every day at once. Errors
    /// are the compiler's own.
    pub fn new(
        path: &Path,
        text: &str,
        overrides: &[super::Override],
        registry: &Registry,
        options: Options,
    ) -> Result<Option<Windowed>, Diagnostics> {
        let Front {
            spec,
            params,
            resources,
            secrets,
            decls,
            calendar,
            force_all,
            cache_max_size,
            mut diags,
        } = front(path, text, overrides, registry)?;
        let order = partition::order(&decls);
        let n = decls.len();
        let mut named: Vec<Option<Vec<String>>> = vec![None; n];
        let mut ranges: Vec<Option<DateRange>> = vec![None; n];
        for &d in &order {
            let decl = &decls[d];
            if !decl.partition || decl.unresolved {
                continue;
            }
            let Some(calendar) = &calendar else { break };
            let split = if let Err(e) = partition::check_sink(decl, registry) {
                Err(e)
            } else if decl.inputs.is_empty() {
                partition::source_dates(decl, registry, calendar).map(|(range, dates)| {
                    ranges[d] = Some(range);
                    dates
                })
            } else {
                stage_dates(decl, &named)
            };
            match split {
                Ok(dates) => named[d] = Some(dates),
                Err(message) => diags.push(partition::split_error(decl, message)),
            }
        }
        if !diags.is_empty() {
            return Err(redacted(diags, &secrets));
        }
        let mut days: Vec<String> = named.iter().flatten().flatten().cloned().collect();
        days.sort_unstable();
        days.dedup();
        let index = |date: &String| days.binary_search(date).expect("collected above") as u32;
        let dates: Vec<Option<Vec<u32>>> = named
            .iter()
            .map(|d| d.as_ref().map(|dates| dates.iter().map(index).collect()))
            .collect();

        let mut reach = vec![0u32; n];
        let mut after = vec![false; n];
        for &d in &order {
            let decl = &decls[d];
            for input in &decl.inputs {
                for t in input.target.nodes() {
                    if dates[d].is_some() {
                        if dates[t].is_some() {
                            let n = decl.lookback.of(&input.name) as u32;
                            reach[t] = reach[t].max(n);
                        } else {
                            // Reference data: read by every day.
                            reach[t] = TO_THE_END;
                        }
                    } else {
                        reach[t] = TO_THE_END;
                        after[d] |= dates[t].is_some() || after[t];
                    }
                }
            }
            if dates[d].is_some() && decl.lookback.previous.is_some() {
                reach[d] = reach[d].max(1);
            }
        }
        // A day of a partitioned stage that waits for every day cannot run
        // before the last window.
        let windowable = order.iter().all(|&d| {
            dates[d].is_none()
                || !decls[d]
                    .inputs
                    .iter()
                    .flat_map(|i| i.target.nodes())
                    .any(|t| after[t])
        });
        if !windowable {
            return Ok(None);
        }
        let by_name = decls
            .iter()
            .enumerate()
            .map(|(d, decl)| (decl.name.clone(), d))
            .collect();
        Ok(Some(Windowed {
            name: spec.pipeline,
            file: path.to_path_buf(),
            params,
            resources,
            secrets,
            cache_dir: spec.cache.and_then(|c| c.dir).map(PathBuf::from),
            force_all,
            cache_max_size,
            keep_going: spec.keep_going.unwrap_or(false),
            merge: options.merge,
            decls,
            dates,
            ranges,
            days,
            reach,
            after,
            by_name,
        }))
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most disk the cache may take (`cache: {max_size: …}`).
    pub fn cache_max_size(&self) -> Option<u64> {
        self.cache_max_size
    }

    /// Every day some node is split into, in order.
    pub fn days(&self) -> &[String] {
        &self.days
    }

    /// The last day (an index into [`Windowed::days`]) on which a node
    /// named `name` is still read, or [`TO_THE_END`]; `None` when only the
    /// day it belongs to reads it.
    pub fn kept_until(&self, name: &str) -> Option<u32> {
        if let Some(&d) = self.by_name.get(name) {
            // A node that is not split: read whole, or by every day.
            let read = self.reach[d] > 0;
            return read.then_some(TO_THE_END);
        }
        let (decl, date) = name.rsplit_once('@')?;
        let d = *self.by_name.get(decl)?;
        let dates = self.dates[d].as_ref()?;
        let day = self.days.binary_search_by(|x| x.as_str().cmp(date)).ok()? as u32;
        let k = dates.binary_search(&day).ok()?;
        match self.reach[d] {
            0 => None,
            TO_THE_END => Some(TO_THE_END),
            r => Some(dates[(k + r as usize).min(dates.len() - 1)]),
        }
    }

    /// The plan of days `a..=b` (indexes into [`Windowed::days`]): their
    /// day partitions and what they read, the nodes that are not split in
    /// the first window that needs them, and what reads every day in the
    /// last. What they read of days before `a`, and nodes made by an
    /// earlier window, are the nodes `handed` makes for their names.
    pub fn plan(
        &self,
        registry: &Registry,
        a: u32,
        b: u32,
        handed: &dyn Fn(&str) -> Option<PlanNode>,
    ) -> Result<WindowPlan, Diagnostics> {
        let last = b as usize + 1 >= self.days.len();
        let mut build = Build {
            w: self,
            decls: self.decls.clone(),
            parts: HashMap::new(),
            windows: HashMap::new(),
            given: HashSet::new(),
            a,
        };
        let mut roots = Vec::new();
        // In declaration order, as the full compile walks them, so that a
        // merged node is named by the same declaration.
        for d in 0..self.decls.len() {
            if let Some(dates) = &self.dates[d] {
                let from = dates.partition_point(|&day| day < a);
                let to = dates.partition_point(|&day| day <= b);
                for k in from..to {
                    roots.push(build.day(d, k));
                }
                if last && self.reach[d] == TO_THE_END {
                    build.whole(d);
                }
            } else if self.after[d] {
                if last {
                    roots.push(d);
                }
            } else if a == 0 {
                roots.push(d);
            } else {
                // Made by the first window; read here as it left it.
                build.decls[d].inputs.clear();
                build.given.insert(d);
            }
        }
        let Build {
            mut decls, given, ..
        } = build;
        let mut diags = Diagnostics::default();
        let (graph, mut stats) = super::dedupe::Merger::new(&mut decls, registry, &mut diags)
            .merging(self.merge)
            .giving(super::dedupe::Giving {
                decls: &given,
                node: handed,
            })
            .run_from(roots);
        if !diags.is_empty() {
            return Err(redacted(diags, &self.secrets));
        }
        let handed: Vec<_> = graph
            .node_indices()
            .filter(|&i| graph[i].reuse == crate::plan::Reuse::Load)
            .collect();
        stats.declared -= given.len();
        stats.unique -= handed.len();
        Ok(WindowPlan {
            plan: Plan {
                name: self.name.clone(),
                file: self.file.clone(),
                params: self.params.clone(),
                resources: self.resources.clone(),
                graph: Arc::new(graph),
                stats,
                cache_dir: self.cache_dir.clone(),
                force_all: self.force_all,
                cache_max_size: self.cache_max_size,
                keep_going: self.keep_going,
                secrets: self.secrets.clone(),
            },
            handed,
        })
    }
}

/// One window's declared nodes, made as they are needed.
struct Build<'w> {
    w: &'w Windowed,
    decls: Vec<Decl>,
    /// (declared node, position among its days) → its day partition.
    parts: HashMap<(usize, usize), usize>,
    /// (input, position, lookback) → the days a lookback reads, together.
    windows: HashMap<(usize, usize, usize), usize>,
    /// The declared nodes that stand for outputs made before.
    given: HashSet<usize>,
    /// The window's first day.
    a: u32,
}

impl Build<'_> {
    fn date(&self, day: u32) -> &str {
        &self.w.days[day as usize]
    }

    /// Day `k` (of its own days) of the partitioned node `d`: made here
    /// when it is in the window, handed over when it is before.
    fn day(&mut self, d: usize, k: usize) -> usize {
        if let Some(&p) = self.parts.get(&(d, k)) {
            return p;
        }
        let day = self.w.dates[d].as_ref().expect("a partitioned node")[k];
        let date = self.date(day).to_string();
        let part = if day < self.a {
            let mut part = partition::copy(&self.decls[d], &date);
            part.inputs.clear();
            part.params = Yaml::new(Value::Null, part.params.pos);
            part
        } else if let Some(range) = &self.w.ranges[d] {
            partition::source_day(&self.decls[d], range, &date)
        } else {
            let mut part = partition::copy(&self.decls[d], &date);
            let lookback = self.decls[d].lookback.clone();
            for i in 0..part.inputs.len() {
                let n = lookback.of(&part.inputs[i].name);
                let target = match part.inputs[i].target.clone() {
                    Target::One(t) => Target::One(self.input(t, day, n)),
                    Target::All { key, members } => Target::All {
                        key,
                        members: members
                            .into_iter()
                            .map(|(key, t)| (key, self.input(t, day, n)))
                            .collect(),
                    },
                    other => other,
                };
                part.inputs[i].target = target;
            }
            if let Some(name) = &lookback.previous
                && k > 0
            {
                let before = self.day(d, k - 1);
                part.inputs.push(super::expand::DeclInput {
                    name: name.clone(),
                    target: Target::One(before),
                    origin: part.origin.clone(),
                });
            }
            part
        };
        let handed = day < self.a;
        self.decls.push(part);
        let p = self.decls.len() - 1;
        if handed {
            self.given.insert(p);
        }
        self.parts.insert((d, k), p);
        p
    }

    /// What a day partition on `day` reads of input `t` with a lookback of
    /// `n` days: `t` itself when it is not split, else its day, or its
    /// days from `n` before, together.
    fn input(&mut self, t: usize, day: u32, n: usize) -> usize {
        let Some(dates) = &self.w.dates[t] else {
            return t;
        };
        let Ok(at) = dates.binary_search(&day) else {
            return t;
        };
        if n == 0 {
            return self.day(t, at);
        }
        if let Some(&w) = self.windows.get(&(t, at, n)) {
            return w;
        }
        let from = at.saturating_sub(n);
        let days: Vec<(String, usize)> = (from..=at)
            .map(|k| {
                let day = self.w.dates[t].as_ref().expect("split")[k];
                (self.date(day).to_string(), self.day(t, k))
            })
            .collect();
        let first = days[0].0.clone();
        let date = self.date(day).to_string();
        let window = partition::lookback_window(&self.decls[t], &first, &date, days.into_iter());
        self.decls.push(window);
        let w = self.decls.len() - 1;
        self.windows.insert((t, at, n), w);
        w
    }

    /// The partitioned node `d` as its days, together: for what reads it
    /// whole, in the last window.
    fn whole(&mut self, d: usize) {
        let count = self.w.dates[d].as_ref().expect("split").len();
        let inputs: Vec<_> = (0..count)
            .map(|k| {
                let p = self.day(d, k);
                super::expand::DeclInput {
                    name: self.decls[p]
                        .name
                        .rsplit_once('@')
                        .map_or(String::new(), |(_, date)| date.to_string()),
                    target: Target::One(p),
                    origin: self.decls[d].origin.clone(),
                }
            })
            .collect();
        let decl = &mut self.decls[d];
        decl.inputs = inputs;
        decl.op = CONCAT.to_string();
        decl.params = Yaml::new(Value::Map(Vec::new()), decl.params.pos);
        decl.policy = NodePolicy::default();
    }
}

/// The days of a partitioned stage: those every partitioned input has.
fn stage_dates(decl: &Decl, named: &[Option<Vec<String>>]) -> Result<Vec<String>, String> {
    let mut dates: Option<Vec<String>> = None;
    for i in decl.inputs.iter().flat_map(|i| i.target.nodes()) {
        if let Some(these) = &named[i] {
            dates = Some(match dates {
                None => these.clone(),
                Some(known) => known
                    .into_iter()
                    .filter(|d| these.binary_search(d).is_ok())
                    .collect(),
            });
        }
    }
    let dates = dates.ok_or_else(partition::no_partitioned_input)?;
    if dates.is_empty() {
        return Err(partition::NO_DAY_IN_COMMON.to_string());
    }
    partition::check_stage(decl)?;
    Ok(dates)
}
