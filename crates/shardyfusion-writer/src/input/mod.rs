//! The input side of a write: records and Arrow batches, each read once and pushed, routed, into
//! the shard session; the JSON form of Arrow cells.

mod arrow;
mod json;
mod records;

pub(crate) use arrow::route_rows;
pub use arrow::{ValueFn, ValueSpec};
pub use records::Record;

use shardyfusion_core::Error;

/// Name the input row (0-based, in input order) an error came from, in the message and as
/// [`Error::input_row`], unless an inner step already did.
pub(crate) fn at_row(e: Error, row: u64) -> Error {
    if e.input_row().is_some() {
        return e;
    }
    Error::new(e.kind(), format!("input row {row}: {}", e.message()))
        .with_input_row(row)
        .with_source(e)
}
