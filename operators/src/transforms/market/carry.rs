//! `index.carry`: a session of an index computed on its own, from a base
//! level, moved onto the previous session's close.
//!
//! The level is linear in the divisor, so a session's whole path scales
//! by one factor: previous close / the level the session opened at. The
//! heavy work, the level path through every trade, needs nothing from the
//! day before and runs for every day at once; only this rescaling is a
//! chain from day to day.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch};
use datafusion::arrow::compute::kernels::numeric::{div, mul};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::level::previous_close;
use super::{column, input};
use crate::operator::OpParams;
use crate::{Arity, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

/// No parameters.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CarryParams {}

impl OpParams for CarryParams {
    const NAME: &'static str = "index.carry";
    const DOC: &'static str = "Carries an index from one session to the next. Input `session` \
        is an `index.level` output computed without a previous session (it opens at its \
        `base`); the optional input `previous` is the carried index of the session before. \
        Every level of the session is scaled by previous close / base and the divisor by the \
        inverse, which is the index `index.level` computes with `previous` given, so the \
        level is continuous; the session's level path itself needs nothing from the day \
        before. Without `previous` the session passes through unchanged.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::AtLeast(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        Ok(Arc::new(Carry))
    }
}

#[derive(Debug)]
struct Carry;

#[async_trait]
impl Operator for Carry {
    async fn execute(&self, _ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let op = CarryParams::NAME;
        let session = input(&inputs, op, "session")?;
        if inputs.get("previous").is_none() {
            return Ok(Table::from_batch(session));
        }
        let previous = input(&inputs, op, "previous")?;
        let at = (op, "session");
        let dates: &Date32Array = column(&session, at, "date", "a date")?;
        let base: &Float64Array = column(&session, at, "base", "Float64")?;
        if session.num_rows() == 0 {
            return Ok(Table::from_batch(session));
        }
        let first = (0..dates.len())
            .map(|i| dates.value(i))
            .min()
            .unwrap_or_default();
        let close = previous_close(op, &previous, Some(first))?;
        // Where the input's first session opened.
        let opened = base.value(0);
        let factor = Float64Array::new_scalar(close / opened);
        let schema: SchemaRef = session.schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (field, array) in schema.fields().iter().zip(session.columns()) {
            let scaled = match (field.name().as_str(), field.data_type()) {
                ("open" | "high" | "low" | "close" | "base", DataType::Float64) => {
                    mul(array, &factor)?
                }
                ("divisor", DataType::Float64) => div(array, &factor)?,
                _ => array.clone(),
            };
            columns.push(scaled);
        }
        Ok(Table::from_batch(RecordBatch::try_new(schema, columns)?))
    }
}
