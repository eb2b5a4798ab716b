"""Redis delivery bookkeeping: one lease per claim of first deliveries, compact acked records,
records written by an earlier eventkit, and lag from kept counts (exact, without a scan)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from eventkit.stores.base import Claim, DeliveryStatus, NewEvent
from eventkit.stores.redis import RedisEventStore
from eventkit.stores.redis_keys import Keys
from eventkit.stores.redis_records import to_entry_id, to_position
from tests.helpers import new_events

OTHER = "other.type"


@pytest.fixture
async def opened(redis_url: str) -> AsyncIterator[tuple[RedisEventStore, aioredis.Redis, Keys]]:
    namespace = f"lease-{uuid.uuid4().hex[:10]}"
    store = RedisEventStore(redis_url, namespace=namespace)
    await store.open()
    raw = aioredis.from_url(redis_url, decode_responses=True)
    try:
        yield store, raw, Keys(namespace)
    finally:
        await store.close()
        keys = [key async for key in raw.scan_iter(match=Keys(namespace).pattern)]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


def _mixed(count: int) -> list[NewEvent]:
    """Events alternating between asset.discovered and OTHER."""
    events = new_events(count)
    return [e if i % 2 == 0 else e._replace(event_type=OTHER) for i, e in enumerate(events)]


async def _true_lag(raw: aioredis.Redis, keys: Keys, group: str, types: set[str]) -> int:
    """Unread entries of the group's types after its cursor, counted the slow way."""
    info = {g["name"]: g for g in await raw.xinfo_groups(keys.events)}
    last = info[group]["last-delivered-id"]
    after: list[Any] = await raw.xrange(keys.events, f"({last}", "+")
    return sum("*" in types or f["event_type"] in types for _, f in after)


async def test_a_claim_of_first_deliveries_writes_one_lease_and_no_record_per_event(
    opened: tuple[RedisEventStore, aioredis.Redis, Keys],
) -> None:
    store, raw, keys = opened
    g = keys.group("g")
    await store.ensure_group("g", ["*"])
    await store.append(new_events(50))
    claims = await store.claim("g", "w", limit=50, lease_ms=30_000)
    assert len(claims) == 50
    assert await raw.hlen(g.records) == 0 and await raw.zcard(g.due) == 0
    assert await raw.zcard(g.lease_due) == 1
    assert (await store.stats())["groups"]["g"]["in_flight"] == 50
    assert await store.ack(claims[:20]) == 20
    assert await store.ack(claims[:20]) == 0  # counted once
    assert {(await raw.hget(g.records, to_entry_id(c.event.position)) or "")[:4]
            for c in claims[:20]} == {"ack "}  # fmt: skip
    assert (await store.stats())["groups"]["g"]["in_flight"] == 30
    assert await store.ack(claims[20:]) == 30
    assert await raw.zcard(g.lease_due) == 0 and await raw.hlen(g.leases) == 0  # lease gone
    stats = (await store.stats())["groups"]["g"]
    assert (stats["in_flight"], stats["acked"], stats["delivered"]) == (0, 50, 50)


async def test_an_expired_lease_redelivers_only_what_was_not_settled(
    opened: tuple[RedisEventStore, aioredis.Redis, Keys],
) -> None:
    store, _, _ = opened
    await store.ensure_group("g", ["*"])
    await store.append(new_events(6))
    claims = await store.claim("g", "dying", limit=6, lease_ms=50)
    assert await store.ack(claims[:2]) == 2
    assert await store.retry_later(claims[2], due_ms=0, error="boom")
    assert await store.extend_lease(claims[3], 60_000) is not None
    await asyncio.sleep(0.1)
    assert await store.ack(claims[4:5]) == 0  # a late ack from the expired lease is ignored
    again = await store.claim("g", "w2", limit=10, lease_ms=30_000)
    by_position = {c.event.position: c for c in again}
    assert sorted(by_position) == sorted(c.event.position for c in (claims[2], *claims[4:]))
    assert [by_position[c.event.position].attempt for c in claims[4:]] == [2, 2]
    assert all("dying" in (by_position[c.event.position].last_error or "") for c in claims[4:])
    assert await store.ack([claims[3], *again]) == 4
    records = {r.position: r for r in await store.deliveries("g")}
    assert [records[c.event.position].attempts for c in claims] == [1, 1, 2, 1, 2, 2]
    assert {r.status for r in records.values()} == {DeliveryStatus.ACKED}
    assert [r.event_id for r in records.values()] == [c.event.event_id for c in claims]
    stats = (await store.stats())["groups"]["g"]
    assert (stats["in_flight"], stats["acked"], stats["delivered"], stats["retried"]) == (
        0,
        6,
        9,
        3,
    )


async def test_deliveries_page_through_leased_acked_and_json_records(
    opened: tuple[RedisEventStore, aioredis.Redis, Keys],
) -> None:
    store, _, _ = opened
    await store.ensure_group("g", ["*"])
    events = new_events(9)
    await store.append(events)
    claims = await store.claim("g", "w", limit=9, lease_ms=30_000)
    await store.ack(claims[:3])
    await store.dead_letter(claims[3], error="fatal")
    pages, after = [], None
    while page := await store.deliveries("g", after_position=after, limit=4):
        pages.append([(r.event_id, r.status.value) for r in page])
        after = page[-1].position
    assert [len(p) for p in pages] == [4, 4, 1]
    assert [row for page in pages for row in page] == [
        (e.event_id, status)
        for e, status in zip(events, ["acked"] * 3 + ["dead"] + ["in_flight"] * 5, strict=True)
    ]


