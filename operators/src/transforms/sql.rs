//! `transform.sql`: runs one DataFusion SQL query over the node's inputs.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::physical_plan::collect;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::parser::ParserError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::session::{MAX_PARTITIONS, Purpose, new_session};
use crate::{Arity, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

/// What a query may do: read its inputs and compute, never create, drop or
/// modify tables, nor change session settings.
fn query_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Parameters of `transform.sql`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlParams {
    /// One SQL query (SELECT, WITH … SELECT or VALUES) in DataFusion's
    /// dialect. Each input is a table named after the input. Unquoted names
    /// are lower-cased, so table and column names with capitals, spaces or
    /// dashes must be double-quoted: `"Adj Close"`, `"Ticker"`,
    /// `"daily-prices"`.
    ///
    /// ```yaml
    /// query: |
    ///   SELECT "Ticker", "Date", "Close",
    ///          "Close" / lag("Close") OVER (PARTITION BY "Ticker" ORDER BY "Date") - 1 AS ret
    ///   FROM prices
    /// ```
    pub query: String,

    /// How many partitions the query may spread over when the run has
    /// threads free, 1 to 4. The default, 1, gives the same bytes on every
    /// run. With more, a large query can finish sooner, but sums, averages
    /// and other aggregates over floats may differ in their last digits
    /// from run to run: partial results are combined in the order they
    /// finish.
    ///
    /// ```yaml
    /// partitions: 4
    /// ```
    #[serde(default = "one")]
    pub partitions: usize,
}

fn one() -> usize {
    1
}

impl OpParams for SqlParams {
    const NAME: &'static str = "transform.sql";
    const DOC: &'static str = "Runs one SQL query (DataFusion's dialect) over the node's inputs, \
        each registered as a table named after its input, and outputs the result. Unquoted \
        identifiers are lower-cased: double-quote names with capitals or spaces, e.g. \
        SELECT \"Adj Close\" FROM \"Prices\". Only queries are allowed; statements that \
        create, change or drop tables are rejected.";
    const WORKLOAD: Workload = Workload::Cpu;
    // A query may name no table at all (`SELECT … FROM (VALUES …)`).
    const INPUTS: Arity = Arity::AtLeast(0);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        check_query(&self.query)?;
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(ParamError::new(
                &["partitions"],
                format!(
                    "partitions is {}; give 1 (the same bytes every run) to {MAX_PARTITIONS}",
                    self.partitions
                ),
            ));
        }
        Ok(Arc::new(SqlTransform {
            query: self.query,
            partitions: self.partitions,
        }))
    }
}

/// Rejects, before anything runs, a query that does not parse or is not
/// exactly one read-only query. Whether its tables and columns exist is only
/// known once the inputs arrive.
fn check_query(query: &str) -> Result<(), ParamError> {
    let error = |message: String| ParamError::new(&["query"], message);
    if query.trim().is_empty() {
        return Err(error(
            "query is empty; write one SQL query, e.g. `query: SELECT * FROM prices`".into(),
        ));
    }
    // The generic dialect, as `session_context` leaves the dialect at its default.
    let statements = DFParser::parse_sql(query)
        .map_err(|e| error(format!("SQL does not parse: {}", parser_message(&e))))?;
    match statements.len() {
        1 => {}
        0 => return Err(error("query holds no SQL statement".into())),
        n => {
            return Err(error(format!(
                "query holds {n} SQL statements; transform.sql runs exactly one query \
                 (combine them with WITH or UNION, or use one node per query)"
            )));
        }
    }
    match &statements[0] {
        Statement::Statement(s) if matches!(**s, SqlStatement::Query(_)) => Ok(()),
        other => {
            let text = other.to_string();
            let keyword = text.split_whitespace().next().unwrap_or_default();
            Err(error(format!(
                "transform.sql runs one query (SELECT, WITH or VALUES); \
                 this is a {keyword} statement"
            )))
        }
    }
}

/// The parser's own words, without DataFusion's `SQL error: ParserError("…")` wrapping.
fn parser_message(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::SQL(e, _) => match e.as_ref() {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
            other => other.to_string(),
        },
        other => other.strip_backtrace(),
    }
}

/// The runtime `transform.sql` operator.
#[derive(Debug)]
struct SqlTransform {
    query: String,
    /// The most partitions the query spreads over.
    partitions: usize,
}

