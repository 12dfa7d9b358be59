//! The market operators against values worked by hand, and against an
//! independent pandas implementation on synthetic data
//! (`operators/tests/reference/make_vn30_reference.py`, its outputs in
//! `operators/tests/fixtures/vn30/`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use serde_json::json;

use crate::{ExecContext, Input, Inputs, Table, registry};

const ZONE: &str = "+07:00";
/// 2026-01-05 and 2026-01-06, days since 1970-01-01.
const MON: i32 = 20458;
const TUE: i32 = 20459;

/// Epoch milliseconds of a local (+07:00) time on `day`.
fn at(day: i32, hh: i64, mm: i64, ss: i64) -> i64 {
    i64::from(day) * 86_400_000 + ((hh - 7) * 3600 + mm * 60 + ss) * 1000
}

fn trades(rows: &[(&str, i64, f64, i64, &str)]) -> Table {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "symbol",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "ts",
            Arc::new(
                TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1))
                    .with_timezone(ZONE),
            ),
        ),
        (
            "price",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "volume",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ),
        (
            "side",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
        ),
    ];
    Table::from_batch(RecordBatch::try_from_iter(columns).unwrap())
}

/// Daily prices: (symbol, day, reference, volume).
fn prices(rows: &[(&str, i32, f64, i64)]) -> Table {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "symbol",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "date",
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.1))),
        ),
        (
            "reference",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "volume",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ),
    ];
    Table::from_batch(RecordBatch::try_from_iter(columns).unwrap())
}

fn info(rows: &[(&str, i64, f64)]) -> Table {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "symbol",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "shares_outstanding",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ),
        (
            "free_float",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
    ];
    Table::from_batch(RecordBatch::try_from_iter(columns).unwrap())
}

async fn run(op: &str, params: serde_json::Value, inputs: Vec<(&str, Table)>) -> RecordBatch {
    try_run(op, params, inputs).await.unwrap()
}

async fn try_run(
    op: &str,
    params: serde_json::Value,
    inputs: Vec<(&str, Table)>,
) -> Result<RecordBatch, crate::OpError> {
    let operator = registry().get(op).unwrap().build(params).unwrap();
    let inputs = Inputs(
        inputs
            .into_iter()
            .map(|(name, table)| Input {
                name: name.into(),
                table: Arc::new(table),
            })
            .collect(),
    );
    let out = operator.execute(&ExecContext::standalone(), inputs).await?;
    Ok(out.concat().unwrap())
}

fn f64s(batch: &RecordBatch, name: &str) -> Vec<f64> {
    let array = batch.column_by_name(name).unwrap();
    let array = array.as_any().downcast_ref::<Float64Array>().unwrap();
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                f64::NAN
            } else {
                array.value(i)
            }
        })
        .collect()
}

fn i64s(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let array = batch.column_by_name(name).unwrap();
    array
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .values()
        .to_vec()
}

fn bars(batch: &RecordBatch) -> Vec<i64> {
    let array = batch.column_by_name("bar").unwrap();
    array
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap()
        .values()
        .to_vec()
}

#[track_caller]
fn close(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (a - e).abs() <= 1e-12 * e.abs().max(1.0),
            "{actual:?} vs {expected:?}"
        );
    }
}

