//! Expansion: nodes as written become node *instances* — one per `foreach`
//! element, fragments inlined under their node's name, inline inputs given
//! names of their own — and every reference between them is resolved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::interp::{Scope, interpolate, interpolate_str};
use super::params::{self, Override};
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::plan::{NodePolicy, ResourcePolicy};
use crate::spec::de::from_yaml;
use crate::spec::{FragmentSpec, NodeSpec, Pos, Value, Yaml};

/// Where something was declared.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<Path>,
    pub path: String,
    pub pos: Pos,
}

/// A node instance as declared, before merging.
#[derive(Debug)]
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
}

#[derive(Debug)]
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

pub struct Expander<'d> {
    pub decls: Vec<Decl>,
    namespaces: Vec<Namespace>,
    pub diags: &'d mut Diagnostics,
    resources: &'d IndexMap<String, ResourcePolicy>,
    fragments: HashMap<PathBuf, Option<Arc<Yaml>>>,
    include_stack: Vec<PathBuf>,
}

impl<'d> Expander<'d> {
    pub fn new(
        diags: &'d mut Diagnostics,
        resources: &'d IndexMap<String, ResourcePolicy>,
    ) -> Self {
        Self {
            decls: Vec::new(),
            namespaces: vec![Namespace::default()],
            diags,
            resources,
            fragments: HashMap::new(),
            include_stack: Vec::new(),
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
            let spec = match from_yaml::<NodeSpec>(node, &path) {
                Ok(spec) => spec,
                Err(e) => {
                    self.diags.push(Diagnostic::new(
                        file,
                        e.pos,
                        e.path.unwrap_or(path),
                        e.message,
                    ));
                    self.namespaces[ns].entries.insert(name, Entry::Broken);
                    continue;
                }
            };
            let full = format!("{prefix}{name}");
            let entry = match &spec.foreach {
                None => self.expand_instance(file, &spec, node, &path, &full, scope, ns),
                Some(foreach) => self
                    .expand_foreach(file, &spec, node, &path, &full, foreach, scope, ns)
                    .map(|(var, members)| Entry::FanOut { var, members }),
            };
            self.namespaces[ns]
                .entries
                .insert(name, entry.unwrap_or(Entry::Broken));
        }
    }

