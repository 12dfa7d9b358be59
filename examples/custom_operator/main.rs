//! A library user's own operator, named from YAML like a built-in.
//!
//!     cargo run --example custom_operator
//!
//! Registers `example.day_range` (in `range.rs`) beside the built-ins,
//! compiles `examples/custom_operator/pipeline.yaml` against that registry
//! and runs it.

mod range;

use std::path::Path;
use std::process::ExitCode;

use quiver::compile::compile_file_with;
use quiver::exec::{Executor, RunOptions};
use quiver::operators::Registry;

fn main() -> ExitCode {
    let mut registry = Registry::builtins();
    registry
        .register::<range::DayRangeParams>()
        .expect("no built-in is called example.day_range");

    let file = Path::new("examples/custom_operator/pipeline.yaml");
    let plan = match compile_file_with(file, &[], &registry) {
        Ok(plan) => plan,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let executor = Executor::new(RunOptions::default()).expect("the compute runtime");
    let report = runtime.block_on(executor.run(&plan));
    drop(executor);
    print!("{report}");
    if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
