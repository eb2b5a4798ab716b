"""faststream (Redis Streams) for bench_peers.py, run in its own venv.

Publish: `broker.publish(event, stream=...)` one by one, and in batches of 1,000 through a redis-py
pipeline (`publish(..., pipeline=pipe)`, faststream's way to batch on a stream: its publish_batch
is for lists). Consume+ack: a subscriber on a consumer group created at the start of the stream,
max_records=500, acked by faststream after each handler call (its default ack policy). Logging is
off (`logger=None`): by default faststream logs two lines per message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _common import (
    CONSUME_BATCH,
    LATENCY_GAP,
    LATENCY_WARMUP,
    PUBLISH_BATCH,
    WARM,
    Latency,
    dist_version,
    make_events,
    parse_args,
    quantiles,
    rate,
    report,
    start_clock,
)
from faststream.redis import RedisBroker, StreamSub


async def publish_single(broker: RedisBroker, stream: str, events: list[dict[str, Any]]) -> float:
    start = start_clock()
    for event in events:
        await broker.publish(event, stream=stream)
    return rate(len(events), time.perf_counter() - start)


async def publish_batch(broker: RedisBroker, stream: str, events: list[dict[str, Any]]) -> float:
    redis = await broker.connect()
    start = start_clock()
    for i in range(0, len(events), PUBLISH_BATCH):
        async with redis.pipeline() as pipe:
            for event in events[i : i + PUBLISH_BATCH]:
                await broker.publish(event, stream=stream, pipeline=pipe)
            await pipe.execute()
    return rate(len(events), time.perf_counter() - start)


async def main() -> None:
    args = parse_args()
    prefix = f"fs-{args.tag}"
    broker = RedisBroker(args.redis_url, logger=None)  # no log line per message (eventkit has none)
    await broker.start()
    redis = await broker.connect()

    single_stream = f"{prefix}-single"
    await publish_single(broker, single_stream, make_events(WARM, "warm"))
    single = await publish_single(broker, single_stream, make_events(args.n, "s"))
    batch_stream = f"{prefix}-batch"
    await publish_batch(broker, batch_stream, make_events(WARM, "warm"))
    batch = await publish_batch(broker, batch_stream, make_events(args.n, "b"))

    # consume+ack what publish one by one stored, with a group created at its start
    stored = await redis.xlen(single_stream)
    await redis.xgroup_create(single_stream, "g", id="0")
    handled = 0
    done = asyncio.Event()

    async def count(body: dict[str, Any]) -> None:
        nonlocal handled
        handled += 1
        if handled == stored:
            done.set()

    sub = broker.subscriber(
        stream=StreamSub(single_stream, group="g", consumer="c1", max_records=CONSUME_BATCH)
    )
    sub(count)
    start = start_clock()
    await sub.start()
    await asyncio.wait_for(done.wait(), 600)
    while (await redis.xpending(single_stream, "g"))["pending"]:  # the last XACK
        await asyncio.sleep(0.001)
    consume = rate(stored, time.perf_counter() - start)
    await sub.stop()

    # publish -> handler latency, one event every LATENCY_GAP
    latency = Latency()
    lat_stream = f"{prefix}-latency"
    lat_sub = broker.subscriber(stream=StreamSub(lat_stream, group="lat", consumer="c1"))

    async def seen(body: dict[str, Any]) -> None:
        latency.seen(body["event_id"])

    lat_sub(seen)
    await lat_sub.start()
    await asyncio.sleep(0.2)
    events = make_events(args.latency + LATENCY_WARMUP, "lat")
    for event in events:
        latency.mark(event)
        await broker.publish(event, stream=lat_stream)
        await asyncio.sleep(LATENCY_GAP)
    deadline = time.monotonic() + 30
    while len(latency.latencies) < len(events) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await lat_sub.stop()
    await broker.stop()
    p50, p99 = quantiles(latency.latencies)
    report("faststream", dist_version("faststream"), "redis", {
        "publish_single": single, "publish_batch": batch, "consume": consume,
        "p50": p50, "p99": p99,
    })  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
