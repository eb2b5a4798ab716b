"""The per-group dead-letter queue: what lands there, replay to one group, discard."""

from __future__ import annotations

from eventkit import EventBus
from eventkit.stores.base import EventStore
from tests.helpers import Recorder, discovered, new_events, wait_until


async def _fill_dlq(bus: EventBus, group: str, count: int, max_retries: int = 1) -> Recorder:
    rec = Recorder(fail_times=max_retries + 1)
    await bus.subscribe_persistent(
        ["asset.discovered"], group, "worker-1", rec, max_retries=max_retries, retry_delay=0.02
    )
    await bus.publish_many([discovered(i) for i in range(count)])
    await wait_until(lambda: bus.get_pending_events(group), timeout=10)
    await wait_until(lambda: _dlq_size_is(bus, group, count), timeout=10)
    return rec


async def _dlq_size_is(bus: EventBus, group: str, count: int) -> bool:
    return await bus.get_pending_events(group) == count


async def test_event_goes_to_dlq_after_one_plus_max_retries_attempts(bus: EventBus) -> None:
    rec = await _fill_dlq(bus, "g", 1, max_retries=2)
    [letter] = await bus.store.get_pending_events("g")
    assert rec.attempts[letter.event_id] == 3
    assert letter.attempts == 3
    assert letter.consumer_group == "g" and letter.consumer_name == "worker-1"
    assert "RuntimeError: flaky failure #3" in letter.last_error
    assert "Traceback" in letter.traceback and "flaky failure" in letter.traceback
    assert letter.event.event_type == "asset.discovered"
    assert type(letter.event).__name__ == "AssetDiscoveredEvent"
    assert letter.failed_at.tzinfo is not None
    assert [d.event_id for d in await bus.dead_letters("g")] == [letter.event_id]
    assert [d.event_id for d in await bus.dead_letters()] == [letter.event_id]
    assert await bus.dlq_size("g") == await bus.get_pending_events("g") == 1
    assert await bus.wait_idle("g", timeout=5)  # DLQ entries do not count as pending
    stats = await bus.get_stats()
    assert stats["groups"]["g"]["dlq"] == 1 and stats["store"]["dlq_events"] == 1
    assert stats["groups"]["g"]["pending"] == 0


async def test_replay_dlq_redelivers_to_that_group_only_with_attempts_reset(bus: EventBus) -> None:
    other = Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "other", "w", other)
    rec = await _fill_dlq(bus, "g", 3)
    assert await bus.wait_idle("other", timeout=5)
    assert len(other.ids) == 3
    rec.fail_times = 0  # the bug is fixed
    assert await bus.replay_dlq("g") == 3
    assert await bus.replay_dlq("g") == 0  # idempotent
    assert await bus.wait_idle("g", timeout=10)
    assert sorted(rec.ids) == sorted(other.ids)
    assert len(other.ids) == 3  # the other group got nothing again
    assert await bus.get_pending_events("g") == 0
    records = {r.event_id: r for r in await bus.store.deliveries("g")}
    assert all(r.status == "acked" and r.attempts == 1 for r in records.values())


async def test_replay_dlq_by_ids_and_discard(bus: EventBus) -> None:
    rec = await _fill_dlq(bus, "g", 4)
    letters = await bus.store.get_pending_events("g")
    rec.fail_times = 0
    assert await bus.replay_dlq("g", event_ids=[letters[0].event_id]) == 1
    assert await bus.wait_idle("g", timeout=10)
    assert rec.ids == [letters[0].event_id]
    assert await bus.discard_dlq("g", event_ids=[letters[1].event_id]) == 1
    assert await bus.get_pending_events("g") == 2
    assert await bus.discard_dlq("g") == 2
    assert await bus.get_pending_events("g") == 0
    assert await bus.replay_dlq("g") == 0


async def test_replay_dlq_by_event_type(bus: EventBus) -> None:
    rec = await _fill_dlq(bus, "g", 2)
    rec.fail_times = 0
    assert await bus.replay_dlq("g", event_types=["workflow.started"]) == 0
    assert await bus.replay_dlq("g", event_types=["asset.discovered"]) == 2


async def test_dead_letter_is_atomic_and_never_twice(store: EventStore) -> None:
    await store.append(new_events(1))
    await store.ensure_group("g", ["*"])
    [claim] = await store.claim("g", "w", limit=1, lease_ms=10_000)
    assert await store.dead_letter(claim, error="boom", traceback="tb") is True
    assert await store.dead_letter(claim, error="boom again") is False
    assert await store.ack([claim]) == 0
    assert await store.claim("g", "w", limit=5, lease_ms=10_000) == []  # never delivered again
    assert await store.count_dead_letters("g") == 1
    assert await store.is_idle(["g"])
    [record] = await store.deliveries("g")
    assert record.status == "dead" and record.last_error == "boom"


async def test_dlq_entries_carry_the_group_not_unknown(store: EventStore) -> None:
    await store.append(new_events(2))
    for group in ("a", "b"):
        await store.ensure_group(group, ["*"])
        [claim] = await store.claim(group, "w", limit=1, lease_ms=10_000)
        await store.dead_letter(claim, error=f"failed in {group}")
    assert [d.consumer_group for d in await store.get_pending_events("a")] == ["a"]
    assert [d.last_error for d in await store.get_pending_events("b")] == ["failed in b"]
    assert len(await store.get_pending_events()) == 2


async def test_a_dead_letter_counts_how_often_it_was_replayed(store: EventStore) -> None:
    await store.append(new_events(2))
    await store.ensure_group("g", ["*"])
    for claim in await store.claim("g", "w", limit=2, lease_ms=10_000):
        await store.dead_letter(claim, error="boom")
    assert [d.replays for d in await store.get_pending_events("g")] == [0, 0]
    first, second = (d.event_id for d in await store.get_pending_events("g"))
    for expected in (1, 2, 3):  # replayed, fails again, back in the DLQ with one more replay
        assert await store.replay_dead_letters("g", event_ids=[first]) == 1
        [claim] = await store.claim("g", "w", limit=5, lease_ms=10_000)
        assert claim.event.event_id == first and claim.attempt == 1
        assert await store.dead_letter(claim, error=f"boom again {expected}") is True
        replays = {d.event_id: d.replays for d in await store.get_pending_events("g")}
        assert replays == {first: expected, second: 0}


async def test_a_replayed_event_that_succeeds_leaves_no_dead_letter_behind(
    store: EventStore,
) -> None:
    await store.append(new_events(1))
    await store.ensure_group("g", ["*"])
    [claim] = await store.claim("g", "w", limit=1, lease_ms=10_000)
    await store.dead_letter(claim, error="boom")
    assert await store.replay_dead_letters("g") == 1
    [again] = await store.claim("g", "w", limit=1, lease_ms=10_000)
    assert await store.ack([again]) == 1
    assert await store.get_pending_events("g") == []
    [record] = await store.deliveries("g")
    assert record.status == "acked"
