//! Integration tests, in one binary so DataFusion is linked once.

mod backfill;
#[path = "../../benches/support/mod.rs"]
mod bench_support;
mod browser;
mod cache;
mod cache_store;
mod cdp;
mod engine_api;
mod enrichment;
mod executor;
mod fixtures;
mod partitions;
mod parts;
mod plans;
mod postgres;
mod properties;
mod reports;
mod runs;
mod scheduling;
mod schema;
mod secrets;
mod serve;
mod shared_rate;
mod stages;
mod support;
mod vn30;
mod windows;
mod yaml_limits;
