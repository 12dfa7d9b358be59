//! `features.compute` as an operator: parameters, layout, missing values,
//! session features on real timestamps. The kernels' numbers are checked in
//! `kernels`, `session` and against TA-Lib in `talib_tests`.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use crate::registry::registry;
use crate::{Input, Inputs, OpError, ParamError, Table};

fn build(params: Value) -> Result<Arc<dyn crate::Operator>, ParamError> {
    registry().get("features.compute").unwrap().build(params)
}

fn build_err(params: Value) -> (String, String) {
    let e = build(params).unwrap_err();
    (e.path.join("."), e.message)
}

async fn run(params: Value, batches: Vec<RecordBatch>) -> Result<RecordBatch, OpError> {
    let schema = batches[0].schema();
    let op = build(params).unwrap();
    let table = op
        .execute(
            &crate::ExecContext::standalone(),
            Inputs(vec![Input {
                name: "prices".into(),
                table: Arc::new(Table::new(schema, batches)),
            }]),
        )
        .await?;
    Ok(table.concat().unwrap())
}

fn column(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

fn floats(v: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(v.to_vec()))
}

#[test]
fn is_registered_as_pure_compute() {
    let def = registry().get("features.compute").unwrap();
    assert_eq!(def.effect(), crate::Effect::Pure);
    assert_eq!(def.workload(), crate::Workload::Cpu);
    let names = def.param_names();
    for p in [
        "ts",
        "partition_by",
        "close",
        "high",
        "low",
        "volume",
        "features",
    ] {
        assert!(names.iter().any(|n| n == p), "{p} in {names:?}");
    }
}

#[test]
fn parameter_errors_name_the_field() {
    let cases = [
        (json!({"features": []}), "features", "empty list"),
        (
            json!({"features": [{"kind": "rolling_mean"}]}),
            "features.0",
            "needs a window",
        ),
        (
            json!({"features": [{"kind": "ema", "window": 0}]}),
            "features.0.window",
            "at least 1",
        ),
        (
            json!({"features": [{"kind": "rolling_std", "window": 1}]}),
            "features.0.window",
            "at least 2",
        ),
        (
            json!({"features": [{"kind": "ema", "window": 5, "ddof": 1}]}),
            "features.0.ddof",
            "only rolling_std and zscore",
        ),
        (
            json!({"features": [{"kind": "zscore", "window": 5, "ddof": 2}]}),
            "features.0.ddof",
            "0 (population) or 1 (sample)",
        ),
        (
            json!({"features": [{"kind": "vwap", "window": 5}]}),
            "features.0.window",
            "anchored to the session",
        ),
        (
            json!({"features": [{"kind": "atr", "column": "close"}]}),
            "features.0.column",
            "`high:`",
        ),
        (
            json!({"features": [{"kind": "rsi"}, {"kind": "rsi", "window": 14}]}),
            "features.1.name",
            "'rsi_14'",
        ),
        (
            json!({"features": [{"kind": "rsi", "name": " "}]}),
            "features.0.name",
            "empty",
        ),
        (
            json!({"ts": "", "features": [{"kind": "rsi"}]}),
            "ts",
            "empty",
        ),
        (
            json!({"partition_by": ["symbol", ""], "features": [{"kind": "rsi"}]}),
            "partition_by.1",
            "empty",
        ),
        // serde's own errors carry the path too.
        (
            json!({"features": [{"kind": "sma", "window": 5}]}),
            "features.0.kind",
            "unknown variant `sma`",
        ),
        (
            json!({"features": [{"kind": "ema", "windw": 5}]}),
            "features.0.windw",
            "unknown field",
        ),
        (
            json!({"feature": [{"kind": "ema", "window": 5}]}),
            "feature",
            "unknown field",
        ),
    ];
    for (params, path, message) in cases {
        let (got_path, got_message) = build_err(params.clone());
        assert!(
            got_path == path && got_message.contains(message),
            "{params}: got {got_path}: {got_message}"
        );
    }
}

