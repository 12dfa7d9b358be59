//! `sink.parquet` tests: one file in each mode and codec, hive-partitioned
//! folders in each mode, and atomicity when a write fails.

use std::fs;

use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, StructArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::Compression;
use serde_json::json;

use super::*;
use crate::shared::testing::{listing, one_input};
use crate::{Input, Inputs, registry};

fn build(params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError> {
    registry()
        .get(ParquetSinkParams::NAME)
        .unwrap()
        .build(params)
}

/// Two batches, with nulls, over the types market data uses most.
fn prices() -> Table {
    let schema = Arc::new(Schema::new(vec![
        Field::new("Ticker", DataType::Utf8, false),
        Field::new("Date", DataType::Date32, false),
        Field::new("Close", DataType::Float64, true),
        Field::new("Volume", DataType::Int64, true),
    ]));
    let batch = |tickers: Vec<&str>, days: Vec<i32>, close: Vec<Option<f64>>, volume| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(tickers)) as ArrayRef,
                Arc::new(Date32Array::from(days)),
                Arc::new(Float64Array::from(close)),
                Arc::new(Int64Array::from(volume)),
            ],
        )
        .unwrap()
    };
    let first = batch(
        vec!["AAPL", "MSFT"],
        vec![11017, 11017],
        vec![Some(130.31), None],
        vec![Some(9616100), Some(1)],
    );
    let second = batch(vec!["IBM"], vec![11018], vec![Some(1.5)], vec![None]);
    Table::new(schema, vec![first, second])
}

fn read_back(path: &Path) -> (RecordBatch, Compression) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let codec = builder.metadata().row_group(0).column(0).compression();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    (concat_batches(&schema, &batches).unwrap(), codec)
}

/// A file records its codec but not the level it was written at.
fn same_codec(a: Compression, b: Compression) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

/// The summary rows: path, rows, status.
fn statuses(out: &Table) -> Vec<(String, i64, String)> {
    let batch = out.concat().unwrap();
    let text = |i: usize, row: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(row)
            .to_string()
    };
    let rows = batch
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    (0..batch.num_rows())
        .map(|row| (text(0, row), rows.value(row), text(2, row)))
        .collect()
}

#[tokio::test]
async fn roundtrips_with_each_codec() {
    let dir = tempfile::tempdir().unwrap();
    let table = prices();
    for (name, codec) in [
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
        ("snappy", Compression::SNAPPY),
        ("none", Compression::UNCOMPRESSED),
    ] {
        let path = dir.path().join(format!("prices-{name}.parquet"));
        let sink = build(json!({ "path": path, "compression": name })).unwrap();

        let out = sink
            .execute(&crate::ExecContext::standalone(), one_input(table.clone()))
            .await
            .unwrap();

        let (written, written_codec) = read_back(&path);
        assert_eq!(written, table.concat().unwrap(), "{name}");
        assert!(same_codec(written_codec, codec), "{name}: {written_codec}");
        let summary = out.concat().unwrap();
        let paths = summary
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let rows = summary
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(paths.value(0), path.to_string_lossy());
        assert_eq!(rows.value(0), 3);
    }
    assert_eq!(
        listing(dir.path()),
        [
            "prices-none.parquet",
            "prices-snappy.parquet",
            "prices-zstd.parquet"
        ]
    );
}

#[tokio::test]
async fn zstd_is_the_default_and_parent_directories_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/prices.parquet");

    build(json!({ "path": path }))
        .unwrap()
        .execute(&crate::ExecContext::standalone(), one_input(prices()))
        .await
        .unwrap();

    let (written, codec) = read_back(&path);
    assert_eq!(written.num_rows(), 3);
    assert!(matches!(codec, Compression::ZSTD(_)), "{codec}");
}

#[tokio::test]
async fn an_empty_table_writes_a_file_with_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.parquet");
    let schema = prices().schema().clone();

    build(json!({ "path": path }))
        .unwrap()
        .execute(
            &crate::ExecContext::standalone(),
            one_input(Table::new(schema.clone(), vec![])),
        )
        .await
        .unwrap();

    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
    assert_eq!(builder.schema().fields(), schema.fields());
    assert_eq!(builder.metadata().file_metadata().num_rows(), 0);
}

