//! The cache folder: node outputs stored under their keys, the receipts of
//! sink writes, and what each pipeline's last run computed.
//!
//! ```text
//! <dir>/entries/ab/ab12…ef.qc   one node output (see `Entry`)
//! <dir>/sinks/cd34…01.json      what a sink wrote for a key
//! <dir>/pipelines/NAME.json     per node: the key and what made it
//! ```
//!
//! An entry is `QVRCACHE`, a format number, a JSON header, the output as an
//! Arrow IPC stream, and a BLAKE3 hash of header and payload. Every file is
//! written to a temporary name and renamed into place, so a reader (another
//! quiver process included) sees a whole file or none; a truncated or
//! altered entry fails its size or hash check and is never used.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quiver_operators::Table;
use quiver_operators::arrow::ipc::reader::StreamReader;
use quiver_operators::arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use super::key::Key;

const MAGIC: &[u8; 8] = b"QVRCACHE";
const FORMAT: u32 = 1;
/// Magic, format, header length.
const PREFIX: usize = 8 + 4 + 4;
const HASH: usize = 32;

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
    pub fn age(&self) -> Duration {
        let now = now_ms();
        Duration::from_millis(now.saturating_sub(self.created_ms))
    }
}

/// An entry found on disk, checked for its size but not its hash.
#[derive(Debug, Clone)]
pub struct Found {
    pub header: EntryHeader,
    pub path: PathBuf,
    pub bytes: u64,
    /// When it was last written or used.
    pub used: SystemTime,
}

/// Why an entry could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum Unusable {
    Missing,
    /// Cut short, altered, or not an entry: the text says how.
    Corrupt(String),
}