#[tokio::test]
async fn default_names_follow_the_kind_window_and_column() {
    let input = batch(vec![
        ("ts", Arc::new(Date32Array::from(vec![1, 2, 3])) as ArrayRef),
        ("close", floats(&[1.0, 2.0, 3.0])),
        ("high", floats(&[1.0, 2.0, 3.0])),
        ("low", floats(&[1.0, 2.0, 3.0])),
        ("volume", Arc::new(Int64Array::from(vec![5, 6, 7]))),
    ]);
    let features: Vec<Value> = [
        json!({"kind": "return"}),
        json!({"kind": "log_return", "window": 2}),
        json!({"kind": "rolling_mean", "window": 20}),
        json!({"kind": "rolling_std", "window": 20}),
        json!({"kind": "rolling_min", "window": 20}),
        json!({"kind": "rolling_max", "window": 20}),
        json!({"kind": "zscore", "window": 20}),
        json!({"kind": "ema", "window": 12}),
        json!({"kind": "rsi"}),
        json!({"kind": "atr"}),
        json!({"kind": "vwap"}),
        json!({"kind": "relative_volume"}),
        json!({"kind": "rolling_mean", "window": 5, "column": "volume"}),
        json!({"kind": "ema", "window": 3, "name": "fast"}),
    ]
    .into();
    let out = run(json!({"features": features}), vec![input])
        .await
        .unwrap();
    let names: Vec<&str> = out
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names,
        [
            "ts",
            "close",
            "high",
            "low",
            "volume",
            "ret_1",
            "logret_2",
            "sma_20",
            "std_20",
            "min_20",
            "max_20",
            "z_20",
            "ema_12",
            "rsi_14",
            "atr_14",
            "vwap",
            "rvol_20",
            "sma_5_volume",
            "fast",
        ]
    );
    for field in &out.schema_ref().fields()[5..] {
        assert_eq!(field.data_type(), &DataType::Float64);
        assert!(field.is_nullable());
    }
    assert_eq!(column(&out, "fast"), [None, None, Some(2.0)]);
    // Integer volume is read as numbers.
    assert_eq!(column(&out, "vwap"), [Some(1.0), Some(2.0), Some(3.0)]);
}

/// Two symbols interleaved (long format sorted by time), spread over two
/// batches, with one symbol's rows out of time order: each symbol's
/// features are its own, and rows stay where they were.
#[tokio::test]
async fn partitions_are_separate_series_and_rows_keep_their_order() {
    let first = batch(vec![
        (
            "symbol",
            Arc::new(StringArray::from(vec!["A", "B", "A", "B"])) as ArrayRef,
        ),
        ("ts", Arc::new(Date32Array::from(vec![1, 1, 2, 3]))),
        ("close", floats(&[10.0, 100.0, 11.0, 130.0])),
    ]);
    let second = batch(vec![
        (
            "symbol",
            Arc::new(StringArray::from(vec!["B", "A"])) as ArrayRef,
        ),
        ("ts", Arc::new(Date32Array::from(vec![2, 3]))),
        ("close", floats(&[120.0, 12.0])),
    ]);
    let params = json!({
        "partition_by": "symbol",
        "features": [{"kind": "return"}, {"kind": "rolling_mean", "window": 2}],
    });
    let out = run(params, vec![first, second]).await.unwrap();
    let symbols: Vec<&str> = out.column(0).as_string::<i32>().iter().flatten().collect();
    assert_eq!(symbols, ["A", "B", "A", "B", "B", "A"]);
    // B in time order: 100 (t1), 120 (t2), 130 (t3).
    assert_eq!(
        column(&out, "ret_1"),
        [
            None,
            None,
            Some(0.1),
            Some(10.0 / 120.0),
            Some(0.2),
            Some(1.0 / 11.0)
        ]
    );
    assert_eq!(
        column(&out, "sma_2"),
        [None, None, Some(10.5), Some(125.0), Some(110.0), Some(11.5)]
    );
}

