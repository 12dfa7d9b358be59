//! The cache's index: one SQLite database (`index.sqlite`, in WAL mode)
//! mapping every key to its pack, place, checksum and header, with the
//! receipts of sink writes, what made each node's last key, and the keys
//! of recent runs (for `gc --keep-runs`).
//!
//! Every process opens its own connection; SQLite serialises writers, and
//! each sealed pack is one transaction, so a reader sees a pack's entries
//! all or none. A pack sealed but not yet recorded (a crash in between) is
//! an orphan that `gc` removes.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::key::Key;
use super::pack::Placed;

pub const FILE: &str = "index.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS packs (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    day TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sealed_ms INTEGER NOT NULL,
    used_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    key BLOB PRIMARY KEY,
    pack INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    pipeline TEXT NOT NULL,
    node TEXT NOT NULL,
    op TEXT NOT NULL,
    token TEXT,
    created_ms INTEGER NOT NULL,
    used_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_pack ON entries (pack);
CREATE TABLE IF NOT EXISTS receipts (
    key BLOB PRIMARY KEY,
    receipt TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS made (
    pipeline TEXT NOT NULL,
    node TEXT NOT NULL,
    made TEXT NOT NULL,
    PRIMARY KEY (pipeline, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    finished_ms INTEGER NOT NULL,
    keys BLOB NOT NULL
);
";

/// The mark a run's keys begin with when they are kept as prefixes of
/// [`PREFIX`] bytes (runs recorded before kept whole keys, 32 bytes each).
const PREFIXES: &[u8] = b"qkeys/8\0";
/// Bytes of a key a run keeps: 400,000 keys are 3.2 MB a run, not 12.8.
/// Two keys that share a prefix keep each other: gc keeps one more
/// entry, never one fewer.
const PREFIX: usize = 8;

/// A run's keys as it keeps them: the prefixes, sorted, so the same keys
/// make the same bytes.
fn run_keys_blob(keys: &[Key]) -> Vec<u8> {
    let mut prefixes: Vec<[u8; PREFIX]> = keys
        .iter()
        .map(|k| k.bytes()[..PREFIX].try_into().expect("a prefix"))
        .collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    let mut blob = Vec::with_capacity(PREFIXES.len() + prefixes.len() * PREFIX);
    blob.extend_from_slice(PREFIXES);
    for p in prefixes {
        blob.extend_from_slice(&p);
    }
    blob
}

/// The keys recent runs used.
#[derive(Debug, Default)]
pub struct RunKeys {
    whole: std::collections::HashSet<[u8; 32]>,
    prefixes: std::collections::HashSet<[u8; PREFIX]>,
}

impl RunKeys {
    pub fn contains(&self, key: &Key) -> bool {
        let prefix: [u8; PREFIX] = key.bytes()[..PREFIX].try_into().expect("a prefix");
        self.prefixes.contains(&prefix) || self.whole.contains(key.bytes())
    }
}

/// An entry as the index knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub placed: Placed,
    pub pack_id: i64,
    /// The pack's path, relative to the cache folder.
    pub pack: String,
    pub day: String,
    /// When the entry (or its day) was last written, loaded or kept by a run.
    pub used_ms: u64,
}

/// A sealed pack as the index knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PackRow {
    pub id: i64,
    pub path: String,
    pub day: String,
    pub bytes: u64,
    pub used_ms: u64,
    /// Its entries' bytes on disk (the rest is dead space or framing).
    pub live: u64,
    pub entries: u64,
}

/// How long a process waits for another's hold on the index.
const BUSY: Duration = Duration::from_secs(30);

fn set_up(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // A crash loses at most the last transactions, never consistency;
    // packs are synced before their transaction.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // More pages at hand than SQLite's 2 MiB default: a forecast looks up
    // every node.
    conn.pragma_update(None, "cache_size", -(8i64 << 10))?;
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
}

fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub struct Index {
    conn: Connection,
}

pub type Result<T> = rusqlite::Result<T>;

const ROW: &str = "SELECT e.key, e.offset, e.length, e.checksum, e.rows, e.bytes, e.pipeline, \
     e.node, e.op, e.token, e.created_ms, max(e.used_ms, p.used_ms), e.pack, p.path, p.day \
     FROM entries e JOIN packs p ON p.id = e.pack";

