//! `features.compute`: per-symbol, time-ordered features (returns, rolling
//! statistics, EMA, RSI, ATR, session VWAP, relative volume), many in one
//! call.
//!
//! How it works: rows are grouped by `partition_by` and put in time order
//! (without copying when they already are), and the partitions are shared
//! among a few threads. The data is read in one pass: each partition is
//! brought into cache once and every requested feature sweeps it there with
//! its own O(n) kernel ([`kernels`], [`session`]) — a tight loop per
//! feature rather than a per-row dispatch over features. Results are
//! written back in the input's row order and batches.
//!
//! Conventions (the first valid row counts from 0 within a partition), and
//! what each is checked against:
//!
//! | kind | first valid row | checked against |
//! |---|---|---|
//! | `return` (window k) | k | TA-Lib ROCP |
//! | `log_return` (k) | k | direct computation |
//! | `rolling_mean` (n) | n-1 | TA-Lib SMA |
//! | `rolling_std` (n) | n-1 | TA-Lib STDDEV (ddof 0); direct computation (ddof 1) |
//! | `rolling_min/max`, `zscore` (n) | n-1 | direct computation |
//! | `ema` (n) | n-1, seeded with the mean of the first n | TA-Lib EMA |
//! | `rsi` (n) | n (Wilder smoothing) | TA-Lib RSI |
//! | `atr` (n) | n (first ATR = mean of TR 1..=n) | TA-Lib ATR |
//! | `vwap` | each session's first row | hand-computed (TA-Lib has no session VWAP) |
//! | `relative_volume` (n) | once the slot has n earlier values | hand-computed |
//!
//! Missing inputs (null, NaN, ±infinity): for every kind but `vwap` and
//! `relative_volume`, a missing value restarts the feature as though the
//! partition began after it — equivalently for windows, a window holding a
//! missing value is null. (TA-Lib instead lets a NaN poison every later
//! value of a recursive indicator.) `vwap` and `relative_volume` skip the
//! row: its output is null and it adds nothing to the session or slot
//! history. Outputs are never NaN: an undefined value (warm-up, division by
//! zero, a constant window's z-score) is null.

mod chunks;
mod kernels;
mod order;
mod params;
mod session;
#[cfg(test)]
mod talib_tests;

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use chunks::Chunks;
pub use params::FeaturesParams;
use params::{Feature, FeatureKind};

use crate::{CancelToken, ExecContext, Inputs, OpError, Operator, Table};

/// The most threads one call asks the run's budget for. Pipelines run many
/// nodes at once, so one node taking every core would only starve its
/// neighbours.
const MAX_THREADS: usize = 4;

/// Below this many rows, starting threads costs more than it saves.
const PARALLEL_MIN_ROWS: usize = 1 << 16;

/// The runtime `features.compute` operator.
#[derive(Debug, Clone)]
struct FeaturesOp {
    ts: String,
    partition_by: Vec<String>,
    close: String,
    high: String,
    low: String,
    volume: String,
    features: Vec<Feature>,
}

#[async_trait]
impl Operator for FeaturesOp {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        if inputs.len() != 1 {
            return Err(OpError::Invalid(format!(
                "features.compute takes exactly one input table, got {}; combine tables \
                 first (e.g. with transform.sql) and partition by the symbol",
                inputs.len()
            )));
        }
        let table = inputs.0[0].table.clone();
        // The output columns cannot spill: reserve them in the run's pool.
        let _memory = ctx.reserve(
            "features.compute",
            table.num_rows() * self.features.len() * std::mem::size_of::<f64>() * 2,
        )?;
        let op = self.clone();
        let want = if table.num_rows() < PARALLEL_MIN_ROWS {
            1
        } else {
            MAX_THREADS
        };
        // Pure computation: off the async threads, inside the thread budget.
        ctx.run_cpu(want, move |ctx, threads| {
            let par = Par {
                threads,
                cancel: ctx.cancel_token(),
            };
            op.compute(&table, par)
        })
        .await
    }
}

