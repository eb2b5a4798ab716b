"""Pandas frames of a store's events, deliveries, DLQ and migrations: what the notebook kit analyses.

Frames read the store a page at a time through the one pager (`eventkit.pages.iter_pages`, never a
list of a million events; the next page is read while this one is worked on) and build each column
in one vectorised step. Payloads become flattened ``data.<field>`` columns (``data.metadata.width``
for nested objects) in `eventkit.frames_payload`; the dtype rules are in `eventkit.frames_dtypes`.
The delivery and DLQ frames are built in `eventkit.frames_deliveries`, the migration preview in
`eventkit.frames_migration`, the helpers they share in `eventkit.frames_columns`; this module
re-exports what users import.

Times: every time column is ``datetime64[ms, UTC]`` (``tz=`` shows another zone; ``frame.attrs["tz"]``
names the zone shown). Every time filter takes a `datetime` (naive = UTC), a `pandas.Timestamp`, a
`date` (its midnight, UTC) or an ISO 8601 string (``"2026-11-03"``, ``"2026-11-03T12:00:00Z"``);
anything else raises `eventkit.errors.ConfigError` naming the argument.

Dtypes: a payload column's dtype comes from the event classes' field annotations (``int`` ->
``Int64``, ``float`` -> ``Float64``, ``str`` -> ``string``, ``bool`` -> ``boolean``, ``datetime``
-> ``datetime64[ms, UTC]``, ``list[str]`` -> ``list<item: string>[pyarrow]``, other lists and
dicts -> ``object``), or for fields no class declares from every value the store holds under that
name (whole numbers -> ``Int64``, numbers -> ``Float64``, text -> ``string``, lists -> ``object``,
a mix of kinds -> ``string`` of JSON text): never from the rows a filter keeps.
A value that does not fit its declared dtype becomes NA, is counted in ``frame.attrs["coerced"]``
(``{"data.file_size": 3}``) and named in a `CoercedValuesWarning`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from eventkit.bus import EventBus
from eventkit.clock import TimeInput
from eventkit.errors import ConfigError
from eventkit.frames_columns import (
    PAGE,
    assemble,
    column_kinds,
    concat_pages,
    display_zone,
    gc_paused,
    text_column,
    time_filter,
    total_events,
    type_filter,
    utc_column,
)
from eventkit.frames_deliveries import DELIVERY_COLUMNS, DLQ_COLUMNS, deliveries_frame, dlq_frame
from eventkit.frames_dtypes import UTC_MS
from eventkit.frames_export import check_format, write_pages
from eventkit.frames_kinds import store_kinds
from eventkit.frames_migration import MIGRATION_COLUMNS, migration_frame
from eventkit.frames_payload import CoercedValuesWarning, PayloadPage, typed_page
from eventkit.frames_trace import trace_frame
from eventkit.pages import iter_pages
from eventkit.progress import progress_bar
from eventkit.records import StoredEvent, correlation_of
from eventkit.stores.base import check_limit
from eventkit.stores.lookup import check_value, field_parts, payload_matches

__all__ = ["CoercedValuesWarning", "deliveries_frame", "dlq_frame", "events_frame",
           "export_frame", "find_events", "migration_frame", "trace_frame",
           # the column names are re-exported: tests import them from here
           "DELIVERY_COLUMNS", "DLQ_COLUMNS", "EVENT_COLUMNS", "MIGRATION_COLUMNS"]  # fmt: skip

EVENT_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "version": "int64", "source": "str", "timestamp": UTC_MS,
    "correlation_id": "str", "causation_id": "str",
}  # fmt: skip


# -- public frames --------------------------------------------------------------------------------


async def events_frame(
    bus: EventBus,
    event_types: Sequence[str] | str | None = None,
    start_time: TimeInput | None = None,
    end_time: TimeInput | None = None,
    source: str | None = None,
    limit: int | None = None,
    *,
    tz: str | tzinfo | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per stored event, in publish order, with its payload flattened into columns.

    Parameters
    ----------
    bus : EventBus
        An initialized bus; its store is read a page at a time.
    event_types : sequence of str or str, optional
        Keep only these event types (``None`` or ``"*"``: all).
    start_time, end_time : datetime, pandas.Timestamp, date or ISO 8601 str, optional
        Keep events with ``start_time <= timestamp < end_time``. A naive datetime is UTC, a date
        is its midnight UTC, ``"2026-11-03"`` and ``"2026-11-03T12:00:00+01:00"`` are read as ISO
        8601. Anything else raises `eventkit.errors.ConfigError` naming the argument.
    source : str, optional
        Keep only events from this source.
    limit : int, optional
        At most this many events (the oldest first).
    tz : str or tzinfo, optional
        Show time columns in this zone (e.g. ``"Europe/Berlin"``) instead of UTC.
    progress : bool, default True
        Show a tqdm progress bar when the read takes more than a second.

    Returns
    -------
    pandas.DataFrame
        Columns ``event_id`` (str), ``event_type`` (str), ``version`` (int64), ``source`` (str),
        ``timestamp`` (``datetime64[ms, UTC]``), ``correlation_id`` and ``causation_id`` (str;
        the story the event belongs to and the event that caused it, `trace_frame` follows
        them), then one ``data.<field>`` column per payload
        field (``data.metadata.width`` for nested objects), its dtype from the event classes'
        field types whatever the filter (`eventkit.frames` says how): ``data.file_size`` is
        ``Int64``, ``data.file_path`` ``string``, ``data.score`` ``Float64``, ``data.issues``
        ``list<item: string>[pyarrow]``; a field no class declares is typed from all its
        stored values (whole numbers ``Int64``, mixed kinds ``string``). A ``data_error``
        column (``string``) appears when a stored payload is not a JSON object.
        ``frame.attrs["tz"]`` names the zone shown; ``frame.attrs["coerced"]`` counts, per
        column, the values that did not fit the declared dtype and became NA (a
        `CoercedValuesWarning` says so too).

    Examples
    --------
    >>> events = await events_frame(bus, ["asset.discovered"], start_time="2026-11-03")
    >>> events[events["data.file_size"] > 300_000_000][["timestamp", "data.asset_id"]]
    """
    types = type_filter(event_types)
    start, end = time_filter(start_time, "start_time"), time_filter(end_time, "end_time")
    zone = display_zone(tz)
    whole = types is None and start is None and end is None and source is None
    pages: list[tuple[dict[str, Any], PayloadPage]] = []
    schema: pa.Schema | None = None
    last = 0
    known = {name: set(found) for name, found in store_kinds(bus.store).kinds.items()}
    seen_types: set[str] = set()
    total = await total_events(bus, limit) if progress and whole else None
    with gc_paused(), progress_bar(total, "events_frame", enabled=progress) as bar:
        async for page in iter_pages(bus.store, types, start, end, source=source, limit=limit,
                                     page_size=PAGE):  # fmt: skip
            # the payload parses in a thread (pyarrow lets go of the GIL) while the envelope builds
            texts = [e.data for e in page]
            page_types = {e.event_type for e in page}
            seen_types |= page_types
            parsing = asyncio.ensure_future(
                asyncio.to_thread(typed_page, texts, page_types, schema, known)
            )
            envelope = _events_envelope(page)
            payload, schema = await parsing
            pages.append((envelope, payload))
            last = page[-1].position
            bar.update(len(page))
        complete = last if whole and limit is None and pages else None
        kinds = await column_kinds(bus, [p for _, p in pages], complete, progress, seen_types)
        return assemble(pages, kinds, EVENT_COLUMNS, zone, "events_frame", seen_types)


