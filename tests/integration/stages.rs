//! Counting over stages (`quiver validate`) against compiling every day
//! (`quiver run`, `quiver plan`): two implementations of one answer.
//!
//! The compiler builds a node per trading day and merges equal ones; the
//! stage counter never builds them and counts from classes, ranges and the
//! places where windows are cut (docs/design/stages.md). On random
//! partitioned pipelines, windows cut at the start of an input, chains of
//! `previous`, sources over overlapping ranges, fan-out stages reading each
//! key's own input, fan-ins and whole-range readers, both must report the
//! same errors or the same counts, and every node the same identity.

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;
use quiver::compile::{Options, Override, count_stages_str, validate_str_with_options};
use quiver::plan::Stats;

/// Weekdays of January 2026 that HOSE trades.
const DAYS: [&str; 15] = [
    "2026-01-05",
    "2026-01-06",
    "2026-01-07",
    "2026-01-08",
    "2026-01-09",
    "2026-01-12",
    "2026-01-13",
    "2026-01-14",
    "2026-01-15",
    "2026-01-16",
    "2026-01-19",
    "2026-01-20",
    "2026-01-21",
    "2026-01-22",
    "2026-01-23",
];

#[derive(Debug, Clone)]
enum Node {
    Source {
        dataset: &'static str,
        symbol: &'static str,
        first: usize,
        len: usize,
        fan_out: bool,
    },
    Stage {
        /// (earlier node, lookback)
        inputs: Vec<(usize, usize)>,
        previous: bool,
        partitioned: bool,
        query: usize,
        /// `foreach: s in [FPT, VNM]`, reading each fan-out input's own key.
        fan_out: bool,
    },
    Sink {
        input: usize,
        partitioned: bool,
    },
}

fn node(earlier: usize) -> BoxedStrategy<Node> {
    let source = (
        prop::sample::select(vec!["ticks", "prices"]),
        prop::sample::select(vec!["FPT", "VNM"]),
        0..8usize,
        0..6usize,
        prop::bool::weighted(0.25),
    )
        .prop_map(|(dataset, symbol, first, len, fan_out)| Node::Source {
            dataset,
            symbol,
            first,
            len,
            fan_out,
        });
    if earlier == 0 {
        return source.boxed();
    }
    let stage = (
        prop::collection::vec(
            (0..earlier, prop::sample::select(vec![0usize, 0, 1, 2, 4])),
            1..3,
        ),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.85),
        0..2usize,
        prop::bool::weighted(0.25),
    )
        .prop_map(
            |(inputs, previous, partitioned, query, fan_out)| Node::Stage {
                inputs,
                previous,
                partitioned,
                query,
                fan_out,
            },
        );
    let sink = (0..earlier, any::<bool>())
        .prop_map(|(input, partitioned)| Node::Sink { input, partitioned });
    prop_oneof![3 => source, 5 => stage, 1 => sink].boxed()
}

fn pipeline() -> impl Strategy<Value = Vec<Node>> {
    (2..9usize).prop_flat_map(|n| {
        let mut nodes: BoxedStrategy<Vec<Node>> = Just(Vec::new()).boxed();
        for i in 0..n {
            nodes = (nodes, node(i))
                .prop_map(|(mut v, n)| {
                    v.push(n);
                    v
                })
                .boxed();
        }
        nodes
    })
}