/// Three stocks over two days, worked by hand.
///
/// Shares × free float: A 100 × 1.0, B 100 × 0.5, C 50 × 1.0; cap 40%.
///
/// Monday, all three referenced at 10: capitalisations 1000, 500, 500.
/// A's 50% is capped to 40%; B and C share the other 60% as 500:500, 30%
/// each. w/m: A 0.0004, B and C 0.0006, so A's cap factor is 2/3. Index
/// shares q: A 200/3, B 50, C 50; Σ ref·q = 5000/3, and the base level
/// 1000 gives a divisor of 5/3, so level = 40·A + 30·B + 30·C.
///   09:15:00 A 11 → 1040;  09:16 B 12 → 1100;  09:17 A 9 → 1020
///   09:21 C 11 → 360 + 360 + 330 = 1050 (A and B did not trade: as-of)
///   09:31 A 10 → 1090 (no trade at all from 09:25 to 09:30: no candle)
/// Tuesday references are Monday's closes, A 10, B 12, C 11:
/// capitalisations 1000, 600, 550 (2150). A's 46.5% is capped; B and C
/// share 60% as 600:550. A's factor is 0.4/1000 ÷ (0.6/1150) = 23/30, so
/// q = 230/3, 50, 50 and Σ ref·q = 5750/3; the divisor carries Monday's
/// close: (5750/3) / 1090 = 5750/3270.
///   09:15:30 B 13 → 1090 × 5900/5750 = 128620/115
///   09:20:00 A 12 → 1090 × 6360/5750 = 6932400/5750
fn hand_case() -> (Table, Table, Table) {
    let ticks = trades(&[
        ("A", at(MON, 9, 15, 0), 11.0, 100, "B"),
        ("B", at(MON, 9, 16, 0), 12.0, 100, "B"),
        ("A", at(MON, 9, 17, 0), 9.0, 100, "S"),
        ("C", at(MON, 9, 21, 0), 11.0, 100, "B"),
        ("A", at(MON, 9, 31, 0), 10.0, 100, "B"),
        ("B", at(TUE, 9, 15, 30), 13.0, 100, "B"),
        ("A", at(TUE, 9, 20, 0), 12.0, 100, "B"),
    ]);
    let daily = prices(&[
        ("A", MON, 10.0, 0),
        ("B", MON, 10.0, 0),
        ("C", MON, 10.0, 0),
        ("A", TUE, 10.0, 0),
        ("B", TUE, 12.0, 0),
        ("C", TUE, 11.0, 0),
    ]);
    let stocks = info(&[("A", 100, 1.0), ("B", 100, 0.5), ("C", 50, 1.0)]);
    (ticks, daily, stocks)
}

