//! A column as it arrived, one slice per batch, read without first copying
//! it into one piece: a partition inside one batch is borrowed in place,
//! and one spanning batches is copied into a small per-thread buffer that
//! stays in cache, rather than the whole column into a fresh allocation.

use std::borrow::Cow;
use std::ops::Range;

#[derive(Debug)]
pub(super) struct Chunks<'a, T: Clone> {
    pieces: Vec<Cow<'a, [T]>>,
    /// The first row of each piece, then the number of rows.
    starts: Vec<usize>,
}

impl<'a, T: Copy> Chunks<'a, T> {
    pub fn new(pieces: Vec<Cow<'a, [T]>>) -> Self {
        let mut starts = Vec::with_capacity(pieces.len() + 1);
        let mut at = 0;
        for piece in &pieces {
            starts.push(at);
            at += piece.len();
        }
        starts.push(at);
        Self { pieces, starts }
    }

    pub fn one(values: Vec<T>) -> Self {
        Self::new(vec![Cow::Owned(values)])
    }

    /// The pieces of rows `r`, in order.
    pub fn pieces(&self, r: Range<usize>) -> impl Iterator<Item = &[T]> {
        // The last piece starting at or before r.start.
        let first = self
            .starts
            .partition_point(|&s| s <= r.start)
            .saturating_sub(1);
        self.pieces[first..]
            .iter()
            .zip(&self.starts[first..])
            .take_while(move |&(_, &start)| start < r.end)
            .map(move |(piece, &start)| {
                let from = r.start.saturating_sub(start);
                let to = (r.end - start).min(piece.len());
                &piece[from..to]
            })
    }

    /// Rows `r` as one slice: borrowed when they lie in one piece, else
    /// copied into `scratch`.
    pub fn slice<'s>(&'s self, r: Range<usize>, scratch: &'s mut Vec<T>) -> &'s [T] {
        let mut pieces = self.pieces(r.clone());
        match (pieces.next(), pieces.next()) {
            (Some(only), None) => only,
            (None, _) => &[],
            (Some(first), Some(second)) => {
                scratch.clear();
                scratch.reserve(r.len());
                scratch.extend_from_slice(first);
                scratch.extend_from_slice(second);
                for piece in pieces {
                    scratch.extend_from_slice(piece);
                }
                scratch
            }
        }
    }

    /// Every row in one vector.
    pub fn to_vec(&self) -> Vec<T> {
        let mut all = Vec::with_capacity(*self.starts.last().unwrap_or(&0));
        for piece in &self.pieces {
            all.extend_from_slice(piece);
        }
        all
    }
}

impl Chunks<'_, i64> {
    /// Whether rows `r` are in non-decreasing order.
    pub fn is_sorted(&self, r: Range<usize>) -> bool {
        let mut last = i64::MIN;
        for piece in self.pieces(r) {
            let Some(&first) = piece.first() else {
                continue;
            };
            if first < last || !non_decreasing(piece) {
                return false;
            }
            last = piece[piece.len() - 1];
        }
        true
    }
}

/// Whether `xs` never decreases: compared in blocks with no early exit
/// inside a block, so that it vectorizes.
fn non_decreasing(xs: &[i64]) -> bool {
    let Some(last) = xs.len().checked_sub(1) else {
        return true;
    };
    let (before, after) = (&xs[..last], &xs[1..]);
    before
        .chunks(1024)
        .zip(after.chunks(1024))
        .all(|(a, b)| a.iter().zip(b).fold(true, |ok, (p, q)| ok & (p <= q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(pieces: &[&[i64]]) -> Chunks<'static, i64> {
        Chunks::new(pieces.iter().map(|p| Cow::Owned(p.to_vec())).collect())
    }

    #[test]
    fn slices_borrow_inside_a_piece_and_copy_across_pieces() {
        let c = chunks(&[&[0, 1, 2], &[3, 4], &[], &[5, 6, 7]]);
        let mut scratch = Vec::new();
        assert_eq!(c.slice(0..3, &mut scratch), [0, 1, 2]);
        assert!(scratch.is_empty());
        assert_eq!(c.slice(1..2, &mut scratch), [1]);
        assert_eq!(c.slice(2..6, &mut scratch), [2, 3, 4, 5]);
        assert_eq!(c.slice(3..5, &mut scratch), [3, 4]);
        assert_eq!(c.slice(5..8, &mut scratch), [5, 6, 7]);
        assert_eq!(c.slice(0..8, &mut scratch), [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(c.to_vec(), [0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn sortedness_is_checked_across_pieces() {
        let c = chunks(&[&[1, 2], &[2, 5], &[4, 6]]);
        assert!(c.is_sorted(0..4));
        assert!(!c.is_sorted(0..5));
        assert!(c.is_sorted(4..6));
        assert!(!c.is_sorted(3..5));
    }
}
