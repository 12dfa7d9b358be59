//! Date partitions: one node per trading day, so that one more day costs
//! one more day of work per symbol, and the days together are the range.

use std::path::Path;

use crate::cache::{assert_forecast_held, run_cached};
use crate::support::run;
use quiver::cache::{Action, Forecast, Options, State, Store};
use quiver::compile::{Override, compile_str};
use quiver::plan::Plan;

const PIPELINE: &str = r#"
pipeline: parts
params:
  symbols: {type: list, default: [FPT, VNM, HPG]}
  start: {type: date, default: 2026-01-05}
  end: {type: date, default: 2026-01-30}
  out: {type: string, required: true}
nodes:
  ticks:
    foreach: symbol in ${symbols}
    op: fetch.synthetic
    partition_by: date
    with: {dataset: ticks, symbol: "${symbol}", start: "${start}", end: "${end}"}
  prices:
    foreach: symbol in ${symbols}
    op: fetch.synthetic
    partition_by: date
    with: {dataset: prices, symbol: "${symbol}", start: "${start}", end: "${end}"}
  info:
    foreach: symbol in ${symbols}
    op: fetch.synthetic
    with: {dataset: stock_info, symbol: "${symbol}"}
  day:
    foreach: symbol in ${symbols}
    op: transform.sql
    partition_by: date
    inputs: {ticks: "ticks[${symbol}]", prices: "prices[${symbol}]", info: "info[${symbol}]"}
    with:
      query: >
        SELECT p.symbol, p.date, p.close, sum(t.price * t.volume) / sum(t.volume) AS vwap,
               max(i.free_float) AS free_float
        FROM prices p JOIN ticks t ON p.symbol = t.symbol JOIN info i ON i.symbol = p.symbol
        GROUP BY p.symbol, p.date, p.close
  history:
    op: transform.sql
    inputs: {day: "day[*]"}
    with: {query: "SELECT symbol, count(*) AS days, avg(vwap) AS vwap FROM day GROUP BY symbol ORDER BY symbol"}
  save: {op: sink.csv, inputs: [history], with: {path: "${out}"}}
"#;

fn compile(out: &Path, end: &str) -> Plan {
    let set = |text: String| Override::parse_set(&text).unwrap();
    compile_str(
        Path::new("parts.yaml"),
        PIPELINE,
        &[
            set(format!("out={}", out.display())),
            set(format!("end={end}")),
        ],
    )
    .unwrap_or_else(|d| panic!("{d}"))
}

#[test]
fn one_more_day_fetches_one_day_per_symbol_and_the_plan_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("history.csv");
    let cache = dir.path().join("cache");

    // 2026-01-05 to 2026-01-30: 20 trading days.
    let twenty = compile(&out, "2026-01-30");
    let days = twenty
        .nodes()
        .filter(|(_, n)| n.id.starts_with("ticks[FPT]@"))
        .count();
    assert_eq!(days, 20);
    let (_, first) = run_cached(&twenty, &cache, &Options::default());
    assert!(first.succeeded(), "{first}");
    assert_eq!(
        first.totals.executions_by_op["fetch.synthetic"],
        3 * 20 * 2 + 3
    );

    // 2026-02-02 is the next trading day (a Monday).
    let more = compile(&out, "2026-02-02");
    let forecast = Forecast::new(&more, &Store::new(&cache), &Options::default());
    let mut to_fetch: Vec<&str> = more
        .nodes()
        .filter(|(i, n)| {
            n.op == "fetch.synthetic" && forecast.nodes[i.index()].action == Action::Run
        })
        .map(|(_, n)| n.id.as_str())
        .collect();
    to_fetch.sort();
    assert_eq!(
        to_fetch,
        [
            "prices[FPT]@2026-02-02",
            "prices[HPG]@2026-02-02",
            "prices[VNM]@2026-02-02",
            "ticks[FPT]@2026-02-02",
            "ticks[HPG]@2026-02-02",
            "ticks[VNM]@2026-02-02",
        ]
    );
    assert_eq!(to_fetch.len(), 6, "{to_fetch:?}");
    let summary = quiver::cache::summary(&more, &forecast);
    assert!(summary.contains("fetch.synthetic ×6"), "{summary}");
    assert!(
        summary.contains("; fetch.synthetic: 6 of 126 partitions to run; transform.sql: 3 of 63 partitions to run"),
        "{summary}"
    );

    let (forecast, second) = run_cached(&more, &cache, &Options::default());
    assert!(second.succeeded(), "{second}");
    assert_forecast_held(&more, &forecast, &second);
    // What the run says it did is what the plan said it would do.
    assert_eq!(
        quiver::cache::ran(&second),
        summary.replace("to run", "ran")
    );
    assert_eq!(second.totals.executions_by_op["fetch.synthetic"], 6);
    // One new day-local stage per symbol, and what reads the whole range.
    assert_eq!(second.totals.executions_by_op["transform.sql"], 3 + 1);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains(",21,")).count(),
        3,
        "{text}"
    );
}

