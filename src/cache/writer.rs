//! Writes node outputs into packs on a thread of its own, so that a node's
//! consumers never wait for its output to reach the disk.
//!
//! A node that finishes hands its output to the writer and goes on; the
//! writer appends it to the open pack of its day (`packs/DAY/WRITER.pack`,
//! one per process) and seals a pack — footer, fsync, rename, one index
//! transaction — when more days are open than [`MAX_OPEN`] (the executor
//! works through the days in order, so the oldest is done), when it
//! reaches [`PACK_MAX`] bytes, and at the end of the run, which is the only
//! time anyone waits for it.
//!
//! The outputs waiting to be written are bounded: a node that would pass
//! the budget waits for room, and the bytes waiting count against the
//! run's hold limit (see [`crate::exec::RunOptions::pending_writes`]).
//!
//! The first write that fails (a full disk) turns the cache off for the
//! rest of the run: the packs not yet sealed are removed, one warning says
//! so, and the run's outputs, which the cache must never cost, go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use quiver_operators::Table;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::index::Index;
use super::pack::{PackWriter, Placed};
use super::store::now_ms;

/// Days with a pack open at once.
const MAX_OPEN: usize = 32;
/// A pack this large is sealed and the day goes on in another.
pub(crate) const PACK_MAX: u64 = 1 << 30;
/// The free space is checked again after this many bytes written, or a
/// 64th of the disk when that is less (on a small disk, the cache must
/// stop before it takes the room the run's outputs need).
const CHECK_EVERY: u64 = 64 << 20;

/// One output to store.
pub struct Job {
    pub day: String,
    pub placed: Placed,
    /// (pipeline, node, what made its key), recorded with it.
    pub made: Option<(String, String, String)>,
    pub table: Table,
}

/// What the writer did since it was last asked.
#[derive(Debug, Default, Clone)]
pub struct Written {
    pub entries: u64,
    /// Bytes of sealed packs.
    pub bytes: u64,
    pub packs: Vec<PathBuf>,
}

enum Msg {
    Put(Box<Job>, Option<OwnedSemaphorePermit>, usize),
    Finish(mpsc::Sender<Written>),
}

/// What the writer and the nodes handing it outputs share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Set by the first failed write: no more outputs are taken.
    pub disabled: AtomicBool,
    /// Bytes handed over and not yet written.
    pub pending: Arc<AtomicUsize>,
}

impl Shared {
    /// Turns the cache off for the rest of the run, saying why the first
    /// time only.
    pub fn disable(&self, why: &str) {
        if !self.disabled.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "Caching is off for the rest of this run: {why}. The run's outputs are not \
                 affected; what was not stored is computed again next time"
            );
        }
    }
}

