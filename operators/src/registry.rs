//! The built-in operators, listed in one place.
//!
//! Adding an operator means writing its params struct, implementing
//! [`OpParams`] for it, and adding one line to [`builtins`].

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{Effect, Operator, ParamError, Workload};

/// What the engine knows about an operator before running it.
pub trait OperatorDef: Send + Sync {
    /// The name pipelines use in `op:`, e.g. `fetch.synthetic`.
    fn name(&self) -> &'static str;
    /// A paragraph for `quiver ops`.
    fn doc(&self) -> &'static str;
    fn effect(&self) -> Effect;
    fn workload(&self) -> Workload;
    /// The JSON schema of the operator's `with:` parameters; field docs
    /// become `quiver ops NAME` help.
    fn params_schema(&self) -> schemars::Schema;
    /// The parameter names the operator accepts.
    fn param_names(&self) -> Vec<String> {
        self.params_schema()
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
    /// Validates `params` (a JSON object) and builds the runtime operator.
    fn build(&self, params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError>;
}

/// The parameters struct of an operator: deserialized from the node's `with:`,
/// it builds the runtime operator.
pub trait OpParams: DeserializeOwned + JsonSchema + 'static {
    const NAME: &'static str;
    const DOC: &'static str;
    const EFFECT: Effect = Effect::Pure;
    const WORKLOAD: Workload;

    /// Checks what the types alone cannot and builds the operator.
    fn build(self) -> Result<Arc<dyn Operator>, ParamError>;
}

struct Def<P>(PhantomData<fn() -> P>);

impl<P: OpParams> OperatorDef for Def<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn doc(&self) -> &'static str {
        P::DOC
    }
    fn effect(&self) -> Effect {
        P::EFFECT
    }
    fn workload(&self) -> Workload {
        P::WORKLOAD
    }
    fn params_schema(&self) -> schemars::Schema {
        schemars::schema_for!(P)
    }
    fn build(&self, params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError> {
        let params: P = serde_path_to_error::deserialize(params).map_err(|e| {
            let path = e
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    _ => None,
                })
                .collect();
            ParamError {
                path,
                message: e.into_inner().to_string(),
            }
        })?;
        params.build()
    }
}

fn def<P: OpParams>() -> Box<dyn OperatorDef> {
    Box::new(Def::<P>(PhantomData))
}

/// Every built-in operator.
fn builtins() -> Vec<Box<dyn OperatorDef>> {
    vec![
        def::<crate::fetch_synthetic::SyntheticParams>(),
        def::<crate::fetch_csv::CsvParams>(),
        def::<crate::fetch_parquet::ParquetParams>(),
        def::<crate::fetch_http::HttpParams>(),
        def::<crate::transform_sql::SqlParams>(),
        def::<crate::resample::ResampleParams>(),
        def::<crate::align::AlignParams>(),
        def::<crate::features::FeaturesParams>(),
        def::<crate::sink_parquet::ParquetSinkParams>(),
        def::<crate::sink_csv::CsvSinkParams>(),
    ]
}

/// The operators a pipeline can name, by name.
pub struct Registry {
    ops: BTreeMap<&'static str, Box<dyn OperatorDef>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<&dyn OperatorDef> {
        self.ops.get(name).map(|d| d.as_ref())
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.ops.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn OperatorDef> {
        self.ops.values().map(|d| d.as_ref())
    }
}

/// The registry of built-in operators.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        ops: builtins().into_iter().map(|d| (d.name(), d)).collect(),
    })
}
