//! What a run will do, decided before it starts: for every node, whether
//! its output is in the cache (and why not), and what the run does with
//! it — run it, load it for a consumer that runs, leave it in the cache,
//! or leave it out of the selection. `quiver plan` shows this; `quiver run`
//! executes exactly this, so the forecast is what happens.

use std::collections::HashSet;
use std::time::Duration;

use petgraph::Direction;
use quiver_operators::{Effect, Freshness};

use super::key::{Key, Parts};
use super::store::{Receipt, Store, Unusable, now_ms};
use crate::plan::{CacheSetting, Plan, PlanNode};

/// Whether a node's output is in the cache.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// A valid stored output (for a sink: its target holds what it would
    /// write).
    Cached,
    /// Nothing usable is stored for the node's key; why.
    Stale(String),
    /// Never computed (not under this name, with any key).
    New,
    /// Never stored: why (`cache: false`, …).
    Uncached(String),
    /// Not stored, remade from its inputs (all in the cache) when needed:
    /// cheaper than loading it.
    Remade,
}

/// What the run does with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Run,
    /// Its stored output is loaded for a consumer that runs.
    Load,
    /// Left in the cache: nothing that runs needs it (a sink: its target is
    /// up to date).
    Keep,
    /// Outside `--select`, and nothing selected needs it.
    Unselected,
    /// A partitioned node nothing reads whole: its days stand for it, and
    /// concatenating them would only hold every day in memory at once.
    AsDays,
    /// Handed over: an earlier window of the run made it (see
    /// [`crate::windows`]); forecast there.
    Given,
}

#[derive(Debug, Clone)]
pub struct NodeForecast {
    pub state: State,
    pub action: Action,
    pub key: Key,
    /// What the key is made of (kept for the pipeline's manifest).
    pub parts: Parts,
    /// What consumers' keys are made from.
    pub token: String,
    /// How long the output may be reused; `Never` is not stored.
    pub freshness: Freshness,
    /// Why a node outside the selection runs anyway.
    pub note: Option<String>,
}

/// Which nodes to consider and which to recompute regardless.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--select`: the nodes wanted (all when `None`).
    pub selected: Option<Vec<bool>>,
    /// `--force NODE`: these run even when cached.
    pub force: HashSet<usize>,
    /// `--force-all`.
    pub force_all: bool,
    /// Nodes whose tables a library caller keeps (`Plan.run(outputs=…)`
    /// in Python): each runs or is loaded, never left in the cache.
    pub wanted: HashSet<usize>,
    /// Nodes handed over from an earlier window of the run, with what was
    /// forecast for them there: consumers' keys take their tokens.
    pub given: std::collections::HashMap<usize, NodeForecast>,
}

#[derive(Debug, Clone)]
pub struct Forecast {
    pub nodes: Vec<NodeForecast>,
    /// Warnings found on the way (corrupt entries).
    pub warnings: Vec<String>,
}

