//! The cache folder: node outputs packed by trading day, one index, the
//! receipts of sink writes, and what made each node's last key.
//!
//! ```text
//! <dir>/index.sqlite                 key → pack, place, checksum, header (see `index`)
//! <dir>/packs/2026-01-05/<writer>.pack   a day's outputs from one process (see `pack`)
//! <dir>/packs/undated/<writer>.pack      outputs of nodes not split by day
//! ```
//!
//! Writes go through a [`Writer`] thread, off the run's critical path;
//! reads map sealed packs into memory. Any problem with the index or a
//! pack reads as a miss (the node runs again), with one warning, and is
//! never a failed run nor wrong data: every entry's checksum is checked
//! before its output is used.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quiver_operators::Table;
use quiver_operators::arrow::buffer::Buffer;
use serde::{Deserialize, Serialize};

use super::index::{Index, Row, Snapshot};
use super::key::Key;
use super::legacy;
use super::pack::{self, Mapped};
use super::writer::{Job, Shared, Writer, Written};

/// The day folder of outputs of nodes not split by day.
pub const UNDATED: &str = "undated";

/// The default bound on outputs waiting to be written: half the default
/// hold limit.
pub const DEFAULT_WRITE_BUDGET: usize = 256 << 20;

/// What an entry says about itself, readable without its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryHeader {
    pub key: String,
    pub pipeline: String,
    pub node: String,
    pub op: String,
    /// What consumers' keys are made from: the key itself for an output
    /// the key decides, a new value each time for a live source.
    pub token: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    pub rows: usize,
}

impl EntryHeader {
    /// When the output was stored.
    pub fn created(&self) -> std::time::SystemTime {
        created(self.created_ms)
    }

    pub fn age(&self) -> Duration {
        age(self.created_ms)
    }
}

/// The time `created_ms` (milliseconds since the Unix epoch) stands for.
pub fn created(created_ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(created_ms)
}

/// How long ago `created_ms` (milliseconds since the Unix epoch) was.
pub fn age(created_ms: u64) -> Duration {
    Duration::from_millis(now_ms().saturating_sub(created_ms))
}

/// What a forecast needs of a stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    /// As [`EntryHeader::token`].
    pub token: String,
    pub created_ms: u64,
}

/// An entry found in the index (or, from before packs, on its own).
#[derive(Debug, Clone)]
pub struct Found {
    pub header: EntryHeader,
    /// The pack (or the old entry file) that holds it.
    pub path: PathBuf,
    /// Where its bytes start in that file, and how many there are.
    pub offset: u64,
    pub bytes: u64,
    /// When it was last written or used.
    pub used: SystemTime,
    /// The day folder of its pack.
    pub day: Option<String>,
}

/// Why an entry could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum Unusable {
    Missing,
    /// Cut short, altered, or not an entry: the text says how.
    Corrupt(String),
}

/// One cache folder. Clones share the index connection, the writer and
/// the mapped packs.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    index: Mutex<Option<Index>>,
    writer: OnceLock<Writer>,
    budget: AtomicUsize,
    shared: Arc<Shared>,
    maps: Mutex<HashMap<PathBuf, Mapped>>,
    /// Entries loaded by this run, marked as used when it finishes.
    loaded: Mutex<Vec<Key>>,
    legacy: bool,
    legacy_manifests: Mutex<HashMap<String, Option<Manifest>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// Packs kept mapped at once.
