"""saq (Redis) for bench_peers.py, run in its own venv.

Publish: `queue.enqueue("handle", event=...)` one by one (saq has no batch enqueue: `map` waits
for results). Consume+ack: a Worker in-process at its defaults (concurrency 10) on the queue
publish one by one filled, until the queue has nothing queued or active.
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
from saq import Queue, Worker

state: dict[str, Any] = {"handled": 0, "expected": -1, "done": None, "latency": None}


async def handle(ctx: dict[str, Any], *, event: dict[str, Any]) -> None:
    state["handled"] += 1
    if state["latency"] is not None:
        state["latency"].seen(event["event_id"])
    if state["handled"] == state["expected"]:
        state["done"].set()


async def drained(queue: Queue) -> None:
    """Until no job is queued or active: the handler counts before saq finishes the job."""
    while await queue.count("queued") or await queue.count("active"):
        await asyncio.sleep(0.001)


async def run_worker(queue: Queue) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(queue, functions=[handle])
    return worker, asyncio.create_task(worker.start())


async def main() -> None:
    args = parse_args()
    queue = Queue.from_url(args.redis_url, name=f"saq-{args.tag}-single")
    await queue.connect()
    for event in make_events(WARM, "warm"):
        await queue.enqueue("handle", event=event)
    events = make_events(args.n, "s")
    start = start_clock()
    for event in events:
        await queue.enqueue("handle", event=event)
    single = rate(len(events), time.perf_counter() - start)

    state.update(handled=0, expected=len(events) + WARM, done=asyncio.Event())
    start = start_clock()
    worker, task = await run_worker(queue)
    await asyncio.wait_for(state["done"].wait(), 600)
    await drained(queue)
    consume = rate(state["expected"], time.perf_counter() - start)
    await worker.stop()
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()

    queue = Queue.from_url(args.redis_url, name=f"saq-{args.tag}-latency")
    await queue.connect()
    latency = Latency()
    events = make_events(args.latency + LATENCY_WARMUP, "lat")
    state.update(handled=0, expected=len(events), done=asyncio.Event(), latency=latency)
    worker, task = await run_worker(queue)
    await asyncio.sleep(0.2)
    for event in events:
        latency.mark(event)
        await queue.enqueue("handle", event=event)
        await asyncio.sleep(LATENCY_GAP)
    await asyncio.wait_for(state["done"].wait(), 60)
    await worker.stop()
    await asyncio.gather(task, return_exceptions=True)
    await queue.disconnect()
    p50, p99 = quantiles(latency.latencies)
    report("saq", dist_version("saq"), "redis", {
        "publish_single": single, "publish_batch": None, "consume": consume, "p50": p50, "p99": p99,
    }, redis_py=dist_version("redis"))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
