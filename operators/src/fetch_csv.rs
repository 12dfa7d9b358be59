//! `fetch.csv`: reads one CSV file, optionally gzip-compressed, into a table.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::csv::ReaderBuilder;
use datafusion::arrow::csv::reader::Format;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::error::ArrowError;
use flate2::read::MultiGzDecoder;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::registry::OpParams;
use crate::{Inputs, OpError, Operator, ParamError, Table, Workload};

/// Rows per output batch: large enough that per-batch overhead vanishes,
/// small enough that one batch of a wide file stays a few megabytes.
const BATCH_ROWS: usize = 8192;

/// Parameters of `fetch.csv`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvParams {
    /// The CSV file to read. A path ending in `.gz` is decompressed with
    /// gzip. Relative paths are resolved against the directory quiver is run
    /// from, not the pipeline file's directory.
    ///
    /// ```yaml
    /// path: data/stocks-daily/stocks.csv.gz
    /// ```
    pub path: String,

    /// The columns to keep, in the order given. Omit to keep every column
    /// in file order. Naming a column the file does not have fails the run
    /// and lists the columns it does have.
    ///
    /// ```yaml
    /// columns: [Ticker, Date, Close]
    /// ```
    #[serde(default)]
    pub columns: Option<Vec<String>>,

    /// The field separator: one ASCII character. Defaults to a comma.
    ///
    /// ```yaml
    /// delimiter: ";"
    /// ```
    #[serde(default = "default_delimiter")]
    pub delimiter: char,

    /// Whether the first line holds the column names. When false the columns
    /// are named `column_1`, `column_2`, … Defaults to true.
    ///
    /// ```yaml
    /// has_header: false
    /// ```
    #[serde(default = "default_true")]
    pub has_header: bool,
}

fn default_delimiter() -> char {
    ','
}

fn default_true() -> bool {
    true
}

impl OpParams for CsvParams {
    const NAME: &'static str = "fetch.csv";
    const DOC: &'static str = "Reads one CSV file (gzip-compressed when the path ends in .gz) into \
        a table. Column types are inferred from every row of the file: whole numbers become \
        Int64, other numbers Float64, true/false Boolean, dates like 2000-03-01 Date32, ISO \
        timestamps like 2000-03-01T09:30:00 Timestamp (no time zone), and anything else Utf8. \
        Empty fields are null. Takes no inputs.";
    const WORKLOAD: Workload = Workload::Io;

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        // `ParamError` carries one path, so this reports the first problem,
        // checking fields in the order they are declared.
        if self.path.trim().is_empty() {
            return Err(ParamError::new(
                &["path"],
                "path is empty; name the CSV file to read, e.g. `path: data/prices.csv.gz`",
            ));
        }
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                return Err(ParamError::new(
                    &["columns"],
                    "columns is an empty list; omit it to keep every column",
                ));
            }
            if let Some(i) = (1..columns.len()).find(|&i| columns[..i].contains(&columns[i])) {
                return Err(ParamError::new(
                    &["columns", &i.to_string()],
                    format!("column '{}' is listed twice", columns[i]),
                ));
            }
        }
        let delimiter = match u8::try_from(self.delimiter) {
            Ok(b) if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => b,
            _ => {
                return Err(ParamError::new(
                    &["delimiter"],
                    format!(
                        "delimiter {:?} cannot separate fields; use one ASCII character \
                         other than a quote or a line break, e.g. `delimiter: \";\"`",
                        self.delimiter
                    ),
                ));
            }
        };
        Ok(Arc::new(CsvFetch {
            path: PathBuf::from(self.path),
            columns: self.columns,
            delimiter,
            has_header: self.has_header,
        }))
    }
}

/// The runtime `fetch.csv` operator.
#[derive(Debug, Clone)]
struct CsvFetch {
    path: PathBuf,
    columns: Option<Vec<String>>,
    delimiter: u8,
    has_header: bool,
}

#[async_trait]
impl Operator for CsvFetch {
    async fn execute(&self, _inputs: Inputs) -> Result<Table, OpError> {
        let op = self.clone();
        // Decompressing and parsing are blocking work; keep them off the
        // async threads.
        tokio::task::spawn_blocking(move || op.read())
            .await
            .map_err(|e| OpError::Internal(format!("fetch.csv reader task failed: {e}")))?
    }
}

