//! Keeping a cache folder in bounds: `quiver cache gc` (by age, by the
//! runs that still use an entry, by size), `verify`, `migrate` and `clear`,
//! and the size limit a run keeps itself.
//!
//! Entries are forgotten in the index first; their bytes go when their
//! pack does. A pack left with no live entry is removed, and one whose
//! live entries fill less than [`REWRITE_BELOW`] of it is rewritten: its
//! live entries copied (bytes as they are, checksums checked) into a new
//! pack, which replaces it in one index transaction.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::index::{PackRow, Row};
use super::key::Key;
use super::legacy;
use super::pack::{Mapped, PackWriter, Placed};
use super::store::{Store, UNDATED, files_under, now_ms};
use super::writer::relative;

/// A pack whose live entries fill less than this share of it is rewritten.
pub const REWRITE_BELOW: f64 = 0.5;
/// A pack file the index does not list is removed once it is this old (a
/// younger one may be a pack another process sealed and is recording).
const ORPHAN_AFTER: Duration = Duration::from_secs(3600);

/// What to remove.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Entries last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Entries that none of the last N runs of any pipeline used.
    pub keep_runs: Option<usize>,
    /// Least recently used days, until the cache is no larger than this.
    pub max_size: Option<u64>,
    /// Days never evicted for size (the days of the run that keeps it).
    pub protect: HashSet<String>,
}

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Swept {
    pub entries: usize,
    /// Bytes of disk given back.
    pub bytes: u64,
    pub packs_removed: usize,
    pub packs_rewritten: usize,
    /// The cache's size on disk afterwards.
    pub size: u64,
}

fn index_of<T>(
    store: &Store,
    f: impl FnOnce(&mut super::index::Index) -> rusqlite::Result<T>,
) -> std::io::Result<T> {
    let mut error = None;
    let out = store.with_index(|index| f(index).inspect_err(|e| error = Some(e.to_string())));
    out.ok_or_else(|| {
        std::io::Error::other(error.unwrap_or_else(|| "the cache index cannot be opened".into()))
    })
}

/// Removes what `policy` says, then removes or rewrites the packs it left
/// sparse.
pub fn gc(store: &Store, policy: &Policy) -> std::io::Result<Swept> {
    let mut swept = Swept::default();
    store.remove_abandoned();
    let now = now_ms();
    let rows = index_of(store, |i| i.entries())?;
    let recent = match policy.keep_runs {
        Some(n) => Some(index_of(store, |i| i.recent_run_keys(n))?),
        None => None,
    };
    let dead: Vec<String> = rows
        .iter()
        .filter(|r| {
            let old = policy
                .older_than
                .is_some_and(|age| now.saturating_sub(r.used_ms) > age.as_millis() as u64);
            let unused = recent.as_ref().is_some_and(|keep| {
                Key::from_hex(&r.placed.key).is_none_or(|k| !keep.contains(&k))
            });
            old || unused
        })
        .map(|r| r.placed.key.clone())
        .collect();
    swept.entries += dead.len();
    index_of(store, |i| i.remove_entries(&dead))?;

    if let Some(max) = policy.max_size {
        evict(store, max, &policy.protect, &mut swept)?;
    }
    compact(store, &mut swept)?;
    remove_orphans(store, &mut swept)?;
    if let Some(age) = policy.older_than {
        sweep_legacy(store.dir(), age, &mut swept);
    }
    swept.size = size(store)?;
    Ok(swept)
}

/// Bytes of the packs the index lists.
pub fn size(store: &Store) -> std::io::Result<u64> {
    Ok(index_of(store, |i| i.packs())?
        .iter()
        .map(|p| p.bytes)
        .sum())
}

