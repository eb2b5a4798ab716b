"""Reading a store a page at a time in position order: the one pager behind replay, export, the
frames and the panels, so a million events never sit in one list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from eventkit.checks import check_number
from eventkit.clock import datetime_to_ms
from eventkit.records import DeliveryRecord, StoredEvent
from eventkit.stores.base import EventStore

#: rows per round trip for replay and export: small enough that the first handler starts at once
PAGE = 500

Row = TypeVar("Row", StoredEvent, DeliveryRecord)


def iter_pages(
    store: EventStore,
    event_types: Sequence[str] | None,
    start_time: datetime | None,
    end_time: datetime | None,
    *,
    source: str | None = None,
    limit: int | None = None,
    page_size: int = PAGE,
) -> AsyncIterator[list[StoredEvent]]:
    """Stored events of these types with start_time <= timestamp < end_time, in publish order."""
    start_ms = None if start_time is None else datetime_to_ms(start_time)
    end_ms = None if end_time is None else datetime_to_ms(end_time)

    def fetch(after: int | None, size: int) -> Awaitable[list[StoredEvent]]:
        return store.read(
            event_types=event_types, start_ms=start_ms, end_ms=end_ms, source=source,
            after_position=after, limit=size,
        )  # fmt: skip

    return _pages(fetch, limit, page_size)


async def one_by_one(pages: AsyncIterator[list[StoredEvent]]) -> AsyncIterator[StoredEvent]:
    """The events of iter_pages one at a time, for callers that handle each on its own."""
    async for page in pages:
        for stored in page:
            yield stored


def iter_delivery_pages(
    store: EventStore, group: str, *, page_size: int = PAGE
) -> AsyncIterator[list[DeliveryRecord]]:
    """One group's delivery records in position order."""

    def fetch(after: int | None, size: int) -> Awaitable[list[DeliveryRecord]]:
        return store.deliveries(group, after_position=after, limit=size)

    return _pages(fetch, None, page_size)


async def _pages(
    fetch: Callable[[int | None, int], Awaitable[list[Row]]], limit: int | None, page_size: int
) -> AsyncIterator[list[Row]]:
    """Pages of rows by position; the next page is read while the caller works on this one."""
    if limit is not None:
        check_number("limit", limit, integer=True)
    check_number("page_size", page_size, integer=True, minimum=1)
    remaining = page_size if limit is None else limit
    size = min(page_size, remaining)
    pending = asyncio.ensure_future(fetch(None, size)) if size else None
    try:
        while pending is not None:
            page = await pending
            pending = None
            if limit is not None:
                remaining -= len(page)
            size = min(page_size, remaining)
            if len(page) == page_size and size:  # a full page: there may be more
                pending = asyncio.ensure_future(fetch(page[-1].position, size))
            if page:
                yield page
    finally:
        if pending is not None:
            pending.cancel()