#[tokio::test]
async fn null_and_nan_inputs_restart_and_outputs_are_never_nan() {
    let input = batch(vec![
        (
            "ts",
            Arc::new(Date32Array::from((0..8).collect::<Vec<i32>>())) as ArrayRef,
        ),
        (
            "close",
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                Some(2.0),
                None,
                Some(4.0),
                Some(5.0),
                Some(f64::NAN),
                Some(7.0),
                Some(7.0),
            ])),
        ),
    ]);
    let params = json!({"features": [
        {"kind": "rolling_mean", "window": 2},
        {"kind": "zscore", "window": 2},
    ]});
    let out = run(params, vec![input]).await.unwrap();
    assert_eq!(
        column(&out, "sma_2"),
        [
            None,
            Some(1.5),
            None,
            None,
            Some(4.5),
            None,
            None,
            Some(7.0)
        ]
    );
    // z of the last of two values is ±1 (population std); a constant
    // window has none.
    assert_eq!(
        column(&out, "z_2"),
        [None, Some(1.0), None, None, Some(1.0), None, None, None]
    );
    let z = out.column_by_name("z_2").unwrap();
    assert_eq!(z.null_count(), 6);
}

#[tokio::test]
async fn vwap_and_relative_volume_use_the_local_session() {
    // Bars in Ho Chi Minh City (+07:00) at 09:00 and 14:00 local on three
    // days. 14:00 local is 07:00 UTC, 09:00 local is 02:00 UTC: the UTC
    // date and the local date agree here, so also shift the first bar of
    // each day to 06:30 local = 23:30 UTC the day before, which only the
    // local reading keeps in its session.
    let day_ms = 86_400_000i64;
    let hour = 3_600_000i64;
    let base = 19_724 * day_ms; // 2024-01-02 00:00 UTC
    let mut ts = Vec::new();
    for d in 0..3 {
        ts.push(base + d * day_ms - 7 * hour + 6 * hour + hour / 2); // 06:30 local
        ts.push(base + d * day_ms - 7 * hour + 14 * hour); // 14:00 local
    }
    let stamps = TimestampMillisecondArray::from(ts).with_timezone("+07:00");
    let input = batch(vec![
        ("ts", Arc::new(stamps) as ArrayRef),
        ("price", floats(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0])),
        ("volume", floats(&[1.0, 3.0, 2.0, 2.0, 4.0, 1.0])),
    ]);
    let params = json!({"features": [
        {"kind": "vwap", "column": "price", "name": "vwap"},
        {"kind": "relative_volume", "window": 2},
    ]});
    let out = run(params.clone(), vec![input.clone()]).await.unwrap();
    assert_eq!(
        column(&out, "vwap"),
        [
            Some(10.0),
            Some(17.5),
            Some(30.0),
            Some(35.0),
            Some(50.0),
            Some(52.0)
        ]
    );
    // 06:30 on day 3: 4 / mean(1, 2); 14:00: 1 / mean(3, 2).
    assert_eq!(
        column(&out, "rvol_2"),
        [None, None, None, None, Some(4.0 / 1.5), Some(0.4)]
    );

    // Read as UTC wall-clock time instead (no zone), 06:30 local falls on
    // the previous date, joining the previous day's 14:00 bar.
    let naive = input
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
        .clone()
        .with_timezone_opt(None::<String>);
    let mut columns = input.columns().to_vec();
    columns[0] = Arc::new(naive);
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("price", DataType::Float64, false),
        Field::new("volume", DataType::Float64, false),
    ]));
    let utc = RecordBatch::try_new(schema, columns).unwrap();
    let out = run(params, vec![utc]).await.unwrap();
    assert_eq!(
        column(&out, "vwap"),
        [
            Some(10.0),
            Some(20.0),
            Some(24.0),
            Some(40.0),
            Some(280.0 / 6.0),
            Some(60.0)
        ]
    );
}

