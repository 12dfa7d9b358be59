//! `sink.postgres`: writes its input into a Postgres table in one
//! transaction, through the run's connection pool for the node's resource.
//!
//! The rows always travel in bulk, as binary COPY (pgpq encodes the Arrow
//! columns); `load` says where they go and which statements follow. A
//! failure at any step rolls the transaction back, leaving the table as it
//! was.

mod load;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::shared::atomic::single_input;
use crate::shared::postgres::types::{self, PgColumn, idents};
use crate::shared::postgres::{Database, error, quote_table};
use crate::{Arity, Effect, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};
use load::{Load, Loaded};

const NAME: &str = "sink.postgres";

/// How `sink.postgres` writes into the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PgMode {
    /// Adds the rows to the table (the default).
    #[default]
    Append,
    /// Updates the rows whose `key` the table already has and inserts the
    /// others. Rows of the input with the same key: the last one wins.
    /// Other writers of the table wait while it runs; readers do not.
    Upsert,
    /// Replaces the table's rows with the input's, atomically: the new rows
    /// are loaded first, and readers see the old rows until the swap.
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
    /// primary key of a table made by `create` (a primary key makes the
    /// matching fast; upsert does not need one).
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
        input: the last row wins) | replace (atomic). Rows travel as binary COPY, straight \
        into the table when nothing can conflict, else into a temporary table that \
        statements move them from; a failure leaves the table as it was. create: true makes \
        a missing table from the input's columns, with key as its primary key. \
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
                list(columns.iter().map(|c| c.name.as_str()))
            )));
        }

        // Duplicate keys resolved before the load, in Arrow, so that each
        // key is written once.
        let started = std::time::Instant::now();
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
                    load::last_wins(&batches, &key)
                } else {
                    Ok(batches)
                }
            })
            .await?
        };
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let prepared = started.elapsed();

        let pool = self.db.pool(ctx);
        let conn = pool.get().await?;
        let client = conn.client();
        let load = Load {
            table: &self.table,
            columns: &columns,
            key: &self.key,
        };
        let fail = |what: &str| {
            let context = format!("{NAME}: {what} {} on {}", self.shown_table, self.db.shown());
            move |e: tokio_postgres::Error| error(&context, &e)
        };

        let mut begin = String::from(load::BEGIN);
        if self.create {
            begin.push_str(&types::create_table(&self.table, &columns, &self.key));
        }
        client
            .batch_execute(&begin)
            .await
            .map_err(fail("cannot prepare to write"))?;
        let target = load::target_columns(client, &self.table)
            .await
            .map_err(fail("cannot read the columns of"))?;
        let exact = self.check_columns(&columns, &target)?;
        let direct = match self.mode {
            PgMode::Append => exact,
            // Readers keep the old rows until the swap: staged first.
            PgMode::Replace => false,
            PgMode::Upsert => {
                client
                    .batch_execute(&load.lock())
                    .await
                    .map_err(fail("cannot lock"))?;
                exact
                    && load::is_empty(client, &self.table)
                        .await
                        .map_err(fail("cannot read"))?
            }
        };

        let into = if direct {
            self.table.as_str()
        } else {
            client
                .batch_execute(&load.staging())
                .await
                .map_err(fail("cannot prepare to write"))?;
            load::STAGING
        };
        let copy = format!(
            "COPY {into} ({}) FROM STDIN (FORMAT binary)",
            idents(&load.names())
        );
        let sink = client
            .copy_in::<_, Bytes>(&copy)
            .await
            .map_err(fail("cannot start loading"))?;
        load::copy_batches(ctx, sink, schema, batches)
            .await
            .map_err(|e| match e {
                Loaded::Postgres(e) => fail("cannot load rows into")(e),
                Loaded::Other(e) => e,
            })?;
        let finish = match (direct, self.mode) {
            (true, _) => "COMMIT".to_string(),
            (false, PgMode::Append) => format!("{}; COMMIT", load.insert_all()),
            (false, PgMode::Replace) => {
                format!("TRUNCATE {}; {}; COMMIT", self.table, load.insert_all())
            }
            (false, PgMode::Upsert) => format!("{}; COMMIT", load.upsert()),
        };
        client
            .batch_execute(&finish)
            .await
            .map_err(fail("cannot write"))?;
        conn.done();
        tracing::debug!(
            table = %self.shown_table, rows, mode = ?self.mode, direct,
            prepare_ms = prepared.as_millis() as u64,
            write_ms = (started.elapsed() - prepared).as_millis() as u64,
            "Wrote to Postgres"
        );
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
    /// Checks that the table exists and has every input column; whether
    /// each has the type the rows travel as, so that COPY can write the
    /// table itself.
    fn check_columns(
        &self,
        columns: &[PgColumn],
        target: &[(String, String)],
    ) -> Result<bool, OpError> {
        if target.is_empty() {
            return Err(OpError::Invalid(format!(
                "{NAME}: table {} does not exist on {}; make it first, or add create: true to \
                 make it from the input's columns",
                self.shown_table,
                self.db.shown()
            )));
        }
        let mut exact = true;
        for c in columns {
            let Some((_, t)) = target.iter().find(|(name, _)| *name == c.name) else {
                return Err(OpError::Invalid(format!(
                    "{NAME}: the input's column '{}' is not in table {}, whose columns are {}; \
                     add it to the table, or select only the table's columns upstream",
                    c.name,
                    self.shown_table,
                    list(target.iter().map(|(n, _)| n.as_str()))
                )));
            };
            exact &= types::same_type(&c.wire, t);
        }
        Ok(exact)
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
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
    fn rows_come_out_in_key_order_and_the_last_row_of_a_key_wins_across_batches() {
        let a = bars(&["A", "B", "A"], &[1, 1, 2], &[1.0, 2.0, 3.0]);
        let b = bars(&["A", "C"], &[1, 1], &[4.0, 5.0]);
        let key = ["symbol".to_string(), "ts".to_string()];
        let out = load::last_wins(&[a.clone(), b.clone()], &key).unwrap();
        let closes: Vec<f64> = out
            .iter()
            .flat_map(|b| {
                let c = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
                c.values().to_vec()
            })
            .collect();
        // In key order: (A, 1) from the second batch, (A, 2), (B, 1), (C, 1).
        assert_eq!(closes, vec![4.0, 3.0, 2.0, 5.0]);
        let unique = load::last_wins(std::slice::from_ref(&b), &key).unwrap();
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
    fn an_upsert_updates_what_changed_and_inserts_the_rest_with_every_name_quoted() {
        let cols = types::columns(&bars(&["A"], &[1], &[1.0]).schema()).unwrap();
        let key = ["symbol".to_string(), "ts".to_string()];
        let load = Load {
            table: "\"md\".\"bars\"",
            columns: &cols,
            key: &key,
        };
        assert_eq!(
            load.upsert(),
            "UPDATE \"md\".\"bars\" AS t SET \"close\" = s.\"close\" FROM quiver_staging AS s \
             WHERE t.\"symbol\" = s.\"symbol\" AND t.\"ts\" = s.\"ts\" AND (t.\"close\") IS \
             DISTINCT FROM (s.\"close\"); INSERT INTO \"md\".\"bars\" (\"symbol\", \"ts\", \
             \"close\") SELECT \"symbol\", \"ts\", \"close\" FROM quiver_staging AS s WHERE NOT \
             EXISTS (SELECT 1 FROM \"md\".\"bars\" AS t WHERE t.\"symbol\" = s.\"symbol\" AND \
             t.\"ts\" = s.\"ts\")"
        );
    }
}
