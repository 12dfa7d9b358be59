//! Where each partitioned instance's days begin and end, as the compiler
//! cuts them; and sinks that would write one place.

use ahash::AHashMap as HashMap;
use quiver_operators::Registry;
use quiver_operators::calendar::Calendar;

use super::keys::Day;
use crate::compile::expand::Decl;
use crate::compile::partition;
use crate::diag::{Diagnostic, Diagnostics};

/// The day range of every partitioned instance, as `partition::split`
/// would cut it, with its errors reported the same way.
pub(super) struct Days {
    pub(super) ranges: Vec<Option<(Day, Day)>>,
    /// Every day a partitioned source reads, in order.
    pub(super) table: Vec<String>,
}

impl Days {
    pub(super) fn none(n: usize) -> Self {
        Self {
            ranges: vec![None; n],
            table: Vec::new(),
        }
    }

    pub(super) fn split(
        decls: &[Decl],
        registry: &Registry,
        calendar: &Calendar,
        diags: &mut Diagnostics,
    ) -> Self {
        // Every source's dates first, once per distinct range: their union
        // numbers the days.
        // (op, start, end) → (first day, last day) or why there is none.
        type Found = Result<(String, String), String>;
        let mut found: HashMap<(String, String, String), Found> = HashMap::new();
        let mut all = std::collections::BTreeSet::new();
        let source_key = |decl: &Decl| -> (String, String, String) {
            let text = |name: &str| {
                decl.params
                    .get(name)
                    .map(|v| v.scalar_text())
                    .unwrap_or_default()
            };
            match registry.get(&decl.op).and_then(|def| def.date_range()) {
                Some(range) => (decl.op.clone(), text(range.start), text(range.end)),
                None => (decl.op.clone(), String::new(), String::new()),
            }
        };
        for decl in decls {
            if decl.partition && !decl.unresolved && decl.inputs.is_empty() {
                let key = source_key(decl);
                if !found.contains_key(&key) {
                    let dates = partition::source_dates(decl, registry, calendar);
                    let ends = dates.map(|(_, dates)| {
                        let ends = (dates[0].clone(), dates[dates.len() - 1].clone());
                        all.extend(dates);
                        ends
                    });
                    found.insert(key, ends);
                }
            }
        }
        let table: Vec<String> = all.into_iter().collect();
        let index = |date: &str| table.binary_search_by(|d| d.as_str().cmp(date)).ok();

        let mut ranges: Vec<Option<(Day, Day)>> = vec![None; decls.len()];
        for d in partition::order(decls) {
            let decl = &decls[d];
            if !decl.partition || decl.unresolved {
                continue;
            }
            let range = partition::check_sink(decl, registry).and_then(|()| {
                if decl.inputs.is_empty() {
                    let (first, last) = found[&source_key(decl)].clone()?;
                    Ok((
                        index(&first).expect("in the table") as Day,
                        index(&last).expect("in the table") as Day,
                    ))
                } else {
                    stage_range(decl, &ranges)
                }
            });
            match range {
                Ok(range) => ranges[d] = Some(range),
                Err(message) => diags.push(partition::split_error(decl, message)),
            }
        }
        Self { ranges, table }
    }

    pub(super) fn index(&self, date: &str) -> Option<Day> {
        self.table
            .binary_search_by(|d| d.as_str().cmp(date))
            .ok()
            .map(|i| i as Day)
    }
}

/// The days every partitioned input of a stage has.
pub(super) fn stage_range(
    decl: &Decl,
    ranges: &[Option<(Day, Day)>],
) -> Result<(Day, Day), String> {
    let mut range: Option<(Day, Day)> = None;
    for input in &decl.inputs {
        for t in input.target.nodes() {
            if let Some((lo, hi)) = ranges[t] {
                range = Some(match range {
                    None => (lo, hi),
                    Some((a, b)) => (a.max(lo), b.min(hi)),
                });
            }
        }
    }
    let (lo, hi) = range.ok_or_else(partition::no_partitioned_input)?;
    if lo > hi {
        return Err(partition::NO_DAY_IN_COMMON.to_string());
    }
    partition::check_stage(decl)?;
    Ok((lo, hi))
}

/// A sink: what it writes, on which days, and the declared node.
pub(super) type Sink = (String, Option<(Day, Day)>, usize);

/// Two sinks writing one place would race; reported once per sink, with
/// the sinks it collides with (partitioned sinks collide on the days they
/// share).
pub(super) fn check_sinks(decls: &[Decl], sinks: &[Sink], diags: &mut Diagnostics) {
    let collide = |a: Option<(Day, Day)>, b: Option<(Day, Day)>| match (a, b) {
        (None, None) => true,
        (Some((a0, a1)), Some((b0, b1))) => a0 <= b1 && b0 <= a1,
        _ => false,
    };
    for (i, (target, days, d)) in sinks.iter().enumerate() {
        let others: Vec<&str> = sinks
            .iter()
            .enumerate()
            .filter(|&(j, (t, other, _))| j != i && t == target && collide(*days, *other))
            .map(|(_, (_, _, o))| decls[*o].name.as_str())
            .collect();
        if others.is_empty() {
            continue;
        }
        let o = &decls[*d].origin;
        diags.push(Diagnostic::new(
            &o.file,
            Some(o.pos),
            &o.path,
            format!(
                "sink '{}' writes '{target}', as does {}; give each sink its own path",
                decls[*d].name,
                others.join(", ")
            ),
        ));
    }
}
