//! How the executor runs each node: the limits of the resources nodes share,
//! and each node's retries, timeout and failure policy. Resolved by the
//! compiler from what the pipeline wrote — a node's own settings over its
//! resource's, an `on_error` default already turned into a table — so the
//! executor reads them as they are and never sees the spec.

use std::sync::Arc;
use std::time::Duration;

use quiver_operators::Table;

/// The limits of one named resource, shared by every node that names it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourcePolicy {
    /// Attempts in flight at once.
    pub concurrency: Option<u32>,
    /// Attempts started per unit of time.
    pub rate: Option<Rate>,
    /// The timeout per attempt of the nodes using the resource.
    pub timeout: Option<Duration>,
    /// The retries of the nodes using the resource.
    pub retry: Option<RetryPolicy>,
    pub breaker: Option<BreakerPolicy>,
    /// Where the rate is kept for every process: `(host:port, db)` of a
    /// Redis server.
    pub shared: Option<SharedRate>,
}

/// A rate kept in Redis, under a key named after the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRate {
    /// `host:port`.
    pub address: String,
    pub db: u32,
    /// The URL as written, for messages.
    pub url: String,
}

impl SharedRate {
    /// `redis://HOST[:PORT][/DB]`.
    pub fn parse(url: &str) -> Result<SharedRate, String> {
        let help = "write it as redis://HOST:PORT or redis://HOST:PORT/DB";
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("'{url}' is not a Redis URL; {help}"))?;
        let (host, db) = match rest.split_once('/') {
            Some((host, "")) => (host, 0),
            Some((host, db)) => (
                host,
                db.parse()
                    .map_err(|_| format!("'{db}' is not a database number; {help}"))?,
            ),
            None => (rest, 0),
        };
        if host.is_empty() || host.contains('@') {
            return Err(format!(
                "'{url}' names no host (or has credentials); {help}"
            ));
        }
        let address = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:6379")
        };
        Ok(SharedRate {
            address,
            db,
            url: url.to_string(),
        })
    }
}

/// `count` starts per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

/// Open after `failures` consecutive failures; let one trial through after
/// `cooldown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub cooldown: Duration,
}

/// How often, and how far apart, a transient failure is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles with each retry.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(100);
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);

    /// One attempt, no retry.
    pub const NONE: RetryPolicy = RetryPolicy::attempts(1);

    /// `max_attempts` attempts with the default backoff.
    pub const fn attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            backoff: Self::DEFAULT_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
        }
    }

    /// The wait before retry number `retry` (1 for the first retry):
    /// exponential, capped, with "full jitter" between half and all of it so
    /// that many failing nodes do not retry in lockstep. `jitter` is in [0, 1].
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(20));
        let capped = exp.min(self.max_backoff);
        capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::NONE
    }
}

/// How one node's attempts go: its retries and its timeout per attempt,
/// its own settings taking precedence over its resource's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptPolicy {
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
}

/// What a node's failure does to the run.
#[derive(Debug, Clone, Default)]
pub enum OnError {
    /// No new node starts; running ones finish.
    #[default]
    Fail,
    /// The node produces nothing and the run goes on.
    Skip,
    /// The node produces this table instead.
    Default(Arc<Table>),
}

impl PartialEq for OnError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (OnError::Fail, OnError::Fail) | (OnError::Skip, OnError::Skip) => true,
            (OnError::Default(a), OnError::Default(b)) => {
                a.schema() == b.schema() && a.batches() == b.batches()
            }
            _ => false,
        }
    }
}

/// For fan-ins: whether every instance must have produced an output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Require {
    /// The instances that produced something; the missing keys are reported.
    #[default]
    Any,
    /// Every instance: a missing one fails the node.
    All,
}

/// How the executor runs one node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodePolicy {
    /// The resource the node draws from: an index into [`super::Plan::resources`].
    pub resource: Option<usize>,
    pub attempts: AttemptPolicy,
    pub on_error: OnError,
    pub require: Require,
    /// The node's `cache:` setting.
    pub cache: CacheSetting,
}

/// What a node's `cache:` says; the operator decides when it says nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheSetting {
    /// The operator's own freshness (for good, or a TTL for live sources).
    #[default]
    Operator,
    /// `cache: false`: always run.
    Off,
    /// `cache: true`: reused for good.
    Forever,
    /// `cache: {ttl: …}`.
    Ttl(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 5,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(30),
        };
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(10));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(20));
        assert_eq!(p.backoff(3, 1.0), Duration::from_millis(30));
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(10));
    }
}
