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
    /// The space the cache takes, per pipeline and operator (and day).
    Du {
        /// Also per trading day.
        #[arg(long)]
        by_day: bool,
    },
    /// Remove stored outputs: those not used for a while, those no recent
    /// run used, or the least recently used days beyond a size. Packs left
    /// sparse are rewritten.
    Gc {
        /// Remove what was last used longer ago than this: `7d`, `12h`.
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Keep only what the last N runs of each pipeline used.
        #[arg(long, value_name = "N")]
        keep_runs: Option<usize>,
        /// Remove the least recently used days until the cache takes no
        /// more than this: `20GiB`.
        #[arg(long, value_name = "SIZE", value_parser = quiver::spec::parse_size)]
        max_size: Option<usize>,
    },
    /// Read every stored output in full, check its checksum, and drop the
    /// ones that fail.
    Verify,
    /// Move a cache written by an older quiver (one file per output) into
    /// packs and the index.
    Migrate,
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
    let bytes = |n: u64| human_bytes(n as usize);
    match args.action {
        Action::Ls => {
            let mut entries = store.entries()?;
            entries.sort_by_key(|e| std::cmp::Reverse(e.header.created_ms));
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
                    bytes(e.bytes),
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
                bytes(total)
            );
        }
        Action::Du { by_day } => {
            let entries = store.entries()?;
            let mut by: BTreeMap<(String, String, String), (usize, u64)> = BTreeMap::new();
            for ((pipeline, op, day), (n, b)) in cache::gc::usage(&entries) {
                let day = if by_day { day } else { String::new() };
                let slot = by.entry((pipeline, op, day)).or_default();
                slot.0 += n;
                slot.1 += b;
            }
            for ((pipeline, op, day), (count, b)) in &by {
                let day = if day.is_empty() {
                    String::new()
                } else {
                    format!(" {day}")
                };
                out!(
                    "{:>10}  {count:>6} outputs  {pipeline} {op}{day}",
                    bytes(*b)
                );
            }
            let total: u64 = entries.iter().map(|e| e.bytes).sum();
            let (files, on_disk) = disk_usage(&args.cache_dir);
            out!(
                "{:>10}  {:>6} outputs  in all, in {dir} ({files} files, {} on disk with the index)",
                bytes(total),
                entries.len(),
                bytes(on_disk)
            );
        }
        Action::Gc {
            older_than,
            keep_runs,
            max_size,
        } => {
            if older_than.is_none() && keep_runs.is_none() && max_size.is_none() {
                eprintln!(
                    "error: say what to remove: --older-than AGE, --keep-runs N or --max-size SIZE"
                );
                return Ok(ExitCode::from(EXIT_INVALID));
            }
            let policy = cache::gc::Policy {
                older_than,
                keep_runs,
                max_size: max_size.map(|m| m as u64),
                protect: Default::default(),
            };
            let swept = cache::gc::gc(&store, &policy)?;
            let mut why = Vec::new();
            if let Some(age) = older_than {
                why.push(format!("last used more than {} ago", age_text(age)));
            }
            if let Some(n) = keep_runs {
                why.push(format!("not used by the last {n} runs"));
            }
            if let Some(max) = max_size {
                why.push(format!("beyond {}", human_bytes(max)));
            }
            out!(
                "removed {} outputs ({}) {} from {dir}; {} packs removed, {} rewritten; {} left",
                swept.entries,
                bytes(swept.bytes),
                why.join(", "),
                swept.packs_removed,
                swept.packs_rewritten,
                bytes(swept.size)
            );
        }
        Action::Verify => {
            let verified = cache::gc::verify(&store)?;
            for (node, why) in &verified.bad {
                out!("dropped {node}: {why}");
            }
            out!(
                "checked {} outputs ({}) in {dir}: {} bad, dropped",
                verified.checked,
                bytes(verified.bytes),
                verified.bad.len()
            );
        }
        Action::Migrate => {
            let m = cache::gc::migrate(&store)?;
            out!(
                "moved {} outputs, {} sink receipts and {} nodes' records into packs and the index in {dir}{}",
                m.entries,
                m.receipts,
                m.nodes,
                if m.skipped > 0 {
                    format!("; {} unreadable outputs left out", m.skipped)
                } else {
                    String::new()
                }
            );
        }
        Action::Clear => {
            let (files, b) = cache::gc::clear(&store)?;
            out!("removed {files} files ({}) from {dir}", bytes(b));
        }
    }
    super::print(&text)
}

/// Files under `dir` and their bytes.
fn disk_usage(dir: &std::path::Path) -> (usize, u64) {
    let mut out = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    out.0 += 1;
                    out.1 += m.len();
                }
                Err(_) => {}
            }
        }
    }
    out
}
