//! `positions`: what a made-up portfolio holds on each trading day. A
//! portfolio (named like a ticker, e.g. `P1`) holds 8 of the VN30 stocks,
//! chosen by the seed and its name, and rebalances each week: a holding's
//! quantity is its base quantity moved by a weekly draw, in lots of 100.
//! Each day is computed from the seed, the portfolio and the day alone, so
//! a day generated on its own equals the same day generated in a range.

use std::sync::Arc;

use datafusion::arrow::array::{Date32Builder, Int64Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::generate::Rng;
use super::market::vn30_symbols;
use crate::OpError;
use crate::shared::calendar::trading_days;

/// Stocks a portfolio holds.
const HOLDINGS: usize = 8;
const STREAM_PICK: u64 = 5;
const STREAM_WEEK: u64 = 6;
const LOT: i64 = 100;

pub(super) fn positions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("portfolio", DataType::Utf8, false),
        Field::new("symbol", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
    ]))
}

/// The holdings of `portfolio` and their base quantities.
fn holdings(seed: u64, portfolio: &str) -> Vec<(&'static str, f64)> {
    let mut symbols: Vec<&'static str> = vn30_symbols().collect();
    let mut rng = Rng::new(seed, portfolio, &[STREAM_PICK]);
    // A partial Fisher-Yates shuffle: the first HOLDINGS are the picks.
    for i in 0..HOLDINGS {
        let j = i + (rng.uniform() * (symbols.len() - i) as f64) as usize;
        symbols.swap(i, j);
    }
    symbols[..HOLDINGS]
        .iter()
        .map(|&s| (s, 10_000.0 + rng.uniform() * 90_000.0))
        .collect()
}

pub(super) fn positions(
    seed: u64,
    portfolio: &str,
    from: i32,
    to: i32,
) -> Result<RecordBatch, OpError> {
    let held = holdings(seed, portfolio);
    let mut date = Date32Builder::new();
    let mut name = StringBuilder::new();
    let mut symbol = StringBuilder::new();
    let mut quantity = Int64Builder::new();
    for day in trading_days(from, to) {
        // Weeks counted from Monday (1970-01-01 was a Thursday).
        let week = (day + 3).div_euclid(7) as u64;
        for (k, &(stock, base)) in held.iter().enumerate() {
            let mut rng = Rng::new(seed, portfolio, &[STREAM_WEEK, k as u64, week]);
            let moved = base * (1.0 + 0.1 * (2.0 * rng.uniform() - 1.0));
            date.append_value(day);
            name.append_value(portfolio);
            symbol.append_value(stock);
            quantity.append_value(((moved / LOT as f64).round() as i64).max(1) * LOT);
        }
    }
    Ok(RecordBatch::try_new(
        positions_schema(),
        vec![
            Arc::new(date.finish()),
            Arc::new(name.finish()),
            Arc::new(symbol.finish()),
            Arc::new(quantity.finish()),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    use super::*;
    use crate::shared::calendar::days_from_civil;

    #[test]
    fn a_day_alone_equals_the_day_in_a_range() {
        let from = days_from_civil(2025, 6, 2);
        let to = days_from_civil(2025, 6, 30);
        let range = positions(7, "P1", from, to).unwrap();
        let day = days_from_civil(2025, 6, 18);
        let alone = positions(7, "P1", day, day).unwrap();
        assert_eq!(alone.num_rows(), HOLDINGS);
        let dates = range
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
        let first = (0..range.num_rows())
            .find(|&i| dates.value(i) == day)
            .unwrap();
        assert_eq!(range.slice(first, HOLDINGS), alone);
        // 8 distinct VN30 stocks, positive whole lots.
        let symbols = alone.column(2).as_string::<i32>();
        let mut names: Vec<&str> = symbols.iter().flatten().collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), HOLDINGS);
        let q = alone.column(3).as_primitive::<Int64Type>();
        assert!(q.values().iter().all(|&v| v > 0 && v % LOT == 0));
        // Another portfolio holds something else.
        assert_ne!(positions(7, "P2", day, day).unwrap(), alone);
    }
}
