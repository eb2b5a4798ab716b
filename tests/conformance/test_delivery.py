"""At-least-once delivery: leases, expiry and redelivery, late acks, retries with backoff, close."""

from __future__ import annotations

import asyncio
import time

import pytest

from eventkit import BaseEvent, Delivery, EventBus
from eventkit.errors import BusClosedError, LeaseLostError
from eventkit.stores.base import EventStore
from tests.helpers import Recorder, discovered, new_events, wait_until


async def test_claims_lease_each_event_to_one_consumer(store: EventStore) -> None:
    await store.append(new_events(10))
    await store.ensure_group("g", ["*"])
    first = await store.claim("g", "a", limit=6, lease_ms=10_000)
    second = await store.claim("g", "b", limit=6, lease_ms=10_000)
    assert len(first) == 6 and len(second) == 4
    assert not {c.event.event_id for c in first} & {c.event.event_id for c in second}
    assert all(c.attempt == 1 and c.consumer_group == "g" for c in first + second)
    assert await store.claim("g", "c", limit=5, lease_ms=10_000) == []
    assert await store.ack(first + second) == 10
    assert await store.is_idle(["g"])


async def test_expired_lease_is_redelivered_and_counts_as_an_attempt(store: EventStore) -> None:
    await store.append(new_events(1))
    await store.ensure_group("g", ["*"])
    [dead_consumer_claim] = await store.claim("g", "dies", limit=1, lease_ms=100)
    assert await store.claim("g", "other", limit=1, lease_ms=100) == []  # lease holds
    await asyncio.sleep(0.25)
    [reclaimed] = await store.claim("g", "other", limit=1, lease_ms=5_000)
    assert reclaimed.event.event_id == dead_consumer_claim.event.event_id
    assert reclaimed.attempt == 2
    assert reclaimed.consumer_name == "other"
    assert "lease expired" in (reclaimed.last_error or "")


async def test_only_unsettled_leases_of_a_batch_come_back_after_expiry(store: EventStore) -> None:
    await store.append(new_events(30))
    await store.ensure_group("g", ["*"])
    batches = [await store.claim("g", "dies", limit=10, lease_ms=150) for _ in range(3)]
    unacked = [batches[0][3], batches[1][0], batches[2][9]]
    later = batches[1][5]
    settled = [c for b in batches for c in b if c not in unacked and c != later]
    assert await store.ack(settled) == 26
    assert await store.retry_later(later, due_ms=int(time.time() * 1000) + 60_000, error="x")
    await asyncio.sleep(0.3)
    [extended] = await store.claim("g", "x", limit=1, lease_ms=150)
    assert await store.extend_lease(extended, 10_000) is not None
    # only the expired leases not reclaimed since come back: not the acked, the retry not yet
    # due, nor the lease just extended
    back = await store.claim("g", "other", limit=10, lease_ms=5_000)
    expected = {c.event.position for c in unacked} - {extended.event.position}
    assert {c.event.position for c in back} == expected and len(back) == 2
    assert all(c.attempt == 2 and "lease expired" in (c.last_error or "") for c in back)
    assert await store.claim("g", "other", limit=10, lease_ms=5_000) == []


async def test_a_claim_cancelled_at_any_point_leaves_nothing_leased(store: EventStore) -> None:
    """How a consumer stops at once: its claim is cancelled wherever it is; nothing may stay
    leased to it (to come back only when the lease expires) or count as an attempt."""
    await store.append(new_events(3))
    await store.ensure_group("g", ["*"])
    outcomes = set()
    # cancel after 0-7 loop turns, then after 0.25-3 ms: before, during and after each step
    points = [(turns, 0.0) for turns in range(8)] + [(0, k / 4000) for k in range(1, 13)]
    for (turns, seconds), twice in [(p, False) for p in points * 2] + [(p, True) for p in points]:
        claiming = asyncio.ensure_future(store.claim("g", "a", limit=10, lease_ms=60_000))
        for _ in range(turns):
            await asyncio.sleep(0)
        if seconds:
            await asyncio.sleep(seconds)
        claiming.cancel()
        if twice:  # a stop may cancel again while the claim cleans up
            await asyncio.sleep(0.0005)
            claiming.cancel()
        try:
            finished = await claiming  # it ended before the cancel landed: the caller has them
            assert await store.release(finished) == len(finished) == 3
            outcomes.add("finished")
        except asyncio.CancelledError:
            outcomes.add("cancelled")
        claims = await store.claim("g", "b", limit=10, lease_ms=60_000)
        assert [c.attempt for c in claims] == [1, 1, 1], (turns, seconds)
        assert await store.release(claims) == 3
    assert "cancelled" in outcomes


