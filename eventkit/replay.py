"""Replaying the log through a handler, outside any group: no leases, acks or DLQ (SPEC §3)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from eventkit import codec
from eventkit.handlers import Handler
from eventkit.pages import iter_pages, one_by_one
from eventkit.policy import describe
from eventkit.stores.base import EventStore

logger = logging.getLogger(__name__)


async def replay_log(
    store: EventStore,
    event_types: Sequence[str],
    call: Handler,
    start: datetime | None,
    end: datetime | None,
    limit: int | None,
    progress: Callable[[int], None] | None,
) -> int:
    """Call `call` on each stored event of these types in [start, end), in publish order and
    migrated; returns how many were handled. An event that cannot be decoded is logged and
    skipped (a replay reads history: there is no DLQ to send it to); a handler error propagates."""
    handled = 0
    async for stored in one_by_one(iter_pages(store, event_types, start, end, limit=limit)):
        try:
            event = codec.decode(stored)
        except codec.DECODE_ERRORS as e:
            logger.warning("replay skips %s: %s", stored.event_id, describe(e))
            continue
        await call(event, None)
        handled += 1
        if progress is not None:
            progress(handled)
    return handled
