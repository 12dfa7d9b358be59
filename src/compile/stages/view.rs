//! The stages as written: one per declared node (fan-out instances
//! together), with its keys, its days, how it reads each input, and which
//! other stages declare the same tasks.

use std::collections::BTreeMap;

use ahash::AHashMap as HashMap;
use serde::Serialize;

use super::keys::{Day, Id, Intervals};
use crate::compile::expand::{Decl, Target};

/// What the counter recorded for one declared instance.
pub(super) enum Rec {
    /// Days `from..=to` of a partitioned class with one key.
    Runs(Id, Id, Day, Day),
    /// An unpartitioned node.
    Node(Id),
}

/// A pipeline's stages, in declaration order.
#[derive(Debug, Serialize)]
pub struct StagePlan {
    pub stages: Vec<Stage>,
}

/// A node as the YAML declares it.
#[derive(Debug, Serialize)]
pub struct Stage {
    /// Its name, without fan-out keys (`features.trades`).
    pub name: String,
    pub op: String,
    /// It writes somewhere (a sink).
    pub sink: bool,
    /// Its fan-out keys (`FPT`, `VNM`, …); empty without `foreach`.
    pub keys: Vec<String>,
    /// Its trading days, when partitioned by date.
    pub days: Option<Days>,
    pub inputs: Vec<Input>,
    /// Other stages that declare some of the same tasks.
    pub same_as: Vec<Same>,
}

#[derive(Debug, Serialize)]
pub struct Days {
    pub first: String,
    pub last: String,
    pub count: usize,
}

