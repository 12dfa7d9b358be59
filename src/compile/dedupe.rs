//! Merging: declared instances with the same operator, the same canonical
//! parameters and the same inputs become one plan node; the names that
//! declared it become its aliases.

// Keys here are long (an operator's parameters as text, a node's inputs):
// aHash hashes them several times faster than std's SipHash, and these
// maps are only looked up, never iterated, so their order cannot show.
use ahash::AHashMap as HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};
use quiver_operators::{Arity, Effect, Operator, Registry};
use serde_json::Value as Json;

use super::expand::{Decl, Target};
use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::plan::{PlanInput, PlanNode, Source, Stats};
use crate::spec::Yaml;

/// The structural identity of a node: two nodes with equal keys compute
/// the same output. Exact (no hashing), so distinct nodes never merge.
#[derive(PartialEq, Eq, Hash)]
struct NodeKey {
    op: String,
    params: Arc<str>,
    inputs: Vec<(String, InputKey)>,
}

#[derive(PartialEq, Eq, Hash)]
enum InputKey {
    One(usize),
    All(String, Vec<(String, usize)>),
}

/// An operator built from a node's parameters, and those parameters as it
/// reads them.
#[derive(Clone)]
pub(super) struct Prepared {
    pub operator: Arc<dyn Operator>,
    /// The parameters as written, shared by every node that wrote them
    /// (the 100,000 features nodes of a year of VN30 days write one).
    pub params: Arc<str>,
    /// The parameters as the operator reads them, as text: what merging
    /// compares.
    pub resolved: Arc<str>,
}

/// Builds operators from declared nodes, once per operator and parameters,
/// reporting bad parameters at their place in the file.
pub(super) struct Builder<'a> {
    /// Built operators by op, then parameters as text, shared by nodes with
    /// equal op and parameters (two maps, so that a lookup copies no key).
    operators: HashMap<String, HashMap<Arc<str>, Prepared>>,
    param_names: HashMap<String, Vec<String>>,
    registry: &'a Registry,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    New,
    Visiting,
    Done(NodeIndex),
    Failed,
}

pub struct Merger<'a> {
    /// The declared nodes; each one's parameters and inputs are dropped
    /// once it is merged (see [`Merger::run`]).
    decls: &'a mut [Decl],
    state: Vec<State>,
    stack: Vec<usize>,
    seen: HashMap<NodeKey, NodeIndex>,
    builder: Builder<'a>,
    registry: &'a Registry,
    /// Whether identical pure nodes become one (see [`Merger::merging`]).
    merge: bool,
    /// Declared nodes an earlier window of the run made (see
    /// [`Merger::giving`]).
    giving: Option<Giving<'a>>,
    /// Nodes handed over, by identity: two declared nodes standing for one
    /// output are one node here too.
    handed: HashMap<u64, NodeIndex>,
    pub graph: DiGraph<PlanNode, ()>,
    pub stats: Stats,
    diags: &'a mut Diagnostics,
}

impl<'a> Merger<'a> {
    pub fn new(decls: &'a mut [Decl], registry: &'a Registry, diags: &'a mut Diagnostics) -> Self {
        let declared = decls.len();
        Self {
            decls,
            state: vec![State::New; declared],
            stack: Vec::new(),
            seen: HashMap::new(),
            builder: Builder::new(registry),
            registry,
            merge: true,
            giving: None,
            handed: HashMap::new(),
            graph: DiGraph::new(),
            stats: Stats {
                declared,
                ..Stats::default()
            },
            diags,
        }
    }

    /// `false`: every declared node stays a node of its own (`--no-merge`),
    /// its identity told apart by its name.
    pub fn merging(mut self, merge: bool) -> Self {
        self.merge = merge;
        self
    }

    /// Declared nodes in `giving.decls` are outputs an earlier window of
    /// the run made: each becomes the node `giving.node` makes for its
    /// name (no inputs; its identity the one it had there).
    pub fn giving(mut self, giving: Giving<'a>) -> Self {
        self.giving = Some(giving);
        self
    }

