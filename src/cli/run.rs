use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{EXIT_FAILED, PipelineArgs};
use quiver::exec::{Executor, RunOptions};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Nodes running at once (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_workers: Option<u16>,
    /// Also write the run report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.pipeline.compile() {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let mut options = RunOptions::default();
    if let Some(n) = args.max_workers {
        options.max_workers = n as usize;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let executor = Executor::new(options).context("cannot start the compute runtime")?;
    let report = runtime.block_on(executor.run(&plan));
    drop(executor);
    eprint!("{report}");
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the run report to {}", path.display()))?;
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}
