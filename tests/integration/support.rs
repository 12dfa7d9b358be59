//! What the test modules share: running a plan on a fresh executor.

use quiver::exec::{Executor, RunOptions, RunReport};
use quiver::plan::Plan;

/// Runs `plan` with `options` on a runtime of its own.
pub fn run_with(plan: &Plan, options: RunOptions) -> RunReport {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = Executor::new(options).unwrap();
    let report = rt.block_on(executor.run(plan));
    drop(executor);
    report
}

/// Runs `plan` with the default options.
pub fn run(plan: &Plan) -> RunReport {
    run_with(plan, RunOptions::default())
}
