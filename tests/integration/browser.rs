//! The pictures as a person sees them: the plan and timeline pages opened
//! from `file://` in a real headless Chromium (Debian's `chromium`; the
//! README's test command installs it when missing), checked from the
//! browser: the page draws with no console error and no request leaving
//! the file, the expected boxes are drawn, clicking a group expands it,
//! search finds a node.

use std::path::{Path, PathBuf};

use quiver::compile::compile_file;
use quiver::exec::{NodeStatus, RunOptions};
use quiver::render::timeline::TimelineHtml;
use quiver::render::view::View;
use quiver::render::{Format, render};
use serde_json::Value;

use crate::cdp::{Browser, Page};
use crate::support::{compile, run_with};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `html` to a file and opens it; the page must draw cleanly.
fn open(page: &mut Page, dir: &Path, name: &str, html: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, html).unwrap();
    let url = format!("file://{}", file.display());
    page.open(&url).unwrap();
    let drawn = page
        .eval("document.body.getAttribute('data-drawn')")
        .unwrap();
    assert_eq!(drawn, Value::from("true"), "{name} did not draw");
    assert!(page.errors().is_empty(), "{name}: {:?}", page.errors());
    let left: Vec<&String> = page
        .requests()
        .iter()
        .filter(|r| !r.starts_with("file://"))
        .collect();
    assert!(left.is_empty(), "{name} made requests: {left:?}");
    file
}

fn count(page: &mut Page, selector: &str) -> u64 {
    let js = format!("document.querySelectorAll({selector:?}).length");
    page.eval(&js).unwrap().as_u64().unwrap()
}

