//! Expansion: nodes as written become node *instances* — one per `foreach`
//! element, fragments inlined under their node's name, inline inputs given
//! names of their own — and every reference between them is resolved.
//!
//! Each node is expanded as one [`Step`]: what was written, where, under
//! which instance name, and which names it sees. Fragments are in
//! [`fragment`], reference lookup in [`refs`].

mod fragment;
mod refs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::interp::{Scope, interpolate, interpolate_str};
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::plan::Secrets;
use crate::plan::{NodePolicy, ResourcePolicy};
use crate::spec::de::from_yaml;
use crate::spec::{NodeSpec, Pos, Value, Yaml};
use quiver_operators::Registry;
pub use refs::parse_ref;

/// Where something was declared.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<Path>,
    pub path: String,
    pub pos: Pos,
}

/// A node instance as declared, before merging.
#[derive(Debug, Clone)]
pub struct Decl {
    pub name: String,
    pub op: String,
    pub params: Yaml,
    /// `params` hold `${…}` references already reported as unresolved: the
    /// operator is not built, so they are not reported again as bad values.
    pub unresolved: bool,
    pub inputs: Vec<DeclInput>,
    pub policy: NodePolicy,
    pub origin: Origin,
    /// `partition_by: date`: split into one node per trading day (see
    /// [`super::partition`]).
    pub partition: bool,
    /// With `partition`: the trading days before each day it also reads.
    pub lookback: super::partition::Lookback,
}

#[derive(Debug, Clone)]
pub struct DeclInput {
    pub name: String,
    pub target: Target,
    pub origin: Origin,
}

/// What an input refers to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A reference not yet looked up, in namespace `ns`.
    Pending {
        text: String,
        ns: usize,
    },
    One(usize),
    All {
        key: String,
        members: Vec<(String, usize)>,
    },
    /// Already reported as an error.
    Broken,
}

impl Target {
    /// The declared nodes it refers to, in order (none while pending or
    /// broken).
    pub fn nodes(&self) -> Vec<usize> {
        match self {
            Target::One(t) => vec![*t],
            Target::All { members, .. } => members.iter().map(|(_, t)| *t).collect(),
            Target::Pending { .. } | Target::Broken => Vec::new(),
        }
    }
}

/// What a name in a namespace stands for.
#[derive(Debug, Clone)]
enum Entry {
    One(usize),
    FanOut {
        var: String,
        members: Vec<(String, usize)>,
    },
    /// A node whose own errors are already reported: references to it
    /// resolve quietly, rather than as a cascade of 'unknown node' errors.
    Broken,
}

/// The names of one pipeline or fragment instance.
#[derive(Default)]
struct Namespace {
    entries: HashMap<String, Entry>,
    /// Fragment inputs, bound to what the including node passed.
    bindings: HashMap<String, Target>,
}

/// One node being expanded: what was written and where, the instance it
/// becomes, and the names it sees.
#[derive(Clone, Copy)]
struct Step<'a> {
    /// The file the node is written in.
    file: &'a Arc<Path>,
    /// The node as written, and as parsed.
    node: &'a Yaml,
    spec: &'a NodeSpec,
    /// Its YAML path, e.g. `nodes.features`.
    path: &'a str,
    /// The instance's name, e.g. `features[FPT]` or `whale.footprint`.
    name: &'a str,
    /// The parameters and `foreach` variables in scope.
    scope: &'a Scope<'a>,
    /// The namespace its references are looked up in.
    ns: usize,
}

impl Step<'_> {
    /// The position of `key` in the node, or of the node.
    fn pos_of(&self, key: &str) -> Pos {
        self.node.get(key).map_or(self.node.pos, |v| v.pos)
    }
}

pub struct Expander<'d> {
    pub decls: Vec<Decl>,
    namespaces: Vec<Namespace>,
    pub diags: &'d mut Diagnostics,
    resources: &'d IndexMap<String, ResourcePolicy>,
    registry: &'d Registry,
    fragments: HashMap<PathBuf, Option<Arc<Yaml>>>,
    include_stack: Vec<PathBuf>,
    /// Secret values met in fragments: their secret parameters and the
    /// environment variables they read.
    pub secrets: Secrets,
}

impl<'d> Expander<'d> {
    pub fn new(
        diags: &'d mut Diagnostics,
        resources: &'d IndexMap<String, ResourcePolicy>,
        registry: &'d Registry,
    ) -> Self {
        Self {
            decls: Vec::new(),
            namespaces: vec![Namespace::default()],
            diags,
            resources,
            registry,
            fragments: HashMap::new(),
            include_stack: Vec::new(),
            secrets: Secrets::default(),
        }
    }

