//! Tasks on demand: one declared instance on one day (or its whole range),
//! with the identity the compiled plan gives it, computed from the declared
//! nodes and the days alone, for the tasks asked for and what they read.
//! `quiver plan --stages --expand SELECTOR` prints them; the tests check
//! every identity against the compiled plan's.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use ahash::AHashMap as HashMap;
use quiver_operators::Registry;
use serde_json::Value as Json;

use super::CONCAT;
use super::keys::Day;
use crate::compile::dedupe::{Fnv1a, canonical};
use crate::compile::expand::{Decl, Target};

/// Which node of a declared instance.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Form {
    /// One day of a partitioned instance.
    Day(Day),
    /// The days `first..=last` of a partitioned instance, concatenated (a
    /// window a reader takes).
    Window(Day, Day),
    /// An unpartitioned node, or every day of a partitioned one.
    Whole,
}

/// One task, as `--expand` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Task {
    pub id: String,
    pub op: String,
    /// As the compiled plan's node identity (16 hex digits in the JSON
    /// plan).
    pub identity: u64,
    /// Per input: its name and the tasks it reads.
    pub inputs: Vec<(String, Vec<String>)>,
}

/// The tasks of a pipeline, computed when asked.
pub struct Tasks<'a> {
    decls: &'a [Decl],
    registry: &'a Registry,
    ranges: &'a [Option<(Day, Day)>],
    table: &'a [String],
    names: HashMap<&'a str, usize>,
    /// Resolved parameters by (op, parameters as written).
    resolved: HashMap<(String, String), Option<Arc<str>>>,
    memo: HashMap<(usize, Form), Option<u64>>,
    merge: bool,
}

impl<'a> Tasks<'a> {
    pub(super) fn new(
        decls: &'a [Decl],
        registry: &'a Registry,
        ranges: &'a [Option<(Day, Day)>],
        table: &'a [String],
        merge: bool,
    ) -> Self {
        Self {
            decls,
            registry,
            ranges,
            table,
            names: decls
                .iter()
                .enumerate()
                .map(|(d, decl)| (decl.name.as_str(), d))
                .collect(),
            resolved: HashMap::new(),
            memo: HashMap::new(),
            merge,
        }
    }

    fn day(&self, date: &str) -> Option<Day> {
        self.table
            .binary_search_by(|d| d.as_str().cmp(date))
            .ok()
            .map(|i| i as Day)
    }

    /// `features[FPT]@2026-01-05`, `features[FPT].prices@2026-01-01..2026-01-05`
    /// or `features[FPT]` → the declared instance and the form.
    fn parse(&self, id: &str) -> Option<(usize, Form)> {
        let (name, at) = match id.split_once('@') {
            Some((name, at)) => (name, Some(at)),
            None => (id, None),
        };
        let d = *self.names.get(name)?;
        let form = match at {
            None => Form::Whole,
            Some(at) => match at.split_once("..") {
                Some((a, b)) => Form::Window(self.day(a)?, self.day(b)?),
                None => Form::Day(self.day(at)?),
            },
        };
        Some((d, form))
    }

    fn name(&self, d: usize, form: Form) -> String {
        let name = &self.decls[d].name;
        match form {
            Form::Day(day) => format!("{name}@{}", self.table[day as usize]),
            Form::Window(a, b) => format!(
                "{name}@{}..{}",
                self.table[a as usize], self.table[b as usize]
            ),
            Form::Whole => name.clone(),
        }
    }

    /// The identity of the task named `id`, as the compiled plan names its
    /// nodes; `None` for a name it does not have or a node that fails.
    pub fn identity_of(&mut self, id: &str) -> Option<u64> {
        let (d, form) = self.parse(id)?;
        self.identity(d, form)
    }

    /// The task named `id`, with what it reads.
    pub fn task(&mut self, id: &str) -> Option<Task> {
        let (d, form) = self.parse(id)?;
        let identity = self.identity(d, form)?;
        let node = self.node(d, form)?;
        let inputs = node
            .inputs
            .iter()
            .map(|(name, read)| {
                let ids = match read {
                    Read::One(t, f) => vec![self.name(*t, *f)],
                    Read::All(_, members) => {
                        members.iter().map(|(_, t, f)| self.name(*t, *f)).collect()
                    }
                };
                (name.clone(), ids)
            })
            .collect();
        Some(Task {
            id: self.name(d, form),
            op: node.op,
            identity,
            inputs,
        })
    }

    /// The tasks of the declared instances whose names `matches` accepts,
    /// on the days `day` accepts (the whole node for an unpartitioned one),
    /// up to `limit`; and how many there are in all.
    pub fn select(
        &mut self,
        matches: impl Fn(&str) -> bool,
        day: impl Fn(&str) -> bool,
        limit: usize,
    ) -> (Vec<Task>, usize) {
        let mut ids = Vec::new();
        for (d, decl) in self.decls.iter().enumerate() {
            if !matches(&decl.name) {
                continue;
            }
            match self.ranges[d] {
                Some((lo, hi)) => {
                    for day_at in lo..=hi {
                        if day(&self.table[day_at as usize]) {
                            ids.push(self.name(d, Form::Day(day_at)));
                        }
                    }
                }
                None => ids.push(decl.name.clone()),
            }
        }
        let total = ids.len();
        let tasks = ids
            .iter()
            .take(limit)
            .filter_map(|id| self.task(id))
            .collect();
        (tasks, total)
    }

