//! `index.level`: the level path of a free-float cap-weighted index through
//! the day's trades, and its candles.
//!
//! `level(t) = Σ price_i(t) · shares_i · free_float_i · cap_i / divisor`,
//! where `price_i(t)` is component i's last trade at or before t (its
//! reference price before its first trade of the day), so a stock that did
//! not trade in a candle still counts. At each session's open the weights
//! come from `index.rebalance` and the divisor is set so that the level
//! carries on from the previous session's close: the day needs only that
//! one number from the day before.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rebalance::{self, Weight};
use super::{Clock, Trades, column, date_text, input, intraday, ts_field};
use crate::operator::OpParams;
use crate::shared::sessions::Interval;
use crate::{Arity, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

/// Parameters of `index.level`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelParams {
    /// The candle length.
    ///
    /// ```yaml
    /// interval: 5m
    /// ```
    #[serde(default = "five_minutes")]
    pub interval: Interval,
    /// The level at the open of the first session, when there is no
    /// `previous` input to carry on from.
    ///
    /// ```yaml
    /// base_value: 1000
    /// ```
    #[serde(default = "default_base")]
    pub base_value: f64,
}

pub(super) fn five_minutes() -> Interval {
    Interval::M5
}

fn default_base() -> f64 {
    1000.0
}

impl OpParams for LevelParams {
    const NAME: &'static str = "index.level";
    const DOC: &'static str = "The level of a free-float cap-weighted index through the day's \
        trades, as candles. Input `trades` holds every component's trades, input `weights` \
        the day's rebalance (from `index.rebalance`); the optional input `previous` is the \
        index of the session before, whose last close the level carries on from (without it \
        the first session opens at `base_value`). The level after each trade is Σ price × \
        shares × free float × cap factor / divisor over all components, each at its last \
        trade so far (its reference price before it trades), and the divisor is set at each \
        open so that the level is continuous. Outputs per candle with trades: `date`, `bar`, \
        `open`, `high`, `low`, `close` (the first, highest, lowest and last level after a \
        trade in the candle), `trades`, `divisor` and `base` (the level the session opened \
        at); nothing is rounded. `index.carry` moves a session computed on its own onto the \
        previous session's close.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::AtLeast(2);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        if !(self.base_value > 0.0 && self.base_value.is_finite()) {
            return Err(ParamError::new(
                &["base_value"],
                format!("base_value {} must be a positive number", self.base_value),
            ));
        }
        intraday(self.interval)?;
        Ok(Arc::new(Level { params: self }))
    }
}

#[derive(Debug)]
struct Level {
    params: LevelParams,
}

/// One candle of the index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candle {
    pub date: i32,
    pub bar: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub trades: i64,
    pub divisor: f64,
    /// The level the session opened at: the previous session's close.
    pub base: f64,
}

impl Candle {
    fn new(date: i32, bar: i64, level: f64, divisor: f64, base: f64) -> Self {
        Self {
            date,
            bar,
            open: level,
            high: level,
            low: level,
            close: level,
            trades: 1,
            divisor,
            base,
        }
    }

    fn add(&mut self, level: f64) {
        self.high = self.high.max(level);
        self.low = self.low.min(level);
        self.close = level;
        self.trades += 1;
    }
}

/// The index's candles over `trades`, session by session as `weights`
/// gives them, carrying on from the level `previous_close`.
fn candles(
    trades: &Trades,
    weights: &[Weight],
    clock: &Clock,
    mut previous_close: f64,
) -> Result<Vec<Candle>, String> {
    let mut sessions: Vec<i32> = weights.iter().map(|w| w.date).collect();
    sessions.dedup();
    let (names, ranks) = trades.symbol_ranks();
    let ticks = trades.in_time_order(&ranks);
    let mut next = 0; // into `ticks`
    let mut out = Vec::new();
    for date in sessions {
        let day: Vec<&Weight> = weights.iter().filter(|w| w.date == date).collect();
        let slot: HashMap<&str, usize> = day
            .iter()
            .enumerate()
            .map(|(i, w)| (w.symbol.as_str(), i))
            .collect();
        // By symbol rank, the component's place in `day`, looked up once.
        let slot: Vec<Option<usize>> = names.iter().map(|s| slot.get(s).copied()).collect();
        let shares: Vec<f64> = day.iter().map(|w| w.index_shares()).collect();
        let mut prices: Vec<f64> = day.iter().map(|w| w.reference).collect();
        // Σ price × shares, kept up to date trade by trade.
        let mut sum: f64 = prices.iter().zip(&shares).map(|(p, q)| p * q).sum();
        let divisor = sum / previous_close;
        let mut candle: Option<Candle> = None;
        while let Some(&tick) = ticks.get(next) {
            let ts = tick.ts;
            let (trade_day, bar) = clock.day_and_bar(ts);
            if trade_day < date {
                return Err(format!(
                    "a trade of {} on {} comes before the first session rebalanced ({})",
                    names[tick.rank as usize],
                    date_text(trade_day),
                    date_text(date)
                ));
            }
            if trade_day > date {
                break;
            }
            next += 1;
            let Some(k) = slot[tick.rank as usize] else {
                return Err(format!(
                    "{} traded on {} but is not among the day's components in 'weights'",
                    names[tick.rank as usize],
                    date_text(date)
                ));
            };
            sum += (tick.price - prices[k]) * shares[k];
            prices[k] = tick.price;
            if candle.is_some_and(|c| c.bar != bar) {
                out.extend(candle.take());
                // Start each candle from an exact sum, so that rounding
                // in the running sum never carries beyond one candle.
                sum = prices.iter().zip(&shares).map(|(p, q)| p * q).sum();
            }
            let level = sum / divisor;
            match &mut candle {
                Some(c) => c.add(level),
                None => candle = Some(Candle::new(date, bar, level, divisor, previous_close)),
            }
        }
        if let Some(c) = candle {
            previous_close = c.close;
            out.push(c);
        }
    }
    if let Some(tick) = ticks.get(next) {
        return Err(format!(
            "{} traded on {}, a day 'weights' has no rebalance for",
            names[tick.rank as usize],
            date_text(clock.day_and_bar(tick.ts).0)
        ));
    }
    Ok(out)
}

