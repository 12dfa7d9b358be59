//! `sink.postgres`: writes its input into a Postgres table in one
//! transaction, through the run's connection pool for the node's resource.
//!
//! Every mode loads the rows the same way: COPY in Postgres's binary
//! format (pgpq encodes the Arrow columns) into a temporary table, then
//! one statement moves them into the target, casting to the target's
//! column types. So the rows arrive in bulk whatever the mode, and a
//! failure at any step rolls the transaction back, leaving the table as
//! it was.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use datafusion::arrow::array::{BooleanArray, Int64Array, StringArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use futures::SinkExt;
use pgpq::ArrowToPostgresBinaryEncoder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::operator::OpParams;
use crate::shared::atomic::single_input;
use crate::shared::postgres::types::{self, PgColumn, idents};
use crate::shared::postgres::{Database, error, quote_ident, quote_table};
use crate::{Arity, Effect, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

const NAME: &str = "sink.postgres";

/// The staging table each load copies into; temporary, so private to the
/// connection, and dropped at commit.
const STAGING: &str = "quiver_staging";

/// Encoded COPY data sent to the server at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks encoded ahead of the network: bounds the memory a load adds.
const CHUNKS_AHEAD: usize = 4;

/// How `sink.postgres` writes into the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PgMode {
    /// Adds the rows to the table (the default).
    #[default]
    Append,
    /// Inserts new keys and updates the rows of keys already there
    /// (`INSERT … ON CONFLICT (key) DO UPDATE`). Rows of the input with
    /// the same key: the last one wins. Needs `key`, and a unique index
    /// or primary key on those columns (made by `create: true`).
    Upsert,
    /// Replaces the table's rows with the input's, atomically: readers see
    /// the old rows until the new ones are committed.
    Replace,
}

impl PgMode {
    fn status(self) -> &'static str {
        match self {
            PgMode::Append => "appended",
            PgMode::Upsert => "upserted",
            PgMode::Replace => "replaced",
        }
    }
}

/// Parameters of `sink.postgres`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkParams {
    /// The database: a URL (`postgres://USER:PASSWORD@HOST:5432/DB`) or
    /// libpq's `key=value` pairs. Keep it out of the file and out of every
    /// output by reading it from the environment, which quiver treats as a
    /// secret. Messages name the database without its password. TLS is not
    /// supported yet.
    ///
    /// ```yaml
    /// url: ${env:DATABASE_URL}
    /// ```
    pub url: String,

    /// The table, `name` or `schema.name`, taken as written (quoted).
    ///
    /// ```yaml
    /// table: market.bars
    /// ```
    pub table: String,

    /// `append` (the default), `upsert` or `replace`.
    ///
    /// ```yaml
    /// mode: upsert
    /// ```
    #[serde(default)]
    pub mode: PgMode,

    /// The columns that identify a row: what `upsert` matches on, and the
    /// primary key of a table made by `create`.
    ///
    /// ```yaml
    /// key: [symbol, ts]
    /// ```
    #[serde(default)]
    pub key: Vec<String>,

    /// Make the table when it does not exist, with a column per input
    /// column (Int64 → INT8, Float64 → FLOAT8, Utf8 → TEXT, timestamps →
    /// TIMESTAMP or, with a time zone, TIMESTAMPTZ, …) and `key` as its
    /// primary key. Defaults to false: a missing table is an error.
    ///
    /// ```yaml
    /// create: true
    /// ```
    #[serde(default)]
    pub create: bool,
}

