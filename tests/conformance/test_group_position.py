"""A group's position as a thing you can move: reset to a time, earliest or latest (refused while
members hold leases, unless forced), and delete; retention keeps what a reset group needs again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from eventkit import EventBus
from eventkit.codec import encode
from eventkit.errors import GroupBusyError, GroupNotFoundError
from eventkit.events import BaseEvent, WorkflowStartedEvent
from eventkit.stores.base import Claim, DeliveryStatus, EventStore, GroupReset, now_ms
from tests.conftest import Backend
from tests.helpers import Recorder, all_of, discovered, started, wait_until

T = TypeVar("T", bound=BaseEvent)

BASE = datetime(2026, 11, 3, tzinfo=UTC)
OLD = datetime.now(UTC) - timedelta(days=40)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def stamped(event: T, moment: datetime) -> T:
    event.timestamp = moment
    event.__post_init__()
    return event


async def _consume_all(store: EventStore, group: str = "g") -> list[Claim]:
    """Claim and ack everything the group has; the claims, in the order they came."""
    claims = await store.claim(group, "w", limit=100, lease_ms=60_000)
    assert await store.ack(claims) == len(claims)
    return claims


async def test_reset_to_a_time_redelivers_exactly_the_events_from_then_in_order(
    store: EventStore,
) -> None:
    # workflow events a minute apart, each after an event of a type the group does not take
    events = [started(i, BASE + timedelta(minutes=i)) for i in range(6)]
    others = [stamped(discovered(i), BASE + timedelta(minutes=i, seconds=-30)) for i in range(6)]
    positions = await store.append(
        [encode(e) for pair in zip(others, events, strict=True) for e in pair]
    )
    workflow_positions = positions[1::2]
    await store.ensure_group("g", [WorkflowStartedEvent.event_type])
    assert len(await _consume_all(store)) == 6

    result = await store.reset_group("g", ms(BASE + timedelta(minutes=3)))
    # it reads on after the event just before the first one stamped then (another type here)
    assert result == GroupReset("g", positions[6], 3, 0, 0)
    assert (await store.stats())["groups"]["g"]["lag"] == 3
    # the records after the new position went: those events start afresh
    assert [r.position for r in await store.deliveries("g")] == workflow_positions[:3]
    claims = await store.claim("g", "w", limit=100, lease_ms=60_000)
    assert [c.event.position for c in claims] == workflow_positions[3:]
    assert [c.event.event_id for c in claims] == [e.event_id for e in events[3:]]
    assert [(c.attempt, c.last_error) for c in claims] == [(1, None)] * 3  # first deliveries
    assert await store.ack(claims) == 3
    assert await store.claim("g", "w", limit=100, lease_ms=60_000) == []
    figures = (await store.stats())["groups"]["g"]
    assert (figures["delivered"], figures["acked"], figures["retried"]) == (9, 9, 0)
    records = await store.deliveries("g")
    assert [r.position for r in records] == workflow_positions
    assert {(r.status, r.attempts) for r in records} == {(DeliveryStatus.ACKED, 1)}


async def test_reset_to_earliest_and_to_latest(store: EventStore) -> None:
    positions = await store.append([encode(discovered(i)) for i in range(4)])
    await store.ensure_group("g", ["*"])
    await _consume_all(store)

    assert await store.reset_group("g", "earliest") == GroupReset("g", 0, 4, 0, 0)
    again = await _consume_all(store)
    assert [c.event.position for c in again] == positions
    assert {c.attempt for c in again} == {1}

    await store.reset_group("g", "earliest")  # a backlog of 4 again, then skipped
    assert await store.reset_group("g", "latest") == GroupReset("g", positions[-1], 0, 0, 0)
    assert await store.is_idle(["g"])
    [fresh] = await store.append([encode(discovered(99))])
    assert [c.event.position for c in await _consume_all(store)] == [fresh]


async def test_a_reset_past_the_last_event_stamp_starts_after_the_log(store: EventStore) -> None:
    positions = await store.append(
        [encode(started(i, BASE + timedelta(minutes=i))) for i in range(3)]
    )
    await store.ensure_group("g", ["*"], start="latest")
    later = await store.reset_group("g", ms(BASE + timedelta(days=1)))
    assert later == GroupReset("g", positions[-1], 0, 0, 0)
    earlier = await store.reset_group("g", ms(BASE - timedelta(days=1)))
    assert earlier == GroupReset("g", 0, 3, 0, 0)


async def test_a_reset_is_refused_while_a_lease_is_held_and_force_releases_it(
    store: EventStore,
) -> None:
    positions = await store.append([encode(discovered(i)) for i in range(3)])
    await store.ensure_group("g", ["*"])
    held = await store.claim("g", "w", limit=2, lease_ms=60_000)

    with pytest.raises(GroupBusyError, match="stop its consumers or pass force=True") as refused:
        await store.reset_group("g", "earliest")
    assert (refused.value.group, refused.value.leased) == ("g", 2)
    with pytest.raises(GroupBusyError):
        await store.reset_group("g", "earliest", dry_run=True)
    figures = (await store.stats())["groups"]["g"]
    assert (figures["in_flight"], figures["lag"]) == (2, 1)  # nothing moved

    assert await store.reset_group("g", "earliest", force=True) == GroupReset("g", 0, 3, 2, 0)
    assert await store.ack(held) == 0  # the late acks of the released leases do not count
    assert await store.extend_lease(held[0], 60_000) is None
    assert not await store.retry_later(held[1], due_ms=now_ms(), error="late")
    claims = await store.claim("g", "w", limit=10, lease_ms=60_000)
    assert [(c.event.position, c.attempt) for c in claims] == [(p, 1) for p in positions]
    assert await store.ack(claims) == 3
    figures = (await store.stats())["groups"]["g"]
    assert (figures["delivered"], figures["acked"], figures["in_flight"]) == (5, 3, 0)


async def test_an_expired_lease_does_not_hold_a_reset_back(store: EventStore) -> None:
    await store.append([encode(discovered(1))])
    await store.ensure_group("g", ["*"])
    [claim] = await store.claim("g", "w", limit=1, lease_ms=1)
    await wait_until(lambda: now_ms() > claim.lease_deadline_ms + 1)
    assert await store.reset_group("g", "latest") == GroupReset("g", claim.event.position, 0, 1, 0)
    assert await store.is_idle(["g"])
    assert await store.claim("g", "w", limit=1, lease_ms=60_000) == []


async def test_retrying_deliveries_are_dropped_and_reported(store: EventStore) -> None:
    positions = await store.append([encode(discovered(i)) for i in range(3)])
    await store.ensure_group("g", ["*"])
    first, second, third = await store.claim("g", "w", limit=3, lease_ms=60_000)
    assert await store.retry_later(first, due_ms=now_ms() + 3_600_000, error="later")
    assert await store.retry_later(second, due_ms=now_ms(), error="now")
    assert await store.ack([third]) == 1

    assert await store.reset_group("g", "latest") == GroupReset("g", positions[-1], 0, 0, 2)
    assert await store.is_idle(["g"])
    assert (await store.stats())["groups"]["g"]["in_flight"] == 0
    assert await store.claim("g", "w", limit=3, lease_ms=60_000) == []  # not retried after all
    assert [r.position for r in await store.deliveries("g")] == [third.event.position]

    assert await store.reset_group("g", "earliest") == GroupReset("g", 0, 3, 0, 0)
    claims = await store.claim("g", "w", limit=3, lease_ms=60_000)
    assert [(c.event.position, c.attempt, c.last_error) for c in claims] == [
        (p, 1, None) for p in positions
    ]


async def test_the_dlq_is_kept_across_a_reset(store: EventStore) -> None:
    await store.append([encode(discovered(i)) for i in range(2)])
    await store.ensure_group("g", ["*"])
    failed, done = await store.claim("g", "w", limit=2, lease_ms=60_000)
    assert await store.dead_letter(failed, error="boom", traceback="tb")
    assert await store.ack([done]) == 1

    assert await store.reset_group("g", "earliest") == GroupReset("g", 0, 2, 0, 0)
    [letter] = await store.get_pending_events("g")
    assert (letter.event_id, letter.last_error, letter.attempts) == (
        failed.event.event_id,
        "boom",
        1,
    )
    again = await store.claim("g", "w", limit=2, lease_ms=60_000)
    assert [(c.event.event_id, c.attempt) for c in again] == [
        (failed.event.event_id, 1), (done.event.event_id, 1),
    ]  # fmt: skip
    assert await store.dead_letter(again[0], error="boom again")
    assert await store.count_dead_letters("g") == 1  # the same event is never in the DLQ twice
    [letter] = await store.get_pending_events("g")
    assert letter.last_error == "boom again"
    assert (await store.stats())["groups"]["g"]["dlq"] == 1
    assert await store.replay_dead_letters("g") == 1
    [replayed] = await store.claim("g", "w", limit=2, lease_ms=60_000)
    assert replayed.event.event_id == failed.event.event_id


async def test_a_dry_run_says_what_a_reset_would_do_and_changes_nothing(store: EventStore) -> None:
    await store.append([encode(discovered(i)) for i in range(4)])
    await store.ensure_group("g", ["*"])
    held = await store.claim("g", "w", limit=2, lease_ms=60_000)
    before = (await store.stats())["groups"]["g"]

    preview = await store.reset_group("g", "earliest", force=True, dry_run=True)
    assert preview == GroupReset("g", 0, 4, 2, 0)
    assert (await store.stats())["groups"]["g"] == before
    assert await store.ack(held) == 2  # the leases still hold
    assert await store.reset_group("g", "earliest", dry_run=True) == GroupReset("g", 0, 4, 0, 0)
    assert len(await store.claim("g", "w", limit=10, lease_ms=60_000)) == 2  # the unread two


async def test_reset_and_delete_of_an_unknown_group(store: EventStore) -> None:
    with pytest.raises(GroupNotFoundError):
        await store.reset_group("nobody", "earliest")
    assert await store.delete_group("nobody") is False


async def test_delete_removes_everything_and_the_name_starts_afresh(store: EventStore) -> None:
    await store.append([encode(started(i, OLD + timedelta(minutes=i))) for i in range(2)])
    fresh = await store.append([encode(discovered(i)) for i in range(2)])
    await store.ensure_group("g", ["*"])
    await store.ensure_group("other", ["*"], start="latest")
    await store.register_consumer("g", "w")
    acked, dead, retrying, in_flight = await store.claim("g", "w", limit=4, lease_ms=60_000)
    assert await store.ack([acked]) == 1
    assert await store.dead_letter(dead, error="boom")
    assert await store.retry_later(retrying, due_ms=now_ms(), error="again")

    assert await store.delete_group("g") is True
    assert await store.delete_group("g") is False
    assert await store.groups() == ["other"]
    assert list((await store.stats())["groups"]) == ["other"]
    assert await store.get_pending_events("g") == []
    assert await store.count_dead_letters("g") == 0
    assert await store.deliveries("g") == []
    for gone in (
        store.claim("g", "w", limit=1, lease_ms=1_000),
        store.register_consumer("g", "w"),
        store.reset_group("g", "earliest"),
    ):
        with pytest.raises(GroupNotFoundError):
            await gone
    # nothing of it protects the log any more
    assert (await store.trim(before_ms=ms(OLD + timedelta(days=1)))).removed == 2

    await store.append([encode(started(9))])  # a type the new group does not take
    await store.ensure_group("g", ["asset.discovered"])  # from scratch: this filter only
    assert await store.ack([in_flight]) == 0  # a claim of the old group is no lease here
    claims = await store.claim("g", "w2", limit=10, lease_ms=60_000)
    assert [(c.event.position, c.attempt) for c in claims] == [(p, 1) for p in fresh]
    figures = (await store.stats())["groups"]["g"]
    assert (figures["delivered"], figures["acked"], figures["dlq"], figures["consumers"]) == (
        2, 0, 0, 0,
    )  # fmt: skip
    assert [r.status for r in await store.deliveries("g")] == [DeliveryStatus.IN_FLIGHT] * 2


async def test_a_group_deleted_elsewhere_is_not_made_again_by_its_members(
    backend: Backend, store: EventStore
) -> None:
    """A member in another process (its own store object, which made the group too) finds the
    group gone; Redis does not take it for a group lost with a restart and create it again."""
    member = backend.new_store()
    await member.open()
    try:
        await store.append([encode(discovered(1))])
        await store.ensure_group("g", ["*"])
        await member.ensure_group("g", ["*"])
        assert await store.delete_group("g") is True
        with pytest.raises(GroupNotFoundError):
            await member.claim("g", "w", limit=1, lease_ms=1_000)
        assert await store.groups() == []
    finally:
        if member is not store:  # the memory backend has one store
            await member.close()


async def test_trim_after_a_reset_keeps_what_the_group_needs_again(store: EventStore) -> None:
    events = [started(i, OLD + timedelta(minutes=i)) for i in range(6)]
    await store.append([encode(e) for e in events])
    await store.ensure_group("g", ["*"])
    await _consume_all(store)
    await store.reset_group("g", ms(OLD + timedelta(minutes=3)))

    result = await store.trim(before_ms=ms(OLD + timedelta(days=1)))
    assert (result.removed, result.kept_unacked) == (3, 3)
    assert [e.event_id for e in await store.read()] == [e.event_id for e in events[3:]]
    again = await _consume_all(store)
    assert [c.event.event_id for c in again] == [e.event_id for e in events[3:]]
    assert (await store.trim(before_ms=ms(OLD + timedelta(days=1)))).removed == 3


# -- through the bus ---------------------------------------------------------------------------


async def test_bus_reset_to_an_iso_time_delivers_again_in_order(bus: EventBus) -> None:
    events = [started(i, BASE + timedelta(hours=i)) for i in range(5)]
    rec = Recorder()
    await bus.subscribe_persistent(["workflow.started"], "indexer", "w", rec)
    await bus.publish_many(events)
    assert await bus.wait_idle("indexer", timeout=10)
    assert await bus.list_groups() == ["indexer"]

    preview = await bus.reset_group("indexer", "2026-11-03T02:00", force=True, dry_run=True)
    assert preview.unread == 3
    assert await bus.wait_idle("indexer", timeout=10)
    result = await bus.reset_group("indexer", to="2026-11-03T02:00:00Z")
    assert (result.unread, result.in_flight, result.retrying) == (3, 0, 0)
    await wait_until(lambda: len(rec.events) == 8)
    assert await bus.wait_idle("indexer", timeout=10)
    ids = [e.workflow_id for e in all_of(WorkflowStartedEvent, rec.events)]
    assert ids == [f"wf-{i}" for i in range(5)] + ["wf-2", "wf-3", "wf-4"]
    figures = (await bus.get_stats())["groups"]["indexer"]
    assert (figures["delivered"], figures["acked"], figures["retried"]) == (8, 8, 0)

    await bus.reset_group("indexer", BASE + timedelta(hours=4))  # a datetime
    await wait_until(lambda: len(rec.events) == 9)
    assert rec.events[-1].event_id == events[4].event_id


async def test_bus_force_reset_while_a_handler_holds_its_lease(bus: EventBus) -> None:
    release = asyncio.Event()
    seen: list[str] = []

    async def slow(event: WorkflowStartedEvent) -> None:
        seen.append(event.workflow_id)
        if len(seen) == 1:
            await release.wait()

    await bus.subscribe_persistent(["workflow.started"], "g", "w", slow)
    await bus.publish(started(0, BASE))
    await wait_until(lambda: seen == ["wf-0"])
    with pytest.raises(GroupBusyError):
        await bus.reset_group("g", "earliest")
    result = await bus.reset_group("g", "earliest", force=True)
    assert (result.in_flight, result.unread) == (1, 1)
    release.set()  # the first handler ends now: its ack comes too late to count
    await wait_until(lambda: len(seen) == 2)
    assert await bus.wait_idle("g", timeout=10)
    assert seen == ["wf-0", "wf-0"]
    figures = (await bus.get_stats())["groups"]["g"]
    assert (figures["delivered"], figures["acked"], figures["retried"]) == (2, 1, 0)


async def test_bus_delete_group_stops_its_subscriptions_and_forgets_it(bus: EventBus) -> None:
    rec = Recorder()
    await bus.subscribe_persistent(["*"], "doomed", "w", rec)
    await bus.subscribe_persistent(["*"], "kept", "w", Recorder())
    await bus.publish(discovered(1))
    assert await bus.wait_idle(timeout=10)
    assert await bus.delete_group("doomed") is True
    assert await bus.list_groups() == ["kept"]
    stats = await bus.get_stats()
    assert stats["bus"]["persistent_subscriptions"] == ["kept:w"]
    assert "doomed" not in stats["groups"]
    await bus.publish(discovered(2))
    assert await bus.wait_idle(timeout=10)
    assert len(rec.events) == 1
    assert await bus.delete_group("doomed") is False
