//! Properties of merging, over random pipelines.
//!
//! A random pipeline is first a [`Model`]: fetches (some fanned out with
//! `foreach`), queries wired to earlier nodes (so there is never a cycle) and
//! sinks. The model knows, independently of the compiler, the structural key
//! of every declared instance: its operator, its parameters with keys
//! sorted, and its inputs' keys. From the model we write YAML text, in
//! randomly chosen styles, and compile it. Then:
//!
//! (a) instances merged into one plan node have equal keys, and pure
//!     instances with equal keys are always merged;
//! (b) the plan does not depend on how the YAML is written: node order, key
//!     order inside `with:`, flow or block style, quoting;
//! (c) sinks are never merged.
//!
//! Parameter values come from small sets so that duplicates are common.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use quiver::compile::compile_str;
use quiver::plan::Plan;
use quiver_operators::Effect;
use serde_json::{Value as Json, json};

const SYMBOLS: [&str; 3] = ["FPT", "VNM", "HPG"];
const DATASETS: [&str; 3] = ["ticks", "prices", "stock_info"];
const DAYS: [(&str, &str); 2] = [("2026-01-05", "2026-01-05"), ("2026-01-05", "2026-01-06")];
const QUERIES: [&str; 2] = ["SELECT * FROM a", "SELECT count(*) AS n FROM b"];
const INPUT_NAMES: [&str; 3] = ["a", "b", "c"];

// ------------------------------------------------------------------ model

#[derive(Debug, Clone)]
enum Node {
    Fetch {
        dataset: &'static str,
        days: (&'static str, &'static str),
        seed: Option<u64>,
        /// One symbol, or a fan-out: the variable and its list.
        symbols: Symbols,
    },
    Sql {
        query: &'static str,
        inputs: Vec<(&'static str, Ref)>,
    },
    Sink {
        input: Ref,
    },
}

#[derive(Debug, Clone)]
enum Symbols {
    One(&'static str),
    FanOut(&'static str, Vec<&'static str>),
}

/// A reference to an earlier node.
#[derive(Debug, Clone)]
enum Ref {
    One(usize),
    Key(usize, &'static str),
    All(usize),
}

#[derive(Debug, Clone)]
struct Model {
    nodes: Vec<Node>,
}

/// Raw random numbers for one node, turned into a valid node by [`Model::build`].
type RawNode = (u8, [u8; 6], Vec<(u8, u8)>);

impl Model {
    fn build(raw: &[RawNode]) -> Model {
        let mut nodes: Vec<Node> = Vec::new();
        for (kind, r, raw_inputs) in raw {
            let readable: Vec<usize> = (0..nodes.len())
                .filter(|&i| !matches!(nodes[i], Node::Sink { .. }))
                .collect();
            let kind = if readable.is_empty() { 0 } else { *kind % 10 };
            let node = if kind < 5 {
                let symbols = if r[4] % 3 == 0 {
                    // A fan-out over a rotation of a prefix of SYMBOLS:
                    // distinct keys, in varying order.
                    let n = 1 + usize::from(r[5]) % SYMBOLS.len();
                    let start = usize::from(r[1]);
                    let list = (0..n).map(|i| SYMBOLS[(start + i) % n]).collect();
                    Symbols::FanOut(if r[5] % 2 == 0 { "symbol" } else { "s" }, list)
                } else {
                    Symbols::One(SYMBOLS[usize::from(r[1]) % SYMBOLS.len()])
                };
                Node::Fetch {
                    dataset: DATASETS[usize::from(r[0]) % DATASETS.len()],
                    days: DAYS[usize::from(r[2]) % DAYS.len()],
                    seed: [None, None, Some(1)][usize::from(r[3]) % 3],
                    symbols,
                }
            } else if kind < 9 {
                let mut inputs = Vec::new();
                for (i, (target, select)) in raw_inputs.iter().enumerate().take(INPUT_NAMES.len()) {
                    // Mostly the first few nodes, so that equal queries are common.
                    let t = readable[usize::from(*target) % readable.len().min(4)];
                    inputs.push((INPUT_NAMES[i], Self::reference(&nodes[t], t, *select)));
                }
                Node::Sql {
                    query: QUERIES[usize::from(r[0]) % QUERIES.len()],
                    inputs,
                }
            } else {
                let t = readable[usize::from(r[0]) % readable.len()];
                Node::Sink {
                    input: Self::reference(&nodes[t], t, r[1]),
                }
            };
            nodes.push(node);
        }
        Model { nodes }
    }

