//! The cache store under stress: processes killed at random points, a full
//! disk, a cache written by quiver before packs, and gc over packs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use quiver::cache::{self, Forecast, Options, State, Store};

use crate::bench_support::files;

fn quiver(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Temporary files anywhere under `dir`: a pack not sealed, a sink's or a
/// report's file not renamed into place.
fn litter(dir: &Path) -> Vec<PathBuf> {
    crate::bench_support::files(dir)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.ends_with(".tmp") || name.contains(".tmp-")
        })
        .collect()
}

/// The outputs of the VN30 pipeline with `sets`, run without the cache.
fn reference(root: &Path, sets: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = root.join("reference");
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = run_args(sets);
    args.push("--no-cache");
    let out = quiver(&dir, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    files(&dir.join("out"))
}

const VN30: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/vn30.yaml");

fn run_args<'a>(sets: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", VN30, "--quiet"];
    for s in sets {
        args.extend(["--set", s]);
    }
    args
}

#[test]
fn kill_9_at_random_points_never_serves_a_corrupt_entry() {
    let root = tempfile::tempdir().unwrap();
    let sets = [
        "symbols=[ACB, FPT, HPG, MWG, VCB, VNM, TCB, SSI]",
        "weight_cap=0.3",
        "api_latency=15ms",
    ];
    let expected = reference(root.path(), &sets);
    let dir = root.path().join("killed");
    std::fs::create_dir_all(&dir).unwrap();
    // Killed at points spread over the run (a fixed pseudo-random walk, so
    // that a failure can be replayed), then run to the end; each run after
    // a kill must succeed on what the killed ones left.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = Duration::from_millis(80 + seed % 900);
        let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(run_args(&sets))
            .current_dir(&dir)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(after);
        let _ = child.kill();
        let status = child.wait().unwrap();
        eprintln!("round {round}: killed after {after:?} ({status})");
    }
    let out = quiver(&dir, &run_args(&sets));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("corrupt"), "{stderr}");
    assert!(
        files(&dir.join("out")) == expected,
        "outputs differ after kills"
    );
    // Everything in the cache reads back whole, and nothing half-written
    // is left in the cache or among the outputs.
    let verify = quiver(&dir, &["cache", "verify"]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(text.contains(" 0 bad"), "{text}");
    assert_eq!(litter(&dir.join(".quiver/cache")), Vec::<PathBuf>::new());
    assert_eq!(litter(&dir.join("out")), Vec::<PathBuf>::new());
    // And a rerun has nothing to do.
    let again = quiver(&dir, &run_args(&sets));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("executed 0 nodes"), "{stderr}");
}

#[test]
fn two_processes_writing_one_cache_at_once_both_succeed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    // Overlapping symbol sets: both processes compute (and write) the
    // shared symbols' nodes, each into packs of its own.
    let a = [
        "symbols=[ACB, FPT, HPG, MWG]",
        "weight_cap=0.5",
        "api_latency=5ms",
        "out_dir=out/a",
    ];
    let b = [
        "symbols=[FPT, HPG, VCB, VNM]",
        "weight_cap=0.5",
        "api_latency=5ms",
        "out_dir=out/b",
    ];
    let spawn = |sets: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(run_args(sets))
            .current_dir(&dir)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(&a), spawn(&b));
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.to_lowercase().contains("warn"), "{stderr}");
    }
    // The index agrees with the packs, and each run finds all it wrote.
    let verify = quiver(&dir, &["cache", "verify"]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && text.contains(" 0 bad"), "{text}");
    for sets in [&a, &b] {
        let again = quiver(&dir, &run_args(sets));
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(stderr.contains("executed 0 nodes"), "{stderr}");
    }
    // Each day folder holds the packs of two writers at most.
    for day in std::fs::read_dir(dir.join(".quiver/cache/packs")).unwrap() {
        let day = day.unwrap().path();
        let packs = std::fs::read_dir(&day).unwrap().count();
        assert!(packs <= 2, "{} holds {packs} packs", day.display());
    }
    assert_eq!(litter(&dir.join(".quiver/cache")), Vec::<PathBuf>::new());
}

