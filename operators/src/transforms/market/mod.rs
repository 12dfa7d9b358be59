//! Market-data operators in the language of the domain: a stock's intraday
//! candles with its whale footprint (`features.intraday`), the rebalance of
//! a free-float cap-weighted index (`index.rebalance`), the index's level
//! path and candles (`index.level`), and the whale flow across the index
//! (`whale.aggregate`).
//!
//! They read trades (`symbol`, `ts`, `price`, `volume`, `side`), daily
//! prices (`symbol`, `date`, `reference`, `volume`) and stock data
//! (`symbol`, `shares_outstanding`, `free_float`), as `fetch.synthetic`
//! produces them, and compute in full float precision.

pub(crate) mod carry;
pub(crate) mod intraday;
pub(crate) mod level;
pub(crate) mod rebalance;
pub(crate) mod whale;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Offset, TimeZone};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

use crate::shared::bucket_sort::bucket_sort;
use crate::shared::sessions::Interval;
use crate::{Inputs, OpError};

const DAY_MS: i64 = 86_400_000;

/// The input `name` as one batch.
fn input(inputs: &Inputs, op: &str, name: &str) -> Result<RecordBatch, OpError> {
    let table = inputs.get(name).ok_or_else(|| {
        OpError::Invalid(format!(
            "{op} needs an input named '{name}'; name the node's inputs (inputs: {{{name}: …}})"
        ))
    })?;
    Ok(table.concat()?)
}

