//! `features.intraday`: a stock's intraday candles from its trades, with
//! session VWAP, returns, relative volume and the whale footprint (the buy
//! and sell value of trades at or above a size threshold).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::level::five_minutes;
use super::{Clock, Trades, column, date_text, input, intraday, ts_field};
use crate::operator::OpParams;
use crate::shared::sessions::Interval;
use crate::{Arity, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

/// Minutes of continuous trading in a HOSE session (09:15–11:30 and
/// 13:00–14:30), over which a day's volume is spread for relative volume.
const SESSION_MINUTES: f64 = 225.0;

/// Parameters of `features.intraday`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntradayParams {
    /// The candle length.
    ///
    /// ```yaml
    /// interval: 5m
    /// ```
    #[serde(default = "five_minutes")]
    pub interval: Interval,
    /// The smallest trade value (price × volume, VND) that counts as a
    /// whale trade; a trade worth exactly this much counts.
    ///
    /// ```yaml
    /// whale_min_value: 1.0e9
    /// ```
    pub whale_min_value: f64,
    /// How many sessions before the day set the volume a candle is
    /// compared with for `relative_volume` (fewer when `prices` holds
    /// fewer).
    ///
    /// ```yaml
    /// volume_sessions: 20
    /// ```
    #[serde(default = "default_sessions")]
    pub volume_sessions: usize,
}

fn default_sessions() -> usize {
    20
}

impl OpParams for IntradayParams {
    const NAME: &'static str = "features.intraday";
    const DOC: &'static str = "Intraday candles of each stock and day from input `trades` \
        (`symbol`, `ts`, `price`, `volume`, `side`), with input `prices` (daily `symbol`, \
        `date`, `reference`, `volume`) for the day's reference price and the volume of the \
        sessions before. Outputs per candle with trades: `open`, `high`, `low`, `close`, \
        `volume`, `value` (Σ price × volume), `trades`, `vwap` (the session's VWAP so far), \
        `ret` (against the previous candle's close; the first candle against the reference \
        price), `relative_volume` (the candle's volume over the average daily volume of the \
        `volume_sessions` sessions before, spread over the 225 minutes of a HOSE session; null \
        without history) and the whale footprint: `whale_buy_value` and `whale_sell_value` \
        (value of buyer- and seller-initiated trades worth at least `whale_min_value`), \
        `net_whale_flow` (buy − sell) and `whale_share` (whale value over the candle's value).";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::Exactly(2);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        if !(self.whale_min_value > 0.0 && self.whale_min_value.is_finite()) {
            return Err(ParamError::new(
                &["whale_min_value"],
                format!(
                    "whale_min_value {} must be a positive value in VND, e.g. 1.0e9",
                    self.whale_min_value
                ),
            ));
        }
        intraday(self.interval)?;
        Ok(Arc::new(Intraday { params: self }))
    }
}

#[derive(Debug)]
struct Intraday {
    params: IntradayParams,
}

/// One candle of one stock.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Candle {
    pub symbol: String,
    pub date: i32,
    pub bar: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub value: f64,
    pub trades: i64,
    pub vwap: f64,
    pub ret: f64,
    pub relative_volume: Option<f64>,
    pub whale_buy_value: f64,
    pub whale_sell_value: f64,
}

impl Candle {
    pub fn net_whale_flow(&self) -> f64 {
        self.whale_buy_value - self.whale_sell_value
    }

    pub fn whale_share(&self) -> f64 {
        (self.whale_buy_value + self.whale_sell_value) / self.value
    }
}

/// A stock's daily prices: the reference price and volume per day.
type Daily = HashMap<String, BTreeMap<i32, (f64, i64)>>;

fn daily(batch: &RecordBatch) -> Result<Daily, OpError> {
    let at = (IntradayParams::NAME, "prices");
    let symbol: &StringArray = column(batch, at, "symbol", "text")?;
    let date: &Date32Array = column(batch, at, "date", "a date")?;
    let reference: &Float64Array = column(batch, at, "reference", "Float64")?;
    let volume: &Int64Array = column(batch, at, "volume", "Int64")?;
    let mut out: Daily = HashMap::new();
    for i in 0..batch.num_rows() {
        out.entry(symbol.value(i).to_string())
            .or_default()
            .insert(date.value(i), (reference.value(i), volume.value(i)));
    }
    Ok(out)
}