#[async_trait]
impl Operator for SqlTransform {
    async fn execute(&self, exec: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        // The node holds one thread; the query spreads over more when free
        // and asked for.
        let threads = exec.threads(self.partitions).await;
        let ctx = new_session(exec, threads.count(), Purpose::Query);
        let mut names = HashSet::new();
        for input in inputs.iter() {
            if !names.insert(input.name.as_str()) {
                return Err(OpError::Invalid(format!(
                    "transform.sql: two inputs are named '{}'; each input becomes a table \
                     and needs its own name",
                    input.name
                )));
            }
            let table = &input.table;
            // One partition holding every batch; cloning a batch only bumps
            // reference counts. DataFusion repartitions where it helps.
            let provider = MemTable::try_new(table.schema().clone(), vec![fewer_batches(table)?])?;
            // `bare` registers the name exactly as given. A plain `&str` would
            // be parsed as SQL: lower-cased, and split at dots.
            ctx.register_table(
                TableReference::bare(input.name.as_str()),
                Arc::new(provider),
            )?;
        }

        let frame = ctx
            .sql_with_options(&self.query, query_only())
            .await
            .map_err(|e| planning_error(&e, &inputs))?;
        let plan = frame.create_physical_plan().await?;
        // The physical plan's schema is exactly that of the batches it
        // produces, which the logical schema need not be (nullability).
        let schema = plan.schema();
        let batches = collect(plan, ctx.task_ctx()).await?;
        drop(threads);
        Ok(Table::new(schema, batches))
    }
}

/// The table's batches, small ones joined: DataFusion pays for every batch
/// in every operator of a plan, and a table concatenated from many days
/// (a `lookback` window) is many small batches. Batches of a usual size are
/// passed on as they are, without copying.
fn fewer_batches(table: &Table) -> Result<Vec<RecordBatch>, OpError> {
    const SMALL: usize = 1024;
    let batches = table.batches();
    let small = batches.iter().filter(|b| b.num_rows() < SMALL).count();
    if small < 2 {
        return Ok(batches.to_vec());
    }
    let mut out = Vec::new();
    let mut run: Vec<&RecordBatch> = Vec::new();
    let mut rows = 0;
    for batch in batches {
        if batch.num_rows() >= SMALL {
            flush(&mut out, &mut run, &mut rows, table)?;
            out.push(batch.clone());
            continue;
        }
        run.push(batch);
        rows += batch.num_rows();
        if rows >= 8 * SMALL {
            flush(&mut out, &mut run, &mut rows, table)?;
        }
    }
    flush(&mut out, &mut run, &mut rows, table)?;
    Ok(out)
}

fn flush(
    out: &mut Vec<RecordBatch>,
    run: &mut Vec<&RecordBatch>,
    rows: &mut usize,
    table: &Table,
) -> Result<(), OpError> {
    match run.len() {
        0 => {}
        1 => out.push(run[0].clone()),
        _ => out.push(concat_batches(table.schema(), run.iter().copied())?),
    }
    run.clear();
    *rows = 0;
    Ok(())
}

