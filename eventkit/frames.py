"""Pandas frames of a store's events, deliveries, DLQ and migrations: what the notebook kit analyses.

Frames read the store a page at a time through the one pager (`eventkit.pages.iter_pages`, never a
list of a million events; the next page is read while this one is worked on) and build each column
in one vectorised step. Payloads become flattened ``data.<field>`` columns (``data.metadata.width``
for nested objects) in `eventkit.frames_payload`.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from eventkit import codec
from eventkit.bus import EventBus
from eventkit.consumer import describe
from eventkit.frames_payload import flatten, payload_frame, payload_page
from eventkit.pages import iter_delivery_pages, iter_pages
from eventkit.records import DeadLetter, DeliveryRecord, StoredEvent
from eventkit.versioning import registry

#: rows read from the store per round trip: large enough that per-page costs vanish
PAGE = 50_000
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
    types = [event_types] if isinstance(event_types, str) else event_types
    pages = []
    schema: pa.Schema | None = None
    with _gc_paused():
        async for page in iter_pages(bus.store, types, start_time, end_time, source=source,
                                     limit=limit, page_size=PAGE):  # fmt: skip
            # the payload parses in a thread (pyarrow lets go of the GIL) while the envelope builds
            texts = [e.data for e in page]
            parsing = asyncio.ensure_future(asyncio.to_thread(payload_page, texts, schema))
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
            async for page in iter_delivery_pages(bus.store, group, page_size=PAGE):
                pages.append(_deliveries_page(page))
        return _concat(pages, DELIVERY_COLUMNS)


async def dlq_frame(bus: EventBus, consumer_group: str | None = None) -> pd.DataFrame:
    """One row per DLQ entry (all groups when None), oldest failure first, with its payload."""
    letters = await bus.store.get_pending_events(consumer_group)
    if not letters:
        return _concat([], DLQ_COLUMNS)
    texts = [d.stored.data for d in letters]
    return _beside(_dlq_envelope(letters), await asyncio.to_thread(payload_frame, texts))


async def migration_frame(bus: EventBus, event_types: Sequence[str] | None = None) -> pd.DataFrame:
    """What consumers would make of each stored event under the registered classes and migrations
    (the decode they run: `eventkit.codec.decode`), and which payload fields the migrations change;
    nothing is written. `error` is the text a consumer would dead-letter the event with."""
    types = [event_types] if isinstance(event_types, str) else event_types
    with _gc_paused():
        pages = [
            _migration_page(page)
            async for page in iter_pages(bus.store, types, None, None, page_size=PAGE)
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


# -- building columns -----------------------------------------------------------------------------


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


def _beside(envelope: pd.DataFrame, payload: pd.DataFrame) -> pd.DataFrame:
    payload.index = envelope.index
    return pd.concat([envelope, payload], axis=1)


# -- migrations and export ------------------------------------------------------------------------


def _migration_page(page: list[StoredEvent]) -> pd.DataFrame:
    columns = zip(
        MIGRATION_COLUMNS.items(), zip(*map(_migration_row, page), strict=True), strict=True
    )
    return pd.DataFrame(
        {name: pd.Series(list(values), dtype=kind) for (name, kind), values in columns}
    )


def _migration_row(stored: StoredEvent) -> tuple[Any, ...]:
    """(event_id, type, stored, current, migrates, error, changed) for one event. The verdict is
    the consumers' own decode; the changed fields compare the stored payload with what the
    registry's migrations make of it. Nothing here migrates or parses by itself."""
    event_type, version = stored.event_type, stored.version
    current = registry.current_version(event_type)
    changed: list[str] = []
    try:
        codec.decode(stored)
        if current is not None and version != current:  # at the current version nothing migrates
            before = codec.parse_payload(stored)
            _, after = registry.migrate(event_type, version, before)  # copies before each step
            changed = _changed_fields(before, after)
    except codec.DECODE_ERRORS as e:
        return (stored.event_id, event_type, version, current, False, describe(e), [])
    return (stored.event_id, event_type, version, current, True, None, changed)


def _changed_fields(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names (as the ``data.*`` columns) of the payload fields added, removed or changed,
    sorted. Equal subtrees are skipped whole: most of a migrated payload is left as it was."""
    changed: list[str] = []
    for key in before.keys() | after.keys():
        old, new = before.get(key, _MISSING), after.get(key, _MISSING)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_fields(old, new, f"{prefix}{key}.")
            continue
        for side in (old, new):  # an object on one side only: each of its leaves changed
            if isinstance(side, dict):
                changed += flatten(side, f"{prefix}{key}.")
            elif side is not _MISSING:
                changed.append(f"{prefix}{key}")
    return sorted(set(changed))


_MISSING = object()


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
