//! The compiler: spec → plan.
//!
//! parse → check the spec → resolve parameters → expand fan-outs, fragments
//! and inline inputs → resolve references → merge duplicates → petgraph.
//! Every stage reports what it finds and carries on where it can, so one
//! compile returns all the problems at once.

pub mod dedupe;
pub mod expand;
pub mod interp;
pub mod params;
pub mod partition;
pub mod policy;
pub mod stages;
pub mod window;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use quiver_operators::calendar::Calendar;
use quiver_operators::{Effect, Registry};

use crate::diag::{Diagnostic, Diagnostics};
use crate::plan::{Plan, ResourcePolicy, Secrets, SharedRate, Stats};
use crate::spec::de::from_yaml;
use crate::spec::{PipelineSpec, ResourceSpec, Value, Yaml};
pub use params::Override;

/// Reads and compiles the pipeline file at `path` against the built-in
/// operators.
pub fn compile_file(path: &Path, overrides: &[Override]) -> Result<Plan, Diagnostics> {
    compile_file_with(path, overrides, quiver_operators::registry())
}

/// Reads and compiles the pipeline file at `path`; its nodes may name any
/// operator in `registry` (built-ins and a library user's own).
pub fn compile_file_with(
    path: &Path,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Plan, Diagnostics> {
    compile_file_with_options(path, overrides, registry, Options::default())
}

/// How a pipeline is compiled.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Merge identical nodes into one (the default). Without merging,
    /// every declared node runs: the naive way, to measure against.
    pub merge: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { merge: true }
    }
}

/// [`compile_file_with`], with [`Options`].
pub fn compile_file_with_options(
    path: &Path,
    overrides: &[Override],
    registry: &Registry,
    options: Options,
) -> Result<Plan, Diagnostics> {
    match crate::spec::yaml::read_file(path) {
        Ok(text) => compile_str_with_options(path, &text, overrides, registry, options),
        Err(e) => Err(unreadable(path, e)),
    }
}

/// Compiles pipeline `text`, read from `path` (which also anchors relative
/// fragment paths).
pub fn compile_str(path: &Path, text: &str, overrides: &[Override]) -> Result<Plan, Diagnostics> {
    compile_str_with(path, text, overrides, quiver_operators::registry())
}

