//! Putting rows in processing order: grouped by partition, each partition in
//! time order, without copying when the input already is; and reading each
//! row's local date and time of day for session features.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::str::FromStr;

use datafusion::arrow::array::temporal_conversions::as_datetime_with_timezone;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, GenericStringArray, OffsetSizeTrait, UInt32Array,
};
use datafusion::arrow::compute::{concat, partition, take};
use datafusion::arrow::datatypes::{
    ArrowTimestampType, DataType, Date32Type, Date64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::row::{RowConverter, SortField};

use super::chunks::Chunks;
use super::par_map;
use crate::OpError;

/// Where each partition's rows are in processing order.
#[derive(Debug)]
pub(super) struct Layout {
    /// The partitions' rows in processing order; they tile `0..n`.
    pub parts: Vec<Range<usize>>,
    /// The input row at each processing position, when that is not the
    /// input order itself.
    pub perm: Option<Vec<u32>>,
}

/// Checks that the time column is a date or a timestamp.
pub(super) fn check_ts_type(data_type: &DataType, name: &str) -> Result<(), OpError> {
    match data_type {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => Ok(()),
        other => Err(OpError::Invalid(format!(
            "features.compute: the time column '{name}' is {other}; it must be a date or a \
             timestamp (cast it first, e.g. with transform.sql: CAST(\"{name}\" AS DATE))"
        ))),
    }
}

/// One batch's time column as i64 (days for Date32, the column's unit
/// otherwise), borrowed when it already is i64.
pub(super) fn ts_values<'a>(array: &'a ArrayRef, name: &str) -> Result<Cow<'a, [i64]>, OpError> {
    check_ts_type(array.data_type(), name)?;
    if array.null_count() > 0 {
        return Err(OpError::Invalid(format!(
            "features.compute: the time column '{name}' has null values; every row needs a \
             time (filter them out first)"
        )));
    }
    Ok(match array.data_type() {
        DataType::Date32 => Cow::Owned(
            array
                .as_primitive::<Date32Type>()
                .values()
                .iter()
                .map(|&d| d as i64)
                .collect(),
        ),
        DataType::Date64 => Cow::Borrowed(array.as_primitive::<Date64Type>().values()),
        DataType::Timestamp(unit, _) => Cow::Borrowed(match unit {
            TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
            TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().values(),
            TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values(),
            TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().values(),
        }),
        other => unreachable!("check_ts_type accepted {other}"),
    })
}

