"""Appending and reading the log: positions, idempotency, filters, paging."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from eventkit import BaseEvent, EventBus
from eventkit.codec import decode, encode
from eventkit.errors import ConfigError
from eventkit.events import WorkflowStartedEvent
from eventkit.stores.base import EventStore
from tests.helpers import all_of, discovered, new_events, started


async def test_append_returns_increasing_positions_in_input_order(store: EventStore) -> None:
    batch = new_events(5)
    positions = await store.append(batch)
    later = new_events(3)
    more = await store.append(later)
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert min(more) > max(positions)
    read = await store.read()
    assert [e.event_id for e in read] == [e.event_id for e in batch + later]
    assert [e.position for e in read] == positions + more


async def test_append_is_idempotent_by_event_id(store: EventStore) -> None:
    batch = new_events(3)
    first = await store.append(batch)
    again = await store.append([batch[1], *new_events(1)])
    assert again[0] == first[1]
    assert len(await store.read()) == 4


async def test_event_read_back_equals_the_published_one(bus: EventBus) -> None:
    event = discovered(7)
    event_id = await bus.publish(event)
    [stored] = await bus.store.read()
    assert event_id == event.event_id == stored.event_id
    assert decode(stored) == event
    assert decode(stored).timestamp == event.timestamp  # ms precision, UTC, fixed at creation


async def test_read_filters_by_type_time_source_and_pages(store: EventStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[BaseEvent] = [started(i, base + timedelta(minutes=i)) for i in range(10)]
    events += [discovered(i, source="other") for i in range(3)]
    await store.append([encode(e) for e in events])
    start_ms = int((base + timedelta(minutes=2)).timestamp() * 1000)
    end_ms = int((base + timedelta(minutes=5)).timestamp() * 1000)
    window = await store.read(event_types=["workflow.started"], start_ms=start_ms, end_ms=end_ms)
    assert [e.event_id for e in window] == [e.event_id for e in events[2:5]]  # [start, end)
    assert len(await store.read(source="other")) == 3
    assert len(await store.read(event_types=["*"])) == 13
    page1 = await store.read(limit=4)
    page2 = await store.read(after_position=page1[-1].position, limit=4)
    assert [e.position for e in page1 + page2] == [e.position for e in (await store.read())[:8]]
    assert await store.read(limit=0) == []


async def test_negative_limit_is_refused_not_unbounded(store: EventStore) -> None:
    await store.append(new_events(3))
    with pytest.raises(ValueError, match="limit"):
        await store.read(limit=-1)


async def test_get_events_by_id(store: EventStore) -> None:
    batch = new_events(4)
    await store.append(batch)
    found = await store.get_events([batch[2].event_id, batch[0].event_id, "missing"])
    assert [e.event_id for e in found] == [batch[0].event_id, batch[2].event_id]


async def test_concurrent_publishers_on_one_store_lose_nothing(bus: EventBus) -> None:
    events = [discovered(i) for i in range(200)]
    await asyncio.gather(*(bus.publish(e) for e in events[:100]), bus.publish_many(events[100:]))
    stored = await bus.store.read()
    assert sorted(e.event_id for e in stored) == sorted(e.event_id for e in events)
    positions = [e.position for e in stored]
    assert positions == sorted(positions) and len(set(positions)) == 200


async def test_two_store_instances_share_one_log_in_commit_order(backend, store) -> None:  # type: ignore[no-untyped-def]
    other = backend.new_store()
    await other.open()
    try:
        for i in range(5):
            await (store if i % 2 else other).append(new_events(2))
        positions = [e.position for e in await store.read()]
        assert len(positions) == 10 and positions == sorted(positions)
    finally:
        if other is not store:
            await other.close()


async def test_replay_by_type_and_time_range_in_publish_order(bus: EventBus) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    events = [started(i, base + timedelta(hours=i)) for i in range(6)]
    await bus.publish_many(events[::-1])  # published newest first
    seen: list[BaseEvent] = []
    handled = await bus.replay_events(
        ["workflow.started"],
        seen.append,
        start_time=base + timedelta(hours=1),
        end_time=(base + timedelta(hours=4)).replace(tzinfo=None),  # naive is UTC
    )
    assert handled == 3
    workflow_ids = [e.workflow_id for e in all_of(WorkflowStartedEvent, seen)]
    assert workflow_ids == ["wf-3", "wf-2", "wf-1"]  # publish order
    assert await bus.replay_events(["workflow.started"], seen.append, limit=2) == 2
    with pytest.raises(ValueError):
        await bus.replay_events(["workflow.started"], seen.append, limit=-5)
    # the same range as an analyst types it: ISO strings, a pandas-like Timestamp, a date
    again: list[BaseEvent] = []
    assert await bus.replay_events(
        "workflow.started", again.append, "2026-03-01T01:00:00Z", "2026-03-01 04:00"
    ) == 3  # fmt: skip
    assert [e.event_id for e in again] == [e.event_id for e in seen[:3]]
    assert (
        await bus.replay_events("workflow.started", again.append, start_time=date(2026, 3, 2)) == 0
    )
    with pytest.raises(ConfigError, match="start_time='yesterday'.*ISO 8601"):
        await bus.replay_events("workflow.started", again.append, start_time="yesterday")
