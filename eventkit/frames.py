"""Pandas frames of a store's events, deliveries, DLQ and migrations: what the notebook kit analyses.

Frames read the store a page at a time through the one pager (`eventkit.pages.iter_pages`, never a
list of a million events; the next page is read while this one is worked on) and build each column
in one vectorised step. Payloads become flattened ``data.<field>`` columns (``data.metadata.width``
for nested objects) in `eventkit.frames_payload`, which also holds the dtype rules.

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
import gc
import json
import warnings
import zoneinfo
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from eventkit import codec
from eventkit.bus import EventBus
from eventkit.clock import TimeInput, parse_time
from eventkit.consumer import describe
from eventkit.errors import ConfigError
from eventkit.frames_payload import (
    CoercedValuesWarning,
    PayloadPage,
    converted_column,
    flatten,
    merge_kinds,
    needs_store_kinds,
    parse_page,
    read_store_kinds,
    store_kinds,
    targets,
    typed_page,
)
from eventkit.frames_trace import trace_frame
from eventkit.pages import iter_delivery_pages, iter_pages
from eventkit.progress import progress_bar
from eventkit.records import DeadLetter, DeliveryRecord, StoredEvent, correlation_of
from eventkit.stores.base import check_limit
from eventkit.stores.lookup import check_value, field_parts, payload_matches
from eventkit.versioning import registry

__all__ = ["CoercedValuesWarning", "deliveries_frame", "dlq_frame", "events_frame",
           "export_frame", "find_events", "migration_frame", "trace_frame"]  # fmt: skip

#: rows read from the store per round trip: large enough that per-page costs vanish
PAGE = 50_000
UTC_MS = "datetime64[ms, UTC]"

EVENT_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "version": "int64", "source": "str", "timestamp": UTC_MS,
    "correlation_id": "str", "causation_id": "str",
}  # fmt: skip
DELIVERY_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "consumer_group": "str", "consumer_name": "str",
    "status": "str", "attempts": "int64", "published_at": UTC_MS, "first_delivered_at": UTC_MS,
    "acked_at": UTC_MS, "latency_ms": "float64", "last_error": "object",
}  # fmt: skip
DLQ_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "consumer_group": "str", "consumer_name": "str",
    "attempts": "int64", "replays": "Int64", "failed_at": UTC_MS, "last_error": "str",
    "version": "int64", "source": "str", "timestamp": UTC_MS, "traceback": "str",
}  # fmt: skip
MIGRATION_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "stored_version": "int64", "current_version": "Int64",
    "migrates": "bool", "error": "object", "changed_fields": "object",
}  # fmt: skip
EXPORT_FORMATS = ("csv", "parquet")


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
    types = _types(event_types)
    start, end = _time(start_time, "start_time"), _time(end_time, "end_time")
    zone = _zone(tz)
    whole = types is None and start is None and end is None and source is None
    pages: list[tuple[dict[str, Any], PayloadPage]] = []
    schema: pa.Schema | None = None
    last = 0
    known = {name: set(found) for name, found in store_kinds(bus.store).kinds.items()}
    seen_types: set[str] = set()
    total = await _total_events(bus, limit) if progress and whole else None
    with _gc_paused(), progress_bar(total, "events_frame", enabled=progress) as bar:
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
        kinds = await _kinds(bus, [p for _, p in pages], complete, progress, seen_types)
        return _assemble(pages, kinds, EVENT_COLUMNS, zone, "events_frame", seen_types)


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
    kinds = await _kinds(bus, [p for _, p in pages], None, False, types)
    return _assemble(pages, kinds, EVENT_COLUMNS, _zone(tz), "find_events", types)


#: envelope fields find_events compares (after the store's lookup by a payload field)
FINDABLE_ENVELOPE = frozenset({"event_type", "source", "correlation_id", "causation_id"})


def _envelope_value(stored: StoredEvent, name: str) -> str | None:
    return correlation_of(stored) if name == "correlation_id" else getattr(stored, name)


async def deliveries_frame(
    bus: EventBus,
    consumer_group: str | None = None,
    *,
    tz: str | tzinfo | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (consumer group, delivered event): status, attempts, times, latency.

    Parameters
    ----------
    bus : EventBus
        An initialized bus.
    consumer_group : str, optional
        Only this group's deliveries (``None``: every group, one after the other).
    tz : str or tzinfo, optional
        Show time columns in this zone instead of UTC.
    progress : bool, default True
        Show a tqdm progress bar when the read takes more than a second.

    Returns
    -------
    pandas.DataFrame
        ``event_id``, ``event_type``, ``consumer_group``, ``consumer_name`` (str); ``status``
        (str: ``acked``, ``in_flight``, ``retrying`` or ``dead``); ``attempts`` (int64);
        ``published_at``, ``first_delivered_at``, ``acked_at`` (``datetime64[ms, UTC]``,
        ``acked_at`` NaT until acked); ``latency_ms`` (float64: publish to ack, NaN until
        acked); ``last_error`` (object: the text of the last failure, or None).
        ``frame.attrs["tz"]`` names the zone shown.

    Examples
    --------
    >>> deliveries = await deliveries_frame(bus, "thumbnailer")
    >>> deliveries.groupby("status")["latency_ms"].describe()
    """
    zone = _zone(tz)
    groups = [consumer_group] if consumer_group is not None else await bus.store.groups()
    pages = []
    with _gc_paused(), progress_bar(None, "deliveries_frame", enabled=progress) as bar:
        for group in groups:
            async for page in iter_delivery_pages(bus.store, group, page_size=PAGE):
                pages.append(pd.DataFrame(_deliveries_page(page)))
                bar.update(len(page))
        return _finish(_concat(pages, DELIVERY_COLUMNS), zone, Counter())


