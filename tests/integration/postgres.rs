//! `sink.postgres` and `fetch.postgres` against a real PostgreSQL server
//! (Debian's, a cluster of each test's own; the README's test command
//! installs the package): every write mode, last-wins upserts, a failure
//! leaving the table as it was, types both ways checked against values
//! the server itself parsed from SQL literals, bound parameters, one pool
//! per resource, and a server restarted in the middle of a run.

use std::path::Path;
use std::time::Duration;

use quiver::exec::RunOptions;
use quiver::serve::ApiConfig;

use crate::bench_support::postgres::Postgres;
use crate::support::{Redis, compile, run, run_with, start_api};

/// A pipeline whose `rows` node yields `values` (SQL rows of symbol, ts,
/// close) and whose `save` node writes them into `table` with `with`.
fn writer(url: &str, table: &str, values: &str, with: &str) -> String {
    format!(
        r#"
pipeline: pg
resources:
  db: {{concurrency: 2}}
nodes:
  rows:
    op: transform.sql
    with:
      query: >
        SELECT column1 AS symbol, CAST(column2 AS BIGINT) AS ts, column3 AS close
        FROM (VALUES {values})
  save:
    op: sink.postgres
    resource: db
    inputs: [rows]
    with: {{url: "{url}", table: {table}, {with}}}
"#
    )
}

/// The error of the run's one failed node.
fn failure(report: &quiver::exec::RunReport) -> String {
    let failed: Vec<_> = report.failures().collect();
    assert_eq!(failed.len(), 1, "{report}");
    failed[0].error_message().unwrap_or_default().to_string()
}

fn write(url: &str, table: &str, values: &str, with: &str) -> quiver::exec::RunReport {
    run(&compile(&writer(url, table, values, with)))
}

#[test]
fn upserts_update_existing_keys_and_the_last_duplicate_wins() {
    let pg = Postgres::start();
    let url = pg.database("upsert");
    let upsert = "mode: upsert, key: [symbol, ts], create: true";
    let report = write(
        &url,
        "bars",
        "('A', 1, 1.0), ('A', 1, 2.0), ('B', 1, 3.0), ('A', 2, 4.0)",
        upsert,
    );
    assert!(report.succeeded(), "{report}");
    let table = "SELECT symbol, ts, close FROM bars ORDER BY symbol, ts";
    assert_eq!(pg.psql("upsert", table), "A|1|2\nA|2|4\nB|1|3");

    let report = write(&url, "bars", "('A', 1, 5.0), ('C', 1, 6.0)", upsert);
    assert!(report.succeeded(), "{report}");
    assert_eq!(pg.psql("upsert", table), "A|1|5\nA|2|4\nB|1|3\nC|1|6");
    // The table was made with the input's types and the key as primary key.
    let columns = "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                   WHERE table_name = 'bars' ORDER BY ordinal_position";
    assert_eq!(
        pg.psql("upsert", columns),
        "symbol|text|NO\nts|bigint|NO\nclose|double precision|YES"
    );
}

