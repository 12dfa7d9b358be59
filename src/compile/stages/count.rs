//! Positions of partitioned stages, and counting their days, windows and
//! concatenations as runs of days.

use std::collections::BTreeMap;

use super::keys::{Day, Id, Inst, Intervals, Len, Part, Pos};
use super::{CONCAT, Counter};
use crate::compile::expand::Decl;
use crate::plan::Stats;

impl Counter<'_> {
    /// The positions of a partitioned stage's days: its inputs', seen
    /// through their windows, and the windows' own cuts; with `previous:`,
    /// the chain's start and every position the chain meets.
    ///
    /// `reads`: (input, member, the partitioned node, the window's lookback
    /// or `None` for the same day) for every partitioned node read.
    pub(super) fn positions_of(
        &mut self,
        class: Id,
        lo: Day,
        hi: Day,
        reads: &[(u32, u32, &Part, Option<u32>)],
        previous: Option<&str>,
    ) -> (Vec<Pos>, Vec<Len>) {
        let mut out: Vec<Pos> = Vec::new();
        let mut lengths: Vec<Len> = Vec::new();
        for &(j, m, p, window) in reads {
            let n = window.unwrap_or(0);
            {
                let mut at = |below: Id| self.positions.id((class, j, m, below)).0;
                // Day d reads days max(p.lo, d − n) ..= d of the input.
                for q in &p.positions {
                    if q.until > p.lo {
                        out.push(Pos {
                            id: at(q.id),
                            first: q.first,
                            from: q.from,
                            until: q.until.saturating_add(n),
                        });
                    }
                }
                for len in &p.lengths {
                    let mut above = Vec::with_capacity(len.above.len() + 1);
                    if window.is_some() {
                        above.push((p.lo, n));
                    }
                    above.extend(&len.above);
                    lengths.push(Len {
                        id: at(len.id),
                        end_id: at(len.end_id),
                        lo: len.lo,
                        n: len.n,
                        above,
                    });
                }
                if window.is_some() {
                    lengths.push(Len {
                        id: at(Id::MAX),
                        end_id: at(Id::MAX - 1),
                        lo: p.lo,
                        n,
                        above: Vec::new(),
                    });
                }
            }
        }
        if let Some(name) = previous {
            // Day d > lo reads d − 1, and so every day back to lo: it
            // depends on every position active on one of them, for good.
            // Day lo reads no day before and is as if without `previous:`.
            let mut chain = Vec::with_capacity(out.len() * 2 + 1);
            for q in out {
                if q.from <= lo {
                    chain.push(Pos {
                        until: q.until.min(lo + 1),
                        ..q
                    });
                }
                if q.until > lo {
                    chain.push(Pos {
                        id: self.positions.id((class, u32::MAX - 1, 0, q.id)).0,
                        first: q.first,
                        from: q.from.max(lo + 1),
                        until: Day::MAX,
                    });
                }
            }
            // What the windows held on the days before: fixed by what
            // they held on the earliest day the chain reads and on day d.
            for len in &lengths {
                chain.push(Pos {
                    id: self.positions.id((class, u32::MAX - 2, 0, len.id)).0,
                    first: len.key(lo, lo)[0].1,
                    from: lo + 1,
                    until: Day::MAX,
                });
            }
            let name = self.names.id(name.to_string()).0;
            chain.push(Pos {
                id: self.positions.id((class, u32::MAX, name, Id::MAX)).0,
                first: lo,
                from: lo + 1,
                until: Day::MAX,
            });
            out = chain;
        }
        out.retain(|p| p.meets(lo, hi));
        out.sort_unstable_by_key(|p| p.id);
        (out, lengths)
    }

    /// Counts the days of a partitioned instance (and declares the
    /// concatenation of them that stands for it).
    pub(super) fn count_days(&mut self, d: usize, op: &str, part: &Part) {
        self.add(op, (part.hi - part.lo + 1) as usize, 0);
        self.add(CONCAT, 1, 0);
        let breaks = part.breaks([]);
        for run in breaks.windows(2) {
            let (from, to) = (run[0], run[1] - 1);
            let set = self.sets.id(part.on(from)).0;
            self.days(d, part.class, set, from, to);
        }
    }

    /// Days `from..=to` of declared instance `d`, all of `class` with the
    /// positions `set`: counted, and kept for the stage view.
    pub(super) fn days(&mut self, d: usize, class: Id, set: Id, from: Day, to: Day) {
        self.records
            .push((d, super::view::Rec::Runs(class, set, from, to)));
        self.days_run
            .entry((class, set))
            .or_default()
            .0
            .push((from, to));
    }

    /// Counts the concatenation of days `first..=last` of instances of
    /// `class` meeting the positions `set`.
    pub(super) fn concat(&mut self, class: Id, set: Id, first: Day, last: Day) {
        self.concats
            .entry((class, set, last - first))
            .or_default()
            .0
            .push((last, last));
    }

    /// The windows partitioned stages read with a lookback: one per input
    /// node, length and day of the reader, as `partition::split` makes them.
    pub(super) fn count_windows(&mut self, decls: &[Decl], insts: &[Inst]) {
        for (d, decl) in decls.iter().enumerate() {
            let Inst::Days(reader) = &insts[d] else {
                continue;
            };
            let mut seen: Vec<(usize, u32)> = Vec::new();
            for input in &decl.inputs {
                let n = decl.lookback.of(&input.name) as u32;
                for t in input.target.nodes() {
                    if n > 0 && matches!(insts[t], Inst::Days(_)) && !seen.contains(&(t, n)) {
                        seen.push((t, n));
                    }
                }
            }
            for (t, n) in seen {
                let Inst::Days(input) = &insts[t] else {
                    unreachable!("kept above")
                };
                self.add(CONCAT, (reader.hi - reader.lo + 1) as usize, 0);
                // Day d of the reader reads the window max(lo, d − n) ..= d;
                // it meets a position of the input from its `from` day to
                // n days after its `until`.
                let cut = input.lo + n;
                let extra = input
                    .positions
                    .iter()
                    .flat_map(|q| [q.from, q.until.saturating_add(n)])
                    .chain([cut])
                    // The input's own windows change length on the days
                    // its windows are cut, at either end of this one.
                    .chain(
                        input
                            .lengths
                            .iter()
                            .flat_map(|len| reader.lo..=(len.settled() + n).min(reader.hi + 1)),
                    );
                let mut breaks: Vec<Day> = extra
                    .chain([reader.lo, reader.hi + 1])
                    .filter(|&d| d >= reader.lo && d <= reader.hi + 1)
                    .collect();
                breaks.sort_unstable();
                breaks.dedup();
                for run in breaks.windows(2) {
                    let (from, to) = (run[0], run[1] - 1);
                    let first = from.saturating_sub(n).max(input.lo);
                    let set = self.sets.id(input.meeting(first, from)).0;
                    if from < cut {
                        // Cut at the input's first day: one length a day.
                        for day in from..=to {
                            self.concat(input.class, set, input.lo, day);
                        }
                    } else {
                        self.concats
                            .entry((input.class, set, n))
                            .or_default()
                            .0
                            .push((from, to));
                    }
                }
            }
        }
    }

    /// Whether no day of a stage reading an unpartitioned node is also a
    /// day of another class (see [`count`]).
    pub(super) fn exact(&self) -> bool {
        !self.merge
            || (!self.ambiguous && self.doubles.iter().all(|c| !self.classes.0.contains_key(c)))
    }

    pub(super) fn add(&mut self, op: &str, declared: usize, unique: usize) {
        if declared > 0 {
            *self.declared.entry(op.to_string()).or_default() += declared;
        }
        if unique > 0 {
            *self.unique.entry(op.to_string()).or_default() += unique;
        }
    }

    pub(super) fn stats(mut self) -> Stats {
        let runs: Vec<(Id, usize)> = self
            .days_run
            .iter_mut()
            .map(|(&(class, _), runs)| (class, runs.settle()))
            .collect();
        for (class, days) in runs {
            let op = self.class_op[class as usize].clone();
            self.add(&op, 0, days);
        }
        let concats: usize = self.concats.values_mut().map(Intervals::settle).sum();
        self.add(CONCAT, 0, concats);
        let declared: usize = self.declared.values().sum();
        if !self.merge {
            return Stats {
                declared,
                unique: declared,
                merged: BTreeMap::new(),
            };
        }
        let merged = self
            .declared
            .iter()
            .filter_map(|(op, &n)| {
                let left = self.unique.get(op).copied().unwrap_or(0);
                (n > left).then(|| (op.clone(), n - left))
            })
            .collect();
        Stats {
            declared,
            unique: self.unique.values().sum(),
            merged,
        }
    }
}