#[tokio::test]
async fn the_rebalance_caps_iteratively_and_the_level_is_continuous_across_days() {
    let (ticks, daily, stocks) = hand_case();
    let weights = run(
        "index.rebalance",
        json!({"weight_cap": 0.4}),
        vec![("prices", daily), ("info", stocks)],
    )
    .await;
    close(
        &f64s(&weights, "weight"),
        &[
            0.4,
            0.3,
            0.3,
            0.4,
            0.6 * 600.0 / 1150.0,
            0.6 * 550.0 / 1150.0,
        ],
    );
    close(
        &f64s(&weights, "cap_factor"),
        &[2.0 / 3.0, 1.0, 1.0, 23.0 / 30.0, 1.0, 1.0],
    );

    // Both days in one call.
    let both = run(
        "index.level",
        json!({}),
        vec![
            ("trades", ticks),
            ("weights", Table::from_batch(weights.clone())),
        ],
    )
    .await;
    let mon = |h, m| at(MON, h, m, 0);
    let tue = |h, m| at(TUE, h, m, 0);
    assert_eq!(
        bars(&both),
        [mon(9, 15), mon(9, 20), mon(9, 30), tue(9, 15), tue(9, 20)]
    );
    let (t1, t2) = (128_620.0 / 115.0, 6_932_400.0 / 5_750.0);
    close(&f64s(&both, "open"), &[1040.0, 1050.0, 1090.0, t1, t2]);
    close(&f64s(&both, "high"), &[1100.0, 1050.0, 1090.0, t1, t2]);
    close(&f64s(&both, "low"), &[1020.0, 1050.0, 1090.0, t1, t2]);
    close(&f64s(&both, "close"), &[1020.0, 1050.0, 1090.0, t1, t2]);
    assert_eq!(i64s(&both, "trades"), [3, 1, 1, 1, 1]);
    let (d1, d2) = (5.0 / 3.0, 5750.0 / 3270.0);
    close(&f64s(&both, "divisor"), &[d1, d1, d1, d2, d2]);

    // Day by day, Tuesday carrying on from Monday's output: the same.
    let (ticks, _, _) = hand_case();
    let day = |d: i32| {
        let keep: Vec<usize> = (0..weights.num_rows())
            .filter(|&i| {
                weights
                    .column(0)
                    .as_any()
                    .downcast_ref::<Date32Array>()
                    .unwrap()
                    .value(i)
                    == d
            })
            .collect();
        let idx =
            datafusion::arrow::array::UInt32Array::from_iter_values(keep.iter().map(|&i| i as u32));
        Table::from_batch(datafusion::arrow::compute::take_record_batch(&weights, &idx).unwrap())
    };
    let ticks_on = |d: i32| {
        let batch = ticks.concat().unwrap();
        let ts = batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let keep = datafusion::arrow::array::BooleanArray::from_iter(
            (0..ts.len())
                .map(|i| Some((ts.value(i) + 7 * 3_600_000).div_euclid(86_400_000) as i32 == d)),
        );
        Table::from_batch(datafusion::arrow::compute::filter_record_batch(&batch, &keep).unwrap())
    };
    let monday = run(
        "index.level",
        json!({"base_value": 1000.0}),
        vec![("trades", ticks_on(MON)), ("weights", day(MON))],
    )
    .await;
    let tuesday = run(
        "index.level",
        json!({"base_value": 5.0}),
        vec![
            ("trades", ticks_on(TUE)),
            ("weights", day(TUE)),
            ("previous", Table::from_batch(monday.clone())),
        ],
    )
    .await;
    let monday_again = monday;
    close(&f64s(&tuesday, "close"), &[t1, t2]);
    close(&f64s(&tuesday, "divisor"), &[d2, d2]);

    // Tuesday on its own from a base of 1, then carried onto Monday's
    // close: the same index.
    let alone = run(
        "index.level",
        json!({"base_value": 1.0}),
        vec![("trades", ticks_on(TUE)), ("weights", day(TUE))],
    )
    .await;
    close(&f64s(&alone, "close"), &[t1 / 1090.0, t2 / 1090.0]);
    let carried = run(
        "index.carry",
        json!({}),
        vec![
            ("session", Table::from_batch(alone)),
            ("previous", Table::from_batch(monday_again.clone())),
        ],
    )
    .await;
    for name in ["open", "high", "low", "close", "divisor"] {
        close(&f64s(&carried, name), &f64s(&tuesday, name));
    }
    close(&f64s(&carried, "base"), &[1090.0, 1090.0]);
}

