//! The generator: a small seeded PRNG, daily closes walked from a fixed
//! epoch, and intraday trades bridged between consecutive closes.
//!
//! Every value for a (seed, symbol, day) is drawn from a generator keyed by
//! exactly those, and each close is walked from [`EPOCH`] whatever range was
//! asked for, so a day's rows do not depend on the range requested.

use std::collections::{HashMap, VecDeque};
use std::f64::consts::TAU;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use super::Dataset;
use super::market::{Band, Listing, listing, round, round_to_tick};
use crate::shared::bucket_sort::bucket_sort;
use crate::shared::calendar::{TIME_ZONE, local_to_utc_ms, trading_days};
use datafusion::arrow::compute::concat_batches;

use crate::{CancelToken, OpError, Table};

/// The first trading day of the synthetic history, 2000-01-03 (a Monday).
pub(super) const EPOCH: i32 = 10_959;
/// The last day the generator serves, 2100-12-31.
pub(super) const LAST_DAY: i32 = 47_846;

/// Batches as DataFusion sizes them (its default `batch_size`), so a sort
/// under a memory limit can spill in pieces that fit.
const MAX_BATCH_ROWS: usize = 8_192;

// Independent draws for independent purposes.
const STREAM_LISTING: u64 = 1;
const STREAM_CLOSE: u64 = 2;
const STREAM_TRADES: u64 = 3;
pub(super) const STREAM_FAILURE: u64 = 4;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finalizer.
fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64, keyed by hand-written hashing rather than std's `Hasher`,
/// whose output may change between Rust releases: the data must not.
pub(super) struct Rng(u64);

impl Rng {
    /// A generator for one purpose of one symbol, named by `parts`
    /// (a stream, a day, a call count).
    pub fn new(seed: u64, symbol: &str, parts: &[u64]) -> Self {
        let mut h = fmix(seed ^ GOLDEN);
        for &b in symbol.as_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3); // FNV-1a
        }
        for &p in parts {
            h = fmix(h ^ fmix(p.wrapping_add(GOLDEN)));
        }
        Self(h)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        fmix(self.0)
    }

    /// Uniform in [0, 1).
    pub(super) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller), for the daily closes: one draw a day,
    /// kept as it was so the daily history does not change.
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
    }

    /// Standard normal by the ziggurat method, for intraday trades: two
    /// draws a trade, mostly a table lookup each.
    fn ziggurat(&mut self) -> f64 {
        super::ziggurat::normal(|| self.next_u64())
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// What stays fixed for a symbol across days.
struct Model {
    listing: Listing,
    daily_vol: f64,
}

fn model(seed: u64, symbol: &str) -> Model {
    let mut rng = Rng::new(seed, symbol, &[STREAM_LISTING]);
    let listing = listing(symbol, || rng.uniform());
    Model {
        listing,
        daily_vol: 0.015 + 0.005 * rng.uniform(),
    }
}

/// One trading day: the band it traded in and its closing price.
#[derive(Debug, Clone, Copy)]
struct Session {
    day: i32,
    band: Band,
    close: i64,
}

/// Daily pull of log(price / base price) back to zero. A half-life of about
/// a year keeps 25 years of random walk near today's price levels (typically
/// within ±25% of the base) instead of drifting to 20× or 1/20.
const REVERSION: f64 = 0.003;

/// The daily closes of one (seed, symbol) walked from [`EPOCH`] so far:
/// `days[i]` closed at `closes[i]`.
#[derive(Debug, Default)]
struct Walk {
    days: Vec<i32>,
    closes: Vec<i64>,
    /// The daily bars of the days whose trades were generated, so that
    /// `prices` does not generate a day's trades again after `ticks` did.
    bars: HashMap<i32, DayBar>,
}

/// A day's trades summed up: what `prices` reports besides the band.
#[derive(Debug, Clone, Copy)]
struct DayBar {
    open: i64,
    high: i64,
    low: i64,
    close: i64,
    volume: i64,
}

impl DayBar {
    fn of(trades: &[Trade]) -> Self {
        Self {
            open: trades[0].price,
            high: trades.iter().map(|t| t.price).max().unwrap_or_default(),
            low: trades.iter().map(|t| t.price).min().unwrap_or_default(),
            close: trades[trades.len() - 1].price,
            volume: trades.iter().map(|t| t.volume).sum(),
        }
    }
}

/// The bar of `session`, generating its trades only when no fetch has.
fn day_bar(seed: u64, symbol: &str, model: &Model, session: &Session) -> DayBar {
    let walk = walk_of(seed, symbol);
    if let Some(bar) = walk
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .bars
        .get(&session.day)
    {
        return *bar;
    }
    let trades = day_trades(seed, symbol, model, session);
    let bar = DayBar::of(&trades);
    remember(seed, symbol, session.day, bar);
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .put((seed, symbol.to_string(), session.day), trades);
    bar
}

/// A day's trades: those `prices` generated for the day's bar if they are
/// still kept, else generated now.
fn trades_of(seed: u64, symbol: &str, model: &Model, session: &Session) -> Vec<Trade> {
    let kept = PENDING.lock().unwrap_or_else(|e| e.into_inner()).take(&(
        seed,
        symbol.to_string(),
        session.day,
    ));
    kept.unwrap_or_else(|| day_trades(seed, symbol, model, session))
}

/// Trades that `prices` generated for a bar before `ticks` asked for the
/// day, kept for that fetch: a pipeline fetching both per day otherwise
/// generates every day twice. Each day is handed out once; the oldest go
/// beyond [`PENDING_BYTES`], to be generated again if asked for.
static PENDING: Mutex<Pending> = Mutex::new(Pending {
    days: None,
    order: VecDeque::new(),
    bytes: 0,
});
const PENDING_BYTES: usize = 64 << 20;

type DayKey = (u64, String, i32);

struct Pending {
    days: Option<HashMap<DayKey, Vec<Trade>>>,
    order: VecDeque<DayKey>,
    bytes: usize,
}

impl Pending {
    fn put(&mut self, key: DayKey, trades: Vec<Trade>) {
        let days = self.days.get_or_insert_with(HashMap::new);
        self.bytes += std::mem::size_of_val(trades.as_slice());
        if let Some(old) = days.insert(key.clone(), trades) {
            self.bytes -= std::mem::size_of_val(old.as_slice());
        } else {
            self.order.push_back(key);
        }
        if self.order.len() > 2 * days.len() + 1024 {
            // Drop the keys of days handed out since.
            self.order.retain(|k| days.contains_key(k));
        }
        while self.bytes > PENDING_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = days.remove(&oldest) {
                self.bytes -= std::mem::size_of_val(gone.as_slice());
            }
        }
    }

    fn take(&mut self, key: &DayKey) -> Option<Vec<Trade>> {
        let trades = self.days.as_mut()?.remove(key)?;
        self.bytes -= std::mem::size_of_val(trades.as_slice());
        // Its key stays in `order` until it comes up, then finds nothing.
        Some(trades)
    }
}