/// The level a session carries on from: the last close in `previous`
/// (input `previous` of `op`, the index of the session before), which must
/// end before the session's first day, `first`.
pub(super) fn previous_close(
    op: &str,
    previous: &RecordBatch,
    first: Option<i32>,
) -> Result<f64, OpError> {
    let at = (op, "previous");
    let date: &Date32Array = column(previous, at, "date", "a date")?;
    let bar: &TimestampMillisecondArray = column(previous, at, "bar", "a millisecond timestamp")?;
    let close: &Float64Array = column(previous, at, "close", "Float64")?;
    let last = (0..previous.num_rows()).max_by_key(|&i| bar.value(i));
    match last.map(|i| (date.value(i), close.value(i))) {
        Some((date, close)) if first.is_none_or(|f| date < f) => Ok(close),
        Some((date, _)) => Err(OpError::Invalid(format!(
            "{op}: input 'previous' ends on {}, not before the first session here ({}); it \
             must be the index of the session before",
            date_text(date),
            date_text(first.unwrap_or_default())
        ))),
        None => Err(OpError::Invalid(format!(
            "{op}: input 'previous' has no rows, so there is no close to carry on from"
        ))),
    }
}

pub(crate) fn schema(zone: &Option<Arc<str>>) -> SchemaRef {
    let f = |name: &str, ty: DataType| Field::new(name, ty, false);
    Arc::new(Schema::new(vec![
        f("date", DataType::Date32),
        ts_field("bar", zone),
        f("open", DataType::Float64),
        f("high", DataType::Float64),
        f("low", DataType::Float64),
        f("close", DataType::Float64),
        f("trades", DataType::Int64),
        f("divisor", DataType::Float64),
        f("base", DataType::Float64),
    ]))
}

#[async_trait]
impl Operator for Level {
    async fn execute(&self, _ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let op = LevelParams::NAME;
        if let Some(other) = inputs
            .iter()
            .find(|i| !["trades", "weights", "previous"].contains(&i.name.as_str()))
        {
            return Err(OpError::Invalid(format!(
                "{op} reads inputs 'trades', 'weights' and optionally 'previous', not '{}'",
                other.name
            )));
        }
        let trades = Trades::read(&inputs, op, "trades")?;
        let weights = rebalance::read(&input(&inputs, op, "weights")?, op, "weights")?;
        let first = weights.iter().map(|w| w.date).min();
        let previous_close = match inputs.get("previous") {
            None => self.params.base_value,
            Some(_) => previous_close(op, &input(&inputs, op, "previous")?, first)?,
        };
        let clock = Clock::new(trades.zone.as_deref(), self.params.interval, op)?;
        let candles = candles(&trades, &weights, &clock, previous_close)
            .map_err(|message| OpError::Invalid(format!("{op}: {message}")))?;
        let f64s = |get: fn(&Candle) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(candles.iter().map(get)))
        };
        let zone = trades.zone.clone();
        let bars = TimestampMillisecondArray::from_iter_values(candles.iter().map(|c| c.bar))
            .with_timezone_opt(zone.clone());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from_iter_values(
                candles.iter().map(|c| c.date),
            )),
            Arc::new(bars),
            f64s(|c| c.open),
            f64s(|c| c.high),
            f64s(|c| c.low),
            f64s(|c| c.close),
            Arc::new(Int64Array::from_iter_values(
                candles.iter().map(|c| c.trades),
            )),
            f64s(|c| c.divisor),
            f64s(|c| c.base),
        ];
        debug_assert!(columns.iter().all(|c| c.null_count() == 0));
        Ok(Table::from_batch(RecordBatch::try_new(
            schema(&zone),
            columns,
        )?))
    }
}
