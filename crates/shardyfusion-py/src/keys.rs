//! Python keys, values and routing contexts to and from their Rust forms.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString};
use shardyfusion::cel::{CelValue, RoutingContext};
use shardyfusion::{Error, Key};

use crate::error::to_py;

/// A key from `int` (or any integer with `__index__`, such as NumPy's), `str` or `bytes`
/// (`bool` is refused: it is not a key type).
pub(crate) fn key(obj: &Bound<'_, PyAny>) -> PyResult<Key> {
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        return obj.extract::<i64>().map(Key::Int).map_err(|_| {
            to_py(Error::config(format!(
                "integer key {obj} is outside the signed 64-bit range"
            )))
        });
    }
    if obj.is_instance_of::<PyBool>() {
        return Err(to_py(Error::config(
            "a key must be int, str or bytes, got bool",
        )));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Key::Str(s.to_str()?.to_owned()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Key::Bytes(b.as_bytes().to_vec()));
    }
    if obj.hasattr("__index__")? {
        let int = obj.call_method0("__index__")?;
        return int.extract::<i64>().map(Key::Int).map_err(|_| {
            to_py(Error::config(format!(
                "integer key {int} is outside the signed 64-bit range"
            )))
        });
    }
    Err(to_py(Error::config(format!(
        "a key must be int, str or bytes, got {}",
        obj.get_type().name()?
    ))))
}

/// A list of keys.
pub(crate) fn keys(objs: &Bound<'_, PyAny>) -> PyResult<Vec<Key>> {
    objs.try_iter()?.map(|k| key(&k?)).collect()
}

/// A key as a Python object.
pub(crate) fn key_to_py<'py>(py: Python<'py>, k: &Key) -> PyResult<Bound<'py, PyAny>> {
    Ok(match k {
        Key::Int(i) => i.into_pyobject(py)?.into_any(),
        Key::Str(s) => PyString::new(py, s).into_any(),
        Key::Bytes(b) => PyBytes::new(py, b).into_any(),
    })
}

fn cel_value(obj: &Bound<'_, PyAny>) -> PyResult<CelValue> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(CelValue::Bool(obj.extract()?));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(CelValue::Int(i));
        }
        return obj.extract().map(CelValue::Uint).map_err(|_| {
            to_py(Error::config(format!(
                "routing context integer {obj} is outside the 64-bit range"
            )))
        });
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(CelValue::Double(obj.extract()?));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(CelValue::Str(s.to_str()?.to_owned()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(CelValue::Bytes(b.as_bytes().to_vec()));
    }
    Err(to_py(Error::config(format!(
        "a routing context value must be int, float, bool, str or bytes, got {}",
        obj.get_type().name()?
    ))))
}

/// A routing context from a `dict` (or `None`).
pub(crate) fn routing_context(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<RoutingContext>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let dict = obj.cast::<PyDict>().map_err(|_| {
        to_py(Error::config(
            "routing_context must be a dict of column name -> value",
        ))
    })?;
    let mut ctx = RoutingContext::new();
    for (k, v) in dict.iter() {
        let name = k.extract::<String>().map_err(|_| {
            to_py(Error::config(format!(
                "routing_context keys are column names (str), got {k}"
            )))
        })?;
        ctx.insert(name, cel_value(&v)?);
    }
    Ok(Some(ctx))
}
