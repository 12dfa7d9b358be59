//! The operators a run plan uses around the cache: one that reads a stored
//! output in place of running a node, and wrappers that store what a node
//! computed, or record what a sink wrote.

use std::sync::Arc;

use async_trait::async_trait;
use quiver_operators::arrow::datatypes::SchemaRef;
use quiver_operators::{ExecContext, Freshness, Inputs, OpError, Operator, Table};

use super::key::Key;
use super::pack::Placed;
use super::store::{Receipt, Store, Unusable, now_ms};
use super::writer::Job;

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

/// What a stored output is filed under: its header, its day, and what
/// made its key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Filing {
    pub key: Key,
    pub token: String,
    pub pipeline: String,
    pub node: String,
    pub op: String,
    /// The day folder of its pack.
    pub day: String,
    /// What made its key, as JSON (see [`super::store::Made`]).
    pub made: String,
}

impl Filing {
    fn made(&self) -> (String, String, String) {
        (self.pipeline.clone(), self.node.clone(), self.made.clone())
    }
}

/// A node whose output is stored under its key once it succeeds. The
/// output goes to the cache's writer and on to the node's consumers at
/// once: nothing waits for the disk.
#[derive(Debug)]
pub struct Stored {
    pub inner: Arc<dyn Operator>,
    pub store: Store,
    pub filing: Filing,
}

#[async_trait]
impl Operator for Stored {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let table = self.inner.execute(ctx, inputs).await?;
        let f = &self.filing;
        let hex = f.key.hex();
        let placed = Placed {
            token: (f.token != hex).then(|| f.token.clone()),
            key: hex,
            offset: 0,
            length: 0,
            checksum: String::new(),
            rows: table.num_rows() as u64,
            bytes: table
                .batches()
                .iter()
                .map(|b| b.get_array_memory_size() as u64)
                .sum(),
            pipeline: f.pipeline.clone(),
            node: f.node.clone(),
            op: f.op.clone(),
            created_ms: now_ms(),
        };
        self.store
            .submit(Job {
                day: f.day.clone(),
                placed,
                made: Some(f.made()),
                table: table.clone(),
            })
            .await;
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
/// finds its target up to date; its summary is stored as any output is.
#[derive(Debug)]
pub struct Receipted {
    pub inner: Arc<dyn Operator>,
    pub store: Store,
    pub filing: Filing,
    /// For the day of a sink partitioned by date: the day.
    pub day: Option<String>,
}

#[async_trait]
impl Operator for Receipted {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let table = self.inner.execute(ctx, inputs).await?;
        if let Some(target) = self.inner.sink_target() {
            let (store, key, day) = (self.store.clone(), self.filing.key, self.day.clone());
            let made = self.filing.made();
            let recorded = tokio::task::spawn_blocking(move || {
                let receipt = Receipt::of(&target, day.as_deref())?;
                store.put_receipt(&key, &receipt, &[made]);
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(recorded, Ok(Ok(()))) {
                tracing::warn!(node = %self.filing.node, "Could not record the sink's write in the cache; the next run writes it again");
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
