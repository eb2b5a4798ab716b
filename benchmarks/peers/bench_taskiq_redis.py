"""taskiq-redis (RedisStreamBroker) for bench_peers.py, run in its own venv.

Publish: `task.kiq(event)` one by one (taskiq has no batch kick). Consume+ack: taskiq's receiver
run in-process (`taskiq.api.run_receiver_task`, its defaults: up to 100 tasks at once, XREADGROUP
of 100, XACK per message), on the stream publish one by one filled; the group is declared at the
client's startup, before the publish.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _common import (
    LATENCY_GAP,
    LATENCY_WARMUP,
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
from redis.asyncio import Redis
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

state: dict[str, Any] = {"handled": 0, "expected": -1, "done": None, "latency": None}


async def handle(event: dict[str, Any]) -> None:
    state["handled"] += 1
    if state["latency"] is not None:
        state["latency"].seen(event["event_id"])
    if state["handled"] == state["expected"]:
        state["done"].set()


def pair(url: str, queue: str) -> tuple[RedisStreamBroker, RedisStreamBroker, Any]:
    """A client broker and a worker broker on one stream, with the task registered on both."""
    client = RedisStreamBroker(url, queue_name=queue)
    worker = RedisStreamBroker(url, queue_name=queue)
    task = client.task(task_name="handle")(handle)
    worker.task(task_name="handle")(handle)
    return client, worker, task


async def run_worker(worker: RedisStreamBroker) -> asyncio.Task[None]:
    await worker.startup()
    return asyncio.create_task(run_receiver_task(worker))


async def acked(redis: Redis, stream: str) -> None:
    """Until the group has nothing pending: the handler counts before taskiq's XACK."""
    while (await redis.xpending(stream, "taskiq"))["pending"]:
        await asyncio.sleep(0.001)


async def main() -> None:
    args = parse_args()
    prefix = f"tq-{args.tag}"
    redis = Redis.from_url(args.redis_url)

    client, worker, task = pair(args.redis_url, f"{prefix}-single")
    await client.startup()
    for event in make_events(WARM, "warm"):
        await task.kiq(event)
    events = make_events(args.n, "s")
    start = start_clock()
    for event in events:
        await task.kiq(event)
    single = rate(len(events), time.perf_counter() - start)

    state.update(handled=0, expected=len(events) + WARM, done=asyncio.Event())
    start = start_clock()
    receiver = await run_worker(worker)
    await asyncio.wait_for(state["done"].wait(), 600)
    await acked(redis, f"{prefix}-single")
    consume = rate(state["expected"], time.perf_counter() - start)
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    await worker.shutdown()
    await client.shutdown()

    client, worker, task = pair(args.redis_url, f"{prefix}-latency")
    await client.startup()
    latency = Latency()
    events = make_events(args.latency + LATENCY_WARMUP, "lat")
    state.update(handled=0, expected=len(events), done=asyncio.Event(), latency=latency)
    receiver = await run_worker(worker)
    await asyncio.sleep(0.2)
    for event in events:
        latency.mark(event)
        await task.kiq(event)
        await asyncio.sleep(LATENCY_GAP)
    await asyncio.wait_for(state["done"].wait(), 60)
    await acked(redis, f"{prefix}-latency")
    receiver.cancel()
    await asyncio.gather(receiver, return_exceptions=True)
    await worker.shutdown()
    await client.shutdown()
    await redis.aclose()
    p50, p99 = quantiles(latency.latencies)
    report("taskiq-redis", dist_version("taskiq-redis"), "redis", {
        "publish_single": single, "publish_batch": None, "consume": consume, "p50": p50, "p99": p99,
    }, taskiq=dist_version("taskiq"))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
