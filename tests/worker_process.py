"""A worker in its own OS process, for the crash and multi-process tests.

usage: python -m tests.worker_process CONFIG_JSON GROUP NAME MODE   (MODE: work | hang)
Prints one line per handled (work) or started (hang) event: "<word> <event_id> <attempt>".
"""

from __future__ import annotations

import asyncio
import json
import sys

from eventkit import BaseEvent, Delivery, EventBus, EventStoreConfig


async def main(config_json: str, group: str, name: str, mode: str) -> None:
    config = EventStoreConfig(**json.loads(config_json))
    async with EventBus(config) as bus:

        async def handler(event: BaseEvent, delivery: Delivery) -> None:
            if mode == "hang":
                print("started", event.event_id, delivery.attempt, flush=True)
                await asyncio.sleep(3600)
            await asyncio.sleep(0.005)  # some work, so that both processes get a share
            print("handled", event.event_id, delivery.attempt, flush=True)

        await bus.subscribe_persistent(["*"], group, name, handler, batch_size=5, lease_seconds=1.0)
        await asyncio.sleep(0.5)  # let the other worker join before anyone may call it idle
        while not await bus.wait_idle(group, timeout=30):
            pass
        print("idle", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