    /// What a task is made of, as the compiler makes it.
    fn node(&self, d: usize, form: Form) -> Option<Node> {
        let decl = &self.decls[d];
        let range = self.ranges[d];
        // The concatenation of days: inputs named by date.
        let days = |a: Day, b: Day| Node {
            op: CONCAT.to_string(),
            stand_in: true,
            inputs: (a..=b)
                .map(|day| {
                    (
                        self.table[day as usize].clone(),
                        Read::One(d, Form::Day(day)),
                    )
                })
                .collect(),
        };
        let day = match (form, range) {
            (Form::Whole, Some((lo, hi))) => return Some(days(lo, hi)),
            (Form::Window(a, b), Some(_)) => return Some(days(a, b)),
            (Form::Day(day), Some(_)) => Some(day),
            (Form::Whole, None) => None,
            (Form::Day(_) | Form::Window(..), None) => return None,
        };
        let mut inputs = Vec::with_capacity(decl.inputs.len() + 1);
        for input in &decl.inputs {
            let n = decl.lookback.of(&input.name) as u32;
            let read = |t: usize| -> (usize, Form) {
                match (self.ranges[t], day) {
                    (Some(_), Some(day)) if n == 0 => (t, Form::Day(day)),
                    (Some((lo_t, _)), Some(day)) => {
                        (t, Form::Window(lo_t.max(day.saturating_sub(n)), day))
                    }
                    _ => (t, Form::Whole),
                }
            };
            let read = match &input.target {
                Target::One(t) => {
                    let (t, f) = read(*t);
                    Read::One(t, f)
                }
                Target::All { key, members } => Read::All(
                    key.clone(),
                    members
                        .iter()
                        .map(|(k, t)| {
                            let (t, f) = read(*t);
                            (k.clone(), t, f)
                        })
                        .collect(),
                ),
                Target::Pending { .. } | Target::Broken => return None,
            };
            inputs.push((input.name.clone(), read));
        }
        if let (Some(name), Some(day), Some((lo, _))) = (&decl.lookback.previous, day, range)
            && day > lo
        {
            inputs.push((name.clone(), Read::One(d, Form::Day(day - 1))));
        }
        Some(Node {
            op: decl.op.clone(),
            stand_in: false,
            inputs,
        })
    }

    /// The parameters as the operator reads them, for `params` as written.
    fn resolve(&mut self, op: &str, params: Json) -> Option<Arc<str>> {
        let text = params.to_string();
        let key = (op.to_string(), text);
        if let Some(found) = self.resolved.get(&key) {
            return found.clone();
        }
        let built = self
            .registry
            .get(op)
            .and_then(|def| def.prepare(params).ok())
            .map(|built| Arc::from(canonical(built.params).to_string()));
        self.resolved.insert(key, built.clone());
        built
    }

    fn identity(&mut self, d: usize, form: Form) -> Option<u64> {
        if let Some(&known) = self.memo.get(&(d, form)) {
            return known;
        }
        // A chain of `previous` days: the days before first, in order, so
        // that no chain is followed by recursion.
        if let (Form::Day(day), Some((lo, _))) = (form, self.ranges[d])
            && self.decls[d].lookback.previous.is_some()
        {
            for before in lo..day {
                if !self.memo.contains_key(&(d, Form::Day(before))) {
                    let id = self.compute(d, Form::Day(before));
                    self.memo.insert((d, Form::Day(before)), id);
                }
            }
        }
        let id = self.compute(d, form);
        self.memo.insert((d, form), id);
        id
    }

    fn compute(&mut self, d: usize, form: Form) -> Option<u64> {
        let decl = &self.decls[d];
        if decl.unresolved {
            return None;
        }
        let node = self.node(d, form)?;
        let params = if node.stand_in {
            Json::Object(Default::default())
        } else {
            let mut params = canonical(decl.params.to_json());
            let source = self.registry.get(&decl.op).and_then(|def| def.date_range());
            if let (Form::Day(day), Some(r), true) = (form, source, decl.inputs.is_empty())
                && let Json::Object(map) = &mut params
            {
                let date = self.table[day as usize].clone();
                let end = if r.end_inclusive {
                    date.clone()
                } else {
                    quiver_operators::calendar::next_date(&date)?
                };
                map.insert(r.start.to_string(), Json::String(date));
                map.insert(r.end.to_string(), Json::String(end));
            }
            params
        };
        let resolved = self.resolve(&node.op, params)?;
        // As the merger hashes a node: its operator and parameters, then
        // each input's name and what it reads.
        let mut h = Fnv1a::default();
        (&node.op, &resolved).hash(&mut h);
        if !self.merge {
            self.name(d, form).hash(&mut h);
        }
        for (name, read) in &node.inputs {
            name.hash(&mut h);
            match read {
                Read::One(t, f) => (0u8, self.identity(*t, *f)?).hash(&mut h),
                Read::All(key, members) => {
                    (1u8, key).hash(&mut h);
                    for (k, t, f) in members {
                        (k, self.identity(*t, *f)?).hash(&mut h);
                    }
                }
            }
        }
        Some(h.finish())
    }
}

/// What a task reads under one input name.
enum Read {
    One(usize, Form),
    All(String, Vec<(String, usize, Form)>),
}

/// A task as the compiler makes it.
struct Node {
    op: String,
    /// A concatenation of days the compiler adds (no parameters).
    stand_in: bool,
    inputs: Vec<(String, Read)>,
}