async def test_late_ack_from_an_expired_lease_is_ignored(store: EventStore) -> None:
    await store.append(new_events(1))
    await store.ensure_group("g", ["*"])
    [stale] = await store.claim("g", "slow", limit=1, lease_ms=100)
    await asyncio.sleep(0.25)
    [current] = await store.claim("g", "fast", limit=1, lease_ms=5_000)
    assert await store.ack([stale]) == 0  # the old holder cannot ack the new claim
    assert not await store.is_idle(["g"])
    assert await store.retry_later(stale, due_ms=0, error="x") is False
    assert await store.dead_letter(stale, error="x") is False
    assert await store.ack([current]) == 1
    assert await store.is_idle(["g"])
    assert await store.count_dead_letters("g") == 0


async def test_ack_after_own_lease_expired_is_ignored(store: EventStore) -> None:
    await store.append(new_events(1))
    await store.ensure_group("g", ["*"])
    [claim] = await store.claim("g", "slow", limit=1, lease_ms=100)
    await asyncio.sleep(0.25)
    assert await store.ack([claim]) == 0
    [again] = await store.claim("g", "slow", limit=1, lease_ms=5_000)
    assert again.attempt == 2


async def test_extend_lease_keeps_the_event(store: EventStore) -> None:
    await store.append(new_events(1))
    await store.ensure_group("g", ["*"])
    [claim] = await store.claim("g", "a", limit=1, lease_ms=300)
    extended = await store.extend_lease(claim, 5_000)
    assert extended is not None and extended.lease_deadline_ms > claim.lease_deadline_ms
    await asyncio.sleep(0.45)
    assert await store.claim("g", "b", limit=1, lease_ms=1_000) == []
    assert await store.ack([extended]) == 1


async def test_release_makes_the_event_deliverable_without_counting(store: EventStore) -> None:
    await store.append(new_events(1))
    await store.ensure_group("g", ["*"])
    [claim] = await store.claim("g", "a", limit=1, lease_ms=30_000)
    assert await store.release([claim]) == 1
    [again] = await store.claim("g", "b", limit=1, lease_ms=30_000)
    assert again.attempt == 1 and again.event.event_id == claim.event.event_id


async def test_release_of_a_batch_counts_only_leases_still_held(store: EventStore) -> None:
    await store.append(new_events(4))
    await store.ensure_group("g", ["*"])
    claims = await store.claim("g", "a", limit=4, lease_ms=30_000)
    assert await store.ack(claims[:1]) == 1
    assert await store.release(claims) == 3  # the acked one is no longer held
    again = await store.claim("g", "b", limit=10, lease_ms=30_000)
    assert [c.event.event_id for c in again] == [c.event.event_id for c in claims[1:]]
    assert {c.attempt for c in again} == {1}


async def test_failed_handler_is_retried_with_exponential_backoff(bus: EventBus) -> None:
    rec = Recorder(fail_times=3)
    await bus.subscribe_persistent(
        ["asset.discovered"], "flaky", "w", rec, max_retries=3, retry_delay=0.2, max_retry_delay=5
    )
    event = discovered(1)
    await bus.publish(event)
    await wait_until(lambda: rec.ids == [event.event_id], timeout=10)
    times = rec.times[event.event_id]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 3
    # base·2^(n-1) with jitter in [50 %, 100 %], plus polling slack
    for n, gap in enumerate(gaps, start=1):
        nominal = 0.2 * 2 ** (n - 1)
        assert 0.5 * nominal - 0.02 <= gap <= nominal + 0.25, (n, gap)
    assert await bus.wait_idle(timeout=5)
    stats = (await bus.get_stats())["groups"]["flaky"]
    assert (stats["delivered"], stats["retried"], stats["acked"], stats["dlq"]) == (4, 3, 1, 0)


async def test_a_failing_event_does_not_block_the_group(bus: EventBus) -> None:
    poison = discovered(0)
    rec = Recorder(fail_times=100, fail_ids={poison.event_id})
    await bus.subscribe_persistent(
        ["asset.discovered"], "g", "w", rec, max_retries=1, retry_delay=0.05
    )
    others = [discovered(i) for i in range(1, 20)]
    await bus.publish_many([poison, *others])
    assert await bus.wait_idle(timeout=10)
    assert rec.ids == [e.event_id for e in others]
    assert await bus.get_pending_events("g") == 1