fn row(r: &rusqlite::Row<'_>) -> Result<Row> {
    let key: Vec<u8> = r.get(0)?;
    Ok(Row {
        placed: Placed {
            key: hex(&key),
            offset: r.get::<_, i64>(1)? as u64,
            length: r.get::<_, i64>(2)? as u64,
            checksum: r.get(3)?,
            rows: r.get::<_, i64>(4)? as u64,
            bytes: r.get::<_, i64>(5)? as u64,
            pipeline: r.get(6)?,
            node: r.get(7)?,
            op: r.get(8)?,
            token: r.get(9)?,
            created_ms: r.get::<_, i64>(10)? as u64,
        },
        used_ms: r.get::<_, i64>(11)? as u64,
        pack_id: r.get(12)?,
        pack: r.get(13)?,
        day: r.get(14)?,
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn key_blob(hex_key: &str) -> Vec<u8> {
    Key::from_hex(hex_key).map_or_else(|| hex_key.as_bytes().to_vec(), |k| k.bytes().to_vec())
}

impl Index {
    /// Opens (or makes) the index of the cache folder `dir`.
    pub fn open(dir: &Path) -> Result<Index> {
        std::fs::create_dir_all(dir).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot make {}: {e}", dir.display())),
            )
        })?;
        let conn = Connection::open(dir.join(FILE))?;
        conn.busy_timeout(BUSY)?;
        // Two processes opening a new index at once: switching it to WAL
        // and making its tables can find the other mid-way, which SQLite
        // answers "busy" at once rather than through the busy timeout.
        let deadline = std::time::Instant::now() + BUSY;
        loop {
            match set_up(&conn) {
                Err(e) if busy(&e) && std::time::Instant::now() < deadline => {
                    let _ = conn.execute_batch("ROLLBACK");
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        }
        Ok(Index { conn })
    }

    /// A write transaction, its lock taken at once: one that began as a
    /// read could find another process's commit in between and fail.
    fn write(&mut self) -> Result<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
    }

    /// A view of the index as it stands now, for many lookups.
    pub fn snapshot(dir: &Path) -> Result<Snapshot> {
        let index = Index::open(dir)?;
        index.conn.execute_batch("BEGIN DEFERRED")?;
        Ok(Snapshot(index))
    }

    /// The entry stored under `key`.
    pub fn lookup(&self, key: &Key) -> Result<Option<Row>> {
        self.conn
            .prepare_cached(&format!("{ROW} WHERE e.key = ?1"))?
            .query_row([&key.bytes()[..]], row)
            .optional()
    }

    /// Records a sealed pack and its entries (replacing older entries under
    /// the same keys), and what made them, in one transaction.
    pub fn add_pack(
        &mut self,
        path: &str,
        day: &str,
        bytes: u64,
        entries: &[Placed],
        made: &[(String, String, String)],
        now: u64,
    ) -> Result<()> {
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO packs (path, day, bytes, sealed_ms, used_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![path, day, bytes as i64, now as i64],
        )?;
        let pack = tx.last_insert_rowid();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO entries (key, pack, offset, length, checksum, rows, bytes, \
                 pipeline, node, op, token, created_ms, used_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )?;
            for e in entries {
                insert.execute(params![
                    key_blob(&e.key),
                    pack,
                    e.offset as i64,
                    e.length as i64,
                    e.checksum,
                    e.rows as i64,
                    e.bytes as i64,
                    e.pipeline,
                    e.node,
                    e.op,
                    e.token,
                    e.created_ms as i64,
                ])?;
            }
        }
        put_made(&tx, made)?;
        tx.commit()
    }

    /// Marks entries as just used (loaded by a run).
    pub fn touch(&mut self, keys: &[Key], now: u64) -> Result<()> {
        let tx = self.write()?;
        {
            let mut update = tx.prepare_cached("UPDATE entries SET used_ms = ?1 WHERE key = ?2")?;
            for k in keys {
                update.execute(params![now as i64, &k.bytes()[..]])?;
            }
        }
        tx.commit()
    }

    pub fn receipt(&self, key: &Key) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT receipt FROM receipts WHERE key = ?1")?
            .query_row([&key.bytes()[..]], |r| r.get(0))
            .optional()
    }

    /// Records what a sink wrote, and what made its key, in one transaction.
    pub fn put_receipt(
        &mut self,
        key: &Key,
        receipt: &str,
        made: &[(String, String, String)],
        now: u64,
    ) -> Result<()> {
        let tx = self.write()?;
        tx.execute(
            "INSERT OR REPLACE INTO receipts (key, receipt, created_ms) VALUES (?1, ?2, ?3)",
            params![&key.bytes()[..], receipt, now as i64],
        )?;
        put_made(&tx, made)?;
        tx.commit()
    }

    /// What made the last key recorded for `node` of `pipeline` (JSON).
    pub fn made(&self, pipeline: &str, node: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT made FROM made WHERE pipeline = ?1 AND node = ?2")?
            .query_row([pipeline, node], |r| r.get(0))
            .optional()
    }

    pub fn put_made(&mut self, made: &[(String, String, String)]) -> Result<()> {
        let tx = self.write()?;
        put_made(&tx, made)?;
        tx.commit()
    }

    /// Records a finished run: the keys it used (for `gc --keep-runs`), and
    /// its days as used now (for eviction by least recent use). A run that
    /// used the keys the pipeline's last run used is that run again: its
    /// time is updated, nothing is added.
    pub fn record_run(
        &mut self,
        pipeline: &str,
        keys: &[Key],
        days: &[&str],
        now: u64,
    ) -> Result<()> {
        let blob = run_keys_blob(keys);
        let tx = self.write()?;
        let last: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT id, keys FROM runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT 1",
                [pipeline],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match last {
            Some((id, before)) if before == blob => {
                tx.execute(
                    "UPDATE runs SET finished_ms = ?1 WHERE id = ?2",
                    params![now as i64, id],
                )?;
            }
            _ => {
                tx.execute(
                    "INSERT INTO runs (pipeline, finished_ms, keys) VALUES (?1, ?2, ?3)",
                    params![pipeline, now as i64, blob],
                )?;
            }
        }
        {
            let mut update = tx.prepare_cached("UPDATE packs SET used_ms = ?1 WHERE day = ?2")?;
            for day in days {
                update.execute(params![now as i64, day])?;
            }
        }
        // Runs beyond the last 100 of a pipeline are forgotten.
        tx.execute(
            "DELETE FROM runs WHERE pipeline = ?1 AND id NOT IN \
             (SELECT id FROM runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT 100)",
            [pipeline],
        )?;
        tx.commit()
    }

    /// The keys of the last `n` runs of every pipeline.
    pub fn recent_run_keys(&self, n: usize) -> Result<RunKeys> {
        let mut stmt = self.conn.prepare(
            "SELECT keys FROM (SELECT keys, row_number() OVER \
             (PARTITION BY pipeline ORDER BY id DESC) AS k FROM runs) WHERE k <= ?1",
        )?;
        let mut out = RunKeys::default();
        let mut rows = stmt.query([n as i64])?;
        while let Some(r) = rows.next()? {
            let blob: Vec<u8> = r.get(0)?;
            match blob.strip_prefix(PREFIXES) {
                Some(prefixes) => out.prefixes.extend(
                    prefixes
                        .chunks_exact(PREFIX)
                        .map(|c| <[u8; PREFIX]>::try_from(c).expect("a prefix")),
                ),
                None => out.whole.extend(
                    blob.chunks_exact(32)
                        .map(|c| <[u8; 32]>::try_from(c).expect("a key")),
                ),
            }
        }
        Ok(out)
    }

    /// Every entry.
    pub fn entries(&self) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare(ROW)?;
        stmt.query_map([], row)?.collect()
    }

    /// The days with more than `most` packs (a count of packs alone: no
    /// entry is read).
    pub fn crowded_days(&self, most: usize) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT day FROM packs GROUP BY day HAVING count(*) > ?1")?;
        stmt.query_map([most as i64], |r| r.get(0))?.collect()
    }

    /// Every pack, with the bytes of its live entries.
    pub fn packs(&self) -> Result<Vec<PackRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT p.id, p.path, p.day, p.bytes, p.used_ms, \
             coalesce(sum(e.length), 0), count(e.key) \
             FROM packs p LEFT JOIN entries e ON e.pack = p.id GROUP BY p.id ORDER BY p.id",
        )?;
        stmt.query_map([], |r| {
            Ok(PackRow {
                id: r.get(0)?,
                path: r.get(1)?,
                day: r.get(2)?,
                bytes: r.get::<_, i64>(3)? as u64,
                used_ms: r.get::<_, i64>(4)? as u64,
                live: r.get::<_, i64>(5)? as u64,
                entries: r.get::<_, i64>(6)? as u64,
            })
        })?
        .collect()
    }

    /// Forgets entries (their bytes stay in their packs until gc rewrites
    /// or removes the packs).
    pub fn remove_entries(&mut self, keys: &[String]) -> Result<()> {
        let tx = self.write()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?;
            for k in keys {
                delete.execute([key_blob(k)])?;
            }
        }
        tx.commit()
    }

    /// Moves the entries of the packs `old` to the pack `path` they were
    /// copied into (each entry with the pack it came from), and forgets
    /// the old packs, in one transaction.
    pub fn replace_packs(
        &mut self,
        old: &[i64],
        path: &str,
        day: &str,
        bytes: u64,
        entries: &[(i64, Placed)],
        now: u64,
    ) -> Result<()> {
        let tx = self.write()?;
        let mut used: i64 = 0;
        for id in old {
            let u: i64 = tx.query_row("SELECT used_ms FROM packs WHERE id = ?1", [id], |r| {
                r.get(0)
            })?;
            used = used.max(u);
        }
        tx.execute(
            "INSERT INTO packs (path, day, bytes, sealed_ms, used_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![path, day, bytes as i64, now as i64, used],
        )?;
        let pack = tx.last_insert_rowid();
        {
            let mut update = tx.prepare_cached(
                "UPDATE entries SET pack = ?1, offset = ?2, length = ?3 WHERE key = ?4 AND pack = ?5",
            )?;
            for (from, e) in entries {
                update.execute(params![
                    pack,
                    e.offset as i64,
                    e.length as i64,
                    key_blob(&e.key),
                    from
                ])?;
            }
        }
        for id in old {
            tx.execute("DELETE FROM packs WHERE id = ?1", [id])?;
        }
        tx.commit()
    }

    /// Forgets a pack that holds no entry the index still lists.
    pub fn remove_pack(&mut self, id: i64) -> Result<()> {
        let tx = self.write()?;
        tx.execute("DELETE FROM entries WHERE pack = ?1", [id])?;
        tx.execute("DELETE FROM packs WHERE id = ?1", [id])?;
        tx.commit()
    }

    /// Forgets everything.
    pub fn clear(&mut self) -> Result<()> {
        self.conn.execute_batch(
            "DELETE FROM entries; DELETE FROM packs; DELETE FROM receipts; \
             DELETE FROM made; DELETE FROM runs;",
        )?;
        let _ = self.conn.execute_batch("VACUUM");
        Ok(())
    }
}