/// How one feature is computed: the kind's kernel and which of the loaded
/// f64 columns it reads.
#[derive(Debug, Clone, Copy)]
enum Calc {
    Return {
        x: usize,
        k: usize,
        log: bool,
    },
    Mean {
        x: usize,
        w: usize,
    },
    Std {
        x: usize,
        w: usize,
        ddof: u8,
    },
    Zscore {
        x: usize,
        w: usize,
        ddof: u8,
    },
    Min {
        x: usize,
        w: usize,
    },
    Max {
        x: usize,
        w: usize,
    },
    Ema {
        x: usize,
        w: usize,
    },
    Rsi {
        x: usize,
        w: usize,
    },
    Atr {
        h: usize,
        l: usize,
        c: usize,
        w: usize,
    },
    Vwap {
        price: Price,
        v: usize,
    },
    RelVolume {
        v: usize,
        w: usize,
    },
}

#[derive(Debug, Clone, Copy)]
enum Price {
    Typical { h: usize, l: usize, c: usize },
    Column(usize),
}

impl Calc {
    fn needs_clock(&self) -> bool {
        matches!(self, Calc::Vwap { .. } | Calc::RelVolume { .. })
    }

    /// Computes the feature over one partition: `cols` are the loaded
    /// columns and `clock` the local (day, time of day) of each row, all
    /// sliced to the partition, in time order.
    fn run(&self, cols: &[&[f64]], clock: Option<(&[i64], &[i64])>, out: &mut [f64]) {
        use kernels::*;
        match *self {
            Calc::Return { x, k, log } => {
                by_runs(&[cols[x]], out, |r, o| returns(&cols[x][r], k, log, o))
            }
            Calc::Mean { x, w } => by_runs(&[cols[x]], out, |r, o| rolling_mean(&cols[x][r], w, o)),
            Calc::Std { x, w, ddof } => {
                by_runs(&[cols[x]], out, |r, o| rolling_std(&cols[x][r], w, ddof, o))
            }
            Calc::Zscore { x, w, ddof } => by_runs(&[cols[x]], out, |r, o| {
                rolling_zscore(&cols[x][r], w, ddof, o)
            }),
            Calc::Min { x, w } => by_runs(&[cols[x]], out, |r, o| {
                rolling_extreme::<false>(&cols[x][r], w, o)
            }),
            Calc::Max { x, w } => by_runs(&[cols[x]], out, |r, o| {
                rolling_extreme::<true>(&cols[x][r], w, o)
            }),
            Calc::Ema { x, w } => by_runs(&[cols[x]], out, |r, o| ema(&cols[x][r], w, o)),
            Calc::Rsi { x, w } => by_runs(&[cols[x]], out, |r, o| rsi(&cols[x][r], w, o)),
            Calc::Atr { h, l, c, w } => by_runs(&[cols[h], cols[l], cols[c]], out, |r, o| {
                atr(&cols[h][r.clone()], &cols[l][r.clone()], &cols[c][r], w, o)
            }),
            Calc::Vwap { price, v } => {
                let (day, _) = clock.expect("vwap is given the clock");
                match price {
                    Price::Typical { h, l, c } => {
                        session::vwap_typical(cols[h], cols[l], cols[c], cols[v], day, out)
                    }
                    Price::Column(p) => session::vwap(cols[p], cols[v], day, out),
                }
            }
            Calc::RelVolume { v, w } => {
                let (_, slot) = clock.expect("relative_volume is given the clock");
                session::relative_volume(cols[v], slot, w, out)
            }
        }
    }
}

