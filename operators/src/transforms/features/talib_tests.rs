//! `features.compute` against TA-Lib, on real prices.
//!
//! The fixtures under `operators/tests/fixtures/talib/` hold slices of the
//! daily prices in `shared/data/stocks-daily/` with the outputs of TA-Lib
//! (the `ta-lib` 0.8.2 wheel from PyPI) computed on exactly those rows, as
//! written by `operators/tests/reference/make_talib_vectors.py`. Empty
//! fields are TA-Lib's NaN (the warm-up), which must be exactly where this
//! operator outputs null.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;

use crate::registry::registry;
use crate::{Input, Inputs, Table};

const TICKERS: [&str; 4] = ["AAPL", "IBM", "GOOG", "FB"];

/// A fixture's columns by name: inputs, then TA-Lib's outputs (NaN when empty).
struct Fixture {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Fixture {
    fn load(ticker: &str) -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/talib")
            .join(format!("{ticker}.csv"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut lines = text.lines();
        let header = lines.next().unwrap().split(',').map(String::from).collect();
        let rows = lines
            .map(|l| l.split(',').map(String::from).collect())
            .collect();
        Fixture { header, rows }
    }

    fn index(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap()
    }

    fn floats(&self, name: &str) -> Vec<f64> {
        let i = self.index(name);
        self.rows
            .iter()
            .map(|r| match r[i].as_str() {
                "" => f64::NAN,
                v => v.parse().unwrap(),
            })
            .collect()
    }

    /// The inputs as a table: symbol, date (Date32), close, high, low,
    /// raw_close, volume.
    fn batch(&self, symbol: &str) -> RecordBatch {
        let i = self.index("date");
        let dates: StringArray = self.rows.iter().map(|r| Some(r[i].as_str())).collect();
        let mut fields = vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![symbol; self.rows.len()])),
            cast(&dates, &DataType::Date32).unwrap(),
        ];
        for name in ["close", "high", "low", "raw_close", "volume"] {
            fields.push(Field::new(name, DataType::Float64, false));
            columns.push(Arc::new(
                self.floats(name)
                    .into_iter()
                    .collect::<datafusion::arrow::array::Float64Array>(),
            ));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }
}

/// The features with TA-Lib equivalents, by fixture column.
fn params(partition: bool) -> serde_json::Value {
    let mut p = json!({
        "ts": "date",
        "features": [
            {"kind": "rolling_mean", "window": 5},
            {"kind": "rolling_mean", "window": 20},
            {"kind": "rolling_mean", "window": 60},
            {"kind": "rolling_std", "window": 5},
            {"kind": "rolling_std", "window": 20},
            {"kind": "ema", "window": 12},
            {"kind": "ema", "window": 26},
            {"kind": "rsi", "window": 14},
            {"kind": "return", "name": "rocp_1"},
        ],
    });
    if partition {
        p["partition_by"] = json!("symbol");
    }
    p
}

/// ATR runs on the raw prices: high, low and the unadjusted close.
fn atr_params(partition: bool) -> serde_json::Value {
    let mut p = json!({
        "ts": "date",
        "close": "raw_close",
        "features": [{"kind": "atr", "window": 14}],
    });
    if partition {
        p["partition_by"] = json!("symbol");
    }
    p
}

/// Runs the operator over `batch` cut into batches of `rows` rows, as a
/// source would deliver it, so that series span batch boundaries.
async fn run(params: serde_json::Value, batch: RecordBatch, rows: usize) -> RecordBatch {
    let op = registry()
        .get("features.compute")
        .unwrap()
        .build(params)
        .unwrap();
    let batches: Vec<RecordBatch> = (0..batch.num_rows())
        .step_by(rows)
        .map(|at| batch.slice(at, rows.min(batch.num_rows() - at)))
        .collect();
    let table = op
        .execute(
            &crate::ExecContext::standalone(),
            Inputs(vec![Input {
                name: "prices".into(),
                table: Arc::new(Table::new(batch.schema(), batches)),
            }]),
        )
        .await
        .unwrap();
    table.concat().unwrap()
}

/// Checks `column` of `out` against the fixture's TA-Lib column, row by row
/// (`rows` maps fixture rows to output rows).
fn check(out: &RecordBatch, column: &str, fixture: &Fixture, rows: &[usize], what: &str) {
    let got = out
        .column_by_name(column)
        .unwrap_or_else(|| panic!("{what}: no column {column}"))
        .as_primitive::<Float64Type>();
    let want = fixture.floats(column);
    let mut compared = 0;
    for (i, &e) in want.iter().enumerate() {
        let r = rows[i];
        let date = &fixture.rows[i][0];
        if e.is_nan() {
            assert!(
                got.is_null(r),
                "{what} {column} {date}: TA-Lib is in warm-up, got {}",
                got.value(r)
            );
            continue;
        }
        assert!(got.is_valid(r), "{what} {column} {date}: null, TA-Lib {e}");
        let g = got.value(r);
        let tol = 1e-9 * g.abs().max(e.abs()) + 1e-12;
        assert!(
            (g - e).abs() <= tol,
            "{what} {column} {date}: got {g}, TA-Lib {e}"
        );
        compared += 1;
    }
    assert!(
        compared > 100 || fixture.rows.len() < 300,
        "{what} {column}"
    );
}

const COLUMNS: [&str; 9] = [
    "sma_5", "sma_20", "sma_60", "std_5", "std_20", "ema_12", "ema_26", "rsi_14", "rocp_1",
];

#[tokio::test]
async fn every_ticker_matches_talib() {
    for ticker in TICKERS {
        let fixture = Fixture::load(ticker);
        let rows: Vec<usize> = (0..fixture.rows.len()).collect();
        let out = run(params(false), fixture.batch(ticker), 97).await;
        for column in COLUMNS {
            check(&out, column, &fixture, &rows, ticker);
        }
        let out = run(atr_params(false), fixture.batch(ticker), 1000).await;
        check(&out, "atr_14", &fixture, &rows, ticker);
    }
}

/// All tickers in one table, rows shuffled: partitioning and sorting must
/// give each ticker exactly its own series, and keep the shuffled order.
#[tokio::test]
async fn a_shuffled_multi_symbol_table_matches_talib_per_symbol() {
    let fixtures: Vec<Fixture> = TICKERS.iter().map(|t| Fixture::load(t)).collect();
    let batches: Vec<RecordBatch> = fixtures
        .iter()
        .zip(TICKERS)
        .map(|(f, t)| f.batch(t))
        .collect();
    let all = concat_batches(&batches[0].schema(), &batches).unwrap();
    let n = all.num_rows();
    // A fixed permutation: i -> i * 7919 mod n (7919 is prime, n is not a
    // multiple of it).
    assert_ne!(n % 7919, 0);
    let order: Vec<u32> = (0..n).map(|i| (i * 7919 % n) as u32).collect();
    let shuffled = take_record_batch(&all, &UInt32Array::from(order.clone())).unwrap();
    // Where each original row ended up.
    let mut position = vec![0; n];
    for (at, &row) in order.iter().enumerate() {
        position[row as usize] = at;
    }

    let out = run(params(true), shuffled.clone(), 300).await;
    let atr = run(atr_params(true), shuffled, 5000).await;
    let mut first = 0;
    for (fixture, ticker) in fixtures.iter().zip(TICKERS) {
        let rows: Vec<usize> = (first..first + fixture.rows.len())
            .map(|r| position[r])
            .collect();
        for column in COLUMNS {
            check(&out, column, fixture, &rows, ticker);
        }
        check(&atr, "atr_14", fixture, &rows, ticker);
        first += fixture.rows.len();
    }
}
