//! What the benchmarks share: running a plan as `quiver run` does, and
//! reading a folder of outputs back to compare them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quiver::exec::{Executor, RunOptions, RunReport};
use quiver::plan::Plan;

pub mod postgres;

/// Runs `plan` on a fresh runtime and executor; the time is the run's alone.
pub fn execute(plan: &Plan, options: RunOptions) -> (Duration, RunReport) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = Executor::new(options).unwrap();
    let start = Instant::now();
    let report = rt.block_on(executor.run(plan));
    let took = start.elapsed();
    drop(executor);
    (took, report)
}

/// Every file under `dir`, by its path inside it, with its bytes.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// `symbols=[…]` of 400 tickers: the VN30 and 370 made up.
pub fn universe() -> String {
    universe_of(400)
}

/// `symbols=[…]` of `n` tickers (at least 30): the VN30 and made-up ones.
pub fn universe_of(n: usize) -> String {
    let vn30 = [
        "ACB", "BCM", "BID", "BVH", "CTG", "FPT", "GAS", "GVR", "HDB", "HPG", "LPB", "MBB", "MSN",
        "MWG", "PLX", "SAB", "SHB", "SSB", "SSI", "STB", "TCB", "TPB", "VCB", "VHM", "VIB", "VIC",
        "VJC", "VNM", "VPB", "VRE",
    ];
    let mut symbols: Vec<String> = vn30.iter().map(|s| s.to_string()).collect();
    let made_up = n.saturating_sub(vn30.len());
    if n <= 400 {
        symbols.extend((0..made_up).map(|i| format!("X{i:03}")));
    } else {
        symbols.extend((0..made_up).map(|i| format!("X{i:04}")));
    }
    format!("symbols=[{}]", symbols.join(","))
}

/// Which parts of a benchmark its command line names (`cargo bench
/// --bench cache -- vn30`): every part when it names none.
pub fn wanted_parts() -> impl Fn(&str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    move |part| named.is_empty() || named.iter().any(|n| n == part)
}
