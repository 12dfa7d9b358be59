//! Pack files: many node outputs in one file, written by one process.
//!
//! ```text
//! QVRPACK\0  format (u32)  padding to 64
//! entry      an Arrow IPC stream (schema, batches, end), at a 64-byte boundary
//! entry      …
//! footer     JSON: per entry its key, place, checksum and header
//! trailer    footer length (u64), BLAKE3 of the footer, QVRPACK\0
//! ```
//!
//! A pack is written under a temporary name, its writer holding a lock on
//! it, and sealed once: footer, one fsync, one rename. A sealed pack is
//! never changed again (gc writes the live entries of a sparse pack into a
//! new one and removes the old), so a reader may map it into memory and
//! hand out Arrow arrays that point into the map.
//!
//! Each entry is a whole Arrow IPC stream, its schema included: a schema
//! message is a few hundred bytes against the tens of kilobytes of the
//! smallest outputs, and an entry that stands alone is one any Arrow
//! reader can take from its offset.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use quiver_operators::Table;
use quiver_operators::arrow::buffer::Buffer;
use quiver_operators::arrow::ipc::CompressionType;
use quiver_operators::arrow::ipc::reader::StreamDecoder;
use quiver_operators::arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"QVRPACK\0";
const FORMAT: u32 = 1;
const ALIGN: u64 = 64;
/// Footer length, footer hash, magic.
const TRAILER: u64 = 8 + 32 + 8;

/// Outputs this large or larger are stored LZ4-compressed. Measured on
/// the VN30 pipeline (100 symbols × 125 days, the cache cold): from 64 KiB
/// the cache took 693 MiB, from 4 KiB 547 MiB, from 1 KiB no less; the
/// run's wall time did not move beyond its noise (9–10 s each way).
pub const COMPRESS_FROM: usize = 4 << 10;

/// Where one entry lies in its pack and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub key: String,
    pub offset: u64,
    pub length: u64,
    /// BLAKE3 of the entry's bytes, hex.
    pub checksum: String,
    pub rows: u64,
    /// The output's bytes in memory, uncompressed.
    pub bytes: u64,
    pub pipeline: String,
    pub node: String,
    pub op: String,
    /// What consumers' keys are made from, when it is not the key itself.
    pub token: Option<String>,
    pub created_ms: u64,
}

/// A pack being written.
pub struct PackWriter {
    /// The temporary file, then the sealed pack's path.
    tmp: PathBuf,
    file: BufWriter<File>,
    at: u64,
    entries: Vec<Placed>,
}

impl PackWriter {
    /// Starts the pack that will be `path` once sealed, under a temporary
    /// name beside it, locked for as long as it is written.
    pub fn create(path: &Path) -> std::io::Result<PackWriter> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = temporary_path(path);
        // Made under a name of its own and locked before it takes the
        // temporary name: a writer that dies leaves its lock behind with
        // it, and whoever finds a temporary pack unlocked may remove it
        // (see `remove_abandoned`), which a pack created but not yet
        // locked must not be.
        let new = tmp.with_extension("new");
        let file = File::options()
            .create_new(true)
            .write(true)
            .read(true)
            .open(&new)?;
        let locked = file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::Error(e) => e,
            std::fs::TryLockError::WouldBlock => std::io::Error::other("pack is locked"),
        });
        if let Err(e) = locked.and_then(|()| std::fs::rename(&new, &tmp)) {
            let _ = std::fs::remove_file(&new);
            return Err(e);
        }
        let mut w = PackWriter {
            tmp,
            file: BufWriter::with_capacity(256 << 10, file),
            at: 0,
            entries: Vec::new(),
        };
        let mut head = Vec::with_capacity(ALIGN as usize);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&FORMAT.to_le_bytes());
        w.write(&head)?;
        w.pad()?;
        Ok(w)
    }

    pub fn bytes(&self) -> u64 {
        self.at
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.at += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> std::io::Result<()> {
        let pad = (ALIGN - self.at % ALIGN) % ALIGN;
        self.write(&[0u8; ALIGN as usize][..pad as usize])
    }

    /// Appends `table` as an entry; `placed` says what it is (its place
    /// and checksum are filled in here).
    pub fn append(&mut self, table: &Table, mut placed: Placed) -> std::io::Result<()> {
        let bytes = encode(table)?;
        placed.offset = self.at;
        placed.length = bytes.len() as u64;
        placed.checksum = blake3::hash(&bytes).to_hex().to_string();
        self.write(&bytes)?;
        self.pad()?;
        self.entries.push(placed);
        Ok(())
    }

    /// Appends an entry already encoded (copied from another pack by gc);
    /// its checksum stays the one `placed` has.
    pub fn append_raw(&mut self, bytes: &[u8], mut placed: Placed) -> std::io::Result<()> {
        placed.offset = self.at;
        placed.length = bytes.len() as u64;
        self.write(bytes)?;
        self.pad()?;
        self.entries.push(placed);
        Ok(())
    }

    /// Writes the footer, syncs the file to disk and renames it into
    /// place: a pack is found whole or not at all.
    pub fn seal(mut self, path: &Path) -> std::io::Result<Vec<Placed>> {
        let footer = serde_json::to_vec(&self.entries)?;
        self.write(&footer)?;
        let mut trailer = Vec::with_capacity(TRAILER as usize);
        trailer.extend_from_slice(&(footer.len() as u64).to_le_bytes());
        trailer.extend_from_slice(blake3::hash(&footer).as_bytes());
        trailer.extend_from_slice(MAGIC);
        self.write(&trailer)?;
        self.file.flush()?;
        let file = self.file.get_ref();
        file.sync_all()?;
        std::fs::rename(&self.tmp, path)?;
        if let Some(dir) = path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        let entries = std::mem::take(&mut self.entries);
        // Renamed: nothing to remove on drop.
        self.tmp = PathBuf::new();
        Ok(entries)
    }
}

