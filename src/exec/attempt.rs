//! Running one node: attempts under its resource's limits, each with a
//! timeout, retried with backoff while the failure is transient.
//!
//! The futures of the paths not every node takes (a resource's limits, a
//! timeout, waits before retrying) are boxed when taken, and a node's task
//! is this one future: the task stays small (about 0.5 KB rather than
//! 1.4 KB), and spawning it, which every node does, stays cheap.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use petgraph::graph::NodeIndex;
use quiver_operators::{CancelToken, ExecContext, Inputs, OpError, Operator, Table};

use super::memory::Buffers;
use super::resources::{Admission, Resource};
use crate::plan::{AttemptPolicy, Graph, Secrets};

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
    /// Masked in log lines.
    pub secrets: Arc<Secrets>,
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
    /// The output's buffers, listed in the node's task rather than by the
    /// scheduler, which every node's end goes through.
    pub buffers: Option<Buffers>,
}

/// A node that finished: its index, when it started, how it went.
pub type Finished = (usize, Instant, Outcome);

impl Attempts {
    /// Runs the node: its attempts, from when it started.
    pub async fn run(self, inputs: Inputs) -> Finished {
        // The node's own thread of the budget. The scheduler starts no more
        // such nodes than the budget holds, but an operator may still be
        // using threads it borrowed: then the node waits for one to free.
        let _thread = match self.held {
            0 => None,
            _ => match self.ctx.budget().try_acquire_one() {
                Some(thread) => Some(thread),
                None => Some(Box::pin(self.ctx.budget().acquire_one()).await),
            },
        };
        let start = Instant::now();
        let mut outcome = self.attempts(inputs).await;
        if let Ok(table) = &outcome.result {
            outcome.buffers = Some(super::memory::buffers(table));
        }
        (self.node.index(), start, outcome)
    }

    async fn attempts(&self, mut inputs: Inputs) -> Outcome {
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
                        buffers: None,
                    };
                }
                tracing::debug!(node = %self.id(), resource = %resource.name, wait_ms = retry_in.as_millis() as u64, "Circuit open, waiting");
                rejections += 1;
                wait += retry_in;
                Box::pin(tokio::time::sleep(retry_in)).await;
                continue;
            }
            attempts += 1;

            let permit = match &self.resource {
                Some(r) => {
                    let waiting = Instant::now();
                    let permit = Box::pin(r.acquire()).await;
                    wait += waiting.elapsed();
                    permit
                }
                None => None,
            };
            // The last attempt takes the inputs; earlier ones share them.
            let inputs = if last {
                std::mem::take(&mut inputs)
            } else {
                inputs.clone()
            };
            let result = self.attempt(inputs).await;
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
                    let e = self.secrets.redact(&e.to_string());
                    tracing::warn!(node = %self.id(), attempt = attempts, delay_ms = delay.as_millis() as u64, error = %e, "Retrying after a transient failure");
                    Box::pin(tokio::time::sleep(delay)).await;
                }
                result => {
                    return Outcome {
                        result,
                        attempts,
                        wait,
                        buffers: None,
                    };
                }
            }
        }
    }

    fn id(&self) -> &str {
        &self.graph[self.node].id
    }

    /// One execution within the timeout; a panic is a failure. The
    /// executor has already put the whole node on the runtime that fits its
    /// work.
    async fn attempt(&self, inputs: Inputs) -> Result<Table, OpError> {
        // Each attempt has its own cancellation: when its future is dropped
        // (timed out, or the run aborted it), the guard tells the operator's
        // blocking work to stop.
        let cancel = CancelToken::new();
        let ctx = self.ctx.for_attempt(self.held, cancel.clone());
        let guard = cancel.cancel_on_drop();
        let run = async move {
            let out = CatchPanic(self.operator.execute(&ctx, inputs)).await;
            guard.disarm();
            out
        };
        match self.policy.timeout {
            None => run.await,
            Some(limit) => Box::pin(tokio::time::timeout(limit, run))
                .await
                .unwrap_or_else(|_| Err(timed_out(limit))),
        }
    }
}

/// Polls an operator's future, turning a panic into an internal error (a
/// bug) that says what panicked, so that the node fails, not the run.
struct CatchPanic<F>(F);

impl<F: Future<Output = Result<Table, OpError>> + Unpin> Future for CatchPanic<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let run = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(run).poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let what = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic without a message");
                Poll::Ready(Err(OpError::Internal(format!(
                    "the node's task panicked: {what}"
                ))))
            }
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