/// Groups the rows by the partition columns (given per batch, in order;
/// none for one series) and orders each group by time, stably. Costs one
/// comparison pass when the input is already grouped and sorted, which is
/// the common case.
pub(super) fn layout(
    partition_cols: &[Vec<ArrayRef>],
    ts: &Chunks<i64>,
    n: usize,
    threads: usize,
) -> Result<Layout, OpError> {
    if n == 0 {
        return Ok(Layout {
            parts: Vec::new(),
            perm: None,
        });
    }
    // Runs of consecutive rows with equal keys, and a group id per run.
    let (runs, run_group) = if partition_cols.iter().all(Vec::is_empty) {
        // One run: the whole table.
        #[allow(clippy::single_range_in_vec_init)]
        let all = vec![0..n];
        (all, vec![0])
    } else {
        let mut runs = Vec::new();
        let mut offset = 0;
        let per_batch = par_map(partition_cols, n, threads, |cols| key_runs(cols));
        for (cols, batch_runs) in partition_cols.iter().zip(per_batch) {
            for run in batch_runs? {
                runs.push(run.start + offset..run.end + offset);
            }
            offset += cols[0].len();
        }
        let ids = group_ids(partition_cols, &runs)?;
        merge_runs(runs, ids)
    };
    let groups = run_group.iter().max().map_or(0, |&g| g as usize + 1);

    let (parts, mut perm) = if groups == runs.len() {
        // Every key is one run: the input is already grouped.
        (runs, None)
    } else {
        // A stable counting sort of the rows by group.
        let mut sizes = vec![0usize; groups];
        for (run, &g) in runs.iter().zip(&run_group) {
            sizes[g as usize] += run.len();
        }
        let mut parts = Vec::with_capacity(groups);
        let mut next = Vec::with_capacity(groups);
        let mut start = 0;
        for size in sizes {
            parts.push(start..start + size);
            next.push(start);
            start += size;
        }
        let mut perm = vec![0u32; n];
        for (run, &g) in runs.iter().zip(&run_group) {
            let at = &mut next[g as usize];
            for row in run.clone() {
                perm[*at] = row as u32;
                *at += 1;
            }
        }
        (parts, Some(perm))
    };

    // Sort, by time, each partition that is not yet in time order. Only
    // then is the time column needed in one piece.
    let sorted: Vec<bool> = match &perm {
        None => par_map(&parts, n, threads, |part| ts.is_sorted(part.clone())),
        Some(p) => {
            let all = ts.to_vec();
            parts
                .iter()
                .map(|part| {
                    p[part.clone()]
                        .windows(2)
                        .all(|w| all[w[0] as usize] <= all[w[1] as usize])
                })
                .collect()
        }
    };
    if sorted.iter().any(|s| !s) {
        let all = ts.to_vec();
        let p = perm.get_or_insert_with(|| (0..n as u32).collect());
        for (part, _) in parts.iter().zip(&sorted).filter(|(_, s)| !**s) {
            // `sort_by_key` is stable: rows at the same time keep their order.
            p[part.clone()].sort_by_key(|&row| all[row as usize]);
        }
    }
    Ok(Layout { parts, perm })
}

/// Runs of consecutive rows with equal keys in one batch.
fn key_runs(cols: &[ArrayRef]) -> Result<Vec<Range<usize>>, OpError> {
    if let [col] = cols
        && col.null_count() == 0
    {
        match col.data_type() {
            DataType::Utf8 => return Ok(byte_runs(col.as_string::<i32>())),
            DataType::LargeUtf8 => return Ok(byte_runs(col.as_string::<i64>())),
            _ => {}
        }
    }
    Ok(partition(cols)?.ranges())
}

/// Runs of equal strings. Comparing neighbours one by one costs a `memcmp`
/// call per row, the largest cost of a call on sorted input. But rows of
/// one length L lie back to back in the values buffer, so a stretch of
/// them all equal is exactly a stretch whose bytes equal themselves shifted
/// by L: one long comparison per run instead of one per row.
fn byte_runs<O: OffsetSizeTrait>(array: &GenericStringArray<O>) -> Vec<Range<usize>> {
    let offsets = array.value_offsets();
    let bytes = array.value_data();
    let n = array.len();
    let mut runs = Vec::new();
    let mut start = 0;
    while start < n {
        let len = offsets[start + 1] - offsets[start];
        let same_len = start + 1 + uniform_steps(&offsets[start + 1..], len);
        // Of the rows of that length, those equal to their predecessor: the
        // first byte where the stretch differs from itself shifted by one
        // row ends the run.
        let (from, to, len) = (
            offsets[start].as_usize(),
            offsets[same_len].as_usize(),
            len.as_usize(),
        );
        let end = if len == 0 {
            same_len
        } else {
            let stretch = &bytes[from..to];
            match first_difference(&stretch[..stretch.len() - len], &stretch[len..]) {
                None => same_len,
                Some(at) => start + at / len + 1,
            }
        };
        runs.push(start..end);
        start = end;
    }
    runs
}