/// A tmpfs of `size` mounted on `dir` for as long as it lives.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let sudo = !nix_root();
        let mut cmd = Command::new(if sudo { "sudo" } else { "mount" });
        if sudo {
            cmd.args(["-n", "mount"]);
        }
        let status = cmd
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a small tmpfs needs root (or sudo without a password)"
        );
        SmallDisk(dir.to_path_buf())
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn nix_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_full_disk_turns_the_cache_off_with_one_warning_and_outputs_stay_whole() {
    let root = tempfile::tempdir().unwrap();
    let sets: [&str; 0] = [];
    let expected = reference(root.path(), &sets);
    // The outputs and the report take under 1 MiB, the cache about 10.
    let disk = SmallDisk::mount(&root.path().join("small"), "4m");
    let dir = disk.0.clone();
    let out = quiver(&dir, &run_args(&sets));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.to_lowercase().starts_with("warning"))
        .collect();
    assert!(warnings.len() <= 3, "{stderr}");
    assert!(
        warnings.iter().any(|w| w.contains("Caching is off")),
        "{stderr}"
    );
    assert!(
        files(&dir.join("out")) == expected,
        "outputs differ on a full disk"
    );
    assert_eq!(litter(&dir), Vec::<PathBuf>::new());
    // With room again, a rerun writes the same outputs and fills the cache.
    disk.grow("64m");
    let again = quiver(&dir, &run_args(&sets));
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(files(&dir.join("out")) == expected);
    let last = quiver(&dir, &run_args(&sets));
    let stderr = String::from_utf8_lossy(&last.stderr);
    assert!(stderr.contains("executed 0 nodes"), "{stderr}");
    assert_eq!(litter(&dir), Vec::<PathBuf>::new());
}

fn small_pipeline(out: &Path, query: &str) -> String {
    format!(
        r#"
pipeline: packed
nodes:
  bars:
    foreach: symbol in [FPT, VNM]
    op: fetch.synthetic
    with: {{dataset: ticks, symbol: "${{symbol}}", start: 2024-01-02, end: 2024-01-12}}
  stats:
    op: transform.sql
    inputs: {{bars: "bars[*]"}}
    with: {{query: "{query}"}}
  save:
    op: sink.parquet
    inputs: [stats]
    with: {{path: "{}"}}
"#,
        out.display()
    )
}

