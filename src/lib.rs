//! quiver: market-data pipelines as YAML, compiled into a deduplicated DAG of
//! Arrow operators and run in parallel.
//!
//! The flow is spec → plan → run: [`spec`] holds what the user wrote,
//! [`compile`] turns it into a [`plan::Plan`], [`render`] shows a plan and
//! [`exec`] runs it. Between plan and run, [`cache`] decides what a rerun
//! can take from the outputs earlier runs stored. [`cli`] is the `quiver`
//! command, here so that other front ends (`python -m quiver`) run the
//! same code.

// The command's modules name this crate `quiver::…`, as any user does.
extern crate self as quiver;

pub mod cache;
pub mod cli;
pub mod compile;
pub mod diag;
pub mod exec;
pub mod plan;
pub mod render;
pub mod schema;
pub mod serve;
pub mod spec;
pub mod windows;

pub use quiver_operators as operators;
