//! Throughput of `features.compute` on many long series, against
//! DataFusion's own window functions over the same data in the same run.
//!
//! Run (release):
//!
//! ```text
//! cargo bench -p quiver-operators --bench features                  # 500 symbols x 100,000 bars
//! cargo bench -p quiver-operators --bench features -- 50 100000     # 5M rows
//! cargo bench -p quiver-operators --bench features -- 500 100000 --no-datafusion
//! ```
//!
//! The data: SYMBOLS random walks of BARS one-minute bars each (`symbol`
//! Utf8, `ts` timestamp ms, `close` f64), in batches of 8,192 rows sorted
//! by symbol and time, as a source would deliver them. The generator is
//! SplitMix64, reproduced exactly by `benches/polars_compare.py` (the
//! checksum printed by both must agree), which times Polars on the same
//! data: `benches/run_polars.sh SYMBOLS BARS`.
//!
//! Each feature is timed alone (one `features.compute` call computing just
//! that feature, best of a few runs), and all of them in one call. Rows/s
//! counts input rows. DataFusion computes `avg` and `stddev_pop` over `ROWS
//! BETWEEN w-1 PRECEDING AND CURRENT ROW` windows, with the table's sort
//! order declared so it need not sort; it has no EMA or RSI window
//! function, so those rows are quiver's alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_operators::arrow::array::{
    ArrayRef, Float64Array, StringArray, TimestampMillisecondArray,
};
use quiver_operators::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use quiver_operators::arrow::record_batch::RecordBatch;
use quiver_operators::datafusion::datasource::MemTable;
use quiver_operators::datafusion::execution::context::{SessionConfig, SessionContext};
use quiver_operators::datafusion::prelude::col;
use quiver_operators::{Input, Inputs, Table, registry};
use serde_json::{Value, json};

const BATCH_ROWS: usize = 8192;
const SEED: u64 = 42;
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const WINDOWS: [usize; 4] = [5, 20, 60, 240];

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The i-th uniform in [0, 1) of the stream `seed`.
fn uniform(seed: u64, i: u64) -> f64 {
    let z = mix(seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)));
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Symbol s starts at 10 + 190 u and moves by a factor 1 + 0.01 (2u - 1)
/// each bar.
fn generate(symbols: usize, bars: usize) -> (SchemaRef, Vec<RecordBatch>, f64) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("close", DataType::Float64, false),
    ]));
    let n = symbols * bars;
    let mut close = Vec::with_capacity(n);
    let mut checksum = 0.0;
    for s in 0..symbols {
        let mut c = 10.0 + 190.0 * uniform(SEED ^ 0x5555_5555_5555_5555, s as u64);
        for j in 0..bars {
            let u = uniform(SEED, (s * bars + j) as u64);
            c *= 1.0 + 0.01 * (2.0 * u - 1.0);
            close.push(c);
        }
        checksum += c;
    }
    let names: Vec<String> = (0..symbols).map(|s| format!("S{s:04}")).collect();
    let start_ms = 1_704_067_200_000i64; // 2024-01-01
    let mut batches = Vec::with_capacity(n.div_ceil(BATCH_ROWS));
    for first in (0..n).step_by(BATCH_ROWS) {
        let rows = first..(first + BATCH_ROWS).min(n);
        let symbol = StringArray::from_iter_values(rows.clone().map(|r| &names[r / bars]));
        let ts = TimestampMillisecondArray::from_iter_values(
            rows.clone().map(|r| start_ms + (r % bars) as i64 * 60_000),
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(symbol),
            Arc::new(ts),
            Arc::new(Float64Array::from(close[rows].to_vec())),
        ];
        batches.push(RecordBatch::try_new(schema.clone(), columns).unwrap());
    }
    (schema, batches, checksum)
}

fn features_call(table: &Arc<Table>, features: Value) -> Duration {
    let op = registry()
        .get("features.compute")
        .unwrap()
        .build(json!({"partition_by": "symbol", "features": features}))
        .unwrap();
    let inputs = Inputs(vec![Input {
        name: "bars".into(),
        table: table.clone(),
    }]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let start = Instant::now();
    let out = runtime
        .block_on(op.execute(&quiver_operators::ExecContext::standalone(), inputs))
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(out.num_rows(), table.num_rows());
    elapsed
}

fn best(reps: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..reps).map(|_| f()).min().unwrap()
}