#[test]
fn the_days_together_are_the_whole_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("check.csv");
    let plan = compile_str(
        Path::new("check.yaml"),
        &format!(
            r#"
pipeline: check
nodes:
  days: {{op: fetch.synthetic, partition_by: date, with: {{dataset: ticks, symbol: VNM, start: 2026-01-07, end: 2026-01-13}}}}
  whole: {{op: fetch.synthetic, with: {{dataset: ticks, symbol: VNM, start: 2026-01-07, end: 2026-01-13}}}}
  check:
    op: transform.sql
    inputs: [days, whole]
    with:
      query: >
        SELECT (SELECT count(*) FROM days) AS n_days, (SELECT count(*) FROM whole) AS n_whole,
               (SELECT count(*) FROM (SELECT * FROM days EXCEPT ALL SELECT * FROM whole)) AS extra,
               (SELECT count(*) FROM (SELECT * FROM whole EXCEPT ALL SELECT * FROM days)) AS lacking
  save: {{op: sink.csv, inputs: [check], with: {{path: "{}"}}}}
"#,
            out.display()
        ),
        &[],
    )
    .unwrap_or_else(|d| panic!("{d}"));
    // 07, 08, 09, 12, 13: five days.
    assert_eq!(
        plan.nodes()
            .filter(|(_, n)| n.id.starts_with("days@"))
            .count(),
        5
    );
    let report = run(&plan);
    assert!(report.succeeded(), "{report}");
    let text = std::fs::read_to_string(&out).unwrap();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(row[0], row[1], "{text}");
    assert!(row[0].parse::<u64>().unwrap() > 1000, "{text}");
    assert_eq!(&row[2..], ["0", "0"], "{text}");
}

#[test]
fn what_cannot_be_partitioned_is_a_diagnostic() {
    let bad = |node: &str| {
        let text = format!(
            "pipeline: bad\nnodes:\n  src: {{op: fetch.synthetic, with: {{dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-09}}}}\n  {node}\n"
        );
        compile_str(Path::new("bad.yaml"), &text, &[])
            .unwrap_err()
            .to_string()
    };
    let e = bad(
        "n: {op: fetch.synthetic, partition_by: hour, with: {dataset: prices, symbol: FPT, start: 2026-01-05, end: 2026-01-09}}",
    );
    assert!(
        e.contains("bad.yaml:4:") && e.contains("nodes.n.partition_by: cannot partition by 'hour'"),
        "{e}"
    );
    let e = bad(
        "n: {op: fetch.synthetic, partition_by: date, with: {dataset: stock_info, symbol: FPT}}",
    );
    assert!(
        e.contains("nodes.n.partition_by: partition_by: date needs the 'start' date"),
        "{e}"
    );
    let e =
        bad("n: {op: transform.sql, partition_by: date, inputs: [src], with: {query: SELECT 1}}");
    assert!(
        e.contains("none of its inputs is partitioned by date"),
        "{e}"
    );
    let e = bad(
        "n: {op: fetch.synthetic, partition_by: date, with: {dataset: prices, symbol: FPT, start: 2026-01-10, end: 2026-01-11}}",
    );
    assert!(
        e.contains("2026-01-10 to 2026-01-11 holds no HOSE trading day"),
        "{e}"
    );
}

