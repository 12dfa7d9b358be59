//! What the file sinks (`sink.csv`, `sink.parquet`) have in common: the
//! parameters saying where and how to write ([`FileSinkParams`]), their
//! checks, and the runtime operator ([`FileSink`]) that writes its input to
//! one file or to a hive-partitioned folder, atomically. A sink adds only
//! its format: a [`SinkFormat`] that encodes batches into a file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::shared::atomic::{self, Outcome, WriteMode};
use crate::shared::hive::PartitionedWrite;
use crate::{ExecContext, Inputs, OpError, Operator, ParamError, Table};

/// Where to write and what to do about data already there: the parameters
/// the file sinks share, flattened into each sink's own.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct FileSinkParams {
    /// Where to write: the file, or with `partition_by` the folder holding
    /// the partitions. `sink.csv` gzip-compresses a file whose name ends in
    /// `.gz`. Missing parent directories are created. Relative paths are
    /// resolved against the directory quiver is run from.
    ///
    /// ```yaml
    /// path: out/daily-returns.parquet   # sink.csv: out/daily-returns.csv
    /// ```
    pub path: String,

    /// Columns to partition by, hive-style: the rows of each distinct value
    /// combination go to `path/date=…/symbol=…/part-0.parquet` (`.csv` for
    /// `sink.csv`), and the partition columns are left out of the files
    /// (`fetch.parquet` and `fetch.csv` restore them from the folder names).
    /// Values are written as text (dates as `2026-01-05`), with `/`, `%`,
    /// spaces and the like percent-encoded; a partition column may not hold
    /// nulls.
    ///
    /// ```yaml
    /// partition_by: [date, symbol]
    /// ```
    #[serde(default)]
    pub partition_by: Option<Vec<String>>,

    /// What to do about data already there: `overwrite` (the default)
    /// replaces the file, or each partition this run has rows for;
    /// `append` adds a new part file to each partition, and `sink.csv` also
    /// adds rows to the end of one file (its header must name the same
    /// columns), while `sink.parquet` appends only with `partition_by`, as
    /// a Parquet file cannot grow; `skip_existing` leaves an existing file
    /// or partition alone and reports it as `skipped`.
    ///
    /// ```yaml
    /// mode: skip_existing
    /// ```
    #[serde(default)]
    pub mode: WriteMode,
}

/// Where a file sink writes, checked.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    /// The path as given, which is where the file is written.
    pub path: PathBuf,
    /// The normalised path, reported to the engine and in the output.
    pub target: String,
    pub mode: WriteMode,
    /// Empty for one file.
    pub partition_by: Vec<String>,
}

impl Destination {
    /// Checks what the types alone cannot, reporting the first problem.
    /// `extension` names the format's files in the examples the messages
    /// give.
    fn check(params: FileSinkParams, extension: &str) -> Result<Self, ParamError> {
        let path = PathBuf::from(&params.path);
        if params.path.trim().is_empty() {
            return Err(ParamError::new(
                &["path"],
                format!(
                    "path is empty; name the file to write, e.g. `path: out/prices.{extension}`"
                ),
            ));
        }
        let partition_by = match params.partition_by {
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
        if partition_by.is_empty()
            && (params.path.ends_with('/')
                || params.path.ends_with('\\')
                || path.file_name().is_none())
        {
            return Err(ParamError::new(
                &["path"],
                format!(
                    "path '{}' names a directory, not a file; add a file name, e.g. \
                     `path: out/prices.{extension}`, or set `partition_by` to write a \
                     partitioned folder",
                    params.path
                ),
            ));
        }
        Ok(Self {
            target: atomic::normalise(&path),
            path,
            mode: params.mode,
            partition_by,
        })
    }

    /// One file rather than a partitioned folder.
    pub(crate) fn is_one_file(&self) -> bool {
        self.partition_by.is_empty()
    }

    /// Writes the one file atomically: `fill` writes `table` into a fresh
    /// temporary file beside it and hands the file back for syncing.
    /// Returns the rows written, or `None` when `skip_existing` found the
    /// file there.
    pub(crate) fn write_file(
        &self,
        op: &str,
        table: &Table,
        fill: impl FnOnce(File) -> Result<File, OpError>,
    ) -> Result<Option<u64>, OpError> {
        // Appending to one file rewrites it whole (the format copies the
        // old rows in first), so it replaces the file as `overwrite` does.
        let replace = self.mode != WriteMode::SkipExisting;
        atomic::write_file(op, &self.path, replace, |file| {
            Ok((fill(file)?, table.num_rows() as u64))
        })
    }
}

/// The format a [`FileSink`] writes: how batches become a file.
pub(crate) trait SinkFormat: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// The operator's name, for messages: `sink.csv`.
    const OP: &'static str;
    /// The data files' extension, without the dot: `csv`.
    const EXTENSION: &'static str;
    /// The format's name in the log: `CSV`.
    const LABEL: &'static str;

