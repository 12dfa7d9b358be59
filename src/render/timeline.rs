//! A run's timeline from its report: a Gantt chart page (`quiver report
//! --format html`, `quiver run --report-html`) with one row per node,
//! grouped by operator and fan-out, each bar split into the wait for its
//! resource and the work, retries and failures marked and the critical
//! path drawn out; and the same summary as text for a terminal.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::{Value, json};

use super::html::page;
use super::view::group_key;
use crate::exec::{NodeReport, NodeStatus, RunReport};

const TIMELINE_JS: &str = include_str!("assets/timeline.js");

/// The nodes of one row group: an operator and a declaration.
struct RowGroup<'a> {
    key: String,
    op: &'a str,
    nodes: Vec<usize>,
}

impl RowGroup<'_> {
    fn busy(&self, report: &RunReport) -> Duration {
        self.nodes.iter().map(|&n| report.nodes[n].busy()).sum()
    }

    fn wait(&self, report: &RunReport) -> Duration {
        self.nodes.iter().map(|&n| report.nodes[n].wait).sum()
    }

    fn retries(&self, report: &RunReport) -> u32 {
        self.nodes
            .iter()
            .map(|&n| report.nodes[n].attempts.saturating_sub(1))
            .sum()
    }

    fn failed(&self, report: &RunReport) -> usize {
        self.nodes
            .iter()
            .filter(|&&n| report.nodes[n].status == NodeStatus::Failed)
            .count()
    }
}

/// Whether a node belongs on the timeline: it ran, or tried to.
fn shown(n: &NodeReport) -> bool {
    n.attempts > 0 || matches!(n.status, NodeStatus::Failed | NodeStatus::Running)
}

/// Row groups in the order their first node started.
fn row_groups(report: &RunReport) -> Vec<RowGroup<'_>> {
    let mut order: Vec<usize> = (0..report.nodes.len())
        .filter(|&i| shown(&report.nodes[i]))
        .collect();
    order.sort_by_key(|&i| (report.nodes[i].start, i));
    let mut groups: IndexMap<(String, &str), Vec<usize>> = IndexMap::new();
    for i in order {
        let n = &report.nodes[i];
        groups
            .entry((group_key(&n.id), n.op.as_str()))
            .or_default()
            .push(i);
    }
    groups
        .into_iter()
        .map(|((key, op), nodes)| RowGroup { key, op, nodes })
        .collect()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1 << 20) as f64)
}

/// The run's totals, as label and value.
fn totals(report: &RunReport) -> Vec<(String, String)> {
    let t = &report.totals;
    let executions: u32 = t.executions_by_op.values().sum();
    let mut rows = vec![
        ("wall", format!("{:.2?}", t.wall)),
        (
            "executions",
            format!("{executions} ({} nodes ran)", t.executed),
        ),
        ("merges avoided", t.merged_avoided.to_string()),
        ("retries", t.retries.to_string()),
        ("failed", t.failures.to_string()),
        ("cached", t.cached.to_string()),
        ("peak outputs held", mib(t.peak_output_bytes as f64)),
    ];
    if let Some(rss) = t.peak_resident_bytes {
        rows.push(("peak resident memory", mib(rss as f64)));
    }
    if let Some(cpu) = t.cpu_time {
        rows.push(("CPU time", format!("{cpu:.2?}")));
    }
    rows.into_iter()
        .map(|(label, value)| (label.to_string(), value))
        .collect()
}

/// One line per resource: its calls, failures and time.
fn resource_rows(report: &RunReport) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for (name, r) in &report.totals.by_resource {
        rows.push((
            format!("resource {name}"),
            format!(
                "{} calls, {} failed, work {:.2?}, wait {:.2?}",
                r.calls, r.failed_calls, r.busy, r.wait
            ),
        ));
    }
    rows
}

/// The run's timeline as one self-contained HTML page.
pub struct TimelineHtml<'a>(pub &'a RunReport);

impl fmt::Display for TimelineHtml<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.0;
        let critical: HashSet<&str> = report
            .totals
            .critical_path
            .iter()
            .map(String::as_str)
            .collect();
        let groups: Vec<Value> = row_groups(report)
            .iter()
            .map(|g| {
                let nodes: Vec<Value> = g
                    .nodes
                    .iter()
                    .map(|&i| {
                        let n = &report.nodes[i];
                        json!([
                            n.id,
                            n.status,
                            ms(n.start),
                            ms(n.end),
                            ms(n.wait),
                            n.attempts,
                            critical.contains(n.id.as_str()),
                            n.error.as_ref().map(|e| e.to_string()),
                        ])
                    })
                    .collect();
                json!({ "key": g.key, "op": g.op, "nodes": nodes })
            })
            .collect();
        let totals = [totals(report), resource_rows(report)].concat();
        let data = json!({
            "pipeline": report.pipeline,
            "complete": report.complete,
            "wall": ms(report.totals.wall),
            "totals": totals,
            "critical": report.totals.critical_path,
            "groups": groups,
        });
        let title = format!("quiver run — {}", report.pipeline);
        f.write_str(&page(&title, &data, TIMELINE_JS))
    }
}

/// The same summary for a terminal: totals, the critical path, and one
/// line per row group.
pub struct TimelineText<'a>(pub &'a RunReport);

impl fmt::Display for TimelineText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.0;
        let state = if report.complete { "" } else { " (incomplete)" };
        writeln!(f, "run of {}{state}", report.pipeline)?;
        for (label, value) in totals(report) {
            writeln!(f, "  {label:<22} {value}")?;
        }
        let path = &report.totals.critical_path;
        if !path.is_empty() {
            writeln!(f, "critical path ({} nodes):", path.len())?;
            for id in path {
                if let Some(n) = report.node(id) {
                    writeln!(
                        f,
                        "  {id:<40} {:>10.2?} – {:>10.2?} (waited {:.2?})",
                        n.start, n.end, n.wait
                    )?;
                }
            }
        }
        if !report.totals.by_resource.is_empty() {
            writeln!(
                f,
                "{:<22} {:>6} {:>6} {:>7} {:>7} {:>11} {:>11}",
                "resource", "nodes", "calls", "failed", "gave up", "work", "wait"
            )?;
            for (name, r) in &report.totals.by_resource {
                writeln!(
                    f,
                    "{name:<22} {:>6} {:>6} {:>7} {:>7} {:>11.2?} {:>11.2?}",
                    r.nodes, r.calls, r.failed_calls, r.failed_nodes, r.busy, r.wait
                )?;
            }
        }
        let groups = row_groups(report);
        if groups.is_empty() {
            return writeln!(f, "no node ran");
        }
        let width = groups.iter().map(|g| g.key.len()).max().unwrap_or(0).max(5);
        writeln!(
            f,
            "{:<width$}  {:<18} {:>6} {:>11} {:>11} {:>7} {:>6}",
            "nodes", "operator", "count", "work", "wait", "retries", "failed"
        )?;
        for g in &groups {
            writeln!(
                f,
                "{:<width$}  {:<18} {:>6} {:>11.2?} {:>11.2?} {:>7} {:>6}",
                g.key,
                g.op,
                g.nodes.len(),
                g.busy(report),
                g.wait(report),
                g.retries(report),
                g.failed(report)
            )?;
        }
        Ok(())
    }
}