impl OpParams for PostgresSinkParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str = "Writes its one input into a Postgres table, in one transaction \
        on the run's connection pool for the node's resource (as many connections as the \
        resource's concurrency). mode: append | upsert (key columns; duplicate keys in the \
        input: the last row wins) | replace (atomic). Rows travel as binary COPY into a \
        temporary table, then one INSERT moves them into the table; a failure leaves the \
        table as it was. create: true makes a missing table from the input's columns. \
        Outputs one row with the `table`, the `rows` written and the `status`.";
    const EFFECT: Effect = Effect::Sink;
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::Exactly(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        let db = Database::parse(&self.url)?;
        let table = quote_table(&self.table)?;
        if self.mode == PgMode::Upsert && self.key.is_empty() {
            return Err(ParamError::new(
                &["key"],
                "mode: upsert needs the columns that identify a row, e.g. key: [symbol, ts]",
            ));
        }
        if let Some(i) = (1..self.key.len()).find(|&i| self.key[..i].contains(&self.key[i])) {
            return Err(ParamError::new(
                &["key", &i.to_string()],
                format!("'{}' is named twice", self.key[i]),
            ));
        }
        Ok(Arc::new(PostgresSink {
            target: format!("{}/{}", db.shown(), self.table),
            db,
            table,
            shown_table: self.table,
            mode: self.mode,
            key: self.key,
            create: self.create,
        }))
    }
}

#[derive(Debug)]
struct PostgresSink {
    db: Database,
    /// Quoted, ready for SQL.
    table: String,
    /// As the pipeline wrote it, for messages and the summary.
    shown_table: String,
    mode: PgMode,
    key: Vec<String>,
    create: bool,
    /// The database and table, for the engine's check that no two sinks
    /// write one place.
    target: String,
}

#[async_trait]
impl Operator for PostgresSink {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let input = single_input(NAME, &inputs)?.table.clone();
        let schema = types::encodable_schema(input.schema());
        let columns = types::columns(&schema)?;
        if let Some(missing) = self.key.iter().find(|k| schema.index_of(k).is_err()) {
            return Err(OpError::Invalid(format!(
                "{NAME}: the key column '{missing}' is not in the input, whose columns are {}",
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }

        // Duplicate keys resolved before the load, in Arrow: the server
        // would otherwise refuse to update one row twice in a statement.
        let batches = {
            let batches = input.batches().to_vec();
            let key = self.key.clone();
            let upsert = self.mode == PgMode::Upsert;
            ctx.run_cpu(1, move |ctx, _| {
                let batches = batches
                    .iter()
                    .map(types::encodable)
                    .collect::<Result<Vec<_>, _>>()?;
                ctx.check_cancelled()?;
                if upsert {
                    last_wins(&batches, &key)
                } else {
                    Ok(batches)
                }
            })
            .await?
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();

        let pool = self.db.pool(ctx);
        let conn = pool.get().await?;
        let client = conn.client();
        let fail = |what: &str| {
            let context = format!("{NAME}: {what} {} on {}", self.shown_table, self.db.shown());
            move |e: tokio_postgres::Error| self.explain(error(&context, &e))
        };

        client
            .batch_execute(&self.prologue(&columns))
            .await
            .map_err(fail("cannot prepare to write"))?;
        let copy = format!(
            "COPY {STAGING} ({}) FROM STDIN (FORMAT binary)",
            idents(&names(&columns))
        );
        let sink = client
            .copy_in::<_, Bytes>(&copy)
            .await
            .map_err(fail("cannot start loading"))?;
        copy_batches(ctx, sink, schema, batches)
            .await
            .map_err(|e| match e {
                Loaded::Postgres(e) => fail("cannot load rows into")(e),
                Loaded::Other(e) => e,
            })?;
        client
            .batch_execute(&self.epilogue(&columns))
            .await
            .map_err(fail("cannot write"))?;
        conn.done();
        tracing::debug!(table = %self.shown_table, rows, mode = ?self.mode, "Wrote to Postgres");
        summary(&self.shown_table, rows, self.mode.status())
    }

    fn sink_target(&self) -> Option<String> {
        Some(self.target.clone())
    }

    fn output_schema(&self) -> Option<SchemaRef> {
        Some(summary_schema())
    }
}

impl PostgresSink {
    /// Opens the transaction and makes the staging table (and the target,
    /// when asked). Timestamps are read as UTC whatever the server's zone.
    fn prologue(&self, columns: &[PgColumn]) -> String {
        let mut sql = String::from("BEGIN; SET LOCAL TIME ZONE 'UTC'; ");
        if self.create {
            sql.push_str(&types::create_table(&self.table, columns, &self.key));
            sql.push_str("; ");
        }
        let staging: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), c.wire))
            .collect();
        sql.push_str(&format!(
            "CREATE TEMP TABLE {STAGING} ({}) ON COMMIT DROP",
            staging.join(", ")
        ));
        sql
    }