#[tokio::test]
async fn a_cap_that_cannot_hold_and_a_stale_previous_are_refused() {
    let (ticks, daily, stocks) = hand_case();
    let err = try_run(
        "index.rebalance",
        json!({"weight_cap": 0.3}),
        vec![("prices", daily), ("info", stocks)],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot hold with 3 components"), "{err}");

    let (_, daily, stocks) = hand_case();
    let weights = run(
        "index.rebalance",
        json!({"weight_cap": 0.4}),
        vec![("prices", daily), ("info", stocks)],
    )
    .await;
    let previous = run(
        "index.level",
        json!({}),
        vec![
            ("trades", hand_case().0),
            ("weights", Table::from_batch(weights.clone())),
        ],
    )
    .await;
    let err = try_run(
        "index.level",
        json!({}),
        vec![
            ("trades", ticks),
            ("weights", Table::from_batch(weights)),
            ("previous", Table::from_batch(previous)),
        ],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not before the first session"), "{err}");
}

/// Whale trades at the threshold's edges: worth exactly the threshold
/// counts, one VND short does not; the side decides buy or sell, an
/// unknown side neither.
#[tokio::test]
async fn whale_footprint_at_the_threshold() {
    let ticks = trades(&[
        // 50,000 × 20,000 = 1,000,000,000: exactly the threshold, a buy.
        ("FPT", at(MON, 9, 15, 1), 50_000.0, 20_000, "B"),
        // 49,999.95 × 20,000 = 999,999,000: just under, not a whale.
        ("FPT", at(MON, 9, 16, 0), 49_999.95, 20_000, "S"),
        // 2 billion sold.
        ("FPT", at(MON, 9, 19, 59), 50_000.0, 40_000, "S"),
        // A block with no side: value only.
        ("FPT", at(MON, 9, 20, 0), 50_000.0, 30_000, ""),
        ("FPT", at(MON, 9, 21, 0), 51_000.0, 100, "B"),
    ]);
    let daily = prices(&[
        ("FPT", MON - 3, 49_000.0, 2_250_000),
        ("FPT", MON - 2, 49_500.0, 4_500_000),
        ("FPT", MON, 48_000.0, 9_999_999),
    ]);
    let out = run(
        "features.intraday",
        json!({"whale_min_value": 1.0e9, "volume_sessions": 20}),
        vec![("trades", ticks), ("prices", daily)],
    )
    .await;
    assert_eq!(bars(&out), [at(MON, 9, 15, 0), at(MON, 9, 20, 0)]);
    close(&f64s(&out, "whale_buy_value"), &[1.0e9, 0.0]);
    close(&f64s(&out, "whale_sell_value"), &[2.0e9, 0.0]);
    close(&f64s(&out, "net_whale_flow"), &[-1.0e9, 0.0]);
    // Candle 1 value: 1e9 + 999,999,000 + 2e9; candle 2: 1.5e9 + 5.1e6.
    let v1 = 3_999_999_000.0;
    let v2 = 1_505_100_000.0;
    close(&f64s(&out, "value"), &[v1, v2]);
    close(&f64s(&out, "whale_share"), &[3.0e9 / v1, 0.0]);
    assert_eq!(i64s(&out, "volume"), [80_000, 30_100]);
    assert_eq!(i64s(&out, "trades"), [3, 2]);
    close(&f64s(&out, "open"), &[50_000.0, 50_000.0]);
    close(&f64s(&out, "high"), &[50_000.0, 51_000.0]);
    close(&f64s(&out, "low"), &[49_999.95, 50_000.0]);
    // The session VWAP runs across candles.
    close(&f64s(&out, "vwap"), &[v1 / 80_000.0, (v1 + v2) / 110_100.0]);
    // First candle against the reference 48,000, the second against the first.
    close(
        &f64s(&out, "ret"),
        &[50_000.0 / 48_000.0 - 1.0, 51_000.0 / 50_000.0 - 1.0],
    );
    // The two sessions before average 3,375,000 shares: 75,000 per 5 minutes
    // of a 225-minute session.
    close(
        &f64s(&out, "relative_volume"),
        &[80_000.0 / 75_000.0, 30_100.0 / 75_000.0],
    );
}

/// The aggregate across three components, one of which has no candle.
#[tokio::test]
async fn whale_aggregate_counts_every_component() {
    let (_, daily, stocks) = hand_case();
    let weights = run(
        "index.rebalance",
        json!({"weight_cap": 0.4}),
        vec![("prices", daily), ("info", stocks)],
    )
    .await;
    let bar = at(MON, 9, 15, 0);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("symbol", Arc::new(StringArray::from(vec!["A", "B"]))),
        ("date", Arc::new(Date32Array::from(vec![MON, MON]))),
        (
            "bar",
            Arc::new(TimestampMillisecondArray::from(vec![bar, bar]).with_timezone(ZONE)),
        ),
        (
            "net_whale_flow",
            Arc::new(Float64Array::from(vec![2.0e9, -1.0e9])),
        ),
        ("whale_share", Arc::new(Float64Array::from(vec![0.5, 0.25]))),
    ];
    let features = Table::from_batch(RecordBatch::try_from_iter(columns).unwrap());
    let out = run(
        "whale.aggregate",
        json!({}),
        vec![
            ("features", features),
            ("weights", Table::from_batch(weights)),
        ],
    )
    .await;
    close(&f64s(&out, "net_whale_flow"), &[1.0e9]);
    // A weighs 40% and B 30%; C did not trade and adds nothing.
    close(&f64s(&out, "whale_share"), &[0.4 * 0.5 + 0.3 * 0.25]);
    assert_eq!(i64s(&out, "net_buyers"), [1]);
    assert_eq!(i64s(&out, "symbols"), [3]);
    close(&f64s(&out, "breadth"), &[1.0 / 3.0]);
}

/// A CSV fixture as columns of text.
fn fixture(name: &str) -> HashMap<String, Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vn30")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut columns: HashMap<String, Vec<String>> =
        header.iter().map(|h| (h.clone(), Vec::new())).collect();
    for line in lines {
        for (h, v) in header.iter().zip(line.split(',')) {
            columns.get_mut(h).unwrap().push(v.to_string());
        }
    }
    columns
}

