//! What an operator receives from the engine for one execution: the run's
//! thread budget, a cancellation token, and the run's DataFusion runtime
//! with its memory pool.
//!
//! The budget is what makes `--max-workers N` true of all the work, not
//! just of the scheduling: a compute node holds one thread of it while it
//! runs and may borrow more that are free at that moment (SQL partitions,
//! feature threads); CPU work inside an I/O node (generating, parsing,
//! encoding) waits for a thread of its own. So at most N pieces of CPU work
//! run at once, whatever the operators do.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryPool, MemoryReservation, UnboundedMemoryPool,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::OpError;

/// The CPU threads of a run. Cloning shares the budget.
#[derive(Clone, Debug)]
pub struct ThreadBudget {
    inner: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    total: usize,
    permits: Arc<Semaphore>,
    in_use: AtomicUsize,
    peak: AtomicUsize,
}

impl ThreadBudget {
    /// A budget of `threads` (at least one).
    pub fn new(threads: usize) -> Self {
        let total = threads.max(1);
        Self {
            inner: Arc::new(Budget {
                total,
                permits: Arc::new(Semaphore::new(total)),
                in_use: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }),
        }
    }

    /// A budget of one thread per core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub fn total(&self) -> usize {
        self.inner.total
    }

    /// Threads taken right now.
    pub fn in_use(&self) -> usize {
        self.inner.in_use.load(Ordering::Relaxed)
    }

    /// The most threads ever taken at once.
    pub fn peak(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }

    /// One thread, if one is free now.
    pub fn try_acquire_one(&self) -> Option<Threads> {
        let permit = self.inner.permits.clone().try_acquire_owned().ok()?;
        Some(self.taken(Some(permit), 1, 0))
    }

    /// Waits for one thread.
    pub async fn acquire_one(&self) -> Threads {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the budget's semaphore is never closed");
        self.taken(Some(permit), 1, 0)
    }

    /// Up to `want` threads that are free now, never waiting; maybe none.
    fn try_acquire_up_to(&self, want: usize) -> Option<Threads> {
        (1..=want.min(self.inner.total)).rev().find_map(|n| {
            let permit = self
                .inner
                .permits
                .clone()
                .try_acquire_many_owned(n as u32)
                .ok()?;
            Some(self.taken(Some(permit), n, 0))
        })
    }

    fn taken(&self, permit: Option<OwnedSemaphorePermit>, own: usize, borrowed: usize) -> Threads {
        let now = self.inner.in_use.fetch_add(own, Ordering::Relaxed) + own;
        self.inner.peak.fetch_max(now, Ordering::Relaxed);
        Threads {
            _permit: permit,
            own,
            borrowed,
            budget: self.inner.clone(),
        }
    }
}

/// Threads taken from a [`ThreadBudget`], given back on drop.
#[derive(Debug)]
pub struct Threads {
    _permit: Option<OwnedSemaphorePermit>,
    /// Taken by this guard.
    own: usize,
    /// Already held by the caller (a compute node's own thread).
    borrowed: usize,
    budget: Arc<Budget>,
}

impl Threads {
    /// How many threads the work may use at once.
    pub fn count(&self) -> usize {
        self.own + self.borrowed
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.own, Ordering::Relaxed);
    }
}

/// Set when the work is no longer wanted (a timeout, Ctrl-C, a failed run).
/// Blocking work checks it between pieces and stops.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels the token when dropped: held by the future
    /// running an operator, it tells the operator's blocking work to stop
    /// when that future is dropped (timed out or aborted).
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

/// See [`CancelToken::cancel_on_drop`].
/// Holds the token until disarmed, so that a disarmed guard drops its
/// share of the token like any other value (forgetting the guard instead
/// would leak the token's allocation on every finished attempt).
#[derive(Debug)]
pub struct CancelOnDrop(Option<CancelToken>);

impl CancelOnDrop {
    /// The work finished: dropping the guard no longer cancels.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.0.take() {
            token.cancel();
        }
    }
}

/// The pipeline resource a node runs under (`resource: db`), as far as an
/// operator needs to know it: a name to share things by, and how many of
/// its nodes may run at once (the size of a connection pool).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceSlot {
    pub name: Arc<str>,
    pub concurrency: Option<usize>,
}

/// What operators keep for the whole run and share between nodes, by key:
/// connection pools. Dropped with the run.
#[derive(Default)]
pub struct RunState {
    items: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = match self.items.lock() {
            Ok(items) => items.keys().cloned().collect(),
            Err(_) => Vec::new(),
        };
        f.debug_struct("RunState").field("keys", &keys).finish()
    }
}

impl RunState {
    /// The item under `key`, made by `make` the first time it is asked for.
    /// Keys name their owner (`postgres:…`), so that two kinds of item
    /// never meet under one key; if they do, the later kind is not kept.
    pub fn get_or_insert<T: Any + Send + Sync>(
        &self,
        key: &str,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(item) = items.get(key).cloned()
            && let Ok(item) = item.downcast::<T>()
        {
            return item;
        }
        let item = Arc::new(make());
        items.insert(key.to_string(), item.clone());
        item
    }
}

