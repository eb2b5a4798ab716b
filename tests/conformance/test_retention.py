"""Retention: trimming by age and count never removes what a group has not acked, nor the DLQ."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from eventkit import EventBus
from eventkit.codec import encode
from eventkit.stores.base import EventStore
from tests.helpers import Recorder, discovered, started, wait_until

OLD = datetime.now(UTC) - timedelta(days=40)


async def test_trim_by_age_keeps_unread_and_in_flight_events(store: EventStore) -> None:
    old = [encode(started(i, OLD + timedelta(minutes=i))) for i in range(6)]
    recent = encode(discovered(1))
    await store.append([*old, recent])
    await store.ensure_group("g", ["*"])
    claims = await store.claim("g", "w", limit=4, lease_ms=60_000)
    await store.ack(claims[:2])  # 2 acked, 2 in flight, 2 unread, 1 recent
    result = await store.trim(before_ms=int((OLD + timedelta(days=1)).timestamp() * 1000))
    assert (result.removed, result.kept_unacked) == (2, 4)
    remaining = [e.event_id for e in await store.read()]
    assert remaining == [e.event_id for e in old[2:]] + [recent.event_id]
    assert (await store.stats())["store"]["total_events"] == 5
    assert (await store.stats())["store"]["kept_unacked"] == 4
    await store.ack(claims[2:])
    assert await store.ack(claims[2:]) == 0
    rest = await store.claim("g", "w", limit=10, lease_ms=60_000)
    assert len(rest) == 3
    await store.ack(rest)
    result = await store.trim(before_ms=int((OLD + timedelta(days=1)).timestamp() * 1000))
    assert (result.removed, result.kept_unacked) == (4, 0)
    assert len(await store.deliveries("g")) == 1  # records go with their events


async def test_trim_by_count_and_a_group_without_consumers_protects_its_backlog(
    store: EventStore,
) -> None:
    await store.append([encode(discovered(i)) for i in range(10)])
    await store.ensure_group("slow", ["asset.discovered"])
    result = await store.trim(max_events=3)
    assert result.removed == 0 and result.kept_unacked == 7
    claims = await store.claim("slow", "w", limit=5, lease_ms=60_000)
    await store.ack(claims)
    result = await store.trim(max_events=3)
    assert result.removed == 5
    assert len(await store.read()) == 5


async def test_trim_never_touches_the_dlq(bus: EventBus) -> None:
    event = discovered(1)
    event.timestamp = OLD
    event.__post_init__()
    rec = Recorder(fail_times=10)
    await bus.subscribe_persistent(["*"], "g", "w", rec, max_retries=0)
    await bus.publish(event)
    await wait_until(lambda: bus.get_pending_events("g"), timeout=10)
    assert await bus.trim_old_events(max_age_days=30) == 1
    assert await bus.store.read() == []
    [letter] = await bus.store.get_pending_events("g")
    assert letter.event_id == event.event_id
    rec.fail_times = 0
    assert await bus.replay_dlq("g") == 1  # the DLQ copy is enough to redeliver
    assert await bus.wait_idle("g", timeout=10)
    assert rec.ids == [event.event_id]


async def test_trim_old_events_accepts_zero_and_fractions(bus: EventBus) -> None:
    rec = Recorder()
    await bus.subscribe_persistent(["*"], "g", "w", rec)
    await bus.publish_many([discovered(i) for i in range(3)])
    assert await bus.wait_idle(timeout=10)
    assert await bus.trim_old_events(max_age_days=0.5) == 0
    await asyncio.sleep(0.01)
    assert await bus.trim_old_events(max_age_days=0) == 3
    stats = await bus.get_stats()
    assert stats["store"]["total_events"] == 0


async def test_background_trim_honours_config(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = await make_bus(max_events=5, trim_interval_hours=0.3 / 3600)  # every 0.3 s
    rec = Recorder()
    await bus.subscribe_persistent(["*"], "g", "w", rec)
    await bus.publish_many([discovered(i) for i in range(20)])
    assert await bus.wait_idle(timeout=10)

    async def trimmed() -> bool:
        total: int = (await bus.get_stats())["store"]["total_events"]
        return total == 5

    await wait_until(trimmed, timeout=5)
    kept = [e.event_id for e in await bus.store.read()]
    assert kept == rec.ids[-5:]
