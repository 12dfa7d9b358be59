//! The operators a pipeline can name.
//!
//! [`Registry::builtins`] is the one readable list of built-in operators. A
//! library user adds operators of their own with [`Registry::register`] and
//! compiles pipelines against that registry; YAML names them like built-ins.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use crate::operator::{Def, OpParams, OperatorDef};

/// Operators by name.
#[derive(Clone, Default)]
pub struct Registry {
    ops: BTreeMap<&'static str, Arc<dyn OperatorDef>>,
}

/// Registering a name that is already taken.
#[derive(Debug, Clone, thiserror::Error)]
#[error("an operator named '{0}' is already registered; choose another name")]
pub struct DuplicateOperator(pub String);

impl Registry {
    /// A registry with no operators.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every built-in operator.
    pub fn builtins() -> Self {
        use crate::{sinks, sources, transforms};
        let mut r = Self::empty();
        let defs: [Arc<dyn OperatorDef>; 18] = [
            def::<sources::synthetic::SyntheticParams>(),
            def::<sources::csv::CsvParams>(),
            def::<sources::parquet::ParquetParams>(),
            def::<sources::http::HttpParams>(),
            def::<sources::postgres::PostgresFetchParams>(),
            def::<transforms::sql::SqlParams>(),
            def::<transforms::resample::ResampleParams>(),
            def::<transforms::align::AlignParams>(),
            def::<transforms::features::FeaturesParams>(),
            def::<transforms::concat::ConcatParams>(),
            def::<transforms::market::intraday::IntradayParams>(),
            def::<transforms::market::rebalance::RebalanceParams>(),
            def::<transforms::market::level::LevelParams>(),
            def::<transforms::market::carry::CarryParams>(),
            def::<transforms::market::whale::WhaleParams>(),
            def::<sinks::parquet::ParquetSinkParams>(),
            def::<sinks::csv::CsvSinkParams>(),
            def::<sinks::postgres::PostgresSinkParams>(),
        ];
        for d in defs {
            r.register_def(d).expect("built-in names are distinct");
        }
        r
    }

    /// Adds the operator whose parameters struct is `P`.
    pub fn register<P: OpParams>(&mut self) -> Result<(), DuplicateOperator> {
        self.register_def(def::<P>())
    }

    /// Adds an operator described by hand.
    pub fn register_def(&mut self, def: Arc<dyn OperatorDef>) -> Result<(), DuplicateOperator> {
        let name = def.name();
        if self.ops.contains_key(name) {
            return Err(DuplicateOperator(name.to_string()));
        }
        self.ops.insert(name, def);
        Ok(())
    }

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

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

fn def<P: OpParams>() -> Arc<dyn OperatorDef> {
    Arc::new(Def::<P>::new())
}

/// The built-in operators, built once.
pub fn registry() -> &'static Registry {
    static BUILTINS: OnceLock<Registry> = OnceLock::new();
    BUILTINS.get_or_init(Registry::builtins)
}
