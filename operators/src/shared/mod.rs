//! Helpers the operators share. They import no operator.

pub(crate) mod atomic;
pub(crate) mod bucket_sort;
pub(crate) mod calendar;
pub(crate) mod csv_dialect;
pub(crate) mod file_sink;
pub(crate) mod fingerprint;
pub(crate) mod hive;
pub(crate) mod postgres;
pub(crate) mod scan;
pub(crate) mod session;
pub(crate) mod sessions;

#[cfg(test)]
pub(crate) mod testing;
