//! The run report on disk, kept current while the run goes: written when
//! the run starts (`"complete": false`), rewritten while nodes finish, and
//! a last time with `"complete": true`. A run that is killed leaves a
//! report of the nodes finished so far.
//!
//! Each write replaces the file whole (a temporary file, then a rename), so
//! a reader never sees half a report. Writes are throttled, never per node:
//! at most one every [`INTERVAL`], and, for reports so big that serializing
//! them takes a while, far enough apart that serializing takes at most 2%
//! of the scheduler's time. The first report is made and written off the
//! scheduler, so nodes start at once; the others are written off it. The
//! JSON is compact: a report of 100,000 nodes is tens of megabytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;

/// The shortest time between two writes while the run goes.
pub const INTERVAL: Duration = Duration::from_millis(500);

pub struct Journal {
    path: PathBuf,
    /// Something changed since the last write.
    dirty: bool,
    /// No write before this.
    next: Instant,
    writing: Option<JoinHandle<()>>,
    /// A write while the run went failed (and was logged).
    failed: Arc<AtomicBool>,
}

impl Journal {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            dirty: true,
            next: Instant::now(),
            writing: None,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Makes the first report with `make`, off the scheduler, and writes it.
    pub fn start(&mut self, make: impl FnOnce() -> Vec<u8> + Send + 'static) {
        self.dirty = false;
        self.next = Instant::now() + INTERVAL;
        let path = self.path.clone();
        let failed = self.failed.clone();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let bytes = make();
            if !bytes.is_empty() {
                write_or_warn(&path, &bytes, &failed);
            }
        }));
    }

    /// Something in the report changed.
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// Writes the report `snapshot` makes, if something changed, the last
    /// write is done and it is time.
    pub fn maybe_write<S: Serialize>(&mut self, snapshot: impl FnOnce() -> S) {
        let now = Instant::now();
        if !self.dirty || now < self.next || self.writing.as_ref().is_some_and(|w| !w.is_finished())
        {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&snapshot()) else {
            return;
        };
        self.dirty = false;
        self.next = Instant::now() + INTERVAL.max(now.elapsed() * 50);
        let path = self.path.clone();
        let failed = self.failed.clone();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            write_or_warn(&path, &bytes, &failed);
        }));
    }

    /// Writes the final report, after any write under way; returns why it
    /// could not be written, if it could not.
    pub async fn finish<S: Serialize>(mut self, report: &S) -> Result<(), String> {
        if let Some(writing) = self.writing.take() {
            let _ = writing.await;
        }
        let bytes = serde_json::to_vec(report)
            .map_err(|e| format!("cannot serialize the run report: {e}"))?;
        let path = self.path;
        tokio::task::spawn_blocking(move || write(&path, &bytes))
            .await
            .map_err(|e| format!("cannot write the run report: {e}"))?
    }
}

/// A write while the run goes: a failure is logged once, and the run goes on.
fn write_or_warn(path: &Path, bytes: &[u8], failed: &AtomicBool) {
    if let Err(e) = write(path, bytes)
        && !failed.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(error = %e, "Cannot update the run report while the run goes");
    }
}

/// Replaces the file at `path` with `bytes` whole: a reader (or a crash)
/// sees the old report or the new one, never a mix.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail =
        |e: std::io::Error| format!("cannot write the run report to {}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.json".into());
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    // A write cut short (a full disk) leaves no temporary file behind.
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            fail(e)
        })
}
