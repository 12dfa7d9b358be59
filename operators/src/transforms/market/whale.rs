//! `whale.aggregate`: the whale footprint across an index's components,
//! per candle: total net whale flow, whale share weighted by the index
//! weights, and breadth (how many components whales net-bought).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{column, date_text, input, rebalance, ts_field};
use crate::operator::OpParams;
use crate::{Arity, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

/// No parameters: the components are those in `weights`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhaleParams {}

impl OpParams for WhaleParams {
    const NAME: &'static str = "whale.aggregate";
    const DOC: &'static str = "The whale footprint across an index, per candle. Input \
        `features` holds the components' candles from `features.intraday` (`symbol`, `date`, \
        `bar`, `net_whale_flow`, `whale_share`), input `weights` the day's index weights from \
        `index.rebalance`. Outputs per candle any component traded in: `net_whale_flow` (the \
        sum over components), `whale_share` (the components' whale shares weighted by their \
        index weight; a component without trades in the candle adds 0), `net_buyers` \
        (components with a positive net whale flow), `symbols` (the components that day, as \
        many as the run has) and `breadth` (net_buyers / symbols).";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::Exactly(2);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        Ok(Arc::new(Whale))
    }
}

#[derive(Debug)]
struct Whale;

/// One candle of the aggregate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Flow {
    pub net_whale_flow: f64,
    pub whale_share: f64,
    pub net_buyers: i64,
    pub symbols: i64,
}

pub(crate) fn schema(zone: &Option<Arc<str>>) -> SchemaRef {
    let f = |name: &str, ty: DataType| Field::new(name, ty, false);
    Arc::new(Schema::new(vec![
        f("date", DataType::Date32),
        ts_field("bar", zone),
        f("net_whale_flow", DataType::Float64),
        f("whale_share", DataType::Float64),
        f("net_buyers", DataType::Int64),
        f("symbols", DataType::Int64),
        f("breadth", DataType::Float64),
    ]))
}

#[async_trait]
impl Operator for Whale {
    async fn execute(&self, _ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let op = WhaleParams::NAME;
        let weights = rebalance::read(&input(&inputs, op, "weights")?, op, "weights")?;
        // (date, symbol) → weight; date → components.
        let weight: HashMap<(i32, &str), f64> = weights
            .iter()
            .map(|w| ((w.date, w.symbol.as_str()), w.weight))
            .collect();
        let mut symbols: HashMap<i32, i64> = HashMap::new();
        for w in &weights {
            *symbols.entry(w.date).or_default() += 1;
        }

        let features = input(&inputs, op, "features")?;
        let at = (op, "features");
        let symbol: &StringArray = column(&features, at, "symbol", "text")?;
        let date: &Date32Array = column(&features, at, "date", "a date")?;
        let bar: &TimestampMillisecondArray =
            column(&features, at, "bar", "a millisecond timestamp")?;
        let net: &Float64Array = column(&features, at, "net_whale_flow", "Float64")?;
        let share: &Float64Array = column(&features, at, "whale_share", "Float64")?;
        let mut flows: BTreeMap<(i32, i64), Flow> = BTreeMap::new();
        for i in 0..features.num_rows() {
            let (day, s) = (date.value(i), symbol.value(i));
            let Some(w) = weight.get(&(day, s)) else {
                return Err(OpError::Invalid(format!(
                    "{op}: {s} has candles on {} but no index weight in 'weights' that day",
                    date_text(day)
                )));
            };
            let flow = flows.entry((day, bar.value(i))).or_insert_with(|| Flow {
                symbols: symbols[&day],
                ..Flow::default()
            });
            flow.net_whale_flow += net.value(i);
            flow.whale_share += w * share.value(i);
            flow.net_buyers += i64::from(net.value(i) > 0.0);
        }

        let zone = match features.schema().field_with_name("bar")?.data_type() {
            DataType::Timestamp(_, zone) => zone.clone(),
            _ => None,
        };
        let f64s = |get: fn(&Flow) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(flows.values().map(get)))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from_iter_values(flows.keys().map(|k| k.0))),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(flows.keys().map(|k| k.1))
                    .with_timezone_opt(zone.clone()),
            ),
            f64s(|f| f.net_whale_flow),
            f64s(|f| f.whale_share),
            Arc::new(Int64Array::from_iter_values(
                flows.values().map(|f| f.net_buyers),
            )),
            Arc::new(Int64Array::from_iter_values(
                flows.values().map(|f| f.symbols),
            )),
            f64s(|f| f.net_buyers as f64 / f.symbols as f64),
        ];
        Ok(Table::from_batch(RecordBatch::try_new(
            schema(&zone),
            columns,
        )?))
    }
}