    /// One instance per element of `foreach`; returns the variable and the instances.
    #[allow(clippy::too_many_arguments)]
    fn expand_foreach(
        &mut self,
        file: &Arc<Path>,
        spec: &NodeSpec,
        node: &Yaml,
        path: &str,
        full: &str,
        foreach: &str,
        scope: &Scope,
        ns: usize,
    ) -> Option<(String, Vec<(String, usize)>)> {
        let pos = node.get("foreach").map_or(node.pos, |f| f.pos);
        let fpath = format!("{path}.foreach");
        let (var, keys) = match parse_foreach(foreach, scope) {
            Ok(v) => v,
            Err(message) => {
                self.error(file, pos, fpath, message);
                return None;
            }
        };
        let mut members = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        for (key, value) in keys {
            if !seen.insert(key.clone()) {
                self.error(
                    file,
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
            let inner = scope.with_var(&var, &value);
            let instance = format!("{full}[{key}]");
            match self.expand_instance(file, spec, node, path, &instance, &inner, ns) {
                Some(Entry::One(id)) => members.push((key, id)),
                Some(Entry::Broken) | None => {}
                Some(Entry::FanOut { .. }) => {
                    self.error(file, pos, &fpath, "a foreach over a fragment whose output is itself a fan-out is not supported; move the foreach into the fragment");
                    return None;
                }
            }
        }
        Some((var, members))
    }

    /// Expands one node instance: an operator node, or a fragment.
    #[allow(clippy::too_many_arguments)]
    fn expand_instance(
        &mut self,
        file: &Arc<Path>,
        spec: &NodeSpec,
        node: &Yaml,
        path: &str,
        full: &str,
        scope: &Scope,
        ns: usize,
    ) -> Option<Entry> {
        if let Some(resource) = &spec.resource
            && !self.resources.contains_key(resource)
        {
            let pos = node.get("resource").map_or(node.pos, |r| r.pos);
            let hint = did_you_mean(resource, self.resources.keys().map(String::as_str));
            let message = if self.resources.is_empty() {
                format!(
                    "unknown resource '{resource}'; declare it under the top-level resources: section"
                )
            } else {
                format!("unknown resource '{resource}'{hint}")
            };
            self.error(file, pos, format!("{path}.resource"), message);
        }
        match (&spec.op, &spec.use_) {
            (Some(op), None) => self.expand_op(file, spec, op, node, path, full, scope, ns),
            (None, Some(fragment)) => {
                self.expand_fragment(file, spec, fragment, node, path, full, scope, ns)
            }
            (Some(_), Some(_)) => {
                self.error(
                    file,
                    node.pos,
                    path,
                    "a node has either 'op' (an operator) or 'use' (a fragment), not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    file,
                    node.pos,
                    path,
                    "a node needs 'op' (an operator, see `quiver ops`) or 'use' (a fragment file)",
                );
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_op(
        &mut self,
        file: &Arc<Path>,
        spec: &NodeSpec,
        op: &str,
        node: &Yaml,
        path: &str,
        full: &str,
        scope: &Scope,
        ns: usize,
    ) -> Option<Entry> {
        let origin = Origin {
            file: file.clone(),
            path: path.to_string(),
            pos: node.pos,
        };
        let registry = quiver_operators::registry();
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
        let params = match &spec.with {
            Some(with) => self.interpolate(file, with, &format!("{path}.with"), scope),
            None => Some(Yaml::new(Value::Map(Vec::new()), node.pos)),
        };
        let inputs = match &spec.inputs {
            Some(inputs) => {
                self.expand_inputs(file, inputs, &format!("{path}.inputs"), full, scope, ns)
            }
            None => Vec::new(),
        };
        let policy = super::policy::node(file, path, spec, scope, self.resources, self.diags);
        self.decls.push(Decl {
            name: full.to_string(),
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

    fn expand_inputs(
        &mut self,
        file: &Arc<Path>,
        inputs: &Yaml,
        path: &str,
        owner: &str,
        scope: &Scope,
        ns: usize,
    ) -> Vec<DeclInput> {
        let mut out: Vec<DeclInput> = Vec::new();
        match &inputs.value {
            Value::Null => {}
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ipath = format!("{path}[{i}]");
                    let Some(text) = self.ref_text(file, item, &ipath, scope) else { continue };
                    let name = parse_ref(&text).0.to_string();
                    if out.iter().any(|d| d.name == name) {
                        self.error(file, item.pos, &ipath, format!("input '{name}' is listed twice; use the map form (name: ref) to give inputs distinct names"));
                        continue;
                    }
                    let origin = Origin { file: file.clone(), path: ipath, pos: item.pos };
                    out.push(DeclInput { name, target: Target::Pending { text, ns }, origin });
                }
            }
            Value::Map(entries) => {
                for (key, value) in entries {
                    let name = key.scalar_text();
                    let ipath = format!("{path}.{name}");
                    let origin = Origin { file: file.clone(), path: ipath.clone(), pos: value.pos };
                    let target = match &value.value {
                        Value::Map(_) => self.expand_inline(file, value, &ipath, &format!("{owner}.{name}"), scope, ns),
                        _ => match self.ref_text(file, value, &ipath, scope) {
                            Some(text) => Target::Pending { text, ns },
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

    /// An input reference as text, `${…}` resolved.
    fn ref_text(
        &mut self,
        file: &Arc<Path>,
        node: &Yaml,
        path: &str,
        scope: &Scope,
    ) -> Option<String> {
        let Value::Str(text) = &node.value else {
            self.error(file, node.pos, path, format!("expected a node reference such as 'prices', 'features[FPT]' or 'features[*]', found {}", node.kind()));
            return None;
        };
        match interpolate_str(text, scope) {
            Ok(Json::String(s)) => Some(s),
            Ok(other) => {
                self.error(
                    file,
                    node.pos,
                    path,
                    format!("a reference must be text, but this one is {other}"),
                );
                None
            }
            Err(e) => {
                self.error(file, node.pos, path, e.to_string());
                None
            }
        }
    }

    /// An inline node in `inputs:`; its instances are named after the input.
    fn expand_inline(
        &mut self,
        file: &Arc<Path>,
        node: &Yaml,
        path: &str,
        full: &str,
        scope: &Scope,
        ns: usize,
    ) -> Target {
        let spec = match from_yaml::<NodeSpec>(node, path) {
            Ok(spec) => spec,
            Err(e) => {
                self.diags.push(Diagnostic::new(
                    file,
                    e.pos,
                    e.path.unwrap_or(path.to_string()),
                    e.message,
                ));
                return Target::Broken;
            }
        };
        let entry = match &spec.foreach {
            None => self.expand_instance(file, &spec, node, path, full, scope, ns),
            Some(foreach) => self
                .expand_foreach(file, &spec, node, path, full, foreach, scope, ns)
                .map(|(var, members)| Entry::FanOut { var, members }),
        };
        match entry {
            Some(Entry::One(id)) => Target::One(id),
            Some(Entry::FanOut { var, members }) => Target::All { key: var, members },
            Some(Entry::Broken) | None => Target::Broken,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn expand_fragment(
        &mut self,
        file: &Arc<Path>,
        spec: &NodeSpec,
        fragment: &str,
        node: &Yaml,
        path: &str,
        full: &str,
        scope: &Scope,
        ns: usize,
    ) -> Option<Entry> {
        let use_pos = node.get("use").map_or(node.pos, |u| u.pos);
        let frag_path = normalise(&file.parent().unwrap_or(Path::new("")).join(fragment));
        if self.include_stack.contains(&frag_path) {
            let mut chain: Vec<String> = self
                .include_stack
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            chain.push(frag_path.display().to_string());
            self.error(
                file,
                use_pos,
                format!("{path}.use"),
                format!(
                    "fragments include each other in a cycle: {}",
                    chain.join(" → ")
                ),
            );
            return None;
        }
        let doc = self.load_fragment(file, &frag_path, use_pos, path)?;
        let frag_file: Arc<Path> = Arc::from(frag_path.as_path());
        let fspec = match from_yaml::<FragmentSpec>(&doc, "") {
            Ok(s) => s,
            Err(e) => {
                self.diags.push(Diagnostic::new(
                    &frag_file,
                    e.pos,
                    e.path.unwrap_or_default(),
                    e.message,
                ));
                return None;
            }
        };

        // The fragment's parameters come from `with:`, read in the including scope.
        let mut overrides = Vec::new();
        let mut params_ok = true;
        if let Some(with) = &spec.with {
            match self.interpolate(file, with, &format!("{path}.with"), scope) {
                Some(with) => match with.as_map() {
                    Some(entries) => overrides.extend(entries.iter().map(|(k, v)| Override {
                        name: k.scalar_text(),
                        path: format!("{path}.with.{}", k.scalar_text()),
                        pos: Some(k.pos),
                        value: v.clone(),
                        source: file.clone(),
                    })),
                    None => {
                        self.error(
                            file,
                            with.pos,
                            format!("{path}.with"),
                            "a fragment's with: is a mapping of its parameter names to values",
                        );
                        params_ok = false;
                    }
                },
                None => params_ok = false,
            }
        }
        let includer = params::Includer {
            file,
            pos: node.get("with").map_or(node.pos, |w| w.pos),
            path: match spec.with {
                Some(_) => format!("{path}.with"),
                None => path.to_string(),
            },
            fragment: &fspec.fragment,
        };
        let mut param_diags = Diagnostics::default();
        let fparams = params::resolve(
            &frag_file,
            "params",
            fspec.params.as_ref(),
            &overrides,
            Some(&includer),
            &mut param_diags,
        );
        params_ok &= param_diags.is_empty();
        for d in param_diags.0 {
            self.diags.push(d);
        }

        // The fragment's inputs are bound to what this node passes.
        let child = self.namespaces.len();
        self.namespaces.push(Namespace::default());
        let bound = match &spec.inputs {
            Some(
                inputs @ Yaml {
                    value: Value::Map(_),
                    ..
                },
            ) => self.expand_inputs(file, inputs, &format!("{path}.inputs"), full, scope, ns),
            Some(Yaml {
                value: Value::Null, ..
            })
            | None => Vec::new(),
            Some(other) => {
                self.error(
                    file,
                    other.pos,
                    format!("{path}.inputs"),
                    "a fragment's inputs are a map of its input names to references",
                );
                Vec::new()
            }
        };
        for input in &bound {
            if !fspec.inputs.contains(&input.name) {
                let help = match crate::diag::suggest(
                    &input.name,
                    fspec.inputs.iter().map(String::as_str),
                ) {
                    Some(s) => format!(" — did you mean '{s}'?"),
                    None if fspec.inputs.is_empty() => "; it takes no inputs".to_string(),
                    None => format!("; it takes: {}", fspec.inputs.join(", ")),
                };
                self.error(
                    file,
                    input.origin.pos,
                    &input.origin.path,
                    format!(
                        "fragment '{}' has no input '{}'{help}",
                        fspec.fragment, input.name
                    ),
                );
            }
        }
        let inputs_pos = node.get("inputs").map_or(node.pos, |i| i.pos);
        for wanted in &fspec.inputs {
            if !bound.iter().any(|b| &b.name == wanted) {
                self.error(file, inputs_pos, format!("{path}.inputs"), format!("fragment '{}' needs input '{wanted}'; pass it with inputs: {{{wanted}: NODE}}", fspec.fragment));
            }
        }
        if !params_ok {
            // Without its parameters the fragment's nodes would only report
            // a cascade of unresolved references.
            return None;
        }
        let mut bindings: HashMap<String, Target> =
            bound.into_iter().map(|b| (b.name, b.target)).collect();
        for wanted in &fspec.inputs {
            // Reported above; the fragment's nodes reading it are not wrong.
            bindings.entry(wanted.clone()).or_insert(Target::Broken);
        }
        self.namespaces[child].bindings = bindings;

        self.include_stack.push(frag_path.clone());
        let fscope = Scope::new(&fparams);
        self.expand_nodes(
            &frag_file,
            &fspec.nodes,
            &format!("{full}."),
            &fscope,
            child,
        );
        self.include_stack.pop();

        let output = self.namespaces[child].entries.get(&fspec.output).cloned();
        if output.is_none() {
            let pos = doc.get("output").map_or(doc.pos, |o| o.pos);
            let names: Vec<&str> = self.namespaces[child]
                .entries
                .keys()
                .map(String::as_str)
                .collect();
            let hint = did_you_mean(&fspec.output, names);
            self.error(
                &frag_file,
                pos,
                "output",
                format!(
                    "output '{}' is not a node of this fragment{hint}",
                    fspec.output
                ),
            );
        }
        output
    }

    fn load_fragment(
        &mut self,
        file: &Arc<Path>,
        frag_path: &Path,
        pos: Pos,
        path: &str,
    ) -> Option<Arc<Yaml>> {
        if let Some(cached) = self.fragments.get(frag_path) {
            return cached.clone();
        }
        let loaded = match std::fs::read_to_string(frag_path) {
            Err(e) => {
                self.error(
                    file,
                    pos,
                    format!("{path}.use"),
                    format!("cannot read fragment {}: {e}", frag_path.display()),
                );
                None
            }
            Ok(text) => match crate::spec::yaml::parse(&text) {
                Ok(doc) => Some(Arc::new(doc)),
                Err(e) => {
                    let frag_file: Arc<Path> = Arc::from(frag_path);
                    self.diags.push(super::syntax_error(&frag_file, e));
                    None
                }
            },
        };
        self.fragments
            .insert(frag_path.to_path_buf(), loaded.clone());
        loaded
    }

    /// Resolves every pending reference.
    pub fn resolve_refs(&mut self) {
        for d in 0..self.decls.len() {
            for i in 0..self.decls[d].inputs.len() {
                let Target::Pending { text, ns } = &self.decls[d].inputs[i].target else {
                    continue;
                };
                let (text, ns) = (text.clone(), *ns);
                let target = match self.lookup(&text, ns) {
                    Ok(t) => t,
                    Err(message) => {
                        let o = self.decls[d].inputs[i].origin.clone();
                        self.error(&o.file, o.pos, o.path, message);
                        Target::Broken
                    }
                };
                self.decls[d].inputs[i].target = target;
            }
        }
    }

    fn lookup(&self, text: &str, ns: usize) -> Result<Target, String> {
        let (base, selector) = parse_ref(text);
        let space = &self.namespaces[ns];
        if let Some(entry) = space.entries.get(base) {
            return select(base, entry.clone().into(), selector);
        }
        if let Some(bound) = space.bindings.get(base) {
            let target = match bound {
                Target::Pending { text, ns } => self.lookup(text, *ns)?,
                other => other.clone(),
            };
            // A bound input stands for exactly what the including node passed.
            return match selector {
                None => Ok(target),
                Some(_) => select(base, target, selector),
            };
        }
        let names = space
            .entries
            .keys()
            .chain(space.bindings.keys())
            .map(String::as_str);
        Err(format!(
            "unknown node '{base}'{}",
            did_you_mean(base, names)
        ))
    }
}

impl From<Entry> for Target {
    fn from(e: Entry) -> Self {
        match e {
            Entry::One(id) => Target::One(id),
            Entry::FanOut { var, members } => Target::All { key: var, members },
            Entry::Broken => Target::Broken,
        }
    }
}

/// Applies `[KEY]` or `[*]` to what a name stands for.
fn select(base: &str, target: Target, selector: Option<&str>) -> Result<Target, String> {
    match (target, selector) {
        (Target::All { members, .. }, None) => Err(format!(
            "'{base}' is a fan-out of {} nodes; write '{base}[*]' for all of them or '{base}[KEY]' for one",
            members.len()
        )),
        (Target::All { key, members }, Some("*")) => Ok(Target::All { key, members }),
        (Target::All { members, .. }, Some(k)) => match members.iter().find(|(m, _)| m == k) {
            Some((_, id)) => Ok(Target::One(*id)),
            None => {
                let hint = did_you_mean(k, members.iter().map(|(m, _)| m.as_str()));
                Err(format!("'{base}' has no instance '{k}'{hint}"))
            }
        },
        (Target::One(_), Some(_)) => Err(format!(
            "'{base}' is a single node, not a fan-out; refer to it as '{base}'"
        )),
        (t, _) => Ok(t),
    }
}

/// Splits `name[key]` into its name and selector.
pub fn parse_ref(text: &str) -> (&str, Option<&str>) {
    let text = text.trim();
    match text.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((base, key)) => (base.trim(), Some(key.trim())),
        None => (text, None),
    }
}

/// `path` with `.` and `dir/..` removed, so a fragment reached by two
/// spellings is one fragment (and an include cycle through `..` is found).
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
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
            other => Err(format!(
                "foreach keys are strings or numbers, found {other}"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((var.to_string(), keys))
}