impl Forecast {
    /// Decides every node of `plan` against the cache in `store`.
    pub fn new(plan: &Plan, store: &Store, options: &Options) -> Forecast {
        let nonce = format!("{}-{}", now_ms(), std::process::id());
        let mut warnings = Vec::new();
        let mut tokens: Vec<String> = Vec::with_capacity(plan.graph.node_count());
        let mut nodes: Vec<NodeForecast> = Vec::with_capacity(plan.graph.node_count());
        // Each sink target listed once, not once per day of the sink.
        let mut listings = Listings::default();
        let finder = store.finder();

        // Keys and states, inputs first (node indexes are a topological order).
        for (i, node) in plan.nodes() {
            if let Some(given) = options.given.get(&i.index()) {
                tokens.push(given.token.clone());
                nodes.push(NodeForecast {
                    action: Action::Given,
                    ..given.clone()
                });
                continue;
            }
            let forced = options.force_all || options.force.contains(&i.index());
            let freshness = freshness(node);
            let (fingerprint, fingerprint_error) = match node.operator.fingerprint() {
                Ok(f) => (f, None),
                Err(e) => (None, Some(e.to_string())),
            };
            let mut parts = Parts::of(node, fingerprint.as_deref(), &tokens);
            if !plan.secrets.is_empty() {
                // Secrets enter the key, and the manifest, only hashed.
                parts.params = plan.secrets.hash_json(&node.resolved_json()).to_string();
            }
            let key = parts.key();
            let fresh_token = || format!("{}@{nonce}", key.hex());
            let made = |key: &Key, parts: &Parts| why_not(store, &plan.name, node, key, parts);
            let (state, token) = if let Some(e) = fingerprint_error {
                (
                    State::Uncached(format!("what it reads cannot be checked: {e}")),
                    fresh_token(),
                )
            } else if node.effect == Effect::Sink {
                // What a sink outputs (what it wrote where) follows from its
                // key, written again or not.
                let state = sink_state(store, node, &key, &parts, made, forced, &mut listings);
                (state, key.hex())
            } else if freshness == Freshness::Never {
                (State::Uncached("cache: false".into()), fresh_token())
            } else if !node.operator.worth_storing() && freshness == Freshness::Forever {
                // Remade from its inputs whenever they are all at hand.
                let inputs_cached = plan
                    .graph
                    .neighbors_directed(i, Direction::Incoming)
                    .all(|n| matches!(nodes[n.index()].state, State::Cached | State::Remade));
                let state = if forced {
                    State::Stale("forced".into())
                } else if inputs_cached {
                    State::Remade
                } else {
                    State::Uncached("not stored; its inputs are not all cached".into())
                };
                (state, key.hex())
            } else {
                let deterministic = freshness == Freshness::Forever;
                let token = if deterministic {
                    key.hex()
                } else {
                    fresh_token()
                };
                match finder.find(&key) {
                    Ok(_) if forced => (State::Stale("forced".into()), token),
                    Ok(found) => match outlived(freshness, found.created_ms) {
                        Some(ttl) => (
                            State::Stale(format!(
                                "stored {} ago, older than its TTL of {}",
                                age_text(super::store::age(found.created_ms)),
                                age_text(ttl)
                            )),
                            token,
                        ),
                        // An output whose token consumers' keys take must
                        // be sound now: checked in full.
                        _ if !deterministic => match store.verify(&key) {
                            Ok(()) => (State::Cached, found.token),
                            Err(why) => {
                                let why = corrupt(&mut warnings, node, why);
                                (State::Stale(why), token)
                            }
                        },
                        _ => (State::Cached, found.token),
                    },
                    Err(Unusable::Missing) => (made(&key, &parts), token),
                    Err(why) => {
                        let why = corrupt(&mut warnings, node, why);
                        (State::Stale(why), token)
                    }
                }
            };
            tokens.push(token.clone());
            nodes.push(NodeForecast {
                state,
                action: Action::Run,
                key,
                parts,
                token,
                freshness,
                note: None,
            });
        }

        // Actions, consumers first.
        for i in plan.graph.node_indices().rev() {
            let node = &plan.graph[i];
            if options.given.contains_key(&i.index()) {
                // Handed over: it takes no time unless it is loaded, and
                // then only for a consumer that runs.
                let needed = plan
                    .graph
                    .neighbors_directed(i, Direction::Outgoing)
                    .any(|c| nodes[c.index()].action == Action::Run);
                nodes[i.index()].action = if needed { Action::Given } else { Action::Keep };
                continue;
            }
            // The days of a partitioned node together stand in for it; with
            // nothing reading them together, concatenating them would only
            // hold every day in memory at once.
            let idle_union = is_union(node)
                && plan
                    .graph
                    .neighbors_directed(i, Direction::Outgoing)
                    .next()
                    .is_none();
            let wanted = options.wanted.contains(&i.index());
            let selected = wanted
                || match &options.selected {
                    None => !idle_union,
                    Some(s) => s[i.index()],
                };
            let needed_by = plan
                .graph
                .neighbors_directed(i, Direction::Outgoing)
                .find(|c| nodes[c.index()].action == Action::Run)
                .map(|c| plan.graph[c].id.clone())
                .or_else(|| wanted.then(|| "the caller".to_string()));
            let f = &mut nodes[i.index()];
            let cached = matches!(f.state, State::Cached | State::Remade);
            f.action = match (&needed_by, cached, selected) {
                (None, true, true) => Action::Keep,
                (None, _, false) if idle_union && options.selected.is_none() => Action::AsDays,
                (None, _, false) => Action::Unselected,
                (None, false, true) => Action::Run,
                // Remade from its inputs, which the run loads.
                (Some(_), true, _) if f.state == State::Remade => Action::Run,
                // Checked in full already, when its token was taken.
                (Some(_), true, _)
                    if node.effect != Effect::Sink && f.freshness != Freshness::Forever =>
                {
                    Action::Load
                }
                // A sink up to date hands on what it wrote last time.
                (Some(_), true, _) => match store.verify(&f.key) {
                    Ok(()) => Action::Load,
                    Err(_) if node.effect == Effect::Sink => Action::Run,
                    Err(why) => {
                        f.state = State::Stale(corrupt(&mut warnings, node, why));
                        Action::Run
                    }
                },
                (Some(_), _, _) => Action::Run,
            };
            if !selected && f.action == Action::Run {
                f.note = needed_by.map(|c| format!("not selected; runs because {c} needs it"));
            } else if f.action == Action::AsDays {
                f.note = Some("nothing reads its days together".into());
            }
        }
        Forecast { nodes, warnings }
    }