#[tokio::test]
async fn runtime_errors_name_the_column() {
    let input = batch(vec![
        ("ts", Arc::new(Date32Array::from(vec![1])) as ArrayRef),
        ("close", Arc::new(StringArray::from(vec!["1.0"]))),
        ("sma_2", floats(&[1.0])),
    ]);
    let cases = [
        (
            json!({"features": [{"kind": "ema", "window": 2}]}),
            "'close' is Utf8",
        ),
        (
            json!({"features": [{"kind": "rolling_mean", "window": 2}]}),
            "already has a column 'sma_2'",
        ),
        (
            json!({"features": [{"kind": "ema", "window": 2, "column": "px"}]}),
            "no column 'px' (read by a feature); its columns are ts, close, sma_2",
        ),
        (
            json!({"ts": "close", "features": [{"kind": "ema", "window": 2, "column": "sma_2"}]}),
            "'close' is Utf8; it must be a date or a timestamp",
        ),
        (
            json!({"partition_by": "sym", "features": [{"kind": "ema", "window": 2, "column": "sma_2"}]}),
            "no column 'sym' (named by `partition_by`)",
        ),
    ];
    for (params, message) in cases {
        let err = run(params.clone(), vec![input.clone()]).await.unwrap_err();
        assert!(
            matches!(&err, OpError::Invalid(m) if m.contains(message)),
            "{params}: {err}"
        );
    }

    let op = build(json!({"features": [{"kind": "rsi"}]})).unwrap();
    let err = op
        .execute(&crate::ExecContext::standalone(), Inputs::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exactly one input"), "{err}");
}

#[tokio::test]
async fn an_empty_table_gets_the_feature_columns() {
    let input = batch(vec![
        (
            "ts",
            Arc::new(Date32Array::from(Vec::<i32>::new())) as ArrayRef,
        ),
        ("close", floats(&[])),
    ]);
    let out = run(json!({"features": [{"kind": "rsi"}]}), vec![input])
        .await
        .unwrap();
    assert_eq!(out.num_rows(), 0);
    assert_eq!(out.schema_ref().field(2).name(), "rsi_14");
}

/// Enough rows to run on several threads: the threaded result equals the
/// per-symbol computation on one.
#[tokio::test]
async fn many_partitions_on_several_threads_match_one_at_a_time() {
    let symbols = 40;
    let bars = 3000;
    let mut sym = Vec::new();
    let mut ts = Vec::new();
    let mut close = Vec::new();
    for s in 0..symbols {
        let mut p = 100.0 + s as f64;
        for t in 0..bars {
            sym.push(format!("S{s}"));
            ts.push(t as i64 * 60_000);
            p *= 1.0 + 0.001 * (((t * 7 + s * 13) % 17) as f64 - 8.0);
            close.push(p);
        }
    }
    let all = batch(vec![
        ("symbol", Arc::new(StringArray::from(sym)) as ArrayRef),
        ("ts", Arc::new(TimestampMillisecondArray::from(ts))),
        ("close", floats(&close)),
    ]);
    let params = json!({
        "partition_by": "symbol",
        "features": [
            {"kind": "rolling_std", "window": 20},
            {"kind": "rsi"},
            {"kind": "rolling_max", "window": 60},
        ],
    });
    let together = run(params.clone(), vec![all.clone()]).await.unwrap();
    for s in [0, 17, symbols - 1] {
        let one = all.slice(s * bars, bars);
        let alone = run(params.clone(), vec![one]).await.unwrap();
        for name in ["std_20", "rsi_14", "max_60"] {
            assert_eq!(
                column(&together, name)[s * bars..(s + 1) * bars],
                column(&alone, name)[..],
                "{name} of S{s}"
            );
        }
    }
}