fn remember(seed: u64, symbol: &str, day: i32, bar: DayBar) {
    let walk = walk_of(seed, symbol);
    walk.lock()
        .unwrap_or_else(|e| e.into_inner())
        .bars
        .insert(day, bar);
}

/// Walks kept by (seed, symbol), so that fetching day by day does not walk
/// 25 years of closes for every day. At most [`WALKS_KEPT`] of them (about
/// 80 KB each); beyond that they are dropped and walked again when asked.
static WALKS: Mutex<Option<Walks>> = Mutex::new(None);
type Walks = HashMap<(u64, String), Arc<Mutex<Walk>>>;
const WALKS_KEPT: usize = 2_048;

fn walk_of(seed: u64, symbol: &str) -> Arc<Mutex<Walk>> {
    let mut walks = WALKS.lock().unwrap_or_else(|e| e.into_inner());
    let walks = walks.get_or_insert_with(HashMap::new);
    if walks.len() >= WALKS_KEPT && !walks.contains_key(&(seed, symbol.to_string())) {
        walks.clear();
    }
    walks.entry((seed, symbol.to_string())).or_default().clone()
}

/// The sessions of the trading days in `from..=to`, each close walked from
/// [`EPOCH`] so it does not depend on `from`.
fn sessions(seed: u64, symbol: &str, model: &Model, from: i32, to: i32) -> Vec<Session> {
    let walk = walk_of(seed, symbol);
    let mut walk = walk.lock().unwrap_or_else(|e| e.into_inner());
    let base = model.listing.base_price as f64;
    let walked = walk.days.last().copied().unwrap_or(EPOCH - 1);
    if walked < to {
        let mut prev = walk
            .closes
            .last()
            .copied()
            .unwrap_or(model.listing.base_price);
        for day in trading_days(walked + 1, to) {
            let band = Band::new(prev);
            let shock =
                model.daily_vol * Rng::new(seed, symbol, &[STREAM_CLOSE, day as u64]).normal();
            let pull = -REVERSION * (prev as f64 / base).ln();
            let close = band.clamp(round_to_tick(prev as f64 * (shock + pull).exp()));
            walk.days.push(day);
            walk.closes.push(close);
            prev = close;
        }
    }
    let first = walk.days.partition_point(|&d| d < from);
    let last = walk.days.partition_point(|&d| d <= to);
    (first..last)
        .map(|i| {
            let prev = if i == 0 {
                model.listing.base_price
            } else {
                walk.closes[i - 1]
            };
            Session {
                day: walk.days[i],
                band: Band::new(prev),
                close: walk.closes[i],
            }
        })
        .collect()
}

