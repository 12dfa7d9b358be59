//! The pictures (issue: see the pipeline). Run:
//!
//!     cargo bench --bench pictures
//!
//! 1. Rendering: `quiver plan --format html` and `--format svg` of the VN30
//!    plan and of a 20,000-node fan-out, in Rust: time (best of 5 after a
//!    warm-up) and size.
//! 2. Drawing: each page opened from `file://` in headless Chromium, five
//!    times each: milliseconds from navigation to the drawn picture (the
//!    page's own `performance.now()`), median.
//! 3. Screenshots of the VN30 plan, the plan with a group expanded and a
//!    run timeline, written to `target/pictures/` (the generator is this
//!    file; the pictures are not committed).

// The browser driver of the tests; the benchmark uses part of it.
#[allow(dead_code)]
#[path = "../tests/integration/cdp.rs"]
mod cdp;

use std::path::Path;
use std::time::{Duration, Instant};

use quiver::compile::{compile_file, compile_str};
use quiver::exec::RunOptions;
use quiver::plan::Plan;
use quiver::render::timeline::TimelineHtml;
use quiver::render::{Format, render};

fn wide(n: usize) -> Plan {
    let symbols: Vec<String> = (0..n).map(|i| format!("S{i:05}")).collect();
    let yaml = format!(
        "pipeline: wide\nparams:\n  symbols: {{type: list, default: [{}]}}\nnodes:\n  info:\n    foreach: symbol in ${{symbols}}\n    op: fetch.synthetic\n    with: {{dataset: stock_info, symbol: \"${{symbol}}\"}}\n  all:\n    op: transform.concat\n    inputs: {{parts: \"info[*]\"}}\n",
        symbols.join(", ")
    );
    compile_str(Path::new("wide.yaml"), &yaml, &[]).unwrap_or_else(|d| panic!("{d}"))
}

fn best_of(f: impl Fn() -> String) -> (Duration, usize) {
    let size = f().len();
    let best = (0..5)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(f());
            started.elapsed()
        })
        .min()
        .unwrap();
    (best, size)
}

fn main() {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| f != "pictures") {
        return;
    }
    let vn30 =
        compile_file(Path::new("pipelines/vn30.yaml"), &[]).unwrap_or_else(|d| panic!("{d}"));
    let wide = wide(20_000);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pictures");
    std::fs::create_dir_all(&out).unwrap();

    println!("1. rendering in Rust (best of 5):");
    let mut pages = Vec::new();
    for (name, plan) in [("vn30", &vn30), ("wide-20000", &wide)] {
        for format in [Format::Html, Format::Svg] {
            let (took, size) = best_of(|| render(plan, format));
            println!(
                "   {name:<11} {:<5} {:>5} nodes: {:>8.1} ms, {:>9} bytes",
                format!("{format:?}").to_lowercase(),
                plan.graph.node_count(),
                took.as_secs_f64() * 1e3,
                size
            );
        }
        let file = out.join(format!("{name}.html"));
        std::fs::write(&file, render(plan, Format::Html)).unwrap();
        pages.push((name, file));
    }

    let report = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let executor = quiver::exec::Executor::new(RunOptions::default()).unwrap();
        let small = [
            quiver::compile::Override::parse_set("symbols=[FPT, VNM, HPG]").unwrap(),
            quiver::compile::Override::parse_set("weight_cap=0.5").unwrap(),
            quiver::compile::Override::parse_set(&format!("out_dir={}", out.join("run").display()))
                .unwrap(),
        ];
        let plan = compile_file(Path::new("pipelines/vn30.yaml"), &small)
            .unwrap_or_else(|d| panic!("{d}"));
        let run = quiver::cache::uncached(&plan);
        rt.block_on(executor.run(&run))
    };
    let timeline = out.join("timeline.html");
    std::fs::write(&timeline, TimelineHtml(&report).to_string()).unwrap();
    pages.push(("timeline", timeline));

    println!("2. drawing in headless Chromium (median of 5, navigation to picture):");
    let mut browser = cdp::Browser::launch().unwrap();
    for (name, file) in &pages {
        let mut times = Vec::new();
        for _ in 0..6 {
            let mut page = browser.new_page().unwrap();
            page.open(&format!("file://{}", file.display())).unwrap();
            let ms = page
                .eval("Number(document.body.getAttribute('data-drawn-ms'))")
                .unwrap()
                .as_f64()
                .unwrap();
            assert!(page.errors().is_empty(), "{name}: {:?}", page.errors());
            times.push(ms);
        }
        times.remove(0); // the warm-up
        times.sort_by(f64::total_cmp);
        println!("   {name:<11} {:>8.1} ms", times[times.len() / 2]);
    }

    let mut page = browser.new_page().unwrap();
    page.open(&format!("file://{}", out.join("vn30.html").display()))
        .unwrap();
    std::fs::write(
        out.join("vn30-plan.png"),
        page.screenshot(1600, 1000).unwrap(),
    )
    .unwrap();
    page.click("g.node.group").unwrap();
    std::fs::write(
        out.join("vn30-plan-expanded.png"),
        page.screenshot(1600, 1000).unwrap(),
    )
    .unwrap();
    page.open(&format!("file://{}", out.join("timeline.html").display()))
        .unwrap();
    std::fs::write(
        out.join("vn30-timeline.png"),
        page.screenshot(1600, 1000).unwrap(),
    )
    .unwrap();
    println!("3. screenshots: {}/*.png", out.display());
}