/// Forgets whole days, least recently used first, until the packs the
/// index lists take no more than `max` bytes.
fn evict(
    store: &Store,
    max: u64,
    protect: &HashSet<String>,
    swept: &mut Swept,
) -> std::io::Result<()> {
    let packs = index_of(store, |i| i.packs())?;
    let mut total: u64 = packs.iter().map(|p| p.bytes).sum();
    if total <= max {
        return Ok(());
    }
    // Per day: its packs, and when it was last used.
    let mut days: BTreeMap<&str, (u64, Vec<&PackRow>)> = BTreeMap::new();
    for p in &packs {
        let day = days.entry(p.day.as_str()).or_default();
        day.0 = day.0.max(p.used_ms);
        day.1.push(p);
    }
    let mut order: Vec<(&str, u64)> = days
        .iter()
        .filter(|(day, _)| !protect.contains(**day))
        .map(|(day, (used, _))| (*day, *used))
        .collect();
    order.sort_by_key(|&(day, used)| (used, day != UNDATED, day));
    for (day, _) in order {
        if total <= max {
            break;
        }
        for p in &days[day].1 {
            index_of(store, |i| i.remove_pack(p.id))?;
            swept.entries += p.entries as usize;
            remove_pack_file(store, p, swept);
            total -= p.bytes;
        }
    }
    Ok(())
}

fn remove_pack_file(store: &Store, p: &PackRow, swept: &mut Swept) {
    if std::fs::remove_file(store.dir().join(&p.path)).is_ok() {
        swept.bytes += p.bytes;
        swept.packs_removed += 1;
    }
    let _ = std::fs::remove_dir(store.dir().join("packs").join(&p.day));
}

/// Removes packs with no live entry and rewrites sparse ones.
fn compact(store: &Store, swept: &mut Swept) -> std::io::Result<()> {
    for p in index_of(store, |i| i.packs())? {
        if p.entries == 0 {
            index_of(store, |i| i.remove_pack(p.id))?;
            remove_pack_file(store, &p, swept);
        } else if (p.live as f64) < REWRITE_BELOW * p.bytes as f64 {
            rewrite(store, std::slice::from_ref(&p), swept)?;
        }
    }
    Ok(())
}

/// Copies the live entries of `packs` (all of one day) into one new pack
/// that replaces them.
fn rewrite(store: &Store, packs: &[PackRow], swept: &mut Swept) -> std::io::Result<()> {
    let Some(first) = packs.first() else {
        return Ok(());
    };
    let ids: HashSet<i64> = packs.iter().map(|p| p.id).collect();
    let mut rows: Vec<Row> = index_of(store, |i| i.entries())?
        .into_iter()
        .filter(|r| ids.contains(&r.pack_id))
        .collect();
    rows.sort_by_key(|r| (r.pack_id, r.placed.offset));
    let path = store.dir().join("packs").join(&first.day).join(format!(
        "gc-{}-{}.pack",
        now_ms(),
        std::process::id()
    ));
    let mut pack = PackWriter::create(&path)?;
    let (mut bad, mut from) = (Vec::new(), Vec::new());
    let mut maps: BTreeMap<i64, Mapped> = BTreeMap::new();
    for p in packs {
        maps.insert(p.id, Mapped::open(&store.dir().join(&p.path))?);
    }
    for r in rows {
        match maps[&r.pack_id].slice(r.placed.offset, r.placed.length) {
            Some(bytes)
                if blake3::hash(bytes.as_slice()).to_hex().as_str() == r.placed.checksum =>
            {
                pack.append_raw(bytes.as_slice(), r.placed)?;
                from.push(r.pack_id);
            }
            // A damaged entry is not carried over.
            _ => bad.push(r.placed.key),
        }
    }
    let bytes = pack.bytes();
    let entries: Vec<(i64, Placed)> = from.into_iter().zip(pack.seal(&path)?).collect();
    let relative = relative(store.dir(), &path);
    let old: Vec<i64> = packs.iter().map(|p| p.id).collect();
    index_of(store, |i| {
        i.remove_entries(&bad)?;
        i.replace_packs(&old, &relative, &first.day, bytes, &entries, now_ms())
    })?;
    let before: u64 = packs.iter().map(|p| p.bytes).sum();
    for p in packs {
        std::fs::remove_file(store.dir().join(&p.path))?;
    }
    swept.entries += bad.len();
    swept.bytes += before.saturating_sub(bytes);
    swept.packs_rewritten += packs.len();
    Ok(())
}

