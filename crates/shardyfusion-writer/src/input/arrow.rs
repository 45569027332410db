//! Arrow input: a stream of `RecordBatch`es, a key column and a value spec (one binary column,
//! JSON of chosen columns, or a closure), routed and encoded a whole batch at a time. Batches are
//! read once; only a slice of batches (`write_batches`) is surveyed when routing needs it.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BinaryViewArray, LargeBinaryArray, LargeStringArray,
    PrimitiveArray, RecordBatch, StringArray, StringViewArray,
};
use arrow_schema::{DataType, SchemaRef};
use futures::{Stream, StreamExt};
use serde_json::Value;
use shardyfusion_core::pyjson::{JsonStyle, to_string};
use shardyfusion_core::{Error, Key, KeyRef, Result, WriteOptions};

use crate::input::json;
use crate::result::BuildResult;
use crate::route::{self, Router, Survey};
use crate::session::Session;
use crate::writer::ShardedWriter;

/// A value encoder over `(batch, row)`.
pub type ValueFn = Arc<dyn Fn(&RecordBatch, usize) -> Result<Vec<u8>> + Send + Sync>;

/// How a row's value bytes are made.
#[derive(Clone)]
pub enum ValueSpec {
    /// One column: binary as is (zero-copy), strings as UTF-8, null as empty bytes, any other
    /// type as the compact JSON of its cell.
    BinaryColumn(String),
    /// A compact JSON object (sorted keys) of the named columns, or of all columns but the key
    /// when `None`; a null cell is `null`. Every named column must exist.
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

/// The index of column `name`, or `ConfigValidation` listing the columns there are.
fn index_of(schema: &SchemaRef, name: &str, role: &str) -> Result<usize> {
    schema.index_of(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::config(format!(
            "the {role} column {name:?} is not in the input; its columns are {names:?}"
        ))
    })
}

