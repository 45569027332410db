"""Inputs of a write as one Arrow stream: tables, batches, readers, pandas frames, anything
with ``__arrow_c_stream__``, or an iterable of records."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterable, Iterator, NoReturn

import pyarrow as pa

from .errors import ConfigValidationError
from .values import ENCODED_COLUMN, ValueSpec, value_bytes

#: Rows per Arrow batch made from Python records.
RECORD_CHUNK = 8192


def _records_to_batches(
    records: Iterable[Any],
    key_fn: Callable[[Any], Any] | None,
    value_fn: Callable[[Any], bytes] | None,
    key_col: str,
) -> Iterator[pa.RecordBatch]:
    it = iter(records)
    row = 0
    while True:
        chunk = list(itertools.islice(it, RECORD_CHUNK))
        if not chunk:
            return
        keys, values = [], []
        for r in chunk:
            if key_fn is not None:
                k, v = key_fn(r), value_fn(r)  # type: ignore[misc]
            else:
                try:
                    k, v = r
                except (TypeError, ValueError):
                    raise ConfigValidationError(
                        f"record {row} is not a (key, value) pair; pass key_fn and value_fn"
                    ) from None
            v = value_bytes(v, f"the value of record {row}")
            keys.append(k)
            values.append(v)
            row += 1
        try:
            key_array = pa.array(keys)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ConfigValidationError(
                f"keys of records {row - len(chunk)}..{row - 1} are not one type (int, str or bytes): {e}"
            ) from None
        yield pa.RecordBatch.from_arrays(
            [key_array, pa.array(values, type=pa.binary())], names=[key_col, "value"]
        )


def _peeked(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


class InputErrors:
    """Remembers an exception raised by the caller's input (an iterator, an encoder) while
    Rust reads it, so that the write's error can name it as its cause."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def watch(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except BaseException as e:
            self.error = e
            raise

    def reraise(self, err: BaseException) -> NoReturn:
        """Raise ``err`` chained to the input's own exception (or that exception itself when
        it is not an ``Exception``: ``KeyboardInterrupt``, ``SystemExit``)."""
        cause = self.error
        if cause is not None and not isinstance(cause, Exception):
            raise cause
        raise err from cause


def as_stream(
    data: Any,
    *,
    key_col: str,
    value_spec: ValueSpec | None,
    key_fn: Callable[[Any], Any] | None = None,
    value_fn: Callable[[Any], bytes] | None = None,
    errors: InputErrors | None = None,
) -> tuple[pa.RecordBatchReader, ValueSpec, int | None]:
    """``data`` as a record batch reader, the value spec to write it with, and its row count
    when known without reading it. Exceptions the input raises while Rust reads it are kept
    in ``errors``."""
    errors = errors or InputErrors()
    rows: int | None = None
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        rows = data.num_rows
        reader = data.to_reader()
    elif isinstance(data, pa.RecordBatchReader):
        reader = data
    elif type(data).__module__.startswith("pandas") and hasattr(data, "columns"):
        # Before __arrow_c_stream__ (pandas has it too, and would carry its index along).
        table = pa.Table.from_pandas(data, preserve_index=False)
        rows = table.num_rows
        reader = table.to_reader()
    elif hasattr(data, "__arrow_c_stream__"):
        reader = pa.RecordBatchReader.from_stream(data)
    else:
        if value_spec is not None:
            raise ConfigValidationError(
                "value_spec applies to tabular inputs; records take key_fn/value_fn or (key, value) pairs"
            )
        if (key_fn is None) != (value_fn is None):
            raise ConfigValidationError("give key_fn and value_fn together (or neither, for (key, value) pairs)")
        batches = _records_to_batches(data, key_fn, value_fn, key_col)
        try:
            first = next(batches, None)
        except ConfigValidationError:
            raise
        except Exception as e:
            raise ConfigValidationError(f"reading the input failed: {e}") from e
        if first is None:
            schema = pa.schema([(key_col, pa.int64()), ("value", pa.binary())])
            reader = pa.RecordBatchReader.from_batches(schema, iter(()))
        else:
            reader = pa.RecordBatchReader.from_batches(
                first.schema, errors.watch(_peeked(first, batches))
            )
        value_spec = ValueSpec.binary_col("value")
    if value_spec is None:
        raise ConfigValidationError(
            "value_spec is required for tabular inputs: ValueSpec.binary_col(...), json_cols(...) or callable_encoder(...)"
        )
    if value_spec.kind == "callable":
        reader = encoded(reader, value_spec, errors)
    return reader, value_spec, rows


def encoded(
    reader: pa.RecordBatchReader, spec: ValueSpec, errors: InputErrors
) -> pa.RecordBatchReader:
    """``reader`` with a callable encoder's output added to every batch."""
    schema = reader.schema.append(pa.field(ENCODED_COLUMN, pa.binary()))
    return pa.RecordBatchReader.from_batches(
        schema, errors.watch(spec.encode_batch(b) for b in reader)
    )