pub struct Writer {
    tx: Mutex<mpsc::Sender<Msg>>,
    budget: Arc<Semaphore>,
    /// The budget in KiB (the semaphore's unit).
    budget_kib: usize,
    pub shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer of the cache folder `dir`, its packs named `id`,
    /// holding at most `budget` bytes of outputs not yet written.
    pub fn start(dir: PathBuf, id: String, budget: usize, shared: Arc<Shared>) -> Writer {
        let (tx, rx) = mpsc::channel();
        let budget_kib = (budget / 1024).clamp(1, u32::MAX as usize);
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("quiver-cache-writer".into())
            .spawn(move || Worker::new(dir, id, state).serve(rx))
            .expect("cannot start the cache writer thread");
        Writer {
            tx: Mutex::new(tx),
            budget: Arc::new(Semaphore::new(budget_kib)),
            budget_kib,
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Hands `job` to the writer, waiting only while the outputs not yet
    /// written fill the budget.
    pub async fn submit(&self, job: Job) {
        if self.shared.disabled.load(Ordering::Relaxed) {
            return;
        }
        let bytes = job.placed.bytes as usize;
        let kib = (bytes / 1024).clamp(1, self.budget_kib) as u32;
        let permit = self.budget.clone().acquire_many_owned(kib).await.ok();
        self.shared.pending.fetch_add(bytes, Ordering::Relaxed);
        let sent = self
            .tx
            .lock()
            .expect("writer")
            .send(Msg::Put(Box::new(job), permit, bytes));
        if sent.is_err() {
            self.shared.pending.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Seals every open pack and says what was written since the last call.
    pub fn finish(&self) -> Written {
        let (reply, answer) = mpsc::channel();
        if self
            .tx
            .lock()
            .expect("writer")
            .send(Msg::Finish(reply))
            .is_err()
        {
            return Written::default();
        }
        answer.recv().unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has sealed its packs.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(self.tx.get_mut().expect("writer"), tx));
        if let Some(thread) = self.thread.get_mut().expect("writer").take() {
            let _ = thread.join();
        }
    }
}

struct Open {
    day: String,
    pack: PackWriter,
    path: PathBuf,
    made: Vec<(String, String, String)>,
    last: u64,
}

struct Worker {
    dir: PathBuf,
    id: String,
    shared: Arc<Shared>,
    index: Option<Index>,
    open: Vec<Open>,
    /// Packs sealed per day, for the next one's name.
    sealed: HashMap<String, u32>,
    written: Written,
    tick: u64,
    /// Bytes written since the free space was last checked.
    unchecked: u64,
    /// Bytes between two checks (see [`CHECK_EVERY`]).
    check_every: u64,
}

impl Worker {
    fn new(dir: PathBuf, id: String, shared: Arc<Shared>) -> Worker {
        Worker {
            dir,
            id,
            shared,
            index: None,
            open: Vec::new(),
            sealed: HashMap::new(),
            written: Written::default(),
            tick: 0,
            unchecked: CHECK_EVERY,
            check_every: CHECK_EVERY,
        }
    }

    fn serve(mut self, rx: mpsc::Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Put(job, permit, bytes) => {
                    if !self.shared.disabled.load(Ordering::Relaxed)
                        && let Err(e) = self.put(*job)
                    {
                        self.fail(&e);
                    }
                    self.shared.pending.fetch_sub(bytes, Ordering::Relaxed);
                    drop(permit);
                }
                Msg::Finish(reply) => {
                    self.seal_all();
                    let _ = reply.send(std::mem::take(&mut self.written));
                }
            }
        }
        self.seal_all();
    }

    fn put(&mut self, job: Job) -> Result<(), String> {
        self.tick += 1;
        if self.unchecked >= self.check_every {
            self.unchecked = 0;
            if let Some(total) = leaves_room(&self.dir)? {
                self.check_every = (total / 64).clamp(64 << 10, CHECK_EVERY);
            }
        }
        let at = match self.open.iter().position(|o| o.day == job.day) {
            Some(at) => at,
            None => {
                if self.open.len() >= MAX_OPEN {
                    let oldest = (0..self.open.len())
                        .min_by_key(|&i| self.open[i].last)
                        .expect("open packs");
                    self.seal(oldest)?;
                }
                let n = self.sealed.get(&job.day).copied().unwrap_or(0);
                let name = if n == 0 {
                    format!("{}.pack", self.id)
                } else {
                    format!("{}-{}.pack", self.id, n + 1)
                };
                let path = self.dir.join("packs").join(&job.day).join(name);
                let pack = PackWriter::create(&path)
                    .map_err(|e| format!("cannot start a pack in {}: {e}", self.dir.display()))?;
                self.open.push(Open {
                    day: job.day.clone(),
                    pack,
                    path,
                    made: Vec::new(),
                    last: 0,
                });
                self.open.len() - 1
            }
        };
        let open = &mut self.open[at];
        open.last = self.tick;
        let before = open.pack.bytes();
        open.pack
            .append(&job.table, job.placed)
            .map_err(|e| format!("cannot write to {}: {e}", self.dir.display()))?;
        open.made.extend(job.made);
        self.unchecked += open.pack.bytes() - before;
        if open.pack.bytes() >= PACK_MAX {
            self.seal(at)?;
        }
        Ok(())
    }

    fn seal(&mut self, at: usize) -> Result<(), String> {
        let open = self.open.swap_remove(at);
        *self.sealed.entry(open.day.clone()).or_default() += 1;
        if open.pack.is_empty() {
            return Ok(());
        }
        let bytes = open.pack.bytes();
        let entries = open
            .pack
            .seal(&open.path)
            .map_err(|e| format!("cannot seal {}: {e}", open.path.display()))?;
        let relative = relative(&self.dir, &open.path);
        let recorded = self.index().and_then(|index| {
            index
                .add_pack(&relative, &open.day, bytes, &entries, &open.made, now_ms())
                .map_err(|e| format!("cannot record {relative} in the cache index: {e}"))
        });
        if let Err(e) = recorded {
            // Not in the index: nobody would ever read it.
            let _ = std::fs::remove_file(&open.path);
            return Err(e);
        }
        self.written.entries += entries.len() as u64;
        self.written.bytes += bytes;
        self.written.packs.push(open.path);
        Ok(())
    }

    fn seal_all(&mut self) {
        while !self.open.is_empty() {
            if let Err(e) = self.seal(self.open.len() - 1) {
                self.fail(&e);
            }
        }
    }

    fn index(&mut self) -> Result<&mut Index, String> {
        if self.index.is_none() {
            let index = Index::open(&self.dir).map_err(|e| {
                format!("cannot open the cache index in {}: {e}", self.dir.display())
            })?;
            self.index = Some(index);
        }
        Ok(self.index.as_mut().expect("just opened"))
    }

    /// The first failure turns the cache off for the rest of the run, with
    /// one warning; the packs not sealed go (their files with them).
    fn fail(&mut self, why: &str) {
        self.open.clear();
        self.shared.disable(why);
    }
}

/// Outputs come before the cache: it stops writing while the disk holding
/// `dir` has less free than a quarter of its size or 1 GiB, whichever is
/// less.
/// The disk's size, where the system says.
fn leaves_room(dir: &Path) -> Result<Option<u64>, String> {
    let Some((free, total)) = disk_space(dir) else {
        return Ok(None);
    };
    let reserve = (total / 4).min(1 << 30);
    if free < reserve {
        return Err(format!(
            "the disk holding {} has {} free, less than the {} kept for the run's outputs",
            dir.display(),
            quiver_operators::human_bytes(free as usize),
            quiver_operators::human_bytes(reserve as usize)
        ));
    }
    Ok(Some(total))
}

/// Bytes free to an unprivileged writer, and the size, of the disk
/// holding `dir` (or the nearest folder above it that exists).
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let existing = dir.ancestors().find(|d| d.exists())?;
    let path = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a valid out
    // parameter of the right type.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let unit = stat.f_frsize as u64;
    Some((stat.f_bavail as u64 * unit, stat.f_blocks as u64 * unit))
}

/// `path` relative to `dir`, with `/` between its parts.
pub fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}