    /// A valid reference to node `t`: plain for a single node, `[KEY]` or
    /// `[*]` for a fan-out.
    fn reference(node: &Node, t: usize, select: u8) -> Ref {
        match node {
            Node::Fetch {
                symbols: Symbols::FanOut(_, list),
                ..
            } => match usize::from(select) % (list.len() + 1) {
                0 => Ref::All(t),
                k => Ref::Key(t, list[k - 1]),
            },
            _ => Ref::One(t),
        }
    }

    fn name(i: usize) -> String {
        format!("n{i}")
    }

    fn op(&self, i: usize) -> &'static str {
        match self.nodes[i] {
            Node::Fetch { .. } => "fetch.synthetic",
            Node::Sql { .. } => "transform.sql",
            Node::Sink { .. } => "sink.parquet",
        }
    }

    /// The operator parameters of instance `symbol` of node `i`, as the
    /// compiler should see them once `${…}` is resolved.
    fn params(&self, i: usize, symbol: Option<&str>) -> Json {
        match &self.nodes[i] {
            Node::Fetch {
                dataset,
                days,
                seed,
                symbols,
            } => {
                let symbol = match symbols {
                    Symbols::One(s) => *s,
                    Symbols::FanOut(..) => symbol.expect("a fan-out instance has a symbol"),
                };
                let mut p = json!({"dataset": dataset, "symbol": symbol});
                if *dataset != "stock_info" {
                    p["start"] = json!(days.0);
                    p["end"] = json!(days.1);
                }
                if let Some(seed) = seed {
                    p["seed"] = json!(seed);
                }
                p
            }
            Node::Sql { query, .. } => json!({"query": query}),
            Node::Sink { .. } => json!({"path": format!("out/prop/{}.parquet", Self::name(i))}),
        }
    }

    /// Every declared instance: its name, and its node and symbol.
    fn instances(&self) -> Vec<(String, usize, Option<&'static str>)> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            match node {
                Node::Fetch {
                    symbols: Symbols::FanOut(_, list),
                    ..
                } => {
                    for s in list {
                        out.push((format!("{}[{s}]", Self::name(i)), i, Some(*s)));
                    }
                }
                _ => out.push((Self::name(i), i, None)),
            }
        }
        out
    }

    /// The structural key of an instance: equal keys, equal output.
    fn key(&self, i: usize, symbol: Option<&str>) -> String {
        let inputs: Vec<Json> = match &self.nodes[i] {
            Node::Fetch { .. } => Vec::new(),
            Node::Sql { inputs, .. } => inputs
                .iter()
                .map(|(name, r)| json!([name, self.ref_key(r)]))
                .collect(),
            Node::Sink { input } => vec![json!([self.ref_name(input), self.ref_key(input)])],
        };
        json!({"op": self.op(i), "params": self.params(i, symbol), "inputs": inputs}).to_string()
    }

    fn ref_key(&self, r: &Ref) -> Json {
        match r {
            Ref::One(t) => json!(self.key(*t, None)),
            Ref::Key(t, s) => json!(self.key(*t, Some(s))),
            Ref::All(t) => {
                let Node::Fetch {
                    symbols: Symbols::FanOut(var, list),
                    ..
                } = &self.nodes[*t]
                else {
                    unreachable!("[*] refers to fan-outs only")
                };
                let members: Vec<Json> = list
                    .iter()
                    .map(|s| json!([s, self.key(*t, Some(s))]))
                    .collect();
                json!({"all": var, "members": members})
            }
        }
    }

