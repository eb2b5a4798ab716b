"""The story of one thing as a frame: every event of one correlation, in causal order, with how
each consumer group handled it (attempts, latency, dead letters). Drawn by plots.plot_trace."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

import numpy as np
import pandas as pd

from eventkit.bus import EventBus
from eventkit.errors import ConfigError
from eventkit.records import DeadLetter, DeliveryRecord, StoredEvent, correlation_of

__all__ = ["TRACE_COLUMNS", "causal_order", "trace_frame"]

UTC_MS = "datetime64[ms, UTC]"
#: delivery records read per round trip while looking for the story's positions
DELIVERY_PAGE = 5_000
TRACE_COLUMNS: dict[str, str] = {
    "step": "int64", "depth": "int64", "event_id": "str", "event_type": "str", "source": "str",
    "timestamp": UTC_MS, "published_at": UTC_MS, "correlation_id": "str", "causation_id": "str",
    "consumer_group": "str", "consumer_name": "str", "status": "str", "attempts": "Int64",
    "first_delivered_at": UTC_MS, "acked_at": UTC_MS, "latency_ms": "float64",
    "last_error": "str", "failed_at": UTC_MS,
}  # fmt: skip


async def trace_frame(
    bus: EventBus,
    correlation_id: str | None = None,
    event_id: str | None = None,
    *,
    tz: str | tzinfo | None = None,
) -> pd.DataFrame:
    """Every event of one story and its deliveries per consumer group, in causal order.

    Parameters
    ----------
    bus : EventBus
        An initialized bus.
    correlation_id : str, optional
        The story: the id its first event carries as ``correlation_id`` (its own event_id).
    event_id : str, optional
        Any event of the story, when the correlation id is not at hand (e.g. from a DLQ entry).
    tz : str or tzinfo, optional
        Show time columns in this zone instead of UTC.

    Returns
    -------
    pandas.DataFrame
        One row per (event, consumer group that received it); an event no group received has
        one row with ``consumer_group`` missing. Rows come parents before children, siblings
        in publish order: ``step`` numbers the events so (0, 1, ...), ``depth`` is how many
        causes lie between the event and the story's first one. Columns: ``event_id``,
        ``event_type``, ``source``, ``timestamp``, ``published_at``, ``correlation_id``,
        ``causation_id``; then ``consumer_group``, ``consumer_name``, ``status`` (``acked``,
        ``in_flight``, ``retrying``, ``dead``), ``attempts``, ``first_delivered_at``,
        ``acked_at``, ``latency_ms`` (publish to ack), ``last_error``, and ``failed_at`` while
        the event is in that group's DLQ. The store is asked for the story by its index
        (SQLite) or a scan (memory, Redis); each group's delivery records are read over the
        story's span of positions only.

    Examples
    --------
    >>> [letter] = await bus.store.get_pending_events("indexer")
    >>> plot_trace(await trace_frame(bus, event_id=letter.event_id))  # doctest: +SKIP
    """
    store = bus.store
    if correlation_id is None:
        if event_id is None:
            raise ConfigError("correlation_id", None, "give a correlation_id or an event_id")
        found = await store.get_events([event_id])
        if not found:
            raise ConfigError("event_id", event_id, "no stored event has this id (never "
                              "published here, or trimmed): look it up with events_frame()")  # fmt: skip
        correlation_id = correlation_of(found[0])
    events, depths = causal_order(await store.correlated(correlation_id))
    deliveries = await _deliveries_of(bus, events)
    letters: dict[tuple[str | None, str], DeadLetter] = {
        (d.consumer_group, d.event_id): d
        for d in await store.get_pending_events(None, event_ids=[e.event_id for e in events])
    }
    rows = []
    for step, event in enumerate(events):
        received: list[DeliveryRecord | None] = [*deliveries.get(event.position, ())] or [None]
        for record in received:
            group = None if record is None else record.consumer_group
            rows.append(_row(step, depths[event.event_id], event, record,
                             letters.get((group, event.event_id))))  # fmt: skip
    return _frame(rows, tz)


def causal_order(events: Sequence[StoredEvent]) -> tuple[list[StoredEvent], dict[str, int]]:
    """Parents before their children, and otherwise publish order; with each event's depth. An
    event whose cause is not among them (trimmed, or another story's) counts as a first one."""
    by_id = {e.event_id: e for e in events}
    children: dict[str, list[StoredEvent]] = {}
    ready: list[tuple[int, str]] = []
    for event in events:
        cause = event.causation_id
        if cause is not None and cause in by_id and cause != event.event_id:
            children.setdefault(cause, []).append(event)
        else:
            ready.append((event.position, event.event_id))
    heapq.heapify(ready)
    depths = {event_id: 0 for _, event_id in ready}
    ordered: list[StoredEvent] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        ordered.append(by_id[event_id])
        for child in children.get(event_id, ()):
            depths[child.event_id] = depths[event_id] + 1
            heapq.heappush(ready, (child.position, child.event_id))
    if len(ordered) < len(events):  # a cycle of causes (written by hand): the rest by position
        rest = sorted((e for e in events if e.event_id not in depths), key=lambda e: e.position)
        depths.update(dict.fromkeys((e.event_id for e in rest), 0))
        ordered += rest
    return ordered, depths


async def _deliveries_of(
    bus: EventBus, events: Sequence[StoredEvent]
) -> dict[int, list[DeliveryRecord]]:
    """Each event's delivery records (by position), every group's, in group-name order."""
    if not events:
        return {}
    positions = {e.position for e in events}
    first, last = min(positions), max(positions)
    found: dict[int, list[DeliveryRecord]] = {}
    for group in await bus.store.groups():
        after = first - 1
        while True:
            page = await bus.store.deliveries(group, after_position=after, limit=DELIVERY_PAGE)
            for record in page:
                if record.position in positions:
                    found.setdefault(record.position, []).append(record)
            if len(page) < DELIVERY_PAGE or page[-1].position >= last:
                break
            after = page[-1].position
    return found


def _row(
    step: int,
    depth: int,
    event: StoredEvent,
    record: DeliveryRecord | None,
    letter: DeadLetter | None,
) -> tuple[Any, ...]:
    delivered = (None,) * 8 if record is None else (
        record.consumer_group, record.consumer_name, record.status.value, record.attempts,
        record.first_delivered_ms, record.acked_ms,
        None if record.acked_ms is None else record.acked_ms - record.published_ms,
        record.last_error,
    )  # fmt: skip
    return (
        step, depth, event.event_id, event.event_type, event.source, event.timestamp_ms,
        event.published_ms, correlation_of(event), event.causation_id, *delivered,
        None if letter is None else letter.failed_ms,
    )  # fmt: skip


def _frame(rows: list[tuple[Any, ...]], tz: str | tzinfo | None) -> pd.DataFrame:
    columns = dict(zip(TRACE_COLUMNS, zip(*rows, strict=True) if rows else [()] * 18,
                       strict=True))  # fmt: skip
    frame = pd.DataFrame({
        name: _column(columns[name], dtype) for name, dtype in TRACE_COLUMNS.items()
    })  # fmt: skip
    zone = tz if tz is not None else "UTC"
    for name, dtype in TRACE_COLUMNS.items():
        if dtype == UTC_MS and zone != "UTC":
            frame[name] = frame[name].dt.tz_convert(zone)
    frame.attrs["tz"] = str(getattr(zone, "key", zone))
    return frame


def _column(values: Sequence[Any], dtype: str) -> Any:
    if dtype == UTC_MS:  # epoch ms, None where missing
        ms = np.array([np.nan if v is None else v for v in values], np.float64)
        return pd.to_datetime(ms, unit="ms", utc=True).astype(UTC_MS)
    if dtype == "str":
        return pd.array(list(values), dtype="str")
    if dtype == "float64":
        return np.array([np.nan if v is None else v for v in values], np.float64)
    return pd.array(list(values), dtype=dtype)