#[test]
fn append_adds_and_replace_swaps_and_a_failure_leaves_the_table_as_it_was() {
    let pg = Postgres::start();
    let url = pg.database("modes");
    pg.psql(
        "modes",
        "CREATE TABLE bars (symbol text PRIMARY KEY, ts int8 NOT NULL, close float8)",
    );
    let count = "SELECT string_agg(symbol || ':' || close, ',' ORDER BY symbol) FROM bars";

    let report = write(&url, "bars", "('A', 1, 1.5), ('B', 1, 2.5)", "mode: append");
    assert!(report.succeeded(), "{report}");
    assert_eq!(pg.psql("modes", count), "A:1.5,B:2.5");

    // A duplicate key fails the whole append: nothing of it lands.
    let report = write(&url, "bars", "('C', 1, 3.5), ('A', 1, 9.9)", "mode: append");
    assert!(!report.succeeded());
    let error = failure(&report);
    assert!(
        error.contains("duplicate key") && error.contains("23505"),
        "{error}"
    );
    assert_eq!(pg.psql("modes", count), "A:1.5,B:2.5");

    let report = write(&url, "bars", "('D', 1, 4.5)", "mode: replace");
    assert!(report.succeeded(), "{report}");
    assert_eq!(pg.psql("modes", count), "D:4.5");

    // A replace that fails half-way (a null key) keeps the old rows.
    let report = write(
        &url,
        "bars",
        "('E', 1, 1.0), (NULL, 1, 2.0)",
        "mode: replace",
    );
    assert!(!report.succeeded());
    assert_eq!(pg.psql("modes", count), "D:4.5");

    // A table without a unique key, whose types differ from the input's
    // (int4, numeric): upserts match keys by value and cast.
    pg.psql(
        "modes",
        "CREATE TABLE loose (symbol text, ts int4, close numeric)",
    );
    let loose = |values: &str| write(&url, "loose", values, "mode: upsert, key: [symbol, ts]");
    assert!(loose("('A', 1, 1.25)").succeeded());
    assert!(loose("('A', 1, 2.5), ('B', 1, 3.0)").succeeded());
    assert_eq!(
        pg.psql(
            "modes",
            "SELECT symbol, ts, close FROM loose ORDER BY symbol"
        ),
        "A|1|2.5\nB|1|3"
    );

    // An input column the table lacks is named.
    pg.psql("modes", "CREATE TABLE narrow (symbol text, ts int8)");
    let report = write(&url, "narrow", "('A', 1, 1.0)", "mode: append");
    let error = failure(&report);
    assert!(error.contains("'close' is not in table narrow"), "{error}");

    // A missing table without create: says so, whatever the mode.
    for mode in [
        "mode: append",
        "mode: upsert, key: [symbol]",
        "mode: replace",
    ] {
        let report = write(&url, "nope", "('A', 1, 1.0)", mode);
        let error = failure(&report);
        assert!(
            error.contains("table nope does not exist") && error.contains("create: true"),
            "{mode}: {error}"
        );
    }
}

#[test]
fn fetch_reads_every_type_as_the_server_parsed_it_with_bound_parameters() {
    let pg = Postgres::start();
    let url = pg.database("types");
    pg.psql(
        "types",
        "CREATE TABLE t (i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric, \
         s text, v varchar(8), b bool, d date, ts timestamp, tz timestamptz, j jsonb, \
         u uuid, by bytea);
         INSERT INTO t VALUES
           (-2, 40000, 9007199254740993, 1.5, 0.1, 12345.678, 'VNM', 'x''y', true,
            '2026-01-05', '2026-01-05 09:15:00.25', '2026-01-05 09:15:00+07',
            '{\"a\": 1}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff'),
           (NULL, NULL, NULL, NULL, NULL, -0.0001, 'FPT', NULL, false, NULL, NULL, NULL,
            NULL, NULL, NULL)",
    );
    let out = tempfile::tempdir().unwrap();
    let csv = out.path().join("t.csv");
    let yaml = format!(
        r#"
pipeline: fetch
params:
  symbol: {{type: string, default: VNM}}
nodes:
  read:
    op: fetch.postgres
    with:
      url: "{url}"
      query: SELECT * FROM t WHERE s = $1 OR $2 ORDER BY s DESC
      params: ["${{symbol}}", false]
  save:
    op: sink.csv
    inputs: [read]
    with: {{path: "{}"}}
"#,
        csv.display()
    );
    let report = run(&compile(&yaml));
    assert!(report.succeeded(), "{report}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "i2,i4,i8,f4,f8,n,s,v,b,d,ts,tz,j,u,by"
    );
    assert_eq!(
        lines.next().unwrap(),
        "-2,40000,9007199254740993,1.5,0.1,12345.678,VNM,x'y,true,2026-01-05,\
         2026-01-05T09:15:00.250,2026-01-05T02:15:00Z,\"{\"\"a\"\": 1}\",\
         a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,00ff"
    );
    assert_eq!(lines.next(), None, "only VNM's row: {text}");

    // `OR $2` true: every row, the NULLs as empty fields.
    let all = yaml.replace(
        "params: [\"${symbol}\", false]",
        "params: [\"${symbol}\", true]",
    );
    let report = run(&compile(&all));
    assert!(report.succeeded(), "{report}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        text.lines().nth(2).unwrap(),
        ",,,,,-0.0001,FPT,,false,,,,,,"
    );

    // A value that would be SQL if spliced is only ever a value.
    let hostile = yaml.replace("default: VNM", "default: \"x' OR 'a'='a\"");
    let report = run(&compile(&hostile));
    assert!(report.succeeded(), "{report}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().count(), 1, "the header alone: {text}");

    // Wrong parameter count and unbindable values are the pipeline's fault.
    let short = yaml.replace("params: [\"${symbol}\", false]", "params: [VNM]");
    let report = run(&compile(&short));
    let error = failure(&report);
    assert!(
        error.contains("uses 2 parameters") && error.contains("gives 1"),
        "{error}"
    );
    let bad = yaml.replace("params: [\"${symbol}\", false]", "params: [VNM, maybe]");
    let error = failure(&run(&compile(&bad)));
    assert!(
        error.contains("params[1]") && error.contains("true or false"),
        "{error}"
    );
}

#[test]
fn a_query_with_interpolated_values_is_refused_before_running() {
    let yaml = r#"
pipeline: splice
params:
  symbol: {type: string, default: VNM}
nodes:
  read:
    op: fetch.postgres
    with:
      url: postgres://127.0.0.1:1/x
      query: SELECT * FROM t WHERE s = '${symbol}'
"#;
    let diags = quiver::compile::compile_str(Path::new("splice.yaml"), yaml, &[]).unwrap_err();
    let text = diags.to_string();
    assert!(text.contains("splice.yaml:10"), "{text}");
    assert!(
        text.contains("nodes.read.with.query") && text.contains("params:"),
        "{text}"
    );
}

/// A pipeline whose `rows` node runs `query` and whose `n` sinks write its
/// rows to tables t0, t1, … with `with` (besides the table), under the
/// resource `db` set up as `resource`.
fn sinks(resource: &str, query: &str, with: &str, n: usize) -> String {
    let mut yaml = format!(
        "pipeline: sinks\nresources:\n  db: {resource}\nnodes:\n  rows:\n    op: transform.sql\n    \
         with: {{query: \"{query}\"}}\n"
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  save{i}:\n    op: sink.postgres\n    resource: db\n    inputs: [rows]\n    \
             with: {{table: t{i}, {with}}}\n"
        ));
    }
    yaml
}