async def find_events(
    bus: EventBus,
    limit: int | None = None,
    *,
    tz: str | tzinfo | None = None,
    **criteria: str | int | float | bool | None,
) -> pd.DataFrame:
    """The events whose fields equal the values given, as an `events_frame` of them.

    Parameters
    ----------
    bus : EventBus
        An initialized bus.
    limit : int, optional
        At most this many events (the oldest first).
    tz : str or tzinfo, optional
        Show time columns in this zone instead of UTC.
    **criteria
        ``"data.<field>"`` (dotted for nested fields, e.g. ``"data.metadata.width"``) compares a
        payload field as JSON does: a string only equals a string, ``1`` equals ``1.0``, a bool
        only a bool, ``None`` a JSON null (not a missing field). ``event_type``, ``source``,
        ``correlation_id`` and ``causation_id`` compare the envelope. The first payload field
        is looked up by the store: with JSON1 on SQLite (an index seek once
        ``await bus.store.index_payload_field("asset_id")`` made one), by a scan of the log on
        memory and Redis; the other criteria filter what it found.

    Examples
    --------
    >>> await find_events(bus, **{"data.asset_id": "asset-00042"})  # doctest: +SKIP
    """
    check_limit(limit)
    payload = {name[5:]: value for name, value in criteria.items() if name.startswith("data.")}
    envelope = {name: value for name, value in criteria.items() if not name.startswith("data.")}
    unknown = sorted(set(envelope) - FINDABLE_ENVELOPE)
    if not payload or unknown:
        raise ConfigError("criteria", ", ".join(unknown or criteria) or "none",
                          'name a payload field ("data.asset_id") and, if you like, '
                          f"{', '.join(sorted(FINDABLE_ENVELOPE))}")  # fmt: skip
    [(path, value), *more] = payload.items()
    more_parts = [(field_parts(p), check_value(v)) for p, v in more]
    found = await bus.store.find(path, value, limit=None if more or envelope else limit)
    found = [
        e for e in found
        if all(_envelope_value(e, name) == v for name, v in envelope.items())
        and all(payload_matches(e.data, parts, v) for parts, v in more_parts)
    ][:limit]  # fmt: skip
    types = {e.event_type for e in found}
    pages = []
    if found:
        known = {name: set(kinds) for name, kinds in store_kinds(bus.store).kinds.items()}
        payload_page, _ = await asyncio.to_thread(
            typed_page, [e.data for e in found], types, None, known
        )
        pages.append((_events_envelope(found), payload_page))
    kinds = await column_kinds(bus, [p for _, p in pages], None, False, types)
    return assemble(pages, kinds, EVENT_COLUMNS, display_zone(tz), "find_events", types)


