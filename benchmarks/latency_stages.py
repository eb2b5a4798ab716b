"""Where publish->handler latency goes: the time of each stage after publish(), at low load.

    .venv/bin/python benchmarks/latency_stages.py [--backends sqlite,redis] [--count 300]

One persistent subscription, one event published every 5 ms (as bench_core's latency row). Each
stage is timed from just before publish(): the append returned, the claim that took the event
returned, the handler ran. Medians over the events after the first 20. The store's append and
claim are wrapped on the class for the run (timing only; nothing else changes). Redis needs
REDIS_URL. Prints only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_core import EVENT_TYPE, LATENCY_GAP, make_events  # noqa: E402
from eventkit import EventBus, EventStoreConfig  # noqa: E402

WARMUP = 20
STAGES = ("append returned", "claim returned", "handler ran")


async def stages(backend: str, count: int) -> dict[str, float]:
    folder = tempfile.mkdtemp()
    config = EventStoreConfig(
        backend=backend, path=Path(folder) / "stages.db", redis_url=os.environ.get("REDIS_URL"),
        namespace=f"stages-{os.getpid()}", trim_interval_hours=None, max_events=None,
    )  # fmt: skip
    marks: dict[str, float] = {}
    async with EventBus(config) as bus:
        store_class: Any = type(bus._store)  # noqa: SLF001 (timing the store's own calls)
        append, claim = store_class.append, store_class.claim

        async def timed_append(self: Any, *args: Any, **kwargs: Any) -> Any:
            positions = await append(self, *args, **kwargs)
            marks.setdefault(STAGES[0], time.perf_counter())
            return positions

        async def timed_claim(self: Any, *args: Any, **kwargs: Any) -> Any:
            claims = await claim(self, *args, **kwargs)
            if claims:
                marks.setdefault(STAGES[1], time.perf_counter())
            return claims

        store_class.append, store_class.claim = timed_append, timed_claim
        try:
            rows: list[dict[str, float]] = []

            async def handler(_: Any) -> None:
                marks.setdefault(STAGES[2], time.perf_counter())

            await bus.subscribe_persistent([EVENT_TYPE], "stages", "s1", handler, start="latest")
            await asyncio.sleep(0.2)
            for event in make_events(count + WARMUP, "stage"):
                marks.clear()
                start = time.perf_counter()
                await bus.publish(event)
                await asyncio.sleep(LATENCY_GAP)
                if len(marks) == len(STAGES):
                    rows.append({k: (v - start) * 1e6 for k, v in marks.items()})
        finally:
            store_class.append, store_class.claim = append, claim
    rows = rows[WARMUP:]
    return {stage: statistics.median(row[stage] for row in rows) for stage in STAGES}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    print("| backend | " + " | ".join(f"{s} (µs)" for s in STAGES) + " |")
    print("|---|" + "---:|" * len(STAGES))
    for backend in args.backends.split(","):
        medians = await stages(backend, args.count)
        print(f"| {backend} | " + " | ".join(f"{medians[s]:.0f}" for s in STAGES) + " |")


if __name__ == "__main__":
    asyncio.run(main())