/// The index as it stood at one moment, on a connection of its own: its
/// lookups share one read transaction, so a forecast of 400,000 nodes
/// takes SQLite's locks once, not once a node. Writers go on meanwhile
/// (WAL); the snapshot does not see what they add.
pub struct Snapshot(Index);

impl Snapshot {
    /// The token (`None`: the key itself) and the creation time of the
    /// entry stored under `key`.
    pub fn stamp(&self, key: &Key) -> Result<Option<(Option<String>, u64)>> {
        self.0
            .conn
            .prepare_cached(
                "SELECT e.token, e.created_ms FROM entries e JOIN packs p ON p.id = e.pack \
                 WHERE e.key = ?1",
            )?
            .query_row([&key.bytes()[..]], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
            })
            .optional()
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = self.0.conn.execute_batch("ROLLBACK");
    }
}

fn put_made(tx: &rusqlite::Transaction<'_>, made: &[(String, String, String)]) -> Result<()> {
    let mut insert = tx
        .prepare_cached("INSERT OR REPLACE INTO made (pipeline, node, made) VALUES (?1, ?2, ?3)")?;
    for (pipeline, node, text) in made {
        insert.execute([pipeline, node, text])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32])
    }

    fn runs(index: &Index) -> Vec<(String, usize)> {
        let mut stmt = index
            .conn
            .prepare("SELECT pipeline, length(keys) FROM runs ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize)))
            .unwrap()
            .collect::<Result<_>>()
            .unwrap()
    }

    #[test]
    fn a_run_with_the_keys_of_the_last_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open(dir.path()).unwrap();
        index.record_run("p", &[key(1), key(2)], &[], 1).unwrap();
        // The same keys in another order: the same run again.
        index.record_run("p", &[key(2), key(1)], &[], 2).unwrap();
        assert_eq!(runs(&index), [("p".to_string(), 8 + 2 * 8)]);
        let finished: i64 = index
            .conn
            .query_row("SELECT finished_ms FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(finished, 2);
        // Other keys, or another pipeline: a run of its own.
        index.record_run("p", &[key(1), key(3)], &[], 3).unwrap();
        index.record_run("q", &[key(1), key(3)], &[], 4).unwrap();
        assert_eq!(runs(&index).len(), 3);
    }

    #[test]
    fn recent_runs_keep_their_keys_as_prefixes_and_older_runs_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open(dir.path()).unwrap();
        // A run recorded before prefixes: its keys whole.
        let old: Vec<u8> = [key(7), key(8)].iter().flat_map(|k| *k.bytes()).collect();
        index
            .conn
            .execute(
                "INSERT INTO runs (pipeline, finished_ms, keys) VALUES ('p', 1, ?1)",
                [old],
            )
            .unwrap();
        index.record_run("p", &[key(1), key(2)], &[], 2).unwrap();
        index.record_run("p", &[key(3)], &[], 3).unwrap();

        let last_two = index.recent_run_keys(2).unwrap();
        assert!([1, 2, 3].iter().all(|&n| last_two.contains(&key(n))));
        assert!(!last_two.contains(&key(7)));
        let all = index.recent_run_keys(3).unwrap();
        assert!([1, 2, 3, 7, 8].iter().all(|&n| all.contains(&key(n))));
        assert!(!all.contains(&key(9)));
        // A key sharing a kept key's first 8 bytes is kept too.
        let mut near = [1u8; 32];
        near[31] = 0;
        assert!(all.contains(&Key::from_bytes(near)));
        let mut far = [1u8; 32];
        far[0] = 0;
        assert!(!all.contains(&Key::from_bytes(far)));
    }
}
