//! `fetch.parquet`: reads Parquet files (one, a glob, or a hive-partitioned
//! folder) into a table, pruning partitions, row groups and pages by the
//! symbol and time filters.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::fingerprint;
use crate::shared::scan::{SCAN_RANGE, ScanFormat, ScanParams, ScanSpec};
use crate::{
    Arity, DateRange, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload,
};

/// Parameters of `fetch.parquet`: what to read, as `fetch.csv` takes it.
/// Parquet files also let the filters skip row groups and pages whose
/// statistics rule them out.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct ParquetParams {
    #[serde(flatten)]
    pub scan: ScanParams,
}

impl OpParams for ParquetParams {
    const NAME: &'static str = "fetch.parquet";
    const DOC: &'static str = "Reads Parquet files into a table: one file, a glob, or a \
        hive-partitioned folder whose key=value folders become columns. Reads only the listed \
        columns; keeps only some symbols and a time range [start, end), skipping partitions, \
        row groups and pages that cannot match. Strings are read as Utf8. Takes no inputs.";
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::None;

    const DATE_RANGE: Option<DateRange> = Some(SCAN_RANGE);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        let spec = ScanSpec::new(Self::NAME, self.scan);
        spec.check()?;
        Ok(Arc::new(ParquetFetch { spec }))
    }
}

/// The runtime `fetch.parquet` operator.
#[derive(Debug)]
struct ParquetFetch {
    spec: ScanSpec,
}

#[async_trait]
impl Operator for ParquetFetch {
    async fn execute(&self, ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        Ok(self.spec.scan(ctx, &ParquetScan).await?.0)
    }

    fn fingerprint(&self) -> Result<Option<String>, OpError> {
        fingerprint::files(&self.spec.path).map(Some)
    }
}

struct ParquetScan;

