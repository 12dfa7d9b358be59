//! Operators that turn tables into tables.

pub(crate) mod align;
pub(crate) mod concat;
pub(crate) mod features;
pub(crate) mod market;
pub(crate) mod resample;
pub(crate) mod sql;
