//! The one place quiver builds DataFusion sessions.
//!
//! Every session runs on the run's DataFusion runtime (its memory pool and
//! spill files) from the [`ExecContext`], with as many partitions as the
//! threads its caller took from the budget. It is also the seam a later
//! change uses to send heavy SQL stages to a remote engine: swap the
//! session built here and the operators are unchanged.

use datafusion::execution::context::{SessionConfig, SessionContext};

use crate::ExecContext;

/// The most threads one query asks for. Pipelines run many nodes at once,
/// so one query taking every core would only starve its neighbours.
pub(crate) const MAX_PARTITIONS: usize = 4;

/// What the session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A `transform.sql` query over in-memory inputs.
    Query,
    /// A file scan: batches must come back in file order, so no round-robin
    /// shuffle in front of the filters.
    Scan,
}

/// A session on the run's runtime, running `partitions` partitions at once.
pub(crate) fn new_session(
    ctx: &ExecContext,
    partitions: usize,
    purpose: Purpose,
) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(partitions.max(1))
        // The inputs are the only tables; there is nothing to introspect.
        .with_information_schema(false);
    if let Some(limit) = ctx.memory_limit() {
        // A sort sets this much aside to merge its spill files; the default
        // (10 MiB) would not fit in a small limit.
        let execution = &mut config.options_mut().execution;
        execution.sort_spill_reservation_bytes =
            execution.sort_spill_reservation_bytes.min(limit / 8);
    }
    if purpose == Purpose::Scan {
        config
            .options_mut()
            .optimizer
            .enable_round_robin_repartition = false;
    }
    SessionContext::new_with_config_rt(config, ctx.runtime_env().clone())
}
