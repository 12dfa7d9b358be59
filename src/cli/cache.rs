//! The cache options `plan` and `run` share, and `quiver cache ls | du | gc
//! | clear`.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use quiver::cache::{self, Forecast, Options, Store, forecast::age_text};
use quiver::operators::human_bytes;
use quiver::plan::Plan;
use quiver::spec::DurationSpec;

use super::EXIT_INVALID;

/// How `plan` and `run` use the cache.
#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// The cache folder (default: the pipeline's `cache: {dir: …}`, else
    /// .quiver/cache).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Neither read nor write the cache: run every node.
    #[arg(long, conflicts_with_all = ["force", "force_all"])]
    pub no_cache: bool,
    /// Run only these nodes, in dbt's syntax: `index`, `index+` (and
    /// downstream), `+index` (and upstream), `features[*]`. Nodes they need
    /// come from the cache, or run when they are not in it.
    #[arg(long, value_name = "SELECTOR", num_args = 1..)]
    pub select: Vec<String>,
    /// Run these nodes even when their output is cached; with no node
    /// named, every node (as --force-all).
    #[arg(long, value_name = "NODE", num_args = 0..)]
    pub force: Option<Vec<String>>,
    /// Run every node, replacing what the cache holds.
    #[arg(long)]
    pub force_all: bool,
}

impl CacheArgs {
    /// The cache folder and the forecast for `plan`, or `None` with
    /// `--no-cache` and no selection. Bad selectors exit 2.
    pub fn forecast(&self, plan: &Plan) -> Result<Option<(Store, Forecast)>, ExitCode> {
        let bad = |e: String| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        };
        let mut options = Options {
            force_all: self.force_all
                || self.no_cache
                || plan.force_all
                || self.force.as_ref().is_some_and(Vec::is_empty),
            ..Options::default()
        };
        if !self.select.is_empty() {
            options.selected = Some(cache::select::select(plan, &self.select).map_err(bad)?);
        }
        let mut force = HashSet::new();
        for name in self.force.iter().flatten() {
            let at = plan
                .find(name)
                .ok_or_else(|| bad(format!("--force {name}: no node has that name")))?;
            force.insert(at.index());
        }
        // A node forced is a node asked for.
        if let Some(mask) = &mut options.selected {
            for &i in &force {
                mask[i] = true;
            }
        }
        options.force = force;
        if self.no_cache && options.selected.is_none() {
            return Ok(None);
        }
        let store = Store::new(cache::dir_for(plan, self.cache_dir.as_deref()));
        let forecast = Forecast::new(plan, &store, &options);
        for warning in &forecast.warnings {
            eprintln!("warning: {warning}");
        }
        Ok(Some((store, forecast)))
    }
}

#[derive(Args)]
pub struct CacheCommand {
    /// The cache folder.
    #[arg(long, value_name = "DIR", default_value = cache::DEFAULT_DIR, global = true)]
    cache_dir: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// List the stored outputs, newest first.
    Ls,
    /// The space the cache takes, per pipeline and operator.
    Du,
    /// Remove stored outputs not used for a while.
    Gc {
        /// Remove what was last used longer ago than this: `7d`, `12h`.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Duration,
    },
    /// Remove everything in the cache folder.
    Clear,
}

fn parse_age(text: &str) -> Result<Duration, String> {
    DurationSpec::parse(text).map(|d| d.0)
}

pub fn run(args: CacheCommand) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    // Lines go to `text`, printed at the end (a closed pipe is not an error).
    macro_rules! out {
        ($($arg:tt)*) => {{
            use std::fmt::Write as _;
            let _ = writeln!(text, $($arg)*);
        }};
    }
    let store = Store::new(&args.cache_dir);
    let dir = super::display_path(&args.cache_dir);
    match args.action {
        Action::Ls => {
            let mut entries = store.entries()?;
            entries.sort_by_key(|e| std::cmp::Reverse(e.used));
            if entries.is_empty() {
                out!("{dir}: no stored outputs");
                return super::print(&text);
            }
            out!(
                "{:<12}  {:>9}  {:>10}  {:>9}  {:<18}  {:<16}  NODE",
                "KEY",
                "ROWS",
                "SIZE",
                "AGE",
                "OPERATOR",
                "PIPELINE"
            );
            for e in &entries {
                out!(
                    "{:<12}  {:>9}  {:>10}  {:>9}  {:<18}  {:<16}  {}",
                    &e.header.key[..12],
                    e.header.rows,
                    human_bytes(e.bytes as usize),
                    age_text(e.header.age()),
                    e.header.op,
                    e.header.pipeline,
                    e.header.node
                );
            }
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            out!(
                "{} stored outputs, {} in {dir}",
                entries.len(),
                human_bytes(total as usize)
            );
        }
        Action::Du => {
            let entries = store.entries()?;
            let mut by: BTreeMap<(String, String), (usize, u64)> = BTreeMap::new();
            for e in &entries {
                let slot = by
                    .entry((e.header.pipeline.clone(), e.header.op.clone()))
                    .or_default();
                slot.0 += 1;
                slot.1 += e.bytes;
            }
            for ((pipeline, op), (count, bytes)) in &by {
                out!(
                    "{:>10}  {count:>6} outputs  {pipeline} {op}",
                    human_bytes(*bytes as usize)
                );
            }
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            out!(
                "{:>10}  {:>6} outputs  in all, in {dir}",
                human_bytes(total as usize),
                entries.len()
            );
        }
        Action::Gc { older_than } => {
            let (files, bytes) = store.gc(older_than)?;
            out!(
                "removed {files} files ({}) last used more than {} ago from {dir}",
                human_bytes(bytes as usize),
                age_text(older_than)
            );
        }
        Action::Clear => {
            let (files, bytes) = store.clear()?;
            out!(
                "removed {files} files ({}) from {dir}",
                human_bytes(bytes as usize)
            );
        }
    }
    super::print(&text)
}