/// Column `name` of `batch` (input `input` of `op`) as an array of type `T`.
fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    (op, input): (&str, &str),
    name: &str,
    expected: &str,
) -> Result<&'a T, OpError> {
    let array = batch.column_by_name(name).ok_or_else(|| {
        OpError::Invalid(format!(
            "{op}: input '{input}' has no column '{name}' ({expected}); it has {}",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        OpError::Invalid(format!(
            "{op}: column '{name}' of input '{input}' is {}; expected {expected}",
            array.data_type()
        ))
    })
}

/// A trade as [`Trades::in_time_order`] gives it.
#[derive(Debug, Clone, Copy)]
struct Tick {
    ts: i64,
    /// Its symbol's place in [`Trades::symbol_ranks`].
    rank: u32,
    price: f64,
}

/// Intraday trades, one row each.
struct Trades {
    symbol: StringArray,
    ts: TimestampMillisecondArray,
    price: Float64Array,
    volume: Int64Array,
    side: StringArray,
    zone: Option<Arc<str>>,
}

impl Trades {
    fn read(inputs: &Inputs, op: &str, name: &str) -> Result<Self, OpError> {
        let batch = input(inputs, op, name)?;
        let at = (op, name);
        let ts: &TimestampMillisecondArray = column(&batch, at, "ts", "a millisecond timestamp")?;
        let zone = match ts.data_type() {
            DataType::Timestamp(_, zone) => zone.clone(),
            _ => None,
        };
        let trades = Self {
            symbol: column::<StringArray>(&batch, at, "symbol", "text")?.clone(),
            ts: ts.clone(),
            price: column::<Float64Array>(&batch, at, "price", "Float64")?.clone(),
            volume: column::<Int64Array>(&batch, at, "volume", "Int64")?.clone(),
            side: column::<StringArray>(&batch, at, "side", "text, B or S")?.clone(),
            zone,
        };
        for (col, nulls) in [
            ("symbol", trades.symbol.null_count()),
            ("ts", trades.ts.null_count()),
            ("price", trades.price.null_count()),
            ("volume", trades.volume.null_count()),
        ] {
            if nulls > 0 {
                return Err(OpError::Invalid(format!(
                    "{op}: column '{col}' of input '{name}' holds {nulls} nulls; a trade needs \
                     a symbol, a time, a price and a volume"
                )));
            }
        }
        Ok(trades)
    }

    fn len(&self) -> usize {
        self.ts.len()
    }

    fn symbol(&self, i: usize) -> &str {
        self.symbol.value(i)
    }

    fn ts(&self, i: usize) -> i64 {
        self.ts.value(i)
    }

    fn price(&self, i: usize) -> f64 {
        self.price.value(i)
    }

    fn volume(&self, i: usize) -> i64 {
        self.volume.value(i)
    }

    /// Whether row `i` has the symbol of row `i - 1`: asked of every row,
    /// and a byte loop over a ticker beats a call to `memcmp`.
    fn same_symbol_as_previous(&self, i: usize) -> bool {
        let (a, b) = (self.symbol(i).as_bytes(), self.symbol(i - 1).as_bytes());
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
    }

    /// `Some(true)` for a buyer-initiated trade, `Some(false)` for a
    /// seller-initiated one, `None` when the side is unknown.
    fn buy(&self, i: usize) -> Option<bool> {
        if self.side.is_null(i) {
            return None;
        }
        match self.side.value(i).as_bytes() {
            b"B" => Some(true),
            b"S" => Some(false),
            _ => None,
        }
    }

    /// The symbols sorted, and per row its symbol's place among them, so
    /// rows are ordered by number rather than by comparing text. Rows come
    /// grouped by symbol, so each run of one symbol is looked up once.
    fn symbol_ranks(&self) -> (Vec<&str>, Vec<u32>) {
        let names = self.symbols_sorted();
        let mut ranks = Vec::with_capacity(self.len());
        let mut rank = 0u32;
        for i in 0..self.len() {
            if i == 0 || !self.same_symbol_as_previous(i) {
                rank = names.binary_search(&self.symbol(i)).unwrap_or_default() as u32;
            }
            ranks.push(rank);
        }
        (names, ranks)
    }

    /// The rows in the order of `key`, ties in row order; no sort when
    /// they already are (one symbol's trades, as fetched).
    fn ordered<K: Ord>(&self, key: impl Fn(usize) -> K) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if !order.is_sorted_by_key(|&i| key(i)) {
            // Stable, and quick on what it mostly gets: each symbol's
            // trades already in time order, runs the sort merges.
            order.sort_by_key(|&i| key(i));
        }
        order
    }

    /// The row order by symbol, then time (stable: rows at the same time
    /// keep their order), with the symbols and ranks it was sorted by.
    fn by_symbol_and_time(&self) -> (Vec<&str>, Vec<u32>, Vec<usize>) {
        let (names, ranks) = self.symbol_ranks();
        let order = self.ordered(|i| (ranks[i], self.ts(i)));
        (names, ranks, order)
    }

    /// The trades in order of time, then symbol (stable within both),
    /// given the rows' [`Trades::symbol_ranks`], each with what the index's
    /// level path reads of it: walking them reads memory in order instead of
    /// jumping between rows.
    ///
    /// Each row becomes one `u128` key, `(ts, rank, row)`, with its price
    /// beside it: comparisons touch no column, and the row makes every key
    /// distinct, so any sort of the keys is stable. A day's trades spread
    /// evenly over its hours, so the keys are first distributed into
    /// buckets of equal time span (a counting sort, two passes) and only
    /// the handful in each bucket are sorted: a tenth of the time of
    /// merging one run per symbol.
    fn in_time_order(&self, ranks: &[u32]) -> Vec<Tick> {
        let n = self.len();
        debug_assert!(n <= u32::MAX as usize);
        // Flipping the sign bit orders i64 as u64.
        let ts = |i: usize| (self.ts(i) as u64) ^ (1 << 63);
        let keys: Vec<(u128, u64)> = (0..n)
            .map(|i| {
                let key = u128::from(ts(i)) << 64 | u128::from(ranks[i]) << 32 | i as u128;
                (key, self.price(i).to_bits())
            })
            .collect();
        let tick = |(k, price): (u128, u64)| Tick {
            ts: ((k >> 64) as u64 ^ (1 << 63)) as i64,
            rank: (k >> 32) as u32,
            price: f64::from_bits(price),
        };
        if keys.is_sorted() {
            return keys.into_iter().map(tick).collect();
        }
        let (min, max) = (0..n).fold((u64::MAX, 0), |(lo, hi), i| (lo.min(ts(i)), hi.max(ts(i))));
        let buckets = (n / 16).max(1);
        // Buckets of equal time span.
        let width = (max - min) / buckets as u64 + 1;
        let sorted = bucket_sort(&keys, buckets, |(k, _)| {
            (((k >> 64) as u64 - min) / width) as usize
        });
        sorted.into_iter().map(tick).collect()
    }

    /// The symbols sorted, as [`Trades::symbol_ranks`] numbers them.
    fn symbols_sorted(&self) -> Vec<&str> {
        let mut names: Vec<&str> = (0..self.len())
            .filter(|&i| i == 0 || !self.same_symbol_as_previous(i))
            .map(|i| self.symbol(i))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Refuses a candle length of a day: these operators work within it.
fn intraday(interval: Interval) -> Result<(), crate::ParamError> {
    if interval.seconds().is_none() {
        return Err(crate::ParamError::new(
            &["interval"],
            "candles here are intraday: use 1m, 5m, 15m, 30m or 1h",
        ));
    }
    Ok(())
}

/// Where instants fall: the local trading day and the candle.
struct Clock {
    zone: Option<Tz>,
    interval_ms: i64,
    /// The zone's offset in the last quarter hour asked about: offsets
    /// change on quarter hours at most, and trades come in time order.
    last: std::cell::Cell<(i64, i64)>,
}

impl Clock {
    fn new(zone: Option<&str>, interval: Interval, op: &str) -> Result<Self, OpError> {
        let zone = zone
            .map(|name| {
                name.parse::<Tz>().map_err(|e| {
                    OpError::Invalid(format!("{op}: the trades' time zone '{name}': {e}"))
                })
            })
            .transpose()?;
        let interval_ms = interval.seconds().map(|s| s * 1000).ok_or_else(|| {
            OpError::Invalid(format!(
                "{op}: candles are intraday; use an interval under 1d"
            ))
        })?;
        Ok(Self {
            zone,
            interval_ms,
            last: std::cell::Cell::new((i64::MIN, 0)),
        })
    }

    fn offset_ms(&self, ts: i64) -> i64 {
        const QUARTER_HOUR_MS: i64 = 900_000;
        let Some(zone) = &self.zone else { return 0 };
        let quarter = ts.div_euclid(QUARTER_HOUR_MS);
        let (known, offset) = self.last.get();
        if known == quarter {
            return offset;
        }
        let Some(utc) = DateTime::from_timestamp_millis(ts) else {
            return 0;
        };
        let offset = zone.offset_from_utc_datetime(&utc.naive_utc()).fix();
        let offset = i64::from(offset.local_minus_utc()) * 1000;
        self.last.set((quarter, offset));
        offset
    }

    /// The local day of `ts`, as days since 1970-01-01, and the start of
    /// the candle holding it: candles are aligned on local time, so
    /// 5-minute candles start at 09:15, 09:20, …
    fn day_and_bar(&self, ts: i64) -> (i32, i64) {
        let offset = self.offset_ms(ts);
        let local = ts + offset;
        (
            local.div_euclid(DAY_MS) as i32,
            local.div_euclid(self.interval_ms) * self.interval_ms - offset,
        )
    }
}

fn ts_field(name: &str, zone: &Option<Arc<str>>) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, zone.clone()),
        false,
    )
}

/// A date for messages: 2026-01-05.
fn date_text(day: i32) -> String {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(i64::from(day))))
        .map_or_else(|| day.to_string(), |d| d.to_string())
}