#: envelope fields find_events compares (after the store's lookup by a payload field)
FINDABLE_ENVELOPE = frozenset({"event_type", "source", "correlation_id", "causation_id"})


def _envelope_value(stored: StoredEvent, name: str) -> str | None:
    return correlation_of(stored) if name == "correlation_id" else getattr(stored, name)


async def export_frame(
    bus: EventBus,
    path: str | Path,
    format: str,
    *,
    event_types: Sequence[str] | str | None = None,
    start_time: TimeInput | None = None,
    end_time: TimeInput | None = None,
    progress: bool = True,
) -> int:
    """Write `events_frame` to a CSV or Parquet file, a page at a time; return the rows written.

    Parameters
    ----------
    bus : EventBus
        An initialized bus.
    path : str or Path
        The file to write (replaced if it exists, only once the new one is complete: a failed
        export leaves no file behind).
    format : {"csv", "parquet"}
        The file format; anything else raises ValueError.
    event_types, start_time, end_time
        As in `events_frame`: each time is a datetime (naive = UTC), pandas.Timestamp, date or
        ISO 8601 string.
    progress : bool, default True
        Show a tqdm progress bar when reading takes more than a second.

    Returns
    -------
    int
        Rows written. The columns are those of `events_frame`, times in UTC; Parquet keeps the
        dtypes, CSV writes them as text. Dicts, lists of undeclared items and cells of mixed
        types are JSON text (declared ``list[X]`` fields stay lists in Parquet). Memory stays
        that of a page whatever the number of events: the events are read twice, once for the
        columns and dtypes, once to write (`eventkit.frames_export` says why).

    Examples
    --------
    >>> await export_frame(bus, "week.parquet", "parquet", start_time="2026-11-02")
    """
    check_format(format)
    types = type_filter(event_types)
    start, end = time_filter(start_time, "start_time"), time_filter(end_time, "end_time")
    whole = types is None and start is None and end is None
    total = await total_events(bus, None) if progress and whole else None

    def pages() -> AsyncIterator[list[StoredEvent]]:
        return iter_pages(bus.store, types, start, end, page_size=PAGE)

    with gc_paused():
        return await write_pages(bus.store, path, format, pages, _events_envelope,
                                 concat_pages([], EVENT_COLUMNS), whole=whole, total=total,
                                 progress=progress)  # fmt: skip


def _events_envelope(page: list[StoredEvent]) -> dict[str, Any]:
    _, event_id, event_type, version, source, timestamp_ms, _, _, correlation, cause = zip(
        *page, strict=True
    )
    if None in correlation:  # stored before correlation existed: each its own story
        correlation = tuple(c or i for c, i in zip(correlation, event_id, strict=True))
    return {
        "event_id": text_column(event_id),
        "event_type": text_column(event_type),
        "version": np.array(version, np.int64),
        "source": text_column(source),
        "timestamp": utc_column(np.array(timestamp_ms, np.int64)),
        "correlation_id": text_column(correlation),
        "causation_id": text_column(cause),
    }
