use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{EXIT_FAILED, PipelineArgs};
use quiver::exec::{Executor, ProgressMode, RunOptions};

/// The exit code of a run stopped by Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Compute nodes running at once (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_workers: Option<u16>,
    /// One node at a time, in a fixed order (same outputs as a parallel run).
    #[arg(long)]
    sequential: bool,
    /// No progress output; the summary and errors only.
    #[arg(long, short)]
    quiet: bool,
    /// Where to save the run report (default: .quiver/runs/RUN_ID/report.json).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.pipeline.compile() {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let path = args.report.unwrap_or_else(default_report_path);
    let mut options = RunOptions {
        sequential: args.sequential,
        report_file: Some(path.clone()),
        progress: if args.quiet {
            ProgressMode::Quiet
        } else {
            ProgressMode::detect()
        },
        ..RunOptions::default()
    };
    if let Some(n) = args.max_workers {
        options.max_workers = n as usize;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let executor = Executor::new(options).context("cannot start the compute runtime")?;
    let report = runtime.block_on(executor.run_until(&plan, async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: never cancel.
            std::future::pending::<()>().await;
        }
    }));
    drop(executor);

    eprint!("{report}");
    if let Some(e) = &report.save_error {
        anyhow::bail!("{e}");
    }
    eprintln!("report: {}", super::display_path(&path));
    Ok(if report.totals.cancelled {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// `.quiver/runs/<UTC time>-<pid>/report.json`: unique per run, sorted by
/// time. The executor keeps it current while the run goes.
fn default_report_path() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let id = format!("{}-{}", now.as_millis(), std::process::id());
    PathBuf::from(".quiver")
        .join("runs")
        .join(id)
        .join("report.json")
}