/// How many steps of `step` the offsets take from their first one before
/// a different step (or the end).
fn uniform_steps<O: OffsetSizeTrait>(offsets: &[O], step: O) -> usize {
    const BLOCK: usize = 256;
    let mut done = 0;
    // A whole block is checked without early exit, so that it vectorizes.
    while done + 1 < offsets.len() {
        let end = (done + 1 + BLOCK).min(offsets.len());
        let block = &offsets[done..end];
        let uniform = block[..block.len() - 1]
            .iter()
            .zip(&block[1..])
            .fold(true, |ok, (a, b)| ok & (*b - *a == step));
        if !uniform {
            let first_other = block
                .windows(2)
                .position(|w| w[1] - w[0] != step)
                .expect("a block that is not uniform has a different step");
            return done + first_other;
        }
        done = end - 1;
    }
    done
}

/// The first index where `a` and `b` (of equal length) differ.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 256;
    let mut at = 0;
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        if x != y {
            return x.iter().zip(y).position(|(p, q)| p != q).map(|i| at + i);
        }
        at += x.len();
    }
    None
}

/// Joins neighbouring runs of the same group (a run cut by a batch boundary).
fn merge_runs(runs: Vec<Range<usize>>, ids: Vec<u32>) -> (Vec<Range<usize>>, Vec<u32>) {
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(runs.len());
    let mut merged_ids: Vec<u32> = Vec::with_capacity(runs.len());
    for (run, id) in runs.into_iter().zip(ids) {
        match (merged.last_mut(), merged_ids.last()) {
            (Some(last), Some(&last_id)) if last_id == id => last.end = run.end,
            _ => {
                merged.push(run);
                merged_ids.push(id);
            }
        }
    }
    (merged, merged_ids)
}

