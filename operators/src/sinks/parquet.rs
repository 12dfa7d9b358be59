//! `sink.parquet`: writes its input to one Parquet file, or to a
//! hive-partitioned folder of them, atomically.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::atomic::WriteMode;
use crate::shared::file_sink::{FileSink, FileSinkParams, SinkFormat};
use crate::{Arity, Effect, OpError, Operator, ParamError, Table, Workload};

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

/// Parameters of `sink.parquet`: where and how to write (shared with
/// `sink.csv`) and how to compress.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct ParquetSinkParams {
    #[serde(flatten)]
    pub file: FileSinkParams,

    /// How to compress the data: `zstd` (the default), `snappy` or `none`.
    ///
    /// ```yaml
    /// compression: snappy
    /// ```
    #[serde(default)]
    pub compression: ParquetCompression,
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
        FileSink::build(self.file, |dest| {
            if dest.is_one_file() && dest.mode == WriteMode::Append {
                return Err(ParamError::new(
                    &["mode"],
                    "a Parquet file cannot be appended to; use `mode: append` with \
                     `partition_by`, which adds a new part file to each partition",
                ));
            }
            Ok(Parquet {
                compression: self.compression,
            })
        })
    }
}

/// How `sink.parquet` encodes its files.
#[derive(Debug, Clone)]
struct Parquet {
    compression: ParquetCompression,
}

impl SinkFormat for Parquet {
    const OP: &'static str = NAME;
    const EXTENSION: &'static str = "parquet";
    const LABEL: &'static str = "Parquet";

    fn encode(&self, file: File, path: &Path, table: &Table) -> Result<File, OpError> {
        let parquet_error = |e: ParquetError| {
            OpError::DataFusion(
                DataFusionError::from(e)
                    .context(format!("sink.parquet: cannot write '{}'", path.display())),
            )
        };
        let props = WriterProperties::builder()
            .set_compression(self.compression.codec())
            .build();
        let mut writer = ArrowWriter::try_new(file, table.schema().clone(), Some(props))
            .map_err(parquet_error)?;
        for batch in table.batches() {
            writer.write(batch).map_err(parquet_error)?;
        }
        // `into_inner` writes the footer and hands the file back.
        writer.into_inner().map_err(parquet_error)
    }
}

// The tests live in `parquet/tests.rs` to keep this file readable.
#[cfg(test)]
mod tests;
