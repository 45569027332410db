//! The input side of a write: records and Arrow batches, each read once and pushed, routed, into
//! the shard session; the JSON form of Arrow cells.

mod arrow;
mod json;
mod records;

pub use arrow::{ValueFn, ValueSpec};
pub use records::Record;