/// Compiles pipeline `text` against the operators in `registry`.
pub fn compile_str_with(
    path: &Path,
    text: &str,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Plan, Diagnostics> {
    compile_str_with_options(path, text, overrides, registry, Options::default())
}

/// [`compile_str_with`], with [`Options`].
pub fn compile_str_with_options(
    path: &Path,
    text: &str,
    overrides: &[Override],
    registry: &Registry,
    options: Options,
) -> Result<Plan, Diagnostics> {
    let Front {
        spec,
        params,
        resources,
        secrets,
        mut decls,
        calendar,
        force_all,
        cache_max_size,
        mut diags,
    } = front(path, text, overrides, registry)?;
    if let Some(calendar) = &calendar {
        partition::split(&mut decls, registry, calendar, &mut diags);
    }
    let (graph, stats) = dedupe::Merger::new(&mut decls, registry, &mut diags)
        .merging(options.merge)
        .run();
    check_sinks(&graph, &decls, &mut diags);

    if !diags.is_empty() {
        return Err(redacted(diags, &secrets));
    }
    Ok(Plan {
        name: spec.pipeline,
        file: path.to_path_buf(),
        params,
        resources,
        graph: Arc::new(graph),
        stats,
        cache_dir: spec.cache.and_then(|c| c.dir).map(PathBuf::from),
        force_all,
        cache_max_size,
        keep_going: spec.keep_going.unwrap_or(false),
        secrets,
    })
}

/// What checking a pipeline without building its tasks finds: see
/// [`validate_str_with_options`].
#[derive(Debug)]
pub struct Validated {
    pub name: String,
    /// The same counts as the compiled plan's, counted over stages.
    pub stats: Stats,
    /// The nodes as written: keys, days, how each reads its inputs.
    pub stages: stages::StagePlan,
    /// The values to mask in anything printed.
    pub secrets: Secrets,
    /// The declared nodes and their days, for [`Validated::tasks`].
    expansion: stages::Expansion,
}

impl Validated {
    /// Tasks (a declared node on one day) computed on demand, with the
    /// identities the compiled plan gives them.
    pub fn tasks<'a>(&'a self, registry: &'a Registry) -> stages::Tasks<'a> {
        self.expansion.tasks(registry)
    }
}

/// Checks the pipeline file at `path` as [`compile_file_with_options`]
/// would, and counts its nodes, without building a node per trading day:
/// time and memory grow with the pipeline's text and fan-out, not with its
/// days (see `docs/design/stages.md`).
pub fn validate_file_with_options(
    path: &Path,
    overrides: &[Override],
    registry: &Registry,
    options: Options,
) -> Result<Validated, Diagnostics> {
    match crate::spec::yaml::read_file(path) {
        Ok(text) => validate_str_with_options(path, &text, overrides, registry, options),
        Err(e) => Err(unreadable(path, e)),
    }
}

/// [`validate_file_with_options`] for pipeline `text` read from `path`.
pub fn validate_str_with_options(
    path: &Path,
    text: &str,
    overrides: &[Override],
    registry: &Registry,
    options: Options,
) -> Result<Validated, Diagnostics> {
    let (mut validated, exact) = count_stages_str(path, text, overrides, registry, options)?;
    if !exact {
        // The one shape counted over stages not exactly (see
        // `stages::count`): the plan's own counts.
        let plan = compile_str_with_options(path, text, overrides, registry, options)?;
        validated.stats = plan.stats;
    }
    Ok(validated)
}

/// The counts over stages alone, and whether they are exact (see
/// `stages::count`); [`validate_str_with_options`] compiles the plan when
/// they are not.
pub fn count_stages_str(
    path: &Path,
    text: &str,
    overrides: &[Override],
    registry: &Registry,
    options: Options,
) -> Result<(Validated, bool), Diagnostics> {
    let Front {
        spec,
        secrets,
        decls,
        calendar,
        mut diags,
        ..
    } = front(path, text, overrides, registry)?;
    let mut counted = stages::count(
        &decls,
        registry,
        calendar.as_ref(),
        options.merge,
        &mut diags,
    );
    if !diags.is_empty() {
        return Err(redacted(diags, &secrets));
    }
    let (stats, exact, stages) = (
        counted.stats.clone(),
        counted.exact,
        std::mem::take(&mut counted.plan.stages),
    );
    let validated = Validated {
        name: spec.pipeline,
        stats,
        stages: stages::StagePlan { stages },
        secrets,
        expansion: counted.expansion(decls, options.merge),
    };
    Ok((validated, exact))
}

/// A message may quote a value that holds a secret.
fn redacted(mut diags: Diagnostics, secrets: &Secrets) -> Diagnostics {
    for d in &mut diags.0 {
        d.message = secrets.redact(&d.message);
    }
    diags.sorted()
}

fn unreadable(path: &Path, e: impl std::fmt::Display) -> Diagnostics {
    let file: Arc<Path> = Arc::from(path);
    Diagnostics(vec![Diagnostic::new(
        &file,
        None,
        "",
        format!("cannot read the pipeline file: {e}"),
    )])
}

/// The pipeline read, its parameters resolved and its nodes expanded into
/// declared instances: what compiling and validating share.
struct Front {
    spec: PipelineSpec,
    params: IndexMap<String, serde_json::Value>,
    resources: IndexMap<String, ResourcePolicy>,
    secrets: Secrets,
    decls: Vec<expand::Decl>,
    /// `None` when the pipeline names a calendar that does not exist
    /// (already reported).
    calendar: Option<Calendar>,
    force_all: bool,
    cache_max_size: Option<u64>,
    /// Problems found so far; the caller goes on and adds its own.
    diags: Diagnostics,
}

fn front(
    path: &Path,
    text: &str,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Front, Diagnostics> {
    let file: Arc<Path> = Arc::from(path);
    let mut diags = Diagnostics::default();
    let doc = match crate::spec::yaml::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            diags.push(syntax_error(&file, e));
            return Err(diags);
        }
    };
    let spec = match from_yaml::<PipelineSpec>(&doc, "") {
        Ok(spec) => spec,
        Err(e) => {
            diags.push(Diagnostic::new(
                &file,
                e.pos,
                e.path.unwrap_or_default(),
                e.message,
            ));
            return Err(diags);
        }
    };

    let before_params = diags.len();
    let mut secrets = Secrets::default();
    let params = params::resolve(
        &file,
        "params",
        spec.params.as_ref(),
        overrides,
        None,
        &mut secrets,
        &mut diags,
    );
    if diags.len() > before_params {
        // Without every parameter, expansion would report a cascade of
        // unresolved references that are not the user's mistake.
        return Err(diags.sorted());
    }
    // What `${…}` can name: the parameters and the environment variables
    // the file reads.
    let mut names = params.clone();
    interp::env_params(&doc, &mut names, &mut secrets);
    // Resources may name parameters (`concurrency: ${parallel_dates}`).
    let resources_spec = spec.resources.as_ref().map(|section| {
        let mut unresolved = Vec::new();
        let scope = interp::Scope::new(&names);
        let value = interp::interpolate(section, "resources", &scope, &mut unresolved);
        for (path, pos, e) in unresolved {
            diags.push(Diagnostic::new(&file, Some(pos), path, e.to_string()));
        }
        value
    });
    let resources = read_resources(&file, resources_spec.as_ref(), &mut diags);
    let no_nodes = match &spec.nodes.value {
        Value::Null => true,
        Value::Map(m) => m.is_empty(),
        _ => false,
    };
    if no_nodes {
        let pos = doc.key_pos("nodes").unwrap_or(spec.nodes.pos);
        diags.push(Diagnostic::new(
            &file,
            Some(pos),
            "nodes",
            "the pipeline has no nodes",
        ));
        return Err(diags.sorted());
    }

    let mut expander = expand::Expander::new(&mut diags, &resources, registry);
    let root = interp::Scope::new(&names);
    expander.expand_nodes(&file, &spec.nodes, "", &root, 0);
    expander.resolve_refs();
    let decls = std::mem::take(&mut expander.decls);
    secrets.merge(&expander.secrets);
    let calendar = calendar(&file, &doc, spec.calendar.as_ref(), &mut diags);

    let force_all = spec
        .cache
        .as_ref()
        .and_then(|c| c.force.as_ref())
        .is_some_and(|force| cache_force(&file, force, &names, &mut diags));
    let cache_max_size = spec
        .cache
        .as_ref()
        .and_then(|c| c.max_size.as_ref())
        .and_then(|size| match crate::spec::parse_size(&size.scalar_text()) {
            Ok(n) => Some(n as u64),
            Err(e) => {
                diags.push(Diagnostic::new(&file, Some(size.pos), "cache.max_size", e));
                None
            }
        });
    Ok(Front {
        spec,
        params,
        resources,
        secrets,
        decls,
        calendar,
        force_all,
        cache_max_size,
        diags,
    })
}

