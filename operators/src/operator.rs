//! The operator API: what the engine knows about an operator before running
//! it ([`OperatorDef`]), the parameters struct that builds it ([`OpParams`]),
//! and the runtime object it builds ([`Operator`]).
//!
//! This module imports no operator: the registry and every operator depend
//! on it, never the other way round.

use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::ExecContext;
use crate::{Inputs, OpError, ParamError, Table};

/// What running an operator does to the world, which decides whether the
/// engine may merge two identical nodes into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Same parameters and inputs give the same output, and running it twice
    /// is wasted work: identical nodes are merged.
    Pure,
    /// Writes somewhere. Never merged; two sinks writing one target is an error.
    Sink,
}

/// The kind of work an operator does, which decides where the executor runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Mostly waiting on a network, a disk or a remote service. Any CPU work
    /// inside (parsing, encoding) goes through [`ExecContext::run_cpu`].
    Io,
    /// Mostly computing: holds one of the run's CPU threads while it runs.
    Cpu,
}

/// How many inputs an operator takes. A node with a different count is a
/// compile-time diagnostic, not a failure half-way through a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A source: no inputs.
    None,
    Exactly(usize),
    AtLeast(usize),
}

impl Arity {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::None => n == 0,
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
        }
    }
}

impl std::fmt::Display for Arity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match *self {
            Arity::None => f.write_str("no inputs"),
            Arity::Exactly(n) => write!(f, "exactly {n} input{}", plural(n)),
            Arity::AtLeast(n) => write!(f, "at least {n} input{}", plural(n)),
        }
    }
}

/// A runtime operator, built from validated parameters by [`OperatorDef::build`].
#[async_trait]
pub trait Operator: Send + Sync + std::fmt::Debug {
    /// Runs the operator over its inputs. CPU-heavy work stays inside the
    /// context's thread budget and stops soon after the context is cancelled.
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<Table, OpError>;

    /// For sinks: the location written, so the engine can reject two sinks
    /// writing the same place.
    fn sink_target(&self) -> Option<String> {
        None
    }

    /// The schema of the output, when it is known before running.
    fn output_schema(&self) -> Option<SchemaRef> {
        None
    }

    /// How long an output may be reused from the cache: for good when the
    /// parameters and inputs decide it (the default), a while for data
    /// that can still change (a live API), never for what must be read
    /// each time. A node's `cache:` setting overrides it.
    fn freshness(&self) -> Freshness {
        Freshness::Forever
    }

    /// Whether the cache stores the output. `false` for an operator that
    /// remakes its output from its inputs for less than loading it costs
    /// (`transform.concat` only lists its inputs' batches): a rerun loads
    /// the inputs and remakes it instead.
    fn worth_storing(&self) -> bool {
        true
    }

    /// What the output depends on besides the parameters and the inputs,
    /// as a text that changes when it does: for a file source, the files'
    /// names, sizes and modification times. Part of the cache key, so a
    /// changed file means a new key.
    fn fingerprint(&self) -> Result<Option<String>, OpError> {
        Ok(None)
    }
}

/// The parameters that bound a source's date range, so that the engine can
/// split the range into one node per trading day (`partition_by: date`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub start: &'static str,
    pub end: &'static str,
    /// Whether the day named by `end` is in the range (`fetch.synthetic`)
    /// or the range stops before it (`[start, end)`, the file sources).
    pub end_inclusive: bool,
}

/// How long a cached output stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Forever,
    /// Recomputed when the stored output is older than this.
    For(Duration),
    /// As `For(ttl)`, except that an output stored at or after
    /// `final_from` is kept for good: the data it was made from (a closed
    /// trading day) can no longer change.
    Until {
        ttl: Duration,
        final_from: std::time::SystemTime,
    },
    /// Never stored.
    Never,
}

/// An operator built from its parameters.
#[derive(Debug, Clone)]
pub struct Built {
    pub operator: Arc<dyn Operator>,
    /// The parameters as the operator reads them, every default filled in:
    /// `seed: 0` written out and `seed` left to its default give the same.
    pub params: serde_json::Value,
}

/// What the engine knows about an operator before running it.
pub trait OperatorDef: Send + Sync {
    /// The name pipelines use in `op:`, e.g. `fetch.synthetic`.
    fn name(&self) -> &'static str;
    /// A paragraph for `quiver ops`.
    fn doc(&self) -> &'static str;
    fn effect(&self) -> Effect;
    fn workload(&self) -> Workload;
    fn arity(&self) -> Arity;
    /// Bumped when the operator's output for the same parameters and
    /// inputs changes, so that outputs cached by an older version are not
    /// reused.
    fn version(&self) -> u32;
    /// The parameters bounding the operator's date range, if it reads one.
    fn date_range(&self) -> Option<DateRange> {
        None
    }
    /// Parameters that must be written as they are, with no `${…}`: SQL
    /// whose values are bound separately.
    fn verbatim(&self) -> &'static [&'static str] {
        &[]
    }
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
    /// Validates `params` (a JSON object) and builds the runtime operator,
    /// with the parameters as it reads them.
    fn prepare(&self, params: serde_json::Value) -> Result<Built, ParamError>;

    /// Validates `params` (a JSON object) and builds the runtime operator.
    fn build(&self, params: serde_json::Value) -> Result<Arc<dyn Operator>, ParamError> {
        Ok(self.prepare(params)?.operator)
    }
}

