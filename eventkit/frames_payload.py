"""Payload JSON texts as flattened, typed ``data.*`` columns: the parsing and dtype half of the frames.

pyarrow's JSON reader parses a page of payloads at once (and lets go of the GIL, so the store's
next page arrives meanwhile); nested objects become dotted columns (``data.metadata.width``). A
page that pyarrow rejects (a corrupt row, a field whose type changes between rows) is parsed row by
row with the standard library instead, and a row that is not a JSON object gets NA data and a
``data_error``.

A column's dtype never depends on which rows a frame holds (SPEC §6):

- a payload field that a registered event class declares gets the dtype of its annotation
  (`DECLARED`; ``X | None`` as X): ``int`` -> ``Int64``, ``float`` -> ``Float64``, ``str`` ->
  ``string``, ``bool`` -> ``boolean``, ``datetime`` -> ``datetime64[ms, UTC]``, ``list[str]``
  (``list`` of int, float, str or bool) -> an Arrow list dtype (``list<item: string>[pyarrow]``,
  zero-copy from the parser, an item reads as a list), other lists, dicts, tuples and sets ->
  ``object``. Classes that declare ``int`` and ``float`` for one name give ``Float64``; other
  disagreements, and annotations such as ``Any``, leave the column to its values.
- any other column (generic events, nested ``data.metadata.*`` keys, fields of old versions) is
  typed from *every* value the store holds under that name (`StoreKinds`), by `inferred`: only
  whole numbers -> ``Int64`` (``2160.0`` counts as whole), numbers -> ``Float64``, booleans ->
  ``boolean``, text -> ``string``, any list -> ``object``; a mix of kinds (``10`` and
  ``"12 MB"``) -> ``string`` holding each value's JSON text (``"10"``), so nothing is lost; a
  name whose values are all null -> ``string``.
- a value that does not fit a declared dtype (``"12 MB"`` for an ``int``, ``2.5`` for an ``int``,
  text that is not ISO 8601 for a ``datetime``) becomes NA and is counted (`Column.coerced`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import math
import typing
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import NoneType, UnionType
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from eventkit.events import Event, payload_fields
from eventkit.progress import progress_bar
from eventkit.records import StoredEvent
from eventkit.stores.base import EventStore
from eventkit.versioning import registry

DATA_PREFIX = "data."
ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
UTC_MS = "datetime64[ms, UTC]"
#: rows per round trip when StoreKinds reads the whole store
SCAN_PAGE = 50_000
#: the largest float that converts to int64 exactly enough to count as a whole number
_INT64_LIMIT = 2.0**63


class CoercedValuesWarning(UserWarning):
    """Payload values that do not fit their column's declared dtype became NA."""


#: a column's dtype: a pandas dtype name, or a list dtype (Arrow lists, zero-copy from the parser)
Dtype: TypeAlias = "str | pd.ArrowDtype"


class Target(NamedTuple):
    """What a payload column becomes: a dtype, and whether values that do not fit are NA
    (declared) or rendered as JSON text (a mixed column typed by its values)."""

    dtype: Dtype
    declared: bool
    #: for messages: "int in AssetDiscoveredEvent.file_size" or "its values"
    origin: str


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


# -- dtypes ---------------------------------------------------------------------------------------

_SCALARS: dict[Any, str] = {
    int: "Int64", float: "Float64", str: "string", bool: "boolean", datetime: UTC_MS,
    "int": "Int64", "float": "Float64", "str": "string", "bool": "boolean", "datetime": UTC_MS,
}  # fmt: skip
#: the Arrow item type of a declared list[X]
_LIST_ITEMS = {"Int64": pa.int64(), "Float64": pa.float64(), "string": pa.string(),
               "boolean": pa.bool_()}  # fmt: skip
_CONTAINERS = (list, dict, tuple, set, frozenset)
_CONTAINER_NAMES = ("list", "dict", "tuple", "set", "frozenset", "List", "Dict", "Tuple", "Set")


def _annotation_dtype(hint: Any) -> Dtype | None:
    """The column dtype of a field annotation; None: left to the values (Any, unions, classes)."""
    if isinstance(hint, str):  # an annotation get_type_hints could not resolve: its text
        return _annotation_text_dtype(hint)
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is UnionType:
        found = {_annotation_dtype(a) for a in typing.get_args(hint) if a is not NoneType}
        if found == {"Int64", "Float64"}:
            return "Float64"
        return found.pop() if len(found) == 1 else None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return _list_dtype(_annotation_dtype(item) if item in _SCALARS else None)
    try:
        if hint in _SCALARS:
            return _SCALARS[hint]
    except TypeError:  # an unhashable annotation
        return None
    if hint in _CONTAINERS or origin in _CONTAINERS:
        return "object"
    return None


def _annotation_text_dtype(hint: str) -> Dtype | None:
    text = hint.strip()
    if text.startswith("Optional[") and text.endswith("]"):
        text = text.removeprefix("Optional[").removesuffix("]")
    parts = [p.strip() for p in text.split("|") if p.strip() != "None"]
    if len(parts) != 1:
        return None
    name = parts[0]
    if name.startswith(("list[", "List[")):
        return _list_dtype(_SCALARS.get(name[5:-1].strip()))
    return _SCALARS.get(name) or ("object" if name.startswith(_CONTAINER_NAMES) else None)