/// The key column of one batch, typed once: each row's key is read without allocating.
enum KeyColumn<'a> {
    I8(&'a PrimitiveArray<Int8Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    Str(&'a StringArray),
    LargeStr(&'a LargeStringArray),
    StrView(&'a StringViewArray),
    Bin(&'a BinaryArray),
    LargeBin(&'a LargeBinaryArray),
    BinView(&'a BinaryViewArray),
    /// Dictionary-encoded keys: each row's index into the typed values.
    Dict(Box<KeyColumn<'a>>, Vec<usize>),
}

impl<'a> KeyColumn<'a> {
    fn new(array: &'a dyn Array, name: &str) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Int8 => KeyColumn::I8(array.as_primitive()),
            DataType::Int16 => KeyColumn::I16(array.as_primitive()),
            DataType::Int32 => KeyColumn::I32(array.as_primitive()),
            DataType::Int64 => KeyColumn::I64(array.as_primitive()),
            DataType::UInt8 => KeyColumn::U8(array.as_primitive()),
            DataType::UInt16 => KeyColumn::U16(array.as_primitive()),
            DataType::UInt32 => KeyColumn::U32(array.as_primitive()),
            DataType::UInt64 => KeyColumn::U64(array.as_primitive()),
            DataType::Utf8 => KeyColumn::Str(array.as_string()),
            DataType::LargeUtf8 => KeyColumn::LargeStr(array.as_string()),
            DataType::Utf8View => KeyColumn::StrView(array.as_string_view()),
            DataType::Binary => KeyColumn::Bin(array.as_binary()),
            DataType::LargeBinary => KeyColumn::LargeBin(array.as_binary()),
            DataType::BinaryView => KeyColumn::BinView(array.as_binary_view()),
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary();
                let values = KeyColumn::new(dict.values().as_ref(), name)?;
                KeyColumn::Dict(Box::new(values), dict.normalized_keys())
            }
            other => {
                return Err(Error::config(format!(
                    "key column {name:?} has type {other}; use an integer, string or binary \
                     column (or a dictionary of them)"
                )));
            }
        })
    }

    /// The key of `row` (callers check nulls first).
    fn key(&self, row: usize) -> Result<KeyRef<'a>> {
        Ok(match self {
            KeyColumn::I8(a) => KeyRef::Int(a.value(row).into()),
            KeyColumn::I16(a) => KeyRef::Int(a.value(row).into()),
            KeyColumn::I32(a) => KeyRef::Int(a.value(row).into()),
            KeyColumn::I64(a) => KeyRef::Int(a.value(row)),
            KeyColumn::U8(a) => KeyRef::Int(a.value(row).into()),
            KeyColumn::U16(a) => KeyRef::Int(a.value(row).into()),
            KeyColumn::U32(a) => KeyRef::Int(a.value(row).into()),
            KeyColumn::U64(a) => match Key::from_u64(a.value(row))? {
                Key::Int(i) => KeyRef::Int(i),
                other => return Err(Error::config(format!("unexpected key {other}"))),
            },
            KeyColumn::Str(a) => KeyRef::Str(a.value(row)),
            KeyColumn::LargeStr(a) => KeyRef::Str(a.value(row)),
            KeyColumn::StrView(a) => KeyRef::Str(a.value(row)),
            KeyColumn::Bin(a) => KeyRef::Bytes(a.value(row)),
            KeyColumn::LargeBin(a) => KeyRef::Bytes(a.value(row)),
            KeyColumn::BinView(a) => KeyRef::Bytes(a.value(row)),
            KeyColumn::Dict(values, index) => values.key(index[row])?,
        })
    }
}

/// The value column of one batch for [`ValueSpec::BinaryColumn`].
enum BytesColumn<'a> {
    Bin(&'a BinaryArray),
    LargeBin(&'a LargeBinaryArray),
    BinView(&'a BinaryViewArray),
    Str(&'a StringArray),
    LargeStr(&'a LargeStringArray),
    StrView(&'a StringViewArray),
    /// Any other type: the compact JSON of the cell.
    Json(&'a dyn Array),
}

impl<'a> BytesColumn<'a> {
    fn new(array: &'a dyn Array) -> Self {
        match array.data_type() {
            DataType::Binary => BytesColumn::Bin(array.as_binary()),
            DataType::LargeBinary => BytesColumn::LargeBin(array.as_binary()),
            DataType::BinaryView => BytesColumn::BinView(array.as_binary_view()),
            DataType::Utf8 => BytesColumn::Str(array.as_string()),
            DataType::LargeUtf8 => BytesColumn::LargeStr(array.as_string()),
            DataType::Utf8View => BytesColumn::StrView(array.as_string_view()),
            _ => BytesColumn::Json(array),
        }
    }

    /// The bytes of `row`: borrowed from the column, or encoded into `scratch`.
    fn value<'s>(&self, row: usize, name: &str, scratch: &'s mut Vec<u8>) -> Result<&'s [u8]>
    where
        'a: 's,
    {
        Ok(match self {
            BytesColumn::Bin(a) => a.value(row),
            BytesColumn::LargeBin(a) => a.value(row),
            BytesColumn::BinView(a) => a.value(row),
            BytesColumn::Str(a) => a.value(row).as_bytes(),
            BytesColumn::LargeStr(a) => a.value(row).as_bytes(),
            BytesColumn::StrView(a) => a.value(row).as_bytes(),
            BytesColumn::Json(a) => {
                scratch.clear();
                scratch.extend_from_slice(
                    to_string(&json::cell(*a, row, name)?, JsonStyle::Compact).as_bytes(),
                );
                scratch
            }
        })
    }
}

/// The columns a write reads, resolved against the input's schema before any row is written.
struct Layout {
    key: usize,
    value: ValueLayout,
    /// Multi-column CEL routing columns (name, index, declared type).
    #[cfg(feature = "cel")]
    cel: Option<Vec<(String, usize, shardyfusion_core::CelColumnType)>>,
}

enum ValueLayout {
    Bytes(usize, String),
    /// `(name, index)` sorted by name (the JSON object's key order).
    Json(Vec<(String, usize)>),
    Closure(ValueFn),
}

impl Layout {
    fn new(
        writer: &ShardedWriter,
        schema: &SchemaRef,
        key_col: &str,
        value: &ValueSpec,
        options: &WriteOptions,
    ) -> Result<Layout> {
        options.check_columns(schema.fields().iter().map(|f| f.name().as_str()))?;
        let key = index_of(schema, key_col, "key")?;
        let value = match value {
            ValueSpec::BinaryColumn(c) => {
                ValueLayout::Bytes(index_of(schema, c, "value")?, c.clone())
            }
            ValueSpec::JsonColumns(cols) => {
                let mut named: Vec<(String, usize)> = match cols {
                    Some(cols) => cols
                        .iter()
                        .map(|c| Ok((c.clone(), index_of(schema, c, "value JSON")?)))
                        .collect::<Result<_>>()?,
                    None => schema
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != key)
                        .map(|(i, f)| (f.name().clone(), i))
                        .collect(),
                };
                named.sort_by(|a, b| a.0.cmp(&b.0));
                named.dedup_by(|a, b| a.0 == b.0);
                ValueLayout::Json(named)
            }
            ValueSpec::Closure(f) => ValueLayout::Closure(f.clone()),
        };
        #[cfg(feature = "cel")]
        let cel = {
            let spec = writer.config().sharding();
            let multi =
                spec.strategy == shardyfusion_core::ShardingStrategy::Cel && !spec.is_key_only();
            if multi {
                Some(
                    spec.cel_columns
                        .iter()
                        .map(|(name, ty)| Ok((name.clone(), index_of(schema, name, "CEL")?, *ty)))
                        .collect::<Result<Vec<_>>>()?,
                )
            } else {
                None
            }
        };
        #[cfg(not(feature = "cel"))]
        let _ = writer;
        Ok(Layout {
            key,
            value,
            #[cfg(feature = "cel")]
            cel,
        })
    }

    /// The same columns in a later batch (its schema must match the first batch's).
    fn check(&self, first: &SchemaRef, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != first.fields() {
            return Err(Error::config(format!(
                "a later input batch has a different schema ({:?}) from the first ({:?})",
                batch.schema().fields(),
                first.fields()
            )));
        }
        Ok(())
    }

    /// The shard of `row` (key `key`): the HASH fast path when `hash` is the router's hash
    /// (looked up once per batch by the caller), else the router with the row's CEL context.
    #[inline]
    fn route(
        &self,
        router: &Router,
        hash: Option<&shardyfusion_core::HashRouter>,
        batch: &RecordBatch,
        row: usize,
        key: KeyRef<'_>,
    ) -> Result<u32> {
        if let Some(h) = hash {
            return Ok(h.db_id(key));
        }
        #[cfg(feature = "cel")]
        let ctx = self.routing_context(batch, row)?;
        #[cfg(not(feature = "cel"))]
        let (ctx, _) = (None, (batch, row));
        router.route(key, ctx.as_ref())
    }

    /// The routing context of `row` for multi-column CEL.
    #[cfg(feature = "cel")]
    fn routing_context(
        &self,
        batch: &RecordBatch,
        row: usize,
    ) -> Result<Option<crate::RoutingContext>> {
        use shardyfusion_cel::CelValue;
        use shardyfusion_core::CelColumnType as T;
        let Some(cols) = &self.cel else {
            return Ok(None);
        };
        let mut ctx = crate::RoutingContext::new();
        for (name, i, ty) in cols {
            let a = batch.column(*i);
            if a.is_null(row) {
                return Err(Error::config(format!(
                    "CEL column {name:?} is null at row {row}"
                )));
            }
            let v = match (ty, json::cell(a.as_ref(), row, name)?) {
                (T::Int, Value::Number(n)) if n.is_i64() => {
                    CelValue::Int(n.as_i64().unwrap_or_default())
                }
                (T::Uint, Value::Number(n)) if n.is_u64() => {
                    CelValue::Uint(n.as_u64().unwrap_or_default())
                }
                (T::Double, Value::Number(n)) => CelValue::Double(n.as_f64().unwrap_or_default()),
                (T::Bool, Value::Bool(b)) => CelValue::Bool(b),
                (T::String, Value::String(s)) => CelValue::Str(s),
                (T::Bytes, _) => {
                    let mut scratch = Vec::new();
                    CelValue::Bytes(
                        BytesColumn::new(a.as_ref())
                            .value(row, name, &mut scratch)?
                            .to_vec(),
                    )
                }
                (t, v) => {
                    return Err(Error::config(format!(
                        "CEL column {name:?} is declared {t} but row {row} holds {v}"
                    )));
                }
            };
            ctx.insert(name.clone(), v);
        }
        Ok(Some(ctx))
    }
}

/// An Arrow input whose first batch has fixed the layout.
pub(crate) struct ArrowInput<S> {
    first: Option<(RecordBatch, Layout)>,
    rest: std::pin::Pin<Box<S>>,
}

impl<S, E> ArrowInput<S>
where
    S: Stream<Item = std::result::Result<RecordBatch, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    /// Route, encode and push every row of every batch into `session`.
    pub(crate) async fn feed(
        mut self,
        session: &mut Session<'_>,
        router: &Router,
        key_col: &str,
    ) -> Result<()> {
        let Some((first, layout)) = self.first.take() else {
            return Ok(());
        };
        let schema = first.schema();
        let mut base = 0u64;
        feed_batch(session, router, &layout, &first, key_col, base).await?;
        base += first.num_rows() as u64;
        drop(first);
        while let Some(batch) = self.rest.next().await {
            let batch = batch.map_err(input_error)?;
            layout.check(&schema, &batch)?;
            feed_batch(session, router, &layout, &batch, key_col, base).await?;
            base += batch.num_rows() as u64;
        }
        Ok(())
    }
}

/// Route, encode and push every row of one batch. `base` is the input row number of the
/// batch's first row (for errors).
async fn feed_batch(
    session: &mut Session<'_>,
    router: &Router,
    layout: &Layout,
    batch: &RecordBatch,
    key_col: &str,
    base: u64,
) -> Result<()> {
    let key_array = batch.column(layout.key);
    let keys = KeyColumn::new(key_array.as_ref(), key_col)?;
    let bytes = match &layout.value {
        ValueLayout::Bytes(i, _) => Some(BytesColumn::new(batch.column(*i).as_ref())),
        _ => None,
    };
    let mut scratch = Vec::new();
    let row_err = |row: usize, e: Error| super::at_row(e, base + row as u64);
    let hash = router.as_hash();
    let key_nulls = key_array.null_count() > 0;
    let value_nulls = match &layout.value {
        ValueLayout::Bytes(i, _) => batch.column(*i).null_count() > 0,
        _ => false,
    };
    for row in 0..batch.num_rows() {
        if key_nulls && key_array.is_null(row) {
            return Err(row_err(
                row,
                Error::config(format!("key column {key_col:?} is null")),
            ));
        }
        let key = keys.key(row).map_err(|e| row_err(row, e))?;
        let value: &[u8] = match (&layout.value, &bytes) {
            (ValueLayout::Bytes(i, name), Some(col)) => {
                if value_nulls && batch.column(*i).is_null(row) {
                    &[]
                } else {
                    col.value(row, name, &mut scratch)
                        .map_err(|e| row_err(row, e))?
                }
            }
            (ValueLayout::Json(cols), _) => {
                let mut obj = serde_json::Map::new();
                for (name, i) in cols {
                    let v = json::cell(batch.column(*i).as_ref(), row, name)
                        .map_err(|e| row_err(row, e))?;
                    obj.insert(name.clone(), v);
                }
                scratch.clear();
                scratch.extend_from_slice(
                    to_string(&Value::Object(obj), JsonStyle::Compact).as_bytes(),
                );
                &scratch
            }
            (ValueLayout::Closure(f), _) => {
                scratch = f(batch, row).map_err(|e| row_err(row, e))?;
                &scratch
            }
            (ValueLayout::Bytes(..), None) => &[],
        };
        let db_id = layout
            .route(router, hash, batch, row, key)
            .map_err(|e| row_err(row, e))?;
        session
            .push(db_id, key, value)
            .await
            .map_err(|e| row_err(row, e))?;
    }
    Ok(())
}

/// The shard of every row of `batch` under `router` (what [`feed_batch`] computes, without
/// writing): for engines that repartition their data by shard first.
pub(crate) fn route_rows(
    writer: &ShardedWriter,
    router: &Router,
    batch: &RecordBatch,
    key_col: &str,
) -> Result<arrow_array::UInt32Array> {
    // Values are not made here: a closure layout that is never called.
    let none: ValueFn = Arc::new(|_, _| Ok(Vec::new()));
    let layout = Layout::new(
        writer,
        &batch.schema(),
        key_col,
        &ValueSpec::Closure(none),
        &WriteOptions::default(),
    )?;
    let key_array = batch.column(layout.key);
    let keys = KeyColumn::new(key_array.as_ref(), key_col)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let at = |e| super::at_row(e, row as u64);
        if key_array.is_null(row) {
            return Err(at(Error::config(format!("key column {key_col:?} is null"))));
        }
        let key = keys.key(row).map_err(at)?;
        out.push(
            layout
                .route(router, router.as_hash(), batch, row, key)
                .map_err(at)?,
        );
    }
    Ok(out.into())
}

/// An input error: the message is the innermost cause (wrappers such as Arrow's "External
/// error" add nothing a person needs); the whole error stays the source.
fn input_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    Error::config(format!("reading the input failed: {cause}")).with_source(e)
}

impl ShardedWriter {
    /// Write Arrow record batches read once from `batches` (an `arrow` `RecordBatchReader`, an
    /// iterator of `Result<RecordBatch, E>`): `key_col` holds the keys, `value` makes the value
    /// bytes; CEL routing columns are read from the batch by name. Memory stays bounded by the
    /// configuration whatever the input size. An input error mid-stream aborts the write
    /// cleanly. Routing must be known up front (`num_dbs`, `max_keys_per_shard` with
    /// [`WriteOptions::expected_rows`], or CEL `routing_values`).
    pub async fn write_arrow<I, E>(
        &self,
        batches: I,
        key_col: &str,
        value: &ValueSpec,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        I: IntoIterator<Item = std::result::Result<RecordBatch, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let stream = futures::stream::iter(batches);
        self.write_arrow_stream(stream, key_col, value, options)
            .await
    }

    /// [`write_arrow`](Self::write_arrow) over an async `Stream` of record batches.
    pub async fn write_arrow_stream<S, E>(
        &self,
        batches: S,
        key_col: &str,
        value: &ValueSpec,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        S: Stream<Item = std::result::Result<RecordBatch, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let plan = route::plan(self.config(), options.expected_rows, Survey::default())?;
        self.write_arrow_planned(plan, batches, key_col, value, options)
            .await
    }

    async fn write_arrow_planned<S, E>(
        &self,
        plan: route::Plan,
        batches: S,
        key_col: &str,
        value: &ValueSpec,
        options: &WriteOptions,
    ) -> Result<BuildResult>
    where
        S: Stream<Item = std::result::Result<RecordBatch, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let input = self.open_arrow(batches, key_col, value, options).await?;
        self.run(plan, key_col, options, async |session, router| {
            input.feed(session, router, key_col).await
        })
        .await
    }

    /// Read the first batch of an Arrow input and fix its layout: unknown columns fail before
    /// any row is written (and before a run record exists).
    pub(crate) async fn open_arrow<S, E>(
        &self,
        batches: S,
        key_col: &str,
        value: &ValueSpec,
        options: &WriteOptions,
    ) -> Result<ArrowInput<S>>
    where
        S: Stream<Item = std::result::Result<RecordBatch, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let mut rest = Box::pin(batches);
        let first = match rest.next().await {
            Some(b) => Some(b.map_err(input_error)?),
            None => None,
        };
        let layout = match &first {
            Some(b) => Some(Layout::new(self, &b.schema(), key_col, value, options)?),
            None => None,
        };
        Ok(ArrowInput {
            first: first.zip(layout),
            rest,
        })
    }

    /// Write resident Arrow batches (surveyed first when the routing needs it). Prefer
    /// [`write_arrow`](Self::write_arrow) for inputs that need not be resident.
    pub async fn write_batches(
        &self,
        batches: &[RecordBatch],
        key_col: &str,
        value: &ValueSpec,
        options: &WriteOptions,
    ) -> Result<BuildResult> {
        let survey = self.survey_batches(batches, key_col, options)?;
        let plan = route::plan(self.config(), options.expected_rows, survey)?;
        let stream = futures::stream::iter(
            batches
                .iter()
                .cloned()
                .map(Ok::<_, std::convert::Infallible>),
        );
        self.write_arrow_planned(plan, stream, key_col, value, options)
            .await
    }

    fn survey_batches(
        &self,
        batches: &[RecordBatch],
        key_col: &str,
        options: &WriteOptions,
    ) -> Result<Survey> {
        let needs = route::needs(self.config(), options.expected_rows);
        let started = Instant::now();
        let mut survey = Survey::default();
        if needs.rows {
            survey.rows = Some(batches.iter().map(|b| b.num_rows() as u64).sum());
        }
        #[cfg(feature = "cel")]
        if needs.cel_results {
            let expr = route::cel_expression(self.config().sharding())?;
            let mut results = Vec::new();
            let value = ValueSpec::JsonColumns(Some(Vec::new()));
            for batch in batches {
                let layout = Layout::new(self, &batch.schema(), key_col, &value, options)?;
                let array: &ArrayRef = batch.column(layout.key);
                let keys = KeyColumn::new(array.as_ref(), key_col)?;
                for row in 0..batch.num_rows() {
                    results.push(match layout.routing_context(batch, row)? {
                        Some(ctx) => expr.evaluate(&ctx)?,
                        None => expr.evaluate_key(keys.key(row)?)?,
                    });
                }
            }
            survey.cel_results = Some(results);
        }
        #[cfg(not(feature = "cel"))]
        let _ = key_col;
        if needs.rows || needs.cel_results {
            survey.duration_ms = started.elapsed().as_millis() as u64;
        }
        Ok(survey)
    }
}
