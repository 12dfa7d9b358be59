//! The synthetic API's routes and what each answers, made by the
//! `fetch.synthetic` operator itself: the API serves the same rows a
//! pipeline generates.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use quiver_operators::arrow::array::{Array, Float64Array, Int64Array, RecordBatch};
use quiver_operators::arrow::json::ArrayWriter;
use quiver_operators::{ExecContext, Inputs, registry};
use serde_json::{Value, json};

/// The routes, by what they serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    Bars,
    Trades,
    Info,
    Float,
    Vwap,
    Rvol,
    Stats,
}

impl Route {
    pub const ALL: [Route; 7] = [
        Route::Bars,
        Route::Trades,
        Route::Info,
        Route::Float,
        Route::Vwap,
        Route::Rvol,
        Route::Stats,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Route::Bars => "bars",
            Route::Trades => "trades",
            Route::Info => "info",
            Route::Float => "float",
            Route::Vwap => "vwap",
            Route::Rvol => "rvol",
            Route::Stats => "stats",
        }
    }

    pub fn from_name(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.name() == name)
    }

    /// `/v1/bars/FPT` → (Bars, "FPT"); `/stats` → (Stats, "").
    pub fn parse(path: &str) -> Option<(Route, String)> {
        if path == "/stats" {
            return Some((Route::Stats, String::new()));
        }
        let rest = path.strip_prefix("/v1/")?;
        let (name, symbol) = rest.split_once('/')?;
        let route = Route::from_name(name).filter(|r| *r != Route::Stats)?;
        let valid = !symbol.is_empty()
            && symbol.len() <= 16
            && symbol.chars().all(|c| c.is_ascii_alphanumeric());
        valid.then(|| (route, symbol.to_ascii_uppercase()))
    }
}

/// The day enrichment sources describe when the request names none.
const DEFAULT_DAY: &str = "2026-01-05";

/// `2026-03-31` → `2026-01-28`: a date about two months earlier.
fn two_months_before(day: &str) -> Result<String, String> {
    let bad = || format!("'{day}' is not a date (YYYY-MM-DD)");
    let mut parts = day
        .splitn(3, '-')
        .map(|p| p.parse::<i32>().map_err(|_| bad()));
    let (y, m, d) = (
        parts.next().ok_or_else(bad)??,
        parts.next().ok_or_else(bad)??,
        parts.next().ok_or_else(bad)??,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let (y, m) = if m > 2 { (y, m - 2) } else { (y - 1, m + 10) };
    Ok(format!("{y:04}-{m:02}-{:02}", d.min(28)))
}

/// Runs `fetch.synthetic` with `params`.
async fn fetch(params: Value) -> Result<RecordBatch, String> {
    static CONTEXT: OnceLock<ExecContext> = OnceLock::new();
    let ctx = CONTEXT.get_or_init(ExecContext::standalone);
    let def = registry()
        .get("fetch.synthetic")
        .ok_or("fetch.synthetic is not registered")?;
    let operator = def.build(params).map_err(|e| e.to_string())?;
    let table = operator
        .execute(ctx, Inputs::default())
        .await
        .map_err(|e| e.to_string())?;
    table.concat().map_err(|e| e.to_string())
}

/// The rows of `batch` as JSON objects.
fn rows(batch: &RecordBatch) -> Result<Value, String> {
    let mut writer = ArrayWriter::new(Vec::new());
    writer.write(batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(json!([]));
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("no column {name}"))
}

fn param<'a>(query: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, String> {
    query
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("missing query parameter '{name}'"))
}

/// What `route` answers for `symbol`.
pub async fn body(
    route: Route,
    symbol: &str,
    query: &BTreeMap<String, String>,
) -> Result<Value, String> {
    let day = query.get("date").map_or(DEFAULT_DAY, String::as_str);
    match route {
        Route::Bars | Route::Trades => {
            let dataset = if route == Route::Bars {
                "prices"
            } else {
                "ticks"
            };
            let batch = fetch(json!({
                "dataset": dataset, "symbol": symbol,
                "start": param(query, "start")?, "end": param(query, "end")?,
            }))
            .await?;
            Ok(json!({ "symbol": symbol, "data": rows(&batch)? }))
        }
        Route::Info => {
            let batch = fetch(json!({"dataset": "stock_info", "symbol": symbol})).await?;
            Ok(json!({ "data": rows(&batch)? }))
        }
        Route::Float => {
            let batch = fetch(json!({"dataset": "stock_info", "symbol": symbol})).await?;
            let shares = column::<Int64Array>(&batch, "shares_outstanding")?.value(0);
            let ratio = column::<Float64Array>(&batch, "free_float")?.value(0);
            Ok(json!({
                "ticker": symbol,
                "shares_outstanding": shares,
                "free_float": ratio,
                "float_shares": (shares as f64 * ratio).round() as i64,
            }))
        }
        Route::Vwap => {
            let batch =
                fetch(json!({"dataset": "ticks", "symbol": symbol, "start": day, "end": day}))
                    .await?;
            let price = column::<Float64Array>(&batch, "price")?;
            let volume = column::<Int64Array>(&batch, "volume")?;
            let (mut value, mut shares) = (0.0, 0i64);
            for i in 0..batch.num_rows() {
                value += price.value(i) * volume.value(i) as f64;
                shares += volume.value(i);
            }
            let vwap = (shares > 0).then(|| value / shares as f64);
            Ok(json!({ "ticker": symbol, "date": day, "vwap": vwap, "volume": shares }))
        }
        Route::Rvol => {
            // The day's volume over the mean of the (up to) 20 sessions
            // before it, from two months of bars.
            let batch = fetch(json!({
                "dataset": "prices", "symbol": symbol, "start": two_months_before(day)?, "end": day,
            }))
            .await?;
            let volume = column::<Int64Array>(&batch, "volume")?;
            let n = volume.len();
            let first = n.saturating_sub(21);
            let rvol = (n >= 2).then(|| {
                let before: i64 = (first..n - 1).map(|i| volume.value(i)).sum();
                volume.value(n - 1) as f64 / (before as f64 / (n - 1 - first) as f64)
            });
            Ok(json!({ "ticker": symbol, "date": day, "relative_volume": rvol }))
        }
        Route::Stats => Ok(Value::Null),
    }
}