def _list_dtype(item: Dtype | None) -> Dtype:
    """list[int], list[str], ...: an Arrow list of that item type; other lists: object."""
    kind = _LIST_ITEMS.get(item) if isinstance(item, str) else None
    return "object" if kind is None else pd.ArrowDtype(pa.list_(kind))


def _class_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # annotations naming something local: their text
        return {f.name: f.type for f in dataclasses.fields(cls)}


_declared: dict[frozenset[str], dict[str, Target]] = {}
_declared_generation = -1


def declared(event_types: Iterable[str]) -> dict[str, Target]:
    """Column -> dtype of every payload field the registered classes of these event types (any
    version) declare; worked out again when the registry changes. Only the frame's own types
    count: a class of another type that happens to share a field name says nothing here."""
    global _declared_generation
    if _declared_generation != registry.generation:
        _declared.clear()
        _declared_generation = registry.generation
    key = frozenset(event_types)
    known = _declared.get(key)
    if known is None:
        known = _declared[key] = _declared_by(key)
    return known


def _declared_by(event_types: frozenset[str]) -> dict[str, Target]:
    found: dict[str, dict[Dtype, str]] = {}  # column -> dtype -> where it is declared
    for event_type, versions in registry.classes.items():
        if event_type not in event_types:
            continue
        for cls in versions.values():
            if cls is Event or not dataclasses.is_dataclass(cls):
                continue
            hints = _class_hints(cls)
            for name in sorted(payload_fields(cls)):
                dtype = _annotation_dtype(hints.get(name))
                if dtype is not None:
                    where = f"{_hint_text(hints.get(name))} in {cls.__name__}.{name}"
                    found.setdefault(DATA_PREFIX + name, {}).setdefault(dtype, where)
    targets: dict[str, Target] = {}
    for column, dtypes in found.items():
        if len(dtypes) == 1:
            (dtype, where), = dtypes.items()  # fmt: skip
            targets[column] = Target(dtype, True, where)
        elif set(dtypes) == {"Int64", "Float64"}:
            targets[column] = Target("Float64", True, " and ".join(dtypes.values()))
    return targets


def _hint_text(hint: Any) -> str:
    if isinstance(hint, str) or typing.get_origin(hint) is not None:
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or str(hint)


def inferred(kinds: set[str]) -> Target:
    """The dtype of an undeclared column from the kinds of all of its values in the store."""
    if not kinds or kinds == {"str"}:
        return Target("string", False, "its values")
    if "list" in kinds:
        return Target("object", False, "its values")
    for dtype, allowed in (
        ("boolean", {"bool"}),
        ("Int64", {"int"}),
        ("Float64", {"int", "float"}),
    ):
        if kinds <= allowed:
            return Target(dtype, False, "its values")
    return Target("string", False, "its values (of mixed kinds, as JSON text)")


def targets(
    columns: Iterable[str], kinds: Mapping[str, set[str]], event_types: Iterable[str]
) -> dict[str, Target]:
    """Each column's dtype: declared by a class of one of these types, else from its kinds."""
    known = declared(event_types)
    return {c: known.get(c) or inferred(kinds.get(c, set())) for c in columns}


def needs_store_kinds(columns: Iterable[str], event_types: Iterable[str]) -> bool:
    """Whether some column's dtype comes from its values (so from the whole store's values)."""
    known = declared(event_types)
    return any(c not in known for c in columns)


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


# -- the kinds of the whole store -----------------------------------------------------------------


@dataclasses.dataclass
class StoreKinds:
    """The JSON kinds of every value stored under each payload column, read up to `position`.

    One per store object, kept while the store lives, and read on from where it stopped, so a
    filtered frame reads the whole store once and then only what was appended since. Trimmed
    events leave their kinds: a column's dtype never narrows while the process runs."""

    position: int | None = None
    kinds: dict[str, set[str]] = dataclasses.field(default_factory=dict)

    def add(self, kinds: Mapping[str, set[str]], last_position: int) -> None:
        merge_kinds(self.kinds, kinds)
        if self.position is None or last_position > self.position:
            self.position = last_position


_STORE_KINDS: weakref.WeakKeyDictionary[EventStore, StoreKinds] = weakref.WeakKeyDictionary()


def store_kinds(store: EventStore) -> StoreKinds:
    kinds = _STORE_KINDS.get(store)
    if kinds is None:
        kinds = _STORE_KINDS[store] = StoreKinds()
    return kinds


async def read_store_kinds(store: EventStore, progress: bool = True) -> dict[str, set[str]]:
    """Bring the store's StoreKinds up to date, reading only events after its position (the
    next page is read while this one parses)."""
    known = store_kinds(store)
    schema: pa.Schema | None = None
    reading: asyncio.Future[list[StoredEvent]] | None = asyncio.ensure_future(
        store.read(after_position=known.position, limit=SCAN_PAGE)
    )
    with progress_bar(None, "payload dtypes of the whole store", enabled=progress) as bar:
        try:
            while reading is not None:
                page = await reading
                reading = None
                if len(page) == SCAN_PAGE:  # there may be more
                    after = page[-1].position
                    reading = asyncio.ensure_future(
                        store.read(after_position=after, limit=SCAN_PAGE)
                    )
                if page:
                    texts = [e.data for e in page]
                    parsed, schema = await asyncio.to_thread(parse_page, texts, schema)
                    known.add(parsed.kinds, page[-1].position)
                    bar.update(len(page))
        finally:
            if reading is not None:
                reading.cancel()
    return known.kinds
