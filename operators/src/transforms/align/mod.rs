//! `align.timestamps`: puts per-symbol tables on one timeline, long or wide.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Date64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
    TimestampSecondArray, UInt32Array,
};
use datafusion::arrow::compute::{CastOptions, cast, cast_with_options, concat, take};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Field, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::arrow::util::display::array_value_to_string;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::{Arity, ExecContext, Input, Inputs, OpError, Operator, ParamError, Table, Workload};

/// The input name that holds the calendar under `join: calendar`.
const CALENDAR_INPUT: &str = "calendar";

/// Parameters of `align.timestamps`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlignParams {
    /// The column naming each row's symbol. An input without this column
    /// is one symbol's table, and the input's name is the symbol (so
    /// `inputs: {AAPL: aapl_bars, MSFT: msft_bars}` aligns two symbols). A
    /// fan-in such as `features[*]` adds a `symbol` column. In the output
    /// the symbol is text. Defaults to `symbol`.
    ///
    /// ```yaml
    /// key: ticker
    /// ```
    #[serde(default = "default_key")]
    pub key: String,

    /// The time column: a date or a timestamp, the same type in every input.
    /// Defaults to `ts`, or to `date` when the first input has no `ts`.
    ///
    /// ```yaml
    /// time: date
    /// ```
    #[serde(default)]
    pub time: Option<String>,

    /// The value columns to keep, in this order. Defaults to every column
    /// but the key and the time, in the first input's order.
    ///
    /// ```yaml
    /// columns: [close, volume]
    /// ```
    #[serde(default)]
    pub columns: Option<Vec<String>>,

    /// `long` (the default): one row per time and symbol, columns key, time,
    /// then the values, sorted by time then symbol; every symbol gets a row
    /// at every time of the timeline, with nulls where it has no data.
    /// `wide`: one row per time, columns time then `{column}_{symbol}` for
    /// each value column and each symbol (`close_AAPL`, `close_MSFT`,
    /// `volume_AAPL`, …), symbols in sorted order.
    ///
    /// ```yaml
    /// layout: wide
    /// ```
    #[serde(default)]
    pub layout: Layout,

    /// Which times make the timeline: `outer` (the default), every time at
    /// which any symbol has a row; `inner`, only the times at which every
    /// symbol has one; `calendar`, exactly the times given by `calendar` or
    /// by an input named `calendar` (its `time` column, or its only column),
    /// dropping rows at other times. A symbol that starts later (a new
    /// listing) is null before its first row under `outer` and `calendar`.
    ///
    /// ```yaml
    /// join: inner
    /// ```
    #[serde(default)]
    pub join: Join,

    /// The timeline for `join: calendar`, as dates or timestamps written as
    /// text, read as the time column's type (a timestamp without an offset
    /// is in the time column's zone). Given in any order; duplicates count
    /// once.
    ///
    /// ```yaml
    /// calendar: [2024-01-02, 2024-01-03, 2024-01-04]
    /// ```
    #[serde(default)]
    pub calendar: Option<Vec<String>>,

    /// Forward fill, per symbol. A time at which a symbol has no row takes
    /// the symbol's latest earlier row as a whole (under `join: calendar`
    /// that may be a row between two calendar times), and one row fills at
    /// most `limit` times: with `limit: 1`, a two-day gap gets one filled
    /// day and one null. Omit `limit` to fill without bound. Nothing is
    /// filled before a symbol's first row, so a later listing stays null
    /// until it lists. Nulls inside the inputs' own rows are kept as they are.
    ///
    /// ```yaml
    /// ffill: {limit: 5}
    /// ```
    #[serde(default)]
    pub ffill: Option<Ffill>,
}

/// Forward fill settings.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ffill {
    /// The most times one row is repeated after its own time (the longest
    /// gap filled); at least 1. Omit for no limit.
    ///
    /// ```yaml
    /// limit: 3
    /// ```
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The output's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Long,
    Wide,
}

/// Which times make the timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Join {
    Inner,
    #[default]
    Outer,
    Calendar,
}

fn default_key() -> String {
    "symbol".into()
}

impl OpParams for AlignParams {
    const NAME: &'static str = "align.timestamps";
    const DOC: &'static str = "Combines per-symbol tables into one on a shared timeline. Takes \
        one table with a symbol column (such as a `node[*]` fan-in) or several inputs, each one \
        symbol named by the input. Layout long (symbol, ts, values; sorted by ts then symbol) \
        or wide (ts, close_AAPL, close_MSFT, …). The timeline is the union of all times \
        (outer), their intersection (inner), or an explicit calendar; symbols without a row at \
        a time get nulls, optionally forward-filled from their previous row up to a limit, \
        never before their first row.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::AtLeast(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        if self.key.trim().is_empty() {
            return Err(ParamError::new(
                &["key"],
                "key is empty; name the symbol column, e.g. `key: symbol`",
            ));
        }
        if let Some(time) = &self.time {
            if time.trim().is_empty() {
                return Err(ParamError::new(
                    &["time"],
                    "time is empty; name the time column, e.g. `time: ts`",
                ));
            }
            if *time == self.key {
                return Err(ParamError::new(
                    &["time"],
                    "time and key name the same column",
                ));
            }
        }
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                return Err(ParamError::new(
                    &["columns"],
                    "columns is an empty list; omit it to keep every column",
                ));
            }
            for (i, column) in columns.iter().enumerate() {
                let problem = if columns[..i].contains(column) {
                    "is listed twice"
                } else if *column == self.key {
                    "is the key column, which is always kept"
                } else if Some(column) == self.time.as_ref() {
                    "is the time column, which is always kept"
                } else {
                    continue;
                };
                return Err(ParamError::new(
                    &["columns", &i.to_string()],
                    format!("column '{column}' {problem}"),
                ));
            }
        }
        if let Some(calendar) = &self.calendar {
            if self.join != Join::Calendar {
                return Err(ParamError::new(
                    &["calendar"],
                    "calendar is only used with `join: calendar`; set it, or remove calendar",
                ));
            }
            if calendar.is_empty() {
                return Err(ParamError::new(&["calendar"], "calendar is an empty list"));
            }
            let text = StringArray::from(calendar.clone());
            let as_time = DataType::Timestamp(TimeUnit::Nanosecond, None);
            if cast_with_options(&text, &as_time, &strict()).is_err() {
                let i = calendar
                    .iter()
                    .position(|c| {
                        cast_with_options(&StringArray::from(vec![c.as_str()]), &as_time, &strict())
                            .is_err()
                    })
                    .unwrap_or(0);
                return Err(ParamError::new(
                    &["calendar", &i.to_string()],
                    format!(
                        "'{}' is not a date or a timestamp; write e.g. 2024-01-02 or \
                         2024-01-02T09:30:00",
                        calendar[i]
                    ),
                ));
            }
        }
        if let Some(Ffill { limit: Some(0) }) = self.ffill {
            return Err(ParamError::new(
                &["ffill", "limit"],
                "limit 0 fills nothing; use at least 1, or remove ffill",
            ));
        }
        Ok(Arc::new(Align { params: self }))
    }
}

fn strict() -> CastOptions<'static> {
    CastOptions {
        safe: false,
        ..Default::default()
    }
}

/// The runtime `align.timestamps` operator.
#[derive(Debug, Clone)]
struct Align {
    params: AlignParams,
}

#[async_trait]
impl Operator for Align {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let op = self.clone();
        // On the node's own thread, off the async ones, so a timeout fires.
        ctx.run_cpu(1, move |ctx, _| {
            ctx.check_cancelled()?;
            Ok(Table::from_batch(op.align(&inputs)?))
        })
        .await
    }
}

/// Every input's rows, concatenated.
struct Rows {
    /// Each row's symbol.
    symbols: Vec<String>,
    /// Each row's time as the time type's integer.
    times: Vec<i64>,
    /// The value columns, in output order.
    values: Vec<(Field, ArrayRef)>,
    time_field: Field,
    /// Symbols named by inputs, which exist even when their input is empty.
    named: Vec<String>,
}

fn invalid(message: String) -> OpError {
    OpError::Invalid(format!("align.timestamps: {message}"))
}