async def test_hung_handler_is_bounded_by_its_lease(bus: EventBus) -> None:
    calls: list[int] = []

    async def hangs_once(event: BaseEvent, delivery: Delivery) -> None:
        calls.append(delivery.attempt)
        if delivery.attempt == 1:
            await asyncio.sleep(3600)

    await bus.subscribe_persistent(["*"], "g", "w", hangs_once, lease_seconds=0.3)
    await bus.publish(discovered(1))
    await wait_until(lambda: calls == [1, 2], timeout=10)
    assert await bus.wait_idle(timeout=5)
    assert (await bus.get_stats())["groups"]["g"]["acked"] == 1


async def test_handler_can_extend_its_lease(bus: EventBus) -> None:
    attempts: list[int] = []

    async def long_job(event: BaseEvent, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        for _ in range(4):
            await asyncio.sleep(0.15)
            await delivery.extend_lease(0.3)

    await bus.subscribe_persistent(["*"], "g", "w", long_job, lease_seconds=0.3)
    await bus.publish(discovered(1))
    await wait_until(lambda: attempts, timeout=5)
    assert await bus.wait_idle(timeout=10)
    assert attempts == [1]  # 0.6 s of work on a 0.3 s lease, never redelivered


async def test_extend_lease_after_losing_it_raises(store: EventStore) -> None:
    from eventkit.consumer import Delivery as ConsumerDelivery

    await store.append(new_events(1))
    await store.ensure_group("g", ["*"])
    [claim] = await store.claim("g", "a", limit=1, lease_ms=50)
    await asyncio.sleep(0.15)
    delivery = ConsumerDelivery(claim, store, None)
    try:
        await delivery.extend_lease(1)
    except LeaseLostError as e:
        assert "lease" in str(e)
    else:
        raise AssertionError("extend_lease on an expired lease must raise LeaseLostError")


async def test_close_waits_for_handler_then_releases_without_ack(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = await make_bus()
    started = asyncio.Event()

    async def slow(event: BaseEvent) -> None:
        started.set()
        await asyncio.sleep(3600)

    await bus.subscribe_persistent(["*"], "g", "w", slow, lease_seconds=60)
    await bus.publish(discovered(1))
    await asyncio.wait_for(started.wait(), 5)
    t0 = time.monotonic()
    assert not bus.closed
    await bus.close(timeout=0.2)
    assert time.monotonic() - t0 < 2
    assert bus.closed and not bus.initialized
    with pytest.raises(BusClosedError, match="closed"):
        await bus.publish(discovered(2))
    after = await make_bus()
    rec = Recorder()
    await after.subscribe_persistent(["*"], "g", "w2", rec, lease_seconds=60)
    await wait_until(lambda: rec.ids, timeout=5)  # released at once, not after the 60 s lease
    stats = (await after.get_stats())["groups"]["g"]
    assert stats["acked"] == 1


async def test_close_releases_the_whole_backlog_it_holds(make_bus) -> None:  # type: ignore[no-untyped-def]
    """A consumer may hold more than the event in its handler (the rest of its batch, and a batch
    claimed ahead where the store overlaps claims with handling): close gives all of it back."""
    bus = await make_bus()
    started = asyncio.Event()

    async def stuck(event: BaseEvent, delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(3600)

    await bus.publish_many([discovered(i) for i in range(20)])
    await bus.subscribe_persistent(["*"], "g", "w", stuck, batch_size=5, lease_seconds=60)
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.2)  # time to claim ahead, where the store does
    await bus.close(timeout=0.1)
    after = await make_bus()
    deliveries: list[Delivery] = []

    async def record(event: BaseEvent, delivery: Delivery) -> None:
        deliveries.append(delivery)

    await after.subscribe_persistent(["*"], "g", "w2", record, batch_size=5, lease_seconds=60)
    assert await after.wait_idle("g", timeout=5)  # nothing left to a 60 s lease
    assert len(deliveries) == 20
    assert {d.attempt for d in deliveries} == {1}  # a release is not an attempt
    assert (await after.get_stats())["groups"]["g"]["acked"] == 20


async def test_publish_wakes_idle_consumers_at_once(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = await make_bus(poll_interval_seconds=1.0)  # a poll would take up to a second
    latencies: list[float] = []
    sent: dict[str, float] = {}

    def handler(event: BaseEvent) -> None:
        latencies.append(time.perf_counter() - sent[event.event_id])

    await bus.subscribe_persistent(["*"], "fast", "w", handler)
    await asyncio.sleep(0.3)  # the consumer is idle now
    for i in range(10):
        event = discovered(i)
        sent[event.event_id] = time.perf_counter()
        await bus.publish(event)

        def delivered(n: int = i) -> bool:
            return len(latencies) > n

        await wait_until(delivered, timeout=5)
        await asyncio.sleep(0.03)
    latencies.sort()
    assert latencies[5] < 0.05, latencies
