"""Payload JSON texts as flattened ``data.*`` columns: the parsing half of the frames.

pyarrow's JSON reader parses a page of payloads at once (and lets go of the GIL, so the store's
next page arrives meanwhile); nested objects become dotted columns (``data.metadata.width``). A
page that pyarrow rejects (a corrupt row, a field whose type changes between rows) is parsed row by
row with the standard library instead, and a row that is not a JSON object gets NaN data and a
``data_error``.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

DATA_PREFIX = "data."
ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def payload_frame(texts: list[str]) -> pd.DataFrame:
    """JSON object texts as flattened ``data.*`` columns: pyarrow when it can, else row by row."""
    return payload_page(texts, None)[0]


def payload_page(
    texts: list[str], schema: pa.Schema | None
) -> tuple[pd.DataFrame, pa.Schema | None]:
    """payload_frame, parsing with the schema of the page before when it fits (40 % faster than
    inferring it again); returns the schema for the next page (None after the row-by-row path)."""
    try:
        table = _read_json_lines(texts, schema)
    except ARROW_ERRORS:
        return _payload_rows(texts), None
    return _arrow_payload(table), table.schema


def _read_json_lines(texts: list[str], schema: pa.Schema | None = None) -> pa.Table:
    """One pyarrow parse of the page; ArrowInvalid if any row is not a JSON object."""
    # a payload with a line break in it splits into fragments that are not JSON objects: an error
    data = "\n".join(texts).encode("utf-8")
    table = None
    if schema is not None:
        try:  # fields the schema lacks are inferred; a type that changed fails: infer it all
            table = pa_json.read_json(io.BytesIO(data), parse_options=_explicit(schema))
        except ARROW_ERRORS:
            table = None
    if table is None:
        table = pa_json.read_json(io.BytesIO(data))
    if table.num_rows != len(texts):  # an empty text is skipped by the reader: rows would shift
        raise pa.ArrowInvalid(f"{len(texts)} payloads gave {table.num_rows} rows")
    if _has_temporal(table.schema):  # pyarrow reads ISO text as timestamps (in UTC): keep the text
        schema = pa.schema([f.with_type(_text_for_time(f.type)) for f in table.schema])
        table = pa_json.read_json(io.BytesIO(data), parse_options=_explicit(schema))
    return table


def _explicit(schema: pa.Schema) -> pa_json.ParseOptions:
    return pa_json.ParseOptions(explicit_schema=schema)


def _has_temporal(schema: pa.Schema | pa.DataType) -> bool:
    fields = list(schema) if isinstance(schema, pa.Schema) else _children(schema)
    return any(pa.types.is_temporal(f.type) or _has_temporal(f.type) for f in fields)


def _children(kind: pa.DataType) -> list[pa.Field]:
    if pa.types.is_struct(kind):
        return [kind.field(i) for i in range(kind.num_fields)]
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [kind.value_field]
    return []


def _text_for_time(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_temporal(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_text_for_time(f.type)) for f in _children(kind)])
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_text_for_time(kind.value_type)))
    return kind


def _arrow_payload(table: pa.Table) -> pd.DataFrame:
    """Flatten struct columns to dotted names; list columns stay Arrow (an item reads as a list)."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    columns: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):  # zero-copy
            columns[DATA_PREFIX + name] = pd.arrays.ArrowExtensionArray(column)
        elif pa.types.is_null(column.type):
            columns[DATA_PREFIX + name] = pd.Series([None] * len(column), dtype=object)
        else:
            columns[DATA_PREFIX + name] = column.to_pandas()
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


def _payload_rows(texts: list[str]) -> pd.DataFrame:
    """The slow, forgiving path: each row parsed alone; a bad row gets a data_error, not a crash."""
    rows: list[dict[str, Any]] = []
    errors: list[str | None] = []
    for text in texts:
        error: str | None = None
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as e:
            value, error = None, f"invalid JSON: {e}"
        if error is None and not isinstance(value, dict):
            error = f"not a JSON object: {type(value).__name__}"
        rows.append(flatten(value) if error is None else {})
        errors.append(error)
    frame = pd.DataFrame.from_records(rows, index=pd.RangeIndex(len(rows))).add_prefix(DATA_PREFIX)
    if any(e is not None for e in errors):
        frame["data_error"] = pd.Series(errors, dtype=object, index=frame.index)
    return frame


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as one level with dotted keys (empty dicts vanish, as pyarrow's flatten does)."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            flat.update(flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat
