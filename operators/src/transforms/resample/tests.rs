//! Every expected bar below is worked out by hand from the trades listed
//! next to it; vwap = Σ price·volume / Σ volume.

use datafusion::arrow::array::StringArray;
use datafusion::arrow::util::pretty::pretty_format_batches;
use serde_json::{Value, json};

use super::*;
use crate::Input;

/// Trades (symbol, time as text, price, volume); the times are parsed by
/// arrow into millisecond timestamps in zone `tz` (naive for `None`).
fn trades(tz: Option<&str>, rows: &[(&str, &str, f64, i64)]) -> Inputs {
    let ts_type = DataType::Timestamp(TimeUnit::Millisecond, tz.map(Into::into));
    let text = StringArray::from_iter_values(rows.iter().map(|r| r.1));
    let batch = RecordBatch::try_from_iter([
        (
            "symbol",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        ("ts", cast(&text, &ts_type).unwrap()),
        (
            "price",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ),
        (
            "volume",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ),
    ])
    .unwrap();
    Inputs(vec![Input {
        name: "trades".into(),
        table: Arc::new(Table::from_batch(batch)),
    }])
}

fn build(params: Value) -> Result<Arc<dyn Operator>, ParamError> {
    crate::registry()
        .get("transform.resample")
        .unwrap()
        .build(params)
}

async fn run(params: Value, inputs: Inputs) -> Result<Table, OpError> {
    build(params)
        .unwrap()
        .execute(&crate::ExecContext::standalone(), inputs)
        .await
}

async fn pretty(params: Value, inputs: Inputs) -> String {
    let out = run(params, inputs).await.unwrap();
    pretty_format_batches(out.batches()).unwrap().to_string()
}

/// HOSE, Monday 2024-03-11, +07:00, deliberately out of time order.
fn vnm_day() -> Inputs {
    trades(
        Some("+07:00"),
        &[
            ("VNM", "2024-03-11T09:14:59+07:00", 99.0, 1), // before the open
            ("VNM", "2024-03-11T09:15:00+07:00", 100.0, 10),
            ("VNM", "2024-03-11T09:19:59+07:00", 101.0, 60),
            ("VNM", "2024-03-11T09:16:30+07:00", 102.0, 30),
            ("VNM", "2024-03-11T11:29:59+07:00", 105.0, 5),
            ("VNM", "2024-03-11T11:30:00+07:00", 106.0, 5), // the morning's close
            ("VNM", "2024-03-11T12:00:00+07:00", 999.0, 1), // lunch break
            ("VNM", "2024-03-11T13:00:00+07:00", 104.0, 20),
        ],
    )
}

#[tokio::test]
async fn hose_lunch_break_first_bar_and_vwap() {
    // 09:15 bar: trades 09:15:00 (100×10), 09:16:30 (102×30), 09:19:59
    // (101×60): open 100, high 102, low 100, close 101 (the latest, not
    // the last listed), volume 100, vwap (1000+3060+6060)/100 = 101.2.
    // 11:25 bar: 11:29:59 (105×5) and the 11:30:00 close (106×5): vwap
    // (525+530)/10 = 105.5. 11:29:59 and 13:00:00 are in different bars
    // and nothing lies between 11:30 and 13:00; 09:14:59 and 12:00 drop.
    let params = json!({"interval": "5m", "exchange": "hose", "partition_by": ["symbol"]});
    assert_eq!(
        pretty(params, vnm_day()).await,
        "\
+--------+---------------------------+-------+-------+-------+-------+--------+--------+-------+
| symbol | ts                        | open  | high  | low   | close | volume | trades | vwap  |
+--------+---------------------------+-------+-------+-------+-------+--------+--------+-------+
| VNM    | 2024-03-11T09:15:00+07:00 | 100.0 | 102.0 | 100.0 | 101.0 | 100    | 3      | 101.2 |
| VNM    | 2024-03-11T11:25:00+07:00 | 105.0 | 106.0 | 105.0 | 106.0 | 10     | 2      | 105.5 |
| VNM    | 2024-03-11T13:00:00+07:00 | 104.0 | 104.0 | 104.0 | 104.0 | 20     | 1      | 104.0 |
+--------+---------------------------+-------+-------+-------+-------+--------+--------+-------+"
    );
}

#[tokio::test]
async fn outside_trades_can_fail_the_run_or_get_bars_of_their_own() {
    let params = json!({"interval": "5m", "exchange": "hose", "outside": "error"});
    let err = run(params, vnm_day()).await.unwrap_err().to_string();
    assert!(err.contains("2024-03-11 09:14:59 +07:00"), "{err}");
    assert!(err.contains("outside the HOSE sessions"), "{err}");

    // 09:14:59 lies in the pre-open stretch from midnight: bar 09:10.
    // 12:00:00 lies in the lunch stretch from 11:30: bar 12:00.
    let params = json!({"interval": "5m", "exchange": "hose", "outside": "include"});
    assert_eq!(
        pretty(params, vnm_day()).await,
        "\
+---------------------------+-------+-------+-------+-------+--------+--------+-------+
| ts                        | open  | high  | low   | close | volume | trades | vwap  |
+---------------------------+-------+-------+-------+-------+--------+--------+-------+
| 2024-03-11T09:10:00+07:00 | 99.0  | 99.0  | 99.0  | 99.0  | 1      | 1      | 99.0  |
| 2024-03-11T09:15:00+07:00 | 100.0 | 102.0 | 100.0 | 101.0 | 100    | 3      | 101.2 |
| 2024-03-11T11:25:00+07:00 | 105.0 | 106.0 | 105.0 | 106.0 | 10     | 2      | 105.5 |
| 2024-03-11T12:00:00+07:00 | 999.0 | 999.0 | 999.0 | 999.0 | 1      | 1      | 999.0 |
| 2024-03-11T13:00:00+07:00 | 104.0 | 104.0 | 104.0 | 104.0 | 20     | 1      | 104.0 |
+---------------------------+-------+-------+-------+-------+--------+--------+-------+"
    );
}

/// Naive HOSE wall-clock times over two days.
fn two_days() -> Inputs {
    trades(
        None,
        &[
            ("FPT", "2024-03-11T14:40:00", 10.0, 1),
            ("FPT", "2024-03-11T14:45:00", 11.0, 1), // the afternoon's close
            ("FPT", "2024-03-12T09:15:00", 12.0, 1),
            ("FPT", "2024-03-12T10:14:59", 13.0, 1),
            ("FPT", "2024-03-12T10:15:00", 14.0, 1),
            ("FPT", "2024-03-12T11:20:00", 15.0, 1),
        ],
    )
}

#[tokio::test]
async fn hose_hourly_bars_restart_each_day_and_truncate_at_11_30() {
    // Naive times default to the exchange's zone. Hourly bars run
    // 09:15, 10:15, 11:15 (cut at 11:30), 13:00, 14:00 (cut at 14:45):
    // Monday's trades share the 14:00 bar; Tuesday's first bar starts
    // at 09:15 again, and 11:20 lands in the short 11:15 bar.
    let params = json!({"interval": "1h", "exchange": "hose"});
    assert_eq!(
        pretty(params, two_days()).await,
        "\
+---------------------+------+------+------+-------+--------+--------+------+
| ts                  | open | high | low  | close | volume | trades | vwap |
+---------------------+------+------+------+-------+--------+--------+------+
| 2024-03-11T14:00:00 | 10.0 | 11.0 | 10.0 | 11.0  | 2      | 2      | 10.5 |
| 2024-03-12T09:15:00 | 12.0 | 13.0 | 12.0 | 13.0  | 2      | 2      | 12.5 |
| 2024-03-12T10:15:00 | 14.0 | 14.0 | 14.0 | 14.0  | 1      | 1      | 14.0 |
| 2024-03-12T11:15:00 | 15.0 | 15.0 | 15.0 | 15.0  | 1      | 1      | 15.0 |
+---------------------+------+------+------+-------+--------+--------+------+"
    );

    // One bar per day, stamped at the 09:15 open.
    let params = json!({"interval": "1d", "exchange": "hose"});
    assert_eq!(
        pretty(params, two_days()).await,
        "\
+---------------------+------+------+------+-------+--------+--------+------+
| ts                  | open | high | low  | close | volume | trades | vwap |
+---------------------+------+------+------+-------+--------+--------+------+
| 2024-03-11T09:15:00 | 10.0 | 11.0 | 10.0 | 11.0  | 2      | 2      | 10.5 |
| 2024-03-12T09:15:00 | 12.0 | 15.0 | 12.0 | 15.0  | 4      | 4      | 13.5 |
+---------------------+------+------+------+-------+--------+--------+------+"
    );
}

/// Two symbols on Monday 2024-03-11: AAA trades in the 09:15 and 14:00
/// hourly bars, BBB only in the 10:15 one.
fn sparse() -> Inputs {
    trades(
        Some("Asia/Ho_Chi_Minh"),
        &[
            ("AAA", "2024-03-11T09:20:00+07:00", 10.0, 100),
            ("AAA", "2024-03-11T09:50:00+07:00", 11.0, 100),
            ("BBB", "2024-03-11T10:20:00+07:00", 20.0, 5),
            ("AAA", "2024-03-11T14:10:00+07:00", 12.0, 10),
        ],
    )
}

#[tokio::test]
async fn bars_without_trades_are_omitted_by_default() {
    let params = json!({"interval": "1h", "exchange": "hose", "partition_by": ["symbol"]});
    assert_eq!(
        pretty(params, sparse()).await,
        "\
+--------+---------------------------+------+------+------+-------+--------+--------+------+
| symbol | ts                        | open | high | low  | close | volume | trades | vwap |
+--------+---------------------------+------+------+------+-------+--------+--------+------+
| AAA    | 2024-03-11T09:15:00+07:00 | 10.0 | 11.0 | 10.0 | 11.0  | 200    | 2      | 10.5 |
| AAA    | 2024-03-11T14:00:00+07:00 | 12.0 | 12.0 | 12.0 | 12.0  | 10     | 1      | 12.0 |
| BBB    | 2024-03-11T10:15:00+07:00 | 20.0 | 20.0 | 20.0 | 20.0  | 5      | 1      | 20.0 |
+--------+---------------------------+------+------+------+-------+--------+--------+------+"
    );
}

#[tokio::test]
async fn forward_fill_carries_the_close_over_the_session_grid() {
    // The day's grid: 09:15, 10:15, 11:15, 13:00, 14:00 (no slot in the
    // lunch break). AAA's empty bars take its previous close 11; BBB has
    // none before its first trade at 10:15 and carries 20 to the close.
    let params = json!({
        "interval": "1h", "exchange": "hose", "partition_by": ["symbol"], "fill": "forward"
    });
    assert_eq!(
        pretty(params, sparse()).await,
        "\
+--------+---------------------------+------+------+------+-------+--------+--------+------+
| symbol | ts                        | open | high | low  | close | volume | trades | vwap |
+--------+---------------------------+------+------+------+-------+--------+--------+------+
| AAA    | 2024-03-11T09:15:00+07:00 | 10.0 | 11.0 | 10.0 | 11.0  | 200    | 2      | 10.5 |
| AAA    | 2024-03-11T10:15:00+07:00 | 11.0 | 11.0 | 11.0 | 11.0  | 0      | 0      |      |
| AAA    | 2024-03-11T11:15:00+07:00 | 11.0 | 11.0 | 11.0 | 11.0  | 0      | 0      |      |
| AAA    | 2024-03-11T13:00:00+07:00 | 11.0 | 11.0 | 11.0 | 11.0  | 0      | 0      |      |
| AAA    | 2024-03-11T14:00:00+07:00 | 12.0 | 12.0 | 12.0 | 12.0  | 10     | 1      | 12.0 |
| BBB    | 2024-03-11T10:15:00+07:00 | 20.0 | 20.0 | 20.0 | 20.0  | 5      | 1      | 20.0 |
| BBB    | 2024-03-11T11:15:00+07:00 | 20.0 | 20.0 | 20.0 | 20.0  | 0      | 0      |      |
| BBB    | 2024-03-11T13:00:00+07:00 | 20.0 | 20.0 | 20.0 | 20.0  | 0      | 0      |      |
| BBB    | 2024-03-11T14:00:00+07:00 | 20.0 | 20.0 | 20.0 | 20.0  | 0      | 0      |      |
+--------+---------------------------+------+------+------+-------+--------+--------+------+"
    );
}

#[tokio::test]
async fn forward_fill_spans_every_trading_day_of_any_series() {
    // Trading days are the days anyone traded: Mon 11, Tue 12, Wed 13.
    // AAA skips Tuesday (filled from Monday's close 10); BBB first trades
    // on Tuesday, so it has no Monday bar, and Wednesday carries its 20.
    let inputs = trades(
        None,
        &[
            ("AAA", "2024-03-11T10:00:00", 10.0, 1),
            ("BBB", "2024-03-12T10:00:00", 20.0, 1),
            ("AAA", "2024-03-13T10:00:00", 11.0, 3),
        ],
    );
    let params = json!({
        "interval": "1d", "exchange": "nyse", "partition_by": ["symbol"], "fill": "forward"
    });
    assert_eq!(
        pretty(params, inputs).await,
        "\
+--------+---------------------+------+------+------+-------+--------+--------+------+
| symbol | ts                  | open | high | low  | close | volume | trades | vwap |
+--------+---------------------+------+------+------+-------+--------+--------+------+
| AAA    | 2024-03-11T09:30:00 | 10.0 | 10.0 | 10.0 | 10.0  | 1      | 1      | 10.0 |
| AAA    | 2024-03-12T09:30:00 | 10.0 | 10.0 | 10.0 | 10.0  | 0      | 0      |      |
| AAA    | 2024-03-13T09:30:00 | 11.0 | 11.0 | 11.0 | 11.0  | 3      | 1      | 11.0 |
| BBB    | 2024-03-12T09:30:00 | 20.0 | 20.0 | 20.0 | 20.0  | 1      | 1      | 20.0 |
| BBB    | 2024-03-13T09:30:00 | 20.0 | 20.0 | 20.0 | 20.0  | 0      | 0      |      |
+--------+---------------------+------+------+------+-------+--------+--------+------+"
    );
}

#[tokio::test]
async fn nyse_open_moves_from_14_30_to_13_30_utc_after_the_dst_switch() {
    // Naive UTC times. Friday 2024-03-08 is EST (UTC−5): the open is
    // 14:30 UTC, so 14:29 is pre-market. After the switch on Sunday
    // 03-10, Monday is EDT (UTC−4): the open is 13:30 UTC, and 14:29 UTC
    // (10:29 New York) is in the 14:00 UTC bar. Output stays naive UTC.
    let inputs = trades(
        None,
        &[
            ("SPY", "2024-03-08T14:29:00", 49.0, 1),
            ("SPY", "2024-03-08T14:30:00", 50.0, 1),
            ("SPY", "2024-03-11T13:29:00", 48.0, 1),
            ("SPY", "2024-03-11T13:30:00", 51.0, 1),
            ("SPY", "2024-03-11T14:29:00", 52.0, 1),
            ("SPY", "2024-03-11T14:30:00", 53.0, 1),
        ],
    );
    let params = json!({"interval": "30m", "exchange": "nyse", "timezone": "UTC"});
    assert_eq!(
        pretty(params, inputs).await,
        "\
+---------------------+------+------+------+-------+--------+--------+------+
| ts                  | open | high | low  | close | volume | trades | vwap |
+---------------------+------+------+------+-------+--------+--------+------+
| 2024-03-08T14:30:00 | 50.0 | 50.0 | 50.0 | 50.0  | 1      | 1      | 50.0 |
| 2024-03-11T13:30:00 | 51.0 | 51.0 | 51.0 | 51.0  | 1      | 1      | 51.0 |
| 2024-03-11T14:00:00 | 52.0 | 52.0 | 52.0 | 52.0  | 1      | 1      | 52.0 |
| 2024-03-11T14:30:00 | 53.0 | 53.0 | 53.0 | 53.0  | 1      | 1      | 53.0 |
+---------------------+------+------+------+-------+--------+--------+------+"
    );
}

#[tokio::test]
async fn output_keeps_the_input_timestamp_type_and_zone() {
    // UTC-stamped HOSE trades: 02:15Z is 09:15 in Ho Chi Minh City.
    let inputs = trades(
        Some("UTC"),
        &[
            ("VNM", "2024-03-11T02:15:00Z", 1.0, 1),
            ("VNM", "2024-03-11T04:29:59Z", 2.0, 1),
            ("VNM", "2024-03-11T06:00:00Z", 3.0, 1),
        ],
    );
    let out = run(json!({"interval": "1h", "exchange": "hose"}), inputs)
        .await
        .unwrap();
    assert_eq!(
        out.schema().field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    let ts = cast(out.batches()[0].column(0), &DataType::Utf8).unwrap();
    let ts: Vec<_> = ts.as_string::<i32>().iter().flatten().collect();
    assert_eq!(
        ts,
        [
            "2024-03-11T02:15:00Z",
            "2024-03-11T04:15:00Z",
            "2024-03-11T06:00:00Z"
        ]
    );
}

#[tokio::test]
async fn without_an_exchange_bars_align_to_midnight_in_the_data_zone() {
    let inputs = trades(
        Some("+05:30"),
        &[
            ("X", "2024-03-09T10:45:00+05:30", 1.0, 2),
            ("X", "2024-03-09T10:59:59+05:30", 3.0, 2),
            ("X", "2024-03-09T23:00:00+05:30", 5.0, 1),
        ],
    );
    let out = run(json!({"interval": "1h", "exchange": "none"}), inputs)
        .await
        .unwrap();
    let ts = cast(out.batches()[0].column(0), &DataType::Utf8).unwrap();
    let ts: Vec<_> = ts.as_string::<i32>().iter().flatten().collect();
    // Saturday counts: there are no sessions.
    assert_eq!(
        ts,
        ["2024-03-09T10:00:00+05:30", "2024-03-09T23:00:00+05:30"]
    );
}

#[tokio::test]
async fn float_volumes_stay_float_and_null_rows_are_skipped() {
    let batch = RecordBatch::try_from_iter([
        (
            "ts",
            cast(
                &StringArray::from(vec![
                    "2024-03-11T09:30:00",
                    "2024-03-11T09:31:00",
                    "2024-03-11T09:32:00",
                ]),
                &DataType::Timestamp(TimeUnit::Second, None),
            )
            .unwrap(),
        ),
        (
            "price",
            Arc::new(Float64Array::from(vec![Some(2.0), None, Some(4.0)])) as ArrayRef,
        ),
        ("volume", Arc::new(Float64Array::from(vec![0.5, 9.0, 1.5]))),
    ])
    .unwrap();
    let inputs = Inputs(vec![Input {
        name: "ticks".into(),
        table: Arc::new(Table::from_batch(batch)),
    }]);
    // vwap = (2×0.5 + 4×1.5) / 2 = 3.5
    let params = json!({"interval": "5m", "exchange": "nyse"});
    assert_eq!(
        pretty(params, inputs).await,
        "\
+---------------------+------+------+-----+-------+--------+--------+------+
| ts                  | open | high | low | close | volume | trades | vwap |
+---------------------+------+------+-----+-------+--------+--------+------+
| 2024-03-11T09:30:00 | 2.0  | 4.0  | 2.0 | 4.0   | 2.0    | 2      | 3.5  |
+---------------------+------+------+-----+-------+--------+--------+------+"
    );
}

#[test]
fn bad_params_name_their_field() {
    for (params, path) in [
        (
            json!({"interval": "2m", "exchange": "hose"}),
            vec!["interval"],
        ),
        (
            json!({"interval": "1m", "exchange": "hnx"}),
            vec!["exchange"],
        ),
        (
            json!({"interval": "1m", "exchange": "hose", "fill": "back"}),
            vec!["fill"],
        ),
        (
            json!({"interval": "1m", "exchange": "hose", "sessions": 1}),
            vec!["sessions"],
        ),
        (
            json!({"interval": "1m", "exchange": "hose", "timezone": "Mars/Olympus"}),
            vec!["timezone"],
        ),
        (
            json!({"interval": "1m", "exchange": "hose", "partition_by": ["symbol", "symbol"]}),
            vec!["partition_by", "1"],
        ),
        (
            json!({"interval": "1m", "exchange": "hose", "partition_by": ["open"]}),
            vec!["partition_by", "0"],
        ),
        (
            json!({"interval": "1m", "exchange": "hose", "ts": "close"}),
            vec!["ts"],
        ),
    ] {
        let err = build(params.clone()).unwrap_err();
        assert_eq!(err.path, path, "{params}: {err}");
    }
}

#[tokio::test]
async fn runtime_errors_explain_themselves() {
    let hose = json!({"interval": "1m", "exchange": "hose", "price": "last"});
    let err = run(hose, vnm_day()).await.unwrap_err().to_string();
    assert!(
        err.contains("no column 'last'") && err.contains("symbol, ts, price, volume"),
        "{err}"
    );

    let hose = json!({"interval": "1m", "exchange": "hose", "timezone": "UTC"});
    let err = run(hose, vnm_day()).await.unwrap_err().to_string();
    assert!(err.contains("already carries time zone +07:00"), "{err}");

    let spring_gap = trades(None, &[("SPY", "2024-03-10T02:30:00", 1.0, 1)]);
    let err = run(json!({"interval": "1m", "exchange": "nyse"}), spring_gap)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("2024-03-10 02:30:00 does not exist"), "{err}");

    let err = run(
        json!({"interval": "1m", "exchange": "nyse", "ts": "symbol"}),
        vnm_day(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a timestamp"), "{err}");
}
