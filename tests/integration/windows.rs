//! Plans a window of days at a time (`compile::window`) against the full
//! compile: every node a window builds is the full plan's node of that
//! name, with its identity; every node of the full plan that runs is built
//! by exactly one window (see below for the one exception); and whatever a window is handed from the past
//! was made by an earlier window and kept long enough.

use std::collections::HashMap;
use std::path::Path;

use quiver::compile::window::{TO_THE_END, Windowed};
use quiver::compile::{Options, Override};
use quiver::plan::parts::{Given, handed};
use quiver::plan::{Plan, PlanNode};

/// Plans `text` in windows of `size` days and checks them against the
/// full plan; the number of windows (0 when the pipeline does not
/// compile, or is not run in windows).
pub fn windows_match(path: &Path, text: &str, overrides: &[Override], size: u32) -> usize {
    let registry = quiver::operators::registry();
    let Ok(full) = quiver::compile::compile_str(path, text, overrides) else {
        return 0;
    };
    let windowed = Windowed::new(path, text, overrides, registry, Options::default())
        .expect("what compiles is read");
    let Some(windowed) = windowed else {
        return 0;
    };
    let days = windowed.days().len() as u32;
    let mut plans: Vec<Plan> = Vec::new();
    // Name → (window, node), for every node a window built.
    let mut made: HashMap<String, (usize, petgraph::graph::NodeIndex)> = HashMap::new();
    let mut built: HashMap<u64, usize> = HashMap::new();
    let mut last: std::collections::HashSet<u64> = Default::default();
    let mut a = 0;
    while a < days.max(1) {
        let b = (a + size - 1).min(days.saturating_sub(1));
        let give = |name: &str| -> Option<PlanNode> {
            let &(w, i) = made.get(name)?;
            let node = &plans[w].graph[i];
            // Kept until at least this window's first day.
            let until = node
                .names()
                .filter_map(|n| windowed.kept_until(n))
                .max()
                .unwrap_or(0);
            assert!(
                until == TO_THE_END || until >= a,
                "{name} is read on day {a}, kept until {until}\n{text}"
            );
            Some(handed(node, Given::Nothing(String::new())))
        };
        let window = windowed
            .plan(registry, a, b, &give)
            .unwrap_or_else(|e| panic!("days {a}..={b}: {e}\n{text}"));
        let w = plans.len();
        for (i, node) in window.plan.nodes() {
            if window.handed.contains(&i) {
                continue;
            }
            let at = full
                .find(&node.id)
                .unwrap_or_else(|| panic!("{} is not in the full plan\n{text}", node.id));
            assert_eq!(
                full.graph[at].identity, node.identity,
                "{}\n{text}",
                node.id
            );
            assert_eq!(full.graph[at].op, node.op, "{}", node.id);
            *built.entry(node.identity).or_default() += 1;
            for name in node.names() {
                made.insert(name.to_string(), (w, i));
            }
        }
        if b + 1 >= days {
            last = window.plan.nodes().map(|(_, n)| n.identity).collect();
        }
        plans.push(window.plan);
        a = b + 1;
    }
    for (i, node) in full.nodes() {
        let idle_union = quiver::cache::forecast::is_union(node)
            && full
                .graph
                .neighbors_directed(i, petgraph::Direction::Outgoing)
                .next()
                .is_none();
        let times = built.get(&node.identity).copied().unwrap_or(0);
        let whole = node.names().any(|n| !n.contains('@'));
        if idle_union {
            assert_eq!(times, 0, "{} is built, and nothing reads it", node.id);
        } else if whole && times > 1 {
            // A lookback that covers every day of its input reads the
            // input whole: a day's node is the same as a node that reads
            // every day, one node in the full plan, and made again in the
            // last window for what reads it whole.
            assert!(
                last.contains(&node.identity),
                "{} is built {times} times\n{text}",
                node.id
            );
        } else {
            assert_eq!(times, 1, "{} is built {times} times\n{text}", node.id);
        }
    }
    plans.len()
}

#[test]
fn every_shipped_pipeline_plans_the_same_in_windows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("pipelines/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .expect("readable")
            .replace("${env:DATABASE_URL}", "postgres://quiver@localhost/market");
        for size in [1, 2, 3, 100] {
            checked += windows_match(&path, &text, &[], size);
        }
    }
    assert!(checked >= 20, "{checked} windows");
}
