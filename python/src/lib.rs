//! `quiver._native`: the Rust side of the Python package. Compiles
//! pipelines, renders and runs plans with the GIL released, and hands
//! tables to Python through the Arrow PyCapsule interface, sharing their
//! buffers. The Python package (`python/quiver/`) wraps it in Python's
//! idiom; this module keeps to what needs Rust.

mod parts;
mod plan;
mod pyop;
mod table;

use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use quiver::compile::{Options, Override, compile_file_with_options};
use quiver::diag::{Diagnostics, did_you_mean};

pub use plan::{Plan, Run};
pub use table::Table;

create_exception!(
    _native,
    PipelineError,
    pyo3::exceptions::PyValueError,
    "A pipeline that does not compile; `diagnostics` holds every problem found."
);

/// Compiles the pipeline file at `path` with parameter values `sets`
/// (`NAME=VALUE`, the value read as YAML, as `--set` takes them) over
/// those of the YAML file `params_file` (as `--params`).
#[pyfunction]
#[pyo3(signature = (path, sets = Vec::new(), merge = true, params_file = None))]
fn compile(
    py: Python<'_>,
    path: PathBuf,
    sets: Vec<String>,
    merge: bool,
    params_file: Option<PathBuf>,
) -> PyResult<Plan> {
    let mut overrides = match &params_file {
        Some(file) => {
            Override::read_file(file).map_err(|e| PyValueError::new_err(e.to_string()))?
        }
        None => Vec::new(),
    };
    for s in &sets {
        overrides.push(Override::parse_set(s).map_err(PyValueError::new_err)?);
    }
    let options = Options { merge };
    let compiled =
        py.detach(|| compile_file_with_options(&path, &overrides, &pyop::registry(), options));
    match compiled {
        Ok(plan) => Ok(Plan::new(plan)),
        Err(diags) => Err(pipeline_error(py, &diags)),
    }
}

/// One `PipelineError` carrying every diagnostic as a dict (file, line,
/// column, path, message); its text lists them as `quiver validate` does.
fn pipeline_error(py: Python<'_>, diags: &Diagnostics) -> PyErr {
    let cwd = std::env::current_dir().unwrap_or_default();
    let text: Vec<String> = diags
        .0
        .iter()
        .map(|d| d.display_relative(&cwd).to_string())
        .collect();
    let err = PipelineError::new_err(text.join("\n"));
    let list = PyList::empty(py);
    for d in &diags.0 {
        let item = PyDict::new(py);
        let fill = || -> PyResult<()> {
            item.set_item("file", d.file.display().to_string())?;
            item.set_item("line", d.pos.map(|p| p.line))?;
            item.set_item("column", d.pos.map(|p| p.col))?;
            item.set_item("path", &d.path)?;
            item.set_item("message", &d.message)?;
            list.append(&item)
        };
        if let Err(e) = fill() {
            return e;
        }
    }
    if let Err(e) = err.value(py).setattr("diagnostics", list) {
        return e;
    }
    err
}

/// The operators pipelines can name: name, summary, effect, workload,
/// version and the JSON Schema of their parameters (as JSON text).
#[pyfunction]
fn ops(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    for def in pyop::registry().iter() {
        let item = PyDict::new(py);
        item.set_item("name", def.name())?;
        item.set_item("doc", def.doc())?;
        item.set_item("effect", format!("{:?}", def.effect()).to_lowercase())?;
        item.set_item("workload", format!("{:?}", def.workload()).to_lowercase())?;
        item.set_item("version", def.version())?;
        item.set_item(
            "params_schema",
            serde_json::to_string(&def.params_schema()).unwrap_or_default(),
        )?;
        list.append(item)?;
    }
    Ok(list)
}

/// The description of operator `name`, or a KeyError naming the closest.
#[pyfunction]
fn op_doc(name: &str) -> PyResult<String> {
    let reg = pyop::registry();
    match reg.get(name) {
        Some(def) => Ok(def.doc().to_string()),
        None => Err(PyKeyError::new_err(format!(
            "unknown operator '{name}'{}",
            did_you_mean(name, reg.names())
        ))),
    }
}

/// Runs the `quiver` command with `argv` (the program name first), with the
/// GIL released; returns its exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    let code = py.detach(|| quiver::cli::main(argv));
    // `ExitCode` does not say its value: find the byte it was made from
    // (0, 1, 2, or 130 for a run stopped by Ctrl-C).
    (0..=u8::MAX)
        .find(|&c| std::process::ExitCode::from(c) == code)
        .unwrap_or(1)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(ops, m)?)?;
    m.add_function(wrap_pyfunction!(op_doc, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(pyop::register_operator, m)?)?;
    m.add_function(wrap_pyfunction!(parts::plan_parts, m)?)?;
    m.add_function(wrap_pyfunction!(parts::run_part, m)?)?;
    m.add_function(wrap_pyfunction!(parts::assemble, m)?)?;
    m.add_class::<Plan>()?;
    m.add_class::<parts::CachedRun>()?;
    m.add_class::<Run>()?;
    m.add_class::<Table>()?;
    m.add("PipelineError", m.py().get_type::<PipelineError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