    /// Drops what each key was made of (the run plan has it, in what it
    /// stores): at 400,000 nodes, hundreds of MiB a run need not hold.
    pub fn forget_parts(&mut self) {
        for n in &mut self.nodes {
            n.parts = Parts::default();
        }
    }

    pub fn count(&self, action: Action) -> usize {
        self.nodes.iter().filter(|n| n.action == action).count()
    }
}

impl NodeForecast {
    /// What made the node's key, as the JSON of a [`super::store::Made`], written with
    /// the parameters' canonical text as it is (not parsed again).
    pub fn made_json(&self) -> String {
        let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let fingerprint = self
            .parts
            .fingerprint
            .as_deref()
            .map_or("null".into(), text);
        let params = if self.parts.params.is_empty() {
            "null"
        } else {
            &self.parts.params
        };
        let inputs = serde_json::to_string(&self.parts.inputs).unwrap_or_default();
        format!(
            r#"{{"key":"{}","op":{},"version":{},"params":{params},"fingerprint":{fingerprint},"inputs":{inputs}}}"#,
            self.key.hex(),
            text(&self.parts.op),
            self.parts.version,
        )
    }
}

/// The TTL a stored output has outlived, if it has one and did. An
/// output stored once its data could no longer change has none.
fn outlived(freshness: Freshness, created_ms: u64) -> Option<Duration> {
    let ttl = match freshness {
        Freshness::For(ttl) => ttl,
        Freshness::Until { ttl, final_from } if super::store::created(created_ms) < final_from => {
            ttl
        }
        _ => return None,
    };
    (super::store::age(created_ms) > ttl).then_some(ttl)
}

/// A node's freshness: its `cache:` setting, else its operator's.
pub fn freshness(node: &PlanNode) -> Freshness {
    match node.policy.cache {
        CacheSetting::Operator => node.operator.freshness(),
        CacheSetting::Off => Freshness::Never,
        CacheSetting::Forever => Freshness::Forever,
        CacheSetting::Ttl(d) => Freshness::For(d),
    }
}

/// The files under each sink target, as a forecast found them.
type Listings = std::collections::HashMap<String, Result<Vec<std::path::PathBuf>, String>>;

fn sink_state(
    store: &Store,
    node: &PlanNode,
    key: &Key,
    parts: &Parts,
    why_not: impl Fn(&Key, &Parts) -> State,
    forced: bool,
    listings: &mut Listings,
) -> State {
    if forced {
        return State::Stale("forced".into());
    }
    let Some(target) = node.operator.sink_target() else {
        return State::Uncached("the sink names no target to check".into());
    };
    match store.receipt(key) {
        None => why_not(key, parts),
        Some(receipt) => match listings
            .entry(target.clone())
            .or_insert_with(|| Receipt::listing(&target).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|listing| {
                Receipt::of_listed(&target, partition_day(node), listing).map_err(|e| e.to_string())
            }) {
            Ok(now) if now == receipt => State::Cached,
            Ok(_) => State::Stale(format!("{target} changed since it was written")),
            Err(e) => State::Stale(format!("{target} cannot be read: {e}")),
        },
    }
}

/// Whether `node` stands for the days of a node split by `partition_by:
/// date`: their concatenation, its inputs named by the days.
pub fn is_union(node: &PlanNode) -> bool {
    node.op == "transform.concat"
        && !node.inputs.is_empty()
        && node
            .inputs
            .iter()
            .all(|input| input.name.len() == 10 && input.name.as_bytes()[4] == b'-')
}

