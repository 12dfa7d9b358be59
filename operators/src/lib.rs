//! quiver's operators: the units of work a pipeline node runs.
//!
//! An operator is a function from named Arrow tables to one Arrow table. This
//! crate knows nothing of YAML, graphs or scheduling: the engine resolves a
//! node's parameters to JSON, asks the [`registry`] to [`OperatorDef::build`]
//! a runtime [`Operator`] from them, and later calls [`Operator::execute`]
//! with the node's inputs.

pub mod error;
pub mod registry;
pub mod table;

mod align;
mod atomic;
mod features;
mod fetch_csv;
mod fetch_http;
mod fetch_parquet;
mod fetch_synthetic;
mod file_scan;
mod hive;
mod resample;
mod sessions;
mod sink_csv;
mod sink_parquet;
mod transform_sql;

pub use datafusion;
pub use datafusion::arrow;
pub use error::{Fault, OpError, ParamError};
pub use registry::{OperatorDef, registry};
pub use table::{Input, Inputs, Table};

use async_trait::async_trait;

/// What running an operator does to the world, which decides whether the
/// engine may merge two identical nodes into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Same parameters and inputs give the same output, and running it twice
    /// is wasted work: identical nodes are merged.
    Pure,
    /// Writes somewhere. Never merged; two sinks writing one target is an error.
    Sink,
}

/// The kind of work an operator does, which decides where the executor runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Mostly waiting on a network, a disk or a remote service.
    Io,
    /// Mostly computing: runs off the async I/O threads.
    Cpu,
}

/// A runtime operator, built from validated parameters by [`OperatorDef::build`].
#[async_trait]
pub trait Operator: Send + Sync + std::fmt::Debug {
    /// Runs the operator over its inputs.
    async fn execute(&self, inputs: Inputs) -> Result<Table, OpError>;

    /// For sinks: the location written, so the engine can reject two sinks
    /// writing the same place.
    fn sink_target(&self) -> Option<String> {
        None
    }
}
