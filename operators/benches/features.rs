//! Throughput of `features.compute` against DataFusion's window functions
//! and (through `polars_compare.py`) Polars, on the same data, with every
//! engine's output checked against quiver's before any time is printed.
//!
//! Run all three and print one table (installs the pinned Polars of
//! `requirements.txt` in a venv under target/):
//!
//! ```text
//! bash operators/benches/run_all.sh 500 100000     # 50M rows
//! ```
//!
//! or the Rust side alone:
//!
//! ```text
//! cargo bench -p quiver-operators --bench features -- 100 100000 [--out DIR] [--reps N] [--no-datafusion]
//! ```
//!
//! The data: SYMBOLS random walks of BARS one-minute bars each (`symbol`
//! Utf8, `ts` timestamp ms, `close` f64), in batches of 8,192 rows sorted
//! by symbol and time, as a source would deliver them. The generator is
//! SplitMix64, reproduced exactly by `polars_compare.py`, which checks that
//! its checksum equals this one bit for bit.
//!
//! Fair timing: every engine gets [`THREADS`] threads (DataFusion
//! `target_partitions` and its tokio runtime's workers; quiver's
//! `features.compute` parallelism; Polars' `POLARS_MAX_THREADS`), and each
//! timed case is run once untimed (the warm-up, whose output is the one
//! checked) and then REPS times, keeping the best. The timer wraps the
//! engine going from the query (quiver's parameters, DataFusion's SQL,
//! Polars' lazy query) to the complete result in memory, over data already
//! in memory: no generation, I/O or checking, and the result is dropped
//! after the timer stops. Rows/s counts input rows.
//!
//! The check, before anything is timed:
//!
//! - quiver's own output is checked against its documented warm-up: for a
//!   window n, rows 0..n-1 of each symbol are null for `rolling_mean`,
//!   `rolling_std` and `ema`, rows 0..n for `rsi`, and every other row is a
//!   value. A feature computed alone equals, bit for bit, the same feature
//!   computed with all the others.
//! - DataFusion computes `avg` and `stddev_pop` over `ROWS BETWEEN n-1
//!   PRECEDING AND CURRENT ROW`. Its rows come back in its own order, so
//!   they are matched to quiver's by (symbol, ts). From each symbol's first
//!   valid row on, the values must agree within [`RELATIVE_TOLERANCE`];
//!   before it, DataFusion averages the partial window (SQL has no minimum
//!   row count), which is the documented difference and is not compared.
//!   Past each symbol's first [`STRICT_ROWS`] valid rows, a row beyond the
//!   tolerance is settled by a direct computation of the window: when
//!   quiver matches it, the row is the peer's error, counted, flagged `*`
//!   in the table and described under it (DataFusion's running variance
//!   drifts: see [`check_close`]). DataFusion has no EMA or RSI window
//!   function.
//! - quiver's feature columns are written to OUT/quiver.arrow (Arrow IPC,
//!   input row order) with OUT/rust.json (sizes, checksum, features, warm-up
//!   rows, threads, REPS and the times above), and `polars_compare.py`
//!   checks Polars' columns against them the same way (nulls in the same
//!   rows, values within the same tolerance, the same arbitration), before
//!   printing its own times and the combined table.
//!
//! A mismatch aborts with a message naming the feature, symbol and bar.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_operators::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, StringArray, TimestampMillisecondArray,
};
use quiver_operators::arrow::compute::cast;
use quiver_operators::arrow::datatypes::{
    DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use quiver_operators::arrow::ipc::writer::FileWriter;
use quiver_operators::arrow::record_batch::RecordBatch;
use quiver_operators::datafusion::datasource::MemTable;
use quiver_operators::datafusion::execution::context::{SessionConfig, SessionContext};
use quiver_operators::datafusion::prelude::col;
use quiver_operators::{ExecContext, Input, Inputs, Table, ThreadBudget, registry};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// The threads every engine gets.
const THREADS: usize = 2;
/// How far a peer's value may be from quiver's, relative to the larger.
/// quiver's kernels are within a few 1e-11 of a direct computation (see
/// `features/kernels.rs`), so 1e-9 leaves room for the peer's own rounding
/// and catches any difference of convention.
const RELATIVE_TOLERANCE: f64 = 1e-9;
const BATCH_ROWS: usize = 8192;
const SEED: u64 = 42;
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const START_MS: i64 = 1_704_067_200_000; // 2024-01-01
const BAR_MS: i64 = 60_000;
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
/// each bar. The checksum is the sum of the last closes, in symbol order.
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
    let mut batches = Vec::with_capacity(n.div_ceil(BATCH_ROWS));
    for first in (0..n).step_by(BATCH_ROWS) {
        let rows = first..(first + BATCH_ROWS).min(n);
        let symbol = StringArray::from_iter_values(rows.clone().map(|r| &names[r / bars]));
        let ts = TimestampMillisecondArray::from_iter_values(
            rows.clone().map(|r| START_MS + (r % bars) as i64 * BAR_MS),
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

/// One feature as each engine is asked for it.
struct Feature {
    /// The row label, e.g. `rolling_std 20`.
    label: String,
    /// quiver's output column, and the name the peers' columns get.
    column: String,
    kind: &'static str,
    window: usize,
    /// Rows of each symbol before the first value.
    warm_up: usize,
    /// DataFusion's window expression, where it has one.
    sql: Option<String>,
}

impl Feature {
    fn new(kind: &'static str, short: &str, window: usize, sql: Option<&str>) -> Feature {
        let frame = format!(
            "OVER (PARTITION BY symbol ORDER BY ts ROWS BETWEEN {} PRECEDING AND CURRENT ROW)",
            window - 1
        );
        Feature {
            label: format!("{kind} {window}"),
            column: format!("{short}_{window}"),
            kind,
            window,
            warm_up: if kind == "rsi" { window } else { window - 1 },
            sql: sql.map(|f| format!("{f}(close) {frame}")),
        }
    }

    fn spec(&self) -> Value {
        json!({"kind": self.kind, "window": self.window, "name": self.column})
    }
}

/// Several features in one call or query.
struct Group {
    label: String,
    /// Indexes into the features.
    members: Vec<usize>,
}

fn features() -> Vec<Feature> {
    let mut features = Vec::new();
    for w in WINDOWS {
        features.push(Feature::new("rolling_mean", "sma", w, Some("avg")));
        features.push(Feature::new("rolling_std", "std", w, Some("stddev_pop")));
    }
    features.push(Feature::new("ema", "ema", 20, None));
    features.push(Feature::new("rsi", "rsi", 14, None));
    features
}

/// Runs `features.compute` over `table` with a thread budget of
/// [`THREADS`]: the one place the bench calls the operator.
fn run_quiver(runtime: &Runtime, table: &Arc<Table>, features: &[&Feature]) -> Table {
    let specs: Vec<Value> = features.iter().map(|f| f.spec()).collect();
    let op = registry()
        .get("features.compute")
        .unwrap()
        .build(json!({"partition_by": "symbol", "features": specs}))
        .unwrap();
    let inputs = Inputs(vec![Input {
        name: "bars".into(),
        table: table.clone(),
    }]);
    // The run's budget is the bench's thread count: features.compute takes
    // as many of its threads as it may use.
    let ctx = ExecContext::new(ThreadBudget::new(THREADS), None).unwrap();
    let out = runtime.block_on(op.execute(&ctx, inputs)).unwrap();
    assert_eq!(out.num_rows(), table.num_rows());
    out
}

fn run_datafusion(
    runtime: &Runtime,
    ctx: &SessionContext,
    sql: &str,
    rows: usize,
) -> Vec<RecordBatch> {
    let batches = runtime
        .block_on(async { ctx.sql(sql).await?.collect().await })
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
    batches
}

fn datafusion_sql(features: &[&Feature]) -> Option<String> {
    let exprs: Option<Vec<String>> = features
        .iter()
        .map(|f| f.sql.as_ref().map(|e| format!("{e} AS {}", f.column)))
        .collect();
    Some(format!(
        "SELECT symbol, ts, close, {} FROM bars",
        exprs?.join(", ")
    ))
}

/// The best of `reps` timed runs, each result dropped after its timer.
/// Every case is run once untimed before this: the warm-up, whose output
/// is the one checked.
fn best_of<T>(reps: usize, mut run: impl FnMut() -> T) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..reps {
        let start = Instant::now();
        let result = run();
        best = best.min(start.elapsed());
        drop(result);
    }
    best
}

/// Prints the mismatch and stops the bench: no times are printed.
fn fail(message: String) -> ! {
    eprintln!("MISMATCH {message}");
    std::process::exit(1);
}

/// A column of quiver's output in input row order, null as NaN (quiver's
/// outputs are never NaN).
fn quiver_column(table: &Table, name: &str) -> Vec<f64> {
    let mut values = Vec::with_capacity(table.num_rows());
    for batch in table.batches() {
        let array = batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>();
        values.extend(array.iter().map(|v| v.unwrap_or(f64::NAN)));
    }
    values
}

/// Where (symbol, bar) of a row is.
fn at(row: usize, bars: usize) -> String {
    format!("symbol {}, bar {}", row / bars, row % bars)
}

/// quiver's nulls are exactly each symbol's warm-up rows.
fn check_warm_up(values: &[f64], f: &Feature, bars: usize) {
    for (row, v) in values.iter().enumerate() {
        let warming = row % bars < f.warm_up;
        if warming != v.is_nan() || v.is_infinite() {
            fail(format!(
                "{}: quiver has {v} at {}, where its documented warm-up ({} rows) says {}",
                f.label,
                at(row, bars),
                f.warm_up,
                if warming { "null" } else { "a value" }
            ));
        }
    }
}

/// DataFusion's column, put in input row order by (symbol, ts).
fn datafusion_column(batches: &[RecordBatch], name: &str, bars: usize, rows: usize) -> Vec<f64> {
    let mut values = vec![f64::NAN; rows];
    let mut seen = vec![false; rows];
    for batch in batches {
        let symbols = cast(batch.column_by_name("symbol").unwrap(), &DataType::Utf8).unwrap();
        let symbols = symbols.as_string::<i32>();
        let ts = batch
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let column = batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let symbol: usize = symbols.value(i)[1..].parse().unwrap();
            let bar = ((ts.value(i) - START_MS) / BAR_MS) as usize;
            let row = symbol * bars + bar;
            assert!(!seen[row], "DataFusion returned {} twice", at(row, bars));
            seen[row] = true;
            values[row] = if column.is_null(i) {
                f64::NAN
            } else {
                column.value(i)
            };
        }
    }
    values
}

/// The window's value computed directly, for `rolling_mean` and
/// `rolling_std`: a compensated sum, and two passes for the deviations with
/// the mean's rounding corrected, within ~1e-13 of the exact value here.
fn direct(f: &Feature, window: &[f64]) -> Option<f64> {
    let width = window.len() as f64;
    let (mut sum, mut carry) = (0.0f64, 0.0f64);
    for &v in window {
        // Neumaier's compensated sum.
        let t = sum + v;
        carry += if sum.abs() >= v.abs() {
            (sum - t) + v
        } else {
            (v - t) + sum
        };
        sum = t;
    }
    let mean = (sum + carry) / width;
    match f.kind {
        "rolling_mean" => Some(mean),
        "rolling_std" => {
            let low = window.iter().map(|v| v - mean).sum::<f64>() / width;
            let m2: f64 = window.iter().map(|v| ((v - mean) - low).powi(2)).sum();
            Some((m2 / width).sqrt())
        }
        _ => None,
    }
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE)
}

