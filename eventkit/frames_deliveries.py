"""`deliveries_frame` and `dlq_frame`: how each consumer group handled the events, as frames."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import tzinfo
from typing import Any

import numpy as np
import pandas as pd

from eventkit.bus import EventBus
from eventkit.frames_columns import (
    PAGE,
    assemble,
    column_kinds,
    concat_pages,
    display_zone,
    finish,
    gc_paused,
    text_column,
    utc_column,
)
from eventkit.frames_dtypes import UTC_MS
from eventkit.frames_payload import parse_page
from eventkit.pages import iter_delivery_pages
from eventkit.progress import progress_bar
from eventkit.records import DeadLetter, DeliveryRecord

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
    zone = display_zone(tz)
    groups = [consumer_group] if consumer_group is not None else await bus.store.groups()
    pages = []
    with gc_paused(), progress_bar(None, "deliveries_frame", enabled=progress) as bar:
        for group in groups:
            async for page in iter_delivery_pages(bus.store, group, page_size=PAGE):
                pages.append(pd.DataFrame(_deliveries_page(page)))
                bar.update(len(page))
        return finish(concat_pages(pages, DELIVERY_COLUMNS), zone, Counter())


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
    zone = display_zone(tz)
    letters = await bus.store.get_pending_events(consumer_group)
    if not letters:
        return finish(concat_pages([], DLQ_COLUMNS), zone, Counter())
    with progress_bar(len(letters), "dlq_frame", enabled=progress) as bar:
        texts = [d.stored.data for d in letters]
        payload, _ = await asyncio.to_thread(parse_page, texts, None)
        bar.update(len(letters))
    types = {d.stored.event_type for d in letters}
    kinds = await column_kinds(bus, [payload], None, progress, types)
    envelope = _dlq_envelope(letters)
    return assemble([(envelope, payload)], kinds, DLQ_COLUMNS, zone, "dlq_frame", types)


def _deliveries_page(page: list[DeliveryRecord]) -> dict[str, Any]:
    (_, event_id, event_type, group, consumer, status, attempts, published_ms, first_ms, acked_ms,
     last_error) = zip(*page, strict=True)  # fmt: skip
    published = np.array(published_ms, np.int64)
    acked = np.array(acked_ms, np.float64)  # None becomes NaN
    return {
        "event_id": text_column(event_id),
        "event_type": text_column(event_type),
        "consumer_group": text_column(group),
        "consumer_name": text_column(consumer),
        "status": text_column(status),  # a StrEnum: its text
        "attempts": np.array(attempts, np.int64),
        "published_at": utc_column(published),
        "first_delivered_at": utc_column(np.array(first_ms, np.int64)),
        "acked_at": utc_column(acked),
        "latency_ms": acked - published,
        "last_error": pd.Series(last_error, dtype=object),
    }


def _dlq_envelope(letters: list[DeadLetter]) -> dict[str, Any]:
    return {
        "event_id": text_column([d.event_id for d in letters]),
        "event_type": text_column([d.stored.event_type for d in letters]),
        "consumer_group": text_column([d.consumer_group for d in letters]),
        "consumer_name": text_column([d.consumer_name for d in letters]),
        "attempts": np.array([d.attempts for d in letters], np.int64),
        "replays": pd.array([d.replays for d in letters], dtype="Int64"),
        "failed_at": utc_column([d.failed_ms for d in letters]),
        "last_error": text_column([d.last_error for d in letters]),
        "version": np.array([d.stored.version for d in letters], np.int64),
        "source": text_column([d.stored.source for d in letters]),
        "timestamp": utc_column([d.stored.timestamp_ms for d in letters]),
        "traceback": text_column([d.traceback for d in letters]),
    }
