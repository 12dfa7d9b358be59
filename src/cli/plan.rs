use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::PipelineArgs;
use super::cache::CacheArgs;
use quiver::cache;
use quiver::render::{self, Format};

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// What a run would do with each node, from the cache: with
    /// --no-cache, the graph alone.
    #[command(flatten)]
    cache: CacheArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// The stages as written (one per declared node, with its keys and
    /// days) instead of every node, in any format: no node per trading day
    /// is built, so it is immediate at any size.
    #[arg(long)]
    stages: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Dot,
    Mermaid,
    Json,
    /// One standalone SVG picture.
    Svg,
    /// One self-contained page to open in a browser.
    Html,
}

pub fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    if args.stages {
        return stages(&args);
    }
    let plan = match args.pipeline.compile() {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let format = match args.format {
        FormatArg::Text => Format::Text,
        FormatArg::Dot => Format::Dot,
        FormatArg::Mermaid => Format::Mermaid,
        FormatArg::Json => Format::Json,
        FormatArg::Svg => Format::Svg,
        FormatArg::Html => Format::Html,
    };
    let forecast = match args.cache.forecast(&plan) {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    let notes = forecast
        .as_ref()
        .map(|(_, forecast)| cache::annotations(&plan, forecast));
    let mut out = render::render_with(&plan, format, notes.as_ref());
    if !out.ends_with('\n') {
        out.push('\n');
    }
    super::print(&out)
}

fn stages(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let validated = match args.pipeline.validate() {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let mut out = match args.format {
        FormatArg::Text => render::StagesText(&validated).to_string(),
        FormatArg::Json => render::stages_json(&validated),
        FormatArg::Svg => render::stages_svg(&validated),
        FormatArg::Html => render::stages_html(&validated),
        FormatArg::Dot => render::stages_dot(&validated),
        FormatArg::Mermaid => render::stages_mermaid(&validated),
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    super::print(&out)
}