#[tokio::test]
async fn overwrite_replaces_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.parquet");
    fs::write(&path, "old").unwrap();

    build(json!({ "path": path }))
        .unwrap()
        .execute(&crate::ExecContext::standalone(), one_input(prices()))
        .await
        .unwrap();

    assert_eq!(read_back(&path).0.num_rows(), 3);
    assert_eq!(listing(dir.path()), ["prices.parquet"]);
}

#[tokio::test]
async fn skip_existing_leaves_an_existing_file_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.parquet");
    fs::write(&path, "old").unwrap();

    let out = build(json!({ "path": path, "mode": "skip_existing" }))
        .unwrap()
        .execute(&crate::ExecContext::standalone(), one_input(prices()))
        .await
        .unwrap();

    assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(listing(dir.path()), ["prices.parquet"]);
    assert_eq!(
        statuses(&out),
        [(path.display().to_string(), 0, "skipped".into())]
    );
}

#[tokio::test]
async fn skip_existing_writes_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.parquet");

    let out = build(json!({ "path": path, "mode": "skip_existing" }))
        .unwrap()
        .execute(&crate::ExecContext::standalone(), one_input(prices()))
        .await
        .unwrap();

    assert_eq!(read_back(&path).0.num_rows(), 3);
    assert_eq!(listing(dir.path()), ["prices.parquet"]);
    assert_eq!(
        statuses(&out),
        [(path.display().to_string(), 3, "written".into())]
    );
}

#[tokio::test]
async fn a_parent_that_is_a_file_fails_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("not-a-dir"), "x").unwrap();
    let path = dir.path().join("not-a-dir/prices.parquet");

    let err = build(json!({ "path": path }))
        .unwrap()
        .execute(&crate::ExecContext::standalone(), one_input(prices()))
        .await
        .unwrap_err();

    assert!(matches!(err, OpError::Io { .. }), "{err:?}");
    assert_eq!(listing(dir.path()), ["not-a-dir"]);
}

#[tokio::test]
async fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.parquet");
    fs::write(&path, "old").unwrap();
    // Parquet cannot store a struct without fields, which the writer only
    // finds out once the temporary file exists.
    let empty_struct = StructArray::new_empty_fields(2, None);
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "nothing",
            empty_struct.data_type().clone(),
            false,
        )])),
        vec![Arc::new(empty_struct)],
    )
    .unwrap();

    let err = build(json!({ "path": path }))
        .unwrap()
        .execute(
            &crate::ExecContext::standalone(),
            one_input(Table::from_batch(batch)),
        )
        .await
        .unwrap_err();

    assert!(err.to_string().contains("empty structs"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(listing(dir.path()), ["prices.parquet"]);
}

/// Every file under `dir`, hidden ones too, as sorted relative paths.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

async fn write_partitioned(dir: &Path, mode: &str, table: Table) -> Table {
    build(json!({ "path": dir, "partition_by": ["Date", "Ticker"], "mode": mode }))
        .unwrap()
        .execute(&crate::ExecContext::standalone(), one_input(table))
        .await
        .unwrap()
}

#[tokio::test]
async fn partitions_by_columns_and_leaves_them_out_of_the_files() {
    let dir = tempfile::tempdir().unwrap();

    let out = write_partitioned(dir.path(), "overwrite", prices()).await;

    assert_eq!(
        tree(dir.path()),
        [
            "Date=2000-03-01/Ticker=AAPL/part-0.parquet",
            "Date=2000-03-01/Ticker=MSFT/part-0.parquet",
            "Date=2000-03-02/Ticker=IBM/part-0.parquet",
        ]
    );
    let (aapl, _) = read_back(
        &dir.path()
            .join("Date=2000-03-01/Ticker=AAPL/part-0.parquet"),
    );
    let names: Vec<String> = aapl
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["Close", "Volume"]);
    assert_eq!(aapl.num_rows(), 1);
    let close = aapl
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(close.value(0), 130.31);
    let root = dir.path().display().to_string();
    assert_eq!(
        statuses(&out),
        [
            (
                format!("{root}/Date=2000-03-01/Ticker=AAPL/part-0.parquet"),
                1,
                "written".into()
            ),
            (
                format!("{root}/Date=2000-03-01/Ticker=MSFT/part-0.parquet"),
                1,
                "written".into()
            ),
            (
                format!("{root}/Date=2000-03-02/Ticker=IBM/part-0.parquet"),
                1,
                "written".into()
            ),
        ]
    );
}

