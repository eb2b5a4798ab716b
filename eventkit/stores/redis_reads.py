"""The Redis store's reads: the stream page by page, delivery records with their events, stats.

Read-only helpers of RedisEventStore (redis.py), each given the client and the namespace's keys;
what the scripts write is parsed by redis_records.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from eventkit.stores.base import (
    DeadLetter,
    DeliveryRecord,
    GroupStats,
    Stats,
    StoredEvent,
    check_limit,
    matches,
    now_ms,
    stats_with_store_block,
)
from eventkit.stores.redis_client import Client
from eventkit.stores.redis_keys import Keys
from eventkit.stores.redis_records import (
    dead_letter,
    delivery_record,
    leased_records,
    needs_entry,
    read_record,
    stored,
    to_entry_id,
    to_position,
)
from eventkit.stores.redis_scripts import Scripts

#: entries per XRANGE page of a scan
SCAN_PAGE = 1000

Pipelined = Callable[[Callable[[Any], Awaitable[None]]], Awaitable[list[Any]]]


async def scan(
    client: Client,
    keys: Keys,
    wanted: Callable[[StoredEvent], bool],
    after_position: int | None = None,
    limit: int | None = None,
) -> list[StoredEvent]:
    """The stream's entries in order, a page of XRANGE at a time, kept where `wanted`."""
    check_limit(limit)
    found: list[StoredEvent] = []
    cursor = "-" if after_position is None else "(" + to_entry_id(after_position)
    while limit is None or len(found) < limit:
        page: list[Any] = cast(Any, await client.xrange(keys.events, cursor, "+", count=SCAN_PAGE))
        for entry_id, fields in page:
            event = stored(entry_id, fields)
            if wanted(event):
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
        if len(page) < SCAN_PAGE:
            break
        cursor = "(" + page[-1][0]
    return found


def event_filter(
    event_types: Sequence[str] | None, start_ms: int | None, end_ms: int | None, source: str | None
) -> Callable[[StoredEvent], bool]:
    """read()'s filters as one test of a stored event."""
    return lambda event: (
        matches(event.event_type, event_types)
        and (start_ms is None or event.timestamp_ms >= start_ms)
        and (end_ms is None or event.timestamp_ms < end_ms)
        and (source is None or event.source == source)
    )


async def get_events(client: Client, keys: Keys, event_ids: Sequence[str]) -> list[StoredEvent]:
    unique = list(dict.fromkeys(event_ids))
    if not unique:
        return []
    entry_ids: list[str | None] = cast(Any, await client.hmget(keys.ids, unique))
    async with client.pipeline(transaction=False) as pipe:
        for entry_id in filter(None, entry_ids):
            pipe.xrange(keys.events, entry_id, entry_id)
        found = [stored(e[0][0], e[0][1]) for e in await pipe.execute() if e]
    return sorted(found, key=lambda e: e.position)


async def dead_letters(
    client: Client, keys: Keys, groups: Sequence[str], event_ids: Sequence[str] | None
) -> list[DeadLetter]:
    """The groups' DLQ entries (all, or those of `event_ids`), oldest failure first."""
    letters = [
        dead_letter(group, raw)
        for group in groups
        for event_id, raw in cast(
            dict[str, str], await client.hgetall(keys.group(group).dlq)
        ).items()
        if event_ids is None or event_id in event_ids
    ]
    return sorted(letters, key=lambda d: (d.failed_ms, d.stored.position))


async def deliveries(
    client: Client, keys: Keys, group: str, after_position: int | None, limit: int | None
) -> list[DeliveryRecord]:
    """One group's delivery records in position order: the records hash, and the first
    deliveries still in flight under their claims' leases. Where a record leaves the event's id
    and type to the stream entry (compact, leased), the page's entries are read in one round trip."""
    check_limit(limit)
    g = keys.group(group)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(g.records)
        pipe.hgetall(g.leases)
        texts, leases = cast(tuple[dict[str, str], dict[str, str]], await pipe.execute())
    after = -1 if after_position is None else after_position
    leased = leased_records(leases, texts) if leases else {}
    page = sorted(
        (position, entry_id)
        for entry_id in [*texts, *leased]
        if (position := to_position(entry_id)) > after
    )
    page = page if limit is None else page[:limit]
    lookups = [
        entry_id for _, entry_id in page if entry_id in leased or needs_entry(texts[entry_id])
    ]
    entries: dict[str, tuple[str, str]] = {}
    if lookups:
        async with client.pipeline(transaction=False) as pipe:
            for entry_id in lookups:
                pipe.xrange(keys.events, entry_id, entry_id)
            for entry_id, found in zip(lookups, await pipe.execute(), strict=True):
                event = stored(entry_id, found[0][1]) if found else None
                entries[entry_id] = (event.event_id, event.event_type) if event else (entry_id, "")
    records = []
    for _, entry_id in page:
        event_id, event_type = entries.get(entry_id, ("", ""))
        if entry_id in leased:
            raw = leased[entry_id]._replace(event_id=event_id, event_type=event_type)
        else:
            raw = read_record(texts[entry_id], event_id, event_type)
        records.append(delivery_record(group, entry_id, raw))
    return records


async def stats(
    keys: Keys, scripts: Scripts, names: Sequence[str], pipelined: Pipelined, backend: str
) -> Stats:
    """Every figure in one round trip; lag from the kept counts (unread.lua): O(groups)."""

    async def fill(pipe: Any) -> None:
        pipe.xlen(keys.events)
        pipe.hget(keys.meta, "kept_unacked")
        for name in names:
            g = keys.group(name)
            await scripts.unread(unread_keys(keys, name), [name, 0], client=pipe)
            pipe.zcard(g.due)
            pipe.hlen(g.dlq)
            pipe.hmget(g.counters, "delivered", "acked", "retried", "leased")
            pipe.zcount(g.members, f"({now_ms()}", "+inf")

    total, kept, *rest = await pipelined(fill)
    groups: dict[str, GroupStats] = {}
    for i, name in enumerate(names):
        lag, due, dlq, (delivered, acked, retried, leased), consumers = rest[i * 5 : i * 5 + 5]
        groups[name] = {
            "lag": int(lag), "in_flight": int(due) + int(leased or 0), "dlq": int(dlq),
            "delivered": int(delivered or 0), "acked": int(acked or 0),
            "retried": int(retried or 0), "consumers": int(consumers),
        }  # fmt: skip
    return stats_with_store_block(backend, int(total), int(kept or 0), groups)


async def is_idle(keys: Keys, scripts: Scripts, names: Sequence[str], pipelined: Pipelined) -> bool:
    """Nothing due, leased or unread in any of the groups, in one round trip."""

    async def fill(pipe: Any) -> None:
        for name in names:
            g = keys.group(name)
            pipe.zcard(g.due)
            pipe.hget(g.counters, "leased")
            await scripts.unread(unread_keys(keys, name), [name, 1], client=pipe)

    return not any(int(n or 0) for n in await pipelined(fill))


def unread_keys(keys: Keys, group: str) -> list[str]:
    """unread.lua's keys for `group`."""
    g = keys.group(group)
    return [keys.events, g.types, keys.meta, keys.counts, g.seen]
