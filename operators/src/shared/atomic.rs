//! What the file sinks share: writing files so that readers never see half
//! of one, the [`WriteMode`], and the summary table a sink outputs.
//!
//! Sinks write under a hidden temporary name beside the target, sync, and
//! rename into place.
//!
//! A rename within one directory (one file system) is atomic: a reader sees
//! the old file or the new one, never a mix. Temporaries are removed when
//! their guard drops, so no error path leaves one behind; a process killed
//! mid-write can leave a hidden `.NAME.tmp-PID-N` file (or `.quiver-tmp-PID-N`
//! folder), which is never mistaken for data (DataFusion skips it: the name
//! lacks the data extension and is not a `key=value` folder).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Input, Inputs, OpError, Table};

/// What a sink does about data already at its target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Replace what is there: the file, or, when partitioned, each partition
    /// this run writes (partitions it has no rows for are left alone). The
    /// default.
    #[default]
    Overwrite,
    /// Keep what is there and add to it: a new part file with a name of its
    /// own in each partition (Parquet, partitioned only), or the rows added
    /// to the end of the file (CSV).
    Append,
    /// Leave a file or partition that already exists as it is, write only
    /// the new ones, and report the ones left as `skipped`.
    SkipExisting,
}

impl WriteMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WriteMode::Overwrite => "overwrite",
            WriteMode::Append => "append",
            WriteMode::SkipExisting => "skip_existing",
        }
    }
}

/// The one input of a sink, or an error naming the inputs it has.
pub(crate) fn single_input<'a>(op: &str, inputs: &'a Inputs) -> Result<&'a Input, OpError> {
    match inputs.0.as_slice() {
        [input] => Ok(input),
        _ => {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
            Err(OpError::Invalid(format!(
                "{op} writes exactly one input, but this node has {} ({}); \
                 combine them first, e.g. with transform.sql",
                inputs.len(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )))
        }
    }
}

/// `path` without `.` components or a trailing separator, so `./out/a.csv`
/// and `out/a.csv` are recognised as one target. `..` is kept: resolving it
/// needs the file system, and a sink must not touch it at plan time.
pub(crate) fn normalise(path: &Path) -> String {
    let clean: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    clean.to_string_lossy().into_owned()
}

/// One file a sink wrote or left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub path: String,
    /// Rows written; 0 when skipped.
    pub rows: u64,
    pub skipped: bool,
}

/// A sink's output: one row per file with its `path`, the `rows` written and
/// its `status`, `written` or `skipped`.
pub(crate) fn summary(outcomes: &[Outcome]) -> Result<Table, OpError> {
    let schema = summary_schema();
    let rows = outcomes
        .iter()
        .map(|o| {
            i64::try_from(o.rows).map_err(|_| {
                OpError::Internal(format!("row count {} does not fit in an Int64", o.rows))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                outcomes.iter().map(|o| o.path.as_str()),
            )),
            Arc::new(Int64Array::from(rows)),
            Arc::new(StringArray::from_iter_values(
                outcomes
                    .iter()
                    .map(|o| if o.skipped { "skipped" } else { "written" }),
            )),
        ],
    )?;
    Ok(Table::from_batch(batch))
}

/// The schema of a sink's summary: one row per file written or skipped.
pub(crate) fn summary_schema() -> datafusion::arrow::datatypes::SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
    ]))
}

/// Tells temporary files of one process apart.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes what a killed writer left in `dir`: entries named `prefix` then
/// `PID-N` whose process is gone. Only this sink's own name pattern is
/// touched, and never a live process's temporary (another quiver may be
/// writing beside us). Best effort: what cannot be removed stays.
fn remove_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<u32>(), n.chars().all(|c| c.is_ascii_digit())) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        if removed.is_ok() {
            tracing::info!(path = %path.display(), pid, "Removed a temporary left by a killed run");
        }
    }
}

