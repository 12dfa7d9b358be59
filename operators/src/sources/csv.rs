//! `fetch.csv`: reads CSV files (one, a glob, or a hive-partitioned folder;
//! plain or gzip-compressed) into a table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use futures::TryStreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::csv_dialect;
use crate::shared::fingerprint;
use crate::shared::scan::{SCAN_RANGE, ScanFormat, ScanParams, ScanSpec, is_gzip};
use crate::{
    Arity, DateRange, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload,
};

/// Parameters of `fetch.csv`: what to read (shared with `fetch.parquet`)
/// and how the text is laid out.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
pub struct CsvParams {
    #[serde(flatten)]
    pub scan: ScanParams,

    /// The field separator: one ASCII character. Defaults to a comma.
    ///
    /// ```yaml
    /// delimiter: ";"
    /// ```
    #[serde(default = "csv_dialect::default_delimiter")]
    pub delimiter: char,

    /// Whether the first line holds the column names. When false the columns
    /// are named `column_1`, `column_2`, … Defaults to true.
    ///
    /// ```yaml
    /// has_header: false
    /// ```
    #[serde(default = "csv_dialect::default_has_header")]
    pub has_header: bool,
}

impl OpParams for CsvParams {
    const NAME: &'static str = "fetch.csv";
    const DOC: &'static str = "Reads CSV files into a table: one file, a glob, or a \
        hive-partitioned folder whose key=value folders become columns; gzip-compressed when \
        names end in .gz. Column types are inferred from every row: whole numbers become \
        Int64, other numbers Float64, true/false Boolean, dates like 2000-03-01 Date32, ISO \
        timestamps like 2000-03-01T09:30:00 Timestamp (no time zone), and anything else Utf8. \
        Empty fields are null. Optional filters keep some symbols and a time range \
        [start, end); on partition columns they skip whole files. Takes no inputs.";
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::None;

    const DATE_RANGE: Option<DateRange> = Some(SCAN_RANGE);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        let spec = ScanSpec::new(Self::NAME, self.scan);
        // `ParamError` carries one path, so this reports the first problem,
        // checking fields in the order they are declared.
        spec.check()?;
        let delimiter = csv_dialect::delimiter_byte(self.delimiter)?;
        Ok(Arc::new(CsvFetch {
            spec,
            format: CsvScan {
                delimiter,
                has_header: self.has_header,
            },
        }))
    }
}

/// The runtime `fetch.csv` operator.
#[derive(Debug, Clone)]
struct CsvFetch {
    spec: ScanSpec,
    format: CsvScan,
}

#[derive(Debug, Clone)]
struct CsvScan {
    delimiter: u8,
    has_header: bool,
}

#[async_trait]
impl Operator for CsvFetch {
    async fn execute(&self, ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        Ok(self.spec.scan(ctx, &self.format).await?.0)
    }

    fn fingerprint(&self) -> Result<Option<String>, OpError> {
        fingerprint::files(&self.spec.path).map(Some)
    }
}

#[async_trait]
impl ScanFormat for CsvScan {
    async fn for_listing(
        &self,
        url: &ListingTableUrl,
        state: &SessionState,
    ) -> Result<(String, Arc<dyn FileFormat>), DataFusionError> {
        let (extension, gzip) = match url.get_glob() {
            // A glob selects the files itself.
            Some(glob) => (String::new(), is_gzip(glob.as_str())),
            None if !url.is_collection() => (String::new(), is_gzip(url.as_str())),
            // A folder: its `.csv` files, or its `.csv.gz` ones if it has
            // no `.csv` files.
            None => {
                let store = state.runtime_env().object_store(url)?;
                let has = async |extension: &str| {
                    let mut files = url.list_all_files(state, store.as_ref(), extension).await?;
                    Ok::<_, DataFusionError>(files.try_next().await?.is_some())
                };
                if !has(".csv").await? && has(".csv.gz").await? {
                    (".csv.gz".to_string(), true)
                } else {
                    (".csv".to_string(), false)
                }
            }
        };
        let compression = if gzip {
            FileCompressionType::GZIP
        } else {
            FileCompressionType::UNCOMPRESSED
        };
        let format = CsvFormat::default()
            .with_has_header(self.has_header)
            .with_delimiter(self.delimiter)
            // Two passes over the files, one to infer types from every row
            // and one to parse: a sample could guess Int64 for a column
            // whose later rows are floats.
            .with_schema_infer_max_rec(usize::MAX)
            .with_file_compression_type(compression);
        Ok((extension, Arc::new(format)))
    }

