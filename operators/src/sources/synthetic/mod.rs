//! `fetch.synthetic`: the built-in market-data source, so every pipeline runs
//! on a fresh machine without network. Deterministic, seeded, and shaped like
//! HOSE (Ho Chi Minh City Stock Exchange) data.

mod generate;
mod market;
mod positions;
mod ziggurat;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::calendar;
use crate::{
    Arity, DateRange, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload,
};
use generate::{EPOCH, LAST_DAY, Rng, STREAM_FAILURE};

/// Which data set `fetch.synthetic` generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// Intraday trades: `symbol`, `ts` (timestamp, ms, +07:00), `price`,
    /// `volume`, `side` ("B" buyer- or "S" seller-initiated).
    Ticks,
    /// Daily bars aggregated from the same trades: `symbol`, `date`, `open`,
    /// `high`, `low`, `close`, `volume`, `reference` (previous close),
    /// `ceiling`, `floor` (the ±7% price band).
    Prices,
    /// One row of reference data: `symbol`, `name`, `sector`, `exchange`,
    /// `shares_outstanding`, `free_float`.
    StockInfo,
    /// The holdings of the portfolio named by `symbol` (e.g. `P1`) on each
    /// trading day: `date`, `portfolio`, `symbol` (8 VN30 stocks),
    /// `quantity` (whole lots of 100, rebalanced weekly).
    Positions,
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dataset::Ticks => "ticks",
            Dataset::Prices => "prices",
            Dataset::StockInfo => "stock_info",
            Dataset::Positions => "positions",
        })
    }
}

/// Parameters of `fetch.synthetic`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyntheticParams {
    /// What to generate: `ticks` (intraday trades), `prices` (daily bars that
    /// equal the aggregate of those trades), `stock_info` (one row of
    /// reference data) or `positions` (a portfolio's holdings per day).
    ///
    /// ```yaml
    /// dataset: ticks
    /// ```
    pub dataset: Dataset,
    /// The upper-case ticker. The 30 VN30 stocks start from realistic price
    /// levels and carry real names, sectors and share counts; any other
    /// ticker gets plausible made-up values.
    ///
    /// ```yaml
    /// symbol: FPT
    /// ```
    pub symbol: String,
    /// First day, `YYYY-MM-DD`, inclusive. Required for `ticks` and
    /// `prices`, not accepted for `stock_info`. History starts 2000-01-03.
    ///
    /// ```yaml
    /// start: "2026-01-05"
    /// ```
    pub start: Option<String>,
    /// Last day, `YYYY-MM-DD`, inclusive; equal to `start` for one day.
    /// Required for `ticks` and `prices`, not accepted for `stock_info`.
    ///
    /// ```yaml
    /// end: "2026-01-09"
    /// ```
    pub end: Option<String>,
    /// Changes every generated value; the same seed always gives the same
    /// data. A day's rows are the same whatever range is fetched.
    ///
    /// ```yaml
    /// seed: 42
    /// ```
    #[serde(default)]
    pub seed: u64,
    /// Simulated API wait before each call returns, a number and a unit
    /// (`us`, `ms`, `s`, `m`). None by default.
    ///
    /// ```yaml
    /// latency: 250ms
    /// ```
    pub latency: Option<String>,
    /// Probability in [0, 1] that a call fails with a transient source
    /// error, to exercise retries. Each call of a node draws afresh (the draw
    /// is keyed by the seed and the node's call count), so a retry can
    /// succeed, and a run is reproducible. Default 0.
    ///
    /// ```yaml
    /// fail_rate: 0.2
    /// ```
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub fail_rate: f64,
}

impl OpParams for SyntheticParams {
    const NAME: &'static str = "fetch.synthetic";
    const DOC: &'static str = "Generates deterministic, realistic market data for HOSE stocks \
        without network: intraday trades (`ticks`), daily bars consistent with them (`prices`), \
        reference data (`stock_info`), or the daily holdings of a made-up portfolio \
        (`positions`, its name in `symbol`). The same seed, symbol and day always give the same \
        rows, whatever range is fetched. Prices are in VND on HOSE tick sizes within the ±7% \
        daily band; times are Asia/Ho_Chi_Minh (+07:00); trading days are HOSE's (Monday to \
        Friday, less its holidays). `latency` and `fail_rate` simulate a slow, flaky \
        API.";
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::None;

