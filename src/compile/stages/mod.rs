//! Checking and counting a pipeline over stages, without a node per
//! trading day.
//!
//! Every declared instance keeps its day range as two numbers. The nodes a
//! compile would build for it (one per day, the concatenation of its days,
//! the windows its readers take) are counted exactly from *classes*: two
//! instances of one class compute the same node on the same day, but for
//! the places where a window is cut at the first day of its input or a
//! chain of `previous` days begins. Those places are the instance's
//! *positions*, each active over an interval of days. Day `d` of an
//! instance is the node (class, d, the positions active on d); the days of
//! one instance fall into a few runs with the same active positions, and
//! the runs of every instance, unioned per (class, positions), count the
//! unique nodes. See `docs/design/stages.md` for the model and why it is
//! exact.

mod count;
mod days;
mod keys;
mod tasks;
mod view;

use std::collections::BTreeMap;

use ahash::AHashMap as HashMap;
use quiver_operators::calendar::Calendar;
use quiver_operators::{Effect, Registry};

use super::dedupe::{Builder, canonical};
use super::expand::{Decl, Target};
use crate::diag::{Diagnostic, Diagnostics};
use crate::plan::Stats;
use days::{Days, check_sinks};
use keys::{Class, Day, Id, Inst, Interner, Intervals, Part, Shape, Slot, Whole};
pub use tasks::{Task, Tasks};
pub use view::{Days as StageDays, Input as StageInput, Read, Same, Stage, StagePlan, split_name};

const CONCAT: &str = "transform.concat";

/// Reports what a compile would report for `decls` (but for two sinks
/// writing one place, reported once per pair rather than once per day) and
/// returns the counts its plan would have, and whether they are exact.
///
/// They are not exact in one case: an unpartitioned node equal to one day
/// of a partitioned class (a fetch of that one day, or a reader of whole
/// ranges that end on it) read by a partitioned stage, when another stage
/// reads that class on that day with everything else equal. The compile
/// merges those two days; the classes here keep them apart.
pub fn count(
    decls: &[Decl],
    registry: &Registry,
    calendar: Option<&Calendar>,
    merge: bool,
    diags: &mut Diagnostics,
) -> Counted {
    let days = match calendar {
        Some(calendar) => Days::split(decls, registry, calendar, diags),
        None => Days::none(decls.len()),
    };
    let mut counter = Counter {
        registry,
        builder: Builder::new(registry),
        merge,
        days,
        classes: Interner::new(),
        wholes: Interner::new(),
        positions: Interner::new(),
        sets: Interner::new(),
        names: Interner::new(),
        class_op: Vec::new(),
        days_run: HashMap::new(),
        concats: HashMap::new(),
        declared: BTreeMap::new(),
        unique: BTreeMap::new(),
        sinks: Vec::new(),
        doubles: Vec::new(),
        ambiguous: false,
        records: Vec::new(),
    };
    counter.walk(decls, diags);
    check_sinks(decls, &counter.sinks, diags);
    let exact = counter.exact();
    let records = std::mem::take(&mut counter.records);
    let plan = view::plan(
        registry,
        decls,
        &counter.days.ranges,
        &counter.days.table,
        &records,
    );
    let days = std::mem::replace(&mut counter.days, Days::none(0));
    Counted {
        stats: counter.stats(),
        exact,
        plan,
        ranges: days.ranges,
        table: days.table,
    }
}

/// What [`count`] found.
pub struct Counted {
    pub stats: Stats,
    /// See [`count`].
    pub exact: bool,
    pub plan: StagePlan,
    ranges: Vec<Option<(Day, Day)>>,
    table: Vec<String>,
}

impl Counted {
    /// The declared nodes and their days, kept to compute tasks from.
    pub fn expansion(self, decls: Vec<Decl>, merge: bool) -> Expansion {
        Expansion {
            decls,
            ranges: self.ranges,
            table: self.table,
            merge,
        }
    }
}

/// The declared nodes and their day ranges: tasks on demand.
#[derive(Default)]
pub struct Expansion {
    decls: Vec<Decl>,
    ranges: Vec<Option<(Day, Day)>>,
    table: Vec<String>,
    merge: bool,
}

impl std::fmt::Debug for Expansion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expansion({} declared)", self.decls.len())
    }
}

impl Expansion {
    pub fn tasks<'a>(&'a self, registry: &'a Registry) -> Tasks<'a> {
        Tasks::new(&self.decls, registry, &self.ranges, &self.table, self.merge)
    }
}

