//! `sink.parquet`: writes its input to one Parquet file, atomically.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::registry::OpParams;
use crate::{Effect, Inputs, OpError, Operator, ParamError, Table, Workload};

/// zstd's own default level, and the one DataFusion writes Parquet with:
/// most of the ratio of higher levels at a fraction of their cost.
const ZSTD_LEVEL: i32 = 3;

/// How the column data in the file is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    /// Fast to write and read, larger files.
    Snappy,
    /// Smaller files at a modest cost in speed (level 3, as DataFusion
    /// writes). The default.
    #[default]
    Zstd,
    /// No compression.
    None,
}

impl ParquetCompression {
    fn codec(self) -> Compression {
        match self {
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Zstd => {
                Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("3 is a valid zstd level"))
            }
            ParquetCompression::None => Compression::UNCOMPRESSED,
        }
    }
}

/// Parameters of `sink.parquet`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkParams {
    /// The Parquet file to write. Missing parent directories are created.
    /// Relative paths are resolved against the directory quiver is run from.
    ///
    /// ```yaml
    /// path: out/daily-returns.parquet
    /// ```
    pub path: String,

    /// How to compress the data: `zstd` (the default), `snappy` or `none`.
    ///
    /// ```yaml
    /// compression: snappy
    /// ```
    #[serde(default)]
    pub compression: ParquetCompression,

    /// Whether to replace a file already at `path`. When false and the file
    /// exists, the node fails and the file is left as it was. Defaults to true.
    ///
    /// ```yaml
    /// overwrite: false
    /// ```
    #[serde(default = "default_true")]
    pub overwrite: bool,
}

fn default_true() -> bool {
    true
}

impl OpParams for ParquetSinkParams {
    const NAME: &'static str = "sink.parquet";
    const DOC: &'static str = "Writes its one input to a Parquet file. The file is written \
        beside the target under a temporary name and renamed into place once complete, so \
        readers never see a half-written file and a failed run leaves any previous file \
        intact. Outputs one row with the `path` written and the number of `rows`.";
    const EFFECT: Effect = Effect::Sink;
    const WORKLOAD: Workload = Workload::Io;

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        let path = PathBuf::from(&self.path);
        if self.path.trim().is_empty() {
            return Err(ParamError::new(
                &["path"],
                "path is empty; name the file to write, e.g. `path: out/prices.parquet`",
            ));
        }
        if self.path.ends_with('/') || self.path.ends_with('\\') || path.file_name().is_none() {
            return Err(ParamError::new(
                &["path"],
                format!(
                    "path '{}' names a directory, not a file; add a file name, \
                     e.g. `path: out/prices.parquet`",
                    self.path
                ),
            ));
        }
        Ok(Arc::new(ParquetSink {
            target: normalise(&path),
            path,
            compression: self.compression,
            overwrite: self.overwrite,
        }))
    }
}

/// `path` without `.` components, so `./out/a.parquet` and `out/a.parquet`
/// are recognised as one target. `..` is kept: resolving it needs the file
/// system, and a sink must not touch the file system at plan time.
fn normalise(path: &Path) -> String {
    let clean: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    clean.to_string_lossy().into_owned()
}

/// The runtime `sink.parquet` operator.
#[derive(Debug, Clone)]
struct ParquetSink {
    /// The path as given, which is where the file is written.
    path: PathBuf,
    /// The normalised path, reported to the engine and in the output.
    target: String,
    compression: ParquetCompression,
    overwrite: bool,
}