async def dlq_frame(
    bus: EventBus,
    consumer_group: str | None = None,
    *,
    tz: str | tzinfo | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per dead-letter (DLQ) entry, oldest failure first, with its payload.

    Parameters
    ----------
    bus : EventBus
        An initialized bus.
    consumer_group : str, optional
        Only this group's DLQ (``None``: every group's).
    tz : str or tzinfo, optional
        Show time columns in this zone instead of UTC.
    progress : bool, default True
        Show a tqdm progress bar when the work takes more than a second.

    Returns
    -------
    pandas.DataFrame
        ``event_id``, ``event_type``, ``consumer_group``, ``consumer_name`` (str); ``attempts``
        (int64: deliveries before it was given up); ``replays`` (Int64: how many times the entry
        was replayed from the DLQ before it came back); ``failed_at`` (``datetime64[ms, UTC]``);
        ``last_error`` (str); ``version`` (int64); ``source`` (str); ``timestamp``
        (``datetime64[ms, UTC]``, the event's own time); ``traceback`` (str); then the payload
        as ``data.<field>`` columns with the same dtypes as in `events_frame`.
        ``frame.attrs["tz"]`` and ``frame.attrs["coerced"]`` as in `events_frame`.

    Examples
    --------
    >>> dead = await dlq_frame(bus, "thumbnailer")
    >>> dead[dead["replays"] > 0][["event_id", "last_error", "data.asset_id"]]
    """
    zone = _zone(tz)
    letters = await bus.store.get_pending_events(consumer_group)
    if not letters:
        return _finish(_concat([], DLQ_COLUMNS), zone, Counter())
    with progress_bar(len(letters), "dlq_frame", enabled=progress) as bar:
        texts = [d.stored.data for d in letters]
        payload, _ = await asyncio.to_thread(parse_page, texts, None)
        bar.update(len(letters))
    types = {d.stored.event_type for d in letters}
    kinds = await _kinds(bus, [payload], None, progress, types)
    envelope = _dlq_envelope(letters)
    return _assemble([(envelope, payload)], kinds, DLQ_COLUMNS, zone, "dlq_frame", types)


async def migration_frame(
    bus: EventBus, event_types: Sequence[str] | str | None = None, *, progress: bool = True
) -> pd.DataFrame:
    """What consumers would make of each stored event under the registered classes and migrations.

    The verdict is the consumers' own decode (`eventkit.codec.decode`); nothing is written.

    Parameters
    ----------
    bus : EventBus
        An initialized bus.
    event_types : sequence of str or str, optional
        Only these event types (``None`` or ``"*"``: all).
    progress : bool, default True
        Show a tqdm progress bar when the work takes more than a second.

    Returns
    -------
    pandas.DataFrame
        ``event_id``, ``event_type`` (str); ``stored_version`` (int64); ``current_version``
        (Int64: NA for a type with no registered class); ``migrates`` (bool: a consumer would
        get a typed event); ``error`` (object: the text a consumer would dead-letter the event
        with, or None); ``changed_fields`` (object: sorted list of the dotted payload names the
        migrations add, remove or change).

    Examples
    --------
    >>> plan = await migration_frame(bus, ["quality.assessed"])
    >>> plan[~plan["migrates"]][["event_id", "error"]]
    """
    types = _types(event_types)
    total = await _total_events(bus, None) if progress and types is None else None
    pages = []
    with _gc_paused(), progress_bar(total, "migration_frame", enabled=progress) as bar:
        async for page in iter_pages(bus.store, types, None, None, page_size=PAGE):
            pages.append(_migration_page(page))
            bar.update(len(page))
        return _concat(pages, MIGRATION_COLUMNS)


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
    """Write `events_frame` to a CSV or Parquet file; return the number of rows written.

    Parameters
    ----------
    bus : EventBus
        An initialized bus.
    path : str or Path
        The file to write (replaced if it exists).
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
        dtypes, CSV writes them as text. Lists, dicts and cells of mixed types are JSON text
        (lists stay lists in Parquet).

    Examples
    --------
    >>> await export_frame(bus, "week.parquet", "parquet", start_time="2026-11-02")
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    frame = await events_frame(bus, event_types, start_time, end_time, progress=progress)
    frame = _portable(frame, format)
    if format == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame)


