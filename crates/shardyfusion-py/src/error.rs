//! Rust errors as the Python exception classes of `shardyfusion_rs.errors` (one per error
//! kind, one base class, `retryable` and `manifest_ref` attributes).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use shardyfusion::Error;

/// The Python exception for `e`: the class named after its kind (`ConfigValidationError`…).
pub(crate) fn to_py(e: Error) -> PyErr {
    Python::attach(|py| match raise_as(py, &e) {
        Ok(err) => err,
        Err(import) => PyRuntimeError::new_err(format!(
            "{e} (and shardyfusion_rs.errors could not be imported: {import})"
        )),
    })
}

fn raise_as(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let module = py.import("shardyfusion_rs.errors")?;
    let class = module.getattr(format!("{}Error", e.kind().name()))?;
    let value = class.call1((e.message(),))?;
    value.setattr("retryable", e.is_retryable())?;
    if let Some(r) = e.manifest_ref() {
        value.setattr("manifest_ref", r)?;
    }
    Ok(PyErr::from_value(value))
}

/// `Result<T, Error>` into a Python result.
pub(crate) trait IntoPy<T> {
    /// Map the error to its Python exception.
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for shardyfusion::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
