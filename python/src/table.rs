//! Tables across the boundary, through the Arrow PyCapsule interface: a
//! quiver table is an `ArrowArrayStream` whose arrays point at the same
//! buffers (pyarrow, Polars, pandas and DuckDB read it without a copy), and
//! anything that exports a stream becomes a quiver table the same way.

use std::ffi::CString;
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};
use quiver::operators::Table as QTable;
use quiver::operators::arrow::array::{Array, RecordBatchIterator, RecordBatchReader};
use quiver::operators::arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};

/// The capsule name the interface gives a stream.
const STREAM: &str = "arrow_array_stream";

/// A table a run produced, or one handed in from Python. Immutable; its
/// buffers are shared with every table read from it.
#[pyclass(module = "quiver._native", frozen)]
pub struct Table {
    pub(crate) inner: Arc<QTable>,
}

impl Table {
    pub fn new(inner: Arc<QTable>) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl Table {
    /// The table as an Arrow C stream in a PyCapsule (the Arrow PyCapsule
    /// interface): `pyarrow.table(t)` reads it without copying.
    /// A `requested_schema` other than the table's own is refused rather
    /// than cast.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let table = &self.inner;
        let batches: Vec<_> = table.batches().iter().cloned().map(Ok).collect();
        let reader = RecordBatchIterator::new(batches, table.schema().clone());
        let stream =
            FFI_ArrowArrayStream::new(Box::new(reader) as Box<dyn RecordBatchReader + Send>);
        let name = CString::new(STREAM).expect("no NUL in the name");
        // The capsule's pointer is the stream itself (the value sits at the
        // start of the capsule's contents); a consumer moves it out and
        // marks it released, and dropping a released stream does nothing.
        PyCapsule::new(py, stream, Some(name))
    }

    /// A quiver table from any object with `__arrow_c_stream__` (a
    /// `pyarrow.Table`, a Polars frame, a `RecordBatchReader`), its
    /// buffers shared.
    #[staticmethod]
    fn from_arrow(py: Python<'_>, data: Bound<'_, PyAny>) -> PyResult<Table> {
        Ok(Table::new(Arc::new(import(py, &data)?)))
    }

    /// Rows in the table.
    #[getter]
    fn num_rows(&self) -> usize {
        self.inner.num_rows()
    }

    /// Column names, in order.
    #[getter]
    fn column_names(&self) -> Vec<String> {
        self.inner
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The addresses of the buffers behind column `name`, batch by batch
    /// (validity buffer first where there is one): to see that a table
    /// read from this one shares its memory.
    fn buffer_addresses(&self, name: &str) -> PyResult<Vec<usize>> {
        let index = self
            .inner
            .schema()
            .index_of(name)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let mut out = Vec::new();
        for batch in self.inner.batches() {
            let data = batch.column(index).to_data();
            if let Some(nulls) = data.nulls() {
                out.push(nulls.buffer().as_ptr() as usize);
            }
            out.extend(data.buffers().iter().map(|b| b.as_ptr() as usize));
        }
        Ok(out)
    }

    fn __len__(&self) -> usize {
        self.inner.num_rows()
    }

    fn __repr__(&self) -> String {
        format!(
            "quiver.Table({} rows: {})",
            self.inner.num_rows(),
            self.column_names().join(", ")
        )
    }
}

/// Reads the stream `data` exports into a quiver table.
pub fn import(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<QTable> {
    if let Ok(table) = data.cast::<Table>() {
        return Ok((*table.get().inner).clone());
    }
    if !data.hasattr("__arrow_c_stream__")? {
        return Err(PyTypeError::new_err(format!(
            "expected an Arrow table (an object with __arrow_c_stream__, e.g. a pyarrow.Table), \
             got {}",
            data.get_type().name()?
        )));
    }
    let capsule = data.call_method1("__arrow_c_stream__", PyTuple::empty(py))?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let name = CString::new(STREAM).expect("no NUL in the name");
    let pointer = capsule.pointer_checked(Some(&name))?;
    // SAFETY: the capsule is named as the interface names a stream, so it
    // points at an ArrowArrayStream; `from_raw` moves it out and leaves a
    // released one behind, which the capsule's destructor then ignores.
    let reader = unsafe { ArrowArrayStreamReader::from_raw(pointer.as_ptr().cast()) }
        .map_err(|e| PyValueError::new_err(format!("cannot read the Arrow stream: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PyValueError::new_err(format!("cannot read the Arrow stream: {e}")))?;
    Ok(QTable::new(schema, batches))
}