    /// Moves the staged rows into the table and commits.
    fn epilogue(&self, columns: &[PgColumn]) -> String {
        let names = names(columns);
        let list = idents(&names);
        let insert = format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM {STAGING}",
            self.table
        );
        let body = match self.mode {
            PgMode::Append => insert,
            PgMode::Replace => format!("TRUNCATE {}; {insert}", self.table),
            PgMode::Upsert => {
                let updates: Vec<String> = names
                    .iter()
                    .filter(|n| !self.key.contains(n))
                    .map(|n| format!("{0} = EXCLUDED.{0}", quote_ident(n)))
                    .collect();
                let action = if updates.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", updates.join(", "))
                };
                format!("{insert} ON CONFLICT ({}) {action}", idents(&self.key))
            }
        };
        format!("{body}; COMMIT")
    }

    /// Adds what to do to the errors a pipeline author can fix.
    fn explain(&self, e: OpError) -> OpError {
        match e {
            OpError::Invalid(m) if m.contains("42P10") => OpError::Invalid(format!(
                "{m}; upsert needs a primary key or unique index on ({}): add one, or let \
                 {NAME} make the table with create: true",
                self.key.join(", ")
            )),
            OpError::Invalid(m) if m.contains("42P01") && !self.create => OpError::Invalid(
                format!("{m}; make the table first, or add create: true to make it from the input"),
            ),
            e => e,
        }
    }
}

fn names(columns: &[PgColumn]) -> Vec<String> {
    columns.iter().map(|c| c.name.clone()).collect()
}

/// How a COPY failed: the server said no, or the encoding did.
enum Loaded {
    Postgres(tokio_postgres::Error),
    Other(OpError),
}

/// Streams `batches` into a started COPY: a CPU thread encodes chunks
/// while the connection sends the ones before, a few chunks apart.
async fn copy_batches(
    ctx: &ExecContext,
    sink: tokio_postgres::CopyInSink<Bytes>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<u64, Loaded> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHUNKS_AHEAD);
    let encode = ctx.run_cpu(1, move |ctx, _| {
        let pg = |e: pgpq::error::ErrorKind| OpError::Invalid(format!("{NAME}: {e}"));
        let mut encoder = ArrowToPostgresBinaryEncoder::try_new(&schema).map_err(pg)?;
        let mut buf = BytesMut::with_capacity(CHUNK_BYTES * 2);
        encoder.write_header(&mut buf).map_err(pg)?;
        for batch in &batches {
            ctx.check_cancelled()?;
            encoder.write_batch(batch, &mut buf).map_err(pg)?;
            if buf.len() >= CHUNK_BYTES && tx.blocking_send(buf.split().freeze()).is_err() {
                // The sending side stopped: its error says why.
                return Ok(());
            }
        }
        encoder.write_footer(&mut buf).map_err(pg)?;
        let _ = tx.blocking_send(buf.split().freeze());
        Ok(())
    });
    let send = async move {
        let mut sink = Box::pin(sink);
        while let Some(chunk) = rx.recv().await {
            sink.send(chunk).await?;
        }
        sink.as_mut().finish().await
    };
    let (encoded, sent) = tokio::join!(encode, send);
    encoded.map_err(Loaded::Other)?;
    sent.map_err(Loaded::Postgres)
}