    fn error(
        &mut self,
        file: &Arc<Path>,
        pos: Pos,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::new(file, Some(pos), path, message));
    }

    /// Expands a `nodes:` mapping into namespace `ns`; instance names start with `prefix`.
    pub fn expand_nodes(
        &mut self,
        file: &Arc<Path>,
        nodes: &Yaml,
        prefix: &str,
        scope: &Scope,
        ns: usize,
    ) {
        let Some(entries) = nodes.as_map() else {
            self.error(
                file,
                nodes.pos,
                "nodes",
                format!(
                    "expected a mapping of node names to nodes, found {}",
                    nodes.kind()
                ),
            );
            return;
        };
        for (key, node) in entries {
            let name = key.scalar_text();
            let path = format!("nodes.{name}");
            if let Err(message) = check_name(&name) {
                self.error(file, key.pos, &path, message);
                self.namespaces[ns].entries.insert(name, Entry::Broken);
                continue;
            }
            let Some(spec) = self.parse_node(file, node, &path) else {
                self.namespaces[ns].entries.insert(name, Entry::Broken);
                continue;
            };
            let full = format!("{prefix}{name}");
            let step = Step {
                file,
                node,
                spec: &spec,
                path: &path,
                name: &full,
                scope,
                ns,
            };
            let entry = self.expand_node(step);
            self.namespaces[ns]
                .entries
                .insert(name, entry.unwrap_or(Entry::Broken));
        }
    }

    fn parse_node(&mut self, file: &Arc<Path>, node: &Yaml, path: &str) -> Option<NodeSpec> {
        match from_yaml::<NodeSpec>(node, path) {
            Ok(spec) => Some(spec),
            Err(e) => {
                self.diags.push(Diagnostic::new(
                    file,
                    e.pos,
                    e.path.unwrap_or_else(|| path.to_string()),
                    e.message,
                ));
                None
            }
        }
    }

    /// A node: one instance, or a fan-out of them.
    fn expand_node(&mut self, step: Step) -> Option<Entry> {
        match &step.spec.foreach {
            None => self.expand_instance(step),
            Some(foreach) => self
                .expand_foreach(step, foreach)
                .map(|(var, members)| Entry::FanOut { var, members }),
        }
    }

    /// One instance per element of `foreach`; returns the variable and the instances.
    fn expand_foreach(
        &mut self,
        step: Step,
        foreach: &str,
    ) -> Option<(String, Vec<(String, usize)>)> {
        let pos = step.pos_of("foreach");
        let fpath = format!("{}.foreach", step.path);
        let (var, keys) = match parse_foreach(foreach, step.scope) {
            Ok(v) => v,
            Err(message) => {
                self.error(step.file, pos, fpath, message);
                return None;
            }
        };
        let mut members = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        for (key, value) in keys {
            if !seen.insert(key.clone()) {
                self.error(
                    step.file,
                    pos,
                    &fpath,
                    format!(
                        "'{key}' appears twice in the foreach list; each instance needs its own key"
                    ),
                );
                continue;
            }
            // The variable keeps the element's type (`seed: ${n}` over
            // `[1, 2]` is a number); the key names the instance.
            let inner = step.scope.with_var(&var, &value);
            let instance = format!("{}[{key}]", step.name);
            let at = Step {
                name: &instance,
                scope: &inner,
                ..step
            };
            match self.expand_instance(at) {
                Some(Entry::One(id)) => members.push((key, id)),
                Some(Entry::Broken) | None => {}
                Some(Entry::FanOut { .. }) => {
                    self.error(step.file, pos, &fpath, "a foreach over a fragment whose output is itself a fan-out is not supported; move the foreach into the fragment");
                    return None;
                }
            }
        }
        Some((var, members))
    }

    /// Expands one node instance: an operator node, or a fragment.
    fn expand_instance(&mut self, step: Step) -> Option<Entry> {
        if let Some(resource) = &step.spec.resource
            && !self.resources.contains_key(resource)
        {
            let hint = did_you_mean(resource, self.resources.keys().map(String::as_str));
            let message = if self.resources.is_empty() {
                format!(
                    "unknown resource '{resource}'; declare it under the top-level resources: section"
                )
            } else {
                format!("unknown resource '{resource}'{hint}")
            };
            self.error(
                step.file,
                step.pos_of("resource"),
                format!("{}.resource", step.path),
                message,
            );
        }
        match (&step.spec.op, &step.spec.use_) {
            (Some(op), None) => self.expand_op(step, op),
            (None, Some(fragment)) => self.expand_fragment(step, fragment),
            (Some(_), Some(_)) => {
                self.error(
                    step.file,
                    step.node.pos,
                    step.path,
                    "a node has either 'op' (an operator) or 'use' (a fragment), not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    step.file,
                    step.node.pos,
                    step.path,
                    "a node needs 'op' (an operator, see `quiver ops`) or 'use' (a fragment file)",
                );
                None
            }
        }
    }

    fn expand_op(&mut self, step: Step, op: &str) -> Option<Entry> {
        let Step {
            file, node, path, ..
        } = step;
        let origin = Origin {
            file: file.clone(),
            path: path.to_string(),
            pos: node.pos,
        };
        let registry = self.registry;
        if registry.get(op).is_none() {
            let pos = node.get("op").map_or(node.pos, |o| o.pos);
            self.error(
                file,
                pos,
                format!("{path}.op"),
                match crate::diag::suggest(op, registry.names()) {
                    Some(s) => format!("unknown operator '{op}' — did you mean '{s}'?"),
                    None => format!("unknown operator '{op}'; `quiver ops` lists them"),
                },
            );
            return None;
        }
        if let (Some(with), Some(def)) = (&step.spec.with, registry.get(op)) {
            for field in def.verbatim() {
                if let Some(value) = with.get(field)
                    && let Value::Str(text) = &value.value
                    && text.contains("${")
                {
                    self.error(
                        file,
                        value.pos,
                        format!("{path}.with.{field}"),
                        format!(
                            "{op} does not fill ${{…}} into `{field}`: a value spliced into SQL \
                             can change what the SQL does. Write $1, $2, … where the values go \
                             and list them in `params:`, e.g. params: [\"${{symbol}}\"]"
                        ),
                    );
                }
            }
        }
        let params = match &step.spec.with {
            Some(with) => self.interpolate(file, with, &format!("{path}.with"), step.scope),
            None => Some(Yaml::new(Value::Map(Vec::new()), node.pos)),
        };
        let inputs = match &step.spec.inputs {
            Some(inputs) => self.expand_inputs(step, inputs),
            None => Vec::new(),
        };
        let policy = super::policy::node(
            file,
            path,
            step.spec,
            step.scope,
            self.resources,
            self.diags,
        );
        let partition = match step.spec.partition_by.as_deref() {
            None => false,
            Some("date") => true,
            Some(other) => {
                self.error(
                    file,
                    step.pos_of("partition_by"),
                    format!("{path}.partition_by"),
                    format!("cannot partition by '{other}'; the one partitioning is 'date'"),
                );
                false
            }
        };
        if step.spec.lookback.is_some() && !partition {
            self.error(
                file,
                step.pos_of("lookback"),
                format!("{path}.lookback"),
                "lookback: is the history a date-partitioned stage reads; add partition_by: date",
            );
        }
        if step.spec.previous.is_some() && !partition {
            self.error(
                file,
                step.pos_of("previous"),
                format!("{path}.previous"),
                "previous: names the input under which each day reads the day before of a \
                 date-partitioned stage; add partition_by: date",
            );
        }
        self.decls.push(Decl {
            partition,
            lookback: super::partition::Lookback::from(
                step.spec.lookback.as_ref(),
                step.spec.previous.as_deref(),
            ),
            name: step.name.to_string(),
            op: op.to_string(),
            unresolved: params.is_none(),
            params: params.unwrap_or_else(|| Yaml::new(Value::Null, node.pos)),
            inputs,
            policy,
            origin,
        });
        Some(Entry::One(self.decls.len() - 1))
    }

    /// Interpolates `node`, or reports its unresolved references.
    fn interpolate(
        &mut self,
        file: &Arc<Path>,
        node: &Yaml,
        path: &str,
        scope: &Scope,
    ) -> Option<Yaml> {
        let mut errors = Vec::new();
        let out = interpolate(node, path, scope, &mut errors);
        let ok = errors.is_empty();
        for (path, pos, e) in errors {
            self.error(file, pos, path, e.to_string());
        }
        ok.then_some(out)
    }

    /// The `inputs:` of the node at `step`: references, and inline nodes
    /// named after their input (`features[FPT].ticks`).
    fn expand_inputs(&mut self, step: Step, inputs: &Yaml) -> Vec<DeclInput> {
        let file = step.file;
        let path = format!("{}.inputs", step.path);
        let mut out: Vec<DeclInput> = Vec::new();
        match &inputs.value {
            Value::Null => {}
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ipath = format!("{path}[{i}]");
                    let Some(text) = self.ref_text(step, item, &ipath) else { continue };
                    let name = parse_ref(&text).0.to_string();
                    if out.iter().any(|d| d.name == name) {
                        self.error(file, item.pos, &ipath, format!("input '{name}' is listed twice; use the map form (name: ref) to give inputs distinct names"));
                        continue;
                    }
                    let origin = Origin { file: file.clone(), path: ipath, pos: item.pos };
                    out.push(DeclInput { name, target: Target::Pending { text, ns: step.ns }, origin });
                }
            }
            Value::Map(entries) => {
                for (key, value) in entries {
                    let name = key.scalar_text();
                    let ipath = format!("{path}.{name}");
                    let origin = Origin { file: file.clone(), path: ipath.clone(), pos: value.pos };
                    let target = match &value.value {
                        Value::Map(_) => self.expand_inline(step, value, &ipath, &format!("{}.{name}", step.name)),
                        _ => match self.ref_text(step, value, &ipath) {
                            Some(text) => Target::Pending { text, ns: step.ns },
                            None => Target::Broken,
                        },
                    };
                    out.push(DeclInput { name, target, origin });
                }
            }
            _ => self.error(file, inputs.pos, path, format!("inputs are a list of node references or a map of input names to references or inline nodes; found {}", inputs.kind())),
        }
        out
    }

    /// An input reference of the node at `step` as text, `${…}` resolved.
    fn ref_text(&mut self, step: Step, node: &Yaml, path: &str) -> Option<String> {
        let Value::Str(text) = &node.value else {
            self.error(step.file, node.pos, path, format!("expected a node reference such as 'prices', 'features[FPT]' or 'features[*]', found {}", node.kind()));
            return None;
        };
        match interpolate_str(text, step.scope) {
            Ok(Json::String(s)) => Some(s),
            Ok(other) => {
                self.error(
                    step.file,
                    node.pos,
                    path,
                    format!("a reference must be text, but this one is {other}"),
                );
                None
            }
            Err(e) => {
                self.error(step.file, node.pos, path, e.to_string());
                None
            }
        }
    }

    /// An inline node `node` in the inputs of `owner`, at `path`, becoming
    /// instance(s) `name`; it sees what its owner sees.
    fn expand_inline(&mut self, owner: Step, node: &Yaml, path: &str, name: &str) -> Target {
        let Some(spec) = self.parse_node(owner.file, node, path) else {
            return Target::Broken;
        };
        let step = Step {
            node,
            spec: &spec,
            path,
            name,
            ..owner
        };
        match self.expand_node(step) {
            Some(Entry::One(id)) => Target::One(id),
            Some(Entry::FanOut { var, members }) => Target::All { key: var, members },
            Some(Entry::Broken) | None => Target::Broken,
        }
    }
}

