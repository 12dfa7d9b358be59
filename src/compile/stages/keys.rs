//! The keys the stage counter interns, and the positions, windows and
//! partitioned instances it keeps.

use std::hash::Hash;
use std::sync::Arc;

use ahash::AHashMap as HashMap;

/// A trading day, as its place in the days the pipeline reads.
pub(super) type Day = u32;
/// An interned key.
pub(super) type Id = u32;

/// What a node's input refers to: one node, or every member of a fan-out.
#[derive(Hash, PartialEq, Eq, Clone)]
pub(super) enum Shape<T> {
    One(T),
    All(String, Vec<(String, T)>),
}

/// How a day of a partitioned stage reads one input.
#[derive(Hash, PartialEq, Eq, Clone, Copy)]
pub(super) enum Slot {
    /// The same day of a partitioned input (of this class).
    Day(Id),
    /// A window of days `d − n … d` of a partitioned input: how many days
    /// it holds is part of each day's key (it is cut at the input's first
    /// day), so that two windows holding the same days are one node.
    Window(Id),
    /// An unpartitioned node, whole.
    Whole(Id),
}

/// What one day of a partitioned instance computes, but for its day and
/// positions.
#[derive(Hash, PartialEq, Eq)]
pub(super) enum Class {
    Source {
        op: String,
        /// Parameters as the operator reads them, the date range left out.
        resolved: String,
    },
    Stage {
        op: String,
        resolved: Arc<str>,
        inputs: Vec<(String, Shape<Slot>)>,
    },
    /// Never merged: a sink, or any node with merging off.
    Own(usize),
}

/// The identity of a node computed once: an unpartitioned node, or the
/// concatenation of every day of a partitioned one.
#[derive(Hash, PartialEq, Eq)]
pub(super) enum Whole {
    Node {
        op: String,
        resolved: Arc<str>,
        inputs: Vec<(String, Shape<Id>)>,
    },
    Own(usize),
    /// (class, positions, first day, last day)
    Concat(Id, Id, Day, Day),
    /// An unpartitioned node equal to a day of a class: (class, what the
    /// day depends on, the day).
    Day(Id, Id, Day),
}

/// A place where what a day computes depends on where a range begins: a
/// window cut at the first day `first` of its input, or a chain of
/// `previous` days starting on `first`. It is active on the days
/// `from..until` of the instance that holds it, both fixed by its id and
/// `first`, so (id, first) names the same dependence wherever it appears.
#[derive(Clone, Copy)]
pub(super) struct Pos {
    pub(super) id: Id,
    pub(super) first: Day,
    pub(super) from: Day,
    /// `Day::MAX`: for good.
    pub(super) until: Day,
}

impl Pos {
    pub(super) fn active_on(&self, day: Day) -> bool {
        self.from <= day && day < self.until
    }

    /// Active on some day of `lo..=hi`.
    pub(super) fn meets(&self, lo: Day, hi: Day) -> bool {
        self.from <= hi && self.until > lo && self.from < self.until
    }
}

/// A window a partitioned stage reads, `n` days back, cut at the input's
/// first day `lo`: read on day `e`, it holds `min(n, d − lo)` days before
/// `e`. Held by that stage, or by a node reading it (through windows of
/// its own, `above`), whose day `d` reads it on the days from
/// [`Len::earliest`] to `d`; its lengths on those two days fix its length
/// on every day between (the length grows by one a day up to `n`).
#[derive(Clone)]
pub(super) struct Len {
    /// Names its length on the earliest day read.
    pub(super) id: Id,
    /// Names its length on the last day read.
    pub(super) end_id: Id,
    pub(super) lo: Day,
    pub(super) n: u32,
    /// The windows from the holder down to the stage reading this one,
    /// outermost first: (first day of the input read, days back).
    pub(super) above: Vec<(Day, u32)>,
}

impl Len {
    fn length(&self, read_on: Day) -> Day {
        self.n.min(read_on.saturating_sub(self.lo))
    }

    /// The earliest day it is read on, for the holder's day `day`.
    fn earliest(&self, day: Day) -> Day {
        self.above
            .iter()
            .fold(day, |e, &(lo, n)| lo.max(e.saturating_sub(n)))
    }

