//! Assembling a node's inputs from the memoized outputs of its producers.
//!
//! A single-node input is the producer's `Arc<Table>` itself. A fan-in
//! (`node[*]`) is one table over all instances with the fan-out key as an
//! extra first column; its data columns are the producers' arrays, shared,
//! not copied — only the key column is new.

use std::sync::Arc;

use quiver_operators::arrow::array::{ArrayRef, StringArray};
use quiver_operators::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use quiver_operators::arrow::record_batch::RecordBatch;
use quiver_operators::{OpError, Table};

/// One table over `members` (key, output), with the key in column `key`.
/// An output that already has a column named `key` is taken as it is.
pub fn fan_in(key: &str, members: &[(String, Arc<Table>)]) -> Result<Table, OpError> {
    let Some(schema) = unified_schema(key, members)? else {
        return Ok(Table::new(
            Arc::new(Schema::new(vec![Field::new(key, DataType::Utf8, false)])),
            Vec::new(),
        ));
    };
    let mut batches = Vec::new();
    for (k, table) in members {
        for batch in table.batches() {
            if batch.schema().column_with_name(key).is_some() {
                batches.push(batch.clone().with_schema(schema.clone())?);
                continue;
            }
            let keys: ArrayRef = Arc::new(StringArray::from(vec![k.as_str(); batch.num_rows()]));
            let mut columns = Vec::with_capacity(batch.num_columns() + 1);
            columns.push(keys);
            columns.extend(batch.columns().iter().cloned());
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
    }
    Ok(Table::new(schema, batches))
}

/// The schema every instance must share, with the key column first.
fn unified_schema(
    key: &str,
    members: &[(String, Arc<Table>)],
) -> Result<Option<SchemaRef>, OpError> {
    let Some((first_key, first)) = members.first() else {
        return Ok(None);
    };
    let has_key = first.schema().column_with_name(key).is_some();
    let schema: SchemaRef = if has_key {
        first.schema().clone()
    } else {
        let mut fields = vec![Arc::new(Field::new(key, DataType::Utf8, false))];
        fields.extend(first.schema().fields().iter().cloned());
        Arc::new(Schema::new(fields))
    };
    for (k, table) in members {
        let same = table.schema().fields().len() == first.schema().fields().len()
            && table
                .schema()
                .fields()
                .iter()
                .zip(first.schema().fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !same {
            return Err(OpError::Invalid(format!(
                "instances of a fan-in must share one schema, but '{k}' has {:?} and '{first_key}' has {:?}",
                field_list(table.schema()),
                field_list(first.schema())
            )));
        }
    }
    Ok(Some(schema))
}

fn field_list(schema: &SchemaRef) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_operators::arrow::array::{Array, Float64Array};

    fn prices(values: &[f64]) -> Arc<Table> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "close",
            DataType::Float64,
            false,
        )]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(values.to_vec()))])
                .unwrap();
        Arc::new(Table::from_batch(batch))
    }

    #[test]
    fn adds_the_key_column_and_shares_the_data() {
        let a = prices(&[1.0, 2.0]);
        let b = prices(&[3.0]);
        let t = fan_in("symbol", &[("FPT".into(), a.clone()), ("VNM".into(), b)]).unwrap();
        assert_eq!(t.schema().field(0).name(), "symbol");
        assert_eq!(t.num_rows(), 3);
        let batch = t.concat().unwrap();
        let keys = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            keys.iter().flatten().collect::<Vec<_>>(),
            ["FPT", "FPT", "VNM"]
        );
        // The data column is the producer's array, not a copy.
        let original = a.batches()[0].column(0).to_data();
        let shared = t.batches()[0].column(1).to_data();
        assert_eq!(original.buffers()[0].as_ptr(), shared.buffers()[0].as_ptr());
    }

    #[test]
    fn rejects_instances_with_different_schemas() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "open",
            DataType::Float64,
            false,
        )]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![1.0]))]).unwrap();
        let other = Arc::new(Table::from_batch(batch));
        let err = fan_in(
            "symbol",
            &[("A".into(), prices(&[1.0])), ("B".into(), other)],
        )
        .unwrap_err();
        assert!(err.to_string().contains("share one schema"), "{err}");
    }
}