/// The parameters struct of an operator: deserialized from the node's `with:`,
/// it builds the runtime operator. Implementing it is all a new operator
/// needs; [`crate::Registry::register`] makes it available to pipelines.
pub trait OpParams: DeserializeOwned + Serialize + JsonSchema + 'static {
    const NAME: &'static str;
    const DOC: &'static str;
    const EFFECT: Effect = Effect::Pure;
    const WORKLOAD: Workload;
    const INPUTS: Arity;
    /// Bump it when the output for the same parameters and inputs changes
    /// (a fixed bug, a new column): cached outputs of older versions are
    /// then recomputed rather than reused.
    const VERSION: u32 = 1;
    /// The parameters that bound the dates it reads, for `partition_by: date`.
    const DATE_RANGE: Option<DateRange> = None;
    /// Parameters the engine must pass as written, refusing `${…}` in
    /// them (a query whose values go in a separate parameter).
    const VERBATIM: &'static [&'static str] = &[];

    /// Checks what the types alone cannot and builds the operator.
    fn build(self) -> Result<Arc<dyn Operator>, ParamError>;
}

/// The [`OperatorDef`] of a parameters struct.
pub(crate) struct Def<P> {
    params: PhantomData<fn() -> P>,
    /// The parameter names, from the schema once: a plan prepares
    /// hundreds of thousands of nodes.
    names: OnceLock<Vec<String>>,
}

impl<P: OpParams> Def<P> {
    pub(crate) fn new() -> Self {
        Self {
            params: PhantomData,
            names: OnceLock::new(),
        }
    }

    fn names(&self) -> &[String] {
        self.names.get_or_init(|| {
            self.params_schema()
                .get("properties")
                .and_then(|p| p.as_object())
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default()
        })
    }
}

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
    fn arity(&self) -> Arity {
        P::INPUTS
    }
    fn version(&self) -> u32 {
        P::VERSION
    }
    fn date_range(&self) -> Option<DateRange> {
        P::DATE_RANGE
    }
    fn verbatim(&self) -> &'static [&'static str] {
        P::VERBATIM
    }
    fn params_schema(&self) -> schemars::Schema {
        schemars::schema_for!(P)
    }
    fn param_names(&self) -> Vec<String> {
        self.names().to_vec()
    }
    fn prepare(&self, params: serde_json::Value) -> Result<Built, ParamError> {
        // Parameters structs that share fields through `#[serde(flatten)]`
        // cannot deny unknown fields themselves, so every one is checked here.
        if let Some(given) = params.as_object() {
            let names = self.names();
            if let Some(unknown) = given.keys().find(|k| !names.contains(k)) {
                // Worded as serde words it for the structs that deny them.
                let expected: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                return Err(ParamError {
                    path: vec![unknown.clone()],
                    message: format!(
                        "unknown field `{unknown}`, expected one of {}",
                        expected.join(", ")
                    ),
                });
            }
        }
        let parsed: Result<P, _> = serde_path_to_error::deserialize(&params);
        let parsed = parsed.map_err(|e| {
            let mut path: Vec<String> = e
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    _ => None,
                })
                .collect();
            let message = e.into_inner().to_string();
            if path.is_empty() {
                path.extend(flattened_culprit::<P>(&params, &message));
            }
            ParamError { path, message }
        })?;
        let resolved = serde_json::to_value(&parsed).map_err(|e| ParamError {
            path: Vec::new(),
            message: format!("the parameters cannot be written back as JSON: {e}"),
        })?;
        Ok(Built {
            operator: parsed.build()?,
            params: resolved,
        })
    }
}

/// The parameter an error without a path is about, if one is. serde
/// deserializes the fields of a `#[serde(flatten)]` struct only after the
/// whole map is read, so the path of an error in one of them is lost; the
/// culprit is the key without which that error does not occur. (An error
/// about the parameters as a whole, like a missing field, has none.)
fn flattened_culprit<P: DeserializeOwned>(
    params: &serde_json::Value,
    message: &str,
) -> Option<String> {
    let given = params.as_object()?;
    given
        .keys()
        .find(|key| {
            let mut without = given.clone();
            without.remove(key.as_str());
            match serde_json::from_value::<P>(serde_json::Value::Object(without)) {
                Ok(_) => true,
                Err(e) => e.to_string() != message,
            }
        })
        .cloned()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize, serde::Serialize, JsonSchema)]
    struct Shared {
        path: String,
        #[serde(default)]
        limit: Option<u32>,
    }

    #[derive(Deserialize, serde::Serialize, JsonSchema)]
    struct Flattened {
        #[serde(flatten)]
        shared: Shared,
        #[serde(default)]
        verbose: bool,
    }

    impl OpParams for Flattened {
        const NAME: &'static str = "test.flattened";
        const DOC: &'static str = "Parameters that share fields through flatten.";
        const WORKLOAD: Workload = Workload::Io;
        const INPUTS: Arity = Arity::None;

        fn build(self) -> Result<Arc<dyn Operator>, ParamError> {
            let _ = (self.shared.path, self.shared.limit, self.verbose);
            Err(ParamError::new(&["built"], "deserialized"))
        }
    }

    fn error_path(params: serde_json::Value) -> Vec<String> {
        Def::<Flattened>::new().build(params).unwrap_err().path
    }

    #[test]
    fn an_error_in_a_flattened_field_names_the_field() {
        assert_eq!(error_path(json!({ "path": 5 })), ["path"]);
        assert_eq!(
            error_path(json!({ "path": "x", "limit": "all" })),
            ["limit"]
        );
        assert_eq!(
            error_path(json!({ "path": "x", "verbose": 1 })),
            ["verbose"]
        );
        assert!(
            error_path(json!({ "limit": 3 })).is_empty(),
            "missing `path`"
        );
        assert_eq!(error_path(json!({ "path": "x" })), ["built"]);
    }
}
