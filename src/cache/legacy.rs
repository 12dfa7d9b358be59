//! Caches written by quiver before packs: one `.qc` file per entry under
//! `entries/`, a JSON file per sink receipt under `sinks/`, a JSON manifest
//! per pipeline under `pipelines/`. They are still read, so that an
//! upgrade computes nothing again, and `quiver cache migrate` moves them
//! into packs and the index.
//!
//! An entry is `QVRCACHE`, a format number, a JSON header, the output as an
//! Arrow IPC stream, and a BLAKE3 hash of header and payload.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use quiver_operators::Table;
use quiver_operators::arrow::ipc::reader::StreamReader;

use super::key::Key;
use super::store::{EntryHeader, Found, Manifest, Receipt, Unusable};

const MAGIC: &[u8; 8] = b"QVRCACHE";
const FORMAT: u32 = 1;
/// Magic, format, header length.
const PREFIX: usize = 8 + 4 + 4;
const HASH: usize = 32;

/// Whether `dir` holds anything of a cache written before packs.
pub fn present(dir: &Path) -> bool {
    ["entries", "sinks", "pipelines"]
        .iter()
        .any(|sub| dir.join(sub).is_dir())
}

pub fn entry_path(dir: &Path, key: &Key) -> PathBuf {
    let hex = key.hex();
    dir.join("entries")
        .join(&hex[..2])
        .join(format!("{hex}.qc"))
}

pub fn receipt(dir: &Path, key: &Key) -> Option<Receipt> {
    let text = std::fs::read(dir.join("sinks").join(format!("{}.json", key.hex()))).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Every pipeline's manifest, by pipeline file name.
pub fn manifests(dir: &Path) -> Vec<(String, Manifest)> {
    let Ok(files) = std::fs::read_dir(dir.join("pipelines")) else {
        return Vec::new();
    };
    files
        .flatten()
        .filter_map(|f| {
            let path = f.path();
            let name = path.file_stem()?.to_string_lossy().into_owned();
            let manifest = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            Some((name, manifest))
        })
        .collect()
}

/// The manifest of `pipeline`, as its file was named.
pub fn manifest(dir: &Path, pipeline: &str) -> Option<Manifest> {
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
    let bytes = std::fs::read(dir.join("pipelines").join(format!("{safe}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The entry stored under `key`: its header, after checking that the
/// file has the length the header promises.
pub fn find(dir: &Path, key: &Key) -> Result<Found, Unusable> {
    let found = read_header(&entry_path(dir, key))?;
    if found.header.key != key.hex() {
        return Err(Unusable::Corrupt(format!(
            "it holds the key {}",
            found.header.key
        )));
    }
    Ok(found)
}

/// The output stored under `key`, its hash checked.
pub fn load(dir: &Path, key: &Key) -> Result<Table, Unusable> {
    read(&entry_path(dir, key))
}

/// The output in the entry file `path`, its lengths and hash checked.
pub fn read(path: &Path) -> Result<Table, Unusable> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Corrupt(format!("cannot be read: {e}"))),
    };
    let payload = split(&bytes)?;
    let body = &bytes[PREFIX..bytes.len() - HASH];
    if blake3::hash(body).as_bytes() != &bytes[bytes.len() - HASH..] {
        return Err(Unusable::Corrupt("its checksum does not match".into()));
    }
    let reader = StreamReader::try_new(payload, None)
        .map_err(|e| Unusable::Corrupt(format!("its Arrow data cannot be read: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Unusable::Corrupt(format!("its Arrow data cannot be read: {e}")))?;
    Ok(Table::new(schema, batches))
}

/// Every entry file under `dir`, unreadable ones left out.
pub fn entries(dir: &Path) -> Vec<Found> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(dir.join("entries")) else {
        return out;
    };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "qc")
                && let Ok(found) = read_header(&path)
            {
                out.push(found);
            }
        }
    }
    out
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
        offset: 0,
        bytes: meta.len(),
        used: meta.modified().unwrap_or(UNIX_EPOCH),
        day: None,
    })
}

/// The payload of an entry's bytes, lengths checked.
fn split(bytes: &[u8]) -> Result<&[u8], Unusable> {
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
    Ok(&bytes[payload_start..payload_start + payload_len])
}

/// Writes an entry as quiver did before packs (for tests of the upgrade).
pub fn write(dir: &Path, header: &EntryHeader, table: &Table) -> std::io::Result<()> {
    use quiver_operators::arrow::ipc::writer::StreamWriter;
    let mut payload = Vec::new();
    {
        let mut writer =
            StreamWriter::try_new(&mut payload, table.schema()).map_err(std::io::Error::other)?;
        for batch in table.batches() {
            writer.write(batch).map_err(std::io::Error::other)?;
        }
        writer.finish().map_err(std::io::Error::other)?;
    }
    let head = serde_json::to_vec(header)?;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&(head.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&head);
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let hash = blake3::hash(&bytes[PREFIX..]);
    bytes.extend_from_slice(hash.as_bytes());
    let key = Key::from_hex(&header.key).ok_or_else(|| std::io::Error::other("bad key"))?;
    let path = entry_path(dir, &key);
    std::fs::create_dir_all(path.parent().expect("a shard folder"))?;
    std::fs::write(path, bytes)
}