impl FeaturesOp {
    fn compute(&self, table: &Table, par: Par<'_>) -> Result<Table, OpError> {
        let schema = table.schema().clone();
        // The input stays in its batches: the columns read are viewed batch
        // by batch, and the outputs are cut to the same batches.
        let batches: Vec<&RecordBatch> = table
            .batches()
            .iter()
            .filter(|b| b.num_rows() > 0)
            .collect();
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        let index = |name: &str, role: &str| -> Result<usize, OpError> {
            schema.index_of(name).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                OpError::Invalid(format!(
                    "features.compute: the input has no column '{name}' ({role}); its columns \
                     are {}",
                    names.join(", ")
                ))
            })
        };
        for feature in &self.features {
            if schema.field_with_name(&feature.name).is_ok() {
                return Err(OpError::Invalid(format!(
                    "features.compute: the input already has a column '{}'; give the feature \
                     another `name:`",
                    feature.name
                )));
            }
        }
        if u32::try_from(n).is_err() {
            return Err(OpError::Invalid(format!(
                "features.compute: {n} rows in one table is more than it handles (2^32 - 1); \
                 split the input"
            )));
        }

        // Which f64 columns the features read, each loaded once.
        let mut names: Vec<String> = Vec::new();
        let mut slot = |name: &str| -> usize {
            names.iter().position(|n| n == name).unwrap_or_else(|| {
                names.push(name.to_string());
                names.len() - 1
            })
        };
        let calcs: Vec<Calc> = self
            .features
            .iter()
            .map(|f| {
                let default = match f.kind {
                    FeatureKind::RelativeVolume => &self.volume,
                    _ => &self.close,
                };
                let x = slot(f.column.as_deref().unwrap_or(default));
                let w = f.window;
                match f.kind {
                    FeatureKind::Return => Calc::Return {
                        x,
                        k: w,
                        log: false,
                    },
                    FeatureKind::LogReturn => Calc::Return { x, k: w, log: true },
                    FeatureKind::RollingMean => Calc::Mean { x, w },
                    FeatureKind::RollingStd => Calc::Std { x, w, ddof: f.ddof },
                    FeatureKind::Zscore => Calc::Zscore { x, w, ddof: f.ddof },
                    FeatureKind::RollingMin => Calc::Min { x, w },
                    FeatureKind::RollingMax => Calc::Max { x, w },
                    FeatureKind::Ema => Calc::Ema { x, w },
                    FeatureKind::Rsi => Calc::Rsi { x, w },
                    FeatureKind::Atr => Calc::Atr {
                        h: slot(&self.high),
                        l: slot(&self.low),
                        c: x,
                        w,
                    },
                    FeatureKind::Vwap => Calc::Vwap {
                        price: match &f.column {
                            Some(_) => Price::Column(x),
                            None => Price::Typical {
                                h: slot(&self.high),
                                l: slot(&self.low),
                                c: x,
                            },
                        },
                        v: slot(&self.volume),
                    },
                    FeatureKind::RelativeVolume => Calc::RelVolume { v: x, w },
                }
            })
            .collect();
        // Only the columns some feature reads are required.
        // Each column read, batch by batch, as f64 with nulls as NaN.
        let loaded: Vec<Vec<Float64Array>> = names
            .iter()
            .map(|name| {
                let i = index(name, "read by a feature")?;
                check_numeric(schema.field(i).data_type(), name)?;
                batches.iter().map(|b| load_f64(b.column(i))).collect()
            })
            .collect::<Result<_, _>>()?;
        let inputs: Vec<Chunks<f64>> = loaded
            .iter()
            .map(|arrays| Chunks::new(arrays.iter().map(nan_for_null).collect()))
            .collect();

        let ts_index = index(&self.ts, "the time column, `ts`")?;
        let ts_type = schema.field(ts_index).data_type();
        order::check_ts_type(ts_type, &self.ts)?;
        let ts = Chunks::new(
            batches
                .iter()
                .map(|b| order::ts_values(b.column(ts_index), &self.ts))
                .collect::<Result<_, _>>()?,
        );
        let partition_idx: Vec<usize> = self
            .partition_by
            .iter()
            .map(|name| index(name, "named by `partition_by`"))
            .collect::<Result<_, _>>()?;
        let partition_cols: Vec<Vec<ArrayRef>> = batches
            .iter()
            .map(|b| partition_idx.iter().map(|&i| b.column(i).clone()).collect())
            .collect();
        let layout = order::layout(&partition_cols, &ts, n, par.threads)?;

        // With rows to reorder, the inputs are gathered into processing order.
        let inputs = match layout.perm.as_deref() {
            None => inputs,
            Some(perm) => inputs
                .iter()
                .map(|c| Chunks::one(gather(&c.to_vec(), perm)))
                .collect(),
        };
        let clock = if calcs.iter().any(Calc::needs_clock) {
            let (day, slot) = order::clock(ts_type, &ts.to_vec())?;
            Some(match layout.perm.as_deref() {
                Some(perm) => (gather(&day, perm), gather(&slot, perm)),
                None => (day, slot),
            })
        } else {
            None
        };
        drop(ts);
        let clock_refs = clock.as_ref().map(|(d, s)| (d.as_slice(), s.as_slice()));

        let mut outputs = run_partitions(&calcs, &layout.parts, &inputs, clock_refs, n, par);
        par.cancel_check()?;
        drop(inputs);
        drop(loaded);

        if let Some(perm) = &layout.perm {
            for out in outputs.iter_mut() {
                let mut scattered = vec![0.0; n];
                for (&row, &v) in perm.iter().zip(out.iter()) {
                    scattered[row as usize] = v;
                }
                *out = scattered;
            }
        }

        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        for feature in &self.features {
            fields.push(Arc::new(Field::new(&feature.name, DataType::Float64, true)));
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        let outputs: Vec<Float64Array> = outputs
            .into_iter()
            .map(|o| to_array(o, par.threads))
            .collect();
        let mut offset = 0;
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let rows = batch.num_rows();
            let mut columns = batch.columns().to_vec();
            columns.extend(
                outputs
                    .iter()
                    .map(|o| Arc::new(o.slice(offset, rows)) as ArrayRef),
            );
            out.push(RecordBatch::try_new(schema.clone(), columns)?);
            offset += rows;
        }
        Ok(Table::new(schema, out))
    }
}

