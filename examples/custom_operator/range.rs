//! `example.day_range`: a user-defined operator. It adds each day's range
//! as a percentage of the close, `(high - low) / close * 100`, and flags the
//! days whose range is at least `wide_pct`.
//!
//! Everything an operator needs is here: a parameters struct (its fields
//! become the node's `with:`, their docs `quiver ops` help), its
//! [`OpParams`] impl naming it, and the runtime [`Operator`].

use std::sync::Arc;

use async_trait::async_trait;
use quiver::operators::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use quiver::operators::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use quiver::operators::arrow::record_batch::RecordBatch;
use quiver::operators::{
    Arity, ExecContext, Inputs, OpError, OpParams, Operator, ParamError, Table, Workload,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `example.day_range`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DayRangeParams {
    /// A day whose range is at least this percentage of its close is
    /// flagged `wide`.
    ///
    /// ```yaml
    /// wide_pct: 4.0
    /// ```
    pub wide_pct: f64,
}

impl OpParams for DayRangeParams {
    const NAME: &'static str = "example.day_range";
    const DOC: &'static str = "Adds `range_pct`, the day's high-low range as a percentage of \
        its close, and `wide`, whether it is at least `wide_pct`. Takes one input with \
        `high`, `low` and `close` columns.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::Exactly(1);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        if !(self.wide_pct.is_finite() && self.wide_pct > 0.0) {
            return Err(ParamError::new(
                &["wide_pct"],
                format!(
                    "wide_pct must be a positive percentage, got {}",
                    self.wide_pct
                ),
            ));
        }
        Ok(Arc::new(DayRange {
            wide_pct: self.wide_pct,
        }))
    }
}

#[derive(Debug)]
struct DayRange {
    wide_pct: f64,
}

#[async_trait]
impl Operator for DayRange {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        // The compiler has checked there is exactly one input.
        let table = inputs.0[0].table.clone();
        let wide_pct = self.wide_pct;
        // CPU work goes through the context: it runs on the node's own
        // thread of the run's budget and can see cancellation.
        ctx.run_cpu(1, move |ctx, _threads| {
            let mut fields: Vec<Arc<Field>> = table.schema().fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new("range_pct", DataType::Float64, true)));
            fields.push(Arc::new(Field::new("wide", DataType::Boolean, true)));
            let schema = Arc::new(Schema::new(fields));
            let mut out = Vec::with_capacity(table.batches().len());
            for batch in table.batches() {
                ctx.check_cancelled()?;
                let column = |name: &str| {
                    let c = batch.column_by_name(name).ok_or_else(|| {
                        OpError::Invalid(format!("example.day_range: no column '{name}'"))
                    })?;
                    c.as_primitive_opt::<Float64Type>().cloned().ok_or_else(|| {
                        OpError::Invalid(format!("example.day_range: '{name}' is not Float64"))
                    })
                };
                let (high, low, close) = (column("high")?, column("low")?, column("close")?);
                let range: Float64Array = (0..batch.num_rows())
                    .map(|i| {
                        (high.is_valid(i) && low.is_valid(i) && close.is_valid(i))
                            .then(|| (high.value(i) - low.value(i)) / close.value(i) * 100.0)
                    })
                    .collect();
                let wide: BooleanArray = range.iter().map(|r| r.map(|r| r >= wide_pct)).collect();
                let mut columns = batch.columns().to_vec();
                columns.push(Arc::new(range) as ArrayRef);
                columns.push(Arc::new(wide) as ArrayRef);
                out.push(RecordBatch::try_new(schema.clone(), columns)?);
            }
            Ok(Table::new(schema, out))
        })
        .await
    }
}