/// Node names become parts of instance names and SQL table names.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid node name; use letters, digits, '_' and '-', starting with a letter"
        ))
    }
}

/// Parses `VAR in LIST`, LIST being `${param}` or a YAML list; returns the
/// variable and each element as an instance key and its value.
fn parse_foreach(text: &str, scope: &Scope) -> Result<(String, Vec<(String, Json)>), String> {
    let help = "write foreach as 'VAR in LIST', e.g. 'symbol in ${symbols}'";
    let (var, list) = text
        .split_once(" in ")
        .ok_or_else(|| format!("'{text}' is not a foreach; {help}"))?;
    let var = var.trim();
    if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("'{var}' is not a variable name; {help}"));
    }
    let list = list.trim();
    let value = if list.contains("${") {
        interpolate_str(list, scope).map_err(|e| e.to_string())?
    } else {
        crate::spec::yaml::parse(list)
            .map_err(|e| format!("'{list}' is not a list: {}", e.message))?
            .to_json()
    };
    let Json::Array(items) = value else {
        let found = match &value {
            Json::String(s) => format!("the text '{s}'"),
            other => other.to_string(),
        };
        return Err(format!("foreach needs a list, but '{list}' is {found}"));
    };
    let keys = items
        .into_iter()
        .map(|v| match &v {
            Json::String(s) => Ok((s.clone(), v)),
            Json::Number(n) => Ok((n.to_string(), v)),
            // A list of records: each instance is keyed by the record's
            // first field, and `${VAR.FIELD}` reads its fields.
            Json::Object(fields) => match fields.values().next() {
                Some(Json::String(s)) => Ok((s.clone(), v.clone())),
                Some(Json::Number(n)) => Ok((n.to_string(), v.clone())),
                _ => Err(format!(
                    "a foreach over mappings keys each instance by the first field, which must be a string or number; found {v}"
                )),
            },
            other => Err(format!(
                "foreach keys are strings, numbers or mappings, found {other}"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((var.to_string(), keys))
}
