//! Writing 1,000,000 bars into Postgres (issue: the data platform pieces).
//! Run:
//!
//!     cargo bench --bench postgres
//!
//! Needs Debian's `postgresql` package (the README's test command installs
//! it) and Python 3 with network access to PyPI the first time: the
//! benchmark starts a PostgreSQL cluster of its own on a free port and
//! installs psycopg 3 into a virtual environment under the target folder.
//!
//! One table, `bars (symbol, ts, open, high, low, close, volume)` with the
//! primary key (symbol, ts), emptied before every run, written three ways:
//! quiver's `sink.postgres` upsert (reading the bars from Parquet, the
//! read included in its time), psycopg's `executemany` upserts in batches
//! of 500 (a transaction each, as the hand-written services did), and a
//! plain `COPY … FROM STDIN` of the same rows as CSV into the empty table
//! (psycopg streaming the file, the server parsing it). The Python sides
//! parse their input before their clocks start. Each way runs once to
//! warm up, then is timed; the table's contents after every run are
//! checked equal (row count and a hash of every value) before any time is
//! printed. Every way writes through one connection.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use quiver::exec::RunOptions;
use quiver::operators::arrow::array::{
    Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use quiver::operators::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use quiver::operators::arrow::record_batch::RecordBatch;
use quiver::operators::datafusion::parquet::arrow::ArrowWriter;
use support::postgres::Postgres;

const SYMBOLS: usize = 400;
const BARS: usize = 2_500;
/// 2026-01-05 09:15:00 UTC, in microseconds since 1970.
const FIRST_BAR: i64 = 1_767_604_500_000_000;
const TABLE: &str = "CREATE TABLE bars (symbol text, ts timestamp, open float8, high float8, \
                     low float8, close float8, volume int8, PRIMARY KEY (symbol, ts))";
const CHECK: &str = "SELECT count(*), sum(volume), sum(hashtext(symbol || ts::text || open::text \
                     || high::text || low::text || close::text || volume::text)::int8) FROM bars";

/// The bars, in batches of one symbol each.
fn bars() -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Int64, false),
    ]));
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..SYMBOLS)
        .map(|s| {
            let mut price = 20.0 + 80.0 * next();
            let (mut o, mut h, mut l, mut c, mut v) = (vec![], vec![], vec![], vec![], vec![]);
            for _ in 0..BARS {
                let open = price;
                price *= 1.0 + (next() - 0.5) * 0.01;
                let close = (price * 100.0).round() / 100.0;
                o.push((open * 100.0).round() / 100.0);
                h.push(((open.max(price) * (1.0 + next() * 0.002)) * 100.0).round() / 100.0);
                l.push(((open.min(price) * (1.0 - next() * 0.002)) * 100.0).round() / 100.0);
                c.push(close);
                v.push((next() * 50_000.0) as i64 * 10);
            }
            let ts: Vec<i64> = (0..BARS as i64)
                .map(|i| FIRST_BAR + i * 300_000_000)
                .collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec![format!("S{s:03}"); BARS])),
                    Arc::new(TimestampMicrosecondArray::from(ts)),
                    Arc::new(Float64Array::from(o)),
                    Arc::new(Float64Array::from(h)),
                    Arc::new(Float64Array::from(l)),
                    Arc::new(Float64Array::from(c)),
                    Arc::new(Int64Array::from(v)),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn write_parquet(batches: &[RecordBatch], path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for b in batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
}

/// The same rows as CSV, values written as Rust prints them (the shortest
/// text that reads back as the same double).
fn write_csv(batches: &[RecordBatch], path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(out, "symbol,ts,open,high,low,close,volume").unwrap();
    for b in batches {
        let col = |i: usize| b.column(i).as_any().downcast_ref::<Float64Array>().unwrap();
        let symbol = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let ts = b
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let volume = b.column(6).as_any().downcast_ref::<Int64Array>().unwrap();
        for r in 0..b.num_rows() {
            let t = ts.value_as_datetime(r).unwrap();
            writeln!(
                out,
                "{},{},{},{},{},{},{}",
                symbol.value(r),
                t.format("%Y-%m-%d %H:%M:%S"),
                col(2).value(r),
                col(3).value(r),
                col(4).value(r),
                col(5).value(r),
                volume.value(r)
            )
            .unwrap();
        }
    }
}

/// A virtual environment with psycopg, made once under the target folder.
fn python() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let venv = target.join("bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(ok.success(), "python3 -m venv failed");
    }
    let has = Command::new(&python)
        .args(["-c", "import psycopg"])
        .status()
        .unwrap();
    if !has.success() {
        let ok = Command::new(&python)
            .args(["-m", "pip", "install", "-q", "psycopg[binary]==3.2.*"])
            .status()
            .unwrap();
        assert!(ok.success(), "pip install psycopg failed");
    }
    python
}

