//! Subcommands, one file each: each turns its clap arguments into library
//! calls. Exit codes: 0 success, 1 the run failed, 2 invalid pipeline or usage.

mod cache;
mod masked_log;
mod ops;
mod plan;
mod report;
mod run;
mod schema;
mod serve;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use quiver::compile::{self, Override};
use quiver::diag::Diagnostics;
use quiver::plan::Plan;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_INVALID: u8 = 2;

#[derive(Parser)]
#[command(
    name = "quiver",
    version,
    about = "Market-data pipelines as YAML: compiled into a deduplicated DAG, run in parallel"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check a pipeline; exit 0 if valid, 2 with every problem found if not.
    Validate(validate::ValidateArgs),
    /// Show the compiled graph without running anything.
    Plan(plan::PlanArgs),
    /// Run a pipeline.
    Run(run::RunArgs),
    /// Show a run's report: totals, critical path, timeline (text or HTML).
    Report(report::ReportArgs),
    /// List the operators, or describe one with its parameters.
    Ops(ops::OpsArgs),
    /// Inspect and prune the cache of node outputs.
    Cache(cache::CacheCommand),
    /// Print the JSON Schema of pipeline files, for editors.
    Schema(schema::SchemaArgs),
    /// Serve synthetic market data over HTTP on 127.0.0.1, to test against.
    ServeSynthetic(serve::ServeArgs),
}

/// The pipeline file and parameter values, shared by validate, plan and run.
#[derive(Args)]
pub struct PipelineArgs {
    /// The pipeline YAML file.
    pub pipeline: PathBuf,
    /// Set a parameter: NAME=VALUE, the value read as YAML (`--set 'symbols=[FPT,VNM]'`).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// A YAML file of parameter values; --set wins over it.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// Keep identical nodes apart: every declared node runs, as a
    /// hand-written pipeline would (with --sequential, to measure against).
    #[arg(long)]
    pub no_merge: bool,
}

impl PipelineArgs {
    /// Compiles the pipeline, printing diagnostics on failure.
    pub fn compile(&self) -> Result<Plan, ExitCode> {
        self.checked(compile::compile_file_with_options, |plan: &Plan| {
            plan.secrets.clone()
        })
    }

    /// Checks the pipeline and counts its nodes over stages, without
    /// building its plan (see [`compile::validate_file_with_options`]).
    pub fn validate(&self) -> Result<compile::Validated, ExitCode> {
        self.checked(
            compile::validate_file_with_options,
            |v: &compile::Validated| v.secrets.clone(),
        )
    }

    /// The pipeline ready to run a window of days at a time, with its
    /// counts; `None` when its shape runs every day at once (see
    /// [`compile::window::Windowed::new`]).
    pub fn windowed(
        &self,
    ) -> Result<Option<(compile::window::Windowed, compile::Validated)>, ExitCode> {
        let validated = self.validate()?;
        let windowed = self.checked(compile::window::Windowed::from_file, |_| {
            validated.secrets.clone()
        })?;
        Ok(windowed.map(|w| (w, validated)))
    }

    /// Runs `check` on the pipeline with the parameters given, printing
    /// diagnostics on failure.
    fn checked<T>(
        &self,
        check: impl FnOnce(
            &std::path::Path,
            &[Override],
            &quiver::operators::Registry,
            compile::Options,
        ) -> Result<T, Diagnostics>,
        secrets_of: impl FnOnce(&T) -> quiver::plan::Secrets,
    ) -> Result<T, ExitCode> {
        let mut overrides = Vec::new();
        if let Some(file) = &self.params {
            match Override::read_file(file) {
                Ok(o) => overrides.extend(o),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Err(ExitCode::from(EXIT_INVALID));
                }
            }
        }
        for arg in &self.set {
            match Override::parse_set(arg) {
                Ok(o) => overrides.push(o),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Err(ExitCode::from(EXIT_INVALID));
                }
            }
        }
        let options = compile::Options {
            merge: !self.no_merge,
        };
        let registry = quiver::operators::registry();
        // Log lines come from libraries too (a SQL parser logs the
        // literals it reads): they wait until the secrets are known, and
        // every line is masked on its way out.
        masked_log::hold();
        match check(&self.pipeline, &overrides, registry, options) {
            Ok(done) => {
                masked_log::release(secrets_of(&done));
                Ok(done)
            }
            Err(d) => {
                // Without a plan, every value given and every variable the
                // file reads is taken for a secret.
                let mut secrets = quiver::plan::Secrets::default();
                for o in &overrides {
                    secrets.add(&o.value.to_json());
                }
                let text = std::fs::read_to_string(&self.pipeline).unwrap_or_default();
                for (i, _) in text.match_indices("${env:") {
                    let name = text[i + 6..].split('}').next().unwrap_or_default();
                    if let Ok(value) = std::env::var(name.trim()) {
                        secrets.add(&serde_json::Value::String(value));
                    }
                }
                masked_log::release(secrets);
                print_diagnostics(&d);
                Err(ExitCode::from(EXIT_INVALID))
            }
        }
    }
}

pub fn print_diagnostics(diags: &Diagnostics) {
    let cwd = std::env::current_dir().unwrap_or_default();
    for d in &diags.0 {
        eprintln!("{}", d.display_relative(&cwd));
    }
    let n = diags.len();
    eprintln!("{n} error{} found", if n == 1 { "" } else { "s" });
}

/// The `quiver` command with `args` (the program name first): parses them,
/// sets up logging unless something already did, and runs the subcommand.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match Cli::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_INVALID } else { 0 });
        }
    };
    init_tracing(args.verbose, args.log_format);
    match dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::validate(args),
        Command::Plan(args) => plan::plan(args),
        Command::Run(args) => run::run(args),
        Command::Report(args) => report::report(args),
        Command::Ops(args) => ops::ops(args),
        Command::Cache(args) => cache::run(args),
        Command::Schema(args) => schema::schema(args),
        Command::ServeSynthetic(args) => serve::serve(args),
    }
}

pub fn init_tracing(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info,quiver=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| masked_log::MaskedStderr);
    // A host process (Python) may have set a subscriber, or an earlier
    // command in it: that one stays.
    let _ = match format {
        LogFormat::Text => fmt.try_init(),
        LogFormat::Json => fmt.json().try_init(),
    };
}

/// Writes `text` to stdout. `quiver plan … | head` closing the pipe early
/// is not an error.
pub fn print(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `path` relative to the working directory when it is inside it.
pub fn display_path(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    path.strip_prefix(&cwd)
        .unwrap_or(path)
        .display()
        .to_string()
}
