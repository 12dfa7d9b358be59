//! quiver's operators: the units of work a pipeline node runs.
//!
//! An operator is a function from named Arrow tables to one Arrow table. This
//! crate knows nothing of YAML, graphs or scheduling: the engine resolves a
//! node's parameters to JSON, asks a [`Registry`] to [`OperatorDef::build`]
//! a runtime [`Operator`] from them, and later calls [`Operator::execute`]
//! with an [`ExecContext`] and the node's inputs.
//!
//! Layout, lowest first: [`error`], [`table`], [`context`] and [`operator`]
//! (the API, importing no operator); `shared` (helpers the operators share:
//! atomic writes, the file sinks' core, file scans, DataFusion sessions,
//! exchange calendars);
//! `sources`, `transforms` and `sinks` (one operator per file or folder);
//! and [`registry`], the one list of built-ins.

pub mod context;
pub mod error;
pub mod operator;
pub mod registry;
pub mod table;

mod shared;
mod sinks;
mod sources;
mod transforms;

pub use datafusion;
pub use datafusion::arrow;

pub use context::{
    CancelToken, ExecContext, ResourceSlot, RunState, ThreadBudget, Threads, human_bytes,
};
pub use error::{Fault, OpError, ParamError};
pub use operator::{
    Arity, Built, DateRange, Effect, Freshness, OpParams, Operator, OperatorDef, Workload,
};

/// Trading days, for date partitions.
pub mod calendar {
    pub use crate::shared::calendar::{Calendar, next_date};
}
pub use registry::{DuplicateOperator, Registry, registry};
pub use table::{Input, Inputs, Table};