    fn widens_types(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::{Read, Write};

    use flate2::Compression;
    use flate2::read::MultiGzDecoder;
    use flate2::write::GzEncoder;

    use datafusion::arrow::datatypes::DataType;
    use datafusion::arrow::util::display::array_value_to_string;
    use serde_json::json;

    use std::path::Path;

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
        build(params)
            .unwrap()
            .execute(&crate::ExecContext::standalone(), Inputs::default())
            .await
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

    /// Lines of the stocks file for `ticker` in [start, end), read here
    /// straight from the gzip text, independently of DataFusion.
    fn stocks_lines(ticker: &str, start: &str, end: &str) -> Vec<String> {
        let mut text = String::new();
        MultiGzDecoder::new(File::open(stocks_path()).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .skip(1)
            .filter(|line| {
                let mut fields = line.split(',');
                let (t, d) = (fields.next().unwrap(), fields.next().unwrap());
                t == ticker && d >= start && d < end
            })
            .map(String::from)
            .collect()
    }

    #[tokio::test]
    async fn keeps_the_symbols_and_dates_asked_for() {
        let table = run(json!({
            "path": stocks_path(),
            "symbols": ["FB"],
            "symbol_column": "Ticker",
            "start": "2013-01-01",
            "end": "2013-02-01",
            "time_column": "Date",
            "columns": ["Ticker", "Date", "Close"],
        }))
        .await
        .unwrap();

        let expected = stocks_lines("FB", "2013-01-01", "2013-02-01");
        assert!(expected.len() > 15, "{expected:?}");
        assert_eq!(table.num_rows(), expected.len());
        for (row, line) in expected.iter().enumerate() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(cell(&table, "Date", row), fields[1]);
            assert_eq!(
                cell(&table, "Close", row).parse::<f64>().unwrap(),
                fields[5].parse::<f64>().unwrap()
            );
        }
    }

    fn gzip(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut gz = GzEncoder::new(File::create(path).unwrap(), Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    }

    #[tokio::test]
    async fn a_gzipped_hive_folder_is_pruned_by_symbol_and_read_by_glob() {
        let dir = tempfile::tempdir().unwrap();
        gzip(
            &dir.path().join("symbol=FPT/date=2026-01-05/part-0.csv.gz"),
            "ts,close\n2026-01-05T09:15:00,95.5\n",
        );
        gzip(
            &dir.path().join("symbol=FPT/date=2026-01-06/part-0.csv.gz"),
            "ts,close\n2026-01-06T09:15:00,96\n",
        );
        // Not gzip: any read that opens it fails.
        std::fs::create_dir_all(dir.path().join("symbol=VNM/date=2026-01-05")).unwrap();
        std::fs::write(
            dir.path().join("symbol=VNM/date=2026-01-05/part-0.csv.gz"),
            "junk",
        )
        .unwrap();

        assert!(run(json!({ "path": dir.path() })).await.is_err());

        for path in [
            dir.path().display().to_string(),
            format!("{}/*.csv.gz", dir.path().display()),
        ] {
            let table = run(json!({
                "path": path,
                "symbols": ["FPT"],
                "time_column": "date",
                "end": "2026-01-06",
            }))
            .await
            .unwrap();
            assert_eq!(
                column_names(&table),
                ["ts", "close", "symbol", "date"],
                "{path}"
            );
            assert_eq!(table.num_rows(), 1, "{path}");
            assert_eq!(cell(&table, "ts", 0), "2026-01-05T09:15:00");
            assert_eq!(cell(&table, "close", 0), "95.5");
            assert_eq!(cell(&table, "symbol", 0), "FPT");
            assert_eq!(table.schema().field(3).data_type(), &DataType::Date32);
        }
    }

    #[tokio::test]
    async fn a_glob_reads_the_matching_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.csv"), "x,y\n3,4\n").unwrap();
        std::fs::write(dir.path().join("a.csv"), "x,y\n1,2.5\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "not,data\n").unwrap();

        let table = run(json!({ "path": format!("{}/*.csv", dir.path().display()) }))
            .await
            .unwrap();

        assert_eq!(table.num_rows(), 2);
        assert_eq!(cell(&table, "x", 0), "1");
        assert_eq!(cell(&table, "y", 1), "4.0");
        assert_eq!(table.schema().field(1).data_type(), &DataType::Float64);
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
