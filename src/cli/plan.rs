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
    /// The tasks (a node on one day) a selector names, with what each
    /// reads and its identity, computed without building the plan:
    /// `NODE[KEY]@DAY`, where the key and the day may be `*` or left out
    /// and the day may be a range `FIRST..LAST`
    /// (`features[FPT]@2026-01-05`, `features.prices[*]@*`). Text or JSON.
    #[arg(long, value_name = "SELECTOR")]
    expand: Option<String>,
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
    if let Some(selector) = &args.expand {
        return expand(&args, selector);
    }
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

/// At most this many tasks are printed; the count says how many more.
const EXPAND_LIMIT: usize = 200;

fn expand(args: &PlanArgs, selector: &str) -> anyhow::Result<ExitCode> {
    let json = match args.format {
        FormatArg::Text => false,
        FormatArg::Json => true,
        _ => {
            eprintln!("error: --expand prints tasks as text or JSON (--format text|json)");
            return Ok(ExitCode::from(super::EXIT_INVALID));
        }
    };
    let (name, days) = match selector.split_once('@') {
        Some((name, days)) => (name, days),
        None => (selector, "*"),
    };
    let (stage, key) = quiver::compile::stages::split_name(name);
    let key_given = name.contains('[');
    let validated = match args.pipeline.validate() {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    if !validated.stages.stages.iter().any(|s| s.name == stage) {
        let names = validated.stages.stages.iter().map(|s| s.name.as_str());
        eprintln!(
            "error: --expand {selector}: no node '{stage}'{}",
            quiver::diag::did_you_mean(&stage, names)
        );
        return Ok(ExitCode::from(super::EXIT_INVALID));
    }
    let (first, last) = match days.split_once("..") {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None if days == "*" => (String::new(), "9999".to_string()),
        None => (days.to_string(), days.to_string()),
    };
    let registry = quiver::operators::registry();
    let mut tasks = validated.tasks(registry);
    let (found, total) = tasks.select(
        |decl| {
            let (s, k) = quiver::compile::stages::split_name(decl);
            s == stage && (!key_given || key == "*" || k == key)
        },
        |day| day >= first.as_str() && day <= last.as_str(),
        EXPAND_LIMIT,
    );
    let mut out = String::new();
    if json {
        let tasks: Vec<serde_json::Value> = found
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.id,
                    "op": t.op,
                    "identity": format!("{:016x}", t.identity),
                    "inputs": t.inputs,
                })
            })
            .collect();
        let value = serde_json::json!({"selector": selector, "total": total, "tasks": tasks});
        out = serde_json::to_string_pretty(&value)?;
    } else {
        use std::fmt::Write as _;
        for t in &found {
            let _ = writeln!(out, "{}  {}  {:016x}", t.id, t.op, t.identity);
            for (name, read) in &t.inputs {
                let _ = writeln!(out, "    {name} ← {}", read.join(", "));
            }
        }
        let more = total.saturating_sub(found.len());
        let _ = write!(out, "{total} task{}", if total == 1 { "" } else { "s" });
        if more > 0 {
            let _ = write!(out, " ({more} not shown: narrow the selector)");
        }
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    super::print(&out)
}