# -- arguments ------------------------------------------------------------------------------------


def _types(event_types: Sequence[str] | str | None) -> list[str] | None:
    types = [event_types] if isinstance(event_types, str) else event_types
    return None if types is None or "*" in types else list(types)


def _time(value: TimeInput | None, label: str) -> Any:
    return None if value is None else parse_time(value, label)


def _zone(tz: str | tzinfo | None) -> tzinfo | str:
    """The zone time columns are shown in: "UTC" unless tz names another."""
    if tz is None or tz == "UTC":
        return "UTC"
    if isinstance(tz, tzinfo):
        return tz
    try:
        return zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            "tz", tz, "give an IANA zone name such as 'Europe/Berlin' or a tzinfo"
        ) from None


async def _total_events(bus: EventBus, limit: int | None) -> int | None:
    """The progress bar's total: the store's event count (capped by limit)."""
    total = (await bus.store.stats())["store"]["total_events"]
    return total if limit is None else min(total, limit)


# -- building columns -----------------------------------------------------------------------------


async def _kinds(
    bus: EventBus,
    pages: list[PayloadPage],
    complete: int | None,
    progress: bool,
    event_types: set[str],
) -> dict[str, set[str]]:
    """The JSON kinds of every value the store holds under the pages' payload columns. A frame
    of the whole log (complete: its last position) is its own answer and is remembered; any
    other reads the store's kinds (once per store, then only what was appended since)."""
    own: dict[str, set[str]] = {}
    for page in pages:
        merge_kinds(own, page.kinds)
    known = store_kinds(bus.store)
    if complete is not None:
        known.add(own, complete)
    elif needs_store_kinds(own, event_types):
        await read_store_kinds(bus.store, progress)
    merged = {name: set(found) for name, found in known.kinds.items()}
    merge_kinds(merged, own)
    return merged


