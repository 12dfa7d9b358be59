use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::PipelineArgs;
use quiver::render::{self, Format};

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Dot,
    Mermaid,
    Json,
}

pub fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let plan = match args.pipeline.compile() {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let format = match args.format {
        FormatArg::Text => Format::Text,
        FormatArg::Dot => Format::Dot,
        FormatArg::Mermaid => Format::Mermaid,
        FormatArg::Json => Format::Json,
    };
    let mut out = render::render(&plan, format);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    use std::io::Write;
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        // `quiver plan … | head` closing the pipe early is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