impl Align {
    fn align(&self, inputs: &Inputs) -> Result<RecordBatch, OpError> {
        let p = &self.params;
        let (calendar_input, data): (Vec<&Input>, Vec<&Input>) = inputs
            .iter()
            .partition(|i| p.join == Join::Calendar && i.name == CALENDAR_INPUT);
        if data.is_empty() {
            return Err(invalid("there are no inputs to align".into()));
        }
        let rows = self.gather(&data)?;

        // Each symbol's (time, row), in time order.
        let mut series: BTreeMap<&str, Vec<(i64, u32)>> = BTreeMap::new();
        for name in &rows.named {
            series.entry(name).or_default();
        }
        for (row, (symbol, time)) in rows.symbols.iter().zip(&rows.times).enumerate() {
            series.entry(symbol).or_default().push((*time, row as u32));
        }
        for (symbol, points) in &mut series {
            points.sort_unstable();
            if let Some(w) = points.windows(2).find(|w| w[0].0 == w[1].0) {
                let time = time_array(rows.time_field.data_type(), vec![w[0].0]);
                return Err(invalid(format!(
                    "symbol '{symbol}' has two rows at {}; align needs at most one row per \
                     symbol and time",
                    array_value_to_string(&time, 0)?
                )));
            }
        }

        let timeline = match p.join {
            Join::Outer => {
                let mut times = rows.times.clone();
                times.sort_unstable();
                times.dedup();
                times
            }
            Join::Inner => {
                let mut times = rows.times.clone();
                times.sort_unstable();
                let everyone = series.len();
                let mut shared = Vec::new();
                for run in times.chunk_by(|a, b| a == b) {
                    // One row per symbol and time, so a run as long as the
                    // symbol count means every symbol has this time.
                    if run.len() == everyone {
                        shared.push(run[0]);
                    }
                }
                shared
            }
            Join::Calendar => self.calendar(&calendar_input, &rows.time_field)?,
        };

        let limit = p.ffill.map(|f| f.limit.unwrap_or(usize::MAX));
        let picks: Vec<(&str, Vec<Option<u32>>)> = series
            .iter()
            .map(|(symbol, points)| (*symbol, pick_rows(&timeline, points, limit)))
            .collect();

        let time_type = rows.time_field.data_type();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        match p.layout {
            Layout::Long => {
                let n = picks.len();
                fields.push(Field::new(&p.key, DataType::Utf8, false));
                let symbols: Vec<&str> = (0..timeline.len())
                    .flat_map(|_| picks.iter().map(|(s, _)| *s))
                    .collect();
                columns.push(Arc::new(StringArray::from(symbols)) as ArrayRef);
                fields.push(rows.time_field.clone().with_nullable(false));
                columns.push(time_array(
                    time_type,
                    timeline
                        .iter()
                        .flat_map(|t| std::iter::repeat_n(*t, n))
                        .collect(),
                ));
                let indices = UInt32Array::from_iter(
                    (0..timeline.len()).flat_map(|t| picks.iter().map(move |(_, rows)| rows[t])),
                );
                for (field, values) in &rows.values {
                    fields.push(field.clone().with_nullable(true));
                    columns.push(take(values.as_ref(), &indices, None)?);
                }
            }
            Layout::Wide => {
                fields.push(rows.time_field.clone().with_nullable(false));
                columns.push(time_array(time_type, timeline.clone()));
                for (field, values) in &rows.values {
                    for (symbol, picked) in &picks {
                        let name = format!("{}_{symbol}", field.name());
                        if fields.iter().any(|f| f.name() == &name) {
                            return Err(invalid(format!(
                                "the wide layout names two columns '{name}'; rename a column \
                                 or a symbol so that {{column}}_{{symbol}} names are unique"
                            )));
                        }
                        fields.push(Field::new(name, field.data_type().clone(), true));
                        let indices = UInt32Array::from(picked.clone());
                        columns.push(take(values.as_ref(), &indices, None)?);
                    }
                }
            }
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    /// Reads every data input into one set of rows.
    fn gather(&self, data: &[&Input]) -> Result<Rows, OpError> {
        let p = &self.params;
        let batches = data
            .iter()
            .map(|i| i.table.concat())
            .collect::<Result<Vec<_>, _>>()?;
        let first = batches[0].schema();
        let names = |schema: &Schema| {
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let time = match &p.time {
            Some(time) => time.clone(),
            None if first.column_with_name("ts").is_some() => "ts".into(),
            None => "date".into(),
        };
        let value_names: Vec<String> = match &p.columns {
            Some(columns) => columns.clone(),
            None => first
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .filter(|n| *n != time && *n != p.key)
                .collect(),
        };

        let mut rows = Rows {
            symbols: Vec::new(),
            times: Vec::new(),
            values: Vec::new(),
            time_field: Field::new(&time, DataType::Null, false),
            named: Vec::new(),
        };
        let mut value_parts: Vec<Vec<ArrayRef>> = vec![Vec::new(); value_names.len()];
        for (input, batch) in data.iter().zip(&batches) {
            let schema = batch.schema();
            let column = |name: &str, what: &str, param: &str| {
                batch.column_by_name(name).ok_or_else(|| {
                    invalid(format!(
                        "input '{}' has no {what} column '{name}' (see `{param}`); its columns \
                         are {}",
                        input.name,
                        names(&schema)
                    ))
                })
            };
            let times = column(&time, "time", "time")?;
            let time_field = schema.field_with_name(&time)?;
            if rows.time_field.data_type() == &DataType::Null {
                rows.time_field = time_field.clone();
            } else if rows.time_field.data_type() != time_field.data_type() {
                return Err(invalid(format!(
                    "time column '{time}' is {} in input '{}' but {} in input '{}'; cast them \
                     to one type",
                    time_field.data_type(),
                    input.name,
                    rows.time_field.data_type(),
                    data[0].name
                )));
            }
            rows.times.extend(time_values(times, &time, &input.name)?);

            match batch.column_by_name(&p.key) {
                None => {
                    rows.named.push(input.name.clone());
                    rows.symbols
                        .extend(std::iter::repeat_n(input.name.clone(), batch.num_rows()));
                }
                Some(keys) => {
                    let keys = cast(keys, &DataType::Utf8).map_err(|_| {
                        invalid(format!(
                            "key column '{}' is {}, which has no text form",
                            p.key,
                            keys.data_type()
                        ))
                    })?;
                    let keys = keys.as_string::<i32>();
                    for key in keys.iter() {
                        let key = key.ok_or_else(|| {
                            invalid(format!(
                                "key column '{}' of input '{}' holds a null",
                                p.key, input.name
                            ))
                        })?;
                        rows.symbols.push(key.to_string());
                    }
                }
            }

            for (i, name) in value_names.iter().enumerate() {
                let values = column(name, "value", "columns")?;
                let field = schema.field_with_name(name)?;
                match rows.values.get(i) {
                    None => rows.values.push((field.clone(), Arc::clone(values))),
                    Some((f, _)) if f.data_type() != field.data_type() => {
                        return Err(invalid(format!(
                            "column '{name}' is {} in input '{}' but {} in input '{}'; cast \
                             them to one type",
                            field.data_type(),
                            input.name,
                            f.data_type(),
                            data[0].name
                        )));
                    }
                    Some(_) => {}
                }
                value_parts[i].push(Arc::clone(values));
            }
        }
        for ((_, values), parts) in rows.values.iter_mut().zip(&value_parts) {
            if parts.len() > 1 {
                let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                *values = concat(&parts)?;
            }
        }
        Ok(rows)
    }

    /// The timeline of `join: calendar`: sorted, without duplicates.
    fn calendar(&self, input: &[&Input], time_field: &Field) -> Result<Vec<i64>, OpError> {
        let p = &self.params;
        let time_type = time_field.data_type();
        let times = match (&p.calendar, input) {
            (Some(_), [_, ..]) => {
                return Err(invalid(
                    "both the `calendar` parameter and a `calendar` input give the calendar; \
                     keep one"
                        .into(),
                ));
            }
            (None, []) => {
                return Err(invalid(
                    "`join: calendar` needs the times: set `calendar: [...]` or add an input \
                     named `calendar`"
                        .into(),
                ));
            }
            (Some(list), []) => {
                let text = StringArray::from(list.clone());
                cast_with_options(&text, time_type, &strict())
                    .map_err(|e| invalid(format!("calendar does not read as {time_type}: {e}")))?
            }
            (None, [calendar, ..]) => {
                let batch = calendar.table.concat()?;
                let column = match batch.column_by_name(time_field.name()) {
                    Some(c) => c,
                    None if batch.num_columns() == 1 => batch.column(0),
                    None => {
                        return Err(invalid(format!(
                            "the calendar input has no column '{}' and more than one column",
                            time_field.name()
                        )));
                    }
                };
                cast_with_options(column, time_type, &strict()).map_err(|e| {
                    invalid(format!(
                        "the calendar input's {} does not read as {time_type}: {e}",
                        column.data_type()
                    ))
                })?
            }
        };
        let mut times: Vec<i64> = time_values(&times, time_field.name(), CALENDAR_INPUT)?;
        times.sort_unstable();
        times.dedup();
        Ok(times)
    }
}

/// For each time of the timeline, the row of `points` (a symbol's (time,
/// row) in time order) to show: its row at that time, or with forward fill
/// its latest earlier row, each row filling at most `limit` times.
fn pick_rows(timeline: &[i64], points: &[(i64, u32)], limit: Option<usize>) -> Vec<Option<u32>> {
    let mut picked = Vec::with_capacity(timeline.len());
    let mut next = 0;
    let mut latest: Option<(i64, u32)> = None;
    let mut filled = 0usize;
    for &t in timeline {
        while let Some(&point) = points.get(next).filter(|(time, _)| *time <= t) {
            latest = Some(point);
            filled = 0;
            next += 1;
        }
        picked.push(match (latest, limit) {
            (Some((time, row)), _) if time == t => Some(row),
            (Some((_, row)), Some(limit)) if filled < limit => {
                filled += 1;
                Some(row)
            }
            _ => None,
        });
    }
    picked
}

/// A time column's values as integers (days, milliseconds or the
/// timestamp's unit); nulls are an error.
fn time_values(array: &ArrayRef, name: &str, input: &str) -> Result<Vec<i64>, OpError> {
    let values: Vec<Option<i64>> = match array.data_type() {
        DataType::Date32 => array
            .as_primitive::<Date32Type>()
            .iter()
            .map(|v| v.map(i64::from))
            .collect(),
        DataType::Date64 => array.as_primitive::<Date64Type>().iter().collect(),
        DataType::Timestamp(TimeUnit::Second, _) => {
            array.as_primitive::<TimestampSecondType>().iter().collect()
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .collect(),
        other => {
            return Err(invalid(format!(
                "time column '{name}' of input '{input}' is {other}; it must be a date or a \
                 timestamp"
            )));
        }
    };
    values
        .into_iter()
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| {
            invalid(format!(
                "time column '{name}' of input '{input}' holds a null"
            ))
        })
}

/// A time column of `data_type` (one `time_values` accepts) from integers.
fn time_array(data_type: &DataType, values: Vec<i64>) -> ArrayRef {
    match data_type {
        DataType::Date32 => Arc::new(Date32Array::from_iter_values(
            values.into_iter().map(|v| v as i32),
        )),
        DataType::Date64 => Arc::new(Date64Array::from(values)),
        DataType::Timestamp(unit, tz) => match unit {
            TimeUnit::Second => {
                Arc::new(TimestampSecondArray::from(values).with_timezone_opt(tz.clone()))
            }
            TimeUnit::Millisecond => {
                Arc::new(TimestampMillisecondArray::from(values).with_timezone_opt(tz.clone()))
            }
            TimeUnit::Microsecond => {
                Arc::new(TimestampMicrosecondArray::from(values).with_timezone_opt(tz.clone()))
            }
            TimeUnit::Nanosecond => {
                Arc::new(TimestampNanosecondArray::from(values).with_timezone_opt(tz.clone()))
            }
        },
        other => unreachable!("time_values rejects {other}"),
    }
}

#[cfg(test)]
mod tests;