impl Drop for PackWriter {
    /// A pack dropped unsealed (a failed write, a full disk) leaves nothing.
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// `.NAME.tmp` beside `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

pub fn is_temporary(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with('.') && (n.ends_with(".tmp") || n.ends_with(".new"))
    })
}

/// A pack still under the name it was made with this long is one whose
/// writer died between making and locking it.
const NEW_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes `path`, a pack being written, if no living writer holds it.
pub fn remove_abandoned(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "new") {
        let old = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > NEW_ABANDONED_AFTER);
        return old && std::fs::remove_file(path).is_ok();
    }
    let Ok(file) = File::options().read(true).write(true).open(path) else {
        return false;
    };
    if file.try_lock().is_ok() {
        return std::fs::remove_file(path).is_ok();
    }
    false
}

/// An output as an Arrow IPC stream, LZ4-compressed from
/// [`COMPRESS_FROM`] bytes.
pub fn encode(table: &Table) -> std::io::Result<Vec<u8>> {
    let size: usize = table
        .batches()
        .iter()
        .map(|b| b.get_array_memory_size())
        .sum();
    let mut options = IpcWriteOptions::default();
    if size >= COMPRESS_FROM {
        options = options
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .map_err(std::io::Error::other)?;
    }
    let mut bytes = Vec::with_capacity(size / 2 + 1024);
    let mut writer = StreamWriter::try_new_with_options(&mut bytes, table.schema(), options)
        .map_err(std::io::Error::other)?;
    for batch in table.batches() {
        writer.write(batch).map_err(std::io::Error::other)?;
    }
    writer.finish().map_err(std::io::Error::other)?;
    drop(writer);
    Ok(bytes)
}

/// A sealed pack mapped into memory.
#[derive(Clone)]
pub struct Mapped {
    buffer: Buffer,
}

impl Mapped {
    pub fn open(path: &Path) -> std::io::Result<Mapped> {
        let file = File::open(path)?;
        // SAFETY: sealed packs are never written again (see the module
        // docs); gc and clear remove them, which leaves a map intact.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let len = map.len();
        let buffer = match NonNull::new(map.as_ptr() as *mut u8) {
            // SAFETY: the pointer and length are the map's, and the map is
            // kept alive by the buffer's owner.
            Some(ptr) if len > 0 => unsafe {
                Buffer::from_custom_allocation(ptr, len, Arc::new(map))
            },
            _ => Buffer::from_vec(Vec::<u8>::new()),
        };
        Ok(Mapped { buffer })
    }

