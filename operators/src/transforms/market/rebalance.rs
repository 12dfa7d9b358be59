//! `index.rebalance`: the components' weights in a free-float cap-weighted
//! index at a session's open, from the previous session's close (the
//! day's reference price), with every weight held at or under a cap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{column, date_text, input};
use crate::operator::OpParams;
use crate::{Arity, ExecContext, Inputs, OpError, Operator, ParamError, Table, Workload};

/// Parameters of `index.rebalance`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalanceParams {
    /// The largest weight one component may have, as a fraction: `0.10`
    /// holds every stock at or under 10% of the index. It must allow the
    /// weights to add up to 1: at least 1 / (number of components).
    ///
    /// ```yaml
    /// weight_cap: 0.10
    /// ```
    #[serde(default = "default_cap")]
    #[schemars(range(min = 0, max = 1))]
    pub weight_cap: f64,
}

fn default_cap() -> f64 {
    0.10
}

impl OpParams for RebalanceParams {
    const NAME: &'static str = "index.rebalance";
    const DOC: &'static str = "The weights of a free-float cap-weighted index at each session's \
        open. Input `prices` gives each component's reference price per date (the previous \
        close: `symbol`, `date`, `reference`), input `info` its `shares_outstanding` and \
        `free_float`. A component's free-float capitalisation is reference × shares × free \
        float; weights above `weight_cap` are capped and the excess shared among the others in \
        proportion to their capitalisation, again until none exceeds the cap. Outputs per date \
        and symbol: `reference`, `shares_outstanding`, `free_float`, `market_cap`, \
        `cap_factor` (1 for an uncapped stock, below 1 for a capped one) and `weight`.";
    const WORKLOAD: Workload = Workload::Cpu;
    const INPUTS: Arity = Arity::Exactly(2);

    fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
        if !(self.weight_cap > 0.0 && self.weight_cap <= 1.0) {
            return Err(ParamError::new(
                &["weight_cap"],
                format!(
                    "weight_cap {} is not a fraction in (0, 1]; e.g. 0.10 for 10%",
                    self.weight_cap
                ),
            ));
        }
        Ok(Arc::new(Rebalance {
            cap: self.weight_cap,
        }))
    }
}

#[derive(Debug)]
struct Rebalance {
    cap: f64,
}

/// The weights of components with free-float capitalisations `caps`, none
/// above `cap`: capped components get `cap`, the others share what is left
/// in proportion to their capitalisation; repeated until no share exceeds
/// the cap (each round caps at least one more component, so at most n
/// rounds).
pub(crate) fn capped_weights(caps: &[f64], cap: f64) -> Result<Vec<f64>, String> {
    let n = caps.len();
    if cap * (n as f64) < 1.0 - 1e-12 {
        return Err(format!(
            "a weight cap of {cap} cannot hold with {n} components: their weights must add up \
             to 1, so the cap must be at least 1/{n} ({:.4}); raise weight_cap or add components",
            1.0 / n as f64
        ));
    }
    let mut capped = vec![false; n];
    loop {
        let held = capped.iter().filter(|&&c| c).count();
        let left = 1.0 - cap * held as f64;
        let free: f64 = caps
            .iter()
            .zip(&capped)
            .filter(|(_, c)| !**c)
            .map(|(m, _)| m)
            .sum();
        let weights: Vec<f64> = caps
            .iter()
            .zip(&capped)
            .map(|(m, &c)| if c { cap } else { left * m / free })
            .collect();
        let over: Vec<usize> = (0..n).filter(|&i| !capped[i] && weights[i] > cap).collect();
        if over.is_empty() {
            return Ok(weights);
        }
        for i in over {
            capped[i] = true;
        }
    }
}

/// One component on one date.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Weight {
    pub date: i32,
    pub symbol: String,
    pub reference: f64,
    pub shares: i64,
    pub free_float: f64,
    pub market_cap: f64,
    pub cap_factor: f64,
    pub weight: f64,
}

impl Weight {
    /// Shares counted in the index: shares × free float × cap factor.
    pub fn index_shares(&self) -> f64 {
        self.shares as f64 * self.free_float * self.cap_factor
    }
}

/// The rebalance of every date in `references` ((symbol, date) →
/// reference price) with `info` (symbol → (shares, free float)).
pub(crate) fn rebalance(
    references: &BTreeMap<(i32, String), f64>,
    info: &HashMap<String, (i64, f64)>,
    cap: f64,
) -> Result<Vec<Weight>, String> {
    let dates: BTreeSet<i32> = references.keys().map(|(d, _)| *d).collect();
    let mut out = Vec::with_capacity(references.len());
    for date in dates {
        let day: Vec<(&String, f64)> = references
            .range((date, String::new())..(date + 1, String::new()))
            .map(|((_, s), r)| (s, *r))
            .collect();
        let missing: Vec<&str> = day
            .iter()
            .filter(|(s, _)| !info.contains_key(*s))
            .map(|(s, _)| s.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "input 'info' has no shares and free float for {}",
                missing.join(", ")
            ));
        }
        let mut caps = Vec::with_capacity(day.len());
        for (symbol, reference) in &day {
            let (shares, free_float) = info[*symbol];
            let m = reference * shares as f64 * free_float;
            if !(m > 0.0 && m.is_finite()) {
                return Err(format!(
                    "{symbol} on {}: reference {reference} × shares {shares} × free float \
                     {free_float} is not a positive capitalisation",
                    date_text(date)
                ));
            }
            caps.push(m);
        }
        let weights = capped_weights(&caps, cap)?;
        let top = weights
            .iter()
            .zip(&caps)
            .map(|(w, m)| w / m)
            .fold(f64::MIN, f64::max);
        for (((symbol, reference), m), w) in day.iter().zip(&caps).zip(&weights) {
            let (shares, free_float) = info[*symbol];
            out.push(Weight {
                date,
                symbol: symbol.to_string(),
                reference: *reference,
                shares,
                free_float,
                market_cap: *m,
                cap_factor: (w / m) / top,
                weight: *w,
            });
        }
    }
    Ok(out)
}

