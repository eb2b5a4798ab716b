"""arq (Redis) for bench_peers.py, run in its own venv (arq needs redis-py < 6).

Publish: `pool.enqueue_job("handle", event)` one by one (arq has no batch enqueue). Consume+ack:
a Worker in-process with poll_delay=0.05 s (its default is 0.5 s) and its other defaults
(max_jobs 10, results kept 1 h), on the queue publish one by one filled, until the queue is empty.
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
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker

POLL_DELAY = 0.05
state: dict[str, Any] = {"handled": 0, "expected": -1, "done": None, "latency": None}


async def handle(ctx: dict[str, Any], event: dict[str, Any]) -> None:
    state["handled"] += 1
    if state["latency"] is not None:
        state["latency"].seen(event["event_id"])
    if state["handled"] == state["expected"]:
        state["done"].set()


async def drained(pool: ArqRedis, queue: str) -> None:
    """Until the queue is empty: the handler counts before arq finishes the job."""
    while await pool.zcard(queue):
        await asyncio.sleep(0.001)


def run_worker(pool: ArqRedis, queue: str) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(
        functions=[handle], redis_pool=pool, queue_name=queue, poll_delay=POLL_DELAY,
        handle_signals=False,
    )  # fmt: skip
    return worker, asyncio.create_task(worker.main())


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()


async def main() -> None:
    args = parse_args()
    settings = RedisSettings.from_dsn(args.redis_url)
    queue = f"arq:{args.tag}:single"
    pool = await create_pool(settings, default_queue_name=queue)
    for event in make_events(WARM, "warm"):
        await pool.enqueue_job("handle", event)
    events = make_events(args.n, "s")
    start = start_clock()
    for event in events:
        await pool.enqueue_job("handle", event)
    single = rate(len(events), time.perf_counter() - start)

    state.update(handled=0, expected=len(events) + WARM, done=asyncio.Event())
    start = start_clock()
    worker, task = run_worker(pool, queue)
    await asyncio.wait_for(state["done"].wait(), 600)
    await drained(pool, queue)
    consume = rate(state["expected"], time.perf_counter() - start)
    await stop(worker, task)
    await pool.aclose()

    queue = f"arq:{args.tag}:latency"
    pool = await create_pool(settings, default_queue_name=queue)
    latency = Latency()
    events = make_events(args.latency + LATENCY_WARMUP, "lat")
    state.update(handled=0, expected=len(events), done=asyncio.Event(), latency=latency)
    worker, task = run_worker(pool, queue)
    await asyncio.sleep(0.2)
    for event in events:
        latency.mark(event)
        await pool.enqueue_job("handle", event)
        await asyncio.sleep(LATENCY_GAP)
    await asyncio.wait_for(state["done"].wait(), 60)
    await drained(pool, queue)
    await stop(worker, task)
    await pool.aclose()
    p50, p99 = quantiles(latency.latencies)
    report("arq", dist_version("arq"), "redis", {
        "publish_single": single, "publish_batch": None, "consume": consume, "p50": p50, "p99": p99,
    }, redis_py=dist_version("redis"), poll_delay=POLL_DELAY)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