#[tokio::test]
async fn overwrite_replaces_only_the_partitions_written() {
    let dir = tempfile::tempdir().unwrap();
    let aapl = dir.path().join("Date=2000-03-01/Ticker=AAPL");
    let other = dir.path().join("Date=1999-01-04/Ticker=AAPL");
    fs::create_dir_all(&aapl).unwrap();
    fs::create_dir_all(&other).unwrap();
    fs::write(aapl.join("part-0.parquet"), "old").unwrap();
    fs::write(aapl.join("part-3.parquet"), "old too").unwrap();
    fs::write(other.join("part-0.parquet"), "untouched").unwrap();

    write_partitioned(dir.path(), "overwrite", prices()).await;

    assert_eq!(
        tree(dir.path()),
        [
            "Date=1999-01-04/Ticker=AAPL/part-0.parquet",
            "Date=2000-03-01/Ticker=AAPL/part-0.parquet",
            "Date=2000-03-01/Ticker=MSFT/part-0.parquet",
            "Date=2000-03-02/Ticker=IBM/part-0.parquet",
        ]
    );
    assert_eq!(read_back(&aapl.join("part-0.parquet")).0.num_rows(), 1);
    assert_eq!(
        fs::read_to_string(other.join("part-0.parquet")).unwrap(),
        "untouched"
    );
}

#[tokio::test]
async fn append_adds_a_part_file_to_each_partition() {
    let dir = tempfile::tempdir().unwrap();

    write_partitioned(dir.path(), "append", prices()).await;
    let out = write_partitioned(dir.path(), "append", prices()).await;

    assert_eq!(
        tree(dir.path()),
        [
            "Date=2000-03-01/Ticker=AAPL/part-0.parquet",
            "Date=2000-03-01/Ticker=AAPL/part-1.parquet",
            "Date=2000-03-01/Ticker=MSFT/part-0.parquet",
            "Date=2000-03-01/Ticker=MSFT/part-1.parquet",
            "Date=2000-03-02/Ticker=IBM/part-0.parquet",
            "Date=2000-03-02/Ticker=IBM/part-1.parquet",
        ]
    );
    let written = statuses(&out);
    assert!(
        written
            .iter()
            .all(|(p, rows, s)| p.ends_with("part-1.parquet") && *rows == 1 && s == "written")
    );
    let part = dir.path().join("Date=2000-03-02/Ticker=IBM/part-1.parquet");
    assert_eq!(read_back(&part).0.num_rows(), 1);
}

#[tokio::test]
async fn skip_existing_leaves_existing_partitions_and_writes_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let aapl = dir.path().join("Date=2000-03-01/Ticker=AAPL");
    fs::create_dir_all(&aapl).unwrap();
    fs::write(aapl.join("part-0.parquet"), "old").unwrap();

    let out = write_partitioned(dir.path(), "skip_existing", prices()).await;

    assert_eq!(
        fs::read_to_string(aapl.join("part-0.parquet")).unwrap(),
        "old"
    );
    assert_eq!(tree(dir.path()).len(), 3);
    let root = dir.path().display().to_string();
    assert_eq!(
        statuses(&out),
        [
            (
                format!("{root}/Date=2000-03-01/Ticker=AAPL"),
                0,
                "skipped".into()
            ),
            (
                format!("{root}/Date=2000-03-01/Ticker=MSFT/part-0.parquet"),
                1,
                "written".into()
            ),
            (
                format!("{root}/Date=2000-03-02/Ticker=IBM/part-0.parquet"),
                1,
                "written".into()
            ),
        ]
    );
}

#[tokio::test]
async fn a_failed_partitioned_write_moves_nothing_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("symbol=A/part-0.parquet");
    fs::create_dir_all(old.parent().unwrap()).unwrap();
    fs::write(&old, "old").unwrap();
    // The second partition fails: Parquet cannot store a struct without
    // fields. The first was already staged and must not land.
    let empty_struct = StructArray::new_empty_fields(2, None);
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("nothing", empty_struct.data_type().clone(), false),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["A", "B"])),
            Arc::new(empty_struct),
        ],
    )
    .unwrap();

    let err = build(json!({ "path": dir.path(), "partition_by": ["symbol"] }))
        .unwrap()
        .execute(
            &crate::ExecContext::standalone(),
            one_input(Table::from_batch(batch)),
        )
        .await
        .unwrap_err();

    assert!(err.to_string().contains("empty structs"), "{err}");
    assert_eq!(tree(dir.path()), ["symbol=A/part-0.parquet"]);
    assert_eq!(fs::read_to_string(&old).unwrap(), "old");
    assert_eq!(listing(dir.path()), ["symbol=A"]);
}