fn check_numeric(data_type: &DataType, name: &str) -> Result<(), OpError> {
    if data_type.is_numeric() {
        Ok(())
    } else {
        Err(OpError::Invalid(format!(
            "features.compute: column '{name}' is {data_type}; features read numbers \
             (integers, floats or decimals)"
        )))
    }
}

/// Casts a numeric column to Float64.
fn load_f64(array: &ArrayRef) -> Result<Float64Array, OpError> {
    Ok(cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

/// A batch's values with nulls as NaN: borrowed when it has no nulls.
fn nan_for_null(array: &Float64Array) -> Cow<'_, [f64]> {
    let values: &[f64] = array.values();
    match array.nulls().filter(|n| n.null_count() > 0) {
        None => Cow::Borrowed(values),
        Some(nulls) => Cow::Owned(
            values
                .iter()
                .zip(nulls.iter())
                .map(|(&v, valid)| if valid { v } else { f64::NAN })
                .collect(),
        ),
    }
}

fn gather<T: Copy>(values: &[T], perm: &[u32]) -> Vec<T> {
    perm.iter().map(|&i| values[i as usize]).collect()
}

/// A Float64 array from kernel output, every non-finite value null.
fn to_array(values: Vec<f64>, threads: usize) -> Float64Array {
    // The validity bits, 64 rows to a word, built on several threads.
    let blocks: Vec<&[f64]> = values.chunks(1 << 16).collect();
    let words: Vec<u64> = par_map(&blocks, values.len(), threads, |block| {
        block
            .chunks(64)
            .map(|rows| {
                rows.iter()
                    .enumerate()
                    .fold(0u64, |word, (i, v)| word | ((v.is_finite() as u64) << i))
            })
            .collect::<Vec<u64>>()
    })
    .concat();
    let valid = NullBuffer::new(BooleanBuffer::new(Buffer::from_vec(words), 0, values.len()));
    let nulls = (valid.null_count() > 0).then_some(valid);
    Float64Array::new(ScalarBuffer::from(values), nulls)
}

/// The threads one call may use (taken from the run's budget) and its
/// cancellation, checked between partitions.
#[derive(Clone, Copy)]
struct Par<'a> {
    threads: usize,
    cancel: &'a CancelToken,
}