pub(super) struct Counter<'a> {
    registry: &'a Registry,
    builder: Builder<'a>,
    merge: bool,
    days: Days,
    classes: Interner<Class>,
    wholes: Interner<Whole>,
    /// A position: (the class it is in, input, member, the position below
    /// it in that member or `Id::MAX` for the window itself).
    positions: Interner<(Id, u32, u32, Id)>,
    /// Sets of active positions, as (id, first).
    sets: Interner<Vec<(Id, Day)>>,
    /// Names given with `previous:`.
    names: Interner<String>,
    /// Per class, its operator.
    class_op: Vec<String>,
    /// The days of partitioned instances, by (class, positions active).
    days_run: HashMap<(Id, Id), Intervals>,
    /// Concatenations of days, by (class of the days, positions met,
    /// length − 1): the days they end on.
    concats: HashMap<(Id, Id, u32), Intervals>,
    declared: BTreeMap<String, usize>,
    unique: BTreeMap<String, usize>,
    /// (target, days, declared node).
    sinks: Vec<days::Sink>,
    /// What a day of a partitioned stage also is, where it reads an
    /// unpartitioned node equal to a day of a partitioned class.
    doubles: Vec<Class>,
    /// An unpartitioned node equals a day of more than one class.
    ambiguous: bool,
    /// What each declared instance computes, for the stage view.
    records: Vec<(usize, view::Rec)>,
}