fn vn30_plan() -> quiver::plan::Plan {
    compile_file(&root().join("pipelines/vn30.yaml"), &[]).unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn the_vn30_plan_page_draws_groups_that_expand_and_finds_nodes() {
    let plan = vn30_plan();
    let view = View::of(&plan);
    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::launch().unwrap();
    let mut page = browser.new_page().unwrap();
    open(
        &mut page,
        dir.path(),
        "vn30.html",
        &render(&plan, Format::Html),
    );

    // One box per declaration; the header says what merging saved.
    assert_eq!(count(&mut page, "svg g.node"), view.groups.len() as u64);
    let header = page
        .eval("document.querySelector('header').textContent")
        .unwrap();
    let header = header.as_str().unwrap();
    assert!(
        header.contains("1272 declared nodes → 942 unique (330 merged"),
        "{header}"
    );

    // A real click on the `features[*]@*` group draws its 150 members.
    let (g, features) = view
        .groups
        .iter()
        .enumerate()
        .find(|(_, g)| g.key == "features[*]@*")
        .unwrap();
    let before = count(&mut page, "svg g.node");
    page.click(&format!("g.node.group[data-group='{g}']"))
        .unwrap();
    let after = count(&mut page, "svg g.node");
    assert_eq!(after, before - 1 + features.members.len() as u64);
    assert_eq!(count(&mut page, "svg g.node.member"), 150);

    // Clicking a member shows its node: operator, inputs, identity.
    page.click("g.node.member").unwrap();
    let details = page
        .eval("document.getElementById('details').textContent")
        .unwrap();
    let details = details.as_str().unwrap().to_string();
    assert!(details.contains("features.intraday"), "{details}");
    assert!(details.contains("trades ←"), "{details}");

    // Search by an alias finds the merged fetch it was merged into.
    page.click("#search").unwrap();
    page.type_text("session.trades[VNM]@2026-01-07").unwrap();
    let hits = count(&mut page, "#results div");
    assert_eq!(hits, 1);
    page.click("#results div").unwrap();
    let details = page
        .eval("document.getElementById('details').textContent")
        .unwrap();
    let details = details.as_str().unwrap().to_string();
    assert!(
        details.contains("features[VNM].trades@2026-01-07"),
        "{details}"
    );
    assert!(details.contains("2 declarations"), "{details}");
    assert!(page.errors().is_empty(), "{:?}", page.errors());
}

#[test]
fn the_symbols_plan_page_draws_one_box_per_declaration() {
    let plan =
        compile_file(&root().join("pipelines/symbols.yaml"), &[]).unwrap_or_else(|d| panic!("{d}"));
    let view = View::of(&plan);
    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::launch().unwrap();
    let mut page = browser.new_page().unwrap();
    open(
        &mut page,
        dir.path(),
        "symbols.html",
        &render(&plan, Format::Html),
    );
    assert_eq!(count(&mut page, "svg g.node"), view.groups.len() as u64);
    // Every edge between boxes is drawn and labelled with its inputs.
    assert_eq!(count(&mut page, "svg path.edge"), view.edges.len() as u64);
    assert_eq!(
        count(&mut page, "svg text.edge-label"),
        view.edges.len() as u64
    );
}

#[test]
fn a_20000_node_fan_out_stays_small_and_expands_a_page_of_members() {
    let symbols: Vec<String> = (0..20_000).map(|i| format!("S{i:05}")).collect();
    let yaml = format!(
        "pipeline: wide\nparams:\n  symbols: {{type: list, default: [{}]}}\nnodes:\n  info:\n    foreach: symbol in ${{symbols}}\n    op: fetch.synthetic\n    with: {{dataset: stock_info, symbol: \"${{symbol}}\"}}\n  all:\n    op: transform.concat\n    inputs: {{parts: \"info[*]\"}}\n",
        symbols.join(", ")
    );
    let plan = compile(&yaml);
    assert_eq!(plan.graph.node_count(), 20_001);
    let html = render(&plan, Format::Html);
    assert!(html.len() < 5 << 20, "{} bytes", html.len());
    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::launch().unwrap();
    let mut page = browser.new_page().unwrap();
    open(&mut page, dir.path(), "wide.html", &html);
    assert_eq!(count(&mut page, "svg g.node"), 2);
    page.click("g.node.group").unwrap();
    // The first 600 members are drawn; search reaches the others.
    assert_eq!(count(&mut page, "svg g.node.member"), 600);
    page.click("#search").unwrap();
    page.type_text("info[S19999]").unwrap();
    assert_eq!(count(&mut page, "#results div"), 1);
}

const RUN: &str = r#"
pipeline: timeline_demo
keep_going: true
params:
  symbols: {type: list, default: [FPT, VNM, HPG]}
# The flaky source is a source of its own, so that it has given up (after
# at most 30 ms of backoff) long before the ticks, queued one at a time, and
# the query after them are done: the critical path is then ticks → counts,
# whatever order the fetches got their slot in.
resources:
  api: {concurrency: 1}
  flaky_api: {concurrency: 1, retries: {max_attempts: 3, backoff: 10ms}}
nodes:
  ticks:
    foreach: symbol in ${symbols}
    op: fetch.synthetic
    resource: api
    with: {dataset: ticks, symbol: "${symbol}", start: 2026-01-05, end: 2026-01-05, latency: 50ms}
  flaky:
    op: fetch.synthetic
    resource: flaky_api
    with: {dataset: prices, symbol: SSI, start: 2026-01-05, end: 2026-01-09, fail_rate: 1.0}
  counts:
    op: transform.sql
    inputs: {t: "ticks[*]"}
    with: {query: "SELECT symbol, count(*) AS n FROM t GROUP BY symbol"}
"#;

#[test]
fn the_run_timeline_shows_waits_retries_failures_and_the_critical_path() {
    let plan = compile(RUN);
    let report = run_with(&plan, RunOptions::default());
    let flaky = report.node("flaky").unwrap();
    assert_eq!((flaky.status, flaky.attempts), (NodeStatus::Failed, 3));
    // The sources' metrics: 3 fetches once each, and 3 failed calls of
    // the flaky one, which gave up.
    let metrics = |name: &str| {
        let r = &report.totals.by_resource[name];
        (r.nodes, r.calls, r.failed_calls, r.failed_nodes)
    };
    assert_eq!(metrics("api"), (3, 3, 0, 0));
    assert_eq!(metrics("flaky_api"), (1, 3, 3, 1));
    let api = &report.totals.by_resource["api"];
    assert!(api.wait > std::time::Duration::ZERO, "{api:?}");
    let ran = report.nodes.iter().filter(|n| n.attempts > 0).count() as u64;

    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::launch().unwrap();
    let mut page = browser.new_page().unwrap();
    open(
        &mut page,
        dir.path(),
        "timeline.html",
        &TimelineHtml(&report).to_string(),
    );
    assert_eq!(count(&mut page, "svg g.row"), ran);
    // The fetches queued on one slot: all but the first waited.
    assert!(count(&mut page, "svg g.row rect.wait") >= 2);
    assert_eq!(count(&mut page, "svg g.row text.retry"), 1);
    assert_eq!(count(&mut page, "svg g.row text.failure"), 1);
    let critical = report.totals.critical_path.len() as u64;
    assert_eq!(critical, 2, "{:?}", report.totals.critical_path);
    assert_eq!(count(&mut page, "svg g.row.critical"), critical);
    // Clicking a group's row folds its nodes away.
    page.click("svg g.group-row[data-key^='ticks']").unwrap();
    assert_eq!(count(&mut page, "svg g.row"), ran - 3);
    assert!(page.errors().is_empty(), "{:?}", page.errors());
}

#[test]
fn the_plan_page_shows_what_a_rerun_would_do_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let quiver = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(args)
            .args(["--set", "symbols=[FPT, VNM]", "--set", "weight_cap=0.5"])
            .args(["--set", "history_start=2026-01-05"])
            .arg("--set")
            .arg(format!("out_dir={}", dir.path().join("out").display()))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let pipeline = root().join("pipelines/vn30.yaml");
    let pipeline = pipeline.to_str().unwrap();
    quiver(&["run", pipeline, "--quiet", "--set", "end_date=2026-01-05"]);
    // One more day: the first day's partitions are cached, the new day's run.
    let html = quiver(&[
        "plan",
        pipeline,
        "--format",
        "html",
        "--set",
        "end_date=2026-01-06",
    ]);

    let mut browser = Browser::launch().unwrap();
    let mut page = browser.new_page().unwrap();
    open(&mut page, dir.path(), "rerun.html", &html);
    let header = page
        .eval("document.querySelector('header').textContent")
        .unwrap();
    let header = header.as_str().unwrap().to_string();
    assert!(
        header.contains("cached") && header.contains("to run"),
        "{header}"
    );
    // The group of a day's features says how many partitions run.
    let subtitle = page
        .eval("[...document.querySelectorAll('g.node.group')].map(g => g.textContent).find(t => t.startsWith('features[*]@*'))")
        .unwrap();
    let subtitle = subtitle.as_str().unwrap().to_string();
    assert!(
        subtitle.contains("2 run") && subtitle.contains("2 keep"),
        "{subtitle}"
    );
    page.click("#search").unwrap();
    page.type_text("features[FPT]@2026-01-06").unwrap();
    page.click("#results div").unwrap();
    let details = page
        .eval("document.getElementById('details').textContent")
        .unwrap();
    let details = details.as_str().unwrap().to_string();
    assert!(details.contains("cacherun · new"), "{details}");
}