/// A dense id per run, equal for runs with equal keys, numbered in order of
/// first appearance.
fn group_ids(partition_cols: &[Vec<ArrayRef>], runs: &[Range<usize>]) -> Result<Vec<u32>, OpError> {
    // The key of each run's first row, taken batch by batch.
    let width = partition_cols[0].len();
    let mut pieces: Vec<Vec<ArrayRef>> = vec![Vec::new(); width];
    let mut offset = 0;
    let mut next_run = 0;
    for cols in partition_cols {
        let len = cols[0].len();
        let mut starts = Vec::new();
        while next_run < runs.len() && runs[next_run].start < offset + len {
            starts.push((runs[next_run].start - offset) as u32);
            next_run += 1;
        }
        let starts = UInt32Array::from(starts);
        for (piece, col) in pieces.iter_mut().zip(cols) {
            piece.push(take(col.as_ref(), &starts, None)?);
        }
        offset += len;
    }
    let keys: Vec<ArrayRef> = pieces
        .iter()
        .map(|p| concat(&p.iter().map(|a| a.as_ref()).collect::<Vec<_>>()))
        .collect::<Result<_, _>>()?;
    let converter = RowConverter::new(
        keys.iter()
            .map(|k| SortField::new(k.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&keys)?;
    let mut ids = HashMap::with_capacity(runs.len().min(1 << 16));
    Ok((0..rows.num_rows())
        .map(|i| {
            let next = ids.len() as u32;
            *ids.entry(rows.row(i)).or_insert(next)
        })
        .collect())
}

/// Each row's local date (days since 1970-01-01) and local time of day (in
/// the column's unit), in input order. A time zone on the column is applied
/// (the date is the one on a wall clock there); a column without one is
/// taken as wall-clock time already. Dates have time of day 0.
pub(super) fn clock(data_type: &DataType, ts: &[i64]) -> Result<(Vec<i64>, Vec<i64>), OpError> {
    let split = |per_day: i64, local: &dyn Fn(i64) -> i64| -> (Vec<i64>, Vec<i64>) {
        ts.iter()
            .map(|&t| {
                let l = local(t);
                (l.div_euclid(per_day), l.rem_euclid(per_day))
            })
            .unzip()
    };
    Ok(match data_type {
        DataType::Date32 => (ts.to_vec(), vec![0; ts.len()]),
        DataType::Date64 => split(86_400_000, &|t| t),
        DataType::Timestamp(unit, tz) => {
            let per_second: i64 = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            match tz {
                None => split(86_400 * per_second, &|t| t),
                Some(name) => {
                    let zone = Tz::from_str(name).map_err(|e| {
                        OpError::Invalid(format!(
                            "features.compute: the time column's time zone: {e}"
                        ))
                    })?;
                    let offset: fn(i64, Tz) -> i64 = match unit {
                        TimeUnit::Second => offset_seconds::<TimestampSecondType>,
                        TimeUnit::Millisecond => offset_seconds::<TimestampMillisecondType>,
                        TimeUnit::Microsecond => offset_seconds::<TimestampMicrosecondType>,
                        TimeUnit::Nanosecond => offset_seconds::<TimestampNanosecondType>,
                    };
                    split(86_400 * per_second, &|t| t + offset(t, zone) * per_second)
                }
            }
        }
        other => {
            return Err(OpError::Internal(format!(
                "clock of a {other} column, which ts_values rejects"
            )));
        }
    })
}

/// The zone's offset from UTC at instant `t`, in seconds.
fn offset_seconds<T: ArrowTimestampType>(t: i64, zone: Tz) -> i64 {
    match as_datetime_with_timezone::<T>(t, zone) {
        Some(local) => local.naive_local().and_utc().timestamp() - local.timestamp(),
        // Out of chrono's range (beyond ±262,000 years): no offset to apply.
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};

    use super::*;

    fn one(ts: &[i64]) -> Chunks<'static, i64> {
        Chunks::one(ts.to_vec())
    }

    fn strings(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    /// The rows of each partition, as input row numbers in processing order.
    fn grouped(layout: &Layout) -> Vec<Vec<u32>> {
        layout
            .parts
            .iter()
            .map(|p| match &layout.perm {
                Some(perm) => perm[p.clone()].to_vec(),
                None => (p.start as u32..p.end as u32).collect(),
            })
            .collect()
    }

    #[test]
    fn string_runs_match_arrows_partition() {
        let cases: [&[&str]; 6] = [
            &[
                "AAPL", "AAPL", "AAPL", "FB", "FB", "AAPL", "GOOG", "GOOG", "GOOG",
            ],
            &["", "", "A", "", "B", "B"],
            &["ABAB", "ABAB", "ABAC", "ABAC", "BABA", "ABAB"],
            &["X"],
            &["AB", "AB", "ABC", "AB", "AB", "A", "B", "B"],
            &["AAAA", "AAAA", "AAAA", "AAAAAAAA", "AAAAAAAA"],
        ];
        for case in cases {
            let array = strings(case);
            let want = partition(std::slice::from_ref(&array)).unwrap().ranges();
            assert_eq!(byte_runs(array.as_string::<i32>()), want, "{case:?}");
        }
        // A long run crossing several comparison blocks, then a change.
        let mut long = vec!["SYM1"; 1000];
        long.extend(vec!["SYM2"; 10]);
        let array = strings(&long);
        assert_eq!(byte_runs(array.as_string::<i32>()), [0..1000, 1000..1010]);
    }

    #[test]
    fn a_grouped_sorted_input_is_used_as_is() {
        let syms = strings(&["A", "A", "B", "B", "B"]);
        let grouped_sorted = layout(&[vec![syms]], &one(&[1, 2, 1, 2, 3]), 5, 2).unwrap();
        assert!(grouped_sorted.perm.is_none());
        assert_eq!(grouped_sorted.parts, [0..2, 2..5]);
    }

    #[test]
    fn interleaved_rows_are_grouped_in_first_seen_order_and_sorted_stably() {
        // Long format sorted by time then symbol, with B's rows at t=2 out
        // of order and a tie at t=3 for A.
        let syms = strings(&["B", "A", "B", "A", "A", "B", "A"]);
        let ts = [1, 1, 3, 3, 3, 2, 0];
        let interleaved = layout(&[vec![syms]], &one(&ts), 7, 2).unwrap();
        assert_eq!(grouped(&interleaved), [vec![0, 5, 2], vec![6, 1, 3, 4]]);
    }

    #[test]
    fn several_partition_columns_and_nulls_form_keys() {
        let exchange = strings(&["X", "Y", "X", "Y"]);
        let id: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(1), None]));
        let keyed = layout(&[vec![exchange, id]], &one(&[0, 0, 1, 1]), 4, 2).unwrap();
        assert_eq!(grouped(&keyed), [vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn without_partitions_the_whole_table_is_one_series() {
        assert_eq!(
            grouped(&layout(&[], &one(&[3, 1, 2]), 3, 2).unwrap()),
            [vec![1, 2, 0]]
        );
        assert!(layout(&[], &one(&[]), 0, 2).unwrap().parts.is_empty());
    }

    #[test]
    fn a_series_cut_by_batch_boundaries_is_still_grouped() {
        // Batches [A A] [A B] [B A]: A's rows 0-2 run across the first
        // boundary (no copy needed for it), but A comes back at row 5.
        let batches = [
            vec![strings(&["A", "A"])],
            vec![strings(&["A", "B"])],
            vec![strings(&["B", "A"])],
        ];
        let ts = Chunks::new(vec![
            Cow::Owned(vec![1, 2]),
            Cow::Owned(vec![3, 1]),
            Cow::Owned(vec![2, 4]),
        ]);
        let all = layout(&batches, &ts, 6, 2).unwrap();
        assert_eq!(grouped(&all), [vec![0, 1, 2, 5], vec![3, 4]]);
        let ts = Chunks::new(vec![Cow::Owned(vec![1, 2]), Cow::Owned(vec![3, 1])]);
        let first_two = layout(&batches[..2], &ts, 4, 2).unwrap();
        assert!(first_two.perm.is_none());
        assert_eq!(first_two.parts, [0..3, 3..4]);
    }

    #[test]
    fn the_clock_reads_local_time_in_the_columns_zone() {
        // 2024-01-02 23:30 UTC is 2024-01-03 06:30 in Ho Chi Minh City and
        // 2024-01-02 18:30 in New York (EST, UTC-5); in July New York is
        // on EDT (UTC-4).
        let utc_ms = 1_704_238_200_000i64;
        let july_ms = 1_719_963_000_000i64; // 2024-07-02 23:30 UTC
        let hour = 3_600_000;
        for (zone, day, tod) in [
            ("+07:00", 19725, 6 * hour + hour / 2),
            ("Asia/Ho_Chi_Minh", 19725, 6 * hour + hour / 2),
            ("America/New_York", 19724, 18 * hour + hour / 2),
        ] {
            let array: ArrayRef =
                Arc::new(TimestampMillisecondArray::from(vec![utc_ms]).with_timezone(zone));
            let ts = ts_values(&array, "ts").unwrap();
            assert_eq!(
                clock(array.data_type(), &ts).unwrap(),
                (vec![day], vec![tod]),
                "{zone}"
            );
        }
        let array: ArrayRef = Arc::new(
            TimestampMillisecondArray::from(vec![july_ms]).with_timezone("America/New_York"),
        );
        let ts = ts_values(&array, "ts").unwrap();
        assert_eq!(
            clock(array.data_type(), &ts).unwrap(),
            (vec![19906], vec![19 * hour + hour / 2])
        );
        // No zone: the wall-clock time as written.
        let array: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![utc_ms]));
        let ts = ts_values(&array, "ts").unwrap();
        assert_eq!(
            clock(array.data_type(), &ts).unwrap(),
            (vec![19724], vec![23 * hour + hour / 2])
        );
    }

    #[test]
    fn a_time_column_must_be_temporal_and_complete() {
        let text = strings(&["2024-01-02"]);
        let err = ts_values(&text, "date").unwrap_err().to_string();
        assert!(err.contains("'date' is Utf8"), "{err}");
        let gaps: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![Some(1), None]));
        let err = ts_values(&gaps, "ts").unwrap_err().to_string();
        assert!(err.contains("has null values"), "{err}");
    }
}
