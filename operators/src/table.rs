//! The data passed between operators.

use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// An operator's output: a schema and the batches holding its rows.
///
/// The engine keeps each output once behind an `Arc` and hands the same
/// allocation to every consumer; cloning a `RecordBatch` only bumps the
/// reference counts of its arrays.
#[derive(Debug, Clone)]
pub struct Table {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Table {
    /// A table from batches that all have `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        debug_assert!(
            batches
                .iter()
                .all(|b| b.schema().fields() == schema.fields())
        );
        Self { schema, batches }
    }

    pub fn from_batch(batch: RecordBatch) -> Self {
        Self {
            schema: batch.schema(),
            batches: vec![batch],
        }
    }

    /// A table with no columns and no rows, the output of sinks.
    pub fn empty() -> Self {
        Self::new(Arc::new(Schema::empty()), Vec::new())
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Bytes held by the table's arrays.
    pub fn memory_size(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    /// All rows in one batch (copies unless there is exactly one batch).
    pub fn concat(&self) -> Result<RecordBatch, ArrowError> {
        match self.batches.as_slice() {
            [one] => Ok(one.clone()),
            many => concat_batches(&self.schema, many),
        }
    }
}

/// One named input of a node.
#[derive(Debug, Clone)]
pub struct Input {
    /// The name the pipeline gave the input (the SQL table name in `transform.sql`).
    pub name: String,
    pub table: Arc<Table>,
}

/// A node's inputs, in the order the pipeline declared them.
#[derive(Debug, Clone, Default)]
pub struct Inputs(pub Vec<Input>);

impl Inputs {
    pub fn get(&self, name: &str) -> Option<&Arc<Table>> {
        self.0.iter().find(|i| i.name == name).map(|i| &i.table)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Input> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