impl Counter<'_> {
    /// Every declared node, inputs first, as the merger walks them: cycles
    /// reported where it reports them.
    fn walk(&mut self, decls: &[Decl], diags: &mut Diagnostics) {
        #[derive(Clone, Copy, PartialEq)]
        enum State {
            New,
            Visiting,
            Done,
        }
        let mut state = vec![State::New; decls.len()];
        let mut insts: Vec<Inst> = (0..decls.len()).map(|_| Inst::Failed).collect();
        let mut stack: Vec<usize> = Vec::new();
        for root in 0..decls.len() {
            if state[root] != State::New {
                continue;
            }
            let deps = |d: usize| -> Vec<usize> {
                decls[d]
                    .inputs
                    .iter()
                    .flat_map(|i| i.target.nodes())
                    .collect()
            };
            state[root] = State::Visiting;
            stack.push(root);
            let mut frames: Vec<(usize, Vec<usize>, usize)> = vec![(root, deps(root), 0)];
            while let Some((d, next, cursor)) = frames.last_mut() {
                if let Some(&t) = next.get(*cursor) {
                    *cursor += 1;
                    match state[t] {
                        State::New => {
                            state[t] = State::Visiting;
                            stack.push(t);
                            frames.push((t, deps(t), 0));
                        }
                        State::Visiting => {
                            let start = stack.iter().position(|&s| s == t).unwrap_or(0);
                            let cycle = &stack[start..];
                            let mut names: Vec<&str> =
                                cycle.iter().map(|&c| decls[c].name.as_str()).collect();
                            names.push(&decls[t].name);
                            let o = &decls[t].origin;
                            diags.push(Diagnostic::new(
                                &o.file,
                                Some(o.pos),
                                &o.path,
                                format!("cycle: {}", names.join(" → ")),
                            ));
                            for &c in cycle {
                                state[c] = State::Done;
                            }
                        }
                        State::Done => {}
                    }
                    continue;
                }
                let d = *d;
                frames.pop();
                stack.pop();
                if state[d] == State::Visiting {
                    state[d] = State::Done;
                    insts[d] = self.instance(decls, d, &insts, diags);
                }
            }
        }
        self.count_windows(decls, &insts);
    }

    /// One declared instance, its inputs done.
    fn instance(
        &mut self,
        decls: &[Decl],
        d: usize,
        insts: &[Inst],
        diags: &mut Diagnostics,
    ) -> Inst {
        let decl = &decls[d];
        let mut failed = decl.unresolved;
        for input in &decl.inputs {
            match &input.target {
                Target::Pending { .. } | Target::Broken => failed = true,
                t => failed |= t.nodes().iter().any(|&i| matches!(insts[i], Inst::Failed)),
            }
        }
        if failed {
            return Inst::Failed;
        }
        let Some(def) = self.registry.get(&decl.op) else {
            return Inst::Failed;
        };
        let range = self.days.ranges[d];
        let source_range = def
            .date_range()
            .filter(|_| range.is_some() && decl.inputs.is_empty());
        // A partitioned source is built once per class, not once per day:
        // the builder keeps what it built by the parameters' text, and here
        // that text leaves the range out, so the same fetch over other days
        // (another declaration, a longer history) is not built again. Its
        // class leaves the range out of the resolved parameters too.
        let params_json = canonical(decl.params.to_json());
        let params_text = match (source_range, &params_json) {
            (Some(r), serde_json::Value::Object(map)) => {
                let mut blank = map.clone();
                for name in [r.start, r.end] {
                    if let Some(v) = blank.get_mut(name) {
                        *v = serde_json::Value::Null;
                    }
                }
                serde_json::Value::Object(blank).to_string()
            }
            _ => params_json.to_string(),
        };
        let Some(prepared) = self.builder.build(decl, &params_text, params_json, diags) else {
            return Inst::Failed;
        };
        let sink = def.effect() == Effect::Sink;
        if sink && let Some(target) = prepared.operator.sink_target() {
            self.sinks.push((target, range, d));
        }
        let own = sink || !self.merge;
        let Some((lo, hi)) = range else {
            if !own && let Some(part) = self.day_form(decl, def, &prepared, insts) {
                let set = self.sets.id(part.on(part.lo)).0;
                self.add(&decl.op, 1, 0);
                self.days(d, part.class, set, part.lo, part.lo);
                let id = self.wholes.id(Whole::Day(part.class, set, part.lo)).0;
                return Inst::Whole(id, Some(Box::new(part)));
            }
            let key = if own {
                Whole::Own(d)
            } else {
                let inputs = decl
                    .inputs
                    .iter()
                    .map(|input| {
                        let whole = |t: usize| match &insts[t] {
                            Inst::Whole(w, _) => *w,
                            Inst::Days(p) => p.whole,
                            Inst::Failed => unreachable!("failed inputs fail the node"),
                        };
                        (input.name.clone(), shape(&input.target, whole))
                    })
                    .collect();
                Whole::Node {
                    op: decl.op.clone(),
                    resolved: prepared.resolved.clone(),
                    inputs,
                }
            };
            let (id, new) = self.wholes.id(key);
            self.add(&decl.op, 1, new as usize);
            self.records.push((d, view::Rec::Node(id)));
            return Inst::Whole(id, None);
        };

        let class_key = if own {
            Class::Own(d)
        } else if let Some(r) = source_range {
            source_class(&decl.op, &prepared.resolved, r)
        } else {
            let slots = |on: Option<Day>| -> Vec<(String, Shape<Slot>)> {
                decl.inputs
                    .iter()
                    .map(|input| {
                        let n = decl.lookback.of(&input.name) as u32;
                        let slot = |t: usize| match &insts[t] {
                            Inst::Whole(_, Some(form)) if Some(form.lo) == on => {
                                Slot::Day(form.class)
                            }
                            Inst::Whole(w, _) => Slot::Whole(*w),
                            Inst::Days(p) if n == 0 => Slot::Day(p.class),
                            Inst::Days(p) => Slot::Window(p.class),
                            Inst::Failed => unreachable!("failed inputs fail the node"),
                        };
                        (input.name.clone(), shape(&input.target, slot))
                    })
                    .collect()
            };
            // On the day an unpartitioned input equals a day of a
            // partitioned class, this stage's day is also what a stage
            // reading that class computes: see `Counter::exact`.
            let mut form_days: Vec<Day> = decl
                .inputs
                .iter()
                .flat_map(|input| input.target.nodes())
                .filter_map(|t| match &insts[t] {
                    Inst::Whole(_, Some(form)) if (lo..=hi).contains(&form.lo) => Some(form.lo),
                    _ => None,
                })
                .collect();
            form_days.sort_unstable();
            form_days.dedup();
            for day in form_days {
                self.doubles.push(Class::Stage {
                    op: decl.op.clone(),
                    resolved: prepared.resolved.clone(),
                    inputs: slots(Some(day)),
                });
            }
            Class::Stage {
                op: decl.op.clone(),
                resolved: prepared.resolved.clone(),
                inputs: slots(None),
            }
        };
        let class = self.class(class_key, &decl.op);
        let mut reads: Vec<(u32, u32, &Part, Option<u32>)> = Vec::new();
        for (j, input) in decl.inputs.iter().enumerate() {
            let n = decl.lookback.of(&input.name) as u32;
            for (m, t) in input.target.nodes().into_iter().enumerate() {
                if let Inst::Days(p) = &insts[t] {
                    reads.push((j as u32, m as u32, p, (n > 0).then_some(n)));
                }
            }
        }
        let previous = decl.lookback.previous.as_deref();
        let (positions, lengths) = self.positions_of(class, lo, hi, &reads, previous);
        let mut part = Part {
            class,
            lo,
            hi,
            positions,
            lengths,
            whole: 0,
        };
        self.count_days(d, &decl.op, &part);
        let set = self.sets.id(part.meeting(lo, hi)).0;
        self.concat(class, set, lo, hi);
        part.whole = self.wholes.id(Whole::Concat(class, set, lo, hi)).0;
        Inst::Days(part)
    }

    /// The day of a partitioned class an unpartitioned node equals, if
    /// any: a fetch whose range is one trading day, as that day's
    /// partition is written; or a node reading the whole of partitioned
    /// nodes that all end on one day (and days of that day), as a
    /// partitioned stage with windows reaching back over them reads it.
    fn day_form(
        &mut self,
        decl: &Decl,
        def: &dyn quiver_operators::OperatorDef,
        prepared: &super::dedupe::Prepared,
        insts: &[Inst],
    ) -> Option<Part> {
        if decl.inputs.is_empty() {
            let r = def.date_range()?;
            let text = |name: &str| decl.params.get(name).map(|v| v.scalar_text());
            let (start, end) = (text(r.start)?, text(r.end)?);
            let day_end = if r.end_inclusive {
                start.clone()
            } else {
                quiver_operators::calendar::next_date(&start)?
            };
            if end != day_end {
                return None;
            }
            let day = self.days.index(&start)?;
            let class = self.class(source_class(&decl.op, &prepared.resolved, r), &decl.op);
            return Some(Part {
                class,
                lo: day,
                hi: day,
                positions: Vec::new(),
                lengths: Vec::new(),
                whole: 0,
            });
        }
        // The day: where the whole ranges read end, all on one; or, reading
        // none, the day of the nodes read that are days themselves.
        let read = || decl.inputs.iter().flat_map(|i| i.target.nodes());
        let ends: Vec<Day> = read()
            .filter_map(|t| match &insts[t] {
                Inst::Days(p) => Some(p.hi),
                _ => None,
            })
            .collect();
        let forms: Vec<Day> = read()
            .filter_map(|t| match &insts[t] {
                Inst::Whole(_, Some(p)) => Some(p.lo),
                _ => None,
            })
            .collect();
        let day = match (ends.first(), forms.first()) {
            (Some(&d), _) if ends.iter().all(|&e| e == d) => d,
            (Some(_), _) | (None, None) => return None,
            (None, Some(&d)) => {
                if forms.iter().any(|&f| f != d) {
                    // It equals a day of one class or another: which one
                    // is not kept (see `count`).
                    self.ambiguous = true;
                }
                d
            }
        };
        let mut inputs = Vec::with_capacity(decl.inputs.len());
        let mut reads: Vec<(u32, u32, &Part, Option<u32>)> = Vec::new();
        for (j, input) in decl.inputs.iter().enumerate() {
            let mut slots = Vec::new();
            for (m, t) in input.target.nodes().into_iter().enumerate() {
                let slot = match &insts[t] {
                    Inst::Whole(_, Some(p)) if p.lo == day => {
                        reads.push((j as u32, m as u32, p, None));
                        Slot::Day(p.class)
                    }
                    Inst::Whole(w, _) => Slot::Whole(*w),
                    Inst::Days(p) => {
                        reads.push((j as u32, m as u32, p, Some(p.hi - p.lo)));
                        Slot::Window(p.class)
                    }
                    Inst::Failed => return None,
                };
                slots.push(slot);
            }
            let shape = match &input.target {
                Target::One(_) => Shape::One(slots.pop()?),
                Target::All { key, members } => Shape::All(
                    key.clone(),
                    members.iter().map(|(k, _)| k.clone()).zip(slots).collect(),
                ),
                Target::Pending { .. } | Target::Broken => return None,
            };
            inputs.push((input.name.clone(), shape));
        }
        let key = Class::Stage {
            op: decl.op.clone(),
            resolved: prepared.resolved.clone(),
            inputs,
        };
        let class = self.class(key, &decl.op);
        let (positions, lengths) = self.positions_of(class, day, day, &reads, None);
        Some(Part {
            class,
            lo: day,
            hi: day,
            positions,
            lengths,
            whole: 0,
        })
    }

    fn class(&mut self, key: Class, op: &str) -> Id {
        let (class, new) = self.classes.id(key);
        if new {
            self.class_op.push(op.to_string());
        }
        class
    }
}

/// The class of a partitioned source's days: its operator and resolved
/// parameters, the range left out (what a day sets).
fn source_class(op: &str, resolved: &str, range: quiver_operators::DateRange) -> Class {
    let mut resolved: serde_json::Value =
        serde_json::from_str(resolved).expect("resolved parameters are JSON");
    if let serde_json::Value::Object(map) = &mut resolved {
        map.remove(range.start);
        map.remove(range.end);
    }
    Class::Source {
        op: op.to_string(),
        resolved: resolved.to_string(),
    }
}

/// An input's target, in its shape, each node mapped by `f`.
fn shape<T>(target: &Target, mut f: impl FnMut(usize) -> T) -> Shape<T> {
    match target {
        Target::One(t) => Shape::One(f(*t)),
        Target::All { key, members } => Shape::All(
            key.clone(),
            members.iter().map(|(k, t)| (k.clone(), f(*t))).collect(),
        ),
        Target::Pending { .. } | Target::Broken => unreachable!("failed inputs fail the node"),
    }
}