def _assemble(
    pages: list[tuple[dict[str, Any], PayloadPage]],
    kinds: dict[str, set[str]],
    envelope: dict[str, str],
    zone: tzinfo | str,
    who: str,
    event_types: set[str],
) -> pd.DataFrame:
    """Envelope and payload pages as one frame, every payload column in its one dtype (declared
    by the classes of the frame's event types, else from the store's values)."""
    names = list(dict.fromkeys(name for _, page in pages for name in page.columns))
    plan = targets(names, kinds, event_types)
    failed = any(page.errors is not None for _, page in pages)
    coerced: Counter[str] = Counter()
    frames = []
    for columns, page in pages:
        columns = dict(columns)
        for name in names:
            columns[name], lost = converted_column(page, name, plan[name])
            coerced[name] += lost
        if failed:
            columns["data_error"] = pd.array(page.errors or [None] * page.rows, dtype="string")
        frames.append(pd.DataFrame(columns, copy=False))
    frame = _finish(_concat(frames, envelope), zone, coerced)
    for name, count in coerced.items():
        if count:
            target = plan[name]
            warnings.warn(
                f"{who}: {count:,} value{'s' if count != 1 else ''} of {name} did not fit its "
                f"dtype {target.dtype} (declared as {target.origin}) and became <NA>; "
                f"frame.attrs['coerced'] counts them",
                CoercedValuesWarning,
                stacklevel=3,
            )
    return frame


def _finish(frame: pd.DataFrame, zone: tzinfo | str, coerced: Counter[str]) -> pd.DataFrame:
    """Time columns in the zone asked for; attrs saying which zone and what was coerced."""
    if zone != "UTC":
        for name in frame.columns:
            if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
                frame[name] = frame[name].dt.tz_convert(zone)
    frame.attrs["tz"] = str(zone)
    frame.attrs["coerced"] = {name: n for name, n in coerced.items() if n}
    return frame


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


def _events_envelope(page: list[StoredEvent]) -> dict[str, Any]:
    _, event_id, event_type, version, source, timestamp_ms, _, _, correlation, cause = zip(
        *page, strict=True
    )
    if None in correlation:  # stored before correlation existed: each its own story
        correlation = tuple(c or i for c, i in zip(correlation, event_id, strict=True))
    return {
        "event_id": _text(event_id),
        "event_type": _text(event_type),
        "version": np.array(version, np.int64),
        "source": _text(source),
        "timestamp": _utc(np.array(timestamp_ms, np.int64)),
        "correlation_id": _text(correlation),
        "causation_id": _text(cause),
    }


def _deliveries_page(page: list[DeliveryRecord]) -> dict[str, Any]:
    (_, event_id, event_type, group, consumer, status, attempts, published_ms, first_ms, acked_ms,
     last_error) = zip(*page, strict=True)  # fmt: skip
    published = np.array(published_ms, np.int64)
    acked = np.array(acked_ms, np.float64)  # None becomes NaN
    return {
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


def _dlq_envelope(letters: list[DeadLetter]) -> dict[str, Any]:
    return {
        "event_id": _text([d.event_id for d in letters]),
        "event_type": _text([d.stored.event_type for d in letters]),
        "consumer_group": _text([d.consumer_group for d in letters]),
        "consumer_name": _text([d.consumer_name for d in letters]),
        "attempts": np.array([d.attempts for d in letters], np.int64),
        "replays": pd.array([d.replays for d in letters], dtype="Int64"),
        "failed_at": _utc([d.failed_ms for d in letters]),
        "last_error": _text([d.last_error for d in letters]),
        "version": np.array([d.stored.version for d in letters], np.int64),
        "source": _text([d.stored.source for d in letters]),
        "timestamp": _utc([d.stored.timestamp_ms for d in letters]),
        "traceback": _text([d.traceback for d in letters]),
    }


def _text(values: Sequence[str | None]) -> Any:
    """A "str" column: through a pyarrow array, twice as fast as pd.array(values, dtype="str")."""
    return pd.array(pa.array(values, pa.string()), dtype="str")


def _utc(ms: Sequence[int] | np.ndarray) -> Any:
    """Epoch milliseconds (NaN: missing) as a datetime64[ms, UTC] column, without a copy per row."""
    values = np.asarray(ms)
    if values.dtype.kind == "f":  # NaT is int64's minimum
        values = np.where(np.isnan(values), np.iinfo(np.int64).min, values)
    stamps = values.astype(np.int64, copy=False).view("datetime64[ms]")
    return pd.Series(stamps).dt.tz_localize("UTC").array


def _concat(pages: list[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    """Pages as one frame; no pages gives the documented columns and dtypes with no rows."""
    if not pages:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
    if len(pages) == 1:
        return pages[0]
    return pd.concat(pages, ignore_index=True, sort=False)


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
