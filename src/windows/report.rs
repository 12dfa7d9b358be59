//! The report of a run in windows, made a window at a time: each node's
//! report is written to a spool file as its window ends, and only the
//! totals, the notable nodes (failed, skipped, not run, the slowest) and
//! the critical path so far stay in memory, so the report costs the same
//! memory for a year of days as for a week. At the end the report file is
//! written as a run of every day at once writes it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petgraph::Direction;
use petgraph::graph::NodeIndex;

use crate::cache::Ran;
use crate::exec::report::{RunHeader, Tally, Totals};
use crate::exec::{NodeReport, NodeStatus, RunReport};
use crate::plan::Plan;

/// How many of the slowest nodes the summary names.
const SLOWEST: usize = 3;

/// Where a node handed over to a window finished, and the chain that
/// led to it.
#[derive(Clone)]
pub struct Finish {
    pub end: Duration,
    pub path: Arc<[String]>,
}

/// The windows' reports, as one.
pub struct Assembly {
    header: Option<RunHeader>,
    spool: Option<Spool>,
    totals: Option<Totals>,
    /// Nodes that failed, were skipped, defaulted or did not run.
    notable: Vec<NodeReport>,
    slowest: Vec<NodeReport>,
    ran: Ran,
    /// The node that finished last so far, with its chain.
    last: Option<Finish>,
    /// No report of the run so far before this.
    next_write: Instant,
}

struct Spool {
    path: PathBuf,
    file: BufWriter<File>,
    count: usize,
}

/// One window's run, as [`Assembly::add`] takes it.
pub struct Window<'a> {
    /// The window's plan, as compiled.
    pub plan: &'a Plan,
    /// The plan it ran (for the resources of its nodes).
    pub run_plan: &'a Plan,
    pub report: RunReport,
    /// Its nodes handed over from earlier windows, with where they ended.
    pub handed: &'a HashMap<NodeIndex, Finish>,
    /// When the window started, from the start of the run.
    pub offset: Duration,
}

impl Assembly {
    /// Spools the nodes' reports beside `report_file`, if there is one.
    pub fn new(report_file: Option<&Path>) -> std::io::Result<Self> {
        let spool = match report_file {
            Some(path) => {
                let name = path
                    .file_name()
                    .map_or_else(|| "report.json".into(), |n| n.to_string_lossy());
                let spool = path.with_file_name(format!(".{name}.nodes.{}", std::process::id()));
                if let Some(dir) = spool.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                Some(Spool {
                    file: BufWriter::new(File::create(&spool)?),
                    path: spool,
                    count: 0,
                })
            }
            None => None,
        };
        Ok(Self {
            header: None,
            spool,
            totals: None,
            notable: Vec::new(),
            slowest: Vec::new(),
            ran: Ran::default(),
            last: None,
            next_write: Instant::now(),
        })
    }

    /// Adds a window's run; the chain of nodes that ended at each of
    /// `ends` (for the windows they are handed to).
    pub fn add(&mut self, window: Window, ends: &[NodeIndex]) -> std::io::Result<Vec<Finish>> {
        let Window {
            plan,
            run_plan,
            report,
            handed,
            offset,
        } = window;
        let mut nodes = report.nodes;
        for (i, node) in nodes.iter_mut().enumerate() {
            if handed.contains_key(&NodeIndex::new(i)) {
                // Counted in the window that made it.
                node.attempts = 0;
                node.status = NodeStatus::NotRun;
            } else {
                node.start += offset;
                node.end += offset;
            }
        }
        let header = RunHeader::of(run_plan);
        let t = &report.totals;
        let tally = Tally {
            nodes: &nodes,
            wall: t.wall,
            peak_output_bytes: t.peak_output_bytes,
            peak_threads: t.peak_threads,
            cpu_time: t.cpu_time,
            cancelled: t.cancelled,
        };
        let totals = Totals::count(&header, &plan.graph, tally);
        match &mut self.totals {
            Some(all) => all.add(&totals),
            None => self.totals = Some(totals),
        }
        self.header.get_or_insert(header);

        let finishes = ends
            .iter()
            .map(|&i| Finish {
                end: nodes[i.index()].end,
                path: path_to(plan, &nodes, handed, i).into(),
            })
            .collect();
        let last = (0..nodes.len())
            .filter(|&i| nodes[i].attempts > 0)
            .max_by_key(|&i| nodes[i].end);
        if let Some(i) = last
            && self.last.as_ref().is_none_or(|l| nodes[i].end >= l.end)
        {
            let i = NodeIndex::new(i);
            self.last = Some(Finish {
                end: nodes[i.index()].end,
                path: path_to(plan, &nodes, handed, i).into(),
            });
        }

        for (i, node) in nodes.into_iter().enumerate() {
            if handed.contains_key(&NodeIndex::new(i)) {
                continue;
            }
            self.ran.add(&node);
            if let Some(spool) = &mut self.spool {
                if spool.count > 0 {
                    spool.file.write_all(b",")?;
                }
                serde_json::to_writer(&mut spool.file, &node)?;
                spool.count += 1;
            }
            if node.attempts > 0 {
                let slower = self.slowest.len() < SLOWEST
                    || self.slowest.iter().any(|s| s.busy() < node.busy());
                if slower {
                    self.slowest.push(node.clone());
                    self.slowest.sort_by_key(|s| std::cmp::Reverse(s.busy()));
                    self.slowest.truncate(SLOWEST);
                }
            }
            let notable = matches!(
                node.status,
                NodeStatus::Failed
                    | NodeStatus::Skipped
                    | NodeStatus::Defaulted
                    | NodeStatus::NotRun
                    | NodeStatus::Cancelled
            );
            if notable {
                self.notable.push(node);
            }
        }
        Ok(finishes)
    }

