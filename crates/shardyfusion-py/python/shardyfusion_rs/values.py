"""How a row becomes its value bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

#: The column a callable encoder's output is carried in to the Rust writer.
ENCODED_COLUMN = "__shardyfusion_value__"


def value_bytes(value: Any, where: str) -> bytes:
    """A value as bytes (``str`` as UTF-8); anything else is a ``ConfigValidationError``
    naming ``where``."""
    from .errors import ConfigValidationError

    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ConfigValidationError(f"{where} is {type(value).__name__}, not bytes")


@dataclass(frozen=True)
class ValueSpec:
    """The value of each row: one binary column (zero-copy), a JSON object of columns
    (compact, sorted keys, byte-identical to the Python library), or a Python callable
    over the row (a dict; runs in Python, one call per row)."""

    kind: str
    column: str | None = None
    columns: tuple[str, ...] | None = None
    encoder: Callable[[dict[str, Any]], bytes] | None = None

    @staticmethod
    def binary_col(column: str) -> "ValueSpec":
        """The bytes of ``column`` (strings as UTF-8, null as empty bytes)."""
        return ValueSpec("binary_col", column=column)

    @staticmethod
    def json_cols(columns: Sequence[str] | None = None) -> "ValueSpec":
        """A JSON object of ``columns`` (all columns but the key when ``None``)."""
        return ValueSpec("json_cols", columns=None if columns is None else tuple(columns))

    @staticmethod
    def callable_encoder(encoder: Callable[[dict[str, Any]], bytes]) -> "ValueSpec":
        """``encoder(row) -> bytes`` for every row (slow path: one Python call per row)."""
        return ValueSpec("callable", encoder=encoder)

    def to_json(self) -> str:
        """The spec as the JSON the Rust writer reads."""
        if self.kind == "binary_col":
            return json.dumps({"kind": "binary_col", "column": self.column})
        if self.kind == "json_cols":
            cols = None if self.columns is None else list(self.columns)
            return json.dumps({"kind": "json_cols", "columns": cols})
        return json.dumps({"kind": "binary_col", "column": ENCODED_COLUMN})

    def encode_batch(self, batch: Any) -> Any:
        """``batch`` with the callable's output as an extra binary column (callable specs);
        other specs leave the batch as it is."""
        if self.kind != "callable":
            return batch
        import pyarrow as pa

        from .errors import ConfigValidationError

        assert self.encoder is not None
        values = []
        for i, row in enumerate(batch.to_pylist()):
            try:
                v = self.encoder(row)
            except Exception as e:
                raise ConfigValidationError(
                    f"callable_encoder failed on row {i} of a batch: {type(e).__name__}: {e}"
                ) from e
            values.append(value_bytes(v, f"the callable_encoder result for row {i} of a batch"))
        return batch.append_column(ENCODED_COLUMN, pa.array(values, type=pa.binary()))