/// What an operator receives for one execution. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ExecContext {
    budget: ThreadBudget,
    /// Threads of the budget this execution already holds (one for a
    /// compute node, none for an I/O node).
    held: usize,
    cancel: CancelToken,
    runtime: Arc<RuntimeEnv>,
    memory_limit: Option<usize>,
    state: Arc<RunState>,
    resource: Option<ResourceSlot>,
}

impl ExecContext {
    /// The context of a run: its thread budget and, if given, a limit on
    /// the memory that operators reserve (DataFusion spills to disk before
    /// it gives up).
    pub fn new(budget: ThreadBudget, memory_limit: Option<usize>) -> Result<Self, OpError> {
        Ok(Self::with_runtime(
            budget,
            Self::runtime(memory_limit)?,
            memory_limit,
        ))
    }

    /// A DataFusion runtime whose memory pool holds `memory_limit` bytes
    /// (spilling operators spill to the system's temporary folder).
    pub fn runtime(memory_limit: Option<usize>) -> Result<Arc<RuntimeEnv>, OpError> {
        let pool: Arc<dyn MemoryPool> = match memory_limit {
            Some(bytes) => Arc::new(FairSpillPool::new(bytes)),
            None => Arc::new(UnboundedMemoryPool::default()),
        };
        Ok(RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .build_arc()?)
    }

    /// A context on an existing runtime, built by [`ExecContext::runtime`]
    /// with the same `memory_limit`.
    pub fn with_runtime(
        budget: ThreadBudget,
        runtime: Arc<RuntimeEnv>,
        memory_limit: Option<usize>,
    ) -> Self {
        Self {
            budget,
            held: 0,
            cancel: CancelToken::new(),
            runtime,
            memory_limit,
            state: Arc::default(),
            resource: None,
        }
    }

    /// A context for running an operator outside the engine (tests, library
    /// code): one thread per core, no memory limit.
    pub fn standalone() -> Self {
        Self::new(ThreadBudget::per_core(), None).expect("an unbounded runtime builds")
    }

    /// The context of one attempt: `held` threads already taken for it, and
    /// its own cancellation.
    pub fn for_attempt(&self, held: usize, cancel: CancelToken) -> Self {
        Self {
            held,
            cancel,
            ..self.clone()
        }
    }

    /// The same context for a node that runs under `resource`.
    pub fn on_resource(mut self, resource: Option<ResourceSlot>) -> Self {
        self.resource = resource;
        self
    }

    pub fn budget(&self) -> &ThreadBudget {
        &self.budget
    }

    /// The resource the node runs under, if it names one.
    pub fn resource(&self) -> Option<&ResourceSlot> {
        self.resource.as_ref()
    }