impl Par<'_> {
    fn cancel_check(&self) -> Result<(), OpError> {
        if self.cancel.is_cancelled() {
            Err(OpError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// How many of `threads` to use for `rows` rows of work.
fn threads_for(rows: usize, threads: usize) -> usize {
    if rows < PARALLEL_MIN_ROWS {
        1
    } else {
        threads.max(1)
    }
}

/// `items.iter().map(f)` on up to `threads` threads (fewer for little
/// work), each taking a consecutive share of the items.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    rows: usize,
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads_for(rows, threads).min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let share = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(share)
            .map(|chunk| {
                let f = &f;
                s.spawn(move || chunk.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a features.compute thread panicked"))
            .collect()
    })
}

/// Runs every calc over every partition, sharing the partitions among up to
/// `par.threads` threads, and returns one output per calc in processing
/// order.
fn run_partitions(
    calcs: &[Calc],
    parts: &[Range<usize>],
    cols: &[Chunks<f64>],
    clock: Option<(&[i64], &[i64])>,
    n: usize,
    par: Par<'_>,
) -> Vec<Vec<f64>> {
    let mut outputs: Vec<Vec<f64>> = calcs.iter().map(|_| vec![0.0; n]).collect();
    let spans = spans(parts, threads_for(n, par.threads).min(parts.len()));

    // Each span's share of each output, so threads write disjoint slices.
    let mut shares: Vec<Vec<&mut [f64]>> = spans.iter().map(|_| Vec::new()).collect();
    for out in outputs.iter_mut() {
        let mut rest: &mut [f64] = out;
        for (share, (_, rows)) in shares.iter_mut().zip(&spans) {
            let (head, tail) = rest.split_at_mut(rows.len());
            share.push(head);
            rest = tail;
        }
    }

    let work = |(part_ids, rows): &(Range<usize>, Range<usize>), mut share: Vec<&mut [f64]>| {
        // Where a partition spans batches, its values are copied here: one
        // buffer per column, reused, and small enough to stay in cache.
        let mut scratch: Vec<Vec<f64>> = cols.iter().map(|_| Vec::new()).collect();
        for part in &parts[part_ids.clone()] {
            // A timed-out or cancelled call stops within one partition.
            if par.cancel.is_cancelled() {
                return;
            }
            let sliced: Vec<&[f64]> = cols
                .iter()
                .zip(scratch.iter_mut())
                .map(|(c, s)| c.slice(part.clone(), s))
                .collect();
            let clock = clock.map(|(d, s)| (&d[part.clone()], &s[part.clone()]));
            let local = part.start - rows.start..part.end - rows.start;
            for (calc, out) in calcs.iter().zip(share.iter_mut()) {
                calc.run(&sliced, clock, &mut out[local.clone()]);
            }
        }
    };
    if spans.len() <= 1 {
        for (span, share) in spans.iter().zip(shares) {
            work(span, share);
        }
    } else {
        std::thread::scope(|s| {
            for (span, share) in spans.iter().zip(shares) {
                let work = &work;
                s.spawn(move || work(span, share));
            }
        });
    }
    outputs
}

/// Splits the partitions (which tile the rows in order) into at most
/// `threads` consecutive groups of about equal rows: (partition indexes,
/// rows covered).
fn spans(parts: &[Range<usize>], threads: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let Some(last) = parts.last() else {
        return Vec::new();
    };
    let total = last.end;
    let mut spans = Vec::with_capacity(threads);
    let mut first = 0;
    for (i, part) in parts.iter().enumerate() {
        let k = spans.len() + 1;
        // Close the span once it holds its share of the rows.
        if part.end * threads >= total * k || i + 1 == parts.len() {
            spans.push((first..i + 1, parts[first].start..part.end));
            first = i + 1;
        }
    }
    spans
}

#[cfg(test)]
mod tests;