/// Merges the packs of each of `days` into one where a day has more than
/// `most` of them (many writers each sealing a little: the tasks of a Ray
/// run), as long as the merged pack stays under the size packs are cut
/// at. How many packs were merged away.
pub fn merge(store: &Store, days: &[&str], most: usize) -> std::io::Result<usize> {
    // Most runs leave no day crowded: found from the packs alone, before
    // every entry is summed up per pack.
    let crowded = index_of(store, |i| i.crowded_days(most))?;
    let wanted: HashSet<&str> = days
        .iter()
        .copied()
        .filter(|d| crowded.iter().any(|c| c == d))
        .collect();
    if wanted.is_empty() {
        return Ok(0);
    }
    let mut by_day: BTreeMap<String, Vec<PackRow>> = BTreeMap::new();
    for p in index_of(store, |i| i.packs())? {
        if wanted.contains(p.day.as_str()) {
            by_day.entry(p.day.clone()).or_default().push(p);
        }
    }
    let mut swept = Swept::default();
    let mut merged = 0;
    for (_, mut packs) in by_day {
        if packs.len() <= most {
            continue;
        }
        // The smallest first, as many as fit under the cut.
        packs.sort_by_key(|p| p.live);
        let mut total = 0;
        let fit: Vec<PackRow> = packs
            .into_iter()
            .take_while(|p| {
                total += p.live;
                total < super::writer::PACK_MAX
            })
            .collect();
        if fit.len() > 1 {
            rewrite(store, &fit, &mut swept)?;
            merged += fit.len() - 1;
        }
    }
    Ok(merged)
}

/// Removes pack files the index does not list (sealed by a process that
/// died before recording them), once they are old enough.
fn remove_orphans(store: &Store, swept: &mut Swept) -> std::io::Result<()> {
    let listed: HashSet<String> = index_of(store, |i| i.packs())?
        .into_iter()
        .map(|p| p.path)
        .collect();
    for path in files_under(&store.dir().join("packs"))? {
        if path.extension().is_none_or(|e| e != "pack") || super::pack::is_temporary(&path) {
            continue;
        }
        let old = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|m| m.elapsed().is_ok_and(|e| e > ORPHAN_AFTER));
        if old && !listed.contains(&relative(store.dir(), &path)) {
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            if std::fs::remove_file(&path).is_ok() {
                swept.bytes += bytes;
                swept.packs_removed += 1;
            }
        }
    }
    Ok(())
}

/// Entry files from before packs, last used longer ago than `age`.
fn sweep_legacy(dir: &Path, age: Duration, swept: &mut Swept) {
    for found in legacy::entries(dir) {
        if found.used.elapsed().is_ok_and(|e| e > age) && std::fs::remove_file(&found.path).is_ok()
        {
            swept.entries += 1;
            swept.bytes += found.bytes;
        }
    }
}

/// What `verify` found: entries whose bytes no longer match, dropped.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    pub checked: usize,
    pub bytes: u64,
    /// (node, why) of each entry dropped.
    pub bad: Vec<(String, String)>,
}

/// Reads every entry in full and checks its checksum; drops bad ones.
pub fn verify(store: &Store) -> std::io::Result<Verified> {
    let mut out = Verified::default();
    let rows = index_of(store, |i| i.entries())?;
    let mut bad_keys = Vec::new();
    for r in rows {
        out.checked += 1;
        out.bytes += r.placed.length;
        let Some(key) = Key::from_hex(&r.placed.key) else {
            continue;
        };
        if let Err(why) = store.load(&key) {
            let why = match why {
                super::store::Unusable::Missing => "it is gone".to_string(),
                super::store::Unusable::Corrupt(how) => how,
            };
            out.bad.push((r.placed.node.clone(), why));
            bad_keys.push(r.placed.key);
        }
    }
    index_of(store, |i| i.remove_entries(&bad_keys))?;
    for found in legacy::entries(store.dir()) {
        out.checked += 1;
        out.bytes += found.bytes;
        if let Err(why) = legacy::read(&found.path) {
            let why = match why {
                super::store::Unusable::Missing => "it is gone".to_string(),
                super::store::Unusable::Corrupt(how) => how,
            };
            out.bad.push((found.header.node.clone(), why));
            let _ = std::fs::remove_file(&found.path);
        }
    }
    Ok(out)
}

/// What `migrate` moved.
#[derive(Debug, Clone, Default)]
pub struct Migrated {
    pub entries: usize,
    pub receipts: usize,
    pub nodes: usize,
    pub skipped: usize,
}