fn compile(text: &str) -> quiver::plan::Plan {
    quiver::compile::compile_str(Path::new("test.yaml"), text, &[])
        .unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn a_cache_of_entry_files_is_read_then_migrated_into_packs() {
    let root = tempfile::tempdir().unwrap();
    let (new, old) = (root.path().join("new"), root.path().join("old"));
    let plan = compile(&small_pipeline(
        &root.path().join("s.parquet"),
        "SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol",
    ));
    crate::cache::run_cached(&plan, &new, &Options::default());
    // The same outputs, written as quiver wrote them before packs.
    let store = Store::new(&new);
    for found in store.entries().unwrap() {
        let key = cache::Key::from_hex(&found.header.key).unwrap();
        let table = store.load(&key).unwrap();
        cache::legacy::write(&old, &found.header, &table).unwrap();
    }
    let pure = |f: &Forecast| {
        plan.nodes()
            .filter(|(_, n)| n.op != "sink.parquet")
            .all(|(i, _)| f.nodes[i.index()].state == State::Cached)
    };
    let legacy = Store::new(&old);
    assert!(pure(&Forecast::new(&plan, &legacy, &Options::default())));
    let moved = cache::gc::migrate(&legacy).unwrap();
    assert_eq!(moved.entries, store.entries().unwrap().len());
    assert!(!old.join("entries").exists());
    let migrated = Store::new(&old);
    let forecast = Forecast::new(&plan, &migrated, &Options::default());
    assert!(pure(&forecast));
    for n in &forecast.nodes {
        if n.state == State::Cached {
            migrated.verify(&n.key).unwrap();
        }
    }
}

#[test]
fn gc_keeps_what_recent_runs_used_and_rewrites_sparse_packs() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = root.path().join("cache");
    let out = root.path().join("s.parquet");
    // A large `stats` first, then a small one: the first pack is mostly
    // what only the first run used.
    let first = compile(&small_pipeline(
        &out,
        "SELECT * FROM bars UNION ALL SELECT * FROM bars UNION ALL SELECT * FROM bars",
    ));
    let second = compile(&small_pipeline(
        &out,
        "SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol",
    ));
    crate::cache::run_cached(&first, &cache_dir, &Options::default());
    crate::cache::run_cached(&second, &cache_dir, &Options::default());
    let store = Store::new(&cache_dir);
    let before = cache::gc::size(&store).unwrap();
    let swept = cache::gc::gc(
        &store,
        &cache::gc::Policy {
            keep_runs: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    // The first run's `stats` and its sink's summary went; its pack, with
    // the fetches the second run still uses, was rewritten smaller.
    assert_eq!(swept.entries, 2, "{swept:?}");
    assert_eq!(swept.packs_rewritten, 1, "{swept:?}");
    assert!(swept.size < before / 2, "{swept:?} from {before}");
    let forecast = Forecast::new(&second, &store, &Options::default());
    for (i, node) in second.nodes() {
        let f = &forecast.nodes[i.index()];
        assert_eq!(f.state, State::Cached, "{}", node.id);
        store.verify(&f.key).unwrap();
    }
    let old = Forecast::new(&first, &store, &Options::default());
    let stats = first.find("stats").unwrap();
    assert_ne!(old.nodes[stats.index()].state, State::Cached);
}

#[test]
fn a_run_keeps_the_cache_within_its_max_size() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = root.path().join("cache");
    let text = |end: &str, max: &str| {
        format!(
            r#"
pipeline: bounded
cache: {{max_size: {max}}}
nodes:
  ticks:
    op: fetch.synthetic
    partition_by: date
    with: {{dataset: ticks, symbol: FPT, start: {end}, end: {end}}}
"#
        )
    };
    let one = |end: &str, max: &str| {
        let plan = compile(&text(end, max));
        crate::cache::run_cached(&plan, &cache_dir, &Options::default());
        plan
    };
    one("2024-01-02", "1GiB");
    one("2024-01-03", "1GiB");
    let store = Store::new(&cache_dir);
    let two_days = cache::gc::size(&store).unwrap();
    // Room for one day: the older day goes, never the day the run covers.
    let plan = one("2024-01-04", &format!("{}B", two_days / 2 + 1));
    let entries = store.entries().unwrap();
    let days: Vec<String> = entries.iter().filter_map(|e| e.day.clone()).collect();
    assert!(days.iter().all(|d| d == "2024-01-04"), "{days:?}");
    let forecast = Forecast::new(&plan, &store, &Options::default());
    assert!(
        forecast
            .nodes
            .iter()
            .all(|n| matches!(n.state, State::Cached | State::Remade))
    );
    let bad = compile_err(
        "pipeline: b\ncache: {max_size: 12 parsecs}\nnodes:\n  a: {op: fetch.synthetic, with: {dataset: prices, symbol: FPT}}\n",
    );
    assert!(
        bad.contains("test.yaml:2") && bad.contains("unknown unit"),
        "{bad}"
    );
}

fn compile_err(text: &str) -> String {
    match quiver::compile::compile_str(Path::new("test.yaml"), text, &[]) {
        Ok(_) => panic!("compiled"),
        Err(d) => d.to_string(),
    }
}

#[test]
fn a_live_source_for_days_that_have_ended_is_kept_for_good() {
    use quiver::operators::arrow::array::{ArrayRef, Int64Array};
    use quiver::operators::arrow::record_batch::RecordBatch;
    // 2020-01-02 ends at 2020-01-03T00:00Z, in Ho Chi Minh City (UTC+7)
    // at 2020-01-02T17:00Z.
    const JAN_2_18H_UTC: u64 = 1_577_988_000_000;
    const JAN_2_12H_UTC: u64 = 1_577_966_400_000;
    let state = |extra: &str, created_ms: u64| {
        let dir = tempfile::tempdir().unwrap();
        let plan = compile(&format!(
            "pipeline: live\nnodes:\n  quotes:\n    op: fetch.http\n    with: {{url: \"http://127.0.0.1:9/q\"{extra}}}\n"
        ));
        let store = Store::new(dir.path());
        let key = Forecast::new(&plan, &store, &Options::default()).nodes[0].key;
        let header = cache::store::EntryHeader {
            key: key.hex(),
            pipeline: "live".into(),
            node: "quotes".into(),
            op: "fetch.http".into(),
            token: "stored".into(),
            created_ms,
            rows: 1,
        };
        let column: ArrayRef = std::sync::Arc::new(Int64Array::from(vec![1]));
        let table = quiver::operators::Table::from_batch(
            RecordBatch::try_from_iter([("x", column)]).unwrap(),
        );
        cache::legacy::write(dir.path(), &header, &table).unwrap();
        let forecast = Forecast::new(&plan, &Store::new(dir.path()), &Options::default());
        forecast.nodes[0].state.clone()
    };
    let stale = |s: &State| matches!(s, State::Stale(why) if why.contains("TTL"));
    // Stored after its last day ended: kept, years later.
    assert_eq!(
        state(", last_day: 2020-01-01", JAN_2_12H_UTC),
        State::Cached
    );
    // Stored while the day was still open: its TTL holds.
    let s = state(", last_day: 2020-01-02", JAN_2_12H_UTC);
    assert!(stale(&s), "{s:?}");
    // The day ends where the exchange is, not in UTC.
    let s = state(", last_day: 2020-01-02", JAN_2_18H_UTC);
    assert!(stale(&s), "{s:?}");
    assert_eq!(
        state(
            ", last_day: 2020-01-02, timezone: Asia/Ho_Chi_Minh",
            JAN_2_18H_UTC
        ),
        State::Cached
    );
    // Without a last day, a live source is never final.
    let s = state("", JAN_2_18H_UTC);
    assert!(stale(&s), "{s:?}");
    let bad = compile_err(
        "pipeline: b\nnodes:\n  q:\n    op: fetch.http\n    with: {url: \"http://h/q\", last_day: 2020-01-02, timezone: Asia/Saigonn}\n",
    );
    assert!(bad.contains("test.yaml:5") && bad.contains("IANA"), "{bad}");
}

#[test]
fn a_table_a_caller_keeps_is_loaded_not_left_in_the_cache() {
    use quiver::cache::Action;
    let root = tempfile::tempdir().unwrap();
    let plan = compile(&small_pipeline(
        &root.path().join("s.parquet"),
        "SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol",
    ));
    let cache_dir = root.path().join("cache");
    crate::cache::run_cached(&plan, &cache_dir, &Options::default());
    let stats = plan.find("stats").unwrap().index();
    let store = Store::new(&cache_dir);
    let left = Forecast::new(&plan, &store, &Options::default());
    assert_eq!(left.nodes[stats].action, Action::Keep);
    let options = Options {
        wanted: [stats].into(),
        ..Options::default()
    };
    let (forecast, report) = crate::cache::run_cached(&plan, &cache_dir, &options);
    assert_eq!(forecast.nodes[stats].action, Action::Load);
    // Its inputs stay where they are: nothing runs.
    assert_eq!(forecast.count(Action::Run), 0);
    assert_eq!(report.nodes[stats].status, quiver::exec::NodeStatus::Cached);
}

#[test]
fn a_day_written_by_many_processes_ends_with_one_pack() {
    let root = tempfile::tempdir().unwrap();
    let cache_dir = root.path().join("cache");
    let plan = compile(
        r#"
pipeline: many
nodes:
  ticks:
    foreach: symbol in [FPT, VNM, HPG]
    op: fetch.synthetic
    partition_by: date
    with: {dataset: ticks, symbol: "${symbol}", start: 2024-01-02, end: 2024-01-03}
"#,
    );
    let packs =
        |day: &str| std::fs::read_dir(cache_dir.join("packs").join(day)).map_or(0, |d| d.count());
    // Each run a writer of its own, as each Ray worker is; forced, so that
    // each writes the day again.
    let forced = Options {
        force_all: true,
        ..Options::default()
    };
    crate::cache::run_cached(&plan, &cache_dir, &forced);
    crate::cache::run_cached(&plan, &cache_dir, &forced);
    assert_eq!(packs("2024-01-02"), 2);
    crate::cache::run_cached(&plan, &cache_dir, &forced);
    assert_eq!(packs("2024-01-02"), 1);
    let store = Store::new(&cache_dir);
    let forecast = Forecast::new(&plan, &store, &Options::default());
    for n in &forecast.nodes {
        assert!(
            matches!(n.state, State::Cached | State::Remade),
            "{:?}",
            n.state
        );
        if n.state == State::Cached {
            store.verify(&n.key).unwrap();
        }
    }
    assert_eq!(litter(&cache_dir), Vec::<PathBuf>::new());
}