#[test]
fn nodes_of_one_resource_share_its_pool_of_connections() {
    let pg = Postgres::start();
    let url = pg.database("pool");
    // Twelve sinks under a resource of concurrency 3, each into its own table.
    let yaml = sinks(
        "{concurrency: 3}",
        "SELECT 1 AS k, 2.5 AS v",
        &format!("url: \"{url}\", create: true"),
        12,
    );
    let report = run(&compile(&yaml));
    assert!(report.succeeded(), "{report}");
    for i in 0..12 {
        assert_eq!(pg.psql("pool", &format!("SELECT k, v FROM t{i}")), "1|2.5");
    }
    let opened = pg.connections_opened("quiver");
    assert!(
        (1..=3).contains(&opened),
        "{opened} connections for 12 sinks"
    );
}

#[test]
fn a_server_restarted_mid_run_is_retried_with_no_row_lost_or_doubled() {
    let pg = Postgres::start();
    let url = pg.database("restart");
    // 16 upserts of 50,000 rows each, two at a time, retried on failure.
    let yaml = sinks(
        "{concurrency: 2, retries: {max_attempts: 8, backoff: 200ms}}",
        "SELECT CAST(value AS BIGINT) AS k, CAST(value AS DOUBLE) * 0.5 AS v \
         FROM generate_series(1, 50000)",
        &format!("url: \"{url}\", mode: upsert, key: [k], create: true"),
        16,
    );
    let plan = compile(&yaml);
    let run = std::thread::spawn(move || run_with(&plan, RunOptions::default()));
    // Restart once some tables are written and others are not.
    let started = std::time::Instant::now();
    loop {
        let written = pg.psql(
            "restart",
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 't%'",
        );
        if written.parse::<u32>().unwrap() >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no table was written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    pg.ctl("restart");
    let report = run.join().unwrap();
    assert!(report.succeeded(), "{report}");
    assert!(
        report.totals.retries > 0,
        "the restart should have failed an attempt: {report}"
    );
    for i in 0..16 {
        assert_eq!(
            pg.psql(
                "restart",
                &format!("SELECT count(*), count(DISTINCT k), sum(v) FROM t{i}")
            ),
            "50000|50000|625012500",
            "t{i}"
        );
    }
}

/// `quiver run pipelines/ingest.yaml` against the local API, Redis and
/// Postgres (the database URL in the environment, as a user runs it), for
/// the first three weeks of January, without the cache so that every node
/// runs; what it printed.
fn ingest(api: &quiver::serve::SyntheticApi, redis: &str, url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/ingest.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .arg("run")
        .arg(&pipeline)
        .args(["--no-cache", "--set", &format!("api={}", api.url())])
        .args([
            "--set",
            &format!("redis={redis}"),
            "--set",
            "end=2026-01-23",
        ])
        .env("DATABASE_URL", url)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    printed
}

#[test]
fn ingest_upserts_every_symbols_bars_and_a_rerun_changes_nothing_but_what_was_wrong() {
    let pg = Postgres::start();
    let url = pg.database("platform");
    let redis = Redis::start();
    let (_rt, api) = start_api(ApiConfig::default());

    let printed = ingest(&api, &redis.url(), &url);
    assert!(
        !printed.contains("keeps the rate alone"),
        "Redis is up: {printed}"
    );
    assert_eq!(api.stats().served["bars"], 30, "one call per symbol");
    let summary = "SELECT count(*), count(DISTINCT symbol), count(DISTINCT (symbol, date)), \
                   min(date), max(date), sum(volume) FROM daily_bars";
    let first = pg.psql("platform", summary);
    // 30 symbols x 15 sessions (5-23 January, weekdays).
    assert!(
        first.starts_with("450|30|450|2026-01-05|2026-01-23|"),
        "{first}"
    );

    // A bar damaged in the table is put right by the next run; nothing doubles.
    pg.psql(
        "platform",
        "UPDATE daily_bars SET close = -1 WHERE symbol = 'FPT' AND date = '2026-01-07'",
    );
    ingest(&api, &redis.url(), &url);
    assert_eq!(api.stats().served["bars"], 60);
    assert_eq!(pg.psql("platform", summary), first);
    assert_eq!(
        pg.psql(
            "platform",
            "SELECT count(*) FROM daily_bars WHERE close <= 0"
        ),
        "0"
    );
}

#[test]
fn the_database_password_appears_in_no_plan_log_report_or_error() {
    let pg = Postgres::start();
    pg.database("hidden");
    let password = "Tr0ub4dor-and-3";
    let url = format!("postgres://quiver:{password}@127.0.0.1:{}/hidden", pg.port);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "pipeline: hidden\nnodes:\n  rows:\n    op: transform.sql\n    with: {query: \"SELECT 1 AS k\"}\n  \
         save:\n    op: sink.postgres\n    inputs: [rows]\n    with: {url: \"${env:DATABASE_URL}\", table: missing}\n",
    )
    .unwrap();
    let quiver = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
            .args(args)
            .env("DATABASE_URL", &url)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let mut seen = String::new();
    for format in ["text", "json", "dot", "html"] {
        let out = quiver(&["plan", "p.yaml", "--format", format]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let out = quiver(&[
        "run",
        "p.yaml",
        "-vv",
        "--no-cache",
        "--report",
        "report.json",
    ]);
    assert_eq!(out.status.code(), Some(1), "the table is missing");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("postgres://quiver@127.0.0.1"),
        "{stderr}"
    );
    seen.push_str(&stderr);
    seen.push_str(&String::from_utf8_lossy(&out.stdout));
    seen.push_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap());
    assert!(!seen.contains(password), "the password leaked:\n{seen}");
}

#[test]
fn a_result_larger_than_the_runs_memory_limit_fails_naming_the_limit() {
    let pg = Postgres::start();
    let url = pg.database("big");
    let yaml = format!(
        "pipeline: big\nnodes:\n  read:\n    op: fetch.postgres\n    with:\n      url: \"{url}\"\n      query: SELECT g AS n, repeat('x', 100) AS pad FROM generate_series(1, $1::int) g\n      params: [200000]\n"
    );
    let plan = compile(&yaml);
    let limited = RunOptions {
        memory_limit: Some(4 << 20),
        ..RunOptions::default()
    };
    let report = run_with(&plan, limited);
    let error = failure(&report);
    assert!(error.contains("--memory-limit"), "{error}");
    // Within the limit, the same query reads every row.
    let report = run_with(&plan, RunOptions::default());
    assert!(report.succeeded(), "{report}");
}