    /// 2: the days generated are HOSE's trading days, holidays left out.
    /// 3: intraday trades draw their normals by ziggurat (new trades, same
    /// model; the daily closes are unchanged).
    const VERSION: u32 = 3;
    const DATE_RANGE: Option<DateRange> = Some(DateRange {
        start: "start",
        end: "end",
        end_inclusive: true,
    });

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        check_symbol(&self.symbol)?;
        let days = match self.dataset {
            Dataset::StockInfo => {
                for (field, value) in [("start", &self.start), ("end", &self.end)] {
                    if value.is_some() {
                        return Err(ParamError::new(
                            &[field],
                            format!(
                                "dataset 'stock_info' is one row of reference data and takes \
                                 no {field} — remove it"
                            ),
                        ));
                    }
                }
                None
            }
            Dataset::Ticks | Dataset::Prices | Dataset::Positions => {
                let start = date_param("start", self.start.as_deref(), self.dataset)?;
                let end = date_param("end", self.end.as_deref(), self.dataset)?;
                if end < start {
                    return Err(ParamError::new(
                        &["end"],
                        format!(
                            "end {} is before start {} — both are inclusive; for one day give \
                             the same date",
                            self.end.unwrap_or_default(),
                            self.start.unwrap_or_default()
                        ),
                    ));
                }
                Some((start, end))
            }
        };
        let latency = self
            .latency
            .as_deref()
            .map(parse_latency)
            .transpose()
            .map_err(|message| ParamError::new(&["latency"], message))?
            // No wait at all: a zero sleep still waits for the timer's next
            // millisecond tick.
            .filter(|latency| !latency.is_zero());
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(ParamError::new(
                &["fail_rate"],
                format!(
                    "fail_rate {} is not a probability — use a value from 0 to 1, e.g. 0.1",
                    self.fail_rate
                ),
            ));
        }
        Ok(Arc::new(SyntheticFetch {
            dataset: self.dataset,
            symbol: self.symbol,
            days,
            seed: self.seed,
            latency,
            fail_rate: self.fail_rate,
            calls: AtomicU64::new(0),
        }))
    }
}

fn check_symbol(symbol: &str) -> Result<(), ParamError> {
    let is_ticker = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    if is_ticker(symbol) {
        return Ok(());
    }
    let upper = symbol.trim().to_ascii_uppercase();
    let message = if symbol.is_empty() {
        "symbol is empty — name a ticker such as 'FPT'".to_string()
    } else if is_ticker(&upper) {
        format!("symbol '{symbol}' must be an upper-case ticker — did you mean '{upper}'?")
    } else {
        format!("symbol '{symbol}' is not a ticker — use upper-case letters and digits, e.g. 'FPT'")
    };
    Err(ParamError::new(&["symbol"], message))
}

/// Days since 1970-01-01 of the date parameter `field`.
fn date_param(field: &str, value: Option<&str>, dataset: Dataset) -> Result<i32, ParamError> {
    let error = |message: String| ParamError::new(&[field], message);
    let value = value.ok_or_else(|| {
        error(format!(
            "dataset '{dataset}' needs {field}, a date such as '2026-01-05'"
        ))
    })?;
    let day = calendar::parse_date(value).ok_or_else(|| {
        error(format!(
            "{field} '{value}' is not a date — write YYYY-MM-DD, e.g. '2026-01-05'"
        ))
    })?;
    if !(EPOCH..=LAST_DAY).contains(&day) {
        return Err(error(format!(
            "{field} {value} is outside the synthetic history, 2000-01-03 to 2100-12-31"
        )));
    }
    Ok(day)
}