/// How a stage reads one input.
#[derive(Debug, Serialize)]
pub struct Input {
    pub name: String,
    /// The stage read.
    pub from: String,
    /// Every key of a fan-out (`features[*]`), or the key's own.
    pub every_key: bool,
    pub read: Read,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Read {
    /// The same day.
    SameDay,
    /// The day and the `n` days before it.
    Window(u32),
    /// The stage's own day before.
    Previous,
    /// Every day, in order.
    WholeRange,
    /// A node computed once.
    Once,
}

/// Tasks a stage shares with another.
#[derive(Debug, Serialize)]
pub struct Same {
    pub stage: String,
    pub tasks: usize,
    /// The keys and days of this stage among them.
    pub keys: usize,
    pub days: usize,
}

/// `features[FPT].trades` → (`features.trades`, `FPT`): a declared
/// instance's stage and its fan-out keys.
pub fn split_name(name: &str) -> (String, String) {
    let mut stage = String::with_capacity(name.len());
    let mut keys = Vec::new();
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        // An unclosed bracket is part of the name.
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        stage.push_str(&rest[..open]);
        keys.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    stage.push_str(rest);
    (stage, keys.join(","))
}

pub(super) fn plan(
    registry: &quiver_operators::Registry,
    decls: &[Decl],
    ranges: &[Option<(Day, Day)>],
    table: &[String],
    records: &[(usize, Rec)],
) -> StagePlan {
    let mut order: Vec<String> = Vec::new();
    let mut members: HashMap<String, Vec<usize>> = HashMap::new();
    let mut stage_of: Vec<usize> = vec![usize::MAX; decls.len()];
    let mut key_of: Vec<String> = vec![String::new(); decls.len()];
    for (d, decl) in decls.iter().enumerate() {
        let (stage, key) = split_name(&decl.name);
        key_of[d] = key;
        let list = members.entry(stage.clone()).or_insert_with(|| {
            order.push(stage.clone());
            Vec::new()
        });
        list.push(d);
    }
    for (i, name) in order.iter().enumerate() {
        for &d in &members[name] {
            stage_of[d] = i;
        }
    }
    let mut same = shared(records, &stage_of);
    let stages = order
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let list = &members[name];
            let first = &decls[list[0]];
            let mut keys: Vec<String> = list.iter().map(|&d| key_of[d].clone()).collect();
            keys.retain(|k| !k.is_empty());
            let (lo, hi) = list
                .iter()
                .filter_map(|&d| ranges[d])
                .fold((Day::MAX, 0), |(a, b), (lo, hi)| (a.min(lo), b.max(hi)));
            let days = (lo <= hi).then(|| Days {
                first: table[lo as usize].clone(),
                last: table[hi as usize].clone(),
                count: (hi - lo + 1) as usize,
            });
            Stage {
                name: name.clone(),
                op: first.op.clone(),
                sink: registry
                    .get(&first.op)
                    .is_some_and(|def| def.effect() == quiver_operators::Effect::Sink),
                keys,
                days,
                inputs: inputs(first, list[0], ranges, &stage_of, &order),
                same_as: same
                    .remove(&i)
                    .map(|others| {
                        others
                            .into_iter()
                            .map(|(j, (tasks, instances, mut days))| Same {
                                stage: order[j].clone(),
                                tasks,
                                keys: instances.len(),
                                days: days.settle(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    StagePlan { stages }
}

fn inputs(
    decl: &Decl,
    d: usize,
    ranges: &[Option<(Day, Day)>],
    stage_of: &[usize],
    order: &[String],
) -> Vec<Input> {
    let partitioned = ranges[d].is_some();
    let mut out: Vec<Input> = decl
        .inputs
        .iter()
        .filter_map(|input| {
            let (t, every_key) = match &input.target {
                Target::One(t) => (*t, false),
                Target::All { members, .. } => (members.first()?.1, true),
                Target::Pending { .. } | Target::Broken => return None,
            };
            let n = decl.lookback.of(&input.name) as u32;
            let read = match (ranges[t].is_some(), partitioned) {
                (false, _) => Read::Once,
                (true, false) => Read::WholeRange,
                (true, true) if n == 0 => Read::SameDay,
                (true, true) => Read::Window(n),
            };
            Some(Input {
                name: input.name.clone(),
                from: order[stage_of[t]].clone(),
                every_key,
                read,
            })
        })
        .collect();
    if let Some(name) = &decl.lookback.previous {
        out.push(Input {
            name: name.clone(),
            from: order[stage_of[d]].clone(),
            every_key: false,
            read: Read::Previous,
        });
    }
    out
}

/// Per stage, per other stage: (tasks shared, instances of this stage
/// among them, days among them).
type Shared = HashMap<usize, BTreeMap<usize, (usize, ahash::AHashSet<usize>, Intervals)>>;

/// The tasks two stages both declare: equal keys on the same days.
fn shared(records: &[(usize, Rec)], stage_of: &[usize]) -> Shared {
    // Per (class, key): the declared instances' runs of days.
    type Runs = Vec<(usize, Day, Day)>;
    let mut runs: HashMap<(Id, Id), Runs> = HashMap::new();
    let mut nodes: HashMap<Id, Vec<usize>> = HashMap::new();
    for (d, rec) in records {
        match *rec {
            Rec::Runs(class, set, from, to) => {
                runs.entry((class, set)).or_default().push((*d, from, to))
            }
            Rec::Node(id) => nodes.entry(id).or_default().push(*d),
        }
    }
    let mut out: Shared = HashMap::new();
    let mut note = |a: usize, b: usize, tasks: usize, days: Option<(Day, Day)>| {
        let (sa, sb) = (stage_of[a], stage_of[b]);
        if sa == sb || tasks == 0 {
            return;
        }
        let entry = out.entry(sa).or_default().entry(sb).or_default();
        entry.0 += tasks;
        entry.1.insert(a);
        entry.2.0.extend(days);
    };
    for list in runs.values() {
        for &(a, a0, a1) in list {
            for &(b, b0, b1) in list {
                let (lo, hi) = (a0.max(b0), a1.min(b1));
                if lo <= hi {
                    note(a, b, (hi - lo + 1) as usize, Some((lo, hi)));
                }
            }
        }
    }
    for list in nodes.values() {
        for &a in list {
            for &b in list {
                note(a, b, 1, None);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::split_name;

    #[test]
    fn names_split_into_stage_and_keys() {
        let split = |n: &str| {
            let (s, k) = split_name(n);
            (s.to_string(), k.to_string())
        };
        assert_eq!(
            split("features[FPT].trades"),
            ("features.trades".into(), "FPT".into())
        );
        assert_eq!(split("a[x].b[y]"), ("a.b".into(), "x,y".into()));
        assert_eq!(split("weights"), ("weights".into(), String::new()));
        assert_eq!(split("features["), ("features[".into(), String::new()));
        assert_eq!(split("f[FPT].p["), ("f.p[".into(), "FPT".into()));
    }
}