    /// Merges every declared instance, inputs first.
    pub fn run(self) -> (DiGraph<PlanNode, ()>, Stats) {
        let all = 0..self.decls.len();
        self.run_from(all)
    }

    /// Merges the declared instances `roots` and what they read, inputs
    /// first; other declared nodes are left out.
    ///
    /// A depth-first walk in the order given, with an explicit stack so a
    /// chain of 100,000 nodes cannot overflow the thread's stack. Nodes are
    /// created in post-order: every node after its inputs.
    pub fn run_from(
        mut self,
        roots: impl IntoIterator<Item = usize>,
    ) -> (DiGraph<PlanNode, ()>, Stats) {
        for root in roots {
            if self.state[root] != State::New {
                continue;
            }
            let mut frames: Vec<(usize, Vec<usize>, usize)> = vec![self.enter(root)];
            while let Some((d, deps, cursor)) = frames.last_mut() {
                if let Some(&t) = deps.get(*cursor) {
                    *cursor += 1;
                    match self.state[t] {
                        State::New => frames.push(self.enter(t)),
                        State::Visiting => self.report_cycle(t),
                        State::Done(_) | State::Failed => {}
                    }
                    continue;
                }
                let d = *d;
                frames.pop();
                self.stack.pop();
                let result = self.merge(d);
                if self.state[d] == State::Visiting {
                    self.state[d] = result.map_or(State::Failed, State::Done);
                }
                // Nothing reads them again: every later node reads this one
                // by its state. Dropped now, their memory is reused while
                // the graph grows instead of adding to the peak (a fifth of
                // the peak at 600,000 declared nodes).
                let decl = &mut self.decls[d];
                decl.params = Yaml::new(crate::spec::Value::Null, decl.params.pos);
                decl.inputs = Vec::new();
            }
        }
        self.stats.unique = self.graph.node_count();
        (self.graph, self.stats)
    }

    /// Marks `d` as being visited; returns its frame: the declared nodes it
    /// reads, in the order `merge` reads them.
    fn enter(&mut self, d: usize) -> (usize, Vec<usize>, usize) {
        self.state[d] = State::Visiting;
        self.stack.push(d);
        let deps = self.decls[d]
            .inputs
            .iter()
            .flat_map(|input| input.target.nodes())
            .collect();
        (d, deps, 0)
    }

    /// The plan node of a declared node already merged.
    fn visit(&self, d: usize) -> Option<NodeIndex> {
        match self.state[d] {
            State::Done(n) => Some(n),
            _ => None,
        }
    }