fn yaml(nodes: &[Node]) -> String {
    let mut out = String::from("pipeline: random\nnodes:\n");
    let fanned = |i: usize| {
        matches!(
            &nodes[i],
            Node::Source { fan_out: true, .. } | Node::Stage { fan_out: true, .. }
        )
    };
    // Every key of a fan-out, or (from a fan-out stage) its own key.
    let reference = |i: usize, own_key: bool| match (fanned(i), own_key) {
        (true, true) => format!("\"n{i}[${{s}}]\""),
        (true, false) => format!("\"n{i}[*]\""),
        (false, _) => format!("n{i}"),
    };
    for (i, node) in nodes.iter().enumerate() {
        let line = match node {
            Node::Source {
                dataset,
                symbol,
                first,
                len,
                fan_out,
            } => {
                let last = (first + len).min(DAYS.len() - 1);
                let (foreach, symbol) = if *fan_out {
                    ("foreach: \"s in [FPT, VNM]\", ", "\"${s}\"".to_string())
                } else {
                    ("", symbol.to_string())
                };
                format!(
                    "{{{foreach}op: fetch.synthetic, partition_by: date, with: {{dataset: {dataset}, \
                     symbol: {symbol}, start: {}, end: {}}}}}",
                    DAYS[*first], DAYS[last]
                )
            }
            Node::Stage {
                inputs,
                previous,
                partitioned,
                query,
                fan_out,
            } => {
                let names = ["a", "b"];
                let wired: Vec<String> = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, (i, _))| format!("{}: {}", names[k], reference(*i, *fan_out)))
                    .collect();
                let mut extra = String::new();
                if *fan_out {
                    extra.push_str("foreach: \"s in [FPT, VNM]\", ");
                }
                if *partitioned {
                    extra.push_str("partition_by: date, ");
                    let lookback: Vec<String> = inputs
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, n))| *n > 0)
                        .map(|(k, (_, n))| format!("{}: {n}", names[k]))
                        .collect();
                    if !lookback.is_empty() {
                        extra.push_str(&format!("lookback: {{{}}}, ", lookback.join(", ")));
                    }
                    if *previous {
                        extra.push_str("previous: prev, ");
                    }
                }
                format!(
                    "{{op: transform.sql, {extra}inputs: {{{}}}, with: {{query: \"SELECT {query} AS q\"}}}}",
                    wired.join(", ")
                )
            }
            Node::Sink { input, partitioned } => {
                if *partitioned {
                    format!(
                        "{{op: sink.parquet, partition_by: date, inputs: [{}], with: {{path: out/n{i}, partition_by: [date]}}}}",
                        reference(*input, false)
                    )
                } else {
                    format!(
                        "{{op: sink.parquet, inputs: [{}], with: {{path: out/n{i}.parquet}}}}",
                        reference(*input, false)
                    )
                }
            }
        };
        out.push_str(&format!("  n{i}: {line}\n"));
    }
    out
}

/// Both answers: the compiled plan's counts or its distinct messages, and
/// the stage counter's (without the fallback to compiling), and whether
/// the stage counter says its counts are exact.
fn both(text: &str, overrides: &[Override], merge: bool) -> (Outcome, Outcome, bool) {
    let path = Path::new("random.yaml");
    let registry = quiver::operators::registry();
    let options = Options { merge };
    let compiled =
        quiver::compile::compile_str_with_options(path, text, overrides, registry, options)
            .map(|plan| plan.stats);
    let counted = count_stages_str(path, text, overrides, registry, options);
    let exact = counted.as_ref().map_or(true, |(_, exact)| *exact);
    (
        outcome(compiled),
        outcome(counted.map(|(v, _)| v.stats)),
        exact,
    )
}

/// Every node of the compiled plan, under each name it was declared
/// with, has the identity the stage tasks compute for that name.
fn identities_match(path: &Path, text: &str, overrides: &[Override]) -> usize {
    let registry = quiver::operators::registry();
    let Ok(plan) = quiver::compile::compile_str(path, text, overrides) else {
        return 0;
    };
    let v = validate_str_with_options(path, text, overrides, registry, Options::default())
        .expect("what compiles validates");
    let mut tasks = v.tasks(registry);
    let mut checked = 0;
    for (_, node) in plan.nodes() {
        for name in node.names() {
            assert_eq!(
                tasks.identity_of(name),
                Some(node.identity),
                "{name} ({}) in\n{text}",
                node.op
            );
            checked += 1;
        }
    }
    checked
}

fn unique_of(counts: &str) -> usize {
    counts
        .split_whitespace()
        .find_map(|w| w.strip_prefix("unique="))
        .and_then(|n| n.parse().ok())
        .expect("unique=N")
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Counts(String),
    /// Distinct messages: the compiler repeats a message once per day.
    Errors(BTreeSet<String>),
}

