//! The operators a run plan uses around the cache: one that reads a stored
//! output in place of running a node, and wrappers that store what a node
//! computed, or record what a sink wrote.

use std::sync::Arc;

use async_trait::async_trait;
use quiver_operators::arrow::datatypes::SchemaRef;
use quiver_operators::{ExecContext, Freshness, Inputs, OpError, Operator, Table};

use super::key::Key;
use super::store::{EntryHeader, Receipt, Store, Unusable, now_ms};

/// Reads a node's stored output (checked when the run was planned).
#[derive(Debug)]
pub struct Load {
    pub store: Store,
    pub key: Key,
}

#[async_trait]
impl Operator for Load {
    async fn execute(&self, _ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        let (store, key) = (self.store.clone(), self.key);
        let loaded = tokio::task::spawn_blocking(move || store.load(&key))
            .await
            .map_err(|e| OpError::Internal(format!("reading the cache stopped: {e}")))?;
        loaded.map_err(|why| {
            let how = match why {
                Unusable::Missing => "is gone".to_string(),
                Unusable::Corrupt(how) => format!("is corrupt: {how}"),
            };
            OpError::Source {
                message: format!(
                    "the cached output {} {how}: it changed after the run was planned \
                     (another process cleared the cache?); run again to compute it",
                    key.short()
                ),
                transient: false,
            }
        })
    }
}

/// A node whose output is stored under its key once it succeeds.
#[derive(Debug)]
pub struct Stored {
    pub inner: Arc<dyn Operator>,
    pub store: Store,
    /// The entry's header; its time and row count are set when it is written.
    pub header: EntryHeader,
}

#[async_trait]
impl Operator for Stored {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let table = self.inner.execute(ctx, inputs).await?;
        let mut header = self.header.clone();
        header.created_ms = now_ms();
        header.rows = table.num_rows();
        let (store, copy) = (self.store.clone(), table.clone());
        let written = tokio::task::spawn_blocking(move || store.put(&header, &copy)).await;
        match written {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(node = %self.header.node, error = %e, "Could not store the output in the cache")
            }
            Err(e) => {
                tracing::warn!(node = %self.header.node, error = %e, "Could not store the output in the cache")
            }
        }
        Ok(table)
    }

    fn sink_target(&self) -> Option<String> {
        self.inner.sink_target()
    }

    fn output_schema(&self) -> Option<SchemaRef> {
        self.inner.output_schema()
    }

    fn freshness(&self) -> Freshness {
        self.inner.freshness()
    }
}

/// A sink that records what it wrote, so that a rerun with the same key
/// finds its target up to date.
#[derive(Debug)]
pub struct Receipted {
    pub inner: Arc<dyn Operator>,
    pub store: Store,
    pub key: Key,
    pub node: String,
    /// For the day of a sink partitioned by date: the day.
    pub day: Option<String>,
}

#[async_trait]
impl Operator for Receipted {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let table = self.inner.execute(ctx, inputs).await?;
        if let Some(target) = self.inner.sink_target() {
            let (store, key, day) = (self.store.clone(), self.key, self.day.clone());
            let recorded = tokio::task::spawn_blocking(move || {
                let receipt = Receipt::of(&target, day.as_deref())?;
                store.put_receipt(&key, &receipt)
            })
            .await;
            if !matches!(recorded, Ok(Ok(()))) {
                tracing::warn!(node = %self.node, "Could not record the sink's write in the cache; the next run writes it again");
            }
        }
        Ok(table)
    }

    fn sink_target(&self) -> Option<String> {
        self.inner.sink_target()
    }

    fn output_schema(&self) -> Option<SchemaRef> {
        self.inner.output_schema()
    }
}
