//! `features.compute`: per-symbol, time-ordered features (returns, rolling
//! statistics, EMA, RSI, ATR, session VWAP, relative volume), many in one
//! call.
//!
//! How it works: the columns read are put in one piece, rows are grouped by
//! `partition_by` and put in time order (without copying when they already
//! are), and the partitions are shared among a few threads. Each
//! partition is read once: every requested feature sweeps it with an O(n)
//! kernel while it is still in cache ([`kernels`], [`session`]). Results are
//! written back in the input's row order.
//!
//! Conventions (the first valid row counts from 0 within a partition):
//!
//! | kind | first valid row | reference |
//! |---|---|---|
//! | `return`, `log_return` (window k) | k | TA-Lib ROCP (`return`) |
//! | `rolling_mean/std/min/max`, `zscore` (window n) | n-1 | TA-Lib SMA, STDDEV (ddof 0), MIN, MAX |
//! | `ema` (n) | n-1, seeded with the mean of the first n | TA-Lib EMA |
//! | `rsi` (n) | n (Wilder smoothing) | TA-Lib RSI |
//! | `atr` (n) | n (first ATR = mean of TR 1..=n) | TA-Lib ATR |
//! | `vwap` | each session's first row | hand-computed (TA-Lib has no session VWAP) |
//! | `relative_volume` (n) | once the slot has n earlier values | hand-computed |
//!
//! Missing inputs (null, NaN, ±infinity): for every kind but `vwap` and
//! `relative_volume`, a missing value restarts the feature as though the
//! partition began after it — equivalently for windows, a window holding a
//! missing value is null. `vwap` and `relative_volume` skip the row: its
//! output is null and it adds nothing to the session or slot history.
//! Outputs are never NaN: an undefined value (warm-up, division by zero, a
//! constant window's z-score) is null.

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
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, new_empty_array};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::{cast, concat};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;

pub use params::FeaturesParams;
use params::{Feature, FeatureKind};

use crate::{Inputs, OpError, Operator, Table};

/// The most threads one call uses. Pipelines run many nodes at once, so one
/// node taking every core would only starve its neighbours.
const MAX_THREADS: usize = 4;

/// Below this many rows, starting threads costs more than it saves.
const PARALLEL_MIN_ROWS: usize = 1 << 16;

/// The runtime `features.compute` operator.
#[derive(Debug, Clone)]
struct FeaturesOp {
    pub(super) ts: String,
    pub(super) partition_by: Vec<String>,
    pub(super) close: String,
    pub(super) high: String,
    pub(super) low: String,
    pub(super) volume: String,
    pub(super) features: Vec<Feature>,
}

