//! `sink.csv`: writes its input to one CSV file, or to a hive-partitioned
//! folder of them, atomically.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::atomic::{self, WriteMode};
use crate::shared::csv_dialect;
use crate::shared::file_sink::{Destination, FileSink, FileSinkParams, SinkFormat};
use crate::shared::scan::is_gzip;
use crate::{Arity, Effect, OpError, Operator, ParamError, Table, Workload};

const NAME: &str = "sink.csv";

/// Parameters of `sink.csv`: where and how to write (shared with
/// `sink.parquet`) and how the text is laid out.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct CsvSinkParams {
    #[serde(flatten)]
    pub file: FileSinkParams,

    /// The field separator: one ASCII character. Defaults to a comma.
    ///
    /// ```yaml
    /// delimiter: ";"
    /// ```
    #[serde(default = "csv_dialect::default_delimiter")]
    pub delimiter: char,

    /// Whether to write a first line with the column names. Defaults to true.
    ///
    /// ```yaml
    /// has_header: false
    /// ```
    #[serde(default = "csv_dialect::default_has_header")]
    pub has_header: bool,
}

impl OpParams for CsvSinkParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str = "Writes its one input as CSV: to one file (gzip-compressed when \
        the name ends in .gz), or with partition_by to a hive-partitioned folder \
        (path/symbol=…/part-0.csv). Dates are written as 2026-01-05 and timestamps in ISO \
        8601, which fetch.csv reads back with the same types. Files are written under \
        temporary names and renamed into place once complete, so readers never see a \
        half-written file. mode: overwrite | append | skip_existing. Outputs one row per file \
        with its `path`, the `rows` written and its `status` (written or skipped).";
    const EFFECT: Effect = Effect::Sink;
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::Exactly(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        FileSink::build(self.file, |dest| {
            Ok(Csv {
                delimiter: csv_dialect::delimiter_byte(self.delimiter)?,
                has_header: self.has_header,
                gzip: dest.is_one_file() && is_gzip(&dest.path.to_string_lossy()),
            })
        })
    }
}

/// How `sink.csv` lays out its files.
#[derive(Debug, Clone)]
struct Csv {
    delimiter: u8,
    has_header: bool,
    /// Only ever set for one file: partitions are plain `.csv` files.
    gzip: bool,
}

impl SinkFormat for Csv {
    const OP: &'static str = NAME;
    const EXTENSION: &'static str = "csv";
    const LABEL: &'static str = "CSV";

    fn encode(&self, file: File, path: &Path, table: &Table) -> Result<File, OpError> {
        self.encode_plain(file, path, table, self.has_header)
    }

    /// One file may be gzip-compressed, and `append` adds the rows to the
    /// end of an existing file.
    fn write_one_file(&self, dest: &Destination, table: &Table) -> Result<Option<u64>, OpError> {
        let path = &dest.path;
        let appending = dest.mode == WriteMode::Append && atomic::exists(NAME, path)?;
        if appending && self.has_header {
            self.check_header(path, table.schema())?;
        }
        dest.write_file(NAME, table, |mut file| {
            if appending {
                // Old rows first, copied as they are (gzip members may follow
                // one another), then the new ones without a header.
                let mut old = File::open(path).map_err(|e| io_error(path, e))?;
                io::copy(&mut old, &mut file).map_err(|e| io_error(path, e))?;
            }
            let header = self.has_header && !appending;
            if !self.gzip {
                return self.encode_plain(file, path, table, header);
            }
            let gz = GzEncoder::new(BufWriter::new(file), Compression::default());
            let gz = self.write_csv(gz, table, header)?;
            let buffered = gz.finish().map_err(|e| io_error(path, e))?;
            buffered
                .into_inner()
                .map_err(|e| io_error(path, e.into_error()))
        })
    }
}

impl Csv {
    /// Writes `table` into `file` as uncompressed CSV.
    fn encode_plain(
        &self,
        file: File,
        path: &Path,
        table: &Table,
        header: bool,
    ) -> Result<File, OpError> {
        self.write_csv(BufWriter::new(file), table, header)?
            .into_inner()
            .map_err(|e| io_error(path, e.into_error()))
    }

