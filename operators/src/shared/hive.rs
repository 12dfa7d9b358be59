//! Hive-partitioned folders (`base/date=2026-01-05/symbol=FPT/part-0.parquet`):
//! splitting a table into partitions and writing them atomically, for the
//! sinks; typing partition values, for the readers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::Path;

use datafusion::arrow::array::{Array, StringArray, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;

use crate::shared::atomic::{self, Outcome, TempDir, WriteMode};
use crate::{OpError, Table};

/// A partitioned write: which sink, where, by which columns, in which mode.
pub(crate) struct PartitionedWrite<'a> {
    /// The sink's name, for messages.
    pub op: &'a str,
    /// The folder holding the partitions.
    pub base: &'a Path,
    /// `base` as reported in the output.
    pub target: &'a str,
    pub columns: &'a [String],
    pub mode: WriteMode,
    /// The data files' extension, without the dot: `parquet`, `csv`.
    pub extension: &'a str,
}

impl PartitionedWrite<'_> {
    /// Writes one file per partition with `write_one`, which fills the given
    /// file with the partition's rows (partition columns removed) and hands
    /// it back for syncing.
    ///
    /// Every partition's file is written and synced inside a hidden
    /// temporary folder first; only then are they renamed into place one by
    /// one. A crash before the renames leaves the folder as it was (plus a
    /// hidden temporary folder); a crash during them leaves some partitions
    /// new and the rest old, each made only of complete files. Under
    /// `overwrite`, a partition's older part files are removed just after
    /// its new `part-0` lands, so a crash in between can leave an older
    /// `part-N` beside it: run again to settle.
    pub(crate) fn write(
        &self,
        table: &Table,
        write_one: impl Fn(File, &Path, &RecordBatch) -> Result<File, OpError>,
    ) -> Result<Vec<Outcome>, OpError> {
        let op = self.op;
        let partitions = split(op, table, self.columns)?;
        atomic::create_dir_all(op, self.base)?;
        let temp = TempDir::inside(op, self.base)?;
        let first = format!("part-0.{}", self.extension);
        let report = |dir: &str, file: Option<&str>| match file {
            Some(file) => format!("{}/{dir}/{file}", self.target),
            None => format!("{}/{dir}", self.target),
        };
        let skipped = |dir: &str| Outcome {
            path: report(dir, None),
            rows: 0,
            skipped: true,
        };

        let mut outcomes = Vec::new();
        let mut staged = Vec::new();
        for (dir, batch) in partitions {
            if self.mode == WriteMode::SkipExisting
                && !data_files(op, &self.base.join(&dir))?.is_empty()
            {
                outcomes.push(skipped(&dir));
                continue;
            }
            let staged_path = temp.path().join(&dir).join(&first);
            atomic::create_dir_all(op, atomic::parent_dir(&staged_path))?;
            let file = File::create(&staged_path).map_err(|e| {
                OpError::io(
                    format!("{op}: cannot create '{}'", staged_path.display()),
                    e,
                )
            })?;
            let file = write_one(file, &staged_path, &batch)?;
            atomic::sync_file(op, &file, &staged_path)?;
            staged.push((dir, staged_path, batch.num_rows() as u64));
        }

        // Every file is complete: move them into place.
        for (dir, staged_path, rows) in staged {
            let final_dir = self.base.join(&dir);
            atomic::create_dir_all(op, &final_dir)?;
            let published = match self.mode {
                WriteMode::Overwrite => {
                    atomic::publish(op, &staged_path, &final_dir.join(&first), true)?;
                    self.remove_data_files_except(&final_dir, &first)?;
                    Some(first.clone())
                }
                WriteMode::Append => Some(self.publish_next_part(&staged_path, &final_dir)?),
                // Another writer may have filled the partition meanwhile.
                WriteMode::SkipExisting => {
                    atomic::publish(op, &staged_path, &final_dir.join(&first), false)?
                        .then(|| first.clone())
                }
            };
            atomic::sync_dir(&final_dir);
            outcomes.push(match published {
                Some(name) => Outcome {
                    path: report(&dir, Some(&name)),
                    rows,
                    skipped: false,
                },
                None => skipped(&dir),
            });
        }
        outcomes.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(outcomes)
    }

    /// Moves `staged` to the first free `part-N` in `dir`, N past every part
    /// file already there. Returns the name used.
    fn publish_next_part(&self, staged: &Path, dir: &Path) -> Result<String, OpError> {
        let suffix = format!(".{}", self.extension);
        let mut n = data_files(self.op, dir)?
            .iter()
            .filter_map(|name| name.strip_prefix("part-")?.strip_suffix(suffix.as_str()))
            .filter_map(|n| n.parse::<u64>().ok())
            .max()
            .map_or(0, |max| max + 1);
        loop {
            let name = format!("part-{n}{suffix}");
            // Without replacing: a concurrent writer that took the name
            // first keeps it, and we try the next.
            if atomic::publish(self.op, staged, &dir.join(&name), false)? {
                return Ok(name);
            }
            n += 1;
        }
    }

    /// Removes every data file in `dir` but `keep`: the older parts of a
    /// partition being overwritten.
    fn remove_data_files_except(&self, dir: &Path, keep: &str) -> Result<(), OpError> {
        for name in data_files(self.op, dir)? {
            if name != keep {
                let path = dir.join(&name);
                fs::remove_file(&path).map_err(|e| {
                    OpError::io(
                        format!("{}: cannot remove old part '{}'", self.op, path.display()),
                        e,
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// Splits the table by the values of `columns`: one `(folder, rows)` per
/// distinct combination, in sorted order, the rows without the partition
/// columns and in their input order.
fn split(
    op: &str,
    table: &Table,
    columns: &[String],
) -> Result<Vec<(String, RecordBatch)>, OpError> {
    let batch = table.concat()?;
    let schema = batch.schema();
    let mut keys = Vec::with_capacity(columns.len());
    for name in columns {
        let index = schema.index_of(name).map_err(|_| {
            let available: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            OpError::Invalid(format!(
                "{op}: partition_by column '{name}' is not in the input; its columns are: {}",
                available.join(", ")
            ))
        })?;
        let column = batch.column(index);
        if column.null_count() > 0 {
            return Err(OpError::Invalid(format!(
                "{op}: partition_by column '{name}' has {} null values, which cannot name a \
                 partition; filter or fill them first",
                column.null_count()
            )));
        }
        let text = cast(column, &DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| OpError::Internal("a cast to Utf8 gave no StringArray".into()))?
            .clone();
        keys.push(text);
    }
    let data_columns: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !columns.contains(schema.field(i).name()))
        .collect();
    if data_columns.is_empty() {
        return Err(OpError::Invalid(format!(
            "{op}: every column is a partition_by column, which leaves nothing to write in \
             the files"
        )));
    }
    let data = batch.project(&data_columns)?;

    let mut groups: BTreeMap<Vec<&str>, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let key = keys.iter().map(|k| k.value(row)).collect();
        let row = u32::try_from(row).map_err(|_| {
            OpError::Invalid(format!("{op}: more than 4 billion rows in one write"))
        })?;
        groups.entry(key).or_default().push(row);
    }
    groups
        .into_iter()
        .map(|(key, rows)| {
            let dir = columns
                .iter()
                .zip(key)
                .map(|(column, value)| format!("{}={}", escape(column), escape(value)))
                .collect::<Vec<_>>()
                .join("/");
            Ok((dir, take_record_batch(&data, &UInt32Array::from(rows))?))
        })
        .collect()
}

/// Percent-encodes what cannot stand in a folder name (or would read back
/// differently): the characters DataFusion encodes, and backslashes.
/// DataFusion's listing decodes them again.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() || matches!(c, ' ' | '%' | '/' | '\\' | '?' | '#') {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Names of the data files in `dir` (none if it does not exist): hidden
/// names, like our temporaries, and `_SUCCESS`-style markers are not data.
fn data_files(op: &str, dir: &Path) -> Result<Vec<String>, OpError> {
    let list_error = |e| OpError::io(format!("{op}: cannot list '{}'", dir.display()), e);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(list_error(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !name.starts_with('_') && entry.path().is_file() {
            names.push(name);
        }
    }
    Ok(names)
}

/// The type of a partition column read back from folder names: a date when
/// every value is one (`date=2026-01-05`), text otherwise. Numbers stay text
/// on purpose: codes like `000001` must keep their leading zeros.
pub(crate) fn infer_type<'a>(values: impl IntoIterator<Item = &'a str>) -> DataType {
    let is_date =
        |v: &str| v.len() == 10 && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok();
    let mut values = values.into_iter().peekable();
    if values.peek().is_some() && values.all(is_date) {
        DataType::Date32
    } else {
        DataType::Utf8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_folder_name_cannot_hold() {
        assert_eq!(escape("FPT"), "FPT");
        assert_eq!(escape("2026-01-05T09:15:00"), "2026-01-05T09:15:00");
        assert_eq!(escape("OTC/Pink 50%"), "OTC%2FPink%2050%25");
        assert_eq!(escape("a#b?c\\d"), "a%23b%3Fc%5Cd");
        assert_eq!(escape("é"), "é");
    }

    #[test]
    fn partition_values_are_dates_only_when_all_are() {
        assert_eq!(infer_type(["2026-01-05", "2026-01-06"]), DataType::Date32);
        assert_eq!(infer_type(["2026-01-05", "latest"]), DataType::Utf8);
        assert_eq!(infer_type(["000001", "600519"]), DataType::Utf8);
        assert_eq!(infer_type(["2026-1-5"]), DataType::Utf8);
        assert_eq!(infer_type([]), DataType::Utf8);
    }
}