fn peer(python: &Path, url: &str, csv: &Path, how: &str) -> Duration {
    let out = Command::new(python)
        .arg("benches/postgres_peer.py")
        .args([url, csv.to_str().unwrap(), how])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_secs_f64(secs)
}

fn quiver_upsert(url: &str, parquet: &Path) -> Duration {
    let yaml = format!(
        r#"
pipeline: bench
resources:
  db: {{concurrency: 1}}
nodes:
  bars:
    op: fetch.parquet
    with: {{path: "{}"}}
  save:
    op: sink.postgres
    resource: db
    inputs: [bars]
    with: {{url: "{url}", table: bars, mode: upsert, key: [symbol, ts]}}
"#,
        parquet.display()
    );
    let plan = quiver::compile::compile_str(Path::new("bench.yaml"), &yaml, &[])
        .unwrap_or_else(|d| panic!("{d}"));
    let options = RunOptions {
        max_workers: 2,
        ..RunOptions::default()
    };
    let (took, report) = support::execute(&quiver::cache::uncached(&plan), options);
    assert!(report.succeeded(), "{report}");
    took
}

fn main() {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| f != "postgres") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (parquet, csv) = (dir.path().join("bars.parquet"), dir.path().join("bars.csv"));
    let batches = bars();
    write_parquet(&batches, &parquet);
    write_csv(&batches, &csv);
    drop(batches);
    let python = python();
    for durable in [true, false] {
        compare(&python, &parquet, &csv, durable);
    }
}

/// The four ways on a cluster of their own; prints the table.
fn compare(python: &Path, parquet: &Path, csv: &Path, durable: bool) {
    let pg = if durable {
        Postgres::start_durable()
    } else {
        Postgres::start()
    };
    let url = pg.database("bench");
    pg.psql("bench", TABLE);

    let empty = || {
        pg.psql("bench", "TRUNCATE bars");
        pg.psql("bench", "CHECKPOINT");
    };
    let full = || {};
    let changed = || {
        pg.psql("bench", "UPDATE bars SET close = close + 1");
        pg.psql("bench", "CHECKPOINT");
    };
    let mut results: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut contents: Vec<(&str, String)> = Vec::new();
    // `before` sets the table up, untimed; the first run warms up.
    let mut measure =
        |name: &'static str, runs: usize, before: &dyn Fn(), f: &dyn Fn() -> Duration| {
            let mut times = Vec::new();
            for i in 0..=runs {
                before();
                let took = f();
                contents.push((name, pg.psql("bench", CHECK)));
                if i > 0 {
                    times.push(took);
                }
            }
            results.push((name, times));
        };
    let quiver = || quiver_upsert(&url, parquet);
    measure("plain COPY (psycopg, CSV)", 3, &empty, &|| {
        peer(python, &url, csv, "copy")
    });
    measure("quiver sink.postgres upsert", 3, &empty, &quiver);
    let batched = || peer(python, &url, csv, "executemany");
    measure("executemany upserts, batches of 500", 2, &empty, &batched);
    // Into the full table: every key is there already.
    measure("quiver upsert, nothing changed", 3, &full, &quiver);
    measure("quiver upsert, every row changed", 3, &changed, &quiver);

    let first = &contents[0].1;
    for (name, c) in &contents {
        assert_eq!(c, first, "{name} left different contents in bars");
    }
    assert!(first.starts_with("1000000|"), "{first}");
    let settings = if durable {
        "the server's own settings: fsync, synchronous_commit on"
    } else {
        "fsync, synchronous_commit, full_page_writes off"
    };
    println!("\nPostgres with {settings}");
    println!("bars after every run: {first} (rows | sum(volume) | sum of row hashes)");
    let median = |t: &[Duration]| {
        let mut t = t.to_vec();
        t.sort();
        t[t.len() / 2]
    };
    let copy = median(&results[0].1);
    let batched = median(&results[2].1);
    println!(
        "{:<40} {:>10} {:>12} {:>10} {:>10}",
        "1,000,000 bars into Postgres", "median", "rows/s", "vs COPY", "vs batched"
    );
    for (name, times) in &results {
        let m = median(times);
        println!(
            "{name:<40} {:>9.2}s {:>12.0} {:>9.2}x {:>9.1}x",
            m.as_secs_f64(),
            1e6 / m.as_secs_f64(),
            copy.as_secs_f64() / m.as_secs_f64(),
            batched.as_secs_f64() / m.as_secs_f64(),
        );
    }
}