#[test]
fn the_svg_picture_draws_one_box_per_group_in_a_browser() {
    let plan = vn30_plan();
    let view = View::of(&plan);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vn30.svg");
    std::fs::write(&file, render(&plan, Format::Svg)).unwrap();
    let mut browser = Browser::launch().unwrap();
    let mut page = browser.new_page().unwrap();
    page.open(&format!("file://{}", file.display())).unwrap();
    assert!(page.errors().is_empty(), "{:?}", page.errors());
    assert_eq!(count(&mut page, "g.node"), view.groups.len() as u64);
    assert_eq!(count(&mut page, "path.edge"), view.edges.len() as u64);
}

/// Opens the stages page of the pipeline `text` (read from `path`) in
/// Chromium and hands it to `check`, with what validating found.
fn with_stage_page(
    path: &Path,
    text: &str,
    check: impl FnOnce(&quiver::compile::Validated, &mut Page),
) {
    use quiver::compile::{Options, validate_str_with_options};
    let v = validate_str_with_options(
        path,
        text,
        &[],
        quiver::operators::registry(),
        Options::default(),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let dir = tempfile::tempdir().unwrap();
    let mut browser = Browser::launch().unwrap();
    let mut page = browser.new_page().unwrap();
    open(
        &mut page,
        dir.path(),
        "stages.html",
        &quiver::render::stages_html(&v),
    );
    check(&v, &mut page);
}

/// Checks that no two edge labels of the page's picture overlap, as the
/// browser measures them; returns how many there are.
fn labels_apart(page: &mut Page) -> usize {
    let boxes = page
        .eval(
            "JSON.stringify(Array.from(document.querySelectorAll('text.edge-label')).map(t => { \
             const b = t.getBBox(); return [b.x, b.y, b.width, b.height, t.textContent]; }))",
        )
        .unwrap();
    let boxes: Vec<(f64, f64, f64, f64, String)> =
        serde_json::from_str(boxes.as_str().unwrap()).unwrap();
    for (i, a) in boxes.iter().enumerate() {
        assert!(a.2 > 0.0 && a.3 > 0.0, "{a:?} is not drawn");
        for b in &boxes[i + 1..] {
            let apart =
                a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
            assert!(apart, "labels overlap: {a:?} and {b:?}");
        }
    }
    boxes.len()
}

#[test]
fn stage_edge_labels_stay_apart_where_many_edges_meet() {
    // One source read by six stages side by side, and all six read by one:
    // the edges' middles are closer together than their labels are long.
    let mut yaml = String::from(
        "pipeline: fan\nnodes:\n  prices: {op: fetch.synthetic, partition_by: date, with: {dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-09}}\n",
    );
    for i in 0..6 {
        yaml.push_str(&format!(
            "  reader_{i}: {{op: transform.sql, partition_by: date, lookback: {{daily_prices: {i}}}, inputs: {{daily_prices: prices}}, with: {{query: \"SELECT {i} AS n\"}}}}\n"
        ));
    }
    let all: Vec<String> = (0..6)
        .map(|i| format!("input_number_{i}: reader_{i}"))
        .collect();
    yaml.push_str(&format!(
        "  together: {{op: transform.sql, partition_by: date, inputs: {{{}}}, with: {{query: \"SELECT 1 AS n\"}}}}\n",
        all.join(", ")
    ));
    with_stage_page(Path::new("fan.yaml"), &yaml, |_, page| {
        assert_eq!(count(page, "g.stage"), 8);
        assert_eq!(labels_apart(page), 12);
    });
}

#[test]
fn the_vn30_stage_page_draws_a_box_per_written_node_labels_apart_and_keys_on_click() {
    let path = root().join("pipelines/vn30.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    with_stage_page(&path, &text, |v, page| vn30_stage_page(&text, v, page));
}

fn vn30_stage_page(text: &str, v: &quiver::compile::Validated, page: &mut Page) {
    // One box per node the file declares (every `op:` written), none for
    // the days' concatenations.
    let written = text
        .lines()
        .filter(|l| l.trim_start().starts_with("op: "))
        .count();
    assert_eq!(count(page, "g.stage"), written as u64);

    // No two edge labels overlap, as the browser lays out their text.
    assert!(labels_apart(page) >= 12);

    // A click on a stage lists its keys.
    let features = v
        .stages
        .stages
        .iter()
        .position(|s| s.name == "features")
        .unwrap();
    page.click(&format!("g.stage[data-stage='{features}']"))
        .unwrap();
    let keys = page
        .eval("JSON.stringify(Array.from(document.querySelectorAll('#keys li')).map(li => li.textContent))")
        .unwrap();
    let keys: Vec<String> = serde_json::from_str(keys.as_str().unwrap()).unwrap();
    assert_eq!(keys.len(), 30, "{keys:?}");
    assert!(keys.iter().any(|k| k == "FPT"), "{keys:?}");
    let details = page
        .eval("document.getElementById('details').textContent")
        .unwrap();
    assert!(
        details
            .as_str()
            .unwrap()
            .contains("prices ← features.prices, 5 days back"),
        "{details}"
    );

    // Search finds a key, and a stage by the one merged with it.
    page.click("#search").unwrap();
    page.type_text("session.trades").unwrap();
    let hits = page
        .eval("Array.from(document.querySelectorAll('#results div')).map(d => d.textContent).join('|')")
        .unwrap();
    assert!(
        hits.as_str()
            .unwrap()
            .contains("features.trades ≡ session.trades"),
        "{hits}"
    );
    assert!(page.errors().is_empty(), "{:?}", page.errors());
}
