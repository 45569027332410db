//! # shardyfusion-py
//!
//! The `shardyfusion_rs._native` extension module: the Rust writer and readers for Python.
//! The Python package `shardyfusion_rs` (in `python/`) is the public face; this module is its
//! engine. Configuration crosses as JSON, Arrow data through the Arrow C stream interface
//! (zero-copy), and every call that does I/O releases the GIL.

mod config;
mod error;
mod keys;
mod read;
mod runtime;
mod write;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<write::Writer>()?;
    m.add_class::<write::EngineBuild>()?;
    m.add_class::<read::Reader>()?;
    m.add_function(wrap_pyfunction!(runtime::_after_fork_in_child, m)?)?;
    m.add("WRITER_VERSION", shardyfusion::writer::WRITER_VERSION)?;
    Ok(())
}