#[tokio::test]
async fn partition_values_are_escaped_and_nulls_refused() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("venue", DataType::Utf8, true),
        Field::new("x", DataType::Int64, false),
    ]));
    let table = |venue: Option<&str>| {
        Table::from_batch(
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec![venue])),
                    Arc::new(Int64Array::from(vec![1])),
                ],
            )
            .unwrap(),
        )
    };
    let sink = build(json!({ "path": dir.path(), "partition_by": ["venue"] })).unwrap();

    sink.execute(
        &crate::ExecContext::standalone(),
        one_input(table(Some("OTC/Pink 50%"))),
    )
    .await
    .unwrap();
    assert_eq!(
        tree(dir.path()),
        ["venue=OTC%2FPink%2050%25/part-0.parquet"]
    );

    let err = sink
        .execute(&crate::ExecContext::standalone(), one_input(table(None)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::Invalid(m) if m.contains("null")),
        "{err}"
    );

    let sink = build(json!({ "path": dir.path(), "partition_by": ["vneue"] })).unwrap();
    let err = sink
        .execute(
            &crate::ExecContext::standalone(),
            one_input(table(Some("X"))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpError::Invalid(m) if m.contains("venue, x")),
        "{err}"
    );
}

#[tokio::test]
async fn exactly_one_input_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let sink = build(json!({ "path": dir.path().join("x.parquet") })).unwrap();

    let err = sink
        .execute(&crate::ExecContext::standalone(), Inputs::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has 0 (none)"), "{err}");

    let two = Inputs(vec![
        one_input(prices()).0[0].clone(),
        Input {
            name: "other".into(),
            table: Arc::new(prices()),
        },
    ]);
    let err = sink
        .execute(&crate::ExecContext::standalone(), two)
        .await
        .unwrap_err();
    assert!(matches!(&err, OpError::Invalid(m) if m.contains("has 2 (prices, other)")));
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn sink_target_is_the_normalised_path() {
    let target = |path: &str| build(json!({ "path": path })).unwrap().sink_target();

    assert_eq!(
        target("./out/prices.parquet").as_deref(),
        Some("out/prices.parquet")
    );
    assert_eq!(
        target("out/./prices.parquet").as_deref(),
        Some("out/prices.parquet")
    );
    assert_eq!(target("prices.parquet").as_deref(), Some("prices.parquet"));
    assert_eq!(
        target("/data/prices.parquet").as_deref(),
        Some("/data/prices.parquet")
    );
    assert_eq!(
        target("../prices.parquet").as_deref(),
        Some("../prices.parquet")
    );
}

#[test]
fn params_are_checked_at_build_time() {
    for (bad, field) in [
        (json!({ "path": "" }), "path"),
        (json!({ "path": "out/" }), "path"),
        (json!({ "path": ".." }), "path"),
        (
            json!({ "path": "x.parquet", "compression": "gzip" }),
            "compression",
        ),
    ] {
        let err = build(bad.clone()).unwrap_err();
        assert_eq!(err.path, [field], "{bad}: {err}");
    }
    let err = build(json!({ "path": "x.parquet", "mdoe": "append" })).unwrap_err();
    assert!(err.message.contains("unknown field `mdoe`"), "{err}");

    let err = build(json!({ "path": "x.parquet", "mode": "append" })).unwrap_err();
    assert_eq!(err.path, ["mode"]);
    assert!(err.message.contains("partition_by"), "{err}");

    let err = build(json!({ "path": "x", "partition_by": [] })).unwrap_err();
    assert_eq!(err.path, ["partition_by"]);

    let err = build(json!({ "path": "x", "partition_by": ["a", "a"] })).unwrap_err();
    assert_eq!(err.path, ["partition_by", "1"]);

    // A partitioned sink writes a folder, which may be named with a slash.
    assert!(build(json!({ "path": "out/", "partition_by": ["a"], "mode": "append" })).is_ok());
}
