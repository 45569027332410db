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
    let value = class.call1((readable(e.message()),))?;
    value.setattr("retryable", e.is_retryable())?;
    if let Some(r) = e.manifest_ref() {
        value.setattr("manifest_ref", r)?;
    }
    Ok(PyErr::from_value(value))
}

/// The message without the Arrow C stream's wrapping of a Python input's exception
/// ("C Data interface error: … Producer error: Invalid: <message>. Detail: Python exception: …"):
/// the Python exception itself is the error's `__cause__` where the caller's input raised it.
fn readable(message: &str) -> String {
    const PRODUCER: &str = "Producer error: ";
    let Some(at) = message.find(PRODUCER) else {
        return message.to_owned();
    };
    let head = message[..at]
        .split("C Data interface error")
        .next()
        .unwrap_or_default();
    let mut inner = &message[at + PRODUCER.len()..];
    for status in ["Invalid: ", "IOError: ", "TypeError: ", "UnknownError: "] {
        inner = inner.strip_prefix(status).unwrap_or(inner);
    }
    let inner = inner
        .split(". Detail: Python exception")
        .next()
        .unwrap_or(inner);
    format!("{head}{inner}")
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