    fn merge(&mut self, d: usize) -> Option<NodeIndex> {
        if let Some(giving) = &self.giving
            && giving.decls.contains(&d)
        {
            return self.hand(d);
        }
        let decl = &self.decls[d];
        let mut inputs = Vec::with_capacity(decl.inputs.len());
        let mut keys = Vec::with_capacity(decl.inputs.len());
        let mut ok = true;
        for input in &decl.inputs {
            let (source, key) = match &input.target {
                Target::One(t) => match self.visit(*t) {
                    Some(n) => (Source::One(n), InputKey::One(n.index())),
                    None => {
                        ok = false;
                        continue;
                    }
                },
                Target::All { key, members } => {
                    let mut resolved = Vec::with_capacity(members.len());
                    for (k, t) in members {
                        match self.visit(*t) {
                            Some(n) => resolved.push((k.clone(), n)),
                            None => ok = false,
                        }
                    }
                    let ik = InputKey::All(
                        key.clone(),
                        resolved
                            .iter()
                            .map(|(k, n)| (k.clone(), n.index()))
                            .collect(),
                    );
                    (
                        Source::All {
                            key: key.clone(),
                            members: resolved,
                        },
                        ik,
                    )
                }
                Target::Pending { .. } | Target::Broken => {
                    ok = false;
                    continue;
                }
            };
            inputs.push(PlanInput {
                name: input.name.clone(),
                source,
            });
            keys.push((input.name.clone(), key));
        }
        if !ok || self.decls[d].unresolved {
            return None;
        }

        let decl = &self.decls[d];
        let def = self.registry.get(&decl.op)?;
        let params_json = canonical(decl.params.to_json());
        let params_text = params_json.to_string();
        // Merged on the parameters as the operator reads them, so a default
        // written out and one left out are the same node.
        let prepared = self
            .builder
            .build(&self.decls[d], &params_text, params_json, self.diags)?;
        let decl = &self.decls[d];
        let key = NodeKey {
            op: decl.op.clone(),
            params: prepared.resolved.clone(),
            inputs: keys,
        };
        let pure = def.effect() == Effect::Pure;
        if pure
            && self.merge
            && let Some(&n) = self.seen.get(&key)
        {
            self.graph[n].aliases.push(decl.name.clone());
            *self.stats.merged.entry(decl.op.clone()).or_insert(0) += 1;
            return Some(n);
        }
        // Hashed from the inputs' identities, not their graph indexes, which
        // depend on the order nodes were written in: the same node has the
        // same identity in every compile.
        let identity = {
            let mut h = Fnv1a::default();
            (&key.op, &key.params).hash(&mut h);
            if !self.merge {
                decl.name.hash(&mut h);
            }
            for input in &inputs {
                input.name.hash(&mut h);
                match &input.source {
                    Source::One(n) => (0u8, self.graph[*n].identity).hash(&mut h),
                    Source::All { key, members } => {
                        (1u8, key).hash(&mut h);
                        for (k, n) in members {
                            (k, self.graph[*n].identity).hash(&mut h);
                        }
                    }
                }
            }
            h.finish()
        };
        let n = self.graph.add_node(PlanNode {
            id: decl.name.clone(),
            aliases: Vec::new(),
            op: decl.op.clone(),
            params: prepared.params,
            resolved: prepared.resolved,
            version: def.version(),
            operator: prepared.operator,
            effect: def.effect(),
            workload: def.workload(),
            inputs: inputs.clone(),
            policy: decl.policy.clone(),
            identity,
            reuse: Default::default(),
        });
        for input in &inputs {
            for m in input.source.nodes() {
                self.graph.update_edge(m, n, ());
            }
        }
        if pure {
            self.seen.insert(key, n);
        }
        Some(n)
    }

    /// The node standing for the output of declared node `d` that an
    /// earlier window made.
    fn hand(&mut self, d: usize) -> Option<NodeIndex> {
        let giving = self.giving.as_ref()?;
        let decl = &self.decls[d];
        let Some(node) = (giving.node)(&decl.name) else {
            let o = &decl.origin;
            self.diags.push(Diagnostic::new(
                &o.file,
                Some(o.pos),
                &o.path,
                format!(
                    "'{}' was not kept from the days run before; this is a bug in quiver's \
                     windows, run with --window-days 0 to run every day at once",
                    decl.name
                ),
            ));
            return None;
        };
        if let Some(&n) = self.handed.get(&node.identity) {
            return Some(n);
        }
        let identity = node.identity;
        let n = self.graph.add_node(node);
        self.handed.insert(identity, n);
        Some(n)
    }

    fn report_cycle(&mut self, d: usize) {
        let start = self.stack.iter().position(|&s| s == d).unwrap_or(0);
        let cycle: Vec<usize> = self.stack[start..].to_vec();
        let mut names: Vec<&str> = cycle.iter().map(|&c| self.decls[c].name.as_str()).collect();
        names.push(&self.decls[d].name);
        let o = &self.decls[d].origin;
        self.diags.push(Diagnostic::new(
            &o.file,
            Some(o.pos),
            &o.path,
            format!("cycle: {}", names.join(" → ")),
        ));
        for c in cycle {
            self.state[c] = State::Failed;
        }
    }
}

/// What [`Merger::giving`] takes.
pub struct Giving<'a> {
    /// The declared nodes that stand for outputs made before.
    pub decls: &'a ahash::AHashSet<usize>,
    /// The node for the output a declared node's name stands for.
    pub node: &'a dyn Fn(&str) -> Option<PlanNode>,
}

