"""Pandas frames of a store's events, deliveries, DLQ and migrations: what the notebook kit analyses.

Frames read the store page by page through its public protocol (never a list of a million events)
and build each column in one vectorised step. Payloads are parsed by pyarrow's JSON reader and
flattened into ``data.<field>`` columns (``data.metadata.width`` for nested objects); a page that
pyarrow rejects (a corrupt row, a field whose type changes between rows) is parsed row by row with
the standard library instead, and a row that is not a JSON object gets NaN data and a ``data_error``.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from eventkit.bus import EventBus
from eventkit.errors import MigrationError, SerializationError, UnsupportedVersionError
from eventkit.events import datetime_to_ms
from eventkit.stores.base import DeadLetter, DeliveryRecord, StoredEvent
from eventkit.versioning import registry

#: rows read from the store per round trip: large enough that per-page costs vanish
PAGE = 50_000
DATA_PREFIX = "data."
UTC_MS = "datetime64[ms, UTC]"

EVENT_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "version": "int64", "source": "str", "timestamp": UTC_MS,
}  # fmt: skip
DELIVERY_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "consumer_group": "str", "consumer_name": "str",
    "status": "str", "attempts": "int64", "published_at": UTC_MS, "first_delivered_at": UTC_MS,
    "acked_at": UTC_MS, "latency_ms": "float64", "last_error": "object",
}  # fmt: skip
DLQ_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "consumer_group": "str", "consumer_name": "str",
    "attempts": "int64", "failed_at": UTC_MS, "last_error": "str", "version": "int64",
    "source": "str", "timestamp": UTC_MS, "traceback": "str",
}  # fmt: skip
MIGRATION_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "stored_version": "int64", "current_version": "Int64",
    "migrates": "bool", "error": "object", "changed_fields": "object",
}  # fmt: skip
EXPORT_FORMATS = ("csv", "parquet")

R = TypeVar("R", StoredEvent, DeliveryRecord)


# -- public frames --------------------------------------------------------------------------------


async def events_frame(
    bus: EventBus,
    event_types: Sequence[str] | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    source: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """One row per stored event in publish order, payload flattened; filters as replay_events."""
    pages = []
    schema: pa.Schema | None = None
    with _gc_paused():
        async for page in _event_pages(bus, event_types, start_time, end_time, source, limit):
            # the payload parses in a thread (pyarrow lets go of the GIL) while the envelope builds
            texts = [e.data for e in page]
            parsing = asyncio.ensure_future(asyncio.to_thread(_payload_page, texts, schema))
            envelope = _events_envelope(page)
            payload, schema = await parsing
            pages.append(_beside(envelope, payload))
        return _concat(pages, EVENT_COLUMNS)


async def deliveries_frame(bus: EventBus, consumer_group: str | None = None) -> pd.DataFrame:
    """One row per (group, delivered event): status, attempts, times and publish->ack latency."""
    groups = [consumer_group] if consumer_group is not None else await bus.store.groups()
    pages = []
    with _gc_paused():
        for group in groups:

            async def fetch(after: int | None, size: int, group: str = group) -> list[Any]:
                return await bus.store.deliveries(group, after_position=after, limit=size)

            async for page in _pages(fetch, None):
                pages.append(_deliveries_page(page))
        return _concat(pages, DELIVERY_COLUMNS)


async def dlq_frame(bus: EventBus, consumer_group: str | None = None) -> pd.DataFrame:
    """One row per DLQ entry (all groups when None), oldest failure first, with its payload."""
    letters = await bus.store.get_pending_events(consumer_group)
    if not letters:
        return _concat([], DLQ_COLUMNS)
    return await _with_payload(_dlq_envelope(letters), [d.stored.data for d in letters])


async def migration_frame(bus: EventBus, event_types: Sequence[str] | None = None) -> pd.DataFrame:
    """What the registered migration chain would do to each stored event; nothing is written."""
    pages = [
        _migration_page(page)
        async for page in _event_pages(bus, event_types, None, None, None, None)
    ]
    return _concat(pages, MIGRATION_COLUMNS)


async def export_frame(
    bus: EventBus,
    path: str | Path,
    format: str,
    *,
    event_types: Sequence[str] | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> int:
    """Write events_frame as CSV or Parquet (lists, dicts and mixed types as JSON text); row count."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    frame = _portable(await events_frame(bus, event_types, start_time, end_time), format)
    if format == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame)