fn fixture_f64s(columns: &HashMap<String, Vec<String>>, name: &str) -> Vec<f64> {
    columns[name]
        .iter()
        .map(|v| {
            if v.is_empty() {
                f64::NAN
            } else {
                v.parse().unwrap()
            }
        })
        .collect()
}

#[track_caller]
fn same(what: &str, actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{what}: row count");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let ok = (a.is_nan() && e.is_nan()) || (a - e).abs() <= 1e-12 * e.abs().max(1e-300);
        assert!(ok, "{what} row {i}: {a} where the reference has {e}");
    }
}

async fn synthetic(dataset: &str, symbol: &str, start: Option<&str>, end: Option<&str>) -> Table {
    let mut params = json!({"dataset": dataset, "symbol": symbol});
    if let (Some(start), Some(end)) = (start, end) {
        params["start"] = json!(start);
        params["end"] = json!(end);
    }
    let operator = registry()
        .get("fetch.synthetic")
        .unwrap()
        .build(params)
        .unwrap();
    operator
        .execute(&ExecContext::standalone(), Inputs(Vec::new()))
        .await
        .unwrap()
}

fn stack(tables: Vec<Table>) -> Table {
    let schema = tables[0].schema().clone();
    Table::new(
        schema,
        tables.iter().flat_map(|t| t.batches().to_vec()).collect(),
    )
}

