//! Date partitions: a node with `partition_by: date` becomes one node per
//! trading day, each cached on its own, and a `transform.concat` of those
//! days in its place, so that consumers reading the whole range get the
//! days in order.
//!
//! - A source splits its own range: the day partitions are the node with
//!   its operator's start and end parameters set to one day.
//! - A stage with inputs is day-local: day `d` reads day `d` of each
//!   partitioned input (inputs that are not partitioned, like reference
//!   data, whole).
//!
//! So extending a pipeline's end date by one day adds one node per
//! partitioned source and stage; every other day keeps its key, and its
//! cached output.

use std::collections::BTreeSet;

use quiver_operators::Registry;
use quiver_operators::calendar::{Calendar, next_date};

use super::expand::{Decl, DeclInput, Target};
use crate::diag::{Diagnostic, Diagnostics};
use crate::plan::NodePolicy;
use crate::spec::{Value, Yaml};

/// The operator that stands in for a partitioned node.
pub(super) const CONCAT: &str = "transform.concat";

/// Splits every declared node marked `partition_by: date`, appending the
/// day partitions to `decls`.
pub fn split(
    decls: &mut Vec<Decl>,
    registry: &Registry,
    calendar: &Calendar,
    diags: &mut Diagnostics,
) {
    // Per declared node: its day partitions, (date, index), once split.
    let mut days: Vec<Option<Vec<(String, usize)>>> = vec![None; decls.len()];
    for d in order(decls) {
        if !decls[d].partition || decls[d].unresolved {
            continue;
        }
        let split = if let Err(message) = check_sink(&decls[d], registry) {
            Err(message)
        } else if decls[d].inputs.is_empty() {
            split_source(decls, d, registry, calendar)
        } else {
            split_stage(decls, d, &days)
        };
        match split {
            Ok(parts) => days[d] = Some(parts),
            Err(message) => {
                diags.push(split_error(&decls[d], message));
                continue;
            }
        }
        // The node itself becomes the days, concatenated in order.
        let parts = days[d].as_ref().expect("just split");
        let decl = &mut decls[d];
        decl.inputs = parts
            .iter()
            .map(|(date, i)| DeclInput {
                name: date.clone(),
                target: Target::One(*i),
                origin: decl.origin.clone(),
            })
            .collect();
        decl.op = CONCAT.to_string();
        decl.params = Yaml::new(Value::Map(Vec::new()), decl.params.pos);
        decl.policy = NodePolicy::default();
        days.resize(decls.len(), None);
    }
}

/// Why the declared node `decl` cannot be split by date, at its
/// `partition_by`.
pub(super) fn split_error(decl: &Decl, message: String) -> Diagnostic {
    let o = &decl.origin;
    Diagnostic::new(
        &o.file,
        Some(o.pos),
        format!("{}.partition_by", o.path),
        message,
    )
}

/// A sink partitioned by date must write each day to a folder of its own.
pub(super) fn check_sink(decl: &Decl, registry: &Registry) -> Result<(), String> {
    let sink = registry
        .get(&decl.op)
        .is_some_and(|def| def.effect() == quiver_operators::Effect::Sink);
    if sink && decl.params.get("partition_by").is_none() {
        return Err(
            "a sink partitioned by date writes each day into a folder of its own: add \
             partition_by: [date] to its with: (or remove partition_by: date)"
                .to_string(),
        );
    }
    Ok(())
}

/// One node per trading day of the source's range.
fn split_source(
    decls: &mut Vec<Decl>,
    d: usize,
    registry: &Registry,
    calendar: &Calendar,
) -> Result<Vec<(String, usize)>, String> {
    let (range, dates) = source_dates(&decls[d], registry, calendar)?;
    let mut out = Vec::with_capacity(dates.len());
    for date in dates {
        let part = source_day(&decls[d], &range, &date);
        decls.push(part);
        out.push((date, decls.len() - 1));
    }
    Ok(out)
}

/// Day `date` of the partitioned source `decl`: its range set to that day.
pub(super) fn source_day(decl: &Decl, range: &quiver_operators::DateRange, date: &str) -> Decl {
    let end_value = if range.end_inclusive {
        date.to_string()
    } else {
        next_date(date).expect("a trading date is a date")
    };
    let mut part = copy(decl, date);
    set(&mut part.params, range.start, date);
    set(&mut part.params, range.end, &end_value);
    part
}