# -- reading pages --------------------------------------------------------------------------------


def _event_pages(
    bus: EventBus,
    event_types: Sequence[str] | None,
    start_time: datetime | None,
    end_time: datetime | None,
    source: str | None,
    limit: int | None,
) -> AsyncIterator[list[StoredEvent]]:
    """Stored events matching the filters in publish order, PAGE at a time (as bus.iter_stored)."""
    types = [event_types] if isinstance(event_types, str) else event_types
    start_ms = None if start_time is None else datetime_to_ms(start_time)
    end_ms = None if end_time is None else datetime_to_ms(end_time)

    async def fetch(after: int | None, size: int) -> list[StoredEvent]:
        return await bus.store.read(
            event_types=types, start_ms=start_ms, end_ms=end_ms, source=source,
            after_position=after, limit=size,
        )  # fmt: skip

    return _pages(fetch, limit)


async def _pages(
    fetch: Callable[[int | None, int], Awaitable[list[R]]], limit: int | None
) -> AsyncIterator[list[R]]:
    """Pages of records by position; the next page is read while the caller works on this one."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
    remaining = PAGE if limit is None else limit
    size = min(PAGE, remaining)
    pending = asyncio.ensure_future(fetch(None, size)) if size else None
    try:
        while pending is not None:
            page = await pending
            pending = None
            if limit is not None:
                remaining -= len(page)
            size = min(PAGE, remaining)
            if len(page) == PAGE and size:  # a full page: there may be more
                pending = asyncio.ensure_future(fetch(page[-1].position, size))
            if page:
                yield page
    finally:
        if pending is not None:
            pending.cancel()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Building a frame allocates millions of small objects and the cyclic GC would scan them over
    and over (a fifth of the time on 1M rows); nothing built here is cyclic garbage. Restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _events_envelope(page: list[StoredEvent]) -> pd.DataFrame:
    _, event_id, event_type, version, source, timestamp_ms, _, _ = zip(*page, strict=True)
    return pd.DataFrame(
        {
            "event_id": _text(event_id),
            "event_type": _text(event_type),
            "version": np.array(version, np.int64),
            "source": _text(source),
            "timestamp": _utc(np.array(timestamp_ms, np.int64)),
        }
    )


def _deliveries_page(page: list[DeliveryRecord]) -> pd.DataFrame:
    (_, event_id, event_type, group, consumer, status, attempts, published_ms, first_ms, acked_ms,
     last_error) = zip(*page, strict=True)  # fmt: skip
    published = np.array(published_ms, np.int64)
    acked = np.array(acked_ms, np.float64)  # None becomes NaN
    return pd.DataFrame(
        {
            "event_id": _text(event_id),
            "event_type": _text(event_type),
            "consumer_group": _text(group),
            "consumer_name": _text(consumer),
            "status": _text(status),  # a StrEnum: its text
            "attempts": np.array(attempts, np.int64),
            "published_at": _utc(published),
            "first_delivered_at": _utc(np.array(first_ms, np.int64)),
            "acked_at": _utc(acked),
            "latency_ms": acked - published,
            "last_error": pd.Series(last_error, dtype=object),
        }
    )


def _dlq_envelope(letters: list[DeadLetter]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_id": pd.array([d.event_id for d in letters], dtype="str"),
            "event_type": pd.array([d.stored.event_type for d in letters], dtype="str"),
            "consumer_group": pd.array([d.consumer_group for d in letters], dtype="str"),
            "consumer_name": pd.array([d.consumer_name for d in letters], dtype="str"),
            "attempts": np.array([d.attempts for d in letters], np.int64),
            "failed_at": _utc([d.failed_ms for d in letters]),
            "last_error": pd.array([d.last_error for d in letters], dtype="str"),
            "version": np.array([d.stored.version for d in letters], np.int64),
            "source": pd.array([d.stored.source for d in letters], dtype="str"),
            "timestamp": _utc([d.stored.timestamp_ms for d in letters]),
            "traceback": pd.array([d.traceback for d in letters], dtype="str"),
        }
    )


def _text(values: Sequence[str | None]) -> Any:
    """A "str" column: through a pyarrow array, twice as fast as pd.array(values, dtype="str")."""
    return pd.array(pa.array(values, pa.string()), dtype="str")


def _utc(ms: Sequence[int] | np.ndarray) -> pd.Series:
    """Epoch milliseconds (NaN: missing) as a datetime64[ms, UTC] column, without a copy per row."""
    values = np.asarray(ms)
    if values.dtype.kind == "f":  # NaT is int64's minimum
        values = np.where(np.isnan(values), np.iinfo(np.int64).min, values)
    stamps = values.astype(np.int64, copy=False).view("datetime64[ms]")
    return pd.Series(stamps).dt.tz_localize("UTC")


def _concat(pages: list[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    """Pages as one frame; no pages gives the documented columns and dtypes with no rows."""
    if not pages:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
    if len(pages) == 1:
        return pages[0]
    return pd.concat(pages, ignore_index=True, sort=False)


# -- payloads -------------------------------------------------------------------------------------


async def _with_payload(envelope: pd.DataFrame, texts: list[str]) -> pd.DataFrame:
    """The envelope beside its payload columns, parsed in a thread (pyarrow releases the GIL, so
    the store's next page arrives meanwhile)."""
    return _beside(envelope, await asyncio.to_thread(payload_frame, texts))


def _beside(envelope: pd.DataFrame, payload: pd.DataFrame) -> pd.DataFrame:
    payload.index = envelope.index
    return pd.concat([envelope, payload], axis=1)


ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def payload_frame(texts: list[str]) -> pd.DataFrame:
    """JSON object texts as flattened ``data.*`` columns: pyarrow when it can, else row by row."""
    return _payload_page(texts, None)[0]


def _payload_page(
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


# -- migrations and export ------------------------------------------------------------------------


def _migration_page(page: list[StoredEvent]) -> pd.DataFrame:
    columns = zip(
        MIGRATION_COLUMNS.items(), zip(*map(_migration_row, page), strict=True), strict=True
    )
    return pd.DataFrame(
        {name: pd.Series(list(values), dtype=kind) for (name, kind), values in columns}
    )


def _migration_row(stored: StoredEvent) -> tuple[Any, ...]:
    """(event_id, type, stored, current, migrates, error, changed) for one event, on a copy."""
    current = registry.current_version(stored.event_type)
    try:
        before = json.loads(stored.data)
        if not isinstance(before, dict):
            raise SerializationError(f"payload is {type(before).__name__}, not a JSON object")
        _, after = registry.migrate(stored.event_type, stored.version, copy.deepcopy(before))
    except (ValueError, SerializationError, MigrationError, UnsupportedVersionError) as e:
        error = f"{type(e).__name__}: {e}"
        return (stored.event_id, stored.event_type, stored.version, current, False, error, [])
    old, new = flatten(before), flatten(after)
    changed = sorted(k for k in old.keys() | new.keys() if k not in old or k not in new
                     or old[k] != new[k])  # fmt: skip
    return (stored.event_id, stored.event_type, stored.version, current, True, None, changed)


def _portable(frame: pd.DataFrame, format: str) -> pd.DataFrame:
    """Cells the format cannot hold as one type (mixed types; lists and dicts in CSV) as JSON text."""
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if isinstance(column.dtype, pd.ArrowDtype):  # Arrow lists: Parquet keeps them as lists
            if format == "csv":
                out[name] = column.map(_json_cell)
            continue
        if column.dtype != object:
            continue
        kinds = {type(v) for v in column if v is not None and v == v}  # v == v: not NaN
        if len(kinds) > 1 or (kinds & {list, dict} and format == "csv"):
            out[name] = column.map(_json_cell)
    return out


def _json_cell(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return json.dumps(list(value) if isinstance(value, np.ndarray) else value)
