//! `fetch.postgres`: a query's result as a table, with its values bound as
//! parameters (`$1`, `$2`, …), never spliced into the SQL text.
//!
//! Rows arrive as a stream and become Arrow batches a few thousand at a
//! time, so a large result never sits in memory as rows as well as
//! columns. The connection comes from the run's pool for the node's
//! resource, shared with `sink.postgres`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema};
use futures::TryStreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::operator::OpParams;
use crate::shared::postgres::types::{self, Bound, Columns};
use crate::shared::postgres::{Database, error};
use crate::{
    Arity, ExecContext, Freshness, Inputs, OpError, Operator, ParamError, Table, Workload,
};

const NAME: &str = "fetch.postgres";

/// Rows per output batch.
const BATCH_ROWS: usize = 8192;

/// Parameters of `fetch.postgres`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresFetchParams {
    /// The database, as for `sink.postgres`: a URL or `key=value` pairs,
    /// best read from the environment.
    ///
    /// ```yaml
    /// url: ${env:DATABASE_URL}
    /// ```
    pub url: String,

    /// The query. Values go in `params` and are written `$1`, `$2`, … here,
    /// so that no value is ever read as SQL.
    ///
    /// ```yaml
    /// query: SELECT ts, close FROM bars WHERE symbol = $1 AND ts >= $2::date
    /// ```
    pub query: String,

    /// The values of `$1`, `$2`, …, in order: text, numbers, booleans or
    /// null, converted to the type the query expects there (a date as
    /// `2026-01-05`, a timestamp as ISO 8601 text).
    ///
    /// ```yaml
    /// params: ["${symbol}", "${start}"]
    /// ```
    #[serde(default)]
    #[schemars(with = "Vec<Option<ParamValue>>")]
    pub params: Vec<Value>,
}

/// A value bound to a query parameter.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum ParamValue {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl OpParams for PostgresFetchParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str = "Runs a query on Postgres and outputs its result, read as a \
        stream into batches. Values are bound as parameters ($1, $2, … in the query, `params` \
        in order), never spliced into the SQL. Columns become bool, int16/32/64, float32/64 \
        (numeric too), text (also json, jsonb, uuid), binary, date and microsecond \
        timestamps (timestamptz in UTC); cast other types in the query. The connection comes \
        from the run's pool for the node's resource. A result larger than the run's \
        --memory-limit fails, naming it. Not cached across runs unless the node says \
        `cache:`, since the table can change.";
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::None;
    const VERBATIM: &'static [&'static str] = &["query"];

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        let db = Database::parse(&self.url)?;
        if self.query.trim().is_empty() {
            return Err(ParamError::new(
                &["query"],
                "is empty; write the SELECT to run",
            ));
        }
        if let Some(i) = self
            .params
            .iter()
            .position(|v| v.is_array() || v.is_object())
        {
            return Err(ParamError::new(
                &["params", &i.to_string()],
                "must be text, a number, a boolean or null; a list or map cannot be bound",
            ));
        }
        Ok(Arc::new(PostgresFetch {
            db,
            query: self.query,
            params: self.params,
        }))
    }
}

#[derive(Debug)]
struct PostgresFetch {
    db: Database,
    query: String,
    params: Vec<Value>,
}

#[async_trait]
impl Operator for PostgresFetch {
    fn freshness(&self) -> Freshness {
        Freshness::Never
    }

    async fn execute(&self, ctx: &ExecContext, _inputs: Inputs) -> Result<Table, OpError> {
        let pool = self.db.pool(ctx);
        let conn = pool.get().await?;
        let client = conn.client();
        let context = format!("{NAME}: the query on {} failed", self.db.shown());
        let statement = client
            .prepare(&self.query)
            .await
            .map_err(|e| error(&context, &e))?;

        let expected = statement.params();
        if expected.len() != self.params.len() {
            return Err(OpError::Invalid(format!(
                "{NAME}: the query uses {} parameter{} ($1 … ${}) but params gives {}; \
                 give one value per $n",
                expected.len(),
                if expected.len() == 1 { "" } else { "s" },
                expected.len(),
                self.params.len()
            )));
        }
        let bound = self
            .params
            .iter()
            .zip(expected)
            .enumerate()
            .map(|(i, (v, t))| {
                Bound::convert(v, t)
                    .map_err(|e| OpError::Invalid(format!("{NAME}: params[{i}] (${}): {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut fields = Vec::with_capacity(statement.columns().len());
        for c in statement.columns() {
            let t = types::arrow_type(c.type_()).ok_or_else(|| {
                OpError::Invalid(format!(
                    "{NAME}: column '{}' has type {}, which fetch.postgres cannot read; cast it \
                     in the query, e.g. {}::text",
                    c.name(),
                    c.type_(),
                    c.name()
                ))
            })?;
            fields.push(Field::new(c.name(), t, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let types: Vec<_> = statement
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();

        let rows = client
            .query_raw(&statement, bound.iter().map(|b| b as &dyn ToSql))
            .await
            .map_err(|e| error(&context, &e))?;
        let mut rows = Box::pin(rows);
        let mut batches = Vec::new();
        let mut held = Vec::new();
        let mut pending = Vec::with_capacity(BATCH_ROWS);
        loop {
            let row = rows.try_next().await.map_err(|e| error(&context, &e))?;
            let end = row.is_none();
            pending.extend(row);
            if pending.len() == BATCH_ROWS || (end && !pending.is_empty()) {
                // Turning rows into columns is CPU work: off the async
                // threads, inside the run's thread budget.
                let chunk = std::mem::replace(&mut pending, Vec::with_capacity(BATCH_ROWS));
                let (schema, types) = (schema.clone(), types.clone());
                let batch = ctx
                    .run_cpu(1, move |_, _| {
                        let mut columns = Columns::new(schema, types);
                        for row in &chunk {
                            columns.push(row)?;
                        }
                        columns.finish(chunk.len())
                    })
                    .await?;
                // A result larger than the run's memory limit fails with
                // the limit named, rather than swelling the process.
                held.push(ctx.reserve(NAME, batch.get_array_memory_size())?);
                batches.push(batch);
            }
            if end {
                break;
            }
        }
        drop(rows);
        drop(held);
        conn.done();
        let table = Table::new(schema, batches);
        tracing::debug!(database = %self.db.shown(), rows = table.num_rows(), "Fetched from Postgres");
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_cannot_be_bound_and_queries_cannot_be_empty() {
        let build = |v: serde_json::Value| {
            serde_json::from_value::<PostgresFetchParams>(v)
                .unwrap()
                .build()
                .unwrap_err()
        };
        let e = build(
            serde_json::json!({"url": "postgres://h/db", "query": "SELECT $1", "params": [[1]]}),
        );
        assert_eq!(e.path, ["params", "0"]);
        let e = build(serde_json::json!({"url": "postgres://h/db", "query": " "}));
        assert_eq!(e.path, ["query"]);
    }
}