/// The day of a node split by `partition_by: date` (`save@2026-01-05`).
pub fn partition_day(node: &PlanNode) -> Option<&str> {
    node.id
        .rsplit_once('@')
        .map(|(_, day)| day)
        .filter(|day| day.len() == 10 && day.as_bytes()[4] == b'-')
}

/// Why nothing is stored for `key`: what changed since the node's last
/// recorded key, or that it never ran.
fn why_not(store: &Store, pipeline: &str, node: &PlanNode, key: &Key, parts: &Parts) -> State {
    let Some(before) = store.made(pipeline, &node.id) else {
        return State::New;
    };
    if before.key == key.hex() {
        return State::Stale("its stored output is gone".into());
    }
    if before.op != parts.op {
        return State::Stale(format!("its operator was {}", before.op));
    }
    if before.version != parts.version {
        return State::Stale(format!(
            "operator version {} → {}",
            before.version, parts.version
        ));
    }
    let params: serde_json::Value = serde_json::from_str(&parts.params).unwrap_or_default();
    if before.params != params {
        return State::Stale(changed_params(&before.params, &params));
    }
    if before.fingerprint != parts.fingerprint {
        return State::Stale("the files it reads changed".into());
    }
    let changed: Vec<&str> = parts
        .inputs
        .iter()
        .filter(|(name, token)| !before.inputs.iter().any(|(n, t)| n == name && t == token))
        .map(|(name, _)| name.as_str())
        .collect();
    match changed.as_slice() {
        [] => State::Stale("its inputs changed".into()),
        [one] => State::Stale(format!("input {one} changed")),
        [first, rest @ ..] => {
            State::Stale(format!("inputs {first} and {} more changed", rest.len()))
        }
    }
}

/// `parameter end: "2024-01-19" → "2024-01-20"`, for the first changes.
fn changed_params(before: &serde_json::Value, now: &serde_json::Value) -> String {
    let empty = serde_json::Map::new();
    let (b, n) = (
        before.as_object().unwrap_or(&empty),
        now.as_object().unwrap_or(&empty),
    );
    let mut names: Vec<&String> = b.keys().chain(n.keys()).collect();
    names.sort();
    names.dedup();
    let changes: Vec<String> = names
        .into_iter()
        .filter(|k| b.get(*k) != n.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| {
                let text = v.map_or("(none)".to_string(), |v| v.to_string());
                if text.chars().count() > 40 {
                    format!("{}…", text.chars().take(39).collect::<String>())
                } else {
                    text
                }
            };
            format!("parameter {k}: {} → {}", show(b.get(k)), show(n.get(k)))
        })
        .collect();
    match changes.len() {
        0 => "its parameters changed".into(),
        1..=2 => changes.join("; "),
        n => format!("{}; and {} more", changes[..2].join("; "), n - 2),
    }
}

fn corrupt(warnings: &mut Vec<String>, node: &PlanNode, why: Unusable) -> String {
    let why = match why {
        Unusable::Missing => "its stored output is gone".to_string(),
        Unusable::Corrupt(how) => format!("its stored output is corrupt: {how}"),
    };
    warnings.push(format!("{}: {why}; computing it again", node.id));
    why
}

/// `6m 12s`, `3h 5m`, `2d 4h`, `7d`, `850ms`.
pub fn age_text(d: Duration) -> String {
    fn two(a: u64, ua: &str, b: u64, ub: &str) -> String {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua} {b}{ub}")
        }
    }
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => two(s / 60, "m", s % 60, "s"),
        3600..86400 => two(s / 3600, "h", (s % 3600) / 60, "m"),
        _ => two(s / 86400, "d", (s % 86400) / 3600, "h"),
    }
}

impl NodeForecast {
    /// `cached`, `stale: …`, `new`, `not cached: …`.
    pub fn state_text(&self) -> String {
        match &self.state {
            State::Cached => "cached".into(),
            State::Stale(why) => format!("stale: {why}"),
            State::New => "new".into(),
            State::Uncached(why) => format!("not cached: {why}"),
            State::Remade => "not stored: remade from its cached inputs".into(),
        }
    }

    pub fn action_text(&self) -> &'static str {
        match self.action {
            Action::Run => "run",
            Action::Load => "load",
            Action::Keep => "keep",
            Action::Unselected => "unselected",
            Action::AsDays => "days",
            Action::Given => "given",
        }
    }
}
