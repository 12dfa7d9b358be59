//! Running one node: attempts under its resource's limits, each with a
//! timeout, retried with backoff while the failure is transient.

use std::sync::Arc;
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use quiver_operators::{CancelToken, ExecContext, Inputs, OpError, Operator, Table};

use super::resources::{Admission, Resource};
use crate::plan::{AttemptPolicy, Graph};

/// What one node needs to run.
pub struct Attempts {
    /// The plan's nodes and this one's index, for its name in logs (shared:
    /// nothing is copied per node).
    pub graph: Arc<Graph>,
    pub node: NodeIndex,
    pub operator: Arc<dyn Operator>,
    pub policy: AttemptPolicy,
    pub resource: Option<Arc<Resource>>,
    /// Seeds the backoff jitter.
    pub jitter_seed: u64,
    /// The run's context: thread budget, DataFusion runtime.
    pub ctx: ExecContext,
    /// Threads of the budget the executor took for this node.
    pub held: usize,
}

/// How running a node went.
pub struct Outcome {
    pub result: Result<Table, OpError>,
    pub attempts: u32,
    /// Time spent waiting for the resource (concurrency, rate, open breaker).
    pub wait: Duration,
}

impl Attempts {
    pub async fn run(self, inputs: Inputs) -> Outcome {
        let mut attempts = 0;
        let mut rejections = 0;
        let mut wait = Duration::ZERO;
        let mut jitter = self.jitter_seed | 1;
        loop {
            let last = attempts + rejections + 1 >= self.policy.retry.max_attempts;
            let breaker = self
                .resource
                .as_ref()
                .and_then(|r| r.breaker().map(|b| (r, b)));
            if let Some((resource, breaker)) = breaker
                && let Admission::Rejected(retry_in) = breaker.admit()
            {
                if last {
                    let message = format!(
                        "circuit breaker of resource '{}' is open: the source failed repeatedly",
                        resource.name
                    );
                    return Outcome {
                        result: Err(OpError::Source {
                            message,
                            transient: true,
                        }),
                        attempts,
                        wait,
                    };
                }
                tracing::debug!(node = %self.id(), resource = %resource.name, wait_ms = retry_in.as_millis() as u64, "Circuit open, waiting");
                rejections += 1;
                wait += retry_in;
                tokio::time::sleep(retry_in).await;
                continue;
            }
            attempts += 1;

            let waiting = Instant::now();
            let permit = match &self.resource {
                Some(r) => r.acquire().await,
                None => None,
            };
            wait += waiting.elapsed();
            let result = self.attempt(inputs.clone()).await;
            drop(permit);

            if let Some(breaker) = self.resource.as_ref().and_then(|r| r.breaker()) {
                // Only the source's own failures count against it, not a bad query.
                let source_failed = matches!(&result, Err(e) if e.is_transient());
                breaker.record(!source_failed);
            }
            match result {
                Err(e) if e.is_transient() && !last => {
                    jitter = xorshift(jitter);
                    let backoff = self.policy.retry.backoff(
                        attempts + rejections,
                        (jitter >> 11) as f64 / (1u64 << 53) as f64,
                    );
                    let delay = e.retry_after().map_or(backoff, |r| r.max(backoff));
                    tracing::warn!(node = %self.id(), attempt = attempts, delay_ms = delay.as_millis() as u64, error = %e, "Retrying after a transient failure");
                    tokio::time::sleep(delay).await;
                }
                result => {
                    return Outcome {
                        result,
                        attempts,
                        wait,
                    };
                }
            }
        }
    }

    fn id(&self) -> &str {
        &self.graph[self.node].id
    }

    /// One execution within the timeout. The executor has already put the
    /// whole node on the runtime that fits its work.
    async fn attempt(&self, inputs: Inputs) -> Result<Table, OpError> {
        // Each attempt has its own cancellation: when its future is dropped
        // (timed out, or the run aborted it), the guard tells the operator's
        // blocking work to stop.
        let cancel = CancelToken::new();
        let ctx = self.ctx.for_attempt(self.held, cancel.clone());
        let guard = cancel.cancel_on_drop();
        let run = async move {
            let out = self.operator.execute(&ctx, inputs).await;
            guard.disarm();
            out
        };
        match self.policy.timeout {
            None => run.await,
            Some(limit) => tokio::time::timeout(limit, run)
                .await
                .unwrap_or_else(|_| Err(timed_out(limit))),
        }
    }
}

fn timed_out(limit: Duration) -> OpError {
    OpError::Source {
        message: format!("timed out after {limit:?}"),
        transient: true,
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
