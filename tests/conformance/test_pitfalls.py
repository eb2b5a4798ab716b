"""One test per item of reference/known-pitfalls.md that no other conformance test already names.

Covered elsewhere, by name: 6 test_delivery::test_expired_lease_is_redelivered_and_counts_as_an_attempt,
8 test_delivery::test_late_ack_from_an_expired_lease_is_ignored, 11 test_dlq::test_dlq_entries_carry_the_group_not_unknown,
14 test_log::test_negative_limit_is_refused_not_unbounded, 16 test_groups::test_in_process_wildcard_subscriber_runs_once_per_event,
17 test_retention::test_trim_by_age_keeps_unread_and_in_flight_events, 18 test_retention::test_background_trim_honours_config,
19 tests/test_sqlite_store.py (idle probe, query plans) and benchmarks/, 20 test_stats::test_stats_shape_and_figures,
21 test_groups::test_resubscribing_a_consumer_name_replaces_it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from eventkit import BaseEvent, EventBus, create_event, versioned_event
from eventkit.errors import MigrationError, SerializationError
from eventkit.events import AssetDiscoveredEvent, WorkflowStartedEvent
from tests.helpers import Recorder, all_of, discovered, new_events, started, wait_until


async def test_pitfall_01_initialize_from_env_defaults_builds_a_working_store(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENT_STORE_BACKEND", backend.name)
    monkeypatch.setenv("EVENT_STORE_PATH", str(backend.path))
    monkeypatch.setenv("EVENT_STORE_NAMESPACE", backend.namespace)
    if backend.redis_url:
        monkeypatch.setenv("REDIS_URL", backend.redis_url)
    bus = EventBus()
    await bus.initialize()
    await bus.initialize()  # idempotent
    try:
        assert bus.initialized and bus.store.backend == backend.name
        assert await bus.publish(discovered(1))
        assert (await bus.get_stats())["store"]["total_events"] == 1
    finally:
        await bus.close()


async def test_pitfall_02_handlers_get_concrete_typed_events(bus: EventBus) -> None:
    rec = Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "g", "w", rec)
    await bus.publish(discovered(5))
    assert await bus.wait_idle(timeout=10)
    [event] = rec.events
    assert type(event) is AssetDiscoveredEvent and event.file_size == 1005


async def test_pitfall_03_versions_are_ints_everywhere(bus: EventBus) -> None:
    await bus.publish(discovered(1))
    [stored] = await bus.store.read()
    assert stored.version == 1 and isinstance(stored.version, int)
    with pytest.raises(MigrationError, match="int"):

        @versioned_event(version="1.0.0", event_type="x.y")  # type: ignore[arg-type]
        class Bad(BaseEvent):
            pass


async def test_pitfall_04_identity_is_fixed_at_creation_and_deduplicates(bus: EventBus) -> None:
    event = create_event(
        AssetDiscoveredEvent, source="s", asset_id="a", file_path="/f", media_type="image"
    )
    assert event.event_id == event.event_id and event.timestamp == event.timestamp
    first = await bus.publish(event)
    second = await bus.publish(event)  # a producer's retry
    assert first == second == event.event_id
    assert (await bus.get_stats())["store"]["total_events"] == 1


async def test_pitfall_05_events_with_old_timestamps_published_late_are_still_delivered(
    bus: EventBus,
) -> None:
    rec = Recorder()
    await bus.subscribe_persistent(["workflow.started"], "g", "w", rec)
    now = datetime.now(UTC)
    await bus.publish(started(1, now + timedelta(hours=1)))  # a clock ahead
    assert await bus.wait_idle(timeout=10)
    await bus.publish(started(2, now - timedelta(days=1)))  # a late commit / a clock behind
    assert await bus.wait_idle(timeout=10)
    assert [e.workflow_id for e in all_of(WorkflowStartedEvent, rec.events)] == ["wf-1", "wf-2"]


async def test_pitfall_07_an_event_that_kills_its_consumers_reaches_the_dlq(bus: EventBus) -> None:
    await bus.publish(discovered(1))
    await bus.store.ensure_group("g", ["asset.discovered"])
    for _ in range(2):  # two consumers die holding it
        assert len(await bus.store.claim("g", "doomed", limit=1, lease_ms=50)) == 1
        await asyncio.sleep(0.1)
    rec = Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "g", "w", rec, max_retries=1)
    await wait_until(lambda: bus.get_pending_events("g"), timeout=10)
    [letter] = await bus.store.get_pending_events("g")
    assert "lease expired" in letter.last_error and letter.attempts == 3
    assert rec.events == []


async def test_pitfall_09_dead_events_are_never_delivered_again_as_new(bus: EventBus) -> None:
    poison = discovered(0)
    rec = Recorder(fail_times=99, fail_ids={poison.event_id})
    for i in range(2):
        await bus.subscribe_persistent(["*"], "g", f"w{i}", rec, max_retries=0, batch_size=4)
    await bus.publish_many([poison, *[discovered(i) for i in range(1, 100)]])
    assert await bus.wait_idle(timeout=10)
    await asyncio.sleep(0.2)
    assert sum(rec.attempts.values()) == 100  # 100 events, one attempt each
    assert (await bus.get_stats())["groups"]["g"]["delivered"] == 100


async def test_pitfall_10_retries_raise_delivery_counts_and_acks_empty_the_pending_list(
    bus: EventBus,
) -> None:
    rec = Recorder(fail_times=2)
    await bus.subscribe_persistent(["*"], "a", "w", rec, max_retries=1, retry_delay=0.01)
    await bus.subscribe_persistent(["*"], "b", "w", Recorder())
    await bus.publish_many([discovered(i) for i in range(5)])
    assert await bus.wait_idle(timeout=10)
    stats = await bus.get_stats()
    assert stats["groups"]["a"]["dlq"] == 5 and stats["groups"]["a"]["retried"] == 5
    assert stats["groups"]["b"]["acked"] == 5 and stats["groups"]["b"]["pending"] == 0
    assert stats["store"]["pending_events"] == 0


async def test_pitfall_12_a_failed_publish_raises_and_tells_no_subscriber(bus: EventBus) -> None:
    seen: list[BaseEvent] = []
    bus.subscribe(seen.append)
    event = discovered(1, metadata={"handle": object()})
    with pytest.raises(SerializationError, match="not JSON"):
        await bus.publish(event)
    assert seen == [] and await bus.store.read() == []


async def test_pitfall_12_retries_wait_instead_of_looping(bus: EventBus) -> None:
    rec = Recorder(fail_times=1)
    await bus.subscribe_persistent(["*"], "g", "w", rec, retry_delay=0.3)
    await bus.publish(discovered(1))
    await wait_until(lambda: rec.events, timeout=5)
    [times] = rec.times.values()
    assert times[1] - times[0] >= 0.14  # at least half the delay (jitter), never at once


async def test_pitfall_13_concurrent_publish_claim_and_ack_on_one_store(bus: EventBus) -> None:
    rec = Recorder()
    for i in range(3):
        await bus.subscribe_persistent(["*"], "g", f"w{i}", rec, batch_size=3)
    events = [discovered(i) for i in range(150)]
    await asyncio.gather(*(bus.publish(e) for e in events))
    assert await bus.wait_idle(timeout=20)
    assert sorted(rec.ids) == sorted(e.event_id for e in events)


async def test_pitfall_15_naive_datetimes_are_utc_everywhere(bus: EventBus) -> None:
    naive = datetime(2026, 6, 1, 12, 0, 0)
    event = started(1, naive)
    assert event.timestamp == naive.replace(tzinfo=UTC)
    await bus.publish(event)
    seen: list[BaseEvent] = []
    start, end = naive - timedelta(minutes=1), naive + timedelta(minutes=1)
    assert await bus.replay_events(["*"], seen.append, start_time=start, end_time=end) == 1
    start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)  # now aware
    assert await bus.replay_events(["*"], seen.append, start_time=start, end_time=end) == 1


async def test_stored_positions_survive_store_reopen(backend: Any) -> None:
    store = backend.new_store()
    await store.open()
    first = await store.append(new_events(3))
    await store.close()
    store = backend.new_store()
    await store.open()
    try:
        later = await store.append(new_events(2))
        assert min(later) > max(first)
    finally:
        await store.close()
