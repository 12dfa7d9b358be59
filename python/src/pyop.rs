//! Operators written in Python: a function `(inputs, **params) -> table`
//! registered under a name, which pipelines compiled from Python name like
//! a built-in. It is merged when pure, retried on `quiver.TransientError`,
//! timed out and reported like any operator; the GIL is taken only for the
//! call and the table conversions around it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use quiver::operators::{
    Arity, Built, Effect, ExecContext, Inputs, OpError, Operator, OperatorDef, ParamError,
    Registry, Table as QTable, Workload,
};

use crate::table::{Table, import};

/// The Python operators registered in this process, by name.
fn registered() -> &'static Mutex<BTreeMap<String, Arc<PyOpDef>>> {
    static OPS: OnceLock<Mutex<BTreeMap<String, Arc<PyOpDef>>>> = OnceLock::new();
    OPS.get_or_init(Default::default)
}

/// The built-in operators and every Python operator registered so far.
pub fn registry() -> Registry {
    let mut registry = Registry::builtins();
    let ops = registered().lock().unwrap_or_else(|e| e.into_inner());
    for def in ops.values() {
        // Names were checked against the built-ins when registered.
        let _ = registry.register_def(def.clone());
    }
    registry
}

/// What the engine knows of a Python operator.
struct PyOpDef {
    name: &'static str,
    doc: &'static str,
    effect: Effect,
    arity: Arity,
    version: u32,
    /// The parameter names, and the defaults of those that have one.
    params: Vec<String>,
    defaults: serde_json::Map<String, serde_json::Value>,
    function: Arc<Py<PyAny>>,
}

impl OperatorDef for PyOpDef {
    fn name(&self) -> &'static str {
        self.name
    }
    fn doc(&self) -> &'static str {
        self.doc
    }
    fn effect(&self) -> Effect {
        self.effect
    }
    fn workload(&self) -> Workload {
        Workload::Cpu
    }
    fn arity(&self) -> Arity {
        self.arity
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn params_schema(&self) -> schemars::Schema {
        let properties: serde_json::Map<_, _> = self
            .params
            .iter()
            .map(|p| {
                let mut prop = serde_json::Map::new();
                if let Some(default) = self.defaults.get(p) {
                    prop.insert("default".into(), default.clone());
                }
                (p.clone(), serde_json::Value::Object(prop))
            })
            .collect();
        let required: Vec<&String> = self
            .params
            .iter()
            .filter(|p| !self.defaults.contains_key(*p))
            .collect();
        let schema = serde_json::json!({
            "title": self.name,
            "description": self.doc,
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        });
        schemars::Schema::try_from(schema).unwrap_or_default()
    }
    fn param_names(&self) -> Vec<String> {
        self.params.clone()
    }
    fn prepare(&self, params: serde_json::Value) -> Result<Built, ParamError> {
        let mut resolved = match params {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => serde_json::Map::new(),
            other => {
                return Err(ParamError::new(
                    &[],
                    format!("expected the parameters as a mapping, found {other}"),
                ));
            }
        };
        for (name, default) in &self.defaults {
            resolved
                .entry(name.clone())
                .or_insert_with(|| default.clone());
        }
        if let Some(missing) = self.params.iter().find(|p| !resolved.contains_key(*p)) {
            return Err(ParamError::new(
                &[missing],
                format!("{} needs parameter '{missing}'", self.name),
            ));
        }
        let params = serde_json::Value::Object(resolved);
        Ok(Built {
            operator: Arc::new(PyOp {
                name: self.name,
                function: self.function.clone(),
                params: params.clone(),
            }),
            params,
        })
    }
}

/// A Python operator with its parameters.
struct PyOp {
    name: &'static str,
    function: Arc<Py<PyAny>>,
    params: serde_json::Value,
}

impl std::fmt::Debug for PyOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PyOp({})", self.name)
    }
}