    /// Writes `table` as CSV to `out`, with a header line when `header`
    /// (even for no rows, so an empty table still names its columns).
    fn write_csv<W: Write>(&self, out: W, table: &Table, header: bool) -> Result<W, OpError> {
        let mut writer = WriterBuilder::new()
            .with_header(header)
            .with_delimiter(self.delimiter)
            .build(out);
        if table.batches().is_empty() {
            writer.write(&RecordBatch::new_empty(table.schema().clone()))?;
        }
        for batch in table.batches() {
            writer.write(batch)?;
        }
        Ok(writer.into_inner())
    }

    /// Appending under a header that names other columns would make a file
    /// no reader can make sense of: refuse, naming both.
    fn check_header(&self, path: &Path, schema: &SchemaRef) -> Result<(), OpError> {
        let no_rows = Table::new(schema.clone(), Vec::new());
        let expected = self.write_csv(Vec::new(), &no_rows, true)?;
        let expected = String::from_utf8_lossy(&expected).trim_end().to_string();
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        let reader: Box<dyn Read> = if self.gzip {
            Box::new(MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut found = String::new();
        BufReader::new(reader)
            .read_line(&mut found)
            .map_err(|e| io_error(path, e))?;
        let found = found.trim_end();
        if found.is_empty() || found == expected {
            return Ok(());
        }
        Err(OpError::Invalid(format!(
            "sink.csv: cannot append to '{}': its header is `{found}` but the input's columns \
             are `{expected}`; write to another file or use `mode: overwrite`",
            path.display()
        )))
    }
}

fn io_error(path: &Path, e: io::Error) -> OpError {
    OpError::io(format!("sink.csv: cannot write '{}'", path.display()), e)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use datafusion::arrow::array::{
        Array, ArrayRef, Date32Array, Float64Array, Int64Array, StringArray, TimestampSecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use serde_json::json;

    use super::*;
    use crate::shared::testing::{listing, one_input};
    use crate::{Inputs, registry};

    fn build(params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError> {
        registry().get(CsvSinkParams::NAME).unwrap().build(params)
    }

    async fn sink(params: serde_json::Value, table: Table) -> Result<Table, OpError> {
        build(params)
            .unwrap()
            .execute(&crate::ExecContext::standalone(), one_input(table))
            .await
    }

    async fn fetch(params: serde_json::Value) -> Table {
        registry()
            .get("fetch.csv")
            .unwrap()
            .build(params)
            .unwrap()
            .execute(&crate::ExecContext::standalone(), Inputs::default())
            .await
            .unwrap()
    }

    /// Every type fetch.csv infers, with a null and a field that needs quoting.
    fn prices() -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
            // Whole seconds, which fetch.csv infers as Timestamp(Second).
            Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), false),
            Field::new("close", DataType::Float64, true),
            Field::new("volume", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["FPT", "VNM", "FPT"])) as ArrayRef,
                Arc::new(Date32Array::from(vec![20458, 20458, 20459])),
                Arc::new(TimestampSecondArray::from(vec![
                    1_767_604_500,
                    1_767_604_560,
                    1_767_690_900,
                ])),
                Arc::new(Float64Array::from(vec![Some(95.5), None, Some(96.25)])),
                Arc::new(Int64Array::from(vec![100, 200, 300])),
                Arc::new(StringArray::from(vec![Some("a, b"), None, Some("c")])),
            ],
        )
        .unwrap();
        Table::new(schema, vec![batch])
    }

    fn text(table: &Table) -> String {
        pretty_format_batches(table.batches()).unwrap().to_string()
    }

    #[tokio::test]
    async fn roundtrips_through_fetch_csv_plain_and_gzipped() {
        for name in ["prices.csv", "prices.csv.gz"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);

            let out = sink(json!({ "path": path }), prices()).await.unwrap();

            let back = fetch(json!({ "path": path })).await;
            assert_eq!(
                back.concat().unwrap(),
                prices()
                    .concat()
                    .unwrap()
                    .with_schema(back.schema().clone())
                    .unwrap(),
                "{name}"
            );
            let types = |t: &Table| -> Vec<DataType> {
                t.schema()
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect()
            };
            assert_eq!(types(&back), types(&prices()), "{name}");
            assert_eq!(listing(dir.path()), [name]);
            let summary = out.concat().unwrap();
            let rows = summary
                .column(1)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            assert_eq!(rows.value(0), 3);
        }
    }

    #[tokio::test]
    async fn append_adds_rows_under_the_same_header() {
        for name in ["prices.csv", "prices.csv.gz"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);

            sink(json!({ "path": path, "mode": "append" }), prices())
                .await
                .unwrap();
            sink(json!({ "path": path, "mode": "append" }), prices())
                .await
                .unwrap();

            let back = fetch(json!({ "path": path, "columns": ["symbol", "volume"] })).await;
            assert_eq!(back.num_rows(), 6, "{name}");
            assert_eq!(listing(dir.path()), [name]);
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.csv");
        fs::write(&path, "a,b\n1,2\n").unwrap();
        let err = sink(json!({ "path": path, "mode": "append" }), prices())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OpError::Invalid(m) if m.contains("`a,b`")),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "a,b\n1,2\n");
        assert_eq!(listing(dir.path()), ["other.csv"]);
    }

    #[tokio::test]
    async fn overwrite_and_skip_existing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.csv");
        fs::write(&path, "old\n").unwrap();

        let out = sink(json!({ "path": path, "mode": "skip_existing" }), prices())
            .await
            .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "old\n");
        let status = out.concat().unwrap();
        let status = status
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(status.value(0), "skipped");

        sink(json!({ "path": path }), prices()).await.unwrap();
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("symbol,date,ts,close")
        );
        assert_eq!(listing(dir.path()), ["prices.csv"]);
    }

    #[tokio::test]
    async fn partitioned_roundtrip_through_fetch_csv() {
        let dir = tempfile::tempdir().unwrap();

        sink(
            json!({ "path": dir.path(), "partition_by": ["symbol"] }),
            prices(),
        )
        .await
        .unwrap();

        assert_eq!(listing(dir.path()), ["symbol=FPT", "symbol=VNM"]);
        let back = fetch(json!({
            "path": dir.path(),
            "columns": ["symbol", "date", "volume"],
            "symbols": ["FPT"],
        }))
        .await;
        assert_eq!(
            text(&back),
            "\
+--------+------------+--------+
| symbol | date       | volume |
+--------+------------+--------+
| FPT    | 2026-01-05 | 100    |
| FPT    | 2026-01-06 | 300    |
+--------+------------+--------+"
        );
    }

    #[tokio::test]
    async fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("prices.csv"), "old\n").unwrap();
        // A directory where the old rows should be read from makes the
        // append fail after the temporary file exists.
        let path = dir.path().join("taken.csv");
        fs::create_dir(&path).unwrap();

        let err = sink(
            json!({ "path": path, "mode": "append", "has_header": false }),
            prices(),
        )
        .await
        .unwrap_err();

        assert!(matches!(err, OpError::Io { .. }), "{err:?}");
        assert_eq!(listing(dir.path()), ["prices.csv", "taken.csv"]);
        assert_eq!(
            fs::read_to_string(dir.path().join("prices.csv")).unwrap(),
            "old\n"
        );
    }

    #[test]
    fn params_are_checked_at_build_time() {
        for (bad, path) in [
            (json!({ "path": "" }), vec!["path"]),
            (json!({ "path": "out/" }), vec!["path"]),
            (
                json!({ "path": "x.csv", "delimiter": "ab" }),
                vec!["delimiter"],
            ),
            (
                json!({ "path": "x", "partition_by": [] }),
                vec!["partition_by"],
            ),
        ] {
            let err = build(bad.clone()).unwrap_err();
            assert_eq!(err.path, path, "{bad}: {err}");
        }
        let err = build(json!({ "path": "x.csv", "mode": "replace" })).unwrap_err();
        assert!(err.message.contains("unknown variant `replace`"), "{err}");
        assert_eq!(
            build(json!({ "path": "./out/x.csv" }))
                .unwrap()
                .sink_target()
                .as_deref(),
            Some("out/x.csv")
        );
    }
}
