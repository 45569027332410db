//! The JSON form of every Arrow cell (SPEC: values of `json_cols`): numbers and booleans as
//! themselves, float32 as the shortest text that round-trips it, strings as strings, binary as
//! base64, dates `YYYY-MM-DD`, times `HH:MM:SS[.f]`, timestamps ISO-8601 (a zoned column's
//! instant in UTC with `Z`), decimals as exact decimal strings, lists as arrays, structs and
//! maps as objects, dictionaries as their values. Durations, intervals, unions and run-end
//! encoded columns are an error naming the column, never debug text.

use arrow_array::cast::AsArray;
use arrow_array::temporal_conversions::{as_date, as_datetime, as_time};
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type,
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrowPrimitiveType, PrimitiveArray};
use arrow_schema::{DataType, TimeUnit};
use base64::Engine as _;
use serde_json::{Map, Number, Value};
use shardyfusion_core::{Error, Result};

/// The JSON value of `array[row]`; `column` names the column in errors.
pub(crate) fn cell(array: &dyn Array, row: usize, column: &str) -> Result<Value> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    let unsupported = |t: &DataType| {
        Error::config(format!(
            "column {column:?} has type {t}, which has no JSON form here; cast it (e.g. to a \
             string or an integer) before writing"
        ))
    };
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float16 => float32(f32::from(array.as_primitive::<Float16Type>().value(row))),
        DataType::Float32 => float32(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => array.as_string::<i32>().value(row).into(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).into(),
        DataType::Utf8View => array.as_string_view().value(row).into(),
        DataType::Binary => base64(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => base64(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => base64(array.as_binary_view().value(row)),
        DataType::FixedSizeBinary(_) => base64(array.as_fixed_size_binary().value(row)),
        DataType::Date32 => date::<Date32Type>(array, row)?,
        DataType::Date64 => date::<Date64Type>(array, row)?,
        DataType::Time32(TimeUnit::Second) => time::<Time32SecondType>(array, row)?,
        DataType::Time32(TimeUnit::Millisecond) => time::<Time32MillisecondType>(array, row)?,
        DataType::Time64(TimeUnit::Microsecond) => time::<Time64MicrosecondType>(array, row)?,
        DataType::Time64(TimeUnit::Nanosecond) => time::<Time64NanosecondType>(array, row)?,
        DataType::Timestamp(unit, tz) => {
            let zoned = tz.is_some();
            match unit {
                TimeUnit::Second => timestamp::<TimestampSecondType>(array, row, zoned)?,
                TimeUnit::Millisecond => timestamp::<TimestampMillisecondType>(array, row, zoned)?,
                TimeUnit::Microsecond => timestamp::<TimestampMicrosecondType>(array, row, zoned)?,
                TimeUnit::Nanosecond => timestamp::<TimestampNanosecondType>(array, row, zoned)?,
            }
        }
        DataType::Decimal32(_, _) => {
            Value::String(array.as_primitive::<Decimal32Type>().value_as_string(row))
        }
        DataType::Decimal64(_, _) => {
            Value::String(array.as_primitive::<Decimal64Type>().value_as_string(row))
        }
        DataType::Decimal128(_, _) => {
            Value::String(array.as_primitive::<Decimal128Type>().value_as_string(row))
        }
        DataType::Decimal256(_, _) => {
            Value::String(array.as_primitive::<Decimal256Type>().value_as_string(row))
        }
        DataType::List(_) => list(array.as_list::<i32>().value(row).as_ref(), column)?,
        DataType::LargeList(_) => list(array.as_list::<i64>().value(row).as_ref(), column)?,
        DataType::FixedSizeList(_, _) => {
            list(array.as_fixed_size_list().value(row).as_ref(), column)?
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut obj = Map::new();
            for (i, f) in fields.iter().enumerate() {
                let name = format!("{column}.{}", f.name());
                obj.insert(f.name().clone(), cell(s.column(i).as_ref(), row, &name)?);
            }
            Value::Object(obj)
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            let mut obj = Map::new();
            for i in 0..entries.len() {
                let k = match cell(keys.as_ref(), i, column)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                obj.insert(k, cell(values.as_ref(), i, column)?);
            }
            Value::Object(obj)
        }
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            let index = dict.normalized_keys()[row];
            cell(dict.values().as_ref(), index, column)?
        }
        other => return Err(unsupported(other)),
    })
}

