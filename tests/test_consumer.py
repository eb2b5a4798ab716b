"""Consumer behaviour that no backend decides: how stop() ends a consumer waiting for work."""

from __future__ import annotations

import asyncio
from typing import Any

from eventkit.consumer import Consumer, Subscription, adapt_handler
from eventkit.stores.base import Claim
from eventkit.stores.memory import MemoryEventStore


class LosesOneCancellation(MemoryEventStore):
    """A memory store whose claims block like Redis's (XREAD BLOCK) and lose the first
    cancellation that reaches them, as Python 3.11's asyncio.wait_for can inside redis-py when
    the cancellation lands as the command is sent."""

    blocking_claims = True

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0
        self.waiting = asyncio.Event()

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        claims = await super().claim(group, consumer, limit=limit, lease_ms=lease_ms)
        if claims or block_ms <= 0:
            return claims
        self.waiting.set()
        loop = asyncio.get_running_loop()
        until = loop.time() + block_ms / 1000
        while (left := until - loop.time()) > 0:
            try:
                await asyncio.sleep(left)
            except asyncio.CancelledError:
                if self.lost:
                    raise
                self.lost += 1  # swallowed: the wait goes on
        return []


async def test_stop_ends_a_blocking_wait_even_when_a_cancellation_is_lost() -> None:
    store = LosesOneCancellation()
    await store.ensure_group("g", ["*"])

    async def handler(_: Any) -> None:
        return None

    subscription = Subscription(("*",), "g", "w", adapt_handler(handler))
    consumer = Consumer(store, subscription, poll_interval=5.0)  # each wait blocks for 5 s
    consumer.start()
    await asyncio.wait_for(store.waiting.wait(), 5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await consumer.stop(timeout=30)
    assert store.lost == 1  # the first cancellation was lost ...
    assert loop.time() - started < 1.0  # ... and stop cancelled again instead of waiting 5 s
    assert not consumer.running


class CancelsItsCaller(MemoryEventStore):
    """A heartbeat that finishes in the very step its caller is cancelled: Python 3.11's
    wait_for then returns the result and the CancelledError is lost (seen with Redis Cluster at
    asyncio.run's shutdown)."""

    victim: asyncio.Task[None] | None = None

    async def register_consumer(self, group: str, consumer: str, *, ttl_ms: int = 60_000) -> None:
        await super().register_consumer(group, consumer, ttl_ms=ttl_ms)
        if self.victim is not None:
            self.victim.cancel()
            self.victim = None


async def test_a_cancel_lost_in_a_store_call_still_ends_the_consumer_without_a_restart() -> None:
    store = CancelsItsCaller()
    await store.open()
    await store.ensure_group("g", ["*"])
    subscription = Subscription(("*",), "g", "w", adapt_handler(lambda event: None),
                                lease_seconds=0.2)  # fmt: skip
    consumer = Consumer(store, subscription, poll_interval=0.05)
    consumer.start()
    supervisor = consumer._supervisor
    await asyncio.sleep(0.05)
    store.victim = supervisor  # cancelled by the next heartbeat, in the step it returns
    done, _ = await asyncio.wait({supervisor}, timeout=5)
    assert supervisor in done and supervisor.cancelled()
    assert consumer.restarts == 0 and not consumer.running
