//! Reading files through DataFusion listing tables, shared by `fetch.csv`
//! and `fetch.parquet`: one file, a glob, or a hive-partitioned folder, with
//! a column projection and symbol and time-range filters.
//!
//! The filters are DataFusion expressions over a `ListingTable`, so
//! DataFusion prunes whole partitions by their folder names and, for
//! Parquet, row groups and pages by their statistics. Only the schema is
//! worked out here, from the files that survive partition pruning, so a
//! file in a partition the filters exclude is never opened at all.

use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::helpers::pruned_partition_list;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl, PartitionedFile,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, lit};
use datafusion::physical_plan::{ExecutionPlan, collect_partitioned};
use datafusion::prelude::ident;
use futures::TryStreamExt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::shared::{hive, session};
use crate::{DateRange, ExecContext, OpError, ParamError, Table};

/// What to read and which rows and columns to keep: the parameters
/// `fetch.csv` and `fetch.parquet` share.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct ScanParams {
    /// What to read: one file, a glob (`data/*.parquet`, `data/2024-*.csv.gz`)
    /// or a folder of files of the operator's format (for CSV, its `.csv`
    /// files, or its `.csv.gz` files when it has no `.csv` ones). In a
    /// hive-partitioned folder (`data/symbol=FPT/date=2026-01-05/part-0.parquet`,
    /// as the sinks write with `partition_by`) each `key=value` level becomes
    /// a column: a date when every value is one like 2026-01-05, text
    /// otherwise. Names ending in `.gz` are decompressed with gzip. Relative
    /// paths are resolved against the directory quiver is run from, not the
    /// pipeline file's directory.
    ///
    /// ```yaml
    /// path: data/stocks-daily/stocks.csv.gz
    /// ```
    pub path: String,

    /// The columns to keep, in the order given (partition columns too).
    /// Only these are read. Omit to keep every column. Naming a column the
    /// files do not have fails the run and lists the columns they do have.
    ///
    /// ```yaml
    /// columns: [symbol, ts, close]
    /// ```
    #[serde(default)]
    pub columns: Option<Vec<String>>,

    /// Keep only the rows of these symbols, matched against
    /// `symbol_column`. When that column is a partition folder, the other
    /// symbols' files are not even opened.
    ///
    /// ```yaml
    /// symbols: [FPT, VNM]
    /// ```
    #[serde(default)]
    pub symbols: Option<Vec<String>>,

    /// The column `symbols` is matched against. Defaults to `symbol`.
    ///
    /// ```yaml
    /// symbol_column: ticker
    /// ```
    #[serde(default = "default_symbol_column")]
    pub symbol_column: String,

    /// Keep only rows whose `time_column` is at or after this date or time
    /// (ISO 8601: `2024-01-02` or `2024-01-02T09:15:00`, optionally with an
    /// offset). Without an offset it is read in the column's own time zone.
    /// Partitions entirely outside the range are skipped.
    ///
    /// ```yaml
    /// start: 2026-01-05
    /// ```
    #[serde(default)]
    pub start: Option<String>,

    /// Keep only rows whose `time_column` is before this date or time
    /// (exclusive, so consecutive ranges never overlap: `start: 2026-01-05`,
    /// `end: 2026-01-06` is one day). Same format as `start`.
    ///
    /// ```yaml
    /// end: 2026-01-06T00:00:00+07:00
    /// ```
    #[serde(default)]
    pub end: Option<String>,

    /// The column `start` and `end` apply to: a date, a timestamp, or ISO
    /// text; a partition column such as `date` works too. Defaults to `ts`.
    ///
    /// ```yaml
    /// time_column: date
    /// ```
    #[serde(default = "default_time_column")]
    pub time_column: String,
}

fn default_symbol_column() -> String {
    "symbol".into()
}

fn default_time_column() -> String {
    "ts".into()
}

/// The dates a scan reads, `[start, end)`: what `partition_by: date`
/// splits for `fetch.csv` and `fetch.parquet`.
pub(crate) const SCAN_RANGE: DateRange = DateRange {
    start: "start",
    end: "end",
    end_inclusive: false,
};

/// A scan ready to run: the parameters and the operator reading them.
#[derive(Debug, Clone)]
pub(crate) struct ScanSpec {
    /// The operator's name, for messages.
    pub op: &'static str,
    pub path: String,
    pub columns: Option<Vec<String>>,
    pub symbols: Option<Vec<String>>,
    pub symbol_column: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub time_column: String,
}