    pub fn len(&self) -> u64 {
        self.buffer.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The bytes of the entry at `offset`, `length` long, if the pack
    /// holds them.
    pub fn slice(&self, offset: u64, length: u64) -> Option<Buffer> {
        let end = offset.checked_add(length)?;
        (end <= self.len()).then(|| {
            self.buffer
                .slice_with_length(offset as usize, length as usize)
        })
    }

    /// The entries the footer lists, its hash checked.
    pub fn footer(&self) -> Result<Vec<Placed>, String> {
        let bytes = self.buffer.as_slice();
        let n = bytes.len() as u64;
        if n < ALIGN + TRAILER || &bytes[..8] != MAGIC {
            return Err("it is not a quiver pack, or is cut short".into());
        }
        let format = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if format != FORMAT {
            return Err(format!(
                "it is in format {format}, this quiver reads {FORMAT}"
            ));
        }
        let trailer = &bytes[(n - TRAILER) as usize..];
        if &trailer[40..] != MAGIC {
            return Err("it is cut short (no trailer)".into());
        }
        let len = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
        let start = (n - TRAILER)
            .checked_sub(len)
            .ok_or("its footer length is wrong")?;
        let footer = &bytes[start as usize..(n - TRAILER) as usize];
        if blake3::hash(footer).as_bytes() != &trailer[8..40] {
            return Err("its footer's checksum does not match".into());
        }
        serde_json::from_slice(footer).map_err(|e| format!("its footer cannot be read: {e}"))
    }
}

/// The output in `bytes` (an entry), after checking them against
/// `checksum` (hex). Arrays point into `bytes` where they are not
/// compressed: nothing is copied.
pub fn decode(bytes: Buffer, checksum: &str) -> Result<Table, String> {
    if blake3::hash(bytes.as_slice()).to_hex().as_str() != checksum {
        return Err("its checksum does not match".into());
    }
    let mut decoder = StreamDecoder::new();
    let mut rest = bytes;
    let mut batches = Vec::new();
    while !rest.is_empty() {
        match decoder.decode(&mut rest) {
            Ok(Some(batch)) => batches.push(batch),
            Ok(None) => {}
            Err(e) => return Err(format!("its Arrow data cannot be read: {e}")),
        }
    }
    decoder
        .finish()
        .map_err(|e| format!("its Arrow data is cut short: {e}"))?;
    let schema = decoder.schema().ok_or("its Arrow data holds no schema")?;
    Ok(Table::new(schema, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_operators::arrow::array::{Int64Array, StringArray};
    use quiver_operators::arrow::datatypes::{DataType, Field, Schema};
    use quiver_operators::arrow::record_batch::RecordBatch;

    fn table(n: i64) -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("S{}", i % 7)),
                )),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 100))),
            ],
        )
        .unwrap();
        Table::new(schema, vec![batch])
    }

    fn placed(key: &str) -> Placed {
        Placed {
            key: key.into(),
            offset: 0,
            length: 0,
            checksum: String::new(),
            rows: 0,
            bytes: 0,
            pipeline: "p".into(),
            node: key.into(),
            op: "op".into(),
            token: None,
            created_ms: 1,
        }
    }

    #[test]
    fn entries_come_back_as_written_small_and_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d").join("w.pack");
        let mut w = PackWriter::create(&path).unwrap();
        let (small, large) = (table(10), table(100_000));
        w.append(&small, placed("a")).unwrap();
        w.append(&large, placed("b")).unwrap();
        let entries = w.seal(&path).unwrap();
        assert!(!temporary_path(&path).exists());
        let map = Mapped::open(&path).unwrap();
        assert_eq!(map.footer().unwrap(), entries);
        for (e, t) in entries.iter().zip([&small, &large]) {
            assert_eq!(e.offset % ALIGN, 0);
            let back = decode(map.slice(e.offset, e.length).unwrap(), &e.checksum).unwrap();
            assert_eq!(back.batches(), t.batches());
        }
        // The large one is compressed: smaller on disk than in memory.
        assert!(entries[1].length < 100_000 * 8, "{}", entries[1].length);
    }

    #[test]
    fn a_damaged_entry_or_footer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pack");
        let mut w = PackWriter::create(&path).unwrap();
        w.append(&table(1000), placed("a")).unwrap();
        let e = w.seal(&path).unwrap().remove(0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(e.offset + e.length / 2) as usize] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let map = Mapped::open(&path).unwrap();
        let err = decode(map.slice(e.offset, e.length).unwrap(), &e.checksum).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        let n = bytes.len();
        bytes[n - TRAILER as usize - 2] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let err = Mapped::open(&path).unwrap().footer().unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        // Past the end of the file: no slice.
        assert!(map.slice(map.len() - 1, 2).is_none());
    }

    #[test]
    fn an_unsealed_pack_leaves_nothing_and_an_abandoned_one_is_removable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pack");
        {
            let mut w = PackWriter::create(&path).unwrap();
            w.append(&table(10), placed("a")).unwrap();
            // Held by a living writer: not removable.
            assert!(!remove_abandoned(&temporary_path(&path)));
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        // A file a dead writer left (no lock held): removable.
        let left = temporary_path(&path);
        std::fs::write(&left, b"partial").unwrap();
        assert!(is_temporary(&left));
        assert!(remove_abandoned(&left));
        assert!(!left.exists());
    }

    #[test]
    fn only_packs_no_writer_holds_are_removed_as_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.pack");
        let writer = PackWriter::create(&path).unwrap();
        // Being written: locked under its temporary name, never removed.
        let tmp = temporary_path(&path);
        assert!(is_temporary(&tmp) && tmp.exists());
        assert!(!remove_abandoned(&tmp));
        drop(writer);
        assert!(!tmp.exists());
        // One whose writer died: the lock went with it.
        File::create(&tmp).unwrap();
        assert!(remove_abandoned(&tmp) && !tmp.exists());
        // A pack made but not yet locked is left alone until it is old.
        let new = dir.path().join(".x.pack.new");
        let file = File::create(&new).unwrap();
        assert!(is_temporary(&new) && !remove_abandoned(&new));
        let long_ago = std::time::SystemTime::now() - 2 * NEW_ABANDONED_AFTER;
        file.set_modified(long_ago).unwrap();
        assert!(remove_abandoned(&new) && !new.exists());
    }
}