impl CsvFetch {
    fn read(&self) -> Result<Table, OpError> {
        let format = Format::default()
            .with_header(self.has_header)
            .with_delimiter(self.delimiter);

        // Two passes over the file, one to infer types from every row and one
        // to parse, rather than holding the decompressed text in memory: a
        // sample could guess Int64 for a column whose later rows are floats.
        let (schema, _) = format
            .infer_schema(self.open()?, None)
            .map_err(|e| self.malformed(e))?;
        let schema = Arc::new(schema);

        let mut builder = ReaderBuilder::new(schema.clone())
            .with_format(format)
            .with_batch_size(BATCH_ROWS);
        if let Some(columns) = &self.columns {
            builder = builder.with_projection(self.projection(columns, &schema)?);
        }
        let reader = builder.build(self.open()?).map_err(|e| self.malformed(e))?;
        let out_schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.malformed(e))?;

        let table = Table::new(out_schema, batches);
        tracing::debug!(
            path = %self.path.display(),
            rows = table.num_rows(),
            columns = table.schema().fields().len(),
            "Read CSV file"
        );
        Ok(table)
    }

    /// The file's bytes, decompressed when the name ends in `.gz`.
    fn open(&self) -> Result<Box<dyn Read + Send>, OpError> {
        let file = File::open(&self.path).map_err(|e| {
            OpError::io(
                format!("fetch.csv: cannot open '{}'", self.path.display()),
                e,
            )
        })?;
        if is_gzip(&self.path) {
            // Multi-member, so files written by bgzip or by concatenating
            // gzip files are read to the end rather than to the first member.
            Ok(Box::new(MultiGzDecoder::new(file)))
        } else {
            Ok(Box::new(file))
        }
    }

    /// Indexes of `columns` in `schema`, or an error naming the first unknown one.
    fn projection(&self, columns: &[String], schema: &Schema) -> Result<Vec<usize>, OpError> {
        columns
            .iter()
            .map(|name| {
                schema.index_of(name).map_err(|_| {
                    let available: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    OpError::Invalid(format!(
                        "fetch.csv: column '{name}' is not in '{}'; its columns are: {}",
                        self.path.display(),
                        available.join(", ")
                    ))
                })
            })
            .collect()
    }

    /// A file that opened but does not parse: the source is at fault, and
    /// reading it again will not help.
    fn malformed(&self, e: ArrowError) -> OpError {
        OpError::Source {
            message: format!("fetch.csv: cannot read '{}': {e}", self.path.display()),
            transient: false,
        }
    }
}