    fn ref_text(r: &Ref) -> String {
        match r {
            Ref::One(t) => Self::name(*t),
            Ref::Key(t, s) => format!("{}[{s}]", Self::name(*t)),
            Ref::All(t) => format!("{}[*]", Self::name(*t)),
        }
    }

    /// The input name of a reference in list form: the node it names.
    fn ref_name(&self, r: &Ref) -> String {
        let (Ref::One(t) | Ref::Key(t, _) | Ref::All(t)) = r;
        Self::name(*t)
    }
}

// ------------------------------------------------------------------ YAML text

/// A tiny YAML tree, written out in randomly chosen styles.
enum Y {
    Str(String),
    Int(u64),
    Map(Vec<(String, Y)>),
    Seq(Vec<Y>),
}

fn s(text: impl Into<String>) -> Y {
    Y::Str(text.into())
}

/// xorshift64*: the style choices of one rendering.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

struct Writer {
    rng: Rng,
    out: String,
}

impl Writer {
    /// A string scalar: plain where the context allows, else or by chance quoted.
    fn scalar(&mut self, text: &str, flow: bool) -> String {
        let plain_ok = if flow {
            !text.contains(['[', ']', '{', '}', ',', ':'])
        } else {
            !text.starts_with(['[', '{', '*', '&', '!', '|', '>', '\'', '"', '%', '@'])
                && !text.contains(": ")
                && !text.contains(" #")
        };
        match (plain_ok, self.rng.below(3)) {
            (true, 0) => text.to_string(),
            (_, 1) => format!("'{}'", text.replace('\'', "''")),
            _ => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }

    fn flow(&mut self, y: &Y) -> String {
        match y {
            Y::Str(t) => self.scalar(t, true),
            Y::Int(i) => i.to_string(),
            Y::Map(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", self.flow(v)))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            Y::Seq(items) => {
                let parts: Vec<String> = items.iter().map(|i| self.flow(i)).collect();
                format!("[{}]", parts.join(", "))
            }
        }
    }

    fn block_map(&mut self, entries: &[(String, Y)], indent: usize) {
        for (k, v) in entries {
            let pad = " ".repeat(indent);
            match v {
                Y::Str(t) => {
                    let t = self.scalar(t, false);
                    self.out.push_str(&format!("{pad}{k}: {t}\n"));
                }
                Y::Int(i) => self.out.push_str(&format!("{pad}{k}: {i}\n")),
                Y::Map(inner) if !inner.is_empty() && self.rng.coin() => {
                    self.out.push_str(&format!("{pad}{k}:\n"));
                    self.block_map(inner, indent + 2);
                }
                Y::Seq(items) if !items.is_empty() && self.rng.coin() => {
                    self.out.push_str(&format!("{pad}{k}:\n"));
                    for item in items {
                        let item = match item {
                            Y::Str(t) => self.scalar(t, false),
                            other => self.flow(other),
                        };
                        self.out.push_str(&format!("{pad}  - {item}\n"));
                    }
                }
                other => {
                    let text = self.flow(other);
                    self.out.push_str(&format!("{pad}{k}: {text}\n"));
                }
            }
        }
    }
}

/// The pipeline as YAML text, its style chosen by `seed`.
fn render(model: &Model, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut nodes: Vec<(String, Y)> = Vec::new();
    for (i, node) in model.nodes.iter().enumerate() {
        let mut with: Vec<(String, Y)> = Vec::new();
        let mut fields: Vec<(String, Y)> = vec![("op".into(), s(model.op(i)))];
        match node {
            Node::Fetch {
                dataset,
                days,
                seed,
                symbols,
            } => {
                with.push(("dataset".into(), s(*dataset)));
                match symbols {
                    Symbols::One(sym) => with.push(("symbol".into(), s(*sym))),
                    Symbols::FanOut(var, list) => {
                        fields.push((
                            "foreach".into(),
                            s(format!("{var} in [{}]", list.join(", "))),
                        ));
                        with.push(("symbol".into(), s(format!("${{{var}}}"))));
                    }
                }
                if *dataset != "stock_info" {
                    with.push(("start".into(), s(days.0)));
                    with.push(("end".into(), s(days.1)));
                }
                if let Some(seed) = seed {
                    with.push(("seed".into(), Y::Int(*seed)));
                }
            }
            Node::Sql { query, inputs } => {
                with.push(("query".into(), s(*query)));
                if !inputs.is_empty() {
                    let map = inputs
                        .iter()
                        .map(|(name, r)| (name.to_string(), s(Model::ref_text(r))))
                        .collect();
                    fields.push(("inputs".into(), Y::Map(map)));
                }
            }
            Node::Sink { input } => {
                with.push((
                    "path".into(),
                    s(format!("out/prop/{}.parquet", Model::name(i))),
                ));
                fields.push(("inputs".into(), Y::Seq(vec![s(Model::ref_text(input))])));
            }
        }
        rng.shuffle(&mut with);
        fields.push(("with".into(), Y::Map(with)));
        rng.shuffle(&mut fields);
        nodes.push((Model::name(i), Y::Map(fields)));
    }
    rng.shuffle(&mut nodes);
    let mut w = Writer {
        rng,
        out: String::from("pipeline: prop\nnodes:\n"),
    };
    w.block_map(&nodes, 2);
    w.out
}

fn compile(text: &str) -> Plan {
    match compile_str(Path::new("prop.yaml"), text, &[]) {
        Ok(plan) => plan,
        Err(diags) => panic!("a generated pipeline did not compile:\n{diags}\n---\n{text}"),
    }
}

/// For each plan node, the sorted names it was declared under.
fn alias_sets(plan: &Plan) -> BTreeSet<Vec<String>> {
    plan.nodes()
        .map(|(_, n)| {
            let mut names: Vec<String> = n.names().map(str::to_string).collect();
            names.sort();
            names
        })
        .collect()
}

fn identities(plan: &Plan) -> Vec<u64> {
    let mut ids: Vec<u64> = plan.nodes().map(|(_, n)| n.identity).collect();
    ids.sort_unstable();
    ids
}

fn models() -> impl Strategy<Value = Model> {
    let raw = (
        any::<u8>(),
        any::<[u8; 6]>(),
        prop::collection::vec(any::<(u8, u8)>(), 0..3),
    );
    prop::collection::vec(raw, 1..16).prop_map(|raw| Model::build(&raw))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// (a) Merged instances are structurally equal, and equal pure instances merge.
    #[test]
    fn merging_is_exactly_structural_equality(model in models(), seed in any::<u64>()) {
        let text = render(&model, seed);
        let plan = compile(&text);
        let instances = model.instances();
        prop_assert_eq!(plan.stats.declared, instances.len());

        let keys: BTreeMap<&str, String> = instances
            .iter()
            .map(|(name, i, sym)| (name.as_str(), model.key(*i, *sym)))
            .collect();
        for (_, node) in plan.nodes() {
            let first = &keys[node.id.as_str()];
            for alias in &node.aliases {
                prop_assert_eq!(
                    &keys[alias.as_str()], first,
                    "{} was merged into {} but differs\n{}", alias, node.id, text
                );
            }
        }

        let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, i, _) in &instances {
            if !matches!(model.nodes[*i], Node::Sink { .. }) {
                by_key.entry(keys[name.as_str()].as_str()).or_default().push(name);
            }
        }
        for names in by_key.values() {
            let homes: BTreeSet<usize> = names
                .iter()
                .map(|n| plan.find(n).expect("every declared name is in the plan").index())
                .collect();
            prop_assert_eq!(homes.len(), 1, "{:?} are equal but not merged\n{}", names, text);
        }
        prop_assert_eq!(plan.stats.unique, by_key.len() + model.nodes.iter().filter(|n| matches!(n, Node::Sink { .. })).count());
    }