/// A query that does not plan against these inputs is the pipeline's fault.
/// For an unknown table, names the inputs and points out a quoting slip.
fn planning_error(e: &DataFusionError, inputs: &Inputs) -> OpError {
    let mut message = format!("transform.sql: {}", e.strip_backtrace());
    if message.contains("not found") && message.contains("table '") {
        let names: Vec<String> = inputs.iter().map(|i| format!("\"{}\"", i.name)).collect();
        if names.is_empty() {
            message.push_str("; this node has no inputs");
        } else {
            message.push_str(&format!("; the input tables are {}", names.join(", ")));
        }
        if inputs.iter().any(|i| i.name != i.name.to_lowercase()) {
            message.push_str(
                " (unquoted names are lower-cased: double-quote names with capitals, \
                 e.g. FROM \"Prices\")",
            );
        }
    }
    OpError::Invalid(message)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Date32Array, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    use super::*;
    use crate::Input;

    fn sql(query: &str) -> Arc<dyn Operator> {
        SqlParams {
            query: query.into(),
            partitions: 1,
        }
        .build()
        .unwrap()
    }

    fn input(name: &str, batch: RecordBatch) -> Input {
        Input {
            name: name.into(),
            table: Arc::new(Table::from_batch(batch)),
        }
    }

    /// Two tickers over three days, in two batches so that queries see more
    /// than one batch per table. Days are 2024-01-02.. (19724..).
    fn prices() -> Input {
        let schema = Arc::new(Schema::new(vec![
            Field::new("Ticker", DataType::Utf8, false),
            Field::new("Date", DataType::Date32, false),
            Field::new("Close", DataType::Float64, true),
        ]));
        let first = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["AAPL", "AAPL", "MSFT"])),
                Arc::new(Date32Array::from(vec![19724, 19725, 19724])),
                Arc::new(Float64Array::from(vec![100.0, 110.0, 50.0])),
            ],
        )
        .unwrap();
        let second = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["MSFT", "AAPL", "MSFT"])),
                Arc::new(Date32Array::from(vec![19725, 19726, 19726])),
                Arc::new(Float64Array::from(vec![55.0, 99.0, 44.0])),
            ],
        )
        .unwrap();
        Input {
            name: "prices".into(),
            table: Arc::new(Table::new(schema, vec![first, second])),
        }
    }

    fn sectors() -> Input {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("ticker", DataType::Utf8, false),
                Field::new("sector", DataType::Utf8, false),
                Field::new("weight", DataType::Int64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["AAPL", "MSFT", "XOM"])),
                Arc::new(StringArray::from(vec!["tech", "tech", "energy"])),
                Arc::new(Int64Array::from(vec![2, 1, 5])),
            ],
        )
        .unwrap();
        input("sectors", batch)
    }

    async fn run(query: &str, inputs: Vec<Input>) -> Result<Table, OpError> {
        sql(query)
            .execute(&crate::ExecContext::standalone(), Inputs(inputs))
            .await
    }

    fn pretty(table: &Table) -> String {
        pretty_format_batches(table.batches()).unwrap().to_string()
    }

    #[tokio::test]
    async fn joins_two_inputs() {
        let out = run(
            r#"SELECT p."Ticker", s.sector, p."Close" * s.weight AS weighted
               FROM prices p JOIN sectors s ON p."Ticker" = s.ticker
               WHERE p."Date" = DATE '2024-01-04'
               ORDER BY p."Ticker""#,
            vec![prices(), sectors()],
        )
        .await
        .unwrap();

        assert_eq!(
            pretty(&out),
            "\
+--------+--------+----------+
| Ticker | sector | weighted |
+--------+--------+----------+
| AAPL   | tech   | 198.0    |
| MSFT   | tech   | 44.0     |
+--------+--------+----------+"
        );
    }

    #[tokio::test]
    async fn aggregates() {
        let out = run(
            r#"SELECT "Ticker", count(*) AS days, min("Close") AS low, max("Close") AS high,
                      sum("Close") AS total
               FROM prices GROUP BY "Ticker" ORDER BY "Ticker""#,
            vec![prices()],
        )
        .await
        .unwrap();

        assert_eq!(
            pretty(&out),
            "\
+--------+------+------+-------+-------+
| Ticker | days | low  | high  | total |
+--------+------+------+-------+-------+
| AAPL   | 3    | 99.0 | 110.0 | 309.0 |
| MSFT   | 3    | 44.0 | 55.0  | 149.0 |
+--------+------+------+-------+-------+"
        );
    }

    #[tokio::test]
    async fn runs_a_window_function_per_partition() {
        let out = run(
            r#"SELECT "Ticker", "Date",
                      "Close" - lag("Close") OVER (PARTITION BY "Ticker" ORDER BY "Date") AS change
               FROM prices ORDER BY "Ticker", "Date""#,
            vec![prices()],
        )
        .await
        .unwrap();

        assert_eq!(
            pretty(&out),
            "\
+--------+------------+--------+
| Ticker | Date       | change |
+--------+------------+--------+
| AAPL   | 2024-01-02 |        |
| AAPL   | 2024-01-03 | 10.0   |
| AAPL   | 2024-01-04 | -11.0  |
| MSFT   | 2024-01-02 |        |
| MSFT   | 2024-01-03 | 5.0    |
| MSFT   | 2024-01-04 | -11.0  |
+--------+------------+--------+"
        );
    }

    #[test]
    fn small_batches_are_joined_and_large_ones_kept() {
        use datafusion::arrow::array::Int64Array;
        let batch = |n: i64| {
            RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from_iter_values(0..n)) as _)])
                .unwrap()
        };
        let schema = batch(1).schema();
        let table = Table::new(
            schema,
            vec![
                batch(30),
                batch(30),
                batch(5000),
                batch(30),
                batch(30),
                batch(30),
            ],
        );
        let rows: Vec<usize> = fewer_batches(&table)
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .collect();
        assert_eq!(rows, [60, 5000, 90]);
    }

    #[test]
    fn partitions_are_one_to_four() {
        let err = SqlParams {
            query: "SELECT 1".into(),
            partitions: 0,
        }
        .build()
        .unwrap_err();
        assert_eq!(err.path, ["partitions"]);
        assert!(
            err.message
                .contains("give 1 (the same bytes every run) to 4"),
            "{err:?}"
        );
    }

    #[test]
    fn a_syntax_error_is_a_param_error_with_the_parser_message() {
        let err = SqlParams {
            query: "SELECT \"Ticker\" FRM prices".into(),
            partitions: 1,
        }
        .build()
        .unwrap_err();

        assert_eq!(err.path, ["query"]);
        assert_eq!(
            err.message,
            "SQL does not parse: Expected: end of statement, found: prices at Line: 1, Column: 21"
        );
    }

    #[test]
    fn only_one_read_only_query_is_accepted() {
        for query in [
            "",
            "   ",
            "SELECT 1; SELECT 2",
            "CREATE TABLE t AS SELECT 1",
            "DROP TABLE prices",
            "INSERT INTO prices VALUES (1)",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let err = SqlParams {
                query: query.into(),
                partitions: 1,
            }
            .build()
            .unwrap_err();
            assert_eq!(err.path, ["query"], "{query}: {err}");
        }
        for query in [
            "SELECT 1",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "VALUES (1, 2)",
        ] {
            assert!(
                SqlParams {
                    query: query.into(),
                    partitions: 1,
                }
                .build()
                .is_ok(),
                "{query}"
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_table_is_named_and_the_inputs_listed() {
        let err = run("SELECT * FROM prics", vec![prices(), sectors()])
            .await
            .unwrap_err();

        let OpError::Invalid(message) = &err else {
            panic!("expected OpError::Invalid, got {err:?}");
        };
        assert!(message.contains("prics"), "{message}");
        assert!(message.contains("\"prices\", \"sectors\""), "{message}");
    }

    #[tokio::test]
    async fn an_unquoted_capitalised_name_explains_quoting() {
        let mut upper = prices();
        upper.name = "Prices".into();

        let err = run("SELECT * FROM Prices", vec![upper.clone()])
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, OpError::Invalid(_)), "{err:?}");
        assert!(message.contains("double-quote"), "{message}");

        let out = run(r#"SELECT count(*) AS n FROM "Prices""#, vec![upper])
            .await
            .unwrap();
        assert_eq!(pretty(&out).lines().nth(3), Some("| 6 |"));
    }

    #[tokio::test]
    async fn an_unknown_column_is_invalid() {
        let err = run("SELECT Close FROM prices", vec![prices()])
            .await
            .unwrap_err();

        let OpError::Invalid(message) = &err else {
            panic!("expected OpError::Invalid, got {err:?}");
        };
        // DataFusion lower-cases the unquoted name and suggests the real one.
        assert!(message.contains("close"), "{message}");
    }

    #[tokio::test]
    async fn input_names_need_not_be_sql_identifiers() {
        let mut dashed = prices();
        dashed.name = "daily-prices.v2".into();

        let out = run(
            r#"SELECT count(*) AS n FROM "daily-prices.v2""#,
            vec![dashed],
        )
        .await
        .unwrap();

        assert_eq!(out.num_rows(), 1);
        assert_eq!(pretty(&out).lines().nth(3), Some("| 6 |"));
    }

    #[tokio::test]
    async fn an_empty_input_table_works() {
        let schema = prices().table.schema().clone();
        let empty = Input {
            name: "prices".into(),
            table: Arc::new(Table::new(schema, Vec::new())),
        };

        let out = run(
            r#"SELECT "Ticker", "Close" FROM prices WHERE "Close" > 0"#,
            vec![empty.clone()],
        )
        .await
        .unwrap();
        assert_eq!(out.num_rows(), 0);
        let names: Vec<&str> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["Ticker", "Close"]);

        let out = run("SELECT count(*) AS n FROM prices", vec![empty])
            .await
            .unwrap();
        assert_eq!(pretty(&out).lines().nth(3), Some("| 0 |"));
    }

    #[tokio::test]
    async fn an_execution_error_maps_through_datafusion() {
        let err = run("SELECT CAST(sector AS INT) FROM sectors", vec![sectors()])
            .await
            .unwrap_err();
        let OpError::DataFusion(e) = &err else {
            panic!("expected OpError::DataFusion, got {err:?}");
        };
        assert!(e.to_string().contains("tech"), "{e}");
    }

    #[tokio::test]
    async fn duplicate_input_names_are_invalid() {
        let err = run("SELECT 1", vec![prices(), prices()]).await.unwrap_err();
        assert!(matches!(err, OpError::Invalid(m) if m.contains("'prices'")));
    }
}
