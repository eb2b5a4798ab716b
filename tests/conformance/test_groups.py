"""Consumer groups: fan-out across groups, work sharing inside one, where a new group starts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from eventkit import BaseEvent, EventBus
from eventkit.codec import encode
from eventkit.events import AssetDiscoveredEvent, WorkflowStartedEvent
from eventkit.stores.base import EventStore
from tests.helpers import Recorder, all_of, discovered, started, wait_until


async def test_every_group_gets_every_event(bus: EventBus) -> None:
    a, b = Recorder(), Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "indexers", "w1", a)
    await bus.subscribe_persistent(["asset.discovered"], "thumbnailers", "w1", b)
    events = [discovered(i) for i in range(20)]
    await bus.publish_many(events)
    assert await bus.wait_idle(timeout=10)
    assert a.ids == b.ids == [e.event_id for e in events]


async def test_members_share_work_without_duplicates(bus: EventBus) -> None:
    recorders = [Recorder() for _ in range(3)]
    for i, rec in enumerate(recorders):
        await bus.subscribe_persistent(["asset.discovered"], "workers", f"w{i}", rec, batch_size=7)
    events = [discovered(i) for i in range(200)]
    await bus.publish_many(events)
    assert await bus.wait_idle(timeout=20)
    handled = [i for rec in recorders for i in rec.ids]
    assert sorted(handled) == sorted(e.event_id for e in events)  # each exactly once
    stats = await bus.get_stats()
    assert stats["groups"]["workers"]["delivered"] == 200
    assert stats["groups"]["workers"]["acked"] == 200


async def test_two_buses_on_one_store_share_a_group(make_bus) -> None:  # type: ignore[no-untyped-def]
    first, second = await make_bus(), await make_bus()
    a, b = Recorder(), Recorder()
    await first.subscribe_persistent(["*"], "shared", "a", a, batch_size=5)
    await second.subscribe_persistent(["*"], "shared", "b", b, batch_size=5)
    events = [discovered(i) for i in range(100)]
    await first.publish_many(events)
    await wait_until(lambda: len(a.ids) + len(b.ids) >= 100, timeout=20)
    assert await first.wait_idle("shared", timeout=10)
    assert sorted(a.ids + b.ids) == sorted(e.event_id for e in events)


async def test_group_receives_only_its_event_types_and_handlers_get_typed_events(
    bus: EventBus,
) -> None:
    rec = Recorder()
    await bus.subscribe_persistent(["workflow.started"], "wf", "w", rec)
    await bus.publish_many([discovered(1), started(1), discovered(2), started(2)])
    assert await bus.wait_idle(timeout=10)
    assert [e.event_type for e in rec.events] == ["workflow.started"] * 2
    assert all(type(e).__name__ == "WorkflowStartedEvent" for e in rec.events)
    stats = await bus.get_stats()
    assert stats["groups"]["wf"]["delivered"] == 2


async def test_first_deliveries_follow_publish_order(bus: EventBus) -> None:
    rec = Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "ordered", "w", rec, batch_size=3)
    events = [discovered(i) for i in range(30)]
    for event in events:
        await bus.publish(event)
    assert await bus.wait_idle(timeout=10)
    assert rec.ids == [e.event_id for e in events]


async def test_start_latest_skips_the_backlog_and_exists_on_return(bus: EventBus) -> None:
    await bus.publish_many([discovered(i) for i in range(5)])
    rec = Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "late", "w", rec, start="latest")
    fresh = discovered(99)
    await bus.publish(fresh)
    assert await bus.wait_idle(timeout=10)
    assert rec.ids == [fresh.event_id]


async def test_start_at_a_datetime_begins_at_that_event_time(bus: EventBus) -> None:
    base = datetime(2026, 5, 1, tzinfo=UTC)
    events = [started(i, base + timedelta(minutes=i)) for i in range(6)]
    await bus.publish_many(events)
    rec = Recorder()
    await bus.subscribe_persistent(
        ["workflow.started"], "from-3", "w", rec, start=base + timedelta(minutes=3)
    )
    assert await bus.wait_idle(timeout=10)
    workflow_ids = [e.workflow_id for e in all_of(WorkflowStartedEvent, rec.events)]
    assert workflow_ids == ["wf-3", "wf-4", "wf-5"]


async def test_new_group_with_earliest_gets_the_backlog(bus: EventBus) -> None:
    events = [discovered(i) for i in range(8)]
    await bus.publish_many(events)
    rec = Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "backfill", "w", rec)
    assert await bus.wait_idle(timeout=10)
    assert rec.ids == [e.event_id for e in events]


async def test_resubscribing_a_consumer_name_replaces_it(bus: EventBus) -> None:
    old, new = Recorder(), Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "g", "worker-1", old)
    sub_id = await bus.subscribe_persistent(["asset.discovered"], "g", "worker-1", new)
    await bus.publish_many([discovered(i) for i in range(10)])
    assert await bus.wait_idle(timeout=10)
    assert old.ids == [] and len(new.ids) == 10
    stats = await bus.get_stats()
    assert stats["groups"]["g"]["consumers"] == 1
    assert stats["bus"]["persistent_subscriptions"] == [sub_id]
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("eventkit-consumer:g:")]
    assert len(tasks) == 1


async def test_unsubscribe_persistent_stops_delivery(bus: EventBus) -> None:
    rec = Recorder()
    sub_id = await bus.subscribe_persistent(["asset.discovered"], "g", "w", rec)
    await bus.publish(discovered(1))
    await wait_until(lambda: len(rec.ids) == 1)
    await bus.unsubscribe_persistent(sub_id)
    await bus.publish(discovered(2))
    await asyncio.sleep(0.3)
    assert len(rec.ids) == 1
    assert (await bus.get_stats())["groups"]["g"]["lag"] == 1


async def test_in_process_wildcard_subscriber_runs_once_per_event(bus: EventBus) -> None:
    seen: list[BaseEvent] = []

    class Everything:
        event_types = ["*"]

        async def handle_event(self, event: BaseEvent) -> None:
            seen.append(event)

    subscriber = Everything()
    bus.subscribe(subscriber)
    bus.subscribe(subscriber)
    for i in range(5):
        await bus.publish(discovered(i))
    assert len(seen) == 5
    bus.unsubscribe(subscriber)
    await bus.publish(discovered(9))
    assert len(seen) == 5


async def test_handlers_may_be_plain_async_or_objects(bus: EventBus) -> None:
    plain: list[str] = []
    coro: list[str] = []

    async def async_handler(event: AssetDiscoveredEvent) -> None:
        coro.append(event.asset_id)

    await bus.subscribe_persistent(
        ["asset.discovered"], "plain", "w", lambda e: plain.append(e.asset_id)
    )
    await bus.subscribe_persistent(["asset.discovered"], "async", "w", async_handler)
    await bus.publish(discovered(3))
    assert await bus.wait_idle(timeout=10)
    assert plain == coro == ["asset-3"]


async def test_a_type_added_to_a_caught_up_group_starts_at_new_events(store: EventStore) -> None:
    """A group that caught up has passed over events of types it did not take: widening its filter
    later delivers the new type from then on, not the old events it went past (as Kafka's
    committed offset, not a rewind)."""
    workflow, asset = WorkflowStartedEvent.event_type, AssetDiscoveredEvent.event_type
    await store.ensure_group("g", [asset])
    first = await store.append([encode(discovered(1)), encode(started(1))])
    caught_up = await store.claim("g", "w", limit=10, lease_ms=5_000)
    assert [c.event.position for c in caught_up] == first[:1]
    assert await store.ack(caught_up) == 1
    await store.ensure_group("g", [asset, workflow])
    later = await store.append([encode(started(2)), encode(discovered(2))])
    claims = await store.claim("g", "w", limit=10, lease_ms=5_000)
    assert [c.event.position for c in claims] == later  # not the workflow event passed over