#[test]
fn the_pipeline_names_its_calendar_and_may_add_holidays() {
    let days = |calendar: &str, start: &str, end: &str| -> Result<Vec<String>, String> {
        let text = format!(
            "pipeline: cal\n{calendar}\nnodes:\n  p: {{op: fetch.synthetic, partition_by: date, with: {{dataset: prices, symbol: FPT, start: {start}, end: {end}}}}}\n"
        );
        compile_str(Path::new("cal.yaml"), &text, &[])
            .map(|plan| {
                plan.nodes()
                    .filter_map(|(_, n)| n.id.strip_prefix("p@").map(str::to_string))
                    .collect()
            })
            .map_err(|d| d.to_string())
    };
    // HOSE by default: Tết 2026 closes 16 to 20 February.
    assert_eq!(
        days("", "2026-02-13", "2026-02-23").unwrap(),
        ["2026-02-13", "2026-02-23"]
    );
    // NYSE: Good Friday 2026.
    assert_eq!(
        days("calendar: nyse", "2026-04-02", "2026-04-06").unwrap(),
        ["2026-04-02", "2026-04-06"]
    );
    assert_eq!(
        days(
            "calendar: {exchange: hose, holidays: [2027-02-05]}",
            "2027-02-04",
            "2027-02-08"
        )
        .unwrap(),
        ["2027-02-04", "2027-02-08"]
    );
    let e = days("calendar: lse", "2026-04-02", "2026-04-06").unwrap_err();
    assert!(
        e.contains("cal.yaml:2:")
            && e.contains("calendar: unknown exchange 'lse'; the calendars are hose and nyse"),
        "{e}"
    );
}