/// One cache folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &Key) -> PathBuf {
        let hex = key.hex();
        self.dir
            .join("entries")
            .join(&hex[..2])
            .join(format!("{hex}.qc"))
    }

    fn receipt_path(&self, key: &Key) -> PathBuf {
        self.dir.join("sinks").join(format!("{}.json", key.hex()))
    }

    fn manifest_path(&self, pipeline: &str) -> PathBuf {
        let safe: String = pipeline
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join("pipelines").join(format!("{safe}.json"))
    }

    /// The entry stored under `key`: its header, after checking that the
    /// file has the length the header promises.
    pub fn find(&self, key: &Key) -> Result<Found, Unusable> {
        let path = self.entry_path(key);
        let found = read_header(&path)?;
        if found.header.key != key.hex() {
            return Err(Unusable::Corrupt(format!(
                "it holds the key {}",
                found.header.key
            )));
        }
        Ok(found)
    }

    /// Reads the entry under `key` in full and checks its hash.
    pub fn verify(&self, key: &Key) -> Result<(), Unusable> {
        self.checked_bytes(key).map(|_| ())
    }

    /// The output stored under `key`, its hash checked.
    pub fn load(&self, key: &Key) -> Result<Table, Unusable> {
        let bytes = self.checked_bytes(key)?;
        let (_, payload) = split(&bytes)?;
        let reader = StreamReader::try_new(payload, None)
            .map_err(|e| Unusable::Corrupt(format!("its Arrow data cannot be read: {e}")))?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Unusable::Corrupt(format!("its Arrow data cannot be read: {e}")))?;
        touch(&self.entry_path(key));
        Ok(Table::new(schema, batches))
    }

    /// The bytes of the entry under `key`, its lengths and hash checked.
    fn checked_bytes(&self, key: &Key) -> Result<Vec<u8>, Unusable> {
        let path = self.entry_path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Corrupt(format!("cannot be read: {e}"))),
        };
        split(&bytes)?;
        let body = &bytes[PREFIX..bytes.len() - HASH];
        if blake3::hash(body).as_bytes() != &bytes[bytes.len() - HASH..] {
            return Err(Unusable::Corrupt("its checksum does not match".into()));
        }
        Ok(bytes)
    }

    /// Stores `table` under `header.key`, replacing what was there.
    pub fn put(&self, header: &EntryHeader, table: &Table) -> std::io::Result<u64> {
        let mut payload = Vec::new();
        {
            let mut writer = StreamWriter::try_new(&mut payload, table.schema())
                .map_err(std::io::Error::other)?;
            for batch in table.batches() {
                writer.write(batch).map_err(std::io::Error::other)?;
            }
            writer.finish().map_err(std::io::Error::other)?;
        }
        let head = serde_json::to_vec(header)?;
        let mut bytes = Vec::with_capacity(PREFIX + head.len() + 8 + payload.len() + HASH);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend_from_slice(&(head.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&head);
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let hash = blake3::hash(&bytes[PREFIX..]);
        bytes.extend_from_slice(hash.as_bytes());
        let key = Key::from_hex(&header.key).ok_or_else(|| std::io::Error::other("bad key"))?;
        write_atomic(&self.entry_path(&key), &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Every entry in the folder, unreadable ones left out.
    pub fn entries(&self) -> std::io::Result<Vec<Found>> {
        let mut out = Vec::new();
        let root = self.dir.join("entries");
        let shards = match std::fs::read_dir(&root) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for shard in shards {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&shard)? {
                let path = file?.path();
                if path.extension().is_some_and(|e| e == "qc")
                    && let Ok(found) = read_header(&path)
                {
                    out.push(found);
                }
            }
        }
        Ok(out)
    }

    /// Removes every entry last used more than `age` ago (and stray
    /// temporary files as old), returning how many files and bytes went.
    pub fn gc(&self, age: Duration) -> std::io::Result<(usize, u64)> {
        let cutoff = SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH);
        let mut removed = (0, 0);
        for path in files_under(&self.dir)? {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            let in_scope = path.starts_with(self.dir.join("entries"))
                || path.starts_with(self.dir.join("sinks"))
                || is_temporary(&path);
            if in_scope
                && meta.modified().is_ok_and(|m| m < cutoff)
                && std::fs::remove_file(&path).is_ok()
            {
                removed.0 += 1;
                removed.1 += meta.len();
            }
        }
        Ok(removed)
    }

    /// Removes the whole cache folder's contents.
    pub fn clear(&self) -> std::io::Result<(usize, u64)> {
        let mut removed = (0, 0);
        for path in files_under(&self.dir)? {
            if let Ok(meta) = std::fs::metadata(&path)
                && std::fs::remove_file(&path).is_ok()
            {
                removed.0 += 1;
                removed.1 += meta.len();
            }
        }
        for sub in ["entries", "sinks", "pipelines"] {
            let _ = remove_empty_dirs(&self.dir.join(sub));
        }
        Ok(removed)
    }

    pub fn receipt(&self, key: &Key) -> Option<Receipt> {
        let text = std::fs::read(self.receipt_path(key)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn put_receipt(&self, key: &Key, receipt: &Receipt) -> std::io::Result<()> {
        write_atomic(&self.receipt_path(key), &serde_json::to_vec(receipt)?)
    }

    pub fn manifest(&self, pipeline: &str) -> Manifest {
        std::fs::read(self.manifest_path(pipeline))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn put_manifest(&self, pipeline: &str, manifest: &Manifest) -> std::io::Result<()> {
        write_atomic(
            &self.manifest_path(pipeline),
            &serde_json::to_vec(manifest)?,
        )
    }
}

/// What a sink wrote for one key: each file under its target, with its
/// BLAKE3 hash. The sink is up to date while the files are exactly these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    pub target: String,
    pub files: Vec<(String, String)>,
}

impl Receipt {
    /// The files under `target` (one file, or a folder) as they are now;
    /// with `day`, only those in a `…=day` folder (what the day of a sink
    /// partitioned by date writes).
    pub fn of(target: &str, day: Option<&str>) -> std::io::Result<Receipt> {
        let root = PathBuf::from(target);
        let mut paths = if root.is_dir() {
            files_under(&root)?
        } else if root.is_file() {
            vec![root]
        } else {
            Vec::new()
        };
        paths.retain(|p| !is_temporary(p));
        if let Some(day) = day {
            let folder = format!("={day}");
            paths.retain(|p| {
                p.components()
                    .any(|c| c.as_os_str().to_string_lossy().ends_with(&folder))
            });
        }
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let mut hasher = blake3::Hasher::new();
            let mut file = File::open(&path)?;
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

/// What a pipeline's last runs computed, per node name: enough to say why a
/// node is stale.
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

fn read_header(path: &Path) -> Result<Found, Unusable> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Corrupt(format!("cannot be read: {e}"))),
    };
    let meta = file
        .metadata()
        .map_err(|e| Unusable::Corrupt(format!("cannot be read: {e}")))?;
    let mut prefix = [0u8; PREFIX];
    file.read_exact(&mut prefix)
        .map_err(|_| Unusable::Corrupt("it is cut short".into()))?;
    if &prefix[..8] != MAGIC {
        return Err(Unusable::Corrupt("it is not a quiver cache entry".into()));
    }
    let format = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(Unusable::Corrupt(format!(
            "it is in format {format}, this quiver reads {FORMAT}"
        )));
    }
    let head_len = u32::from_le_bytes(prefix[12..16].try_into().expect("4 bytes")) as u64;
    if head_len > meta.len() {
        return Err(Unusable::Corrupt("it is cut short".into()));
    }
    let mut head = vec![0u8; head_len as usize + 8];
    file.read_exact(&mut head)
        .map_err(|_| Unusable::Corrupt("it is cut short".into()))?;
    let header: EntryHeader = serde_json::from_slice(&head[..head_len as usize])
        .map_err(|e| Unusable::Corrupt(format!("its header cannot be read: {e}")))?;
    let payload = u64::from_le_bytes(head[head_len as usize..].try_into().expect("8 bytes"));
    let expected = PREFIX as u64 + head_len + 8 + payload + HASH as u64;
    if meta.len() != expected {
        return Err(Unusable::Corrupt(format!(
            "it is {} bytes where its header promises {expected}",
            meta.len()
        )));
    }
    Ok(Found {
        header,
        path: path.to_path_buf(),
        bytes: meta.len(),
        used: meta.modified().unwrap_or(UNIX_EPOCH),
    })
}

/// The header and the payload of an entry's bytes, lengths checked.
fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), Unusable> {
    let short = || Unusable::Corrupt("it is cut short".into());
    if bytes.len() < PREFIX + 8 + HASH || &bytes[..8] != MAGIC {
        return Err(short());
    }
    let head_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let head_end = PREFIX.checked_add(head_len).ok_or_else(short)?;
    if bytes.len() < head_end + 8 + HASH {
        return Err(short());
    }
    let payload_len =
        u64::from_le_bytes(bytes[head_end..head_end + 8].try_into().expect("8 bytes")) as usize;
    let payload_start = head_end + 8;
    if bytes.len() != payload_start + payload_len + HASH {
        return Err(short());
    }
    Ok((
        &bytes[PREFIX..head_end],
        &bytes[payload_start..payload_start + payload_len],
    ))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Marks a file as just used, for `gc --older-than`.
pub fn touch(path: &Path) {
    if let Ok(file) = File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder,
/// so that readers see the old file or the new one, never part of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn is_temporary(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
}

fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
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

fn remove_empty_dirs(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path())?;
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}
