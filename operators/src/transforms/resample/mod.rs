//! `transform.resample`: trades or ticks → OHLCV bars laid out on an
//! exchange's trading sessions (see [`BarClock`] for the layout rules).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options, take};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, TimeUnit};
use datafusion::arrow::row::{RowConverter, SortField};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::sessions::{
    BarClock, Exchange, Interval, NANOS_PER_SECOND, utc_to_wall, wall_to_utc,
};
use crate::{Arity, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

/// The output columns after the partition columns and the bar start.
const BAR_COLUMNS: [&str; 7] = ["open", "high", "low", "close", "volume", "trades", "vwap"];

/// Parameters of `transform.resample`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResampleParams {
    /// The bar length: `1m`, `5m`, `15m`, `30m`, `1h` or `1d`. Intraday bars
    /// start at each session segment's open (HOSE 09:15 and 13:00, NYSE
    /// 09:30) and step by the interval; a bar that would run past the
    /// segment's close is cut short there (HOSE, 1h: 09:15, 10:15, then
    /// 11:15–11:30; 13:00, then 14:00–14:45). Bars never span the lunch
    /// break or the night. A trade stamped exactly at a segment's close
    /// (11:30:00, 14:45:00, 16:00:00: closing-auction prints) joins the
    /// segment's last bar. `1d` makes one bar per trading day, stamped at
    /// the session open.
    ///
    /// ```yaml
    /// interval: 5m
    /// ```
    pub interval: Interval,

    /// Whose trading sessions the bars follow, always in the exchange's own
    /// time zone whatever the data's zone: `hose` (09:15–11:30 and
    /// 13:00–14:45 Asia/Ho_Chi_Minh), `nyse` (09:30–16:00 America/New_York,
    /// following daylight saving time, so 13:30 UTC in summer and 14:30 UTC
    /// in winter), both Monday to Friday (holidays simply have no trades),
    /// or `none`: bars tile the whole day, every day, aligned to midnight
    /// in the data's time zone.
    ///
    /// ```yaml
    /// exchange: hose
    /// ```
    pub exchange: Exchange,

    /// The trade time column: a timestamp, with a time zone (any zone, e.g.
    /// `+07:00` or `UTC`) or without (see `timezone`). The output's bar
    /// start column has this name and the same type. Defaults to `ts`.
    ///
    /// ```yaml
    /// ts: trade_time
    /// ```
    #[serde(default = "default_ts")]
    pub ts: String,

    /// The trade price column (any numeric type). Defaults to `price`.
    ///
    /// ```yaml
    /// price: last
    /// ```
    #[serde(default = "default_price")]
    pub price: String,

    /// The trade volume column (any numeric type). Integer volumes sum to an
    /// Int64 `volume`, others to a Float64 one. Defaults to `volume`.
    ///
    /// ```yaml
    /// volume: qty
    /// ```
    #[serde(default = "default_volume")]
    pub volume: String,

    /// Columns that split the trades into separate bar series, typically
    /// the symbol. They come first in the output, which is sorted by them
    /// and then by bar start. Defaults to none: one series.
    ///
    /// ```yaml
    /// partition_by: [symbol]
    /// ```
    #[serde(default)]
    pub partition_by: Vec<String>,

    /// The time zone of `ts` when its values carry none: an IANA name or a
    /// fixed offset. Defaults to the exchange's zone (data recorded on the
    /// exchange's wall clock), or UTC with `exchange: none`. Naive output bar
    /// starts are written in this zone too. A wall time that occurs twice
    /// (the autumn DST change) is read as its first occurrence; one that
    /// never occurs (the spring change) fails the run. Must be omitted when
    /// `ts` carries its own zone.
    ///
    /// ```yaml
    /// timezone: UTC
    /// ```
    #[serde(default)]
    pub timezone: Option<String>,

    /// What to do with trades outside the sessions (before the open, in the
    /// lunch break, after the close, at weekends): `drop` them (the
    /// default), fail the run with an `error` naming the first one, or
    /// `include` them in bars of their own, laid out like session bars on
    /// the stretch they fall in (HOSE, 5m: a 12:02 trade makes a 12:00 bar;
    /// the lunch stretch starts at 11:30, the pre-open stretch at midnight).
    /// With `1d`, included trades join their calendar day's bar.
    ///
    /// ```yaml
    /// outside: include
    /// ```
    #[serde(default)]
    pub outside: Outside,

    /// What to do with session bars that have no trades: `none` omits them
    /// (the default); `forward` emits them with open, high, low and close
    /// equal to the previous bar's close, volume and trades 0 and vwap null.
    /// Forward fill covers every session bar of every trading day (a day
    /// with at least one trade of any series) after a series' first trade,
    /// so every series ends on the same grid; never before a series' first
    /// trade. With `exchange: none` the grid is every bar from the first
    /// trading day's midnight to the last one's end.
    ///
    /// ```yaml
    /// fill: forward
    /// ```
    #[serde(default)]
    pub fill: Fill,
}