fn is_gzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("gz"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::util::display::array_value_to_string;
    use serde_json::json;

    use super::*;
    use crate::registry;

    /// The shared daily-stocks sample; override with `QUIVER_STOCKS_CSV`.
    fn stocks_path() -> String {
        std::env::var("QUIVER_STOCKS_CSV").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/data/stocks-daily/stocks.csv.gz"
            )
            .to_string()
        })
    }

    fn build(params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError> {
        registry().get(CsvParams::NAME).unwrap().build(params)
    }

    async fn run(params: serde_json::Value) -> Result<Table, OpError> {
        build(params).unwrap().execute(Inputs::default()).await
    }

    fn cell(table: &Table, column: &str, row: usize) -> String {
        let batch = table.concat().unwrap();
        let col = batch.column_by_name(column).unwrap();
        array_value_to_string(col, row).unwrap()
    }

    fn column_names(table: &Table) -> Vec<String> {
        table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[tokio::test]
    async fn reads_the_gzipped_stocks_file() {
        let table = run(json!({ "path": stocks_path() })).await.unwrap();

        assert_eq!(table.num_rows(), 12154);
        assert_eq!(
            column_names(&table),
            [
                "Ticker",
                "Date",
                "Open",
                "High",
                "Low",
                "Close",
                "Volume",
                "Adj Close"
            ]
        );
        let schema = table.schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Date32);
        assert_eq!(schema.field(5).data_type(), &DataType::Float64);
        assert_eq!(schema.field(6).data_type(), &DataType::Int64);

        assert_eq!(cell(&table, "Ticker", 0), "AAPL");
        assert_eq!(cell(&table, "Date", 0), "2000-03-01");
        assert_eq!(cell(&table, "Open", 0), "118.56");
        assert_eq!(cell(&table, "Close", 0), "130.31");
        assert_eq!(cell(&table, "Volume", 0), "9616100");
        assert_eq!(cell(&table, "Adj Close", 0), "4.186662803811");
    }

    #[tokio::test]
    async fn keeps_the_listed_columns_in_the_listed_order() {
        let table = run(json!({
            "path": stocks_path(),
            "columns": ["Close", "Ticker", "Date"],
        }))
        .await
        .unwrap();

        assert_eq!(column_names(&table), ["Close", "Ticker", "Date"]);
        assert_eq!(table.num_rows(), 12154);
        assert_eq!(cell(&table, "Close", 0), "130.31");
        assert_eq!(cell(&table, "Ticker", 0), "AAPL");
    }

    #[tokio::test]
    async fn an_unknown_column_names_it_and_lists_the_available_ones() {
        let err = run(json!({ "path": stocks_path(), "columns": ["Date", "Clsoe"] }))
            .await
            .unwrap_err();

        let OpError::Invalid(message) = &err else {
            panic!("expected OpError::Invalid, got {err:?}");
        };
        assert!(message.contains("column 'Clsoe'"), "{message}");
        assert!(
            message.contains("Ticker, Date, Open, High, Low, Close, Volume, Adj Close"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_missing_file_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.csv");
        let err = run(json!({ "path": path })).await.unwrap_err();

        let OpError::Io { context, source } = &err else {
            panic!("expected OpError::Io, got {err:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(context.contains(&path.display().to_string()), "{context}");
    }

    #[tokio::test]
    async fn reads_a_plain_csv_with_nulls_and_a_custom_delimiter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("quotes.csv");
        let mut file = File::create(&path).unwrap();
        write!(
            file,
            "symbol;day;bid;size;halted\n\
             MSFT;2024-01-02;370.5;100;false\n\
             IBM;2024-01-03;;200;true\n"
        )
        .unwrap();
        drop(file);

        let table = run(json!({ "path": path, "delimiter": ";" }))
            .await
            .unwrap();

        assert_eq!(table.num_rows(), 2);
        let types: Vec<DataType> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Utf8,
                DataType::Date32,
                DataType::Float64,
                DataType::Int64,
                DataType::Boolean
            ]
        );
        assert_eq!(cell(&table, "symbol", 1), "IBM");
        assert_eq!(cell(&table, "day", 1), "2024-01-03");
        let batch = table.concat().unwrap();
        assert!(batch.column_by_name("bid").unwrap().is_null(1));
        assert_eq!(cell(&table, "bid", 0), "370.5");
    }

    #[tokio::test]
    async fn without_a_header_columns_are_numbered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.csv");
        std::fs::write(&path, "AAPL,1.5\nMSFT,2.5\n").unwrap();

        let table = run(json!({ "path": path, "has_header": false }))
            .await
            .unwrap();

        assert_eq!(column_names(&table), ["column_1", "column_2"]);
        assert_eq!(table.num_rows(), 2);
        assert_eq!(cell(&table, "column_2", 1), "2.5");
    }

    #[tokio::test]
    async fn a_malformed_file_is_a_permanent_source_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv.gz");
        std::fs::write(&path, "this is not gzip").unwrap();

        let err = run(json!({ "path": path })).await.unwrap_err();

        assert!(
            matches!(&err, OpError::Source { transient: false, message } if message.contains("bad.csv.gz")),
            "{err:?}"
        );
    }

    #[test]
    fn params_are_checked_at_build_time() {
        let err = build(json!({ "path": "x.csv", "delimiter": "ab" })).unwrap_err();
        assert_eq!(err.path, ["delimiter"]);

        let err = build(json!({ "path": "x.csv", "delimiter": "€" })).unwrap_err();
        assert_eq!(err.path, ["delimiter"]);

        let err = build(json!({ "path": "x.csv", "columns": ["a", "b", "a"] })).unwrap_err();
        assert_eq!(err.path, ["columns", "2"]);

        let err = build(json!({ "path": "x.csv", "columns": [] })).unwrap_err();
        assert_eq!(err.path, ["columns"]);

        let err = build(json!({ "path": "" })).unwrap_err();
        assert_eq!(err.path, ["path"]);

        let err = build(json!({ "path": "x.csv", "header": false })).unwrap_err();
        assert!(err.message.contains("unknown field `header`"), "{err}");

        assert!(build(json!({ "columns": ["a"] })).is_err());
        assert!(build(json!({ "path": "x.csv", "delimiter": "\t" })).is_ok());
    }
}