const MAPS: usize = 64;

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let legacy = legacy::present(&dir);
        Self {
            inner: Arc::new(Inner {
                dir,
                index: Mutex::new(None),
                writer: OnceLock::new(),
                budget: AtomicUsize::new(DEFAULT_WRITE_BUDGET),
                shared: Arc::default(),
                maps: Mutex::default(),
                loaded: Mutex::default(),
                legacy,
                legacy_manifests: Mutex::default(),
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Bounds the outputs waiting to be written (before the first write).
    pub fn set_write_budget(&self, bytes: usize) {
        self.inner
            .budget
            .store(bytes.max(1 << 20), Ordering::Relaxed);
    }

    /// The bytes of outputs handed to the writer and not yet written.
    pub fn pending(&self) -> Arc<AtomicUsize> {
        self.inner.shared.pending.clone()
    }

    /// Whether a failed write turned the cache off for this run.
    pub fn disabled(&self) -> bool {
        self.inner.shared.disabled.load(Ordering::Relaxed)
    }

    /// Runs `f` on the index, opening it first if need be. An error turns
    /// the cache off with one warning and reads as `None`.
    pub(crate) fn with_index<T>(
        &self,
        f: impl FnOnce(&mut Index) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let mut slot = self.inner.index.lock().expect("index");
        if slot.is_none() {
            if self.disabled() {
                return None;
            }
            match Index::open(&self.inner.dir) {
                Ok(index) => *slot = Some(index),
                Err(e) => {
                    self.inner.shared.disable(&format!(
                        "the cache index in {} cannot be opened: {e}",
                        self.inner.dir.display()
                    ));
                    return None;
                }
            }
        }
        match f(slot.as_mut().expect("just opened")) {
            Ok(t) => Some(t),
            Err(e) => {
                self.inner.shared.disable(&format!(
                    "the cache index in {} cannot be used: {e}",
                    self.inner.dir.display()
                ));
                None
            }
        }
    }

    fn row(&self, key: &Key) -> Option<Row> {
        self.with_index(|index| index.lookup(key)).flatten()
    }

    /// The entry stored under `key`, as the index (or an entry from before
    /// packs) has it; its bytes are not read.
    pub fn find(&self, key: &Key) -> Result<Found, Unusable> {
        match self.row(key) {
            Some(row) => Ok(self.found(row)),
            None => self.unindexed(key),
        }
    }

    /// An entry the index does not list: from before packs, or missing.
    fn unindexed(&self, key: &Key) -> Result<Found, Unusable> {
        if self.inner.legacy {
            legacy::find(&self.inner.dir, key)
        } else {
            Err(Unusable::Missing)
        }
    }

    /// Finds many entries, as [`Store::find`] does, against the index as
    /// it stands now (what a forecast looks up).
    pub fn finder(&self) -> Finder<'_> {
        let snapshot = if self.disabled() {
            None
        } else {
            Index::snapshot(&self.inner.dir).ok()
        };
        Finder {
            store: self,
            snapshot,
        }
    }

    fn found(&self, row: Row) -> Found {
        let p = row.placed;
        Found {
            header: EntryHeader {
                token: p.token.unwrap_or_else(|| p.key.clone()),
                key: p.key,
                pipeline: p.pipeline,
                node: p.node,
                op: p.op,
                created_ms: p.created_ms,
                rows: p.rows as usize,
            },
            path: self.inner.dir.join(&row.pack),
            offset: p.offset,
            bytes: p.length,
            used: UNIX_EPOCH + Duration::from_millis(row.used_ms),
            day: Some(row.day),
        }
    }

    /// Reads the entry under `key` in full and checks its checksum.
    pub fn verify(&self, key: &Key) -> Result<(), Unusable> {
        self.load(key).map(|_| ())
    }

    /// The output stored under `key`, its checksum checked.
    pub fn load(&self, key: &Key) -> Result<Table, Unusable> {
        let Some(row) = self.row(key) else {
            return if self.inner.legacy {
                legacy::load(&self.inner.dir, key)
            } else {
                Err(Unusable::Missing)
            };
        };
        let (row, bytes) = match self.entry_bytes(&row) {
            Ok(bytes) => (row, bytes),
            // Its pack rewritten into another (gc, a merge) since the
            // lookup: once more, from the index.
            Err(first) => match self.row(key) {
                Some(again) if again.pack != row.pack => {
                    let bytes = self.entry_bytes(&again)?;
                    (again, bytes)
                }
                _ => return Err(first),
            },
        };
        let table = pack::decode(bytes, &row.placed.checksum).map_err(Unusable::Corrupt)?;
        self.inner.loaded.lock().expect("loaded").push(*key);
        Ok(table)
    }

    /// The bytes of an entry: compressed ones straight from the mapped
    /// pack (decompressing copies them anyway), small ones copied, so that
    /// no output holds a whole pack's map alive.
    fn entry_bytes(&self, row: &Row) -> Result<Buffer, Unusable> {
        let path = self.inner.dir.join(&row.pack);
        let map = {
            let mut maps = self.inner.maps.lock().expect("maps");
            match maps.get(&path) {
                Some(m) => m.clone(),
                None => {
                    let m = Mapped::open(&path).map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => {
                            Unusable::Corrupt(format!("its pack {} is gone", row.pack))
                        }
                        _ => Unusable::Corrupt(format!("its pack cannot be read: {e}")),
                    })?;
                    if maps.len() >= MAPS {
                        maps.clear();
                    }
                    maps.insert(path, m.clone());
                    m
                }
            }
        };
        let bytes = map
            .slice(row.placed.offset, row.placed.length)
            .ok_or_else(|| Unusable::Corrupt("its pack is cut short".into()))?;
        Ok(if row.placed.length < pack::COMPRESS_FROM as u64 {
            Buffer::from_vec(bytes.as_slice().to_vec())
        } else {
            bytes
        })
    }

    /// Hands an output to the writer (started on first use); waits only
    /// while the outputs not yet written fill the write budget.
    pub async fn submit(&self, job: Job) {
        if self.disabled() {
            return;
        }
        let writer = self.inner.writer.get_or_init(|| {
            self.remove_abandoned();
            Writer::start(
                self.inner.dir.clone(),
                writer_id(),
                self.inner.budget.load(Ordering::Relaxed),
                self.inner.shared.clone(),
            )
        });
        writer.submit(job).await;
    }

    /// The end of a run: seals the packs written, and marks the entries
    /// loaded as used. What was written, for the summary.
    pub fn finish(&self) -> Written {
        let written = self
            .inner
            .writer
            .get()
            .map(Writer::finish)
            .unwrap_or_default();
        let loaded = std::mem::take(&mut *self.inner.loaded.lock().expect("loaded"));
        if !loaded.is_empty() && !self.disabled() {
            self.with_index(|index| index.touch(&loaded, now_ms()));
        }
        written
    }

    /// Removes the packs that writers which died left unsealed.
    pub fn remove_abandoned(&self) -> usize {
        let mut removed = 0;
        let Ok(days) = std::fs::read_dir(self.inner.dir.join("packs")) else {
            return 0;
        };
        for day in days.flatten() {
            let Ok(files) = std::fs::read_dir(day.path()) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                if pack::is_temporary(&path) && pack::remove_abandoned(&path) {
                    removed += 1;
                }
            }
        }
        removed
    }

    pub fn receipt(&self, key: &Key) -> Option<Receipt> {
        let text = self.with_index(|index| index.receipt(key)).flatten();
        match text {
            Some(text) => serde_json::from_str(&text).ok(),
            None if self.inner.legacy => legacy::receipt(&self.inner.dir, key),
            None => None,
        }
    }

    /// Records what a sink wrote for `key`, and what made the key.
    pub fn put_receipt(&self, key: &Key, receipt: &Receipt, made: &[(String, String, String)]) {
        if self.disabled() {
            return;
        }
        let Ok(text) = serde_json::to_string(receipt) else {
            return;
        };
        self.with_index(|index| index.put_receipt(key, &text, made, now_ms()));
    }

    /// What made the key last recorded for `node` of `pipeline`.
    pub fn made(&self, pipeline: &str, node: &str) -> Option<Made> {
        if let Some(text) = self
            .with_index(|index| index.made(pipeline, node))
            .flatten()
        {
            return serde_json::from_str(&text).ok();
        }
        if !self.inner.legacy {
            return None;
        }
        let mut manifests = self.inner.legacy_manifests.lock().expect("manifests");
        manifests
            .entry(pipeline.to_string())
            .or_insert_with(|| legacy::manifest(&self.inner.dir, pipeline))
            .as_ref()
            .and_then(|m| m.nodes.get(node).cloned())
    }

    /// Records a finished run: the keys it used and the days it covered.
    pub fn record_run(&self, pipeline: &str, keys: &[Key], days: &[&str]) {
        if self.disabled() {
            return;
        }
        self.with_index(|index| index.record_run(pipeline, keys, days, now_ms()));
    }

    /// Every entry: the index's, and any from before packs.
    pub fn entries(&self) -> std::io::Result<Vec<Found>> {
        let rows = self
            .with_index(|index| index.entries())
            .ok_or_else(|| std::io::Error::other("the cache index cannot be read"))?;
        let mut out: Vec<Found> = rows.into_iter().map(|r| self.found(r)).collect();
        if self.inner.legacy {
            out.extend(legacy::entries(&self.inner.dir));
        }
        Ok(out)
    }
}