/// What to do with trades outside the sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outside {
    #[default]
    Drop,
    Error,
    Include,
}

/// What to do with bars that have no trades.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    #[default]
    None,
    Forward,
}

fn default_ts() -> String {
    "ts".into()
}

fn default_price() -> String {
    "price".into()
}

fn default_volume() -> String {
    "volume".into()
}

impl OpParams for ResampleParams {
    const NAME: &'static str = "transform.resample";
    const DOC: &'static str = "Turns trades or ticks (columns ts, price, volume; optionally \
        partitioned, e.g. by symbol) into OHLCV bars: [partition columns], ts (bar start, same \
        type as the input's), open, high, low, close, volume, trades, vwap (sum of \
        price × volume over sum of volume). Bars follow an exchange's sessions in its own time \
        zone (hose: 09:15–11:30 and 13:00–14:45 Asia/Ho_Chi_Minh; nyse: 09:30–16:00 \
        America/New_York with DST; or none), start at each session segment's open, are cut \
        short at its close and never span the lunch break or the night. Trades outside the \
        sessions are dropped unless `outside` says otherwise; bars without trades are omitted \
        unless `fill: forward`. Takes one input.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::Exactly(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        for (field, name) in [
            ("ts", &self.ts),
            ("price", &self.price),
            ("volume", &self.volume),
        ] {
            if name.trim().is_empty() {
                return Err(ParamError::new(
                    &[field],
                    format!("{field} is empty; name the input column, e.g. `{field}: {field}`"),
                ));
            }
        }
        if self.price == self.ts || self.volume == self.ts || self.volume == self.price {
            return Err(ParamError::new(
                &["volume"],
                "ts, price and volume must name three different columns",
            ));
        }
        if BAR_COLUMNS.contains(&self.ts.as_str()) {
            return Err(ParamError::new(
                &["ts"],
                format!(
                    "the bar start column takes the name of `ts`, and '{}' is already an \
                     output column; rename the time column first",
                    self.ts
                ),
            ));
        }
        for (i, column) in self.partition_by.iter().enumerate() {
            let problem = if self.partition_by[..i].contains(column) {
                "is listed twice"
            } else if [&self.ts, &self.price, &self.volume].contains(&column) {
                "is the time, price or volume column"
            } else if BAR_COLUMNS.contains(&column.as_str()) {
                "is the name of an output column"
            } else {
                continue;
            };
            return Err(ParamError::new(
                &["partition_by", &i.to_string()],
                format!("partition column '{column}' {problem}"),
            ));
        }
        let timezone = match &self.timezone {
            None => None,
            Some(name) => Some(name.parse::<Tz>().map_err(|_| {
                ParamError::new(
                    &["timezone"],
                    format!(
                        "unknown time zone '{name}'; use an IANA name such as \
                         Asia/Ho_Chi_Minh or America/New_York, or an offset such as +07:00"
                    ),
                )
            })?),
        };
        Ok(Arc::new(Resample {
            params: self,
            timezone,
        }))
    }
}

/// The runtime `transform.resample` operator.
#[derive(Debug, Clone)]
struct Resample {
    params: ResampleParams,
    timezone: Option<Tz>,
}

#[async_trait]
impl Operator for Resample {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let [input] = inputs.0.as_slice() else {
            return Err(OpError::Invalid(format!(
                "transform.resample takes one input (the trades) and got {}",
                inputs.len()
            )));
        };
        let table = input.table.clone();
        let op = self.clone();
        // On the node's own thread, off the async ones, so a timeout fires.
        ctx.run_cpu(1, move |ctx, _| {
            let batch = table.concat()?;
            ctx.check_cancelled()?;
            Ok(Table::from_batch(op.resample(&batch)?))
        })
        .await
    }
}

