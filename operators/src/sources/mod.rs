//! Operators that read data in: no inputs, one table out.

pub(crate) mod csv;
pub(crate) mod http;
pub(crate) mod parquet;
pub(crate) mod postgres;
pub(crate) mod synthetic;
