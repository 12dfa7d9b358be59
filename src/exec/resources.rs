//! Resource pools: what a named `resources:` entry limits — requests in
//! flight, requests started per second, and a circuit breaker that stops
//! hammering a source that is down.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use quiver_operators::ResourceSlot;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::shared_rate::RedisRate;
use crate::plan::ResourcePolicy;

/// One named pool, shared by every node that names it.
pub struct Resource {
    pub name: String,
    concurrency: Option<Arc<Semaphore>>,
    rate: Option<DefaultDirectRateLimiter>,
    /// The rate kept in Redis for every process, when `shared:` says so;
    /// `rate` stands in while Redis cannot be reached.
    shared: Option<RedisRate>,
    /// Whether the fall back to the local rate was said.
    fell_back: AtomicBool,
    breaker: Option<Breaker>,
    /// What operators see of it: its name and concurrency.
    slot: ResourceSlot,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Resource {
    pub fn new(name: &str, policy: &ResourcePolicy) -> Self {
        let rate = policy.rate.map(|r| {
            // Requests are spaced evenly (a burst of one): `20/s` starts one
            // request every 50 ms rather than twenty at once.
            let period = r.per / r.count;
            let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
                .expect("a positive period")
                .allow_burst(NonZeroU32::MIN);
            RateLimiter::direct(quota)
        });
        Self {
            name: name.to_string(),
            concurrency: policy
                .concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            rate,
            shared: match (&policy.shared, policy.rate) {
                (Some(shared), Some(rate)) => Some(RedisRate::new(name, shared, rate)),
                _ => None,
            },
            fell_back: AtomicBool::new(false),
            breaker: policy.breaker.map(|b| Breaker::new(b.failures, b.cooldown)),
            slot: ResourceSlot {
                name: name.into(),
                concurrency: policy.concurrency.map(|n| n as usize),
            },
        }
    }

    /// The resource as its nodes' operators see it (to size a connection
    /// pool by its concurrency).
    pub fn slot(&self) -> &ResourceSlot {
        &self.slot
    }

    /// Waits for a place in flight and a turn under the rate limit. The
    /// permit is held for one attempt.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = match &self.concurrency {
            Some(sem) => Some(sem.clone().acquire_owned().await.expect("never closed")),
            None => None,
        };
        if let Some(shared) = &self.shared {
            match shared.until_ready().await {
                Ok(()) => return permit,
                Err(e) => {
                    if !self.fell_back.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            resource = %self.name,
                            "The shared rate in {} cannot be used ({e}); this process keeps the rate alone, so processes together may pass it",
                            shared.url()
                        );
                    }
                }
            }
        }
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        permit
    }

    pub fn breaker(&self) -> Option<&Breaker> {
        self.breaker.as_ref()
    }
}

/// A circuit breaker: after `threshold` consecutive failures it opens and
/// fails attempts at once; after `cooldown` it lets one trial through
/// (half-open), which closes it on success or opens it again on failure.
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BreakerState {
    Closed { failures: u32 },
    Open { since: Instant },
    HalfOpen,
}

/// What the breaker says about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Open: try again after this long.
    Rejected(Duration),
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    pub fn admit(&self) -> Admission {
        let mut state = self.state.lock().expect("breaker lock");
        match *state {
            BreakerState::Closed { .. } => Admission::Allowed,
            BreakerState::HalfOpen => Admission::Rejected(self.cooldown / 4),
            BreakerState::Open { since } => {
                let waited = since.elapsed();
                if waited >= self.cooldown {
                    *state = BreakerState::HalfOpen;
                    Admission::Allowed
                } else {
                    Admission::Rejected(self.cooldown - waited)
                }
            }
        }
    }

    pub fn record(&self, success: bool) {
        let mut state = self.state.lock().expect("breaker lock");
        *state = match (*state, success) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => BreakerState::Open {
                since: Instant::now(),
            },
        };
    }

    pub fn is_open(&self) -> bool {
        matches!(
            *self.state.lock().expect("breaker lock"),
            BreakerState::Open { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_half_opens_after_cooldown() {
        let b = Breaker::new(2, Duration::from_millis(30));
        assert_eq!(b.admit(), Admission::Allowed);
        b.record(false);
        assert_eq!(b.admit(), Admission::Allowed);
        b.record(false);
        assert!(b.is_open());
        assert!(matches!(b.admit(), Admission::Rejected(_)));
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(
            b.admit(),
            Admission::Allowed,
            "one trial after the cooldown"
        );
        assert!(
            matches!(b.admit(), Admission::Rejected(_)),
            "only one trial at a time"
        );
        b.record(true);
        assert_eq!(b.admit(), Admission::Allowed);
        assert!(!b.is_open());
    }

    #[test]
    fn a_failed_trial_opens_the_breaker_again() {
        let b = Breaker::new(1, Duration::from_millis(10));
        b.record(false);
        std::thread::sleep(Duration::from_millis(12));
        assert_eq!(b.admit(), Admission::Allowed);
        b.record(false);
        assert!(b.is_open());
    }
}