/// One trade.
struct Trade {
    /// UTC epoch milliseconds.
    ts: i64,
    price: i64,
    volume: i64,
    buy: bool,
}

const MINUTE_MS: i64 = 60_000;
/// Continuous trading: 09:15–11:30, then 13:00–14:30, local time.
const MORNING_OPEN_MS: i64 = (9 * 60 + 15) * MINUTE_MS;
const MORNING_MS: i64 = 135 * MINUTE_MS;
const AFTERNOON_OPEN_MS: i64 = 13 * 60 * MINUTE_MS;
const CONTINUOUS_MS: i64 = MORNING_MS + 90 * MINUTE_MS;
/// The closing auction (ATC) is matched at 14:45, 15 minutes of trading
/// time after continuous trading ends; the intraday path reaches the close
/// then.
const ATC_MS: i64 = (14 * 60 + 45) * MINUTE_MS;
const ATC_TRADING_MS: i64 = CONTINUOUS_MS + 15 * MINUTE_MS;

/// How strongly trades cluster at the open and the close (0 = uniform).
const U_SHAPE: f64 = 0.6;
/// The overnight gap, as a share of daily volatility.
const OPENING_GAP: f64 = 0.4;
/// The share of daily volatility realised within the day.
const INTRADAY_VOL: f64 = 0.8;
/// The chance a trade is a block trade of 50,000–500,000 shares.
const BLOCK_PROBABILITY: f64 = 0.003;

/// A day's trades, ending with the closing auction at the day's close. The
/// price path is a Brownian bridge in log price from an opening level (the
/// reference, i.e. the previous close, moved by an overnight gap) to the
/// close, rounded to the tick and held in the band.
fn day_trades(seed: u64, symbol: &str, model: &Model, session: &Session) -> Vec<Trade> {
    let mut rng = Rng::new(seed, symbol, &[STREAM_TRADES, session.day as u64]);
    let n = 1_000 + rng.below(2_001) as usize;
    let gap = OPENING_GAP * model.daily_vol * rng.ziggurat();

    // Arrival times in trading milliseconds: sorted uniforms bent by
    // u ↦ u − a·sin(2πu)/2π, whose slope is smallest at both ends, so trades
    // crowd the open and the close as on a real day. The uniforms are
    // sorted as their 53-bit integers, in the same order.
    let u = sorted_uniform(&(0..n).map(|_| rng.next_u64() >> 11).collect::<Vec<_>>());
    let mut times: Vec<i64> = u
        .iter()
        .map(|&u| {
            let u = u as f64 / (1u64 << 53) as f64;
            let t = u - U_SHAPE * (TAU * u).sin() / TAU;
            ((t * CONTINUOUS_MS as f64) as i64).clamp(0, CONTINUOUS_MS - 1)
        })
        .collect();
    times.dedup(); // strictly increasing timestamps

    let total = ATC_TRADING_MS as f64;
    let sigma = model.daily_vol * INTRADAY_VOL;
    let mut walk = Vec::with_capacity(times.len());
    let (mut w, mut last) = (0.0, 0);
    for &t in &times {
        w += sigma * ((t - last) as f64 / total).sqrt() * rng.ziggurat();
        walk.push(w);
        last = t;
    }
    let w_end = w + sigma * ((ATC_TRADING_MS - last) as f64 / total).sqrt() * rng.ziggurat();

    let from = (session.band.reference as f64).ln() + gap;
    let to = (session.close as f64).ln();
    let mut trades = Vec::with_capacity(times.len() + 1);
    let mut prev = session.band.reference;
    for (&t, &w) in times.iter().zip(&walk) {
        let f = t as f64 / total;
        let price = session.band.clamp(round_to_tick(
            (from + f * (to - from) + w - f * w_end).exp(),
        ));
        let local = if t < MORNING_MS {
            MORNING_OPEN_MS + t
        } else {
            AFTERNOON_OPEN_MS + t - MORNING_MS
        };
        trades.push(Trade {
            ts: local_to_utc_ms(session.day, local),
            price,
            volume: lots(&mut rng) * 100,
            buy: buyer_initiated(&mut rng, price, prev),
        });
        prev = price;
    }
    trades.push(Trade {
        ts: local_to_utc_ms(session.day, ATC_MS),
        price: session.close,
        volume: (500 + rng.below(4_501) as i64) * 100,
        buy: buyer_initiated(&mut rng, session.close, prev),
    });
    trades
}