/// `cache: {force: …}`: a boolean, or a parameter holding one.
fn cache_force(
    file: &Arc<Path>,
    force: &Yaml,
    params: &IndexMap<String, serde_json::Value>,
    diags: &mut Diagnostics,
) -> bool {
    let mut unresolved = Vec::new();
    let scope = interp::Scope::new(params);
    let value = interp::interpolate(force, "cache.force", &scope, &mut unresolved);
    for (path, pos, e) in &unresolved {
        diags.push(Diagnostic::new(
            file,
            Some(*pos),
            path.clone(),
            e.to_string(),
        ));
    }
    if !unresolved.is_empty() {
        return false;
    }
    match &value.value {
        Value::Bool(b) => *b,
        Value::Str(s) if s == "true" || s == "false" => s == "true",
        _ => {
            diags.push(Diagnostic::new(
                file,
                Some(force.pos),
                "cache.force",
                format!(
                    "'{}' is not true or false; write force: true, or a bool parameter: \
                     force: ${{force_recalculate}}",
                    value.scalar_text()
                ),
            ));
            false
        }
    }
}

/// The trading calendar the pipeline names (HOSE when it names none).
fn calendar(
    file: &Arc<Path>,
    doc: &Yaml,
    spec: Option<&crate::spec::CalendarSpec>,
    diags: &mut Diagnostics,
) -> Option<Calendar> {
    use crate::spec::CalendarSpec;
    let (name, extra): (&str, &[String]) = match spec {
        None => return Some(Calendar::hose().clone()),
        Some(CalendarSpec::Exchange(name)) => (name, &[]),
        Some(CalendarSpec::Extended(e)) => (&e.exchange, &e.holidays),
    };
    let pos = doc.get("calendar").map(|c| c.pos);
    let found = Calendar::named(name)
        .ok_or_else(|| format!("unknown exchange '{name}'; the calendars are hose and nyse"))
        .and_then(|c| c.with_holidays(extra));
    match found {
        Ok(c) => Some(c),
        Err(message) => {
            diags.push(Diagnostic::new(file, pos, "calendar", message));
            None
        }
    }
}

