"""Payload JSON texts as flattened, typed ``data.*`` columns: parsing and converting a page.

pyarrow's JSON reader parses a page of payloads at once (and lets go of the GIL, so the store's
next page arrives meanwhile); nested objects become dotted columns (``data.metadata.width``). A
page that pyarrow rejects (a corrupt row, a field whose type changes between rows) is parsed row by
row with the standard library instead, and a row that is not a JSON object gets NA data and a
``data_error``.

Which dtype a column gets is decided in `eventkit.frames_dtypes` (the rules are there); the kinds
of every value the store holds, from which undeclared columns are typed, are kept by
`eventkit.frames_kinds`. A value that does not fit a declared dtype becomes NA and is counted.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from eventkit.frames_dtypes import DATA_PREFIX, UTC_MS, Dtype, Target, targets

ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
#: the largest float that converts to int64 exactly enough to count as a whole number
_INT64_LIMIT = 2.0**63


class CoercedValuesWarning(UserWarning):
    """Payload values that do not fit their column's declared dtype became NA."""


# -- parsing --------------------------------------------------------------------------------------


class PayloadPage(NamedTuple):
    """A page of payloads: columns by dotted name (pyarrow arrays, or lists of Python values
    on the row-by-row path) and the JSON kinds of each column's non-null values."""

    columns: dict[str, pa.ChunkedArray | list[Any]]
    kinds: dict[str, set[str]]
    rows: int
    #: the row-by-row path's error per row (None: fine); None when no row failed
    errors: list[str | None] | None
    #: columns already converted (typed_page) to the target they were guessed to have
    converted: dict[str, tuple[Target, Any, int]] = {}  # never mutated: _replace()d


def parse_page(texts: list[str], schema: pa.Schema | None) -> tuple[PayloadPage, pa.Schema | None]:
    """Parse a page, with the schema of the page before when it fits (40 % faster than inferring
    it again); returns the schema for the next page (None after the row-by-row path)."""
    try:
        table = _read_json_lines(texts, schema)
    except ARROW_ERRORS:
        return _payload_rows(texts), None
    return _arrow_page(table), table.schema


def typed_page(
    texts: list[str],
    event_types: Iterable[str],
    schema: pa.Schema | None,
    store: Mapping[str, set[str]],
) -> tuple[PayloadPage, pa.Schema | None]:
    """parse_page, then each column converted to the dtype it will most likely have (declared,
    or from its kinds here and in `store`), in the caller's worker thread; the frame checks the
    guess once every page is in (`converted_column`)."""
    page, schema = parse_page(texts, schema)
    kinds = {name: found | store.get(name, set()) for name, found in page.kinds.items()}
    plan = targets(page.columns, kinds, event_types)
    done = {
        name: (plan[name], *convert(values, plan[name])) for name, values in page.columns.items()
    }
    return page._replace(converted=done), schema


def converted_column(page: PayloadPage, name: str, target: Target) -> tuple[Any, int]:
    """A page's column in the target dtype: typed_page's work when it guessed right."""
    values = page.columns.get(name)
    if values is None:
        return empty_column(page.rows, target.dtype), 0
    done = page.converted.get(name)
    if done is not None and done[0] == target:
        return done[1], done[2]
    return convert(values, target)


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
    if table is None:  # one thread: blocks parsed in parallel give the columns in any order
        table = pa_json.read_json(io.BytesIO(data), read_options=_ONE_THREAD)
    if table.num_rows != len(texts):  # an empty text is skipped by the reader: rows would shift
        raise pa.ArrowInvalid(f"{len(texts)} payloads gave {table.num_rows} rows")
    if _has_temporal(table.schema):  # pyarrow reads ISO text as timestamps (in UTC): keep the text
        schema = pa.schema([f.with_type(_text_for_time(f.type)) for f in table.schema])
        table = pa_json.read_json(io.BytesIO(data), parse_options=_explicit(schema))
    return table


_ONE_THREAD = pa_json.ReadOptions(use_threads=False)


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


def _arrow_page(table: pa.Table) -> PayloadPage:
    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    columns: dict[str, pa.ChunkedArray | list[Any]] = {}
    kinds: dict[str, set[str]] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        columns[DATA_PREFIX + name] = column
        kinds[DATA_PREFIX + name] = _arrow_kinds(column)
    return PayloadPage(columns, kinds, table.num_rows, None)


def _arrow_kinds(column: pa.ChunkedArray) -> set[str]:
    kind = column.type
    if column.null_count == len(column):
        return set()
    if pa.types.is_integer(kind):
        return {"int"}
    if pa.types.is_floating(kind):
        return {"int" if _whole(column.to_numpy()).all() else "float"}
    if pa.types.is_boolean(kind):
        return {"bool"}
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return {"str"}
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return {"list"}
    return {"other"}


def _whole(values: np.ndarray) -> np.ndarray:
    """Per float: a whole number int64 can hold (NaN, a missing value, counts as whole)."""
    with np.errstate(invalid="ignore"):
        whole: np.ndarray = np.isnan(values) | (
            (np.floor(values) == values) & (np.abs(values) < _INT64_LIMIT)
        )
    return whole