/// How a peer's column compares with quiver's.
#[derive(Default)]
struct Agreement {
    /// The largest relative difference within the tolerance.
    worst: f64,
    /// Rows beyond the tolerance where the direct computation agrees with
    /// quiver: the peer's own error.
    inexact: usize,
    /// The peer's largest relative error there, against the direct value,
    /// and its row.
    error: f64,
    error_row: usize,
}

/// Rows from each symbol's first valid row on where a peer must agree with
/// quiver within [`RELATIVE_TOLERANCE`], or the run aborts. A difference
/// of convention (ddof, window length, seeding, warm-up) shows on every
/// row, so from the first; a peer whose running state drifts (DataFusion's
/// `stddev_pop` is past 1e-9 within a few hundred rows on some series here)
/// is reported past them instead (see [`check_close`]).
const STRICT_ROWS: usize = 20;

/// From each symbol's first valid row on, `theirs` agrees with quiver's
/// within [`RELATIVE_TOLERANCE`]. Past the first [`STRICT_ROWS`] of those,
/// a row beyond the tolerance is arbitrated by [`direct`]: if quiver is
/// within the tolerance of the direct value, the row counts as the peer's
/// error, reported with its size and place in the results, and flagged in
/// the table. DataFusion's sliding `stddev_pop` needs this: it adds and
/// removes each row from a running mean and sum of squared deviations
/// (Welford), whose rounding accumulates along the series, and stays when
/// the prices, and so the deviations, later fall far below their earlier
/// level. Every other case aborts.
fn check_close(
    f: &Feature,
    engine: &str,
    close: &[f64],
    ours: &[f64],
    theirs: &[f64],
    bars: usize,
) -> Agreement {
    let mut agreement = Agreement::default();
    for (row, (&q, &t)) in ours.iter().zip(theirs).enumerate() {
        let bar = row % bars;
        if bar < f.warm_up {
            continue;
        }
        let difference = relative(q, t);
        // Written so that NaN fails too.
        if difference <= RELATIVE_TOLERANCE {
            agreement.worst = agreement.worst.max(difference);
            continue;
        }
        let window = &close[row + 1 - f.window.min(bar + 1)..=row];
        let exact = direct(f, window);
        let settled = exact
            .filter(|&e| bar >= f.warm_up + STRICT_ROWS && relative(q, e) <= RELATIVE_TOLERANCE);
        match settled {
            Some(e) => {
                agreement.inexact += 1;
                if relative(t, e) > agreement.error {
                    agreement.error = relative(t, e);
                    agreement.error_row = row;
                }
            }
            None => fail(format!(
                "{}: at {}, quiver {q:?} and {engine} {t:?} differ by {difference:.3e} relative \
                 (tolerance {RELATIVE_TOLERANCE:e}); computed directly: {exact:?}",
                f.label,
                at(row, bars),
            )),
        }
    }
    agreement
}

