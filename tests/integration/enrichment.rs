//! `pipelines/enrichment.yaml` against the local market-data API: each
//! source is called once per unique ticker however many items name it,
//! the naive way (`--no-merge`) calls it once per item, and a source that
//! is down degrades its tickers to defaults without failing the cycle.

use std::path::Path;

use quiver::compile::{Options, Override, compile_file_with_options};
use quiver::exec::{NodeStatus, RunOptions, RunReport};
use quiver::operators::arrow::array::{Array, Float64Array, RecordBatch};
use quiver::operators::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use quiver::serve::{ApiConfig, Route, SyntheticApi};

use crate::support::{run_with, start_api as start};

/// Runs the pipeline against `api`; the report and the classified rows.
fn cycle(api: &SyntheticApi, merge: bool) -> (RunReport, RecordBatch) {
    let out = tempfile::tempdir().unwrap();
    let sets = [
        format!("api={}", api.url()),
        format!("out_dir={}", out.path().display()),
    ];
    let overrides: Vec<Override> = sets
        .iter()
        .map(|s| Override::parse_set(s).unwrap())
        .collect();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/enrichment.yaml");
    let plan = compile_file_with_options(
        &pipeline,
        &overrides,
        quiver::operators::registry(),
        Options { merge },
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let report = run_with(&plan, RunOptions::default());
    assert!(report.succeeded(), "{report}");
    let file = std::fs::File::open(out.path().join("classified.parquet")).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let batch =
        quiver::operators::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    (report, batch)
}

#[test]
fn each_source_is_called_once_per_unique_ticker() {
    let (_rt, api) = start(ApiConfig::default());
    let (report, rows) = cycle(&api, true);
    assert_eq!(rows.num_rows(), 120);
    let stats = api.stats();
    for route in ["float", "vwap", "rvol"] {
        assert_eq!(stats.served[route], 50, "{route}: {stats:?}");
    }
    assert_eq!(report.totals.executions_by_op["fetch.http"], 150);
    let by = &report.totals.by_resource;
    assert_eq!((by["float_api"].calls, by["vwap_api"].calls), (50, 50));

    // The naive way asks again for every item, and gets the same rows.
    let (_rt, naive) = start(ApiConfig::default());
    let (_, naive_rows) = cycle(&naive, false);
    assert_eq!(naive.stats().served["float"], 120);
    assert_eq!(naive_rows, rows);
}

#[test]
fn a_source_that_is_down_degrades_to_defaults() {
    let (_rt, api) = start(ApiConfig {
        down: vec![Route::Vwap],
        ..ApiConfig::default()
    });
    let (report, rows) = cycle(&api, true);
    assert_eq!(rows.num_rows(), 120);
    let vwap = rows
        .column_by_name("vwap")
        .unwrap()
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert!((0..vwap.len()).all(|i| vwap.value(i) == 0.0));
    let defaulted = report
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Defaulted)
        .count();
    assert_eq!(defaulted, 50);
    // Three attempts each (retries: 2), all refused.
    assert_eq!(api.stats().failed, 150);
    assert_eq!(report.totals.by_resource["vwap_api"].failed_nodes, 50);
}