#[async_trait]
impl Operator for ParquetSink {
    async fn execute(&self, inputs: Inputs) -> Result<Table, OpError> {
        let [input] = inputs.0.as_slice() else {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(OpError::Invalid(format!(
                "sink.parquet writes exactly one input, but this node has {} ({}); \
                 combine them first, e.g. with transform.sql",
                inputs.len(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        let table = input.table.clone();
        let sink = self.clone();
        let rows = tokio::task::spawn_blocking(move || sink.write(&table))
            .await
            .map_err(|e| OpError::Internal(format!("sink.parquet writer task failed: {e}")))??;
        tracing::info!(path = %self.target, rows, "Wrote Parquet file");
        summary(&self.target, rows)
    }

    fn sink_target(&self) -> Option<String> {
        Some(self.target.clone())
    }
}

/// One row describing what was written.
fn summary(path: &str, rows: u64) -> Result<Table, OpError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
    ]));
    let rows = i64::try_from(rows)
        .map_err(|_| OpError::Internal(format!("row count {rows} does not fit in an Int64")))?;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![path])),
            Arc::new(Int64Array::from(vec![rows])),
        ],
    )?;
    Ok(Table::from_batch(batch))
}

/// Tells temporary files of one process apart.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file that is removed when dropped, unless it was renamed
/// into place first, so that no error path leaves it behind.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the error that got us here is the one to report.
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl ParquetSink {
    /// Writes `table` to a temporary file beside the target, syncs it and
    /// renames it over the target. Returns the number of rows written.
    fn write(&self, table: &Table) -> Result<u64, OpError> {
        let path = &self.path;
        if !self.overwrite && exists(path)? {
            return Err(self.exists_error());
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::create_dir_all(dir).map_err(|e| {
            OpError::io(
                format!("sink.parquet: cannot create directory '{}'", dir.display()),
                e,
            )
        })?;

        // Hidden, and named after the target and this process, so a leftover
        // from a killed run is easy to attribute and never mistaken for data.
        let name = path
            .file_name()
            .ok_or_else(|| OpError::Internal("sink.parquet path has no file name".into()))?;
        let temp = TempFile {
            path: dir.join(format!(
                ".{}.tmp-{}-{}",
                name.to_string_lossy(),
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            )),
            keep: false,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp.path)
            .map_err(|e| {
                OpError::io(
                    format!(
                        "sink.parquet: cannot create temporary file '{}'",
                        temp.path.display()
                    ),
                    e,
                )
            })?;

        let rows = self.write_parquet(file, table)?;
        self.publish(temp)?;
        // Make the rename itself durable. Not every platform can open a
        // directory for syncing, and the data is already safe, so ignore failure.
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(rows)
    }

    /// Writes the table to `file` and syncs it to disk.
    fn write_parquet(&self, file: File, table: &Table) -> Result<u64, OpError> {
        let parquet_error = |e: ParquetError| {
            OpError::DataFusion(DataFusionError::from(e).context(format!(
                "sink.parquet: cannot write '{}'",
                self.path.display()
            )))
        };
        let props = WriterProperties::builder()
            .set_compression(self.compression.codec())
            .build();
        let mut writer = ArrowWriter::try_new(file, table.schema().clone(), Some(props))
            .map_err(parquet_error)?;
        for batch in table.batches() {
            writer.write(batch).map_err(parquet_error)?;
        }
        // `into_inner` writes the footer and hands the file back for syncing.
        let file = writer.into_inner().map_err(parquet_error)?;
        file.sync_all().map_err(|e| {
            OpError::io(
                format!("sink.parquet: cannot sync '{}'", self.path.display()),
                e,
            )
        })?;
        Ok(table.num_rows() as u64)
    }

    /// Moves the finished temporary file to the target path.
    fn publish(&self, mut temp: TempFile) -> Result<(), OpError> {
        let rename_error = |e: io::Error| {
            OpError::io(
                format!(
                    "sink.parquet: cannot move '{}' to '{}'",
                    temp.path.display(),
                    self.path.display()
                ),
                e,
            )
        };
        if self.overwrite {
            fs::rename(&temp.path, &self.path).map_err(rename_error)?;
            temp.keep = true;
            return Ok(());
        }
        // Refuse atomically if the target appeared while we were writing: a
        // hard link, unlike a rename, fails when the target exists. The
        // temporary name is then removed when `temp` drops.
        match fs::hard_link(&temp.path, &self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(self.exists_error()),
            // Some file systems have no hard links: fall back to checking
            // and renaming, which leaves a small window for a race.
            Err(_) if !exists(&self.path)? => {
                fs::rename(&temp.path, &self.path).map_err(rename_error)?;
                temp.keep = true;
                Ok(())
            }
            Err(_) => Err(self.exists_error()),
        }
    }

    fn exists_error(&self) -> OpError {
        OpError::Invalid(format!(
            "sink.parquet: '{}' already exists and `overwrite` is false; \
             remove the file or set `overwrite: true`",
            self.path.display()
        ))
    }
}

fn exists(path: &Path) -> Result<bool, OpError> {
    path.try_exists().map_err(|e| {
        OpError::io(
            format!(
                "sink.parquet: cannot check whether '{}' exists",
                path.display()
            ),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, ArrayRef, Date32Array, Float64Array, StructArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use datafusion::parquet::basic::Compression;
    use serde_json::json;

    use super::*;
    use crate::{Input, registry};

    fn build(params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError> {
        registry()
            .get(ParquetSinkParams::NAME)
            .unwrap()
            .build(params)
    }

    fn one_input(table: Table) -> Inputs {
        Inputs(vec![Input {
            name: "prices".into(),
            table: Arc::new(table),
        }])
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

    /// Names in `dir`, to check that nothing but the expected files is left.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
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

            let out = sink.execute(one_input(table.clone())).await.unwrap();

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
            .execute(one_input(prices()))
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
            .execute(one_input(Table::new(schema.clone(), vec![])))
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
            .execute(one_input(prices()))
            .await
            .unwrap();

        assert_eq!(read_back(&path).0.num_rows(), 3);
        assert_eq!(listing(dir.path()), ["prices.parquet"]);
    }

    #[tokio::test]
    async fn without_overwrite_an_existing_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.parquet");
        fs::write(&path, "old").unwrap();

        let err = build(json!({ "path": path, "overwrite": false }))
            .unwrap()
            .execute(one_input(prices()))
            .await
            .unwrap_err();

        let OpError::Invalid(message) = &err else {
            panic!("expected OpError::Invalid, got {err:?}");
        };
        assert!(message.contains("already exists"), "{message}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(listing(dir.path()), ["prices.parquet"]);
    }

    #[tokio::test]
    async fn without_overwrite_a_new_file_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.parquet");

        build(json!({ "path": path, "overwrite": false }))
            .unwrap()
            .execute(one_input(prices()))
            .await
            .unwrap();

        assert_eq!(read_back(&path).0.num_rows(), 3);
        assert_eq!(listing(dir.path()), ["prices.parquet"]);
    }

    #[tokio::test]
    async fn a_parent_that_is_a_file_fails_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("not-a-dir"), "x").unwrap();
        let path = dir.path().join("not-a-dir/prices.parquet");

        let err = build(json!({ "path": path }))
            .unwrap()
            .execute(one_input(prices()))
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
            .execute(one_input(Table::from_batch(batch)))
            .await
            .unwrap_err();

        assert!(err.to_string().contains("empty structs"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(listing(dir.path()), ["prices.parquet"]);
    }

    #[tokio::test]
    async fn exactly_one_input_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let sink = build(json!({ "path": dir.path().join("x.parquet") })).unwrap();

        let err = sink.execute(Inputs::default()).await.unwrap_err();
        assert!(err.to_string().contains("has 0 (none)"), "{err}");

        let two = Inputs(vec![
            one_input(prices()).0[0].clone(),
            Input {
                name: "other".into(),
                table: Arc::new(prices()),
            },
        ]);
        let err = sink.execute(two).await.unwrap_err();
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
        let err = build(json!({ "path": "x.parquet", "overwrit": false })).unwrap_err();
        assert!(err.message.contains("unknown field `overwrit`"), "{err}");
    }
}
