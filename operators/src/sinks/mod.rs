//! Operators that write their one input somewhere and output nothing.

pub(crate) mod csv;
pub(crate) mod parquet;
pub(crate) mod postgres;
