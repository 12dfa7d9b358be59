//! Progress while a run goes: one bar per operator group on a terminal
//! (`fetch.synthetic features[*].ticks  17/30`), plain lines otherwise.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::report::{NodeReport, NodeStatus};
use crate::plan::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// indicatif bars (for a terminal).
    Bars,
    /// One line per finished node (for logs and pipes).
    Lines,
    Quiet,
}

impl ProgressMode {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn detect() -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

struct Group {
    bar: Option<ProgressBar>,
    retries: u32,
    failed: usize,
}

pub struct Progress {
    mode: ProgressMode,
    /// Lines go out through a buffer, flushed every [`LINES_FLUSH`] and at
    /// each failure: a plan of 400,000 nodes wrote a line per syscall.
    lines: std::io::BufWriter<std::io::Stderr>,
    flushed: Instant,
    _multi: Option<MultiProgress>,
    groups: Vec<Group>,
    group_of: Vec<usize>,
    done: usize,
    total: usize,
    /// Finished nodes, for a caller that draws progress of its own.
    shared: Option<Arc<AtomicUsize>>,
}

/// How long a finished node's line may wait in the buffer.
const LINES_FLUSH: Duration = Duration::from_millis(200);

/// `features[FPT].ticks` → `features[*].ticks`.
fn family(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    let mut depth = 0;
    for c in id.chars() {
        match c {
            '[' => {
                if depth == 0 {
                    out.push_str("[*]");
                }
                depth += 1;
            }
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

impl Progress {
    pub fn new(plan: &Plan, mode: ProgressMode) -> Self {
        let mut keys: Vec<String> = Vec::new();
        let mut counts: Vec<u64> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut group_of = Vec::with_capacity(plan.graph.node_count());
        for (_, node) in plan.nodes() {
            if mode == ProgressMode::Quiet {
                break;
            }
            let key = format!("{} {}", node.op, family(&node.id));
            let g = *index.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                counts.push(0);
                keys.len() - 1
            });
            counts[g] += 1;
            group_of.push(g);
        }
        let multi = (mode == ProgressMode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let width = keys.iter().map(|k| k.len()).max().unwrap_or(10).min(48);
        let style = ProgressStyle::with_template(&format!(
            "{{prefix:{width}}} {{pos:>5}}/{{len:<5}} {{bar:24}} {{eta:>4}} {{msg}}"
        ))
        .expect("a valid template")
        .progress_chars("=> ");
        let groups = keys
            .iter()
            .zip(&counts)
            .map(|(key, &count)| Group {
                bar: multi.as_ref().map(|m| {
                    let bar = m.add(ProgressBar::new(count));
                    bar.set_style(style.clone());
                    bar.set_prefix(key.clone());
                    bar
                }),
                retries: 0,
                failed: 0,
            })
            .collect();
        Self {
            mode,
            lines: std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()),
            flushed: Instant::now(),
            _multi: multi,
            groups,
            group_of,
            done: 0,
            total: plan.graph.node_count(),
            shared: None,
        }
    }

    /// Also counts finished nodes in `count` (see [`super::RunOptions::finished`]).
    pub fn counting(mut self, count: Option<Arc<AtomicUsize>>) -> Self {
        self.shared = count;
        self
    }

    /// Records a node that reached its final state.
    pub fn finished(&mut self, index: usize, report: &NodeReport) {
        self.done += 1;
        if let Some(count) = &self.shared {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if self.mode == ProgressMode::Quiet {
            return;
        }
        let group = &mut self.groups[self.group_of[index]];
        group.retries += report.attempts.saturating_sub(1);
        if report.status == NodeStatus::Failed {
            group.failed += 1;
        }
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Bars => {
                if let Some(bar) = &group.bar {
                    bar.inc(1);
                    if group.retries > 0 || group.failed > 0 {
                        bar.set_message(format!(
                            "{} retries, {} failed",
                            group.retries, group.failed
                        ));
                    }
                    if bar.position() == bar.length().unwrap_or(0) {
                        bar.finish();
                    }
                }
            }
            // Nodes the cache or the selection spared are in the summary,
            // not a line each.
            ProgressMode::Lines
                if matches!(
                    report.status,
                    NodeStatus::Cached
                        | NodeStatus::UpToDate
                        | NodeStatus::Unselected
                        | NodeStatus::AsDays
                ) => {}
            ProgressMode::Lines => {
                let status = match report.status {
                    NodeStatus::Succeeded => "done",
                    NodeStatus::Failed => "FAILED",
                    NodeStatus::Skipped => "skipped",
                    NodeStatus::Defaulted => "defaulted",
                    NodeStatus::Cancelled => "cancelled",
                    NodeStatus::Cached => "cached",
                    NodeStatus::UpToDate => "uptodate",
                    NodeStatus::Unselected => "unselected",
                    NodeStatus::AsDays => "as days",
                    NodeStatus::NotRun | NodeStatus::Running => "?",
                };
                let retries = match report.attempts {
                    0 | 1 => String::new(),
                    n => format!(", {} retries", n - 1),
                };
                let error = match (&report.error, report.status) {
                    (Some(e), NodeStatus::Failed) => format!(" — {}: {}", e.kind, e.message),
                    _ => String::new(),
                };
                // Progress is best effort: a closed stderr does not fail the run.
                let _ = writeln!(
                    self.lines,
                    "[{:>w$}/{}] {status:<9} {} ({}, {:.1?}{retries}){error}",
                    self.done,
                    self.total,
                    report.id,
                    report.op,
                    report.duration(),
                    w = self.total.to_string().len()
                );
                if report.status == NodeStatus::Failed || self.flushed.elapsed() >= LINES_FLUSH {
                    let _ = self.lines.flush();
                    self.flushed = Instant::now();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn families_group_fan_out_instances() {
        assert_eq!(super::family("features[FPT].ticks"), "features[*].ticks");
        assert_eq!(super::family("index"), "index");
        assert_eq!(super::family("a[x[1]].b[y]"), "a[*].b[*]");
    }
}