    /// What the run's operators share: one connection pool per resource.
    pub fn run_state(&self) -> &RunState {
        &self.state
    }

    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// `Err` once the work is no longer wanted: blocking loops call it
    /// between pieces of work and return the error.
    pub fn check_cancelled(&self) -> Result<(), OpError> {
        if self.is_cancelled() {
            Err(OpError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The run's DataFusion runtime: one memory pool for every query.
    pub fn runtime_env(&self) -> &Arc<RuntimeEnv> {
        &self.runtime
    }

    pub fn memory_limit(&self) -> Option<usize> {
        self.memory_limit
    }

    /// Threads for a piece of parallel work: the ones this execution holds,
    /// plus more that are free now, up to `want` in all. An execution that
    /// holds none waits for one.
    pub async fn threads(&self, want: usize) -> Threads {
        let want = want.max(1);
        if self.held == 0 {
            let first = self.budget.acquire_one().await;
            return match self.budget.try_acquire_up_to(want - 1) {
                Some(mut more) => {
                    more.borrowed = 0;
                    merge(first, more)
                }
                None => first,
            };
        }
        let borrowed = self.held.min(want);
        match self.budget.try_acquire_up_to(want - borrowed) {
            Some(mut more) => {
                more.borrowed = borrowed;
                more
            }
            None => self.budget.taken(None, 0, borrowed),
        }
    }

    /// Runs blocking CPU work off the async threads, inside the budget:
    /// `f` gets up to `want` threads (it is told how many) and this context,
    /// whose cancellation it should check between pieces of work.
    pub async fn run_cpu<T, F>(&self, want: usize, f: F) -> Result<T, OpError>
    where
        T: Send + 'static,
        F: FnOnce(&ExecContext, usize) -> Result<T, OpError> + Send + 'static,
    {
        let threads = self.threads(want).await;
        let ctx = self.clone();
        // The threads go with the work: if this future is dropped, they are
        // given back only when the blocking work has actually stopped.
        let work = tokio::task::spawn_blocking(move || {
            let n = threads.count();
            let out = f(&ctx, n);
            drop(threads);
            out
        });
        match work.await {
            Ok(out) => out,
            Err(e) => Err(OpError::Internal(format!("a CPU task panicked: {e}"))),
        }
    }

    /// Runs a brief piece of CPU work (well under a millisecond) on this
    /// thread, inside the budget: handing it to a blocking thread and back
    /// would cost as much as the work. Longer work goes to [`Self::run_cpu`].
    pub async fn run_cpu_brief<T>(&self, f: impl FnOnce(&ExecContext) -> T) -> T {
        let threads = self.threads(1).await;
        let out = f(self);
        drop(threads);
        out
    }

    /// Reserves `bytes` of the run's memory for `consumer` (an operator that
    /// cannot spill), or fails naming the limit.
    pub fn reserve(&self, consumer: &str, bytes: usize) -> Result<MemoryReservation, OpError> {
        let reservation = MemoryConsumer::new(consumer).register(&self.runtime.memory_pool);
        reservation.try_grow(bytes).map_err(|e| {
            OpError::MemoryLimit(format!(
                "{consumer} needs {} but the run's memory limit of {} is used up ({}); \
                 raise --memory-limit or run fewer nodes at once (--max-workers)",
                human_bytes(bytes),
                self.memory_limit
                    .map_or_else(|| "unlimited".to_string(), human_bytes),
                e.strip_backtrace()
            ))
        })?;
        Ok(reservation)
    }
}

fn merge(mut first: Threads, mut more: Threads) -> Threads {
    // One guard for both: `first` keeps its permit, `more`'s count moves over.
    first.own += more.own;
    more.own = 0;
    first
        ._permit
        .as_mut()
        .expect("a waited-for thread has a permit")
        .merge(more._permit.take().expect("taken threads have a permit"));
    first
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disarmed_guard_neither_cancels_nor_keeps_the_token() {
        let token = CancelToken::new();
        let guard = token.cancel_on_drop();
        assert_eq!(Arc::strong_count(&token.0), 2);
        guard.disarm();
        assert!(!token.is_cancelled());
        assert_eq!(
            Arc::strong_count(&token.0),
            1,
            "the guard's share is dropped"
        );
        drop(token.cancel_on_drop());
        assert!(token.is_cancelled(), "an armed guard cancels when dropped");
    }

    #[tokio::test]
    async fn a_compute_node_borrows_its_own_thread_and_takes_only_free_ones() {
        let budget = ThreadBudget::new(3);
        let ctx = ExecContext::new(budget.clone(), None).unwrap();
        let node = budget.try_acquire_one().unwrap();
        let attempt = ctx.for_attempt(1, CancelToken::new());
        let t = attempt.threads(8).await;
        assert_eq!(t.count(), 3, "its own thread plus the two free ones");
        assert_eq!(budget.in_use(), 3);
        assert!(budget.try_acquire_one().is_none());
        drop(t);
        assert_eq!(budget.in_use(), 1, "its own thread stays with the node");
        drop(node);
        assert_eq!((budget.in_use(), budget.peak()), (0, 3));
    }

    #[tokio::test]
    async fn io_work_waits_for_a_thread_of_its_own() {
        let budget = ThreadBudget::new(1);
        let ctx = ExecContext::new(budget.clone(), None).unwrap();
        let held = budget.try_acquire_one().unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), ctx.threads(2));
        assert!(waiting.await.is_err(), "no thread is free");
        drop(held);
        let t = ctx.threads(2).await;
        assert_eq!(t.count(), 1);
        assert_eq!(budget.peak(), 1);
    }

    #[tokio::test]
    async fn blocking_work_gives_its_threads_back_when_it_stops() {
        let budget = ThreadBudget::new(2);
        let ctx = ExecContext::new(budget.clone(), None).unwrap();
        let cancel = CancelToken::new();
        let attempt = ctx.for_attempt(0, cancel.clone());
        let guard = cancel.cancel_on_drop();
        let work = attempt.run_cpu(2, |ctx, n| {
            assert_eq!(n, 2);
            while !ctx.is_cancelled() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            ctx.check_cancelled()
        });
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(30), work).await;
        assert!(timed_out.is_err());
        assert_eq!(budget.in_use(), 2, "still working");
        drop(guard);
        let stopped = std::time::Instant::now();
        while budget.in_use() > 0 {
            assert!(stopped.elapsed() < std::time::Duration::from_millis(100));
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[test]
    fn a_reservation_over_the_limit_names_it() {
        let ctx = ExecContext::new(ThreadBudget::new(1), Some(1 << 20)).unwrap();
        let _ok = ctx.reserve("small", 1000).unwrap();
        let err = ctx.reserve("features.compute", 2 << 20).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("features.compute needs 2.0 MiB"), "{text}");
        assert!(text.contains("memory limit of 1.0 MiB"), "{text}");
        assert_eq!(err.fault(), crate::Fault::Environment);
    }
}