/// `<unix ms>-<pid>`, then `-<n>` for the process's later stores: a name
/// no other writer's pack takes, two stores of one process (a Ray
/// worker's tasks) included.
fn writer_id() -> String {
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    match STARTED.fetch_add(1, Ordering::Relaxed) {
        0 => format!("{}-{}", now_ms(), std::process::id()),
        n => format!("{}-{}-{n}", now_ms(), std::process::id()),
    }
}

/// What a sink wrote for one key: each file under its target, with its
/// BLAKE3 hash. The sink is up to date while the files are exactly these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub target: String,
    pub files: Vec<(String, String)>,
}

/// [`Store::find`] for many keys: one read of the index for all of them.
/// Where the index cannot be read so, each key is looked up as
/// [`Store::find`] does (and a problem is reported there).
pub struct Finder<'a> {
    store: &'a Store,
    snapshot: Option<Snapshot>,
}

impl Finder<'_> {
    /// The token and age of the entry stored under `key`, as
    /// [`Store::find`] finds it.
    pub fn find(&self, key: &Key) -> Result<Stamp, Unusable> {
        let stamp = |h: EntryHeader| Stamp {
            token: h.token,
            created_ms: h.created_ms,
        };
        let Some(snapshot) = &self.snapshot else {
            return self.store.find(key).map(|f| stamp(f.header));
        };
        match snapshot.stamp(key) {
            Ok(Some((token, created_ms))) => Ok(Stamp {
                token: token.unwrap_or_else(|| key.hex()),
                created_ms,
            }),
            Ok(None) => self.store.unindexed(key).map(|f| stamp(f.header)),
            Err(_) => self.store.find(key).map(|f| stamp(f.header)),
        }
    }
}

