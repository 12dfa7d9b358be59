use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use quiver::exec::RunReport;
use quiver::render::timeline::{TimelineHtml, TimelineText};

use super::EXIT_INVALID;

/// Where `quiver run` saves its reports.
pub const RUNS_DIR: &str = ".quiver/runs";

#[derive(Args)]
pub struct ReportArgs {
    /// A run id (a folder of .quiver/runs), `latest`, or a report file.
    #[arg(default_value = "latest")]
    run: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    /// Totals, the critical path and time per node group.
    Text,
    /// A self-contained page with the run's timeline.
    Html,
    /// The report as saved.
    Json,
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let path = match locate(&args.run) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let report: RunReport = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a quiver run report (or one from another version)",
            path.display()
        )
    })?;
    let out = match args.format {
        ReportFormat::Text => TimelineText(&report).to_string(),
        ReportFormat::Html => TimelineHtml(&report).to_string(),
        ReportFormat::Json => text,
    };
    super::print(&out)
}

/// The report file of `run`: `latest`, a run id, or a path.
fn locate(run: &str) -> Result<PathBuf, String> {
    let runs = Path::new(RUNS_DIR);
    if run == "latest" {
        return latest(runs).ok_or_else(|| {
            format!("no run report in {RUNS_DIR}; run a pipeline first (quiver run PIPELINE)")
        });
    }
    let by_id = runs.join(run).join("report.json");
    if by_id.is_file() {
        return Ok(by_id);
    }
    let file = PathBuf::from(run);
    if file.is_file() {
        return Ok(file);
    }
    Err(format!(
        "no run '{run}': neither {} nor a report file exists; `quiver report latest` shows the newest run",
        by_id.display()
    ))
}

/// The newest run folder with a report: folder names start with the time
/// the run started, in milliseconds.
fn latest(runs: &Path) -> Option<PathBuf> {
    std::fs::read_dir(runs)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let millis: u128 = name.split('-').next()?.parse().ok()?;
            let file = e.path().join("report.json");
            file.is_file().then_some((millis, name, file))
        })
        .max()
        .map(|(_, _, file)| file)
}