/// Moves a cache written before packs into packs and the index, and
/// removes the old files.
pub fn migrate(store: &Store) -> std::io::Result<Migrated> {
    let dir = store.dir().to_path_buf();
    let mut out = Migrated::default();
    // Entries, packed by day.
    let mut by_day: BTreeMap<String, Vec<super::store::Found>> = BTreeMap::new();
    for found in legacy::entries(&dir) {
        let day = found
            .header
            .node
            .rsplit_once('@')
            .map(|(_, d)| d)
            .filter(|d| d.len() == 10 && d.as_bytes()[4] == b'-')
            .unwrap_or(UNDATED)
            .to_string();
        by_day.entry(day).or_default().push(found);
    }
    let id = format!("migrated-{}-{}", now_ms(), std::process::id());
    for (day, found) in by_day {
        let path = dir.join("packs").join(&day).join(format!("{id}.pack"));
        let mut pack = PackWriter::create(&path)?;
        let mut files = Vec::new();
        for f in found {
            let Ok(table) = legacy::read(&f.path) else {
                out.skipped += 1;
                continue;
            };
            let h = &f.header;
            pack.append(
                &table,
                Placed {
                    key: h.key.clone(),
                    offset: 0,
                    length: 0,
                    checksum: String::new(),
                    rows: h.rows as u64,
                    bytes: table
                        .batches()
                        .iter()
                        .map(|b| b.get_array_memory_size() as u64)
                        .sum(),
                    pipeline: h.pipeline.clone(),
                    node: h.node.clone(),
                    op: h.op.clone(),
                    token: (h.token != h.key).then(|| h.token.clone()),
                    created_ms: h.created_ms,
                },
            )?;
            files.push(f.path);
        }
        if pack.is_empty() {
            continue;
        }
        let bytes = pack.bytes();
        let entries = pack.seal(&path)?;
        let relative = relative(&dir, &path);
        index_of(store, |i| {
            i.add_pack(&relative, &day, bytes, &entries, &[], now_ms())
        })?;
        out.entries += entries.len();
        for f in files {
            let _ = std::fs::remove_file(f);
        }
    }
    // Receipts.
    for path in files_under(&dir.join("sinks"))? {
        let key = path
            .file_stem()
            .and_then(|s| Key::from_hex(&s.to_string_lossy()));
        if let (Some(key), Some(receipt)) = (key, key.and_then(|k| legacy::receipt(&dir, &k))) {
            store.put_receipt(&key, &receipt, &[]);
            out.receipts += 1;
        }
        let _ = std::fs::remove_file(&path);
    }
    // What made each node's key.
    for (pipeline, manifest) in legacy::manifests(&dir) {
        let made: Vec<(String, String, String)> = manifest
            .nodes
            .iter()
            .filter_map(|(node, made)| {
                Some((
                    pipeline.clone(),
                    node.clone(),
                    serde_json::to_string(made).ok()?,
                ))
            })
            .collect();
        out.nodes += made.len();
        index_of(store, |i| i.put_made(&made))?;
        let _ = std::fs::remove_file(dir.join("pipelines").join(format!("{pipeline}.json")));
    }
    for sub in ["entries", "sinks", "pipelines"] {
        remove_empty_dirs(&dir.join(sub));
    }
    Ok(out)
}

/// Removes the whole cache folder's contents: how many files and bytes.
pub fn clear(store: &Store) -> std::io::Result<(usize, u64)> {
    let mut removed = (0, 0);
    let _ = store.with_index(|i| i.clear());
    for path in files_under(store.dir())? {
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(super::index::FILE))
        {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(&path)
            && std::fs::remove_file(&path).is_ok()
        {
            removed.0 += 1;
            removed.1 += meta.len();
        }
    }
    for sub in ["packs", "entries", "sinks", "pipelines"] {
        remove_empty_dirs(&store.dir().join(sub));
    }
    Ok(removed)
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Per (pipeline, operator, day): entries and bytes on disk.
pub fn usage(rows: &[super::store::Found]) -> BTreeMap<(String, String, String), (usize, u64)> {
    let mut by = BTreeMap::new();
    for e in rows {
        let slot: &mut (usize, u64) = by
            .entry((
                e.header.pipeline.clone(),
                e.header.op.clone(),
                e.day.clone().unwrap_or_else(|| "(loose)".into()),
            ))
            .or_default();
        slot.0 += 1;
        slot.1 += e.bytes;
    }
    by
}