/// `u`, uniform draws below 2⁵³, in increasing order: a bucket per draw
/// (a comparison sort of a day's times cost a sixth of generating it).
fn sorted_uniform(u: &[u64]) -> Vec<u64> {
    let n = u.len();
    bucket_sort(u, n, |x| ((u128::from(x) * n as u128) >> 53) as usize)
}

/// Lots of 100 shares: log-normal around 8 lots capped at 50, with rare
/// block trades of 500–5,000 lots.
fn lots(rng: &mut Rng) -> i64 {
    if rng.uniform() < BLOCK_PROBABILITY {
        (500.0 * 10f64.powf(rng.uniform())).round() as i64
    } else {
        round((8f64.ln() + 0.9 * rng.ziggurat()).exp()).clamp(1, 50)
    }
}

/// Upticks are mostly buyers lifting the offer, downticks sellers.
fn buyer_initiated(rng: &mut Rng, price: i64, prev: i64) -> bool {
    let p = match price.cmp(&prev) {
        std::cmp::Ordering::Greater => 0.8,
        std::cmp::Ordering::Less => 0.2,
        std::cmp::Ordering::Equal => 0.5,
    };
    rng.uniform() < p
}

fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, false)
}

pub(super) fn ticks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("symbol", DataType::Utf8),
        field(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some(TIME_ZONE.into())),
        ),
        field("price", DataType::Float64),
        field("volume", DataType::Int64),
        field("side", DataType::Utf8),
    ]))
}

pub(super) fn prices_schema() -> SchemaRef {
    let f64_field = |name| field(name, DataType::Float64);
    Arc::new(Schema::new(vec![
        field("symbol", DataType::Utf8),
        field("date", DataType::Date32),
        f64_field("open"),
        f64_field("high"),
        f64_field("low"),
        f64_field("close"),
        field("volume", DataType::Int64),
        f64_field("reference"),
        f64_field("ceiling"),
        f64_field("floor"),
    ]))
}

pub(super) fn stock_info_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("symbol", DataType::Utf8),
        field("name", DataType::Utf8),
        field("sector", DataType::Utf8),
        field("exchange", DataType::Utf8),
        field("shares_outstanding", DataType::Int64),
        field("free_float", DataType::Float64),
    ]))
}