#[async_trait]
impl ScanFormat for ParquetScan {
    async fn for_listing(
        &self,
        url: &ListingTableUrl,
        _state: &SessionState,
    ) -> Result<(String, Arc<dyn FileFormat>), DataFusionError> {
        // A folder is read as its `.parquet` files; a glob or a file names
        // its files itself.
        let extension = if url.is_collection() && url.get_glob().is_none() {
            ".parquet"
        } else {
            ""
        };
        // Utf8 rather than DataFusion's default Utf8View, so strings have
        // one type whichever fetch operator produced them.
        let format = ParquetFormat::default().with_force_view_types(false);
        Ok((extension.to_string(), Arc::new(format)))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::path::Path;

    use datafusion::arrow::array::{
        ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::physical_plan::metrics::MetricValue;
    use serde_json::json;

    use super::*;
    use crate::{Input, registry};

    fn build(params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError> {
        registry().get(ParquetParams::NAME).unwrap().build(params)
    }

    async fn run(params: serde_json::Value) -> Result<Table, OpError> {
        build(params)
            .unwrap()
            .execute(&crate::ExecContext::standalone(), Inputs::default())
            .await
    }

    /// Runs the scan itself, to see the executed plan's pruning metrics.
    async fn scan(params: serde_json::Value) -> (Table, Arc<dyn ExecutionPlan>) {
        let params: ParquetParams = serde_json::from_value(params).unwrap();
        let spec = ScanSpec::new(ParquetParams::NAME, params.scan);
        spec.scan(&ExecContext::standalone(), &ParquetScan)
            .await
            .unwrap()
    }

    /// How many units the plan's scans pruned by `metric`, e.g.
    /// `row_groups_pruned_statistics`.
    fn pruned(plan: &Arc<dyn ExecutionPlan>, metric: &str) -> usize {
        let own: usize = plan
            .metrics()
            .iter()
            .flat_map(|m| m.iter().cloned().collect::<Vec<_>>())
            .map(|m| match m.value() {
                MetricValue::PruningMetrics {
                    name,
                    pruning_metrics,
                } if name == metric => pruning_metrics.pruned(),
                _ => 0,
            })
            .sum();
        own + plan
            .children()
            .into_iter()
            .map(|c| pruned(c, metric))
            .sum::<usize>()
    }

    fn text(table: &Table) -> String {
        pretty_format_batches(table.batches()).unwrap().to_string()
    }

    /// Ticks: `ts` (naive timestamps), `close`.
    fn ticks(ts: &[&str], close: &[f64]) -> RecordBatch {
        let ts: Vec<i64> = ts
            .iter()
            .map(|t| {
                chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
                    .unwrap()
                    .and_utc()
                    .timestamp_nanos_opt()
                    .unwrap()
            })
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
                Field::new("close", DataType::Float64, false),
            ])),
            vec![
                Arc::new(TimestampNanosecondArray::from(ts)) as ArrayRef,
                Arc::new(Float64Array::from(close.to_vec())),
            ],
        )
        .unwrap()
    }

    fn write(path: &Path, batch: &RecordBatch, row_group_rows: usize) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group_rows))
            .build();
        let mut writer =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
    }

    /// `symbol=…/date=…/part-0.parquet` with two ticks each, and a corrupt
    /// file in `symbol=VNM/date=2026-01-05` that fails any read that opens it.
    fn hive_folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("symbol=FPT/date=2026-01-05/part-0.parquet"),
            &ticks(&["2026-01-05T09:15:00", "2026-01-05T09:16:00"], &[1.0, 2.0]),
            1024,
        );
        write(
            &dir.path().join("symbol=FPT/date=2026-01-06/part-0.parquet"),
            &ticks(&["2026-01-06T09:15:00", "2026-01-06T09:16:00"], &[3.0, 4.0]),
            1024,
        );
        fs::create_dir_all(dir.path().join("symbol=VNM/date=2026-01-05")).unwrap();
        fs::write(
            dir.path().join("symbol=VNM/date=2026-01-05/part-0.parquet"),
            "not parquet at all",
        )
        .unwrap();
        dir
    }

    #[tokio::test]
    async fn a_hive_folder_prunes_partitions_without_opening_them() {
        let dir = hive_folder();

        // Reading everything opens the corrupt file and fails …
        let err = run(json!({ "path": dir.path() })).await.unwrap_err();
        assert!(
            matches!(
                &err,
                OpError::Source {
                    transient: false,
                    ..
                }
            ),
            "{err:?}"
        );

        // … so these succeed only because its partition is never opened.
        let table = run(json!({ "path": dir.path(), "symbols": ["FPT"] }))
            .await
            .unwrap();
        assert_eq!(
            text(&table),
            "\
+---------------------+-------+--------+------------+
| ts                  | close | symbol | date       |
+---------------------+-------+--------+------------+
| 2026-01-05T09:15:00 | 1.0   | FPT    | 2026-01-05 |
| 2026-01-05T09:16:00 | 2.0   | FPT    | 2026-01-05 |
| 2026-01-06T09:15:00 | 3.0   | FPT    | 2026-01-06 |
| 2026-01-06T09:16:00 | 4.0   | FPT    | 2026-01-06 |
+---------------------+-------+--------+------------+"
        );
        let schema = table.schema();
        assert_eq!(schema.field(2).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(3).data_type(), &DataType::Date32);

        let table = run(json!({
            "path": dir.path(),
            "time_column": "date",
            "start": "2026-01-06",
            "columns": ["symbol", "close"],
        }))
        .await
        .unwrap();
        assert_eq!(
            text(&table),
            "\
+--------+-------+
| symbol | close |
+--------+-------+
| FPT    | 3.0   |
| FPT    | 4.0   |
+--------+-------+"
        );
    }

    #[tokio::test]
    async fn a_time_range_skips_row_groups_by_their_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ticks.parquet");
        let times: Vec<String> = (0..40)
            .map(|m| format!("2026-01-05T09:{:02}:00", 15 + m))
            .collect();
        let times: Vec<&str> = times.iter().map(String::as_str).collect();
        let close: Vec<f64> = (0..40).map(f64::from).collect();
        // Four row groups of ten minutes each.
        write(&path, &ticks(&times, &close), 10);

        let (table, plan) = scan(json!({
            "path": path,
            "start": "2026-01-05T09:30:00",
            "end": "2026-01-05T09:33:00",
        }))
        .await;

        assert_eq!(
            text(&table),
            "\
+---------------------+-------+
| ts                  | close |
+---------------------+-------+
| 2026-01-05T09:30:00 | 15.0  |
| 2026-01-05T09:31:00 | 16.0  |
| 2026-01-05T09:32:00 | 17.0  |
+---------------------+-------+"
        );
        assert_eq!(pruned(&plan, "row_groups_pruned_statistics"), 3);
    }

    #[tokio::test]
    async fn a_glob_reads_the_matching_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("b.parquet"),
            &ticks(&["2026-01-06T09:15:00"], &[2.0]),
            1024,
        );
        write(
            &dir.path().join("a.parquet"),
            &ticks(&["2026-01-05T09:15:00"], &[1.0]),
            1024,
        );
        fs::write(dir.path().join("notes.txt"), "not data").unwrap();

        let table = run(json!({
            "path": format!("{}/*.parquet", dir.path().display()),
            "columns": ["close"],
        }))
        .await
        .unwrap();

        assert_eq!(
            text(&table),
            "\
+-------+
| close |
+-------+
| 1.0   |
| 2.0   |
+-------+"
        );
    }

    #[tokio::test]
    async fn roundtrips_a_partitioned_sink() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Date32, false),
            Field::new("symbol", DataType::Utf8, false),
            Field::new("close", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Date32Array::from(vec![20458, 20459, 20458])),
                Arc::new(StringArray::from(vec!["VNM", "FPT", "FPT"])),
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0])),
            ],
        )
        .unwrap();
        registry()
            .get("sink.parquet")
            .unwrap()
            .build(json!({ "path": dir.path(), "partition_by": ["date", "symbol"] }))
            .unwrap()
            .execute(
                &crate::ExecContext::standalone(),
                Inputs(vec![Input {
                    name: "bars".into(),
                    table: Arc::new(Table::from_batch(batch)),
                }]),
            )
            .await
            .unwrap();

        let table = run(json!({
            "path": dir.path(),
            "columns": ["date", "symbol", "close"],
        }))
        .await
        .unwrap();

        // Partitions come back in folder-name order.
        assert_eq!(
            text(&table),
            "\
+------------+--------+-------+
| date       | symbol | close |
+------------+--------+-------+
| 2026-01-05 | FPT    | 3.0   |
| 2026-01-05 | VNM    | 1.0   |
| 2026-01-06 | FPT    | 2.0   |
+------------+--------+-------+"
        );
        assert_eq!(table.schema().field(0).data_type(), &DataType::Date32);
    }

    #[tokio::test]
    async fn missing_files_and_columns_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(json!({ "path": dir.path().join("nope.parquet") }))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OpError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );

        let err = run(json!({ "path": format!("{}/*.parquet", dir.path().display()) }))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no files at"), "{err}");

        write(
            &dir.path().join("a.parquet"),
            &ticks(&["2026-01-05T09:15:00"], &[1.0]),
            1024,
        );
        let err = run(json!({ "path": dir.path(), "columns": ["ts", "clsoe"] }))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OpError::Invalid(m) if m.contains("'clsoe'") && m.contains("ts, close")),
            "{err:?}"
        );
        let err = run(json!({ "path": dir.path(), "symbols": ["FPT"] }))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OpError::Invalid(m) if m.contains("symbol_column") && m.contains("'symbol'")),
            "{err:?}"
        );
    }

    #[test]
    fn params_are_checked_at_build_time() {
        for (bad, path) in [
            (json!({ "path": "" }), vec!["path"]),
            (json!({ "path": "x", "columns": [] }), vec!["columns"]),
            (
                json!({ "path": "x", "symbols": ["A", "A"] }),
                vec!["symbols", "1"],
            ),
            (json!({ "path": "x", "start": "yesterday" }), vec!["start"]),
            (
                json!({ "path": "x", "start": "2026-01-06", "end": "2026-01-05" }),
                vec!["end"],
            ),
        ] {
            let err = build(bad.clone()).unwrap_err();
            assert_eq!(err.path, path, "{bad}: {err}");
        }
        let err = build(json!({ "path": "x", "symbol": ["A"] })).unwrap_err();
        assert!(err.message.contains("unknown field `symbol`"), "{err}");
        assert!(build(json!({ "path": "x", "start": "2026-01-05T09:15:00+07:00" })).is_ok());
    }
}
