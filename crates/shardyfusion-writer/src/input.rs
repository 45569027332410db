//! Arrow `RecordBatch` input: a key column plus a value spec (one binary column, JSON of chosen
//! columns, or a closure). The CLI's JSONL, CSV and Parquet input goes through here.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use serde_json::Value;
use shardyfusion_core::pyjson::{JsonStyle, to_string};
use shardyfusion_core::{Error, Key, Result, WriteOptions};

use crate::result::BuildResult;
use crate::writer::{Row, ShardedWriter};

/// A value encoder over `(batch, row)`.
pub type ValueFn = Arc<dyn Fn(&RecordBatch, usize) -> Result<Vec<u8>> + Send + Sync>;

/// How a row's value bytes are made.
#[derive(Clone)]
pub enum ValueSpec {
    /// One column: binary as is, strings as UTF-8, null as empty bytes.
    BinaryColumn(String),
    /// A compact JSON object (sorted keys) of the named columns, or of all columns but the key
    /// when `None`; a missing column or null cell is `null`.
    JsonColumns(Option<Vec<String>>),
    /// A closure over `(batch, row)`.
    Closure(ValueFn),
}

impl std::fmt::Debug for ValueSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueSpec::BinaryColumn(c) => write!(f, "BinaryColumn({c:?})"),
            ValueSpec::JsonColumns(c) => write!(f, "JsonColumns({c:?})"),
            ValueSpec::Closure(_) => f.write_str("Closure(..)"),
        }
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| {
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        Error::config(format!(
            "input has no column {name:?}; columns are {names:?}"
        ))
    })
}

