"""eventkit in the project's own venv, measured as bench_core.py measures it, for bench_peers.py.

    .venv/bin/python benchmarks/peers/bench_eventkit.py --backend sqlite|redis --n 20000 ...

Publish one by one and publish_many (batches of 1,000) on fresh stores; consume+ack of n stored
events by a fresh group at batch_size=500, then by another at the default batch_size=10; then
publish→handler latency on the same bus (bench_core.bus_latency).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from _common import WARM, parse_args, report  # noqa: E402

from benchmarks.bench_core import (  # noqa: E402
    CONSUME_BATCH,
    DEFAULT_BATCH,
    bus_consume,
    bus_latency,
    bus_publish_many,
    bus_publish_single,
    make_events,
)
from eventkit import EventBus, EventStoreConfig, __version__  # noqa: E402


async def main() -> None:
    args = parse_args()
    backend = args.backend
    counter = iter(range(1_000))

    def config() -> EventStoreConfig:
        if backend == "sqlite":
            path = Path(args.workdir) / f"ek-{args.tag}-{next(counter)}.db"
            return EventStoreConfig(
                backend="sqlite", path=path, trim_interval_hours=None, max_events=None
            )
        return EventStoreConfig(
            backend="redis", redis_url=args.redis_url, trim_interval_hours=None, max_events=None,
            namespace=f"ek-{args.tag}-{os.getpid()}-{next(counter)}",
        )  # fmt: skip

    n = args.n
    async with EventBus(config()) as bus:
        await bus_publish_many(bus, make_events(WARM, "warm"))
        single = await bus_publish_single(bus, make_events(n, "s"))
    async with EventBus(config()) as bus:
        await bus_publish_many(bus, make_events(WARM, "warm"))
        batch = await bus_publish_many(bus, make_events(n, "b"))
    async with EventBus(config()) as bus:
        await bus_publish_many(bus, make_events(n, "c"))
        consume = await bus_consume(bus, f"g{CONSUME_BATCH}", 1, n, CONSUME_BATCH)
        consume_default = await bus_consume(bus, f"g{DEFAULT_BATCH}", 1, n, DEFAULT_BATCH)
        p50, p99 = await bus_latency(bus, args.latency)
    figures = {
        "publish_single": single,
        "publish_batch": batch,
        "consume": consume,
        "consume_default": consume_default,
        "p50": p50,
        "p99": p99,
    }
    report("eventkit", __version__, backend, figures)


if __name__ == "__main__":
    asyncio.run(main())