#[test]
fn a_rolling_stage_reads_its_lookback_and_equals_the_whole_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("check.csv");
    let cache = dir.path().join("cache");
    let text = |end: &str| {
        format!(
            r#"
pipeline: rolling
nodes:
  prices: {{op: fetch.synthetic, partition_by: date, with: {{dataset: prices, symbol: FPT, start: 2026-01-05, end: {end}}}}}
  avg3:
    op: transform.sql
    partition_by: date
    lookback: 2
    inputs: [prices]
    with:
      query: >
        SELECT date, avg(close) OVER (ORDER BY date ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg3
        FROM prices ORDER BY date DESC LIMIT 1
  whole: {{op: fetch.synthetic, with: {{dataset: prices, symbol: FPT, start: 2026-01-05, end: {end}}}}}
  check:
    op: transform.sql
    inputs: [avg3, whole]
    with:
      query: >
        WITH w AS (SELECT date, avg(close) OVER (ORDER BY date ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS avg3
                   FROM whole)
        SELECT count(*) AS days, sum(CASE WHEN a.avg3 = w.avg3 THEN 1 ELSE 0 END) AS equal
        FROM avg3 a JOIN w USING (date)
  save: {{op: sink.csv, inputs: [check], with: {{path: "{}"}}}}
"#,
            out.display()
        )
    };
    let compile = |end: &str| {
        compile_str(Path::new("rolling.yaml"), &text(end), &[]).unwrap_or_else(|d| panic!("{d}"))
    };
    let plan = compile("2026-01-16");
    let (_, report) = run_cached(&plan, &cache, &Options::default());
    assert!(report.succeeded(), "{report}");
    // 10 trading days, each day's average equal to the whole range's.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "days,equal\n10,10\n"
    );

    // One more day: one fetch, one window, one average.
    let more = compile("2026-01-19");
    let (forecast, report) = run_cached(&more, &cache, &Options::default());
    assert_forecast_held(&more, &forecast, &report);
    let ran: Vec<&str> = more
        .nodes()
        .filter(|(i, n)| {
            n.id.contains("2026-01-19") && forecast.nodes[i.index()].action == Action::Run
        })
        .map(|(_, n)| n.id.as_str())
        .collect();
    assert_eq!(
        ran,
        [
            "prices@2026-01-19",
            "prices@2026-01-15..2026-01-19",
            "avg3@2026-01-19"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "days,equal\n11,11\n"
    );

    let e = compile_str(
        Path::new("bad.yaml"),
        "pipeline: bad\nnodes:\n  n: {op: transform.sql, lookback: 3, with: {query: SELECT 1}}\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("nodes.n.lookback: lookback: is the history a date-partitioned stage reads"),
        "{e}"
    );
}

#[test]
fn a_sink_partitioned_by_date_writes_only_the_days_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("daily");
    let cache = dir.path().join("cache");
    let compile = |end: &str| {
        let text = format!(
            r#"
pipeline: sink_days
nodes:
  prices: {{op: fetch.synthetic, partition_by: date, with: {{dataset: prices, symbol: VNM, start: 2026-01-05, end: {end}}}}}
  save:
    op: sink.parquet
    partition_by: date
    inputs: [prices]
    with: {{path: "{}", partition_by: [date]}}
"#,
            out.display()
        );
        compile_str(Path::new("sink_days.yaml"), &text, &[]).unwrap_or_else(|d| panic!("{d}"))
    };
    let plan = compile("2026-01-16");
    let (_, report) = run_cached(&plan, &cache, &Options::default());
    assert!(report.succeeded(), "{report}");
    assert_eq!(report.totals.executions_by_op["sink.parquet"], 10);
    let folders = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(folders(&out).len(), 10);
    assert_eq!(folders(&out)[0], "date=2026-01-05");

    // One more day: one more folder written, the others left alone.
    let more = compile("2026-01-19");
    let (forecast, report) = run_cached(&more, &cache, &Options::default());
    assert_forecast_held(&more, &forecast, &report);
    assert_eq!(report.totals.executions_by_op["sink.parquet"], 1);
    // The other days are up to date; nothing reads the days' summaries
    // together, so their concatenation is not made.
    assert_eq!(report.totals.up_to_date, 10);
    let save = more.find("save").unwrap();
    assert_eq!(forecast.nodes[save.index()].action, Action::AsDays);
    assert_eq!(
        forecast.nodes[save.index()].note.as_deref(),
        Some("nothing reads its days together")
    );
    assert_eq!(folders(&out).len(), 11);

    // A day's folder emptied: that day alone is written again.
    let day = out.join("date=2026-01-08");
    for f in std::fs::read_dir(&day).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let (forecast, report) = run_cached(&more, &cache, &Options::default());
    assert_forecast_held(&more, &forecast, &report);
    assert_eq!(report.totals.executions_by_op["sink.parquet"], 1);
    let save = more.find("save@2026-01-08").unwrap();
    assert!(
        matches!(&forecast.nodes[save.index()].state, State::Stale(w) if w.contains("changed since it was written")),
        "{:?}",
        forecast.nodes[save.index()].state
    );
    assert_eq!(folders(&day).len(), 1);

    let e = compile_str(
        Path::new("bad.yaml"),
        "pipeline: bad\nnodes:\n  p: {op: fetch.synthetic, partition_by: date, with: {dataset: prices, symbol: VNM, start: 2026-01-05, end: 2026-01-09}}\n  s: {op: sink.parquet, partition_by: date, inputs: [p], with: {path: out/x.parquet}}\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("add partition_by: [date] to its with:"), "{e}");
}