fn outcome(result: Result<Stats, quiver::diag::Diagnostics>) -> Outcome {
    match result {
        Ok(stats) => Outcome::Counts(format!(
            "declared={} unique={} merged={:?}",
            stats.declared, stats.unique, stats.merged
        )),
        Err(diags) => Outcome::Errors(diags.0.iter().map(|d| d.to_string()).collect()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_partitioned_pipelines_count_the_same_over_stages(nodes in pipeline()) {
        let text = yaml(&nodes);
        identities_match(Path::new("random.yaml"), &text, &[]);
        for size in [1, 4] {
            crate::windows::windows_match(Path::new("random.yaml"), &text, &[], size);
        }
        let (compiled, counted, exact) = both(&text, &[], true);
        if exact {
            prop_assert_eq!(compiled, counted, "{}", text);
        } else {
            // Said to be inexact: a day the compile merges may be counted
            // twice, never the other way; `validate` compiles instead.
            let (Outcome::Counts(c), Outcome::Counts(s)) = (&compiled, &counted) else {
                panic!("inexact counts are counts: {compiled:?} {counted:?}");
            };
            prop_assert!(unique_of(s) >= unique_of(c), "{} {} {}", c, s, text);
            let validated = validate_str_with_options(
                Path::new("random.yaml"), &text, &[], quiver::operators::registry(), Options::default(),
            ).map(|v| v.stats);
            prop_assert_eq!(&compiled, &outcome(validated), "{}", text);
        }
    }
}

#[test]
fn vn30_counts_the_same_over_stages_where_its_windows_are_cut() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/vn30.yaml"))
            .expect("vn30.yaml");
    let cases: [&[&str]; 5] = [
        &[],
        // Prices start with the ticks: the 5-day window is cut for 5 days.
        &["history_start=2026-01-05"],
        // Prices start after the ticks: the stages start with the prices.
        &["history_start=2026-01-07", "end_date=2026-01-16"],
        &[
            "symbols=[FPT, VNM, HPG]",
            "start_date=2026-01-02",
            "end_date=2026-02-27",
        ],
        &[
            "symbols=[FPT]",
            "start_date=2026-01-09",
            "end_date=2026-01-09",
        ],
    ];
    for sets in cases {
        let overrides: Vec<Override> = sets
            .iter()
            .map(|s| Override::parse_set(s).expect("an override"))
            .collect();
        assert!(
            identities_match(Path::new("vn30.yaml"), &text, &overrides) > 10,
            "{sets:?}"
        );
        for merge in [true, false] {
            let (compiled, counted, exact) = both(&text, &overrides, merge);
            assert!(exact, "{sets:?}");
            assert!(
                matches!(compiled, Outcome::Counts(_)),
                "{sets:?}: {compiled:?}"
            );
            assert_eq!(compiled, counted, "{sets:?}, merge: {merge}");
        }
    }
}

/// Every pipeline in `pipelines/`, with its text; the ingest's database
/// (from the environment) replaced by a stand-in.
pub fn shipped_pipelines() -> Vec<(std::path::PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("pipelines/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .expect("readable")
            .replace("${env:DATABASE_URL}", "postgres://quiver@localhost/market");
        out.push((path, text));
    }
    out.sort();
    out
}

#[test]
fn every_shipped_pipeline_counts_the_same_over_stages() {
    let mut checked = 0;
    for (path, text) in shipped_pipelines() {
        let registry = quiver::operators::registry();
        let compiled = quiver::compile::compile_str(&path, &text, &[]).map(|p| p.stats);
        let counted = count_stages_str(&path, &text, &[], registry, Options::default());
        let exact = counted.as_ref().map_or(true, |(_, exact)| *exact);
        assert!(exact, "{}", path.display());
        assert!(compiled.is_ok(), "{}: {compiled:?}", path.display());
        assert!(
            identities_match(&path, &text, &[]) > 10,
            "{}",
            path.display()
        );
        assert_eq!(
            outcome(compiled),
            outcome(counted.map(|(v, _)| v.stats)),
            "{}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 5, "{checked} pipelines");
}

#[test]
fn the_stages_of_vn30_are_its_declared_nodes_with_their_keys_days_and_reads() {
    use quiver::compile::stages::Read;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/vn30.yaml");
    let text = std::fs::read_to_string(&path).expect("vn30.yaml");
    let v = validate_str_with_options(
        &path,
        &text,
        &[],
        quiver::operators::registry(),
        Options::default(),
    )
    .expect("valid");
    // One stage per node the file declares: every `op:` written.
    let written = text
        .lines()
        .filter(|l| l.trim_start().starts_with("op: "))
        .count();
    assert_eq!(v.stages.stages.len(), written);
    let stage = |name: &str| {
        v.stages
            .stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stage {name}"))
    };
    let days = |name: &str| {
        let d = stage(name).days.as_ref().expect("partitioned");
        (d.first.as_str(), d.last.as_str(), d.count)
    };

    let features = stage("features");
    assert_eq!(
        (features.op.as_str(), features.keys.len()),
        ("features.intraday", 30)
    );
    assert_eq!(days("features"), ("2026-01-05", "2026-01-09", 5));
    let reads: Vec<(&str, &str, &Read)> = features
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), i.from.as_str(), &i.read))
        .collect();
    assert_eq!(
        reads,
        [
            ("trades", "features.trades", &Read::SameDay),
            ("prices", "features.prices", &Read::Window(5)),
        ]
    );
    // Prices from history_start, for the lookback.
    let (first, last, _) = days("features.prices");
    assert_eq!((first, last), ("2025-12-26", "2026-01-09"));

    // The same fetches, written in two stages each, are the same tasks on
    // the days both read.
    let same = |a: &str, b: &str| {
        let s = stage(a)
            .same_as
            .iter()
            .find(|s| s.stage == b)
            .unwrap_or_else(|| panic!("{a} is not said to be {b}: {:?}", stage(a).same_as));
        (s.keys, s.days, s.tasks)
    };
    assert_eq!(same("features.trades", "session.trades"), (30, 5, 150));
    assert_eq!(same("session.trades", "features.trades"), (30, 5, 150));
    assert_eq!(same("weights.prices", "features.prices"), (30, 5, 150));
    assert!(stage("features").same_as.is_empty());

    let weights = stage("weights");
    assert!(weights.keys.is_empty());
    let info = weights.inputs.iter().find(|i| i.name == "info").unwrap();
    assert!(info.every_key && info.read == Read::Once, "{info:?}");
    let index = stage("index");
    assert!(
        index
            .inputs
            .iter()
            .any(|i| i.from == "index" && i.read == Read::Previous),
        "{:?}",
        index.inputs
    );
    let whale = stage("whale");
    let features_in = whale.inputs.iter().find(|i| i.name == "features").unwrap();
    assert!(features_in.every_key && features_in.read == Read::SameDay);
}

#[test]
fn plan_stages_prints_and_draws_the_stages() {
    let run = |format: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args([
                "plan",
                "pipelines/vn30.yaml",
                "--stages",
                "--format",
                format,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("quiver runs")
    };
    let text = run("text");
    assert!(text.status.success());
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(
        out.starts_with("vn30: 13 stages as written, 1272 declared nodes → 942 unique"),
        "{out}"
    );
    assert!(
        out.contains("\n    ≡ session.trades over 30 × 5\n"),
        "{out}"
    );
    assert!(
        out.contains("\n    prices ← features.prices, the day and the 5 before\n"),
        "{out}"
    );

    let json = run("json");
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["stats"]["unique"], 942);
    assert_eq!(value["stages"].as_array().map(Vec::len), Some(13));

    // The pictures: one box per stage, no box for the days' concatenations.
    let svg = run("svg");
    assert!(svg.status.success());
    let svg = String::from_utf8_lossy(&svg.stdout);
    assert_eq!(svg.matches("<g class=\"stage ").count(), 13);
    assert!(!svg.contains("transform.concat"));
    let dot = run("dot");
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert!(dot.contains("[label=\"prices · 5 days back\"]"), "{dot}");
    let mermaid = run("mermaid");
    assert!(String::from_utf8_lossy(&mermaid.stdout).starts_with("flowchart TD\n"));
}

#[test]
fn plan_expand_prints_the_tasks_a_selector_names_with_the_plans_identities() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = quiver::compile::compile_file(&root.join("pipelines/vn30.yaml"), &[]).expect("vn30");
    let identity = |id: &str| {
        let node = plan.find(id).unwrap_or_else(|| panic!("no {id}"));
        format!("{:016x}", plan.graph[node].identity)
    };
    let run = |selector: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(["plan", "pipelines/vn30.yaml", "--expand", selector])
            .current_dir(root)
            .output()
            .expect("quiver runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run("features[FPT]@2026-01-05");
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        format!(
            "features[FPT]@2026-01-05  features.intraday  {}\n    trades ← features[FPT].trades@2026-01-05\n    prices ← features[FPT].prices@2025-12-26..2026-01-05\n1 task\n",
            identity("features[FPT]@2026-01-05")
        )
    );
    // A chain of previous days, over a range of days.
    let (_, out, _) = run("index@2026-01-07..2026-01-08");
    assert!(
        out.contains(&format!(
            "index@2026-01-08  index.carry  {}",
            identity("index@2026-01-08")
        )),
        "{out}"
    );
    assert!(out.contains("    previous ← index@2026-01-07\n"), "{out}");
    assert!(out.ends_with("2 tasks\n"), "{out}");
    // Every key of a fan-out on one day.
    let (_, out, _) = run("features.trades[*]@2026-01-06");
    assert!(out.ends_with("30 tasks\n"), "{out}");
    // A name that is not a node is an error naming the closest.
    let (code, _, err) = run("featurs[FPT]@2026-01-05");
    assert_eq!(code, Some(2));
    assert!(err.contains("did you mean 'features'"), "{err}");
}