impl Intraday {
    fn candles(
        &self,
        trades: &Trades,
        daily: &Daily,
        clock: &Clock,
    ) -> Result<Vec<Candle>, String> {
        let mut out: Vec<Candle> = Vec::new();
        // Rows are told apart by their symbol's rank, a number, not by
        // comparing text on every row.
        let (names, ranks, order) = trades.by_symbol_and_time();
        // The session so far: (symbol rank, day), Σ value, Σ volume; and the
        // candle being filled: (symbol rank, day, bar).
        let mut session: Option<(u32, i32)> = None;
        let mut filling: Option<(u32, i32, i64)> = None;
        let (mut value, mut volume) = (0.0, 0i64);
        let mut reference = 0.0;
        let mut expected: Option<f64> = None;
        for i in order {
            let (rank, ts) = (ranks[i], trades.ts(i));
            let (day, bar) = clock.day_and_bar(ts);
            if session != Some((rank, day)) {
                let symbol = names[rank as usize];
                session = Some((rank, day));
                (value, volume) = (0.0, 0);
                let days = daily.get(symbol);
                reference = days
                    .and_then(|days| days.get(&day))
                    .map(|(r, _)| *r)
                    .ok_or_else(|| {
                        format!(
                            "input 'prices' has no row for {symbol} on {}, which its reference \
                             price comes from",
                            date_text(day)
                        )
                    })?;
                let before: Vec<i64> = days
                    .map(|days| {
                        days.range(..day)
                            .rev()
                            .take(self.params.volume_sessions)
                            .map(|(_, (_, v))| *v)
                            .collect()
                    })
                    .unwrap_or_default();
                expected = (!before.is_empty()).then(|| {
                    let mean = before.iter().sum::<i64>() as f64 / before.len() as f64;
                    let minutes = self.params.interval.seconds().unwrap_or(300) as f64 / 60.0;
                    mean * minutes / SESSION_MINUTES
                });
            }
            let (price, size) = (trades.price(i), trades.volume(i));
            let worth = price * size as f64;
            value += worth;
            volume += size;
            if filling != Some((rank, day, bar)) {
                let previous_close = match (filling, out.last()) {
                    (Some((r, d, _)), Some(c)) if (r, d) == (rank, day) => c.close,
                    _ => reference,
                };
                filling = Some((rank, day, bar));
                out.push(Candle {
                    symbol: names[rank as usize].to_string(),
                    date: day,
                    bar,
                    open: price,
                    high: price,
                    low: price,
                    // `ret` is filled in from this once the candle closes.
                    ret: previous_close,
                    ..Candle::default()
                });
            }
            let c = out.last_mut().expect("pushed above");
            c.high = c.high.max(price);
            c.low = c.low.min(price);
            c.close = price;
            c.volume += size;
            c.value += worth;
            c.trades += 1;
            c.vwap = value / volume as f64;
            c.relative_volume = expected.map(|e| c.volume as f64 / e);
            if worth >= self.params.whale_min_value {
                match trades.buy(i) {
                    Some(true) => c.whale_buy_value += worth,
                    Some(false) => c.whale_sell_value += worth,
                    None => {}
                }
            }
        }
        for c in &mut out {
            c.ret = c.close / c.ret - 1.0;
        }
        Ok(out)
    }
}

pub(crate) fn schema(zone: &Option<Arc<str>>) -> SchemaRef {
    let f = |name: &str, ty: DataType| Field::new(name, ty, false);
    let float = |name: &str| f(name, DataType::Float64);
    Arc::new(Schema::new(vec![
        f("symbol", DataType::Utf8),
        f("date", DataType::Date32),
        ts_field("bar", zone),
        float("open"),
        float("high"),
        float("low"),
        float("close"),
        f("volume", DataType::Int64),
        float("value"),
        f("trades", DataType::Int64),
        float("vwap"),
        float("ret"),
        Field::new("relative_volume", DataType::Float64, true),
        float("whale_buy_value"),
        float("whale_sell_value"),
        float("net_whale_flow"),
        float("whale_share"),
    ]))
}

#[async_trait]
impl Operator for Intraday {
    async fn execute(&self, _ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let op = IntradayParams::NAME;
        let trades = Trades::read(&inputs, op, "trades")?;
        let daily = daily(&input(&inputs, op, "prices")?)?;
        let clock = Clock::new(trades.zone.as_deref(), self.params.interval, op)?;
        let candles = self
            .candles(&trades, &daily, &clock)
            .map_err(|message| OpError::Invalid(format!("{op}: {message}")))?;
        let f64s = |get: fn(&Candle) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(candles.iter().map(get)))
        };
        let i64s = |get: fn(&Candle) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(candles.iter().map(get)))
        };
        let zone = trades.zone.clone();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                candles.iter().map(|c| c.symbol.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(
                candles.iter().map(|c| c.date),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(candles.iter().map(|c| c.bar))
                    .with_timezone_opt(zone.clone()),
            ),
            f64s(|c| c.open),
            f64s(|c| c.high),
            f64s(|c| c.low),
            f64s(|c| c.close),
            i64s(|c| c.volume),
            f64s(|c| c.value),
            i64s(|c| c.trades),
            f64s(|c| c.vwap),
            f64s(|c| c.ret),
            Arc::new(Float64Array::from_iter(
                candles.iter().map(|c| c.relative_volume),
            )),
            f64s(|c| c.whale_buy_value),
            f64s(|c| c.whale_sell_value),
            f64s(Candle::net_whale_flow),
            f64s(Candle::whale_share),
        ];
        Ok(Table::from_batch(RecordBatch::try_new(
            schema(&zone),
            columns,
        )?))
    }
}
