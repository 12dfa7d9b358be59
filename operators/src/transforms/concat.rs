//! `transform.concat`: its inputs one after another, as one table. The
//! engine puts one in place of a node split into date partitions, so that
//! consumers reading the whole range get the days in order.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operator::OpParams;
use crate::{Arity, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

/// No parameters: the inputs' order is the output's.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcatParams {}

impl OpParams for ConcatParams {
    const NAME: &'static str = "transform.concat";
    const DOC: &'static str = "Concatenates its inputs, in the order they are listed, into one \
        table; every input must have the same columns. Shares the inputs' buffers, copying \
        nothing. `partition_by: date` puts one in place of a partitioned node, over its days.";
    const WORKLOAD: Workload = Workload::Io;
    const INPUTS: Arity = Arity::AtLeast(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        Ok(Arc::new(Concat))
    }
}

#[derive(Debug)]
struct Concat;

#[async_trait]
impl Operator for Concat {
    async fn execute(&self, _ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let mut parts = inputs.iter();
        let first = parts.next().ok_or_else(|| {
            OpError::Invalid(format!("{} needs at least one input", ConcatParams::NAME))
        })?;
        let schema = first.table.schema().clone();
        let mut batches = first.table.batches().to_vec();
        for input in parts {
            if input.table.num_rows() == 0 && input.table.batches().is_empty() {
                continue;
            }
            if input.table.schema().fields() != schema.fields() {
                return Err(OpError::Invalid(format!(
                    "{}: input '{}' has columns ({}) where '{}' has ({})",
                    ConcatParams::NAME,
                    input.name,
                    names(input.table.schema()),
                    first.name,
                    names(&schema)
                )));
            }
            batches.extend(input.table.batches().iter().cloned());
        }
        Ok(Table::new(schema, batches))
    }

    fn worth_storing(&self) -> bool {
        false
    }
}

fn names(schema: &datafusion::arrow::datatypes::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;
    use crate::Input;

    fn table(values: &[i64]) -> Arc<Table> {
        let batch =
            RecordBatch::try_from_iter([("n", Arc::new(Int64Array::from(values.to_vec())) as _)])
                .unwrap();
        Arc::new(Table::from_batch(batch))
    }

    fn input(name: &str, table: Arc<Table>) -> Input {
        Input {
            name: name.into(),
            table,
        }
    }

    #[tokio::test]
    async fn keeps_the_inputs_order_and_refuses_other_columns() {
        let ctx = ExecContext::standalone();
        let out = Concat
            .execute(
                &ctx,
                Inputs(vec![input("a", table(&[1, 2])), input("b", table(&[3]))]),
            )
            .await
            .unwrap();
        let batch = out.concat().unwrap();
        let n = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(n.values(), &[1, 2, 3]);

        let other =
            RecordBatch::try_from_iter([("s", Arc::new(StringArray::from(vec!["x"])) as _)])
                .unwrap();
        let err = Concat
            .execute(
                &ctx,
                Inputs(vec![
                    input("a", table(&[1])),
                    input("b", Arc::new(Table::from_batch(other))),
                ]),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("input 'b' has columns (s Utf8)"),
            "{err}"
        );
    }
}