    /// The report of the whole run: its totals and its notable nodes (the
    /// report file, when there is one, has every node); and the line of
    /// what ran and what was cached (see [`crate::cache::ran`]).
    pub fn finish(
        mut self,
        wall: Duration,
        merged_avoided: usize,
        report_file: Option<&Path>,
    ) -> (RunReport, String) {
        let mut report = self.report(wall, merged_avoided);
        report.nodes = self.notable;
        for node in self.slowest {
            if !report.nodes.iter().any(|n| n.id == node.id) {
                report.nodes.push(node);
            }
        }
        if let (Some(mut spool), Some(path)) = (self.spool.take(), report_file) {
            report.save_error = write(&report, &mut spool, path, true).err();
            let _ = std::fs::remove_file(&spool.path);
        }
        (report, self.ran.line())
    }

    /// Writes the report of the windows run so far (`"complete": false`)
    /// when one is due: a run killed between windows leaves the nodes
    /// finished so far, as a run of every day at once does. Writes are
    /// spaced so that they take at most 2% of the run.
    pub fn progress(&mut self, wall: Duration, merged_avoided: usize, report_file: Option<&Path>) {
        let (Some(path), Some(_)) = (report_file, &self.spool) else {
            return;
        };
        if Instant::now() < self.next_write {
            return;
        }
        let started = Instant::now();
        let mut report = self.report(wall, merged_avoided);
        report.complete = false;
        let spool = self.spool.as_mut().expect("a spool");
        if let Err(e) = write(&report, spool, path, false) {
            tracing::warn!(error = %e, "Could not write the report of the run so far");
        }
        self.next_write = Instant::now() + (started.elapsed() * 50).max(PROGRESS_EVERY);
    }

    /// The report's header and totals so far, without nodes.
    fn report(&self, wall: Duration, merged_avoided: usize) -> RunReport {
        let header = self.header.clone().expect("one window at least");
        let mut totals = self.totals.clone().expect("one window at least");
        totals.wall = wall;
        totals.merged_avoided = merged_avoided;
        totals.critical_path = self
            .last
            .as_ref()
            .map_or_else(Vec::new, |l| l.path.to_vec());
        totals.peak_resident_bytes = crate::exec::peak_resident_bytes();
        RunReport::ended(header, totals, Vec::new())
    }
}

/// The shortest time between two reports of a run so far.
const PROGRESS_EVERY: Duration = crate::exec::journal::INTERVAL;

/// Writes the report file: `report` with the nodes spooled so far as its
/// nodes; `last`: synced to the disk before it replaces the one before (a
/// report of the run so far is replaced soon, as the executor's are).
fn write(report: &RunReport, spool: &mut Spool, path: &Path, last: bool) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| {
        format!("cannot write the run report to {}: {e}", path.display())
    };
    spool.file.flush().map_err(|e| fail(&e))?;
    let spooled = &spool.path;
    // The report as a run of every day writes it, its nodes read back
    // from the spool rather than held.
    let head = serde_json::json!({
        "pipeline": report.pipeline,
        "params": report.params,
        "complete": report.complete,
        "totals": report.totals,
    });
    let head = head.to_string();
    let temp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(&temp)?);
        out.write_all(&head.as_bytes()[..head.len() - 1])?;
        out.write_all(b",\"nodes\":[")?;
        std::io::copy(&mut File::open(spooled)?, &mut out)?;
        out.write_all(b"]}")?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        if last {
            file.sync_all()?;
        }
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(|e| fail(&e))
}

/// The chain of nodes that ended at `at`: back through the input that
/// finished last, into earlier windows through what was handed over.
fn path_to(
    plan: &Plan,
    nodes: &[NodeReport],
    handed: &HashMap<NodeIndex, Finish>,
    mut at: NodeIndex,
) -> Vec<String> {
    let mut path = vec![nodes[at.index()].id.clone()];
    loop {
        let mut best: Option<(Duration, NodeIndex)> = None;
        for p in plan.graph.neighbors_directed(at, Direction::Incoming) {
            let end = match handed.get(&p) {
                Some(f) => f.end,
                None if nodes[p.index()].attempts > 0 => nodes[p.index()].end,
                None => continue,
            };
            if best.is_none_or(|(e, _)| end > e) {
                best = Some((end, p));
            }
        }
        let Some((_, p)) = best else { break };
        if let Some(f) = handed.get(&p) {
            path.extend(f.path.iter().rev().cloned());
            break;
        }
        path.push(nodes[p.index()].id.clone());
        at = p;
    }
    path.reverse();
    path
}
