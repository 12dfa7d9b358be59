//! Compiling and running a pipeline from library code.
//!
//!     cargo run --example run_pipeline -- pipelines/vn30.yaml symbols=[FPT,VNM] weight_cap=0.5
//!
//! The first argument is the pipeline file (default `pipelines/vn30.yaml`);
//! the rest are `NAME=VALUE` parameter settings, as `quiver run --set` takes.

use std::path::PathBuf;
use std::process::ExitCode;

use quiver::compile::{Override, compile_file};
use quiver::exec::{Executor, RunOptions};
use quiver::render::{Format, Summary, render};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let file = PathBuf::from(args.next().unwrap_or_else(|| "pipelines/vn30.yaml".into()));
    let overrides: Vec<Override> = match args.map(|a| Override::parse_set(&a)).collect() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };

    // spec → plan
    let plan = match compile_file(&file, &overrides) {
        Ok(plan) => plan,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return ExitCode::from(2);
        }
    };
    println!("{}", Summary(&plan.stats));
    println!("{}", render(&plan, Format::Mermaid));

    // plan → run
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
