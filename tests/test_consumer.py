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