async fn datafusion_query(ctx: &SessionContext, sql: &str, rows: usize) -> Duration {
    let start = Instant::now();
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
    elapsed
}

fn rate(rows: usize, d: Duration) -> String {
    format!("{:>8.1} M", rows as f64 / d.as_secs_f64() / 1e6)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let symbols = numbers.first().copied().unwrap_or(500);
    let bars = numbers.get(1).copied().unwrap_or(100_000);
    let with_datafusion = !args.iter().any(|a| a == "--no-datafusion");
    let rows = symbols * bars;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let reps = if rows >= 20_000_000 { 3 } else { 5 };

    let start = Instant::now();
    let (schema, batches, checksum) = generate(symbols, bars);
    println!(
        "data: {symbols} symbols x {bars} bars = {rows} rows in {} batches, generated in {:.1} s; \
         checksum (sum of last closes) {checksum:.6}; {cores} cores",
        batches.len(),
        start.elapsed().as_secs_f64()
    );
    let table = Arc::new(Table::new(schema.clone(), batches.clone()));

    let mut features: Vec<(String, Value, Option<String>)> = Vec::new();
    for w in WINDOWS {
        let frame = format!(
            "OVER (PARTITION BY symbol ORDER BY ts ROWS BETWEEN {} PRECEDING AND CURRENT ROW)",
            w - 1
        );
        features.push((
            format!("rolling_mean {w}"),
            json!({"kind": "rolling_mean", "window": w}),
            Some(format!("avg(close) {frame}")),
        ));
        features.push((
            format!("rolling_std {w}"),
            json!({"kind": "rolling_std", "window": w}),
            Some(format!("stddev_pop(close) {frame}")),
        ));
    }
    features.push(("ema 20".into(), json!({"kind": "ema", "window": 20}), None));
    features.push(("rsi 14".into(), json!({"kind": "rsi", "window": 14}), None));

    let ctx = with_datafusion.then(|| {
        let ctx =
            SessionContext::new_with_config(SessionConfig::new().with_target_partitions(cores));
        // One sorted partition per core (whole symbols each), sort order declared.
        let per_part = batches.len().div_ceil(cores);
        let partitions: Vec<Vec<RecordBatch>> =
            batches.chunks(per_part).map(|c| c.to_vec()).collect();
        let table = MemTable::try_new(schema.clone(), partitions)
            .unwrap()
            .with_sort_order(vec![vec![
                col("symbol").sort(true, false),
                col("ts").sort(true, false),
            ]]);
        ctx.register_table("bars", Arc::new(table)).unwrap();
        ctx
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .build()
        .unwrap();

    println!(
        "\n{:<17} {:>14} {:>18} {:>9}",
        "feature", "quiver rows/s", "DataFusion rows/s", "speed-up"
    );
    for (label, feature, window_sql) in &features {
        let ours = best(reps, || features_call(&table, json!([feature])));
        let theirs = match (&ctx, window_sql) {
            (Some(ctx), Some(expr)) => {
                let sql = format!("SELECT symbol, ts, close, {expr} AS f FROM bars");
                Some(runtime.block_on(datafusion_query(ctx, &sql, rows)))
            }
            _ => None,
        };
        match theirs {
            Some(t) => println!(
                "{label:<17} {:>14} {:>18} {:>8.1}x",
                rate(rows, ours),
                rate(rows, t),
                t.as_secs_f64() / ours.as_secs_f64()
            ),
            None => println!(
                "{label:<17} {:>14} {:>18}",
                rate(rows, ours),
                if window_sql.is_none() {
                    "(no such window)"
                } else {
                    "(skipped)"
                }
            ),
        }
    }
    let all: Vec<Value> = features.iter().map(|(_, f, _)| f.clone()).collect();
    let together = best(reps, || features_call(&table, Value::Array(all.clone())));
    println!(
        "{:<17} {:>14}   ({} features in one call: {:.2} s, {} feature-rows/s)",
        "all together",
        rate(rows, together),
        all.len(),
        together.as_secs_f64(),
        rate(rows * all.len(), together).trim()
    );
}