/// One bar being built, or built.
#[derive(Debug, Clone)]
struct Bar {
    /// A row of the bar's series, for its partition values.
    row: u32,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    volume_int: i64,
    trades: i64,
    price_volume: f64,
}

impl Bar {
    fn new(row: u32, price: f64) -> Self {
        Self {
            row,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 0.0,
            volume_int: 0,
            trades: 0,
            price_volume: 0.0,
        }
    }

    fn add(&mut self, price: f64, volume: f64, volume_int: i64) {
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.close = price;
        self.volume += volume;
        self.volume_int = self.volume_int.wrapping_add(volume_int);
        self.trades += 1;
        self.price_volume += price * volume;
    }

    fn vwap(&self) -> Option<f64> {
        (self.volume != 0.0).then(|| self.price_volume / self.volume)
    }
}

impl Resample {
    fn resample(&self, batch: &RecordBatch) -> Result<RecordBatch, OpError> {
        let p = &self.params;
        let invalid = |m: String| OpError::Invalid(format!("transform.resample: {m}"));
        let column = |name: &str, param: &str| {
            batch.column_by_name(name).ok_or_else(|| {
                let names: Vec<&str> = batch
                    .schema_ref()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                invalid(format!(
                    "the input has no column '{name}' (set `{param}` to the right one); its \
                     columns are {}",
                    names.join(", ")
                ))
            })
        };
        let ts = column(&p.ts, "ts")?;
        let price = column(&p.price, "price")?;
        let volume = column(&p.volume, "volume")?;
        let partitions = p
            .partition_by
            .iter()
            .map(|name| column(name, "partition_by"))
            .collect::<Result<Vec<_>, _>>()?;

        let DataType::Timestamp(unit, data_tz) = ts.data_type().clone() else {
            return Err(invalid(format!(
                "column '{}' is {}, not a timestamp; cast it first (in SQL: CAST({} AS TIMESTAMP))",
                p.ts,
                ts.data_type(),
                p.ts
            )));
        };
        // The zone stored values are wall times in, when they carry none.
        let naive_zone = match (&data_tz, self.timezone) {
            (Some(tz), Some(_)) => {
                return Err(invalid(format!(
                    "column '{}' already carries time zone {tz}; remove `timezone`, which \
                     says what zone timestamps without one are in",
                    p.ts
                )));
            }
            (Some(_), None) => None,
            (None, Some(zone)) => Some(zone),
            (None, None) => Some(zone(p.exchange.zone_name().unwrap_or("UTC"))?),
        };
        let bar_zone = match (p.exchange.zone_name(), &data_tz, naive_zone) {
            (Some(name), _, _) => zone(name)?,
            (None, Some(tz), _) => tz.parse::<Tz>().map_err(|e| invalid(e.to_string()))?,
            (None, None, Some(zone)) => zone,
            (None, None, None) => unreachable!("naive timestamps always get a zone"),
        };
        let clock = BarClock::new(
            p.exchange,
            bar_zone,
            p.interval,
            p.outside == Outside::Include,
        );
        let stamps_of = Stamps {
            unit_nanos: unit_nanos(unit),
            naive_zone,
        };

        let not_numeric = |name: &str, array: &ArrayRef| {
            invalid(format!(
                "column '{name}' is {}; it must be numeric",
                array.data_type()
            ))
        };
        if !price.data_type().is_numeric() {
            return Err(not_numeric(&p.price, price));
        }
        if !volume.data_type().is_numeric() {
            return Err(not_numeric(&p.volume, volume));
        }
        let strict = CastOptions {
            safe: false,
            ..Default::default()
        };
        let integer_volume = volume.data_type().is_integer();
        let prices = cast_with_options(price, &DataType::Float64, &strict)?;
        let prices = prices.as_primitive::<Float64Type>();
        let volumes = cast_with_options(volume, &DataType::Float64, &strict)?;
        let volumes = volumes.as_primitive::<Float64Type>();
        let volume_ints = if integer_volume {
            Some(cast_with_options(volume, &DataType::Int64, &strict)?)
        } else {
            None
        };
        let volume_ints = volume_ints.as_ref().map(|a| a.as_primitive::<Int64Type>());
        let stamps = cast(ts, &DataType::Int64)?;
        let stamps = stamps.as_primitive::<Int64Type>();

        let (ranks, series_count) = series_ranks(&partitions, batch.num_rows())?;

        // (series, instant, row) of every trade, in time order per series;
        // rows with a null time, price or volume record no trade.
        let mut trades = Vec::with_capacity(batch.num_rows());
        for (row, &series) in ranks.iter().enumerate() {
            if stamps.is_null(row) || prices.is_null(row) || volumes.is_null(row) {
                continue;
            }
            let instant = stamps_of
                .instant(stamps.value(row))
                .map_err(|e| invalid(format!("column '{}': {e}", p.ts)))?;
            trades.push((series, instant, row as u32));
        }
        trades.sort_unstable();

        let mut bars: BTreeMap<(u32, i64), Bar> = BTreeMap::new();
        let mut days = BTreeSet::new();
        let mut dropped = 0usize;
        for &(series, instant, row) in &trades {
            let Some(placed) = clock.place(instant) else {
                if p.outside == Outside::Error {
                    return Err(invalid(format!(
                        "a trade at {} is outside the {} sessions ({}); set `outside: drop` \
                         to drop such trades or `outside: include` to keep them",
                        DateTime::from_timestamp_nanos(instant).with_timezone(&bar_zone),
                        p.exchange.label(),
                        p.exchange.describe()
                    )));
                }
                dropped += 1;
                continue;
            };
            if placed.in_session {
                days.insert(placed.day);
            }
            let row_ = row as usize;
            let price = prices.value(row_);
            bars.entry((series, placed.start))
                .or_insert_with(|| Bar::new(row, price))
                .add(
                    price,
                    volumes.value(row_),
                    volume_ints.map_or(0, |v| v.value(row_)),
                );
        }
        if dropped > 0 {
            tracing::debug!(dropped, exchange = ?p.exchange, "Dropped trades outside the sessions");
        }

        let slots = match p.fill {
            Fill::None => Vec::new(),
            Fill::Forward => clock.slots(&days),
        };
        let mut out: Vec<(i64, Bar)> = Vec::with_capacity(bars.len());
        let mut bars = bars.into_iter().peekable();
        for series in 0..series_count {
            let mut series_bars = Vec::new();
            while let Some(((s, start), bar)) = bars.next_if(|((s, _), _)| *s == series) {
                debug_assert_eq!(s, series);
                series_bars.push((start, bar));
            }
            forward_fill(&series_bars, &slots, &mut out);
        }

        let output = Output {
            ts_type: ts.data_type().clone(),
            stamps: stamps_of,
            integer_volume,
        };
        self.output(batch, &partitions, &output, &out)
    }