/// A YAML document that could not be read: a syntax error, or a duplicate
/// key or a document over a limit, which have a place in the document.
pub(crate) fn syntax_error(file: &Arc<Path>, e: crate::spec::yaml::SyntaxError) -> Diagnostic {
    let message = if e.syntax {
        format!("YAML syntax: {}", e.message)
    } else {
        e.message
    };
    Diagnostic::new(file, Some(e.pos), e.path, message)
}

fn read_resources(
    file: &Arc<Path>,
    section: Option<&Yaml>,
    diags: &mut Diagnostics,
) -> IndexMap<String, ResourcePolicy> {
    let mut out = IndexMap::new();
    let Some(section) = section else { return out };
    match &section.value {
        Value::Null => {}
        Value::Map(entries) => {
            for (key, node) in entries {
                let name = key.scalar_text();
                let path = format!("resources.{name}");
                match from_yaml::<ResourceSpec>(node, &path) {
                    Ok(r) => {
                        if let Some(url) = &r.shared {
                            let pos = node.get("shared").map_or(node.pos, |c| c.pos);
                            let message = match (SharedRate::parse(url), &r.rate) {
                                (Err(e), _) => Some(e),
                                (Ok(_), None) => Some(
                                    "a shared rate needs a rate, and this resource has none; add rate: (e.g. 20/s)".to_string(),
                                ),
                                (Ok(_), Some(_)) => None,
                            };
                            if let Some(message) = message {
                                diags.push(Diagnostic::new(
                                    file,
                                    Some(pos),
                                    format!("{path}.shared"),
                                    message,
                                ));
                            }
                        }
                        if r.concurrency == Some(0) {
                            let pos = node.get("concurrency").map_or(node.pos, |c| c.pos);
                            diags.push(Diagnostic::new(
                                file,
                                Some(pos),
                                format!("{path}.concurrency"),
                                "a concurrency of 0 never runs anything; use 1 or more",
                            ));
                        }
                        out.insert(name, policy::resource(&r));
                    }
                    Err(e) => {
                        diags.push(Diagnostic::new(
                            file,
                            e.pos,
                            e.path.unwrap_or(path),
                            e.message,
                        ));
                        // Still a resource: the nodes naming it are not wrong.
                        out.insert(name, ResourcePolicy::default());
                    }
                }
            }
        }
        _ => diags.push(Diagnostic::new(
            file,
            Some(section.pos),
            "resources",
            format!(
                "expected a mapping of resource names to limits, found {}",
                section.kind()
            ),
        )),
    }
    out
}

/// Two sinks writing one place would race; that is the user's to fix.
fn check_sinks(
    graph: &petgraph::graph::DiGraph<crate::plan::PlanNode, ()>,
    decls: &[expand::Decl],
    diags: &mut Diagnostics,
) {
    // The days of a sink partitioned by date write their own folders.
    let mut by_target: IndexMap<(String, Option<&str>), Vec<&str>> = IndexMap::new();
    for node in graph.node_weights().filter(|n| n.effect == Effect::Sink) {
        if let Some(target) = node.operator.sink_target() {
            let day = node.id.rsplit_once('@').map(|(_, day)| day);
            by_target.entry((target, day)).or_default().push(&node.id);
        }
    }
    by_target.retain(|_, sinks| sinks.len() > 1);
    if by_target.is_empty() {
        return;
    }
    let origins: HashMap<&str, &expand::Origin> =
        decls.iter().map(|d| (d.name.as_str(), &d.origin)).collect();
    for ((target, _), sinks) in &by_target {
        for (i, name) in sinks.iter().enumerate() {
            let others: Vec<&str> = sinks
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, s)| *s)
                .collect();
            if let Some(o) = origins.get(name) {
                diags.push(Diagnostic::new(
                    &o.file,
                    Some(o.pos),
                    &o.path,
                    format!(
                        "sink '{name}' writes '{target}', as does {}; give each sink its own path",
                        others.join(", ")
                    ),
                ));
            }
        }
    }
}