impl ScanSpec {
    pub(crate) fn new(op: &'static str, p: ScanParams) -> Self {
        Self {
            op,
            path: p.path,
            columns: p.columns,
            symbols: p.symbols,
            symbol_column: p.symbol_column,
            start: p.start,
            end: p.end,
            time_column: p.time_column,
        }
    }

    /// Checks what the types alone cannot, in field order, reporting the
    /// first problem.
    pub(crate) fn check(&self) -> Result<(), ParamError> {
        if self.path.trim().is_empty() {
            return Err(ParamError::new(
                &["path"],
                "path is empty; name a file, a glob like `data/*.parquet` or a folder",
            ));
        }
        if let Some(columns) = &self.columns {
            check_names("columns", columns, "omit it to keep every column")?;
        }
        if let Some(symbols) = &self.symbols {
            check_names("symbols", symbols, "omit it to keep every symbol")?;
        }
        let parse = |field: &str, text: &Option<String>| match text {
            None => Ok(None),
            Some(text) => string_to_datetime(&Utc, text.trim())
                .map(Some)
                .map_err(|_| {
                    ParamError::new(
                        &[field],
                        format!(
                            "{field} '{text}' is not a date or time; write e.g. `2024-01-02` \
                             or `2024-01-02T09:15:00`"
                        ),
                    )
                }),
        };
        let start = parse("start", &self.start)?;
        let end = parse("end", &self.end)?;
        if let (Some(s), Some(e)) = (start, end)
            && s >= e
        {
            return Err(ParamError::new(
                &["end"],
                format!(
                    "end '{}' is not after start '{}'; the range keeps start <= time < end",
                    self.end.as_deref().unwrap_or_default(),
                    self.start.as_deref().unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    /// Reads the files. Also returns the executed plan, whose metrics tell
    /// what was pruned.
    pub(crate) async fn scan(
        &self,
        exec: &ExecContext,
        format_kind: &dyn ScanFormat,
    ) -> Result<(Table, Arc<dyn ExecutionPlan>), OpError> {
        // Parsing and decoding are CPU work: they run inside the budget.
        let threads = exec.threads(session::MAX_PARTITIONS).await;
        let ctx = session::new_session(exec, threads.count(), session::Purpose::Scan);
        let state = ctx.state();

        let url = ListingTableUrl::parse(&self.path).map_err(|e| {
            OpError::Invalid(format!(
                "{}: path '{}' cannot be read: {}",
                self.op,
                self.path,
                e.strip_backtrace()
            ))
        })?;
        if url.get_glob().is_none() && url.scheme() == "file" {
            // Say plainly that a named file or folder is missing, rather
            // than that it holds no files.
            if let Err(e) = std::fs::metadata(&self.path) {
                return Err(OpError::io(
                    format!("{}: cannot open '{}'", self.op, self.path),
                    e,
                ));
            }
        }
        let (extension, format) = format_kind
            .for_listing(&url, &state)
            .await
            .map_err(|e| self.read_error(e))?;
        let (partitions, files) = self.discover(&state, &url, &format, &extension).await?;
        let file_schema = self
            .file_schema(&state, &url, format_kind, &format, files)
            .await?;
        let options = ListingOptions::new(format)
            .with_file_extension(&extension)
            .with_table_partition_cols(partitions);

        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(file_schema);
        let table = ListingTable::try_new(config).map_err(|e| self.read_error(e))?;
        let mut frame = ctx.read_table(Arc::new(table))?;

        let schema = frame.schema().as_arrow().clone();
        for filter in self.filters(&schema)? {
            frame = frame.filter(filter)?;
        }
        if self.symbols.is_some() {
            self.require_column(&schema, "symbol_column", &self.symbol_column)?;
        }
        if self.start.is_some() || self.end.is_some() {
            self.require_column(&schema, "time_column", &self.time_column)?;
        }
        if let Some(columns) = &self.columns {
            for name in columns {
                self.require_column(&schema, "columns", name)?;
            }
            frame = frame.select(columns.iter().map(ident))?;
        }

        let plan = frame.create_physical_plan().await?;
        // The physical plan's schema is exactly that of its batches.
        let out_schema = plan.schema();
        let batches = collect_partitioned(plan.clone(), ctx.task_ctx())
            .await
            .map_err(|e| self.read_error(e))?
            .into_iter()
            .flatten()
            .collect();
        drop(threads);
        let table = Table::new(out_schema, batches);
        tracing::debug!(
            op = self.op,
            path = %self.path,
            rows = table.num_rows(),
            columns = table.schema().fields().len(),
            "Read files"
        );
        Ok((table, plan))
    }

    /// The partition columns, named by the `key=value` folders and typed by
    /// their values, and the files under `url` that the filters on those
    /// columns keep (all of them when no filter concerns a partition; the
    /// first file when none is kept, for its columns).
    async fn discover(
        &self,
        state: &SessionState,
        url: &ListingTableUrl,
        format: &Arc<dyn FileFormat>,
        extension: &str,
    ) -> Result<(Vec<(String, DataType)>, Vec<PartitionedFile>), OpError> {
        let mut partitions: Vec<(String, DataType)> = Vec::new();
        if url.is_collection() {
            // Reads file names only, never the files.
            let options = ListingOptions::new(format.clone()).with_file_extension(extension);
            partitions = options
                .infer_partitions(state, url)
                .await
                .map_err(|e| self.read_error(e))?
                .into_iter()
                .map(|name| (name, DataType::Utf8))
                .collect();
        }
        let all = list(state, url, &[], extension, &partitions)
            .await
            .map_err(|e| self.read_error(e))?;
        if all.is_empty() {
            let what = match extension.trim_start_matches('.') {
                "" => "files".to_string(),
                ext => format!("{ext} files"),
            };
            return Err(OpError::Source {
                message: format!("{}: no {what} at '{}'", self.op, self.path),
                transient: false,
            });
        }
        for (i, (_, data_type)) in partitions.iter_mut().enumerate() {
            let values = all.iter().filter_map(|f| match &f.partition_values[i] {
                ScalarValue::Utf8(Some(v)) => Some(v.as_str()),
                _ => None,
            });
            *data_type = hive::infer_type(values);
        }

        let partition_schema = Schema::new(
            partitions
                .iter()
                .map(|(n, t)| Field::new(n, t.clone(), true))
                .collect::<Vec<_>>(),
        );
        let partition_filters = self.filters(&partition_schema)?;
        if partition_filters.is_empty() {
            return Ok((partitions, all));
        }
        let kept = list(state, url, &partition_filters, extension, &partitions)
            .await
            .map_err(|e| self.read_error(e))?;
        let files = if kept.is_empty() {
            all.into_iter().take(1).collect()
        } else {
            kept
        };
        Ok((partitions, files))
    }

    /// The columns of `files` (without partition columns).
    async fn file_schema(
        &self,
        state: &SessionState,
        url: &ListingTableUrl,
        kind: &dyn ScanFormat,
        format: &Arc<dyn FileFormat>,
        files: Vec<PartitionedFile>,
    ) -> Result<SchemaRef, OpError> {
        let store = state
            .runtime_env()
            .object_store(url)
            .map_err(|e| self.read_error(e))?;
        let metas: Vec<_> = files.into_iter().map(|f| f.object_meta).collect();
        if !kind.widens_types() {
            return format
                .infer_schema(state, &store, &metas)
                .await
                .map_err(|e| self.read_error(e));
        }
        let mut schemas = Vec::with_capacity(metas.len());
        for meta in &metas {
            let one = format
                .infer_schema(state, &store, std::slice::from_ref(meta))
                .await
                .map_err(|e| self.read_error(e))?;
            schemas.push(one);
        }
        Ok(widened(&schemas))
    }

    /// The symbol and time filters that `schema` has the columns for, with
    /// literals of the columns' own types (the pruning of partitions
    /// evaluates them as they are, without type coercion).
    fn filters(&self, schema: &Schema) -> Result<Vec<Expr>, OpError> {
        let mut filters = Vec::new();
        if let Some(symbols) = &self.symbols
            && let Ok(field) = schema.field_with_name(&self.symbol_column)
        {
            let values = symbols
                .iter()
                .map(|s| self.literal(field, "symbols", s))
                .collect::<Result<Vec<_>, _>>()?;
            filters.push(ident(&self.symbol_column).in_list(values, false));
        }
        if let Ok(field) = schema.field_with_name(&self.time_column) {
            if let Some(start) = &self.start {
                filters.push(ident(&self.time_column).gt_eq(self.literal(field, "start", start)?));
            }
            if let Some(end) = &self.end {
                filters.push(ident(&self.time_column).lt(self.literal(field, "end", end)?));
            }
        }
        Ok(filters)
    }

    /// `text` as a value of `field`'s type: a date or time without an
    /// offset is read in the column's own time zone.
    fn literal(&self, field: &Field, param: &str, text: &str) -> Result<Expr, OpError> {
        ScalarValue::try_from_string(text.trim().to_string(), field.data_type())
            .map(lit)
            .map_err(|_| {
                OpError::Invalid(format!(
                    "{}: {param} value '{text}' cannot be compared with column '{}' of type {}",
                    self.op,
                    field.name(),
                    field.data_type()
                ))
            })
    }

    fn require_column(&self, schema: &Schema, param: &str, name: &str) -> Result<(), OpError> {
        if schema.field_with_name(name).is_ok() {
            return Ok(());
        }
        let available: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Err(OpError::Invalid(format!(
            "{}: {param} names column '{name}', which is not in '{}'; its columns are: {}",
            self.op,
            self.path,
            available.join(", ")
        )))
    }

    /// Files that do not read: the source is at fault, and reading them
    /// again will not help.
    fn read_error(&self, e: DataFusionError) -> OpError {
        OpError::Source {
            message: format!(
                "{}: cannot read '{}': {}",
                self.op,
                self.path,
                e.strip_backtrace()
            ),
            transient: false,
        }
    }
}

/// How one file format takes part in a scan.
#[async_trait::async_trait]
pub(crate) trait ScanFormat: Send + Sync {
    /// The extension that selects data files when listing (empty to take
    /// every file a glob or a single path names) and the DataFusion format
    /// to read them with.
    async fn for_listing(
        &self,
        url: &ListingTableUrl,
        state: &SessionState,
    ) -> Result<(String, Arc<dyn FileFormat>), DataFusionError>;

    /// Whether files whose inferred types disagree are read with a type
    /// that holds them all (CSV, whose types are guesses) rather than
    /// failing (Parquet, whose types are declared).
    fn widens_types(&self) -> bool {
        false
    }
}

/// Files under `url`, with partition values, sorted by path; pruned by
/// `filters` on the partition columns.
async fn list(
    state: &SessionState,
    url: &ListingTableUrl,
    filters: &[Expr],
    extension: &str,
    partitions: &[(String, DataType)],
) -> Result<Vec<PartitionedFile>, DataFusionError> {
    let store = state.runtime_env().object_store(url)?;
    let mut files: Vec<PartitionedFile> = pruned_partition_list(
        state as &dyn Session,
        store.as_ref(),
        url,
        filters,
        extension,
        partitions,
    )
    .await?
    .try_collect()
    .await?;
    files.sort_by(|a, b| a.object_meta.location.cmp(&b.object_meta.location));
    Ok(files)
}

/// The columns of several files' schemas, in order of first appearance,
/// each with a type that holds every file's values: Int64 and Float64 give
/// Float64, a column with no values (Null) takes the other's type, and any
/// other disagreement gives text. A column no file has a value for is text.
fn widened(schemas: &[SchemaRef]) -> SchemaRef {
    let mut fields: Vec<Field> = Vec::new();
    for schema in schemas {
        for field in schema.fields() {
            match fields.iter_mut().find(|f| f.name() == field.name()) {
                None => fields.push(field.as_ref().clone()),
                Some(seen) => {
                    let wide = widen(seen.data_type(), field.data_type());
                    *seen = seen.clone().with_data_type(wide).with_nullable(true);
                }
            }
        }
    }
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|f| match f.data_type() {
            DataType::Null => f.with_data_type(DataType::Utf8).with_nullable(true),
            _ => f,
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn widen(a: &DataType, b: &DataType) -> DataType {
    match (a, b) {
        _ if a == b => a.clone(),
        (DataType::Null, t) | (t, DataType::Null) => t.clone(),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            DataType::Float64
        }
        _ => DataType::Utf8,
    }
}

/// Rejects an empty list and a name listed twice.
fn check_names(field: &str, names: &[String], omit: &str) -> Result<(), ParamError> {
    if names.is_empty() {
        return Err(ParamError::new(
            &[field],
            format!("{field} is an empty list; {omit}"),
        ));
    }
    if let Some(i) = (1..names.len()).find(|&i| names[..i].contains(&names[i])) {
        return Err(ParamError::new(
            &[field, &i.to_string()],
            format!("'{}' is listed twice", names[i]),
        ));
    }
    Ok(())
}

/// Whether `path` (a file, or the pattern of a glob) ends in `.gz`.
pub(crate) fn is_gzip(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".gz")
}