/// `batches` without the rows whose key appears again later: for each
/// key, the last row stays, in the input's order.
fn last_wins(batches: &[RecordBatch], key: &[String]) -> Result<Vec<RecordBatch>, OpError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let indices = key
        .iter()
        .map(|k| schema.index_of(k))
        .collect::<Result<Vec<_>, _>>()?;
    let converter = RowConverter::new(
        indices
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect(),
    )?;
    let rows = batches
        .iter()
        .map(|b| {
            let cols: Vec<_> = indices.iter().map(|&i| b.column(i).clone()).collect();
            converter.convert_columns(&cols)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut last: HashMap<&[u8], (usize, usize)> = HashMap::with_capacity(total);
    let mut dropped: Vec<(usize, usize)> = Vec::new();
    for (b, rows) in rows.iter().enumerate() {
        for (r, row) in rows.iter().enumerate() {
            if let Some(earlier) = last.insert(row.data(), (b, r)) {
                dropped.push(earlier);
            }
        }
    }
    if dropped.is_empty() {
        return Ok(batches.to_vec());
    }
    let mut keep: Vec<Vec<bool>> = batches.iter().map(|b| vec![true; b.num_rows()]).collect();
    for (b, r) in dropped {
        keep[b][r] = false;
    }
    batches
        .iter()
        .zip(keep)
        .map(|(batch, keep)| Ok(filter_record_batch(batch, &BooleanArray::from(keep))?))
        .collect()
}

fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
    ]))
}

fn summary(table: &str, rows: usize, status: &str) -> Result<Table, OpError> {
    let batch = RecordBatch::try_new(
        summary_schema(),
        vec![
            Arc::new(StringArray::from(vec![table])),
            Arc::new(Int64Array::from(vec![rows as i64])),
            Arc::new(StringArray::from(vec![status])),
        ],
    )?;
    Ok(Table::from_batch(batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray};

    fn bars(symbols: &[&str], ts: &[i64], close: &[f64]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("symbol", DataType::Utf8, false),
                Field::new("ts", DataType::Int64, false),
                Field::new("close", DataType::Float64, false),
            ])),
            vec![
                Arc::new(StringArray::from(symbols.to_vec())),
                Arc::new(Int64Array::from(ts.to_vec())),
                Arc::new(Float64Array::from(close.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_last_row_of_a_key_wins_across_batches() {
        let a = bars(&["A", "B", "A"], &[1, 1, 2], &[1.0, 2.0, 3.0]);
        let b = bars(&["A", "C"], &[1, 1], &[4.0, 5.0]);
        let key = ["symbol".to_string(), "ts".to_string()];
        let out = last_wins(&[a.clone(), b.clone()], &key).unwrap();
        let closes: Vec<f64> = out
            .iter()
            .flat_map(|b| {
                let c = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
                c.values().to_vec()
            })
            .collect();
        assert_eq!(closes, vec![2.0, 3.0, 4.0, 5.0]);
        let unique = last_wins(std::slice::from_ref(&b), &key).unwrap();
        assert_eq!(unique[0].num_rows(), 2);
    }

    #[test]
    fn upsert_needs_a_key_and_names_it_once() {
        let build = |v: serde_json::Value| {
            serde_json::from_value::<PostgresSinkParams>(v)
                .unwrap()
                .build()
                .unwrap_err()
        };
        let e =
            build(serde_json::json!({"url": "postgres://h/db", "table": "t", "mode": "upsert"}));
        assert_eq!(e.path, ["key"]);
        let e = build(serde_json::json!({
            "url": "postgres://h/db", "table": "t", "mode": "upsert", "key": ["a", "b", "a"]
        }));
        assert_eq!(e.path, ["key", "2"]);
    }

    #[test]
    fn statements_quote_every_name() {
        let op = PostgresSinkParams {
            url: "postgres://h/db".into(),
            table: "md.bars".into(),
            mode: PgMode::Upsert,
            key: vec!["symbol".into(), "ts".into()],
            create: false,
        };
        let sink = PostgresSink {
            db: Database::parse(&op.url).unwrap(),
            table: quote_table(&op.table).unwrap(),
            shown_table: op.table.clone(),
            mode: op.mode,
            key: op.key.clone(),
            create: false,
            target: String::new(),
        };
        let cols = types::columns(&bars(&["A"], &[1], &[1.0]).schema()).unwrap();
        assert_eq!(
            sink.epilogue(&cols),
            "INSERT INTO \"md\".\"bars\" (\"symbol\", \"ts\", \"close\") SELECT \"symbol\", \
             \"ts\", \"close\" FROM quiver_staging ON CONFLICT (\"symbol\", \"ts\") DO UPDATE \
             SET \"close\" = EXCLUDED.\"close\"; COMMIT"
        );
    }
}