fn list(values: &dyn Array, column: &str) -> Result<Value> {
    (0..values.len())
        .map(|i| cell(values, i, column))
        .collect::<Result<Vec<_>>>()
        .map(Value::Array)
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A float64 as a JSON number (NaN and infinities, which JSON cannot hold, as null).
fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// A float32 as the float64 of its shortest round-trip text (`0.1f32` → `0.1`, not
/// `0.10000000149011612`).
fn float32(v: f32) -> Value {
    float(v.to_string().parse::<f64>().unwrap_or(f64::from(v)))
}

fn bad_time(row: usize) -> Error {
    Error::config(format!("a date/time value at row {row} is out of range"))
}

fn date<T: ArrowPrimitiveType>(array: &dyn Array, row: usize) -> Result<Value>
where
    i64: From<T::Native>,
{
    let v = array.as_primitive::<T>().value(row);
    as_date::<T>(i64::from(v))
        .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
        .ok_or_else(|| bad_time(row))
}

fn time<T: ArrowPrimitiveType>(array: &dyn Array, row: usize) -> Result<Value>
where
    i64: From<T::Native>,
{
    let v = array.as_primitive::<T>().value(row);
    as_time::<T>(i64::from(v))
        .map(|t| Value::String(t.format("%H:%M:%S%.f").to_string()))
        .ok_or_else(|| bad_time(row))
}

/// A timestamp: without a time zone as the naive local time; with one (Arrow stores the UTC
/// instant) as that instant in UTC with `Z`.
fn timestamp<T: ArrowPrimitiveType>(array: &dyn Array, row: usize, zoned: bool) -> Result<Value>
where
    i64: From<T::Native>,
{
    let a: &PrimitiveArray<T> = array.as_primitive::<T>();
    let t = as_datetime::<T>(i64::from(a.value(row))).ok_or_else(|| bad_time(row))?;
    let text = t.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
    Ok(Value::String(if zoned { text + "Z" } else { text }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
    use arrow_array::{
        ArrayRef, BinaryArray, Date32Array, Decimal128Array, Float32Array, Int32Array,
        IntervalDayTimeArray, StructArray, TimestampMicrosecondArray,
    };
    use arrow_schema::Field;

    use super::*;

    fn one(a: ArrayRef) -> Value {
        cell(a.as_ref(), 0, "c").unwrap()
    }

    #[test]
    fn every_type_has_a_json_form() {
        assert_eq!(
            one(Arc::new(Float32Array::from(vec![0.1f32]))),
            serde_json::json!(0.1)
        );
        assert_eq!(
            one(Arc::new(BinaryArray::from(vec![&b"\x00\xffhi"[..]]))),
            serde_json::json!("AP9oaQ==")
        );
        assert_eq!(
            one(Arc::new(Date32Array::from(vec![19_000]))),
            serde_json::json!("2022-01-08")
        );
        let ts = TimestampMicrosecondArray::from(vec![1_700_000_000_123_456]);
        assert_eq!(
            one(Arc::new(ts.clone())),
            serde_json::json!("2023-11-14T22:13:20.123456")
        );
        for tz in ["UTC", "+02:00", "Europe/Paris"] {
            assert_eq!(
                one(Arc::new(ts.clone().with_timezone(tz))),
                serde_json::json!("2023-11-14T22:13:20.123456Z"),
                "{tz}"
            );
        }
        let dec = Decimal128Array::from(vec![12_345_i128])
            .with_precision_and_scale(10, 2)
            .unwrap();
        assert_eq!(one(Arc::new(dec)), serde_json::json!("123.45"));
        let mut lists = ListBuilder::new(arrow_array::builder::Int32Builder::new());
        lists.values().append_value(1);
        lists.values().append_null();
        lists.append(true);
        assert_eq!(one(Arc::new(lists.finish())), serde_json::json!([1, null]));
        let s = StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Int32, true)),
            Arc::new(Int32Array::from(vec![7])) as ArrayRef,
        )]);
        assert_eq!(one(Arc::new(s)), serde_json::json!({"x": 7}));
        let mut dict = StringDictionaryBuilder::<Int32Type>::new();
        dict.append_value("eu");
        assert_eq!(one(Arc::new(dict.finish())), serde_json::json!("eu"));
        let interval: ArrayRef = Arc::new(IntervalDayTimeArray::from(vec![
            arrow_array::types::IntervalDayTime::new(1, 2),
        ]));
        let err = cell(interval.as_ref(), 0, "span").unwrap_err();
        assert!(
            err.message().contains("\"span\"") && err.message().contains("Interval"),
            "{err}"
        );
    }
}