/// The logical key in `array[row]`: integer columns (unsigned above 2^63-1 rejected), strings,
/// binary.
pub fn key_at(array: &ArrayRef, row: usize) -> Result<Key> {
    if array.is_null(row) {
        return Err(Error::config(format!("key column has a null at row {row}")));
    }
    Ok(match array.data_type() {
        DataType::Int8 => Key::Int(array.as_primitive::<Int8Type>().value(row).into()),
        DataType::Int16 => Key::Int(array.as_primitive::<Int16Type>().value(row).into()),
        DataType::Int32 => Key::Int(array.as_primitive::<Int32Type>().value(row).into()),
        DataType::Int64 => Key::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Key::Int(array.as_primitive::<UInt8Type>().value(row).into()),
        DataType::UInt16 => Key::Int(array.as_primitive::<UInt16Type>().value(row).into()),
        DataType::UInt32 => Key::Int(array.as_primitive::<UInt32Type>().value(row).into()),
        DataType::UInt64 => Key::from_u64(array.as_primitive::<UInt64Type>().value(row))?,
        DataType::Utf8 => Key::Str(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Key::Str(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Key::Str(array.as_string_view().value(row).to_owned()),
        DataType::Binary => Key::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => Key::Bytes(array.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => Key::Bytes(array.as_binary_view().value(row).to_vec()),
        other => {
            return Err(Error::config(format!(
                "key column type {other} is not supported; use an integer, string or binary column"
            )));
        }
    })
}

/// The JSON value of `array[row]` (numbers, strings, booleans; binary as lossy UTF-8; other
/// types as their display text).
pub fn json_at(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float32 => {
            serde_json::Number::from_f64(f64::from(array.as_primitive::<Float32Type>().value(row)))
                .map_or(Value::Null, Value::Number)
        }
        DataType::Float64 => {
            serde_json::Number::from_f64(array.as_primitive::<Float64Type>().value(row))
                .map_or(Value::Null, Value::Number)
        }
        DataType::Utf8 => array.as_string::<i32>().value(row).into(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).into(),
        DataType::Utf8View => array.as_string_view().value(row).into(),
        DataType::Binary => String::from_utf8_lossy(array.as_binary::<i32>().value(row))
            .into_owned()
            .into(),
        DataType::LargeBinary => String::from_utf8_lossy(array.as_binary::<i64>().value(row))
            .into_owned()
            .into(),
        _ => arrow_display(array, row),
    }
}

fn arrow_display(array: &ArrayRef, row: usize) -> Value {
    let sliced = array.slice(row, 1);
    Value::String(format!("{sliced:?}"))
}

fn bytes_at(array: &ArrayRef, row: usize, name: &str) -> Result<Vec<u8>> {
    if array.is_null(row) {
        return Ok(Vec::new());
    }
    Ok(match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().value(row).to_vec(),
        DataType::LargeBinary => array.as_binary::<i64>().value(row).to_vec(),
        DataType::BinaryView => array.as_binary_view().value(row).to_vec(),
        DataType::Utf8 => array.as_string::<i32>().value(row).as_bytes().to_vec(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).as_bytes().to_vec(),
        DataType::Utf8View => array.as_string_view().value(row).as_bytes().to_vec(),
        _ => to_string(&json_at(array, row), JsonStyle::Compact).into_bytes(),
    })
    .map_err(|e: Error| Error::config(format!("value column {name:?}: {}", e.message())))
}

#[cfg(feature = "cel")]
fn routing_context(
    batch: &RecordBatch,
    row: usize,
    columns: &std::collections::BTreeMap<String, shardyfusion_core::CelColumnType>,
) -> Result<crate::RoutingContext> {
    use shardyfusion_cel::CelValue;
    use shardyfusion_core::CelColumnType as T;
    let mut ctx = crate::RoutingContext::new();
    for (name, ty) in columns {
        let a = column(batch, name)?;
        if a.is_null(row) {
            return Err(Error::config(format!(
                "CEL column {name:?} is null at row {row}"
            )));
        }
        let v = match (ty, json_at(a, row)) {
            (T::Int, Value::Number(n)) if n.is_i64() => {
                CelValue::Int(n.as_i64().unwrap_or_default())
            }
            (T::Uint, Value::Number(n)) if n.is_u64() => {
                CelValue::Uint(n.as_u64().unwrap_or_default())
            }
            (T::Double, Value::Number(n)) => CelValue::Double(n.as_f64().unwrap_or_default()),
            (T::Bool, Value::Bool(b)) => CelValue::Bool(b),
            (T::String, Value::String(s)) => CelValue::Str(s),
            (T::Bytes, _) => CelValue::Bytes(bytes_at(a, row, name)?),
            (t, v) => {
                return Err(Error::config(format!(
                    "CEL column {name:?} is declared {t} but row {row} holds {v}"
                )));
            }
        };
        ctx.insert(name.clone(), v);
    }
    Ok(ctx)
}

impl ShardedWriter {
    /// Write Arrow record batches: `key_col` holds the keys, `value` makes the value bytes; CEL
    /// routing columns are read from the batch by name.
    pub async fn write_batches(
        &self,
        batches: &[RecordBatch],
        key_col: &str,
        value: &ValueSpec,
        options: &WriteOptions,
    ) -> Result<BuildResult> {
        for b in batches {
            column(b, key_col)?;
            if let ValueSpec::BinaryColumn(c) = value {
                column(b, c)?;
            }
        }
        options.check_columns(batches.first().map(|b| b.schema()).iter().flat_map(|s| {
            s.fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
        }))?;
        #[cfg(feature = "cel")]
        let cel_columns = {
            let spec = self.config().sharding();
            let multi =
                spec.strategy == shardyfusion_core::ShardingStrategy::Cel && !spec.is_key_only();
            multi.then(|| spec.cel_columns.clone())
        };
        let positions: Vec<(usize, usize)> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
            .collect();
        let extract = |&(b, r): &(usize, usize)| -> Result<Row> {
            let batch = &batches[b];
            let key = key_at(column(batch, key_col)?, r)?;
            let bytes = match value {
                ValueSpec::BinaryColumn(c) => bytes_at(column(batch, c)?, r, c)?,
                ValueSpec::JsonColumns(cols) => {
                    let schema = batch.schema();
                    let mut obj = serde_json::Map::new();
                    match cols {
                        Some(cols) => {
                            for c in cols {
                                let v = batch
                                    .column_by_name(c)
                                    .map_or(Value::Null, |a| json_at(a, r));
                                obj.insert(c.clone(), v);
                            }
                        }
                        None => {
                            for (i, f) in schema.fields().iter().enumerate() {
                                if f.name() != key_col {
                                    obj.insert(f.name().clone(), json_at(batch.column(i), r));
                                }
                            }
                        }
                    }
                    to_string(&Value::Object(obj), JsonStyle::Compact).into_bytes()
                }
                ValueSpec::Closure(f) => f(batch, r)?,
            };
            #[cfg(feature = "cel")]
            let ctx = match &cel_columns {
                Some(cols) => Some(routing_context(batch, r, cols)?),
                None => None,
            };
            #[cfg(not(feature = "cel"))]
            let ctx = None;
            Ok(Row {
                key,
                value: bytes,
                ctx,
            })
        };
        self.run(&positions, |p| extract(p), key_col, options, None)
            .await
    }
}