/// The four operators on 6 synthetic stocks over 4 days against the pandas
/// reference: cap 25% (binding on FPT, then HPG), base 1000, whales from
/// 1 billion VND, relative volume over 20 sessions.
#[tokio::test]
async fn match_the_pandas_reference_on_synthetic_data() {
    let symbols = ["BID", "FPT", "GAS", "HPG", "VCB", "VNM"];
    let (mut ticks, mut history, mut days, mut stocks) = (vec![], vec![], vec![], vec![]);
    for s in symbols {
        ticks.push(synthetic("ticks", s, Some("2026-01-05"), Some("2026-01-08")).await);
        history.push(synthetic("prices", s, Some("2025-12-01"), Some("2026-01-08")).await);
        days.push(synthetic("prices", s, Some("2026-01-05"), Some("2026-01-08")).await);
        stocks.push(synthetic("stock_info", s, None, None).await);
    }
    let (ticks, history, days, stocks) = (stack(ticks), stack(history), stack(days), stack(stocks));

    let features = run(
        "features.intraday",
        json!({"whale_min_value": 1.0e9, "volume_sessions": 20}),
        vec![("trades", ticks.clone()), ("prices", history)],
    )
    .await;
    let expected = fixture("features.csv");
    assert_eq!(
        bars(&features),
        expected["bar_ms"]
            .iter()
            .map(|v| v.parse().unwrap())
            .collect::<Vec<i64>>()
    );
    for name in [
        "open",
        "high",
        "low",
        "close",
        "value",
        "vwap",
        "ret",
        "relative_volume",
        "whale_buy_value",
        "whale_sell_value",
        "net_whale_flow",
        "whale_share",
    ] {
        same(name, &f64s(&features, name), &fixture_f64s(&expected, name));
    }
    for name in ["volume", "trades"] {
        let want: Vec<i64> = expected[name].iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(i64s(&features, name), want, "{name}");
    }

    let weights = run(
        "index.rebalance",
        json!({"weight_cap": 0.25}),
        vec![("prices", days), ("info", stocks)],
    )
    .await;
    let expected = fixture("weights.csv");
    for name in ["reference", "market_cap", "weight"] {
        same(name, &f64s(&weights, name), &fixture_f64s(&expected, name));
    }
    // The reference writes 1 for uncapped stocks, where the formula may
    // land one unit in the last place below.
    let (ours, theirs) = (
        f64s(&weights, "cap_factor"),
        fixture_f64s(&expected, "cap_factor"),
    );
    for (a, e) in ours.iter().zip(&theirs) {
        assert!((a - e).abs() <= 4.0 * f64::EPSILON, "cap_factor {a} vs {e}");
    }

    let index = run(
        "index.level",
        json!({"base_value": 1000.0}),
        vec![
            ("trades", ticks),
            ("weights", Table::from_batch(weights.clone())),
        ],
    )
    .await;
    let expected = fixture("index.csv");
    assert_eq!(
        bars(&index),
        expected["bar_ms"]
            .iter()
            .map(|v| v.parse().unwrap())
            .collect::<Vec<i64>>()
    );
    for name in ["open", "high", "low", "close", "divisor"] {
        same(name, &f64s(&index, name), &fixture_f64s(&expected, name));
    }

    let aggregate = run(
        "whale.aggregate",
        json!({}),
        vec![
            ("features", Table::from_batch(features)),
            ("weights", Table::from_batch(weights)),
        ],
    )
    .await;
    let expected = fixture("aggregate.csv");
    for name in ["net_whale_flow", "whale_share", "breadth"] {
        same(
            name,
            &f64s(&aggregate, name),
            &fixture_f64s(&expected, name),
        );
    }
    let buyers: Vec<i64> = expected["net_buyers"]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(i64s(&aggregate, "net_buyers"), buyers);
    assert_eq!(bars(&aggregate), bars(&index));
}

/// The time order of trades against a stable sort on (time, symbol):
/// symbols out of order, ties in time within and across symbols, a day's
/// spread with gaps and a cluster at one instant.
#[test]
fn trades_are_ordered_by_time_then_symbol_stably() {
    let mut rows = Vec::new();
    let mut state = 7u64;
    let mut draw = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    for symbol in ["VNM", "ACB", "FPT", "ACB"] {
        for _ in 0..3_000 {
            // Seconds of the morning, a third of them on one instant.
            let ts = if draw(3) == 0 {
                at(MON, 10, 0, 0)
            } else {
                at(MON, 9, 15, 0) + draw(8_100) as i64 * 1000
            };
            // Each row's price is its number, to tell rows apart by.
            rows.push((symbol, ts, rows.len() as f64, 0, "B"));
        }
    }
    let table = trades(&rows);
    let inputs = Inputs(vec![Input {
        name: "trades".into(),
        table: Arc::new(table),
    }]);
    let trades = super::Trades::read(&inputs, "test", "trades").unwrap();
    let (names, ranks) = trades.symbol_ranks();
    assert_eq!(names, ["ACB", "FPT", "VNM"]);
    let mut expected: Vec<usize> = (0..rows.len()).collect();
    expected.sort_by_key(|&i| (rows[i].1, rows[i].0));
    let ticks = trades.in_time_order(&ranks);
    let order: Vec<usize> = ticks.iter().map(|t| t.price as usize).collect();
    assert_eq!(order, expected);
    for t in ticks {
        let row = rows[t.price as usize];
        assert_eq!((names[t.rank as usize], t.ts), (row.0, row.1));
    }
}