#[async_trait]
impl Operator for FeaturesOp {
    async fn execute(&self, inputs: Inputs) -> Result<Table, OpError> {
        if inputs.len() != 1 {
            return Err(OpError::Invalid(format!(
                "features.compute takes exactly one input table, got {}; combine tables \
                 first (e.g. with transform.sql) and partition by the symbol",
                inputs.len()
            )));
        }
        let table = inputs.0[0].table.clone();
        let op = self.clone();
        // The features are pure computation; keep them off the async threads.
        tokio::task::spawn_blocking(move || op.compute(&table))
            .await
            .map_err(|e| OpError::Internal(format!("features.compute task failed: {e}")))?
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
    fn compute(&self, table: &Table) -> Result<Table, OpError> {
        let schema = table.schema().clone();
        // Only the columns read are copied into one piece; the others stay
        // in their batches, and the outputs are cut to the same batches.
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
        let whole = |i: usize| -> Result<ArrayRef, OpError> {
            Ok(match batches.as_slice() {
                [] => new_empty_array(schema.field(i).data_type()),
                [one] => one.column(i).clone(),
                many => concat(
                    &many
                        .iter()
                        .map(|b| b.column(i).as_ref())
                        .collect::<Vec<_>>(),
                )?,
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
        let loaded: Vec<Float64Array> = names
            .iter()
            .map(|name| {
                let i = index(name, "read by a feature")?;
                check_numeric(schema.field(i).data_type(), name)?;
                load_f64(&whole(i)?)
            })
            .collect::<Result<_, _>>()?;

        let ts_column = whole(index(&self.ts, "the time column, `ts`")?)?;
        let ts = order::ts_values(&ts_column, &self.ts)?;
        let partition_idx: Vec<usize> = self
            .partition_by
            .iter()
            .map(|name| index(name, "named by `partition_by`"))
            .collect::<Result<_, _>>()?;
        let partition_cols: Vec<Vec<ArrayRef>> = batches
            .iter()
            .map(|b| partition_idx.iter().map(|&i| b.column(i).clone()).collect())
            .collect();
        let layout = order::layout(&partition_cols, &ts, n)?;

        // The inputs in processing order: borrowed when the rows already are
        // in it and hold no nulls, else copied with nulls as NaN.
        let cols: Vec<Cow<[f64]>> = loaded
            .iter()
            .map(|a| in_order(a, layout.perm.as_deref()))
            .collect();
        let clock = if calcs.iter().any(Calc::needs_clock) {
            let (day, slot) = order::clock(&ts_column, &ts)?;
            Some(match layout.perm.as_deref() {
                Some(perm) => (gather(&day, perm), gather(&slot, perm)),
                None => (day, slot),
            })
        } else {
            None
        };
        let col_refs: Vec<&[f64]> = cols.iter().map(|c| c.as_ref()).collect();
        let clock_refs = clock.as_ref().map(|(d, s)| (d.as_slice(), s.as_slice()));

        let mut outputs = run_partitions(&calcs, &layout.parts, &col_refs, clock_refs, n);
        drop(cols);

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
        let outputs: Vec<Float64Array> = outputs.into_iter().map(to_array).collect();
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

/// The values of `array` in processing order, nulls as NaN.
fn in_order<'a>(array: &'a Float64Array, perm: Option<&[u32]>) -> Cow<'a, [f64]> {
    let values: &[f64] = array.values();
    let mut owned = match perm {
        Some(perm) => gather(values, perm),
        None if array.null_count() == 0 => return Cow::Borrowed(values),
        None => values.to_vec(),
    };
    if let Some(nulls) = array.nulls().filter(|n| n.null_count() > 0) {
        match perm {
            Some(perm) => {
                for (v, &row) in owned.iter_mut().zip(perm) {
                    if nulls.is_null(row as usize) {
                        *v = f64::NAN;
                    }
                }
            }
            None => {
                for row in (0..owned.len()).filter(|&i| nulls.is_null(i)) {
                    owned[row] = f64::NAN;
                }
            }
        }
    }
    Cow::Owned(owned)
}

fn gather<T: Copy>(values: &[T], perm: &[u32]) -> Vec<T> {
    perm.iter().map(|&i| values[i as usize]).collect()
}

/// A Float64 array from kernel output, every non-finite value null.
fn to_array(values: Vec<f64>) -> Float64Array {
    let valid = BooleanBuffer::collect_bool(values.len(), |i| values[i].is_finite());
    let nulls = (valid.count_set_bits() < values.len()).then(|| NullBuffer::new(valid));
    Float64Array::new(ScalarBuffer::from(values), nulls)
}

/// Runs every calc over every partition, sharing the partitions among up to
/// [`MAX_THREADS`] threads, and returns one output per calc in processing
/// order.
fn run_partitions(
    calcs: &[Calc],
    parts: &[Range<usize>],
    cols: &[&[f64]],
    clock: Option<(&[i64], &[i64])>,
    n: usize,
) -> Vec<Vec<f64>> {
    let mut outputs: Vec<Vec<f64>> = calcs.iter().map(|_| vec![0.0; n]).collect();
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = if n < PARALLEL_MIN_ROWS {
        1
    } else {
        cores.clamp(1, MAX_THREADS).min(parts.len())
    };
    let spans = spans(parts, threads);

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
        let mut sliced: Vec<&[f64]> = Vec::with_capacity(cols.len());
        for part in &parts[part_ids.clone()] {
            sliced.clear();
            sliced.extend(cols.iter().map(|c| &c[part.clone()]));
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