    /// The output batch from the bars, each with its start instant.
    fn output(
        &self,
        batch: &RecordBatch,
        partitions: &[&ArrayRef],
        output: &Output,
        bars: &[(i64, Bar)],
    ) -> Result<RecordBatch, OpError> {
        let p = &self.params;
        let rows = UInt32Array::from_iter_values(bars.iter().map(|(_, b)| b.row));
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (name, array) in p.partition_by.iter().zip(partitions) {
            let field = batch.schema_ref().field_with_name(name)?.clone();
            fields.push(field);
            columns.push(take(array.as_ref(), &rows, None)?);
        }

        let starts = Int64Array::from_iter_values(
            bars.iter().map(|(start, _)| output.stamps.stored(*start)),
        );
        fields.push(Field::new(&p.ts, output.ts_type.clone(), false));
        columns.push(cast(&starts, &output.ts_type)?);

        let price = |f: fn(&Bar) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(
                bars.iter().map(|(_, b)| f(b)),
            ))
        };
        for (name, f) in [
            ("open", (|b: &Bar| b.open) as fn(&Bar) -> f64),
            ("high", |b| b.high),
            ("low", |b| b.low),
            ("close", |b| b.close),
        ] {
            fields.push(Field::new(name, DataType::Float64, false));
            columns.push(price(f));
        }
        if output.integer_volume {
            fields.push(Field::new("volume", DataType::Int64, false));
            columns.push(Arc::new(Int64Array::from_iter_values(
                bars.iter().map(|(_, b)| b.volume_int),
            )));
        } else {
            fields.push(Field::new("volume", DataType::Float64, false));
            columns.push(price(|b| b.volume));
        }
        fields.push(Field::new("trades", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from_iter_values(
            bars.iter().map(|(_, b)| b.trades),
        )));
        fields.push(Field::new("vwap", DataType::Float64, true));
        columns.push(Arc::new(Float64Array::from_iter(
            bars.iter().map(|(_, b)| b.vwap()),
        )));

        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// How the output's bar start column is written.