/// The trading days a partitioned source reads, and the parameters that
/// hold its range.
pub(super) fn source_dates(
    decl: &Decl,
    registry: &Registry,
    calendar: &Calendar,
) -> Result<(quiver_operators::DateRange, Vec<String>), String> {
    let range = registry
        .get(&decl.op)
        .and_then(|def| def.date_range())
        .ok_or_else(|| {
            format!(
                "operator '{}' reads no date range, and the node has no inputs to take days \
                 from; partition_by: date splits a source with start and end dates, or a stage \
                 over partitioned inputs",
                decl.op
            )
        })?;
    let param = |name: &str| -> Result<String, String> {
        decl.params
            .get(name)
            .and_then(|v| v.as_str().map(str::to_string))
            .ok_or_else(|| format!("partition_by: date needs the '{name}' date in with:"))
    };
    let (start, end) = (param(range.start)?, param(range.end)?);
    let mut dates = calendar.trading_dates(&start, &end)?;
    if !range.end_inclusive {
        // `[start, end)`: `end` itself is not read.
        dates.retain(|date| *date != end);
    }
    if dates.is_empty() {
        return Err(format!(
            "{start} to {end} holds no {} trading day",
            calendar.name()
        ));
    }
    Ok((range, dates))
}

/// The trading days before each day that a partitioned stage also reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookback {
    /// For every partitioned input.
    pub all: usize,
    /// For the inputs named, instead.
    pub inputs: Vec<(String, usize)>,
    /// The input under which day d reads the node's own day d − 1.
    pub previous: Option<String>,
}

impl Lookback {
    pub fn from(spec: Option<&crate::spec::LookbackSpec>, previous: Option<&str>) -> Self {
        use crate::spec::LookbackSpec;
        let previous = previous.map(str::to_string);
        match spec {
            None => Self {
                previous,
                ..Self::default()
            },
            Some(LookbackSpec::Days(n)) => Self {
                all: *n as usize,
                inputs: Vec::new(),
                previous,
            },
            Some(LookbackSpec::Inputs(map)) => Self {
                all: 0,
                inputs: map.iter().map(|(k, v)| (k.clone(), *v as usize)).collect(),
                previous,
            },
        }
    }

    pub(super) fn of(&self, input: &str) -> usize {
        self.inputs
            .iter()
            .find(|(name, _)| name == input)
            .map_or(self.all, |(_, n)| *n)
    }
}

/// One node per day its partitioned inputs all have, reading that day of
/// each (and the days before it, with a lookback).
fn split_stage(
    decls: &mut Vec<Decl>,
    d: usize,
    days: &[Option<Vec<(String, usize)>>],
) -> Result<Vec<(String, usize)>, String> {
    // The days are those every partitioned input has (history fetched from
    // further back serves the lookback, not days of its own).
    let mut dates: Option<BTreeSet<String>> = None;
    for input in &decls[d].inputs {
        for i in input.target.nodes() {
            if let Some(parts) = &days[i] {
                let these: BTreeSet<String> = parts.iter().map(|(date, _)| date.clone()).collect();
                dates = Some(match dates {
                    None => these,
                    Some(known) => known.intersection(&these).cloned().collect(),
                });
            }
        }
    }
    let dates = dates.ok_or_else(no_partitioned_input)?;
    if dates.is_empty() {
        return Err(NO_DAY_IN_COMMON.to_string());
    }
    check_stage(&decls[d])?;
    let lookback = decls[d].lookback.clone();
    // What day `date` of input `i` is: its partition, or with a lookback
    // the days from `lookback` before it to it, concatenated (one node per
    // input and day, shared by whatever reads the same window).
    let mut windows: std::collections::HashMap<(usize, String, usize), usize> = Default::default();
    let mut day_of = |decls: &mut Vec<Decl>, i: usize, date: &str, lookback: usize| -> usize {
        let Some(parts) = days[i].as_ref() else {
            return i;
        };
        // Parts are in date order (ISO dates sort as text): a search, not a
        // scan, or splitting is quadratic in the days.
        debug_assert!(parts.is_sorted_by(|a, b| a.0 < b.0));
        let Ok(at) = parts.binary_search_by(|(day, _)| day.as_str().cmp(date)) else {
            return i;
        };
        if lookback == 0 {
            return parts[at].1;
        }
        if let Some(&w) = windows.get(&(i, date.to_string(), lookback)) {
            return w;
        }
        let first = &parts[at.saturating_sub(lookback)].0;
        let days = parts[at.saturating_sub(lookback)..=at]
            .iter()
            .map(|(day, part)| (day.clone(), *part));
        let window = lookback_window(&decls[i], first, date, days);
        decls.push(window);
        windows.insert((i, date.to_string(), lookback), decls.len() - 1);
        decls.len() - 1
    };
    let mut out: Vec<(String, usize)> = Vec::with_capacity(dates.len());
    for date in dates {
        let mut part = copy(&decls[d], &date);
        for input in &mut part.inputs {
            let n = lookback.of(&input.name);
            input.target = match &input.target {
                Target::One(i) => Target::One(day_of(decls, *i, &date, n)),
                Target::All { key, members } => Target::All {
                    key: key.clone(),
                    members: members
                        .iter()
                        .map(|(k, i)| (k.clone(), day_of(decls, *i, &date, n)))
                        .collect(),
                },
                other => other.clone(),
            };
        }
        // Day d − 1 of the node itself, under the name `previous:` gives.
        if let (Some(name), Some((_, before))) = (&lookback.previous, out.last()) {
            part.inputs.push(DeclInput {
                name: name.clone(),
                target: Target::One(*before),
                origin: part.origin.clone(),
            });
        }
        decls.push(part);
        out.push((date, decls.len() - 1));
    }
    Ok(out)
}