/// Writes quiver's feature columns, in input row order, for the Polars side.
fn write_ipc(path: &Path, table: &Table, features: &[Feature]) {
    let indexes: Vec<usize> = features
        .iter()
        .map(|f| table.schema().index_of(&f.column).unwrap())
        .collect();
    let schema = table.schema().project(&indexes).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = FileWriter::try_new(std::io::BufWriter::new(file), &schema).unwrap();
    for batch in table.batches() {
        writer.write(&batch.project(&indexes).unwrap()).unwrap();
    }
    writer.finish().unwrap();
}

fn rate(rows: usize, d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| {
        format!("{:.1} M", rows as f64 / d.as_secs_f64() / 1e6)
    })
}

struct Args {
    symbols: usize,
    bars: usize,
    reps: Option<usize>,
    out: PathBuf,
    datafusion: bool,
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter().position(|a| a == flag).map(|i| {
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        })
    };
    let out = value("--out");
    let reps = value("--reps");
    // Bare numbers are SYMBOLS and BARS; cargo bench adds `--bench`.
    let numbers: Vec<usize> = args
        .iter()
        .filter(|a| Some(*a) != reps)
        .filter_map(|a| a.parse().ok())
        .collect();
    let default_out = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
    .join("bench-features");
    Args {
        symbols: numbers.first().copied().unwrap_or(500),
        bars: numbers.get(1).copied().unwrap_or(100_000),
        reps: reps.map(|r| r.parse().expect("--reps takes a number")),
        out: out.map_or(default_out, PathBuf::from),
        datafusion: !args.iter().any(|a| a == "--no-datafusion"),
    }
}

