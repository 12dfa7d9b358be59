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
    /// Days planned and run together: a run over years holds a window of
    /// days at a time, not all of them. Default: windows of about 50,000
    /// tasks (every day at once for a pipeline smaller than that); 0 runs
    /// every day at once. Not with --select or --force NODE, which run
    /// every day at once.
    #[arg(long, value_name = "DAYS")]
    window_days: Option<u32>,
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
    let whole_plan = !args.cache.select.is_empty()
        || args.cache.force.as_ref().is_some_and(|f| !f.is_empty())
        || args.window_days == Some(0);
    if !whole_plan {
        let (windowed, validated) = match args.pipeline.windowed() {
            Ok(Some(w)) => w,
            Ok(None) => return run_whole(args),
            Err(code) => return Ok(code),
        };
        let days = windowed.days().len();
        let size = args
            .window_days
            .unwrap_or_else(|| quiver::windows::days_per_window(validated.stats.unique, days));
        if (size as usize) < days {
            return run_windows(args, windowed, &validated, size);
        }
    }
    run_whole(args)
}

/// Runs the pipeline as one plan of every day.
fn run_whole(args: RunArgs) -> anyhow::Result<ExitCode> {
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
    let options = run_options(&args, &path, cached.as_ref().map(|(store, _)| store));
    let runtime = runtime()?;
    let executor = Executor::new(options).context("cannot start the compute runtime")?;
    let report = runtime.block_on(executor.run_until(&run_plan, interrupted()));
    drop(executor);
    if let Some((store, forecast)) = &cached {
        cache::record(&plan, forecast, store);
    }
    let ran = cached.is_some().then(|| cache::ran(&report));
    finish(&args, report, &path, ran, false)
}

/// Runs the pipeline `size` days at a time (see [`quiver::windows`]).
fn run_windows(
    args: RunArgs,
    windowed: quiver::compile::window::Windowed,
    validated: &quiver::compile::Validated,
    size: u32,
) -> anyhow::Result<ExitCode> {
    let store = (!args.cache.no_cache).then(|| {
        let dir = args
            .cache
            .cache_dir
            .clone()
            .or_else(|| windowed.cache_dir().map(Into::into))
            .unwrap_or_else(|| cache::DEFAULT_DIR.into());
        quiver::cache::Store::new(dir)
    });
    let path = args.report.clone().unwrap_or_else(default_report_path);
    let mut options = run_options(&args, &path, store.as_ref());
    options.report_file = None;
    let runtime = runtime()?;
    let mut executor = Executor::new(options).context("cannot start the compute runtime")?;
    let force_all = args.cache.force_all
        || args.cache.force.as_ref().is_some_and(Vec::is_empty)
        || windowed.force_all();
    let run = quiver::windows::WindowedRun {
        windowed: std::sync::Arc::new(windowed),
        registry: quiver::operators::registry(),
        days: size,
        store,
        force_all,
        merged_avoided: validated.stats.merged_total(),
        announce: !args.quiet,
        report_file: Some(path.clone()),
    };
    let outcome = runtime.block_on(run.run_until(&mut executor, interrupted()));
    drop(executor);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(diags) => {
            eprint!("{diags}");
            return Ok(ExitCode::from(super::EXIT_INVALID));
        }
    };
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
    let ran = run.store.is_some().then_some(outcome.ran);
    finish(&args, outcome.report, &path, ran, true)
}

/// The executor's options from the command line; `store` bounds the
/// outputs waiting for the disk.
fn run_options(
    args: &RunArgs,
    path: &std::path::Path,
    store: Option<&quiver::cache::Store>,
) -> RunOptions {
    let mut options = RunOptions {
        sequential: args.sequential,
        report_file: Some(path.to_path_buf()),
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
    if let Some(store) = store {
        cache::bound_writes(store, &mut options);
    }
    if let Some(n) = args.max_workers {
        options.max_workers = n as usize;
    }
    options
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Completes on Ctrl-C (never, without a signal handler).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Prints how the run went (`ran`: what ran and what was cached, with the
/// cache) and where its report is; the exit code. `partial`: `report`
/// holds the notable nodes only (a run in windows), the file every node.
fn finish(
    args: &RunArgs,
    report: quiver::exec::RunReport,
    path: &std::path::Path,
    ran: Option<String>,
    partial: bool,
) -> anyhow::Result<ExitCode> {
    eprint!("{report}");
    if let Some(ran) = ran
        && !args.quiet
    {
        eprintln!("{ran}");
    }
    if let Some(e) = &report.save_error {
        anyhow::bail!("{e}");
    }
    eprintln!("report: {}", super::display_path(path));
    if let Some(page) = &args.report_html {
        // A run in windows holds its notable nodes only: every node is in
        // the report file, read back for the page.
        let html = match partial
            .then(|| std::fs::read(path).ok())
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<quiver::exec::RunReport>(&bytes).ok())
        {
            Some(full) => quiver::render::timeline::TimelineHtml(&full).to_string(),
            None => quiver::render::timeline::TimelineHtml(&report).to_string(),
        };
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