def _payload_rows(texts: list[str]) -> PayloadPage:
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
    names = dict.fromkeys(name for row in rows for name in row)  # first appearance order
    columns: dict[str, pa.ChunkedArray | list[Any]] = {}
    kinds: dict[str, set[str]] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        columns[DATA_PREFIX + name] = values
        kinds[DATA_PREFIX + name] = {_kind(v) for v in values if v is not None} - {"null"}
    failed = any(e is not None for e in errors)
    return PayloadPage(columns, kinds, len(rows), errors if failed else None)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if -_INT64_LIMIT <= value < _INT64_LIMIT else "float"
    if isinstance(value, float):
        if math.isnan(value):
            return "null"
        return "int" if value.is_integer() and abs(value) < _INT64_LIMIT else "float"
    if isinstance(value, str):
        return "str"
    return "list" if isinstance(value, list | dict) else "other"


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as one level with dotted keys (empty dicts vanish, as pyarrow's flatten does)."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            flat.update(flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


def merge_kinds(into: dict[str, set[str]], kinds: Mapping[str, set[str]]) -> None:
    for name, found in kinds.items():
        into.setdefault(name, set()).update(found)


# -- converting a page's column -------------------------------------------------------------------


def empty_column(rows: int, dtype: Dtype) -> Any:
    """All-missing values of a dtype: a page without the field."""
    if isinstance(dtype, pd.ArrowDtype):
        return pd.arrays.ArrowExtensionArray(pa.nulls(rows, dtype.pyarrow_dtype))
    if dtype == "object":
        return np.full(rows, None, dtype=object)
    if dtype == "Int64":
        return pd.arrays.IntegerArray(np.zeros(rows, np.int64), np.ones(rows, bool))
    return pd.array(np.full(rows, None, dtype=object), dtype=dtype)


def convert(values: pa.ChunkedArray | list[Any], target: Target) -> tuple[Any, int]:
    """A page's column in the target dtype, and how many non-null values did not fit (now NA)."""
    if isinstance(values, pa.ChunkedArray):
        fast = _convert_arrow(values, target)
        if fast is not None:
            return fast
        values = values.to_pylist()
    return _convert_values(values, target)


_ARROW_TO_PANDAS = {pa.int64(): pd.Int64Dtype(), pa.float64(): pd.Float64Dtype(),
                    pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}  # fmt: skip


def _convert_arrow(values: pa.ChunkedArray, target: Target) -> tuple[Any, int] | None:
    """The common cases without a Python object per value; None for the rest."""
    kind, dtype = values.type, target.dtype
    if pa.types.is_null(kind):
        return empty_column(len(values), dtype), 0
    if isinstance(dtype, pd.ArrowDtype):  # a declared list[X]: the parser's lists as they are
        wanted = dtype.pyarrow_dtype
        if kind == wanted or (pa.types.is_list(kind) and pa.types.is_null(kind.value_type)):
            return pd.arrays.ArrowExtensionArray(values.cast(wanted)), 0
        return None
    if dtype == "object" and pa.types.is_list(kind):
        column = np.empty(len(values), dtype=object)
        column[:] = values.to_pylist()
        return column, 0
    if dtype == "Int64" and pa.types.is_floating(kind):
        floats = values.to_numpy()
        whole = _whole(floats)
        missing = np.isnan(floats)
        ints = np.where(whole & ~missing, floats, 0).astype(np.int64)
        return pd.arrays.IntegerArray(ints, ~whole | missing), int(np.count_nonzero(~whole))
    if dtype == UTC_MS and pa.types.is_string(kind):
        return _parse_times(values.to_pandas(), len(values) - values.null_count)
    if dtype == "Float64" and pa.types.is_integer(kind):
        values = values.cast(pa.float64())
        kind = values.type
    if _ARROW_TO_PANDAS.get(kind) == pd.api.types.pandas_dtype(dtype):
        return values.to_pandas(types_mapper=_ARROW_TO_PANDAS.get).array, 0
    return None


def _convert_values(values: list[Any], target: Target) -> tuple[Any, int]:
    dtype = target.dtype
    if isinstance(dtype, pd.ArrowDtype):
        item = dtype.pyarrow_dtype.value_type
        lists = [v if isinstance(v, list) and _items_fit(v, item) else None for v in values]
        lost = sum(1 for v, k in zip(values, lists, strict=True) if k is None and not _missing(v))
        return pd.arrays.ArrowExtensionArray(pa.array(lists, dtype.pyarrow_dtype)), lost
    if dtype == "object":
        column = np.empty(len(values), dtype=object)
        column[:] = [None if _missing(v) else v for v in values]
        return column, 0
    if dtype == UTC_MS:
        return _to_datetimes(values)
    if dtype == "string" and not target.declared:  # a mixed column: every value as JSON text
        texts = [None if _missing(v) else v if isinstance(v, str) else _json(v) for v in values]
        return pd.array(texts, dtype="string"), 0
    fits = _FITS[dtype]
    kept = [v if fits(v) else None for v in values]
    lost = sum(1 for v, k in zip(values, kept, strict=True) if k is None and not _missing(v))
    if dtype == "Int64":  # 7.0 fits an int column as 7
        return pd.array([None if v is None else int(v) for v in kept], dtype=dtype), lost
    return pd.array(kept, dtype=dtype), lost


def _items_fit(items: list[Any], item: pa.DataType) -> bool:
    fits = _FITS[_ARROW_TO_PANDAS[item].name]
    return all(v is None or fits(v) for v in items)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


_FITS: dict[str, Callable[[object], bool]] = {
    "Int64": lambda v: _kind(v) == "int",
    "Float64": lambda v: _kind(v) in ("int", "float"),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
}


def _to_datetimes(values: list[Any]) -> tuple[Any, int]:
    texts = pd.Series([v if isinstance(v, str) else None for v in values], dtype=object)
    return _parse_times(texts, sum(1 for v in values if not _missing(v)))


def _parse_times(texts: pd.Series, present: int) -> tuple[Any, int]:
    """ISO 8601 text (naive = UTC) as UTC milliseconds; anything else is NA and counted."""
    stamps = pd.to_datetime(texts, utc=True, format="ISO8601", errors="coerce")
    return stamps.dt.as_unit("ms").array, present - int(stamps.notna().sum())
