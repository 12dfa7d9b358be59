//! `sink.parquet`: writes its input to one Parquet file, or to a
//! hive-partitioned folder of them, atomically.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::atomic::{self, Outcome, WriteMode};
use crate::shared::hive::PartitionedWrite;
use crate::{Arity, Effect, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

const NAME: &str = "sink.parquet";

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
    /// Where to write: the Parquet file, or with `partition_by` the folder
    /// holding the partitions. Missing parent directories are created.
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

    /// Columns to partition by, hive-style: the rows of each distinct value
    /// combination go to `path/date=…/symbol=…/part-0.parquet`, and the
    /// partition columns are left out of the files (readers such as
    /// `fetch.parquet` restore them from the folder names). Values are
    /// written as text (dates as `2026-01-05`), with `/`, `%`, spaces and
    /// the like percent-encoded; a partition column may not hold nulls.
    ///
    /// ```yaml
    /// partition_by: [date, symbol]
    /// ```
    #[serde(default)]
    pub partition_by: Option<Vec<String>>,

    /// What to do about data already there: `overwrite` (the default)
    /// replaces the file, or each partition this run has rows for;
    /// `append` adds a new part file to each partition (needs
    /// `partition_by`: a Parquet file cannot grow); `skip_existing` leaves
    /// an existing file or partition alone and reports it as `skipped`.
    ///
    /// ```yaml
    /// mode: skip_existing
    /// ```
    #[serde(default)]
    pub mode: WriteMode,
}

impl OpParams for ParquetSinkParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str = "Writes its one input to a Parquet file, or with partition_by to a \
        hive-partitioned folder (path/date=…/symbol=…/part-0.parquet). Files are written under \
        temporary names and renamed into place once complete, so readers never see a \
        half-written file and a failed run leaves earlier files intact; a partitioned write \
        finishes every file before moving any into place. mode: overwrite | append | \
        skip_existing. Outputs one row per file with its `path`, the `rows` written and its \
        `status` (written or skipped).";
    const EFFECT: Effect = Effect::Sink;
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::Exactly(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        let path = PathBuf::from(&self.path);
        if self.path.trim().is_empty() {
            return Err(ParamError::new(
                &["path"],
                "path is empty; name the file to write, e.g. `path: out/prices.parquet`",
            ));
        }
        let partition_by = match self.partition_by {
            None => Vec::new(),
            Some(columns) => {
                if columns.is_empty() {
                    return Err(ParamError::new(
                        &["partition_by"],
                        "partition_by is an empty list; omit it to write one file",
                    ));
                }
                if let Some(i) = (1..columns.len()).find(|&i| columns[..i].contains(&columns[i])) {
                    return Err(ParamError::new(
                        &["partition_by", &i.to_string()],
                        format!("column '{}' is listed twice", columns[i]),
                    ));
                }
                columns
            }
        };
        if partition_by.is_empty() {
            if self.path.ends_with('/') || self.path.ends_with('\\') || path.file_name().is_none() {
                return Err(ParamError::new(
                    &["path"],
                    format!(
                        "path '{}' names a directory, not a file; add a file name, \
                         e.g. `path: out/prices.parquet`, or set `partition_by` to write \
                         a partitioned folder",
                        self.path
                    ),
                ));
            }
            if self.mode == WriteMode::Append {
                return Err(ParamError::new(
                    &["mode"],
                    "a Parquet file cannot be appended to; use `mode: append` with \
                     `partition_by`, which adds a new part file to each partition",
                ));
            }
        }
        Ok(Arc::new(ParquetSink {
            target: atomic::normalise(&path),
            path,
            compression: self.compression,
            partition_by,
            mode: self.mode,
        }))
    }
}

/// The runtime `sink.parquet` operator.
#[derive(Debug, Clone)]
struct ParquetSink {
    /// The path as given, which is where the file is written.
    path: PathBuf,
    /// The normalised path, reported to the engine and in the output.
    target: String,
    compression: ParquetCompression,
    /// Empty for one file.
    partition_by: Vec<String>,
    mode: WriteMode,
}

#[async_trait]
impl Operator for ParquetSink {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let table = atomic::single_input(NAME, &inputs)?.table.clone();
        let sink = self.clone();
        // Encoding is CPU work, inside the budget. A started write is never
        // cancelled: the file appears whole or not at all.
        let outcomes = ctx.run_cpu(1, move |_, _| sink.write(&table)).await?;
        let written = outcomes.iter().filter(|o| !o.skipped).count();
        tracing::info!(
            path = %self.target,
            mode = self.mode.as_str(),
            files = written,
            skipped = outcomes.len() - written,
            rows = outcomes.iter().map(|o| o.rows).sum::<u64>(),
            "Wrote Parquet"
        );
        atomic::summary(&outcomes)
    }

    fn sink_target(&self) -> Option<String> {
        Some(self.target.clone())
    }
}

impl ParquetSink {
    fn write(&self, table: &Table) -> Result<Vec<Outcome>, OpError> {
        if self.partition_by.is_empty() {
            self.write_file(table)
        } else {
            PartitionedWrite {
                op: NAME,
                base: &self.path,
                target: &self.target,
                columns: &self.partition_by,
                mode: self.mode,
                extension: "parquet",
            }
            .write(table, |file, path, batch| {
                self.write_parquet(file, path, &batch.schema(), std::slice::from_ref(batch))
            })
        }
    }

    /// One file: written beside the target, synced and renamed over it.
    fn write_file(&self, table: &Table) -> Result<Vec<Outcome>, OpError> {
        // `build` rejects append without partitions.
        let replace = self.mode == WriteMode::Overwrite;
        let rows = atomic::write_file(NAME, &self.path, replace, |file| {
            let file = self.write_parquet(file, &self.path, table.schema(), table.batches())?;
            Ok((file, table.num_rows() as u64))
        })?;
        Ok(vec![Outcome {
            path: self.target.clone(),
            rows: rows.unwrap_or(0),
            skipped: rows.is_none(),
        }])
    }

    /// Writes `batches` to `file` as Parquet and returns the file for syncing.
    fn write_parquet(
        &self,
        file: File,
        path: &Path,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<File, OpError> {
        let parquet_error = |e: ParquetError| {
            OpError::DataFusion(
                DataFusionError::from(e)
                    .context(format!("sink.parquet: cannot write '{}'", path.display())),
            )
        };
        let props = WriterProperties::builder()
            .set_compression(self.compression.codec())
            .build();
        let mut writer =
            ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(parquet_error)?;
        for batch in batches {
            writer.write(batch).map_err(parquet_error)?;
        }
        // `into_inner` writes the footer and hands the file back.
        writer.into_inner().map_err(parquet_error)
    }
}

// The tests live in `sink_parquet/tests.rs` to keep this file readable.
#[cfg(test)]
mod tests;