async def test_records_written_by_the_earlier_json_layout_still_settle_and_read(
    opened: tuple[RedisEventStore, aioredis.Redis, Keys],
) -> None:
    """No migration of records: what an earlier eventkit's claim wrote (a JSON record per
    delivery with its own deadline) is what this one writes for every delivery but a first one,
    so it is acked, expires and reads the same."""
    store, raw, keys = opened
    g = keys.group("g")
    await store.ensure_group("g", ["*"])
    events = new_events(2)
    ids = [to_entry_id(p) for p in await store.append(events)]
    await raw.xreadgroup("g", "old", {keys.events: ">"}, count=2)  # as the old claim read them
    for entry_id, event, deadline in zip(ids, events, (4_000_000_000_000, 1), strict=True):
        record = {"status": "in_flight", "token": "old-7", "acked_ms": None, "consumer": "old",
                  "attempts": 1, "first_ms": 1_000, "lease_ms": 30_000,
                  "event_id": event.event_id, "event_type": event.event_type, "last_error": None}  # fmt: skip
        await raw.hset(g.records, entry_id, json.dumps(record, separators=(",", ":")))
        await raw.zadd(g.due, {entry_id: deadline})
    records = await store.deliveries("g")
    assert [(r.status, r.consumer_name, r.attempts) for r in records] == [
        (DeliveryStatus.IN_FLIGHT, "old", 1)] * 2  # fmt: skip
    old_claims = await _claims_like(store, ids, "old-7")
    assert await store.ack(old_claims[:1]) == 1  # its lease holds: acked on the record's text
    [again] = await store.claim("g", "new", limit=5, lease_ms=30_000)  # the other one expired
    assert (again.event.event_id, again.attempt) == (events[1].event_id, 2)
    assert await store.ack([again]) == 1
    assert [r.status for r in await store.deliveries("g")] == [DeliveryStatus.ACKED] * 2


async def _claims_like(store: RedisEventStore, ids: list[str], token: str) -> list[Claim]:
    """Claims as the earlier eventkit handed them out (its token, the entries' events)."""
    by_position = {e.position: e for e in await store.read()}
    return [Claim(by_position[to_position(i)], "g", "old", 1, 0, token, None) for i in ids]


async def test_lag_of_a_typed_group_stays_exact_through_claims_trims_resets_and_deletions(
    opened: tuple[RedisEventStore, aioredis.Redis, Keys],
) -> None:
    store, raw, keys = opened
    await store.ensure_group("typed", ["asset.discovered"])
    await store.ensure_group("all", ["*"])
    await store.append(_mixed(40))
    await store.ensure_group("late", [OTHER], "latest")
    await store.append(_mixed(10))
    wants = {"typed": {"asset.discovered"}, "all": {"*"}, "late": {OTHER}}

    async def check() -> None:
        lags = {name: group["lag"] for name, group in (await store.stats())["groups"].items()}
        assert lags == {name: await _true_lag(raw, keys, name, t) for name, t in wants.items()}

    await check()
    claims = await store.claim("typed", "w", limit=7, lease_ms=30_000)
    await store.ack(claims)
    await store.ack(await store.claim("all", "w", limit=50, lease_ms=30_000))
    await check()
    await store.trim(max_events=25)  # only what every group passed: "typed" and "late" keep most
    await check()
    # trim's holes (XDEL) leave XINFO's lag nil: the counts do not need it
    assert any(g["lag"] is None for g in await raw.xinfo_groups(keys.events))
    await store.append(_mixed(4))
    await check()
    # an entry deleted and one added by another program: the counts no longer add up to the
    # stream's length, so lag is counted on the stream
    await raw.xdel(keys.events, (await raw.xrange(keys.events, "-", "+", count=1))[0][0])
    await check()
    for name in ("by-hand-1", "by-hand-2"):  # (one added for one deleted would hide both)
        await raw.xadd(keys.events, {"event_type": OTHER, "event_id": name})
    await check()
    await check()
    await store.reset_group("typed", "earliest", force=True)
    await store.reset_group("late", "latest")
    await check()
    assert await store.delete_group("all")
    del wants["all"]
    await store.ensure_group("all", ["*"])  # a new group of that name starts from its own count
    wants["all"] = {"*"}
    await check()
    assert not await store.is_idle(["typed"])


async def test_a_namespace_without_counts_is_counted_once_on_open(redis_url: str) -> None:
    """A namespace written before the counts existed (simulated by removing them): a read-only
    open counts by scanning, the first writing open counts once, and lag stays the same."""
    namespace = f"lease-{uuid.uuid4().hex[:10]}"
    keys, raw = Keys(namespace), aioredis.from_url(redis_url, decode_responses=True)
    store = RedisEventStore(redis_url, namespace=namespace)
    await store.open()
    try:
        await store.ensure_group("typed", ["asset.discovered"])
        await store.append(_mixed(30))
        await store.ack(await store.claim("typed", "w", limit=5, lease_ms=30_000))
        want = (await store.stats())["groups"]["typed"]["lag"]
        assert want == 10
        await raw.hdel(keys.meta, "counted")
        await raw.delete(keys.counts, keys.group("typed").seen)
        reader = RedisEventStore(redis_url, namespace=namespace, read_only=True)
        await reader.open()
        try:
            assert (await reader.stats())["groups"]["typed"]["lag"] == want  # by a scan
            assert not await raw.exists(keys.counts)  # reading changed nothing
        finally:
            await reader.close()
        again = RedisEventStore(redis_url, namespace=namespace)
        await again.open()
        try:
            assert await raw.hget(keys.meta, "counted") == "1"
            assert await raw.hget(keys.counts, OTHER) == "15"
            assert (await again.stats())["groups"]["typed"]["lag"] == want
        finally:
            await again.close()
    finally:
        await store.close()
        found = [key async for key in raw.scan_iter(match=keys.pattern)]
        if found:
            await raw.delete(*found)
        await raw.aclose()