impl Receipt {
    /// The files under `target` (one file, or a folder) as they are now;
    /// with `day`, only those in a `…=day` folder (what the day of a sink
    /// partitioned by date writes).
    pub fn of(target: &str, day: Option<&str>) -> std::io::Result<Receipt> {
        Receipt::of_listed(target, day, &Receipt::listing(target)?)
    }

    /// The files under `target` (one file, or a folder), temporary files
    /// left out: what [`Receipt::of_listed`] picks from.
    pub fn listing(target: &str) -> std::io::Result<Vec<PathBuf>> {
        let root = PathBuf::from(target);
        let mut paths = if root.is_dir() {
            files_under(&root)?
        } else if root.is_file() {
            vec![root]
        } else {
            Vec::new()
        };
        paths.retain(|p| !is_temporary(p));
        Ok(paths)
    }

    /// As [`Receipt::of`], from a listing of `target` taken already (a
    /// forecast checks every day of a sink against one listing).
    pub fn of_listed(
        target: &str,
        day: Option<&str>,
        listing: &[PathBuf],
    ) -> std::io::Result<Receipt> {
        use std::io::Read;
        let folder = day.map(|day| format!("={day}"));
        let mut paths: Vec<&PathBuf> = listing
            .iter()
            .filter(|p| {
                folder.as_ref().is_none_or(|folder| {
                    p.components()
                        .any(|c| c.as_os_str().to_string_lossy().ends_with(folder.as_str()))
                })
            })
            .collect();
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let mut hasher = blake3::Hasher::new();
            let mut file = std::fs::File::open(path)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            files.push((
                path.display().to_string(),
                hasher.finalize().to_hex().to_string(),
            ));
        }
        Ok(Receipt {
            target: target.to_string(),
            files,
        })
    }
}

/// What a pipeline's runs computed, per node name (how caches before the
/// index kept it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub nodes: std::collections::BTreeMap<String, Made>,
}

/// What a node's key was made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Made {
    pub key: String,
    pub op: String,
    pub version: u32,
    pub params: serde_json::Value,
    /// The fingerprint's hash, for sources that read files.
    pub fingerprint: Option<String>,
    /// Per input name, the token its key used.
    pub inputs: Vec<(String, String)>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A sink's temporary file (see `operators::shared::atomic`).
fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
}

pub(crate) fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}