/// The days `first..=date` of the partitioned node `input`, concatenated:
/// what a stage with a lookback reads of it on day `date`. `days` are the
/// day partitions, by date.
pub(super) fn lookback_window(
    input: &Decl,
    first: &str,
    date: &str,
    days: impl Iterator<Item = (String, usize)>,
) -> Decl {
    let origin = input.origin.clone();
    Decl {
        name: format!("{}@{first}..{date}", input.name),
        op: CONCAT.to_string(),
        params: Yaml::new(Value::Map(Vec::new()), origin.pos),
        unresolved: false,
        inputs: days
            .map(|(day, part)| DeclInput {
                name: day,
                target: Target::One(part),
                origin: origin.clone(),
            })
            .collect(),
        policy: NodePolicy::default(),
        origin,
        partition: false,
        lookback: Lookback::default(),
    }
}

pub(super) fn no_partitioned_input() -> String {
    "none of its inputs is partitioned by date; partition a source it reads first".to_string()
}

pub(super) const NO_DAY_IN_COMMON: &str = "its partitioned inputs have no day in common";

/// A partitioned stage's `lookback:` and `previous:` name inputs it has,
/// and only those.
pub(super) fn check_stage(decl: &Decl) -> Result<(), String> {
    let lookback = &decl.lookback;
    if let Some((name, _)) = lookback
        .inputs
        .iter()
        .find(|(name, _)| !decl.inputs.iter().any(|i| i.name == *name))
    {
        let names: Vec<&str> = decl.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "lookback names input '{name}', which the node does not have; its inputs are {}",
            names.join(", ")
        ));
    }
    if let Some(name) = &lookback.previous
        && decl.inputs.iter().any(|i| i.name == *name)
    {
        return Err(format!(
            "previous: '{name}' is already the name of an input; name the day before \
             something else"
        ));
    }
    Ok(())
}

/// The declared node `decl` for one day: `name@2026-01-05`.
pub(super) fn copy(decl: &Decl, date: &str) -> Decl {
    Decl {
        name: format!("{}@{date}", decl.name),
        op: decl.op.clone(),
        params: decl.params.clone(),
        unresolved: false,
        inputs: decl
            .inputs
            .iter()
            .map(|i| DeclInput {
                name: i.name.clone(),
                target: i.target.clone(),
                origin: i.origin.clone(),
            })
            .collect(),
        policy: decl.policy.clone(),
        origin: decl.origin.clone(),
        partition: false,
        lookback: Lookback::default(),
    }
}

/// Sets `key` of the mapping `params` to the text `value`.
fn set(params: &mut Yaml, key: &str, value: &str) {
    if let Value::Map(entries) = &mut params.value {
        for (k, v) in entries.iter_mut() {
            if k.scalar_text() == key {
                *v = Yaml::new(Value::Str(value.to_string()), v.pos);
                return;
            }
        }
    }
}

/// The declared nodes, inputs before the nodes that read them.
pub(super) fn order(decls: &[Decl]) -> Vec<usize> {
    let mut state = vec![0u8; decls.len()]; // 0 new, 1 visiting, 2 done
    let mut out = Vec::with_capacity(decls.len());
    for root in 0..decls.len() {
        let mut stack = vec![(root, 0usize)];
        while let Some((d, k)) = stack.pop() {
            if k == 0 {
                if state[d] != 0 {
                    continue;
                }
                state[d] = 1;
            }
            let deps: Vec<usize> = decls[d]
                .inputs
                .iter()
                .flat_map(|i| i.target.nodes())
                .collect();
            if let Some(&next) = deps.get(k) {
                stack.push((d, k + 1));
                if state[next] == 0 {
                    stack.push((next, 0));
                }
            } else {
                state[d] = 2;
                out.push(d);
            }
        }
    }
    out
}