pub(crate) fn schema() -> SchemaRef {
    let f = |name: &str, ty: DataType| Field::new(name, ty, false);
    Arc::new(Schema::new(vec![
        f("date", DataType::Date32),
        f("symbol", DataType::Utf8),
        f("reference", DataType::Float64),
        f("shares_outstanding", DataType::Int64),
        f("free_float", DataType::Float64),
        f("market_cap", DataType::Float64),
        f("cap_factor", DataType::Float64),
        f("weight", DataType::Float64),
    ]))
}

/// The weights back from their table (`index.rebalance`'s output).
pub(crate) fn read(batch: &RecordBatch, op: &str, name: &str) -> Result<Vec<Weight>, OpError> {
    let at = (op, name);
    let date: &Date32Array = column(batch, at, "date", "a date")?;
    let symbol: &StringArray = column(batch, at, "symbol", "text")?;
    let reference: &Float64Array = column(batch, at, "reference", "Float64")?;
    let shares: &Int64Array = column(batch, at, "shares_outstanding", "Int64")?;
    let free_float: &Float64Array = column(batch, at, "free_float", "Float64")?;
    let market_cap: &Float64Array = column(batch, at, "market_cap", "Float64")?;
    let cap_factor: &Float64Array = column(batch, at, "cap_factor", "Float64")?;
    let weight: &Float64Array = column(batch, at, "weight", "Float64")?;
    Ok((0..batch.num_rows())
        .map(|i| Weight {
            date: date.value(i),
            symbol: symbol.value(i).to_string(),
            reference: reference.value(i),
            shares: shares.value(i),
            free_float: free_float.value(i),
            market_cap: market_cap.value(i),
            cap_factor: cap_factor.value(i),
            weight: weight.value(i),
        })
        .collect())
}

#[async_trait]
impl Operator for Rebalance {
    async fn execute(&self, _ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError> {
        let op = RebalanceParams::NAME;
        let prices = input(&inputs, op, "prices")?;
        let at = (op, "prices");
        let symbol: &StringArray = column(&prices, at, "symbol", "text")?;
        let date: &Date32Array = column(&prices, at, "date", "a date")?;
        let reference: &Float64Array = column(&prices, at, "reference", "Float64")?;
        let mut references = BTreeMap::new();
        for i in 0..prices.num_rows() {
            let key = (date.value(i), symbol.value(i).to_string());
            if references.insert(key, reference.value(i)).is_some() {
                return Err(OpError::Invalid(format!(
                    "{op}: input 'prices' has two rows for {} on {}",
                    symbol.value(i),
                    date_text(date.value(i))
                )));
            }
        }

        let info = input(&inputs, op, "info")?;
        let at = (op, "info");
        let symbol: &StringArray = column(&info, at, "symbol", "text")?;
        let shares: &Int64Array = column(&info, at, "shares_outstanding", "Int64")?;
        let free_float: &Float64Array = column(&info, at, "free_float", "Float64")?;
        let info: HashMap<String, (i64, f64)> = (0..info.num_rows())
            .map(|i| {
                (
                    symbol.value(i).to_string(),
                    (shares.value(i), free_float.value(i)),
                )
            })
            .collect();

        let weights = rebalance(&references, &info, self.cap)
            .map_err(|message| OpError::Invalid(format!("{op}: {message}")))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Date32Array::from_iter_values(
                weights.iter().map(|w| w.date),
            )),
            Arc::new(StringArray::from_iter_values(
                weights.iter().map(|w| w.symbol.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(
                weights.iter().map(|w| w.reference),
            )),
            Arc::new(Int64Array::from_iter_values(
                weights.iter().map(|w| w.shares),
            )),
            Arc::new(Float64Array::from_iter_values(
                weights.iter().map(|w| w.free_float),
            )),
            Arc::new(Float64Array::from_iter_values(
                weights.iter().map(|w| w.market_cap),
            )),
            Arc::new(Float64Array::from_iter_values(
                weights.iter().map(|w| w.cap_factor),
            )),
            Arc::new(Float64Array::from_iter_values(
                weights.iter().map(|w| w.weight),
            )),
        ];
        Ok(Table::from_batch(RecordBatch::try_new(schema(), columns)?))
    }

    fn output_schema(&self) -> Option<SchemaRef> {
        Some(schema())
    }
}