#[async_trait]
impl Operator for PyOp {
    async fn execute(&self, ctx: &ExecContext, inputs: Inputs) -> Result<QTable, OpError> {
        let function = self.function.clone();
        let params = self.params.clone();
        let name = self.name;
        // On a thread of the run's budget, off the async threads: a
        // timeout or a cancel stops waiting for it (Python code itself
        // cannot be interrupted, and its thread is given back when it ends).
        ctx.run_cpu(1, move |_, _| {
            Python::attach(|py| call(py, name, &function, &params, &inputs))
        })
        .await
    }
}

/// Calls the operator's function with the inputs as `pyarrow.Table`s and
/// the parameters as keywords; its result back as a quiver table.
fn call(
    py: Python<'_>,
    name: &str,
    function: &Py<PyAny>,
    params: &serde_json::Value,
    inputs: &Inputs,
) -> Result<QTable, OpError> {
    let run = || -> PyResult<QTable> {
        let pyarrow = py.import("pyarrow")?;
        let tables = PyDict::new(py);
        for input in inputs.iter() {
            let table = Bound::new(py, Table::new(input.table.clone()))?;
            tables.set_item(&input.name, pyarrow.call_method1("table", (table,))?)?;
        }
        let json = py.import("json")?;
        let kwargs = json.call_method1("loads", (params.to_string(),))?;
        let kwargs = kwargs.cast::<PyDict>()?;
        let out = function.bind(py).call((tables,), Some(kwargs))?;
        import(py, &out)
    };
    run().map_err(|e| python_error(py, name, e))
}

/// A Python exception as an operator error: `quiver.TransientError` may
/// succeed when retried, anything else will not. The message carries the
/// traceback.
fn python_error(py: Python<'_>, name: &str, e: PyErr) -> OpError {
    let transient = py
        .import("quiver")
        .and_then(|m| m.getattr("TransientError"))
        .is_ok_and(|t| e.get_type(py).is_subclass(&t).unwrap_or(false));
    let traceback = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (e.get_type(py), e.value(py), e.traceback(py)),
            )
        })
        .and_then(|lines| {
            let empty = pyo3::types::PyString::new(py, "");
            empty.call_method1("join", (lines,))
        })
        .and_then(|text| text.extract::<String>())
        .unwrap_or_else(|_| e.to_string());
    let message = format!("Python operator {name} raised {}", traceback.trim_end());
    OpError::Source { message, transient }
}

/// Registers `function` as operator `name` (see `quiver.operator`).
#[pyfunction]
#[pyo3(signature = (name, function, pure, version, doc, params, defaults_json, inputs = None))]
#[allow(clippy::too_many_arguments)]
pub fn register_operator(
    name: String,
    function: Bound<'_, PyAny>,
    pure: bool,
    version: u32,
    doc: String,
    params: Vec<String>,
    defaults_json: String,
    inputs: Option<usize>,
) -> PyResult<()> {
    if quiver::operators::registry().get(&name).is_some() {
        return Err(PyValueError::new_err(format!(
            "'{name}' is a built-in operator; choose another name"
        )));
    }
    if !function.is_callable() {
        return Err(PyValueError::new_err(format!(
            "operator '{name}': expected a function, got {}",
            function.get_type().name()?
        )));
    }
    let defaults = match serde_json::from_str(&defaults_json) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            return Err(PyValueError::new_err(format!(
                "operator '{name}': parameter defaults must be JSON values (numbers, strings, \
                 lists, mappings)"
            )));
        }
    };
    let def = PyOpDef {
        name: Box::leak(name.clone().into_boxed_str()),
        doc: Box::leak(doc.into_boxed_str()),
        effect: if pure { Effect::Pure } else { Effect::Sink },
        arity: inputs.map_or(Arity::AtLeast(0), |n| {
            if n == 0 {
                Arity::None
            } else {
                Arity::Exactly(n)
            }
        }),
        version,
        params,
        defaults,
        function: Arc::new(function.unbind()),
    };
    // Registering a name again (a notebook cell run twice) replaces it.
    registered()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name, Arc::new(def));
    Ok(())
}
