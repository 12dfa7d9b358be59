//! How `sink.postgres` moves rows: the statements around the load, the
//! binary COPY itself (encoding on a CPU thread while the connection
//! sends), and last-wins deduplication of keys in Arrow.
//!
//! Rows are copied straight into the table when nothing can conflict and
//! the table's column types are the ones the rows travel as: an append, or
//! an upsert into an empty table. Otherwise they are copied into a
//! temporary staging table, and statements move them: an `INSERT …
//! SELECT` that casts to the table's types, or for an upsert an `UPDATE`
//! of the keys already there (only rows whose values differ) and an
//! `INSERT` of the others. The upsert holds a lock that lets readers read
//! but makes other writers of the table wait, so no key can appear
//! between the two statements; it needs no unique index.

use bytes::{Bytes, BytesMut};
use datafusion::arrow::array::Array;
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use futures::SinkExt;
use pgpq::ArrowToPostgresBinaryEncoder;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::NAME;
use crate::shared::postgres::quote_ident;
use crate::shared::postgres::types::{PgColumn, idents};
use crate::{ExecContext, OpError};

/// The staging table; temporary, so private to the connection, and
/// dropped at commit.
pub const STAGING: &str = "quiver_staging";

/// Opens the transaction. Timestamps are read as UTC whatever the
/// server's zone, and the joins of an upsert get the memory to hash.
pub const BEGIN: &str = "BEGIN; SET LOCAL TIME ZONE 'UTC'; SET LOCAL work_mem = '256MB'; ";

/// Encoded COPY data sent to the server at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// Rows per batch of sorted input.
const BATCH_ROWS: usize = 8192;

/// Chunks encoded ahead of the network: bounds the memory a load adds.
const CHUNKS_AHEAD: usize = 4;

/// The statements of one load into `table` (quoted).
pub struct Load<'a> {
    pub table: &'a str,
    pub columns: &'a [PgColumn],
    pub key: &'a [String],
}

impl Load<'_> {
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// Readers read on; other writers of the table wait for the commit.
    pub fn lock(&self) -> String {
        format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE; ", self.table)
    }

    pub fn staging(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), c.stored))
            .collect();
        format!(
            "CREATE TEMP TABLE {STAGING} ({}) ON COMMIT DROP",
            columns.join(", ")
        )
    }

    /// Every staged row into the table, cast to its column types.
    pub fn insert_all(&self) -> String {
        let list = idents(&self.names());
        format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM {STAGING}",
            self.table
        )
    }

    /// The staged rows whose key the table has update it (those that
    /// change something); the others are inserted.
    pub fn upsert(&self) -> String {
        let same_key = |a: &str, b: &str| {
            self.key
                .iter()
                .map(|k| format!("{a}.{0} = {b}.{0}", quote_ident(k)))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let values: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| !self.key.contains(n))
            .map(|n| quote_ident(&n))
            .collect();
        let list = idents(&self.names());
        let insert = format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM {STAGING} AS s WHERE NOT EXISTS \
             (SELECT 1 FROM {table} AS t WHERE {})",
            same_key("t", "s"),
            table = self.table,
        );
        if values.is_empty() {
            return insert;
        }
        let set: Vec<String> = values.iter().map(|v| format!("{v} = s.{v}")).collect();
        let old: Vec<String> = values.iter().map(|v| format!("t.{v}")).collect();
        let new: Vec<String> = values.iter().map(|v| format!("s.{v}")).collect();
        format!(
            "UPDATE {} AS t SET {} FROM {STAGING} AS s WHERE {} AND ({}) IS DISTINCT FROM ({}); \
             {insert}",
            self.table,
            set.join(", "),
            same_key("t", "s"),
            old.join(", "),
            new.join(", "),
        )
    }
}

/// The table's columns and their types (`format_type`'s names), in order;
/// none when there is no such table.
pub async fn target_columns(
    client: &Client,
    table: &str,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&table],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn is_empty(client: &Client, table: &str) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), &[])
        .await?;
    Ok(row.get(0))
}

/// How a COPY failed: the server said no, or the encoding did.
pub enum Loaded {
    Postgres(tokio_postgres::Error),
    Other(OpError),
}

/// Streams `batches` into a started COPY: a CPU thread encodes chunks
/// while the connection sends the ones before, a few chunks apart.
pub async fn copy_batches(
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

/// `batches` in key order, without the rows whose key appears again
/// later: for each key, the last row stays. Sorted, the table's index
/// takes the rows at its right edge one after another, which a server
/// does markedly faster than inserts all over the index.
pub fn last_wins(batches: &[RecordBatch], key: &[String]) -> Result<Vec<RecordBatch>, OpError> {
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

    // Keys already strictly increasing (bars by symbol and time, read in
    // order) are sorted and unique.
    let mut previous = None;
    let increasing = rows.iter().flat_map(|rows| rows.iter()).all(|row| {
        let ok = previous.is_none_or(|p| p < row);
        previous = Some(row);
        ok
    });
    if increasing {
        return Ok(batches.to_vec());
    }

    let mut order: Vec<(usize, usize)> = rows
        .iter()
        .enumerate()
        .flat_map(|(b, rows)| (0..rows.num_rows()).map(move |r| (b, r)))
        .collect();
    // Stable: rows of one key stay in the input's order, the last last.
    order.sort_by(|x, y| rows[x.0].row(x.1).cmp(&rows[y.0].row(y.1)));
    let same = |x: (usize, usize), y: (usize, usize)| rows[x.0].row(x.1) == rows[y.0].row(y.1);
    let kept: Vec<(usize, usize)> = (0..order.len())
        .filter(|&i| i + 1 == order.len() || !same(order[i], order[i + 1]))
        .map(|i| order[i])
        .collect();
    kept.chunks(BATCH_ROWS)
        .map(|chunk| {
            let columns = (0..schema.fields().len())
                .map(|c| {
                    let arrays: Vec<&dyn Array> =
                        batches.iter().map(|b| b.column(c).as_ref()).collect();
                    interleave(&arrays, chunk)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}