/// Generates `dataset` for `symbol` over the days `days` (inclusive; unused
/// by `stock_info`).
pub(super) fn generate(
    dataset: Dataset,
    seed: u64,
    symbol: &str,
    days: Option<(i32, i32)>,
    cancel: &CancelToken,
) -> Result<Table, OpError> {
    let range = || {
        days.ok_or_else(|| OpError::Internal(format!("fetch.synthetic {dataset} without dates")))
    };
    let model = model(seed, symbol);
    let batch = match dataset {
        Dataset::Ticks => {
            let (from, to) = range()?;
            ticks(seed, symbol, &model, from, to, cancel)?
        }
        Dataset::Prices => {
            let (from, to) = range()?;
            prices(seed, symbol, &model, from, to)?
        }
        Dataset::StockInfo => stock_info(symbol, &model.listing)?,
        Dataset::Positions => {
            let (from, to) = range()?;
            super::positions::positions(seed, symbol, from, to)?
        }
    };
    let rows = batch.num_rows();
    if rows <= MAX_BATCH_ROWS {
        return Ok(Table::from_batch(batch));
    }
    // Each batch gets buffers of its own size: a slice would keep the whole
    // generated buffer alive, and memory accounting would count it once per
    // slice.
    let batches = (0..rows)
        .step_by(MAX_BATCH_ROWS)
        .map(|offset| {
            let slice = batch.slice(offset, MAX_BATCH_ROWS.min(rows - offset));
            concat_batches(&slice.schema(), [&slice])
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Table::new(batch.schema(), batches))
}

/// `symbol` on every one of `rows` rows, its buffers built whole rather
/// than row by row (a day's ticks are thousands of rows).
fn symbols(symbol: &str, rows: usize) -> ArrayRef {
    Arc::new(StringArray::new(
        OffsetBuffer::from_lengths(std::iter::repeat_n(symbol.len(), rows)),
        Buffer::from_vec(symbol.repeat(rows).into_bytes()),
        None,
    ))
}

/// One-letter texts, one per byte of `letters`.
fn letters(letters: Vec<u8>) -> ArrayRef {
    Arc::new(StringArray::new(
        OffsetBuffer::from_lengths(std::iter::repeat_n(1, letters.len())),
        Buffer::from_vec(letters),
        None,
    ))
}

fn ticks(
    seed: u64,
    symbol: &str,
    model: &Model,
    from: i32,
    to: i32,
    cancel: &CancelToken,
) -> Result<RecordBatch, OpError> {
    let (mut ts, mut price, mut volume, mut side) = (vec![], vec![], vec![], vec![]);
    for session in sessions(seed, symbol, model, from, to) {
        // A day of trades is well under a millisecond of work.
        if cancel.is_cancelled() {
            return Err(OpError::Cancelled);
        }
        let trades = trades_of(seed, symbol, model, &session);
        remember(seed, symbol, session.day, DayBar::of(&trades));
        ts.extend(trades.iter().map(|t| t.ts));
        price.extend(trades.iter().map(|t| t.price as f64));
        volume.extend(trades.iter().map(|t| t.volume));
        side.extend(trades.iter().map(|t| if t.buy { b'B' } else { b'S' }));
    }
    Ok(RecordBatch::try_new(
        ticks_schema(),
        vec![
            symbols(symbol, ts.len()),
            Arc::new(TimestampMillisecondArray::from(ts).with_timezone(TIME_ZONE)),
            Arc::new(Float64Array::from(price)),
            Arc::new(Int64Array::from(volume)),
            letters(side),
        ],
    )?)
}

/// Daily bars aggregated from the day's trades, so `prices` and `ticks`
/// agree.
fn prices(
    seed: u64,
    symbol: &str,
    model: &Model,
    from: i32,
    to: i32,
) -> Result<RecordBatch, OpError> {
    let sessions = sessions(seed, symbol, model, from, to);
    let n = sessions.len();
    let mut cols: [Vec<f64>; 7] = Default::default();
    let (mut date, mut volume) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for session in &sessions {
        let bar = day_bar(seed, symbol, model, session);
        let band = session.band;
        let row = [
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            band.reference,
            band.ceiling,
            band.floor,
        ];
        for (col, value) in cols.iter_mut().zip(row) {
            col.push(value as f64);
        }
        date.push(session.day);
        volume.push(bar.volume);
    }
    let [open, high, low, close, reference, ceiling, floor] = cols.map(Float64Array::from);
    Ok(RecordBatch::try_new(
        prices_schema(),
        vec![
            symbols(symbol, n),
            Arc::new(Date32Array::from(date)),
            Arc::new(open),
            Arc::new(high),
            Arc::new(low),
            Arc::new(close),
            Arc::new(Int64Array::from(volume)),
            Arc::new(reference),
            Arc::new(ceiling),
            Arc::new(floor),
        ],
    )?)
}

fn stock_info(symbol: &str, listing: &Listing) -> Result<RecordBatch, OpError> {
    Ok(RecordBatch::try_new(
        stock_info_schema(),
        vec![
            symbols(symbol, 1),
            Arc::new(StringArray::from(vec![listing.name.as_str()])),
            Arc::new(StringArray::from(vec![listing.sector.as_str()])),
            Arc::new(StringArray::from(vec!["HOSE"])),
            Arc::new(Int64Array::from(vec![listing.shares_outstanding])),
            Arc::new(Float64Array::from(vec![listing.free_float])),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_draws_sort_as_a_comparison_sort_does() {
        let mut rng = Rng::new(9, "SRT", &[]);
        for n in [0, 1, 2, 7, 1_000, 3_001] {
            let mut u: Vec<u64> = (0..n).map(|_| rng.next_u64() >> 11).collect();
            // The extremes, and a value drawn twice.
            if n > 3 {
                u[0] = 0;
                u[1] = (1 << 53) - 1;
                u[2] = u[3];
            }
            let mut expected = u.clone();
            expected.sort_unstable();
            assert_eq!(sorted_uniform(&u), expected, "n = {n}");
        }
    }
}