    /// Writes `table` (maybe without rows) into `file` and hands it back
    /// for syncing. `path` is where the file is being written, for messages.
    fn encode(&self, file: File, path: &Path, table: &Table) -> Result<File, OpError>;

    /// Writes `table` to the one file at `dest`: by default, encodes it
    /// into a new file that replaces the old one (unless `skip_existing`).
    /// A format that can add to an existing file does so here.
    fn write_one_file(&self, dest: &Destination, table: &Table) -> Result<Option<u64>, OpError> {
        dest.write_file(Self::OP, table, |file| self.encode(file, &dest.path, table))
    }
}

/// The runtime operator of a file sink writing format `F`.
#[derive(Debug, Clone)]
pub(crate) struct FileSink<F> {
    dest: Destination,
    format: F,
}

impl<F: SinkFormat> FileSink<F> {
    /// Checks the shared parameters, then builds the format from the
    /// checked destination with `format`, which checks what is particular
    /// to it.
    pub(crate) fn build(
        params: FileSinkParams,
        format: impl FnOnce(&Destination) -> Result<F, ParamError>,
    ) -> Result<Arc<dyn Operator>, ParamError> {
        let dest = Destination::check(params, F::EXTENSION)?;
        let format = format(&dest)?;
        Ok(Arc::new(Self { dest, format }))
    }

    fn write(&self, table: &Table) -> Result<Vec<Outcome>, OpError> {
        if self.dest.is_one_file() {
            let rows = self.format.write_one_file(&self.dest, table)?;
            return Ok(vec![Outcome {
                path: self.dest.target.clone(),
                rows: rows.unwrap_or(0),
                skipped: rows.is_none(),
            }]);
        }
        PartitionedWrite {
            op: F::OP,
            base: &self.dest.path,
            target: &self.dest.target,
            columns: &self.dest.partition_by,
            mode: self.dest.mode,
            extension: F::EXTENSION,
        }
        .write(table, |file, path, batch| {
            self.format
                .encode(file, path, &Table::from_batch(batch.clone()))
        })
    }
}

#[async_trait]
impl<F: SinkFormat> Operator for FileSink<F> {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let table = atomic::single_input(F::OP, &inputs)?.table.clone();
        let sink = self.clone();
        // Encoding is CPU work, inside the budget. A started write is never
        // cancelled: the file appears whole or not at all.
        let outcomes = ctx.run_cpu(1, move |_, _| sink.write(&table)).await?;
        let written = outcomes.iter().filter(|o| !o.skipped).count();
        tracing::info!(
            path = %self.dest.target,
            mode = self.dest.mode.as_str(),
            files = written,
            skipped = outcomes.len() - written,
            rows = outcomes.iter().map(|o| o.rows).sum::<u64>(),
            "Wrote {}",
            F::LABEL
        );
        atomic::summary(&outcomes)
    }

    fn sink_target(&self) -> Option<String> {
        Some(self.dest.target.clone())
    }

    fn output_schema(&self) -> Option<SchemaRef> {
        Some(atomic::summary_schema())
    }
}