impl<'a> Builder<'a> {
    pub fn new(registry: &'a Registry) -> Self {
        Self {
            operators: HashMap::new(),
            param_names: HashMap::new(),
            registry,
        }
    }

    /// Builds the runtime operator, reporting bad parameters at their place.
    pub fn build(
        &mut self,
        decl: &Decl,
        params_text: &str,
        params: Json,
        diags: &mut Diagnostics,
    ) -> Option<Prepared> {
        let def = self.registry.get(&decl.op)?;
        let arity = def.arity();
        if !arity.accepts(decl.inputs.len()) {
            let names: Vec<&str> = decl.inputs.iter().map(|i| i.name.as_str()).collect();
            let has = match names.len() {
                0 => "none".to_string(),
                n => format!("{n} ({})", names.join(", ")),
            };
            let fix = match arity {
                Arity::None => "; remove its `inputs:`",
                Arity::Exactly(1) => {
                    "; combine the tables first, e.g. with transform.sql, or use one node per input"
                }
                _ => "",
            };
            diags.push(Diagnostic::new(
                &decl.origin.file,
                Some(decl.origin.pos),
                format!("{}.inputs", decl.origin.path),
                format!(
                    "operator '{}' takes {arity}, and this node has {has}{fix}",
                    decl.op
                ),
            ));
            return None;
        }
        if let Some(op) = self
            .operators
            .get(&decl.op)
            .and_then(|built| built.get(params_text))
        {
            return Some(op.clone());
        }
        let with_path = format!("{}.with", decl.origin.path);
        let names = self
            .param_names
            .entry(decl.op.clone())
            .or_insert_with(|| def.param_names());
        let mut bad = false;
        if let Some(entries) = decl.params.as_map() {
            for (k, _) in entries {
                let name = k.scalar_text();
                if !names.contains(&name) {
                    let hint = did_you_mean(&name, names.iter().map(String::as_str));
                    let list = if hint.is_empty() {
                        format!("; it takes: {}", names.join(", "))
                    } else {
                        hint
                    };
                    diags.push(Diagnostic::new(
                        &decl.origin.file,
                        Some(k.pos),
                        format!("{with_path}.{name}"),
                        format!("operator '{}' has no parameter '{name}'{list}", decl.op),
                    ));
                    bad = true;
                }
            }
        } else if !matches!(decl.params.value, crate::spec::Value::Null) {
            diags.push(Diagnostic::new(
                &decl.origin.file,
                Some(decl.params.pos),
                with_path,
                format!(
                    "with: holds the operator's parameters as a mapping, found {}",
                    decl.params.kind()
                ),
            ));
            return None;
        }
        if bad {
            return None;
        }
        match def.prepare(params) {
            Ok(built) => {
                let resolved = canonical(built.params);
                let prepared = Prepared {
                    operator: built.operator,
                    params: params_text.into(),
                    resolved: resolved.to_string().into(),
                };
                self.operators
                    .entry(decl.op.clone())
                    .or_default()
                    .insert(prepared.params.clone(), prepared.clone());
                Some(prepared)
            }
            Err(e) => {
                let at = find(&decl.params, &e.path);
                let mut path = with_path;
                for seg in &e.path {
                    path.push('.');
                    path.push_str(seg);
                }
                diags.push(Diagnostic::new(
                    &decl.origin.file,
                    Some(at.pos),
                    path,
                    e.message,
                ));
                None
            }
        }
    }
}

/// The value at `path` inside `node`, or the deepest one found.
fn find<'y>(node: &'y Yaml, path: &[String]) -> &'y Yaml {
    let mut at = node;
    for seg in path {
        let next = match &at.value {
            crate::spec::Value::Map(_) => at.get(seg),
            crate::spec::Value::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => break,
        }
    }
    at
}

/// JSON with object keys sorted, so key order never changes identity.
pub fn canonical(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> =
                map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// FNV-1a: a hash that does not change between Rust releases, so node
/// identities shown to users stay the same.
pub(super) struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}
