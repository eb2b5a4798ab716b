"""The raw redis-py baselines of bench_core: pipelined XADD, and XREADGROUP + XACK in batches.

Entries carry the envelope fields and the payload as JSON text, as a Streams-based store would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis


async def drop_namespace(url: str, namespace: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class RawRedis:
    def __init__(self, url: str, prefix: str) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.prefix = prefix
        self._streams = itertools.count()

    async def close(self) -> None:
        await self.client.aclose()

    async def fresh_stream(self) -> str:
        stream = f"{self.prefix}:{next(self._streams)}"
        await self.client.delete(stream)
        return stream

    async def drop(self, stream: str) -> None:
        await self.client.delete(stream)

    async def xadd_many(self, stream: str, rows: Sequence[tuple[Any, ...]], batch: int) -> None:
        """One pipeline (one round trip) per batch, json.dumps included."""
        for i in range(0, len(rows), batch):
            pipe = self.client.pipeline(transaction=False)
            for event_id, event_type, version, source, ts, payload in rows[i : i + batch]:
                pipe.xadd(stream, {
                    "event_id": event_id, "event_type": event_type, "version": version,
                    "source": source, "timestamp_ms": ts, "data": json.dumps(payload),
                })  # fmt: skip
            await pipe.execute()

    async def consume(
        self, stream: str, group: str, consumers: int, batch: int, expected: int
    ) -> float:
        """Events/s of `consumers` loops in one group: XREADGROUP a batch, json.loads each payload,
        call a no-op handler, XACK the batch."""
        client = self.client
        await client.xgroup_create(stream, group, id="0")
        handled = 0

        async def handler(_: Any) -> None:
            return None

        async def loop(name: str) -> None:
            nonlocal handled
            while True:
                reply = await client.xreadgroup(group, name, {stream: ">"}, count=batch)
                entries = reply[0][1] if reply else []
                if not entries:
                    return
                for _, fields in entries:
                    await handler(json.loads(fields[b"data"]))
                handled += len(entries)
                await client.xack(stream, group, *[entry_id for entry_id, _ in entries])

        start = time.perf_counter()
        await asyncio.gather(*(loop(f"c{n}") for n in range(consumers)))
        seconds = time.perf_counter() - start
        if handled != expected:
            raise RuntimeError(f"raw consume handled {handled}, expected {expected}")
        return expected / seconds
