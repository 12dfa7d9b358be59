use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::cache::CacheArgs;
use super::{EXIT_FAILED, PipelineArgs};
use quiver::cache;
use quiver::exec::{Executor, ProgressMode, RunOptions};

/// The exit code of a run stopped by Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    cache: CacheArgs,
    /// Compute nodes running at once (default: the number of cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_workers: Option<u16>,
    /// One node at a time, in a fixed order (same outputs as a parallel run).
    #[arg(long)]
    sequential: bool,
    /// No progress output; the summary and errors only.
    #[arg(long, short)]
    quiet: bool,
    /// Memory operators may use, e.g. `4GiB` or `512MiB`: SQL sorts, joins
    /// and aggregations spill to disk beyond it, other operators fail
    /// saying so. Default: no limit.
    #[arg(long, value_name = "SIZE", value_parser = quiver::spec::parse_size)]
    memory_limit: Option<usize>,
    /// Node outputs held in memory above which no new source starts until
    /// consumers have used some, e.g. `2GiB`. Default: 512MiB.
    #[arg(long, value_name = "SIZE", value_parser = quiver::spec::parse_size)]
    hold_limit: Option<usize>,
    /// Where to save the run report (default: .quiver/runs/RUN_ID/report.json).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Also write the run's timeline as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    report_html: Option<PathBuf>,
    /// Where the nodes run: in this process, or on a Ray cluster (from the
    /// Python package: `python -m quiver run PIPELINE --engine ray`).
    #[arg(long, value_enum, default_value_t = Engine::Local)]
    engine: Engine,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Engine {
    Local,
    Ray,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.engine == Engine::Ray {
        eprintln!(
            "error: --engine ray runs from the Python package, which drives Ray: \
             pip install ./python ray, then python -m quiver run {} --engine ray",
            args.pipeline.pipeline.display()
        );
        return Ok(ExitCode::from(super::EXIT_INVALID));
    }
    let plan = match args.pipeline.compile() {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let mut cached = match args.cache.forecast(&plan) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let run_plan = match &cached {
        Some((store, forecast)) => cache::run_plan(&plan, forecast, store),
        None => cache::uncached(&plan),
    };
    if let Some((_, forecast)) = &cached
        && !args.quiet
    {
        eprintln!("{}", cache::summary(&plan, forecast));
    }
    if let Some((_, forecast)) = &mut cached {
        forecast.forget_parts();
    }
    let path = args.report.clone().unwrap_or_else(default_report_path);
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
    options.memory_limit = args.memory_limit;
    if let Some(limit) = args.hold_limit {
        options.hold_limit = Some(limit);
    }
    if let Some((store, _)) = &cached {
        cache::bound_writes(store, &mut options);
    }
    if let Some(n) = args.max_workers {
        options.max_workers = n as usize;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let executor = Executor::new(options).context("cannot start the compute runtime")?;
    let report = runtime.block_on(executor.run_until(&run_plan, async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler: never cancel.
            std::future::pending::<()>().await;
        }
    }));
    drop(executor);
    if let Some((store, forecast)) = &cached {
        cache::record(&plan, forecast, store);
    }

    eprint!("{report}");
    if cached.is_some() && !args.quiet {
        eprintln!("{}", cache::ran(&plan, &report));
    }
    if let Some(e) = &report.save_error {
        anyhow::bail!("{e}");
    }
    eprintln!("report: {}", super::display_path(&path));
    if let Some(page) = &args.report_html {
        let html = quiver::render::timeline::TimelineHtml(&report).to_string();
        std::fs::write(page, html)
            .with_context(|| format!("cannot write the timeline to {}", page.display()))?;
        eprintln!("timeline: {}", super::display_path(page));
    }
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
    PathBuf::from(super::report::RUNS_DIR)
        .join(id)
        .join("report.json")
}