    /// (b) How the YAML is written does not change the plan.
    #[test]
    fn the_plan_does_not_depend_on_yaml_style(model in models(), a in any::<u64>(), b in any::<u64>()) {
        let (text_a, text_b) = (render(&model, a), render(&model, b));
        let (plan_a, plan_b) = (compile(&text_a), compile(&text_b));
        let context = format!("--- one\n{text_a}--- other\n{text_b}");
        prop_assert_eq!(plan_a.graph.node_count(), plan_b.graph.node_count(), "{}", context);
        prop_assert_eq!(identities(&plan_a), identities(&plan_b), "{}", context);
        prop_assert_eq!(alias_sets(&plan_a), alias_sets(&plan_b), "{}", context);
        prop_assert_eq!(&plan_a.stats, &plan_b.stats, "{}", context);
    }

    /// (c) Every declared sink is its own plan node.
    #[test]
    fn sinks_are_never_merged(model in models(), seed in any::<u64>()) {
        let text = render(&model, seed);
        let plan = compile(&text);
        let declared: BTreeSet<String> = model
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n, Node::Sink { .. }))
            .map(|(i, _)| Model::name(i))
            .collect();
        let planned: BTreeSet<String> = plan
            .nodes()
            .filter(|(_, n)| n.effect == Effect::Sink)
            .map(|(_, n)| {
                assert!(n.aliases.is_empty(), "sink {} merged with {:?}\n{text}", n.id, n.aliases);
                n.id.clone()
            })
            .collect();
        prop_assert_eq!(declared, planned, "{}", text);
        prop_assert!(!plan.stats.merged.contains_key("sink.parquet"));
    }
}