/// Times of one row of the table.
struct Times {
    quiver: Duration,
    datafusion: Option<Duration>,
    /// DataFusion's output is inexact somewhere (see [`check_close`]).
    inexact: bool,
}

fn main() {
    let args = parse_args();
    let (symbols, bars) = (args.symbols, args.bars);
    let rows = symbols * bars;
    let reps = args.reps.unwrap_or(if rows >= 20_000_000 { 3 } else { 5 });
    std::fs::create_dir_all(&args.out).unwrap();

    let start = Instant::now();
    let (schema, batches, checksum) = generate(symbols, bars);
    println!(
        "data: {symbols} symbols x {bars} bars = {rows} rows in {} batches, generated in {:.1} s; \
         checksum {checksum:?}; {THREADS} threads each; best of {reps} after one warm-up",
        batches.len(),
        start.elapsed().as_secs_f64()
    );
    let table = Arc::new(Table::new(schema.clone(), batches.clone()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .build()
        .unwrap();
    let ctx = args.datafusion.then(|| {
        let ctx =
            SessionContext::new_with_config(SessionConfig::new().with_target_partitions(THREADS));
        // One sorted partition per thread (whole symbols each), sort order declared.
        let per_part = batches.len().div_ceil(THREADS);
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

    let features = features();
    let rolling: Vec<usize> = (0..features.len())
        .filter(|&i| features[i].sql.is_some())
        .collect();
    let groups = [
        Group {
            label: format!("{} rolling, 1 call", rolling.len()),
            members: rolling,
        },
        Group {
            label: format!("all {}, 1 call", features.len()),
            members: (0..features.len()).collect(),
        },
    ];

    // The input in row order, for the direct computations of the check.
    let close: Vec<f64> = batches
        .iter()
        .flat_map(|b| {
            b.column(2)
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .copied()
        })
        .collect();

    // quiver's reference: every feature in one call, its warm-up checked.
    let all: Vec<&Feature> = features.iter().collect();
    let reference = run_quiver(&runtime, &table, &all);
    let reference_columns: Vec<Vec<f64>> = features
        .iter()
        .map(|f| {
            let values = quiver_column(&reference, &f.column);
            check_warm_up(&values, f, bars);
            values
        })
        .collect();
    write_ipc(&args.out.join("quiver.arrow"), &reference, &features);
    drop(reference);

    // Each case: a warm-up run whose output is checked, then the timed runs.
    // What the check found beyond the tolerance but within rounding.
    let mut notes: Vec<String> = Vec::new();
    let mut case = |members: &[usize]| -> Times {
        let chosen: Vec<&Feature> = members.iter().map(|&i| &features[i]).collect();
        let out = run_quiver(&runtime, &table, &chosen);
        for &i in members {
            let values = quiver_column(&out, &features[i].column);
            let same = values
                .iter()
                .zip(&reference_columns[i])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            if !same {
                fail(format!(
                    "{}: quiver's column differs when computed with other features",
                    features[i].label
                ));
            }
        }
        drop(out);
        let quiver = best_of(reps, || run_quiver(&runtime, &table, &chosen));
        let mut inexact = false;
        let datafusion = match (&ctx, datafusion_sql(&chosen)) {
            (Some(ctx), Some(sql)) => {
                let out = run_datafusion(&runtime, ctx, &sql, rows);
                for &i in members {
                    let f = &features[i];
                    let theirs = datafusion_column(&out, &f.column, bars, rows);
                    let a = check_close(
                        f,
                        "DataFusion",
                        &close,
                        &reference_columns[i],
                        &theirs,
                        bars,
                    );
                    println!(
                        "  {:<17} DataFusion agrees with quiver (worst relative difference \
                         {:.1e}{})",
                        f.label,
                        a.worst,
                        if a.inexact > 0 {
                            format!(
                                "; DataFusion INEXACT on {} rows, see the table's notes",
                                a.inexact
                            )
                        } else {
                            String::new()
                        }
                    );
                    if a.inexact > 0 {
                        inexact = true;
                        let note = format!(
                            "* {}: DataFusion differs from quiver by more than \
                             {RELATIVE_TOLERANCE:e} on {} of {} rows, by up to {:.1e} relative \
                             from the direct computation (at {}), which quiver matches within \
                             {RELATIVE_TOLERANCE:e}: its running variance drifts",
                            f.label,
                            a.inexact,
                            rows - symbols * f.warm_up,
                            a.error,
                            at(a.error_row, bars)
                        );
                        if !notes.contains(&note) {
                            notes.push(note);
                        }
                    }
                }
                drop(out);
                Some(best_of(reps, || run_datafusion(&runtime, ctx, &sql, rows)))
            }
            _ => None,
        };
        Times {
            quiver,
            datafusion,
            inexact,
        }
    };
    let feature_times: Vec<Times> = (0..features.len()).map(|i| case(&[i])).collect();
    let group_times: Vec<Times> = groups.iter().map(|g| case(&g.members)).collect();

    println!(
        "\n{:<20} {:>10} {:>11} {:>9}",
        "feature", "quiver", "DataFusion", "speed-up"
    );
    let labels = features
        .iter()
        .map(|f| &f.label)
        .chain(groups.iter().map(|g| &g.label));
    for (label, t) in labels.zip(feature_times.iter().chain(&group_times)) {
        let speed_up = t.datafusion.map_or(String::new(), |d| {
            format!("{:.1}x", d.as_secs_f64() / t.quiver.as_secs_f64())
        });
        println!(
            "{label:<20} {:>10} {:>11} {speed_up:>9}",
            rate(rows, Some(t.quiver)),
            rate(rows, t.datafusion) + if t.inexact { "*" } else { "" }
        );
    }

    for note in &notes {
        println!("{note}");
    }

    let seconds = |t: &Times| {
        (
            t.quiver.as_secs_f64(),
            t.datafusion.map(|d| d.as_secs_f64()),
        )
    };
    let report = json!({
        "symbols": symbols,
        "bars": bars,
        "checksum": checksum,
        "threads": THREADS,
        "reps": reps,
        "relative_tolerance": RELATIVE_TOLERANCE,
        "notes": notes,
        "features": features.iter().zip(&feature_times).map(|(f, t)| {
            let (q, d) = seconds(t);
            json!({"label": f.label, "column": f.column, "kind": f.kind, "window": f.window,
                   "warm_up": f.warm_up, "quiver_s": q, "datafusion_s": d, "datafusion_inexact": t.inexact})
        }).collect::<Vec<_>>(),
        "groups": groups.iter().zip(&group_times).map(|(g, t)| {
            let (q, d) = seconds(t);
            let labels: Vec<&str> = g.members.iter().map(|&i| features[i].label.as_str()).collect();
            json!({"label": g.label, "labels": labels, "quiver_s": q, "datafusion_s": d, "datafusion_inexact": t.inexact})
        }).collect::<Vec<_>>(),
    });
    let path = args.out.join("rust.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!(
        "\nquiver's outputs and these times are in {}",
        args.out.display()
    );
}