/// Whether process `pid` still runs. Where that cannot be known, it is
/// taken to run, so nothing is removed.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// The directory `path` is in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Creates `dir` and its missing parents.
pub(crate) fn create_dir_all(op: &str, dir: &Path) -> Result<(), OpError> {
    fs::create_dir_all(dir).map_err(|e| {
        OpError::io(
            format!("{op}: cannot create directory '{}'", dir.display()),
            e,
        )
    })
}

/// Makes renames into `dir` durable. Not every platform can open a directory
/// for syncing, and the data itself is already synced, so failure is ignored.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

pub(crate) fn exists(op: &str, path: &Path) -> Result<bool, OpError> {
    path.try_exists().map_err(|e| {
        OpError::io(
            format!("{op}: cannot check whether '{}' exists", path.display()),
            e,
        )
    })
}

/// Syncs a finished file's data to disk.
pub(crate) fn sync_file(op: &str, file: &File, path: &Path) -> Result<(), OpError> {
    file.sync_all()
        .map_err(|e| OpError::io(format!("{op}: cannot sync '{}'", path.display()), e))
}

/// Moves the finished file `from` to `to`. With `replace`, an existing `to`
/// is replaced; without, it is left alone and `Ok(false)` is returned, and
/// `from` stays where it was (for its guard to remove).
pub(crate) fn publish(op: &str, from: &Path, to: &Path, replace: bool) -> Result<bool, OpError> {
    let rename = || {
        fs::rename(from, to).map_err(|e| {
            OpError::io(
                format!(
                    "{op}: cannot move '{}' to '{}'",
                    from.display(),
                    to.display()
                ),
                e,
            )
        })
    };
    if replace {
        rename()?;
        return Ok(true);
    }
    // Refuse atomically if the target appeared while we were writing: a hard
    // link, unlike a rename, fails when the target exists.
    match fs::hard_link(from, to) {
        Ok(()) => {
            // Best effort: the data is in place under its real name.
            let _ = fs::remove_file(from);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // Some file systems have no hard links: fall back to checking and
        // renaming, which leaves a small window for a race.
        Err(_) if !exists(op, to)? => rename().map(|()| true),
        Err(_) => Ok(false),
    }
}

/// A temporary file beside its target, removed when dropped unless it was
/// published first.
pub(crate) struct TempFile {
    path: PathBuf,
    published: bool,
}

impl TempFile {
    /// Creates a new, empty temporary file in the directory of `target`
    /// (which must exist). Hidden, and named after the target and this
    /// process, so a leftover from a killed run is easy to attribute.
    pub(crate) fn beside(op: &str, target: &Path) -> Result<(Self, File), OpError> {
        let name = target.file_name().ok_or_else(|| {
            OpError::Internal(format!("{op}: '{}' has no file name", target.display()))
        })?;
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        remove_stale(parent_dir(target), &prefix);
        let path = parent_dir(target).join(format!("{prefix}{}", unique_suffix()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                OpError::io(
                    format!("{op}: cannot create temporary file '{}'", path.display()),
                    e,
                )
            })?;
        Ok((
            Self {
                path,
                published: false,
            },
            file,
        ))
    }

    /// Moves the file to `target`; see [`publish`].
    pub(crate) fn publish(
        mut self,
        op: &str,
        target: &Path,
        replace: bool,
    ) -> Result<bool, OpError> {
        let moved = publish(op, &self.path, target, replace)?;
        self.published = moved;
        if moved {
            sync_dir(parent_dir(target));
        }
        Ok(moved)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: the error that got us here is the one to report.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A hidden temporary folder inside `base`, removed with everything left in
/// it when dropped.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn inside(op: &str, base: &Path) -> Result<Self, OpError> {
        remove_stale(base, ".quiver-tmp-");
        let path = base.join(format!(".quiver-tmp-{}", unique_suffix()));
        fs::create_dir(&path).map_err(|e| {
            OpError::io(
                format!(
                    "{op}: cannot create temporary directory '{}'",
                    path.display()
                ),
                e,
            )
        })?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Writes `target` atomically: `write` fills a fresh temporary file beside
/// it and returns the file (to be synced) with its result. Missing parent
/// directories are created. Without `replace`, an existing target is left
/// alone and `Ok(None)` returned.
pub(crate) fn write_file<T>(
    op: &str,
    target: &Path,
    replace: bool,
    write: impl FnOnce(File) -> Result<(File, T), OpError>,
) -> Result<Option<T>, OpError> {
    if !replace && exists(op, target)? {
        return Ok(None);
    }
    create_dir_all(op, parent_dir(target))?;
    let (temp, file) = TempFile::beside(op, target)?;
    let (file, out) = write(file)?;
    sync_file(op, &file, target)?;
    drop(file);
    Ok(temp.publish(op, target, replace)?.then_some(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::shared::testing::listing;

    fn write_text(text: &'static str) -> impl FnOnce(File) -> Result<(File, ()), OpError> {
        move |mut file| {
            file.write_all(text.as_bytes()).unwrap();
            Ok((file, ()))
        }
    }

    #[test]
    fn replaces_or_keeps_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b.txt");

        assert!(
            write_file("t", &target, false, write_text("one"))
                .unwrap()
                .is_some()
        );
        assert!(
            write_file("t", &target, false, write_text("two"))
                .unwrap()
                .is_none()
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "one");
        assert!(
            write_file("t", &target, true, write_text("three"))
                .unwrap()
                .is_some()
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "three");
        assert_eq!(listing(&dir.path().join("a")), ["b.txt"]);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("b.txt");
        fs::write(&target, "old").unwrap();

        let err = write_file::<()>("t", &target, true, |_| Err(OpError::Invalid("boom".into())));

        assert!(err.is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(listing(dir.path()), ["b.txt"]);
    }

    #[test]
    fn a_write_removes_only_its_own_stale_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.parquet");
        // No process has a PID this high (Linux caps them at 2^22).
        let dead = dir.path().join(".x.parquet.tmp-4000000000-3");
        let live = dir
            .path()
            .join(format!(".x.parquet.tmp-{}-77", std::process::id()));
        let other = dir.path().join(".y.parquet.tmp-4000000000-3");
        let stray = dir.path().join(".x.parquet.tmp-notes");
        for f in [&dead, &live, &other, &stray] {
            fs::write(f, b"partial").unwrap();
        }
        let dead_dir = dir.path().join(".quiver-tmp-4000000000-1");
        fs::create_dir(&dead_dir).unwrap();
        fs::write(dead_dir.join("part-0.parquet"), b"partial").unwrap();

        write_file("t", &target, true, write_text("new")).unwrap();
        let expected_left = if cfg!(target_os = "linux") {
            vec![".quiver-tmp-4000000000-1", ".x.parquet.tmp-notes"]
        } else {
            vec![
                ".quiver-tmp-4000000000-1",
                ".x.parquet.tmp-4000000000-3",
                ".x.parquet.tmp-notes",
            ]
        };
        let mut left = listing(dir.path());
        left.retain(|n| n.starts_with('.') && !n.contains("77") && !n.starts_with(".y."));
        assert_eq!(left, expected_left);
        assert!(
            live.exists() && other.exists(),
            "others' files are left alone"
        );

        let _temp = TempDir::inside("t", dir.path()).unwrap();
        assert_eq!(dead_dir.exists(), !cfg!(target_os = "linux"));
    }

    #[test]
    fn a_temp_dir_goes_with_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let temp = TempDir::inside("t", dir.path()).unwrap();
        fs::create_dir_all(temp.path().join("x=1")).unwrap();
        fs::write(temp.path().join("x=1/part-0.parquet"), "data").unwrap();
        drop(temp);
        assert!(listing(dir.path()).is_empty());
    }
}