/// Sinks with the same input and the same parameters but for the path are
/// still two nodes, and writing one path twice is an error, not a merge.
#[test]
fn identical_sinks_are_an_error_not_a_merge() {
    let text = "pipeline: p\nnodes:\n  \
        info: {op: fetch.synthetic, with: {dataset: stock_info, symbol: FPT}}\n  \
        a: {op: sink.parquet, inputs: [info], with: {path: out/x.parquet}}\n  \
        b: {op: sink.parquet, inputs: [info], with: {path: out/x.parquet}}\n";
    let diags = compile_str(Path::new("p.yaml"), text, &[]).expect_err("two sinks, one path");
    assert_eq!(diags.len(), 2, "{diags}");
}

/// Compiling never panics, whatever the text: valid fixtures with random
/// characters deleted, replaced or inserted must give a plan or diagnostics.
#[test]
fn compile_never_panics_on_mangled_pipelines() {
    use proptest::test_runner::{Config, TestRunner};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pipelines/valid");
    let names = [
        "vn30_mini.yaml",
        "fragments.yaml",
        "inputs_forms.yaml",
        "exec_options.yaml",
    ];
    let sources: Vec<(std::path::PathBuf, String)> = names
        .iter()
        .map(|n| {
            let path = dir.join(n);
            let text = std::fs::read_to_string(&path).expect("a valid fixture");
            (path, text)
        })
        .collect();
    let edits = prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0usize..3,
            prop::sample::select(vec![
                "", " ", "\n", ":", "-", "[", "]", "{", "}", ",", "'", "\"", "$", "${", "*", "&a ",
                "*a", "#", "\t", "[*]", "[X]", "~", "?", "|", "0", "é",
            ]),
        ),
        1..6,
    );
    let mut runner = TestRunner::new(Config::with_cases(64));
    runner
        .run(&(0..sources.len(), edits), |(which, edits)| {
            let (path, text) = &sources[which];
            let mut text = text.clone();
            for (at, delete, insert) in edits {
                let mut i = at.index(text.len() + 1);
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                let mut end = (i + delete).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(i..end, insert);
            }
            let result = std::panic::catch_unwind(|| compile_str(path, &text, &[]).map(|_| ()));
            prop_assert!(result.is_ok(), "the compiler panicked on:\n{}", text);
            Ok(())
        })
        .unwrap();
}