    /// What the holder's days `first..=last` depend on through it.
    pub(super) fn key(&self, first: Day, last: Day) -> [(Id, Day); 2] {
        [
            (self.id, self.length(self.earliest(first))),
            (self.end_id, self.length(last)),
        ]
    }

    /// A day of the holder from which `key` no longer changes but for
    /// the day itself: every window on the way whole.
    pub(super) fn settled(&self) -> Day {
        self.lo + self.n + self.above.iter().map(|&(_, n)| n).sum::<u32>()
    }
}

/// A partitioned instance.
pub(super) struct Part {
    pub(super) class: Id,
    pub(super) lo: Day,
    pub(super) hi: Day,
    /// Sorted by id; each active on some day of `lo..=hi`.
    pub(super) positions: Vec<Pos>,
    pub(super) lengths: Vec<Len>,
    /// The concatenation of all its days.
    pub(super) whole: Id,
}

impl Part {
    /// What the days `lo..=hi` depend on beyond the class, as a key: the
    /// positions active on one of them and the windows' lengths on the
    /// first and last (which fix them on every day between).
    pub(super) fn meeting(&self, lo: Day, hi: Day) -> Vec<(Id, Day)> {
        let mut key: Vec<(Id, Day)> = self
            .positions
            .iter()
            .filter(|p| p.meets(lo, hi))
            .map(|p| (p.id, p.first))
            .collect();
        for len in &self.lengths {
            key.extend(len.key(lo, hi));
        }
        key.sort_unstable();
        key
    }

    /// What day `day` depends on beyond the class and the day.
    pub(super) fn on(&self, day: Day) -> Vec<(Id, Day)> {
        let mut key: Vec<(Id, Day)> = self
            .positions
            .iter()
            .filter(|p| p.active_on(day))
            .map(|p| (p.id, p.first))
            .collect();
        key.extend(self.lengths.iter().flat_map(|len| len.key(day, day)));
        key.sort_unstable();
        key
    }

    /// The days where the positions active change: `lo`, `hi + 1` and the
    /// bounds of every position between them, sorted.
    pub(super) fn breaks(&self, extra: impl IntoIterator<Item = Day>) -> Vec<Day> {
        let mut at: Vec<Day> = vec![self.lo, self.hi + 1];
        for p in &self.positions {
            at.extend([p.from, p.until]);
        }
        // A window's length changes every day until it is whole.
        for len in &self.lengths {
            at.extend(self.lo..=len.settled().min(self.hi + 1));
        }
        at.extend(extra);
        at.retain(|&d| d >= self.lo && d <= self.hi + 1);
        at.sort_unstable();
        at.dedup();
        at
    }
}

pub(super) enum Inst {
    Failed,
    /// An unpartitioned node; with the day of a partitioned class it is
    /// equal to (a fetch of one day, a reader of a whole range on its last
    /// day), as that day.
    Whole(Id, Option<Box<Part>>),
    Days(Part),
}

/// Interned keys, numbered in order of first sight.
pub(super) struct Interner<T>(pub(super) HashMap<T, Id>);

impl<T: Hash + Eq> Interner<T> {
    pub(super) fn new() -> Self {
        Self(HashMap::new())
    }

    /// The key's number, and whether it is new.
    pub(super) fn id(&mut self, key: T) -> (Id, bool) {
        let next = self.0.len() as Id;
        let id = *self.0.entry(key).or_insert(next);
        (id, id == next)
    }
}

/// Intervals of days, to be counted without their overlaps.
#[derive(Default)]
pub(super) struct Intervals(pub(super) Vec<(Day, Day)>);

impl Intervals {
    /// Sorts and joins; returns the days covered.
    pub(super) fn settle(&mut self) -> usize {
        self.0.sort_unstable();
        let mut out: Vec<(Day, Day)> = Vec::with_capacity(self.0.len());
        for &(lo, hi) in &self.0 {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        self.0 = out;
        self.0.iter().map(|(lo, hi)| (hi - lo + 1) as usize).sum()
    }
}