struct Output {
    ts_type: DataType,
    stamps: Stamps,
    integer_volume: bool,
}

/// How a timestamp column's stored integers relate to instants.
#[derive(Debug, Clone, Copy)]
struct Stamps {
    /// Nanoseconds in one unit of the column.
    unit_nanos: i64,
    /// The zone stored values are wall-clock times in, when the column
    /// carries no zone of its own.
    naive_zone: Option<Tz>,
}

impl Stamps {
    /// The instant (ns since the epoch, UTC) a stored value stands for.
    fn instant(&self, value: i64) -> Result<i64, String> {
        let nanos = value
            .checked_mul(self.unit_nanos)
            .ok_or_else(|| format!("timestamp {value} is outside the years 1677–2262"))?;
        match self.naive_zone {
            None => Ok(nanos),
            Some(zone) => wall_to_utc(&zone, nanos).ok_or_else(|| {
                format!(
                    "{} does not exist in time zone {zone} (the clocks skipped it)",
                    DateTime::from_timestamp_nanos(nanos).naive_utc()
                )
            }),
        }
    }

    /// The stored value for an instant that is a whole number of seconds.
    fn stored(&self, instant: i64) -> i64 {
        let wall = match self.naive_zone {
            None => instant,
            Some(zone) => utc_to_wall(&zone, instant),
        };
        wall / self.unit_nanos
    }
}

/// Appends one series' bars to `out` in time order, with a filled bar for
/// every slot after the series' first bar that has none.
fn forward_fill(bars: &[(i64, Bar)], slots: &[i64], out: &mut Vec<(i64, Bar)>) {
    let Some((first, _)) = bars.first() else {
        return;
    };
    let mut slots = slots[slots.partition_point(|s| s <= first)..]
        .iter()
        .copied()
        .peekable();
    // Empty: no trades, no volume, so no vwap.
    let filled = |previous: &Bar| Bar::new(previous.row, previous.close);
    for (start, bar) in bars {
        while let Some(slot) = slots.next_if(|s| s <= start) {
            if slot < *start {
                let previous = &out.last().expect("a bar before any slot").1;
                out.push((slot, filled(previous)));
            }
        }
        out.push((*start, bar.clone()));
    }
    for slot in slots {
        let previous = &out.last().expect("the series' first bar").1;
        out.push((slot, filled(previous)));
    }
}

/// Each row's series as its rank in the sort order of the partition values
/// (so output sorted by rank is sorted by partition), and the number of series.
fn series_ranks(partitions: &[&ArrayRef], rows: usize) -> Result<(Vec<u32>, u32), OpError> {
    if partitions.is_empty() {
        return Ok((vec![0; rows], 1));
    }
    let converter = RowConverter::new(
        partitions
            .iter()
            .map(|a| SortField::new(a.data_type().clone()))
            .collect(),
    )?;
    let columns: Vec<ArrayRef> = partitions.iter().map(|a| Arc::clone(a)).collect();
    let keys = converter.convert_columns(&columns)?;
    let mut ids = HashMap::new();
    let mut series = Vec::with_capacity(rows);
    for row in 0..rows {
        let next = ids.len();
        series.push(*ids.entry(keys.row(row)).or_insert(next));
    }
    // Row encodings compare in the columns' sort order.
    let mut order: Vec<_> = ids.iter().map(|(key, &id)| (*key, id)).collect();
    order.sort_unstable();
    let mut rank = vec![0u32; order.len()];
    for (r, (_, id)) in order.iter().enumerate() {
        rank[*id] = r as u32;
    }
    Ok((
        series.into_iter().map(|id| rank[id]).collect(),
        order.len() as u32,
    ))
}

fn zone(name: &str) -> Result<Tz, OpError> {
    name.parse()
        .map_err(|e| OpError::Internal(format!("time zone {name} does not load: {e}")))
}

fn unit_nanos(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => NANOS_PER_SECOND,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

#[cfg(test)]
mod tests;
