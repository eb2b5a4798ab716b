"""Adaptive claims (issue 12): at the default batch_size a consumer claims more while a backlog
lasts, back to batch_size once it is gone, and the members of a group still share the work."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from eventkit import BaseEvent, EventBus
from eventkit.policy import CLAIM_BATCH_SECONDS, CLAIM_CAP, ClaimSize
from eventkit.stores.base import Claim, EventStore
from tests.conftest import Backend
from tests.helpers import discovered, wait_until

BACKLOG = 3000


class ClaimLimits:
    """The backend's real store, recording the limit of every claim made through it."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.limits: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        self.limits.append(limit)
        return await self._store.claim(
            group, consumer, limit=limit, lease_ms=lease_ms, block_ms=block_ms
        )


async def _bus(backend: Backend, store: Any) -> EventBus:
    bus = EventBus(backend.config(), store=store)
    await bus.initialize()
    return bus


async def test_a_backlog_is_claimed_in_growing_batches_then_batch_size_again(
    backend: Backend,
) -> None:
    store = ClaimLimits(backend.new_store())
    bus = await _bus(backend, store)
    try:
        events = [discovered(i) for i in range(BACKLOG)]
        await bus.publish_many(events)
        handled: Counter[str] = Counter()

        async def handler(event: BaseEvent) -> None:
            handled[event.event_id] += 1

        await bus.subscribe_persistent(["*"], "backlog", "w1", handler)  # batch_size 10
        assert await bus.wait_idle("backlog", timeout=60)
        assert handled == Counter(e.event_id for e in events)  # each once
        assert store.limits[0] == 10
        assert max(store.limits) == CLAIM_CAP  # doubled up to the cap while claims came full
        claims_made = len(store.limits)
        assert claims_made < BACKLOG // 10  # fewer claims than at a fixed batch_size

        # the backlog is gone: the next claims (idle polls) ask for batch_size again
        await wait_until(lambda: len(store.limits) > claims_made + 1, timeout=10)
        assert store.limits[-1] == 10
    finally:
        await bus.close(timeout=1.0)


async def test_two_members_of_a_group_both_get_work_while_a_backlog_lasts(
    backend: Backend,
) -> None:
    bus = await _bus(backend, backend.new_store())
    try:
        handled: dict[str, Counter[str]] = {"a": Counter(), "b": Counter()}

        def handler_of(member: str) -> Any:
            async def handle(event: BaseEvent) -> None:
                handled[member][event.event_id] += 1
                await asyncio.sleep(0)  # other tasks run between events, as in real handlers

            return handle

        for member in handled:  # both members wait before the backlog arrives
            await bus.subscribe_persistent(["*"], "pair", member, handler_of(member))
        events = [discovered(i) for i in range(BACKLOG)]
        await bus.publish_many(events)
        assert await bus.wait_idle("pair", timeout=60)

        assert handled["a"] and handled["b"]  # both members got work
        assert not handled["a"].keys() & handled["b"].keys()  # never the same event twice
        assert handled["a"] + handled["b"] == Counter(e.event_id for e in events)
    finally:
        await bus.close(timeout=1.0)


# -- the rule itself (eventkit.policy.ClaimSize) -------------------------------------------------

FAST = CLAIM_BATCH_SECONDS / 10
SLOW = CLAIM_BATCH_SECONDS * 2


def test_claim_size_doubles_on_full_fast_batches_up_to_the_cap() -> None:
    size = ClaimSize(10)
    seen = []
    for _ in range(8):
        seen.append(size.size)
        size.observe(size.size, size.size, FAST)
    assert seen == [10, 20, 40, 80, 160, 320, CLAIM_CAP, CLAIM_CAP]


def test_claim_size_returns_to_batch_size_after_a_short_claim() -> None:
    size = ClaimSize(10)
    for _ in range(4):
        size.observe(size.size, size.size, FAST)
    assert size.size == 160
    size.observe(160, 37, FAST)  # the backlog is gone
    assert size.size == 10
    size.observe(10, 0, 0.0)  # an idle group claims batch_size: its first event comes at once
    assert size.size == 10


def test_claim_size_halves_after_a_slow_batch_but_never_below_batch_size() -> None:
    size = ClaimSize(10)
    for _ in range(3):
        size.observe(size.size, size.size, FAST)
    assert size.size == 80
    size.observe(80, 80, SLOW)  # slow handlers: smaller batches, so other members share them
    assert size.size == 40
    for _ in range(5):
        size.observe(size.size, size.size, SLOW)
    assert size.size == 10


def test_claim_size_keeps_a_batch_size_above_the_cap() -> None:
    size = ClaimSize(2 * CLAIM_CAP)
    size.observe(2 * CLAIM_CAP, 2 * CLAIM_CAP, FAST)
    assert size.size == 2 * CLAIM_CAP


def test_claim_size_grows_from_a_prefetched_claim_that_asked_for_less() -> None:
    size = ClaimSize(10)
    size.observe(10, 10, FAST)  # now 20; a claim prefetched meanwhile had asked for 10
    size.observe(10, 10, FAST)
    assert size.size == 40


def test_claim_size_stays_at_batch_size_with_a_short_lease() -> None:
    """A batch's later events wait behind a hanging handler: with a 0.5 s lease they would expire."""
    size = ClaimSize(1, lease_seconds=0.5)
    for _ in range(5):
        size.observe(size.size, size.size, 0.001)
    assert size.size == 1
    longer = ClaimSize(1, lease_seconds=30.0)
    for _ in range(5):
        longer.observe(longer.size, longer.size, 0.001)
    assert longer.size == 32