/// Parses a duration such as `100ms`, `1.5s`, `250us` or `2m`.
fn parse_latency(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("latency '{text}' is not a duration — write a number and a unit, e.g. '100ms'")
    })?;
    let unit_nanos = match unit {
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "" => {
            return Err(format!(
                "latency '{text}' has no unit — write e.g. '{text}ms' or '{text}s'"
            ));
        }
        _ => {
            return Err(format!(
                "latency '{text}' has an unknown unit '{unit}' — use us, ms, s or m, e.g. '100ms'"
            ));
        }
    };
    let nanos = (value * unit_nanos).round();
    if nanos >= u64::MAX as f64 {
        return Err(format!("latency '{text}' is too long"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Ranges shorter than this many calendar days (a trading day, or one
/// across a weekend) are generated on the calling thread.
const BRIEF_DAYS: i32 = 4;

/// The runtime operator.
#[derive(Debug)]
struct SyntheticFetch {
    dataset: Dataset,
    symbol: String,
    /// First and last day (days since 1970-01-01) for `ticks` and `prices`.
    days: Option<(i32, i32)>,
    seed: u64,
    latency: Option<Duration>,
    fail_rate: f64,
    /// Calls so far. The engine retries a node by calling the same operator
    /// again, so keying the failure draw by the call number lets a retry
    /// succeed while keeping a run reproducible.
    calls: AtomicU64,
}

impl SyntheticFetch {
    fn fails(&self, call: u64) -> bool {
        let parts = [STREAM_FAILURE, self.dataset as u64, call];
        Rng::new(self.seed, &self.symbol, &parts).uniform() < self.fail_rate
    }
}

#[async_trait]
impl Operator for SyntheticFetch {
    async fn execute(&self, ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = self.latency {
            tokio::time::sleep(latency).await;
        }
        if self.fails(call) {
            return Err(OpError::Source {
                message: format!(
                    "synthetic failure (fail_rate={}) for {} {}",
                    self.fail_rate, self.symbol, self.dataset
                ),
                transient: true,
            });
        }
        // A day is a fraction of a millisecond, computed here; a long range
        // of ticks is seconds of computing, off the async threads. Both
        // inside the run's thread budget.
        let (dataset, seed, days) = (self.dataset, self.seed, self.days);
        let brief = days.is_none_or(|(first, last)| last - first < BRIEF_DAYS);
        let table = if brief {
            ctx.run_cpu_brief(|ctx| {
                generate::generate(dataset, seed, &self.symbol, days, ctx.cancel_token())
            })
            .await?
        } else {
            let symbol = self.symbol.clone();
            ctx.run_cpu(1, move |ctx, _| {
                generate::generate(dataset, seed, &symbol, days, ctx.cancel_token())
            })
            .await?
        };
        tracing::debug!(
            symbol = %self.symbol,
            dataset = %self.dataset,
            rows = table.num_rows(),
            "Generated synthetic data."
        );
        Ok(table)
    }

    fn output_schema(&self) -> Option<SchemaRef> {
        Some(match self.dataset {
            Dataset::Ticks => generate::ticks_schema(),
            Dataset::Prices => generate::prices_schema(),
            Dataset::StockInfo => generate::stock_info_schema(),
            Dataset::Positions => positions::positions_schema(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{
        Date32Type, Float64Type, Int64Type, TimestampMillisecondType,
    };
    use serde_json::{Value, json};

    use super::*;
    use crate::shared::calendar::{DAY_MS, UTC_OFFSET_MS, days_from_civil};

    fn build(params: Value) -> Result<Arc<dyn Operator>, ParamError> {
        crate::registry()
            .get(SyntheticParams::NAME)
            .expect("fetch.synthetic is registered")
            .build(params)
    }

    #[tokio::test]
    async fn the_declared_schema_is_the_output_schema() {
        for dataset in ["ticks", "prices", "stock_info"] {
            let mut params = json!({"dataset": dataset, "symbol": "FPT"});
            if dataset != "stock_info" {
                params["start"] = json!("2026-01-05");
                params["end"] = json!("2026-01-06");
            }
            let op = build(params).unwrap();
            let declared = op
                .output_schema()
                .expect("a synthetic dataset's schema is known");
            let out = op
                .execute(&crate::ExecContext::standalone(), Inputs::default())
                .await
                .unwrap();
            assert_eq!(out.schema(), &declared, "{dataset}");
        }
    }

    #[test]
    fn a_zero_latency_does_not_wait_for_the_timer() {
        // A runtime without timers: any sleep, even of zero, panics on it.
        // (A zero sleep waits for the timer's next millisecond tick, which
        // was most of a fetch's time at scale.)
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut params = range("ticks", "FPT", "2026-01-05", "2026-01-05");
        params["latency"] = json!("0ms");
        let rows = runtime.block_on(fetch(params)).num_rows();
        assert!(rows > 1_000, "{rows}");
    }

    async fn fetch(params: Value) -> RecordBatch {
        let op = build(params).expect("valid params");
        op.execute(&crate::ExecContext::standalone(), Inputs::default())
            .await
            .unwrap()
            .concat()
            .unwrap()
    }

    fn range(dataset: &str, symbol: &str, start: &str, end: &str) -> Value {
        json!({ "dataset": dataset, "symbol": symbol, "start": start, "end": end })
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Tick {
        ts: i64,
        price: f64,
        volume: i64,
        side: String,
    }

    impl Tick {
        fn local_day(&self) -> i32 {
            (self.ts + UTC_OFFSET_MS).div_euclid(DAY_MS) as i32
        }
        /// Milliseconds since local midnight.
        fn local_ms(&self) -> i64 {
            (self.ts + UTC_OFFSET_MS).rem_euclid(DAY_MS)
        }
    }

    fn ticks(batch: &RecordBatch) -> Vec<Tick> {
        let col = |name| batch.column_by_name(name).unwrap();
        let ts = col("ts").as_primitive::<TimestampMillisecondType>();
        let price = col("price").as_primitive::<Float64Type>();
        let volume = col("volume").as_primitive::<Int64Type>();
        let side = col("side").as_string::<i32>();
        (0..batch.num_rows())
            .map(|i| Tick {
                ts: ts.value(i),
                price: price.value(i),
                volume: volume.value(i),
                side: side.value(i).to_string(),
            })
            .collect()
    }

    fn floats(batch: &RecordBatch, name: &str) -> Vec<f64> {
        let col = batch.column_by_name(name).unwrap();
        col.as_primitive::<Float64Type>().values().to_vec()
    }

    fn dates(batch: &RecordBatch) -> Vec<i32> {
        let col = batch.column_by_name("date").unwrap();
        col.as_primitive::<Date32Type>().values().to_vec()
    }

    fn hose_tick(price: f64) -> f64 {
        if price < 10_000.0 {
            10.0
        } else if price < 50_000.0 {
            50.0
        } else {
            100.0
        }
    }

    const MIN: i64 = 60_000;

    #[tokio::test]
    async fn same_params_give_same_data() {
        for params in [
            range("ticks", "FPT", "2026-01-05", "2026-01-06"),
            range("prices", "FPT", "2026-01-05", "2026-01-30"),
            json!({ "dataset": "stock_info", "symbol": "ZZZ", "seed": 3 }),
        ] {
            assert_eq!(fetch(params.clone()).await, fetch(params).await);
        }
    }

    #[tokio::test]
    async fn a_day_does_not_depend_on_the_range_fetched() {
        let day = days_from_civil(2026, 1, 7);
        let week = ticks(&fetch(range("ticks", "VCB", "2026-01-05", "2026-01-09")).await);
        let one = ticks(&fetch(range("ticks", "VCB", "2026-01-07", "2026-01-07")).await);
        let from_week: Vec<Tick> = week.into_iter().filter(|t| t.local_day() == day).collect();
        assert!(!one.is_empty());
        assert_eq!(from_week, one);

        let month = fetch(range("prices", "VCB", "2025-12-01", "2026-01-30")).await;
        let one = fetch(range("prices", "VCB", "2026-01-07", "2026-01-07")).await;
        let i = dates(&month).iter().position(|&d| d == day).unwrap();
        assert_eq!(month.slice(i, 1), one);
    }

    /// `prices` keeps the trades it generated for a bar until `ticks` asks
    /// for the day: the ticks handed over equal the ticks generated afresh.
    #[tokio::test]
    async fn ticks_after_prices_are_the_ticks_generated_afresh() {
        // A symbol no other test fetches, so no other test's fetch took
        // the kept day first.
        let prices = fetch(range("prices", "QKT", "2026-01-05", "2026-01-07")).await;
        assert_eq!(prices.num_rows(), 3);
        let handed = fetch(range("ticks", "QKT", "2026-01-06", "2026-01-06")).await;
        let afresh = fetch(range("ticks", "QKT", "2026-01-06", "2026-01-06")).await;
        assert!(handed.num_rows() > 1_000);
        assert_eq!(handed, afresh);
    }

    #[tokio::test]
    async fn ticks_fall_in_sessions_and_strictly_increase() {
        let batch = fetch(range("ticks", "FPT", "2026-01-05", "2026-01-09")).await;
        let ticks = ticks(&batch);
        assert!(ticks.windows(2).all(|w| w[0].ts < w[1].ts));
        let mut days: BTreeMap<i32, Vec<&Tick>> = BTreeMap::new();
        for t in &ticks {
            days.entry(t.local_day()).or_default().push(t);
        }
        assert_eq!(days.len(), 5);
        for day in days.values() {
            assert!((900..=3_001).contains(&day.len()), "{} trades", day.len());
            let (atc, continuous) = day.split_last().unwrap();
            assert_eq!(atc.local_ms(), (14 * 60 + 45) * MIN);
            let morning = (9 * 60 + 15) * MIN..(11 * 60 + 30) * MIN;
            let afternoon = 13 * 60 * MIN..(14 * 60 + 30) * MIN;
            for t in continuous {
                let ms = t.local_ms();
                assert!(morning.contains(&ms) || afternoon.contains(&ms), "{ms}");
            }
            assert!(continuous.iter().any(|t| morning.contains(&t.local_ms())));
            assert!(continuous.iter().any(|t| afternoon.contains(&t.local_ms())));
        }
    }

    #[tokio::test]
    async fn weekends_give_no_rows() {
        for dataset in ["ticks", "prices"] {
            let batch = fetch(range(dataset, "HPG", "2026-01-10", "2026-01-11")).await;
            assert_eq!(batch.num_rows(), 0, "{dataset}");
            assert!(batch.num_columns() >= 5);
        }
    }

    #[tokio::test]
    async fn prices_are_the_aggregate_of_ticks() {
        let ticks = ticks(&fetch(range("ticks", "HPG", "2026-01-05", "2026-01-16")).await);
        let prices = fetch(range("prices", "HPG", "2026-01-05", "2026-01-16")).await;
        let mut days: BTreeMap<i32, Vec<&Tick>> = BTreeMap::new();
        for t in &ticks {
            days.entry(t.local_day()).or_default().push(t);
        }
        assert_eq!(dates(&prices), days.keys().copied().collect::<Vec<_>>());
        let volume = prices.column_by_name("volume").unwrap();
        let volume = volume.as_primitive::<Int64Type>();
        let (open, high, low, close) = (
            floats(&prices, "open"),
            floats(&prices, "high"),
            floats(&prices, "low"),
            floats(&prices, "close"),
        );
        for (i, day) in days.values().enumerate() {
            let p: Vec<f64> = day.iter().map(|t| t.price).collect();
            assert_eq!(open[i], p[0]);
            assert_eq!(high[i], p.iter().copied().fold(f64::MIN, f64::max));
            assert_eq!(low[i], p.iter().copied().fold(f64::MAX, f64::min));
            assert_eq!(close[i], p[p.len() - 1]);
            assert_eq!(volume.value(i), day.iter().map(|t| t.volume).sum::<i64>());
        }
    }

    #[tokio::test]
    async fn prices_keep_to_tick_sizes_and_the_band() {
        // SHB trades near the 10,000 VND tick boundary, ACB on the 50 VND
        // tick, VCB on the 100 VND tick.
        for symbol in ["SHB", "ACB", "VCB"] {
            let ticks = ticks(&fetch(range("ticks", symbol, "2025-01-01", "2025-03-31")).await);
            let prices = fetch(range("prices", symbol, "2025-01-01", "2025-03-31")).await;
            let (reference, ceiling, floor, close) = (
                floats(&prices, "reference"),
                floats(&prices, "ceiling"),
                floats(&prices, "floor"),
                floats(&prices, "close"),
            );
            let index: BTreeMap<i32, usize> = dates(&prices)
                .into_iter()
                .enumerate()
                .map(|(i, d)| (d, i))
                .collect();
            for i in 0..reference.len() {
                if i > 0 {
                    assert_eq!(reference[i], close[i - 1]);
                }
                // The ceiling is the highest valid price at most 7% above the
                // reference, the floor the lowest at most 7% below.
                let (up, down) = (reference[i] * 1.07, reference[i] * 0.93);
                assert!(ceiling[i] <= up && ceiling[i] + hose_tick(ceiling[i]) > up);
                assert!(floor[i] >= down && floor[i] - hose_tick(floor[i] - 1.0) < down);
            }
            for t in &ticks {
                assert_eq!(t.price % hose_tick(t.price), 0.0, "{symbol} {t:?}");
                let i = index[&t.local_day()];
                assert!((floor[i]..=ceiling[i]).contains(&t.price), "{symbol} {t:?}");
            }
        }
    }

    #[tokio::test]
    async fn volumes_are_round_lots_with_occasional_blocks() {
        let ticks = ticks(&fetch(range("ticks", "MWG", "2026-01-05", "2026-01-09")).await);
        assert!(ticks.iter().all(|t| t.volume > 0 && t.volume % 100 == 0));
        let mut volumes: Vec<i64> = ticks.iter().map(|t| t.volume).collect();
        volumes.sort_unstable();
        assert!(volumes[volumes.len() / 2] <= 5_000);
        let blocks = ticks.iter().filter(|t| t.volume >= 50_000);
        // Closing auctions are large too; blocks must also trade in session.
        assert!(
            blocks
                .filter(|t| t.local_ms() < (14 * 60 + 30) * MIN)
                .count()
                > 0
        );
        assert!(ticks.iter().all(|t| t.side == "B" || t.side == "S"));
        assert!(ticks.iter().any(|t| t.side == "B") && ticks.iter().any(|t| t.side == "S"));
    }

    #[tokio::test]
    async fn vn30_prices_stay_near_their_levels() {
        for seed in 0..4 {
            for (symbol, level) in [
                ("FPT", 120_000.0),
                ("VCB", 90_000.0),
                ("ACB", 25_000.0),
                ("HPG", 27_000.0),
                ("SHB", 12_000.0),
            ] {
                let mut params = range("prices", symbol, "2026-01-05", "2026-01-05");
                params["seed"] = json!(seed);
                let close = floats(&fetch(params).await, "close")[0];
                assert!(
                    close > level / 2.0 && close < level * 2.0,
                    "{symbol} {close}"
                );
            }
        }
    }

    #[tokio::test]
    async fn seeds_change_the_data() {
        let mut params = range("ticks", "FPT", "2026-01-05", "2026-01-05");
        let a = ticks(&fetch(params.clone()).await);
        params["seed"] = json!(1);
        let b = ticks(&fetch(params).await);
        assert_ne!(a, b);
        assert_ne!(a.last().unwrap().price, b.last().unwrap().price);
    }

    #[tokio::test]
    async fn stock_info_describes_the_company() {
        let info = fetch(json!({ "dataset": "stock_info", "symbol": "VCB" })).await;
        assert_eq!(info.num_rows(), 1);
        let text = |name| {
            info.column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .value(0)
        };
        assert_eq!(text("symbol"), "VCB");
        assert_eq!(text("sector"), "Banking");
        assert_eq!(text("exchange"), "HOSE");
        let shares = info.column_by_name("shares_outstanding").unwrap();
        assert!(shares.as_primitive::<Int64Type>().value(0) > 1_000_000_000);

        let other = fetch(json!({ "dataset": "stock_info", "symbol": "XYZ" })).await;
        let name = other
            .column_by_name("name")
            .unwrap()
            .as_string::<i32>()
            .value(0);
        assert!(name.contains("XYZ"));
        let free_float = floats(&other, "free_float")[0];
        assert!(free_float > 0.0 && free_float <= 1.0);
    }

    #[tokio::test]
    async fn fail_rate_one_fails_transiently() {
        let op = build(
            json!({ "dataset": "prices", "symbol": "FPT", "start": "2026-01-05",
                               "end": "2026-01-05", "fail_rate": 1.0 }),
        )
        .unwrap();
        for _ in 0..3 {
            let err = op
                .execute(&crate::ExecContext::standalone(), Inputs::default())
                .await
                .unwrap_err();
            assert!(err.is_transient());
            let OpError::Source { message, .. } = err else {
                panic!("not a source error: {err}")
            };
            assert_eq!(message, "synthetic failure (fail_rate=1) for FPT prices");
        }
    }

    #[tokio::test]
    async fn fail_rate_zero_never_fails() {
        let op = build(json!({ "dataset": "stock_info", "symbol": "FPT" })).unwrap();
        for _ in 0..200 {
            op.execute(&crate::ExecContext::standalone(), Inputs::default())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn retries_of_a_flaky_node_can_succeed_reproducibly() {
        let params = json!({ "dataset": "stock_info", "symbol": "FPT", "fail_rate": 0.5 });
        let mut runs = Vec::new();
        for _ in 0..2 {
            let op = build(params.clone()).unwrap();
            let mut outcomes = Vec::new();
            for _ in 0..40 {
                outcomes.push(
                    op.execute(&crate::ExecContext::standalone(), Inputs::default())
                        .await
                        .is_ok(),
                );
            }
            runs.push(outcomes);
        }
        assert!(runs[0].contains(&true) && runs[0].contains(&false));
        assert_eq!(runs[0], runs[1]);
    }

    #[test]
    fn build_rejects_bad_params_naming_the_field() {
        let ticks = |extra: Value| {
            let mut p = range("ticks", "FPT", "2026-01-05", "2026-01-09");
            p.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            p
        };
        let cases = [
            (ticks(json!({ "end": "2026-01-02" })), "end", "before start"),
            (ticks(json!({ "latency": "100" })), "latency", "no unit"),
            (
                ticks(json!({ "latency": "fast" })),
                "latency",
                "not a duration",
            ),
            (
                ticks(json!({ "latency": "5 ms" })),
                "latency",
                "unknown unit",
            ),
            (
                ticks(json!({ "fail_rate": 1.5 })),
                "fail_rate",
                "not a probability",
            ),
            (
                ticks(json!({ "fail_rate": -0.1 })),
                "fail_rate",
                "not a probability",
            ),
            (ticks(json!({ "start": "2026-1-5" })), "start", "YYYY-MM-DD"),
            (
                ticks(json!({ "start": "1999-12-31" })),
                "start",
                "2000-01-03",
            ),
            (
                ticks(json!({ "symbol": "fpt" })),
                "symbol",
                "did you mean 'FPT'",
            ),
            (ticks(json!({ "symbol": "" })), "symbol", "empty"),
            (
                ticks(json!({ "dataset": "candles" })),
                "dataset",
                "unknown variant",
            ),
            (ticks(json!({ "tiker": "FPT" })), "tiker", "unknown field"),
            (
                json!({ "dataset": "ticks", "symbol": "FPT" }),
                "start",
                "needs start",
            ),
            (
                json!({ "dataset": "prices", "symbol": "FPT", "start": "2026-01-05" }),
                "end",
                "needs end",
            ),
            (
                json!({ "dataset": "stock_info", "symbol": "FPT", "start": "2026-01-05" }),
                "start",
                "no start",
            ),
        ];
        for (params, path, message) in cases {
            let err = build(params.clone()).expect_err(&params.to_string());
            assert_eq!(err.path, [path], "{params}: {err}");
            assert!(err.message.contains(message), "{params}: {err}");
        }
    }

    #[test]
    fn latency_accepts_a_number_and_a_unit() {
        let ms = Duration::from_millis;
        assert_eq!(parse_latency("100ms"), Ok(ms(100)));
        assert_eq!(parse_latency("1s"), Ok(ms(1_000)));
        assert_eq!(parse_latency("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_latency("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_latency("2m"), Ok(ms(120_000)));
        assert_eq!(parse_latency("0ms"), Ok(Duration::ZERO));
        assert!(parse_latency("-5ms").is_err());
        assert!(parse_latency("1.2.3s").is_err());
    }

    // The workspace's tokio lacks `test-util`, so time cannot be paused;
    // enabling it would rebuild DataFusion against a second tokio. These
    // checks still cannot flake: an hour's wait cannot finish in 50 ms, and
    // tokio never wakes a sleep early.
    #[tokio::test]
    async fn latency_delays_each_call() {
        let mut params = json!({ "dataset": "stock_info", "symbol": "FPT", "latency": "1h" });
        assert!(build(params.clone()).is_err(), "hours are not a unit");
        params["latency"] = json!("60m");
        let op = build(params.clone()).unwrap();
        let ctx = crate::ExecContext::standalone();
        let call = op.execute(&ctx, Inputs::default());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), call)
                .await
                .is_err()
        );

        params["latency"] = json!("30ms");
        let op = build(params).unwrap();
        for _ in 0..2 {
            let started = std::time::Instant::now();
            op.execute(&crate::ExecContext::standalone(), Inputs::default())
                .await
                .unwrap();
            assert!(started.elapsed() >= Duration::from_millis(30));
        }
    }
}
