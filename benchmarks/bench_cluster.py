"""Scale-out benchmark: consume+ack throughput of 1, 2 and 3 namespaces on a 3-master Redis Cluster
(one namespace per master) beside one namespace on a single redis-server, in one run.

    .venv/bin/python benchmarks/bench_cluster.py [--quick] [--events N] [--repeats R]

A namespace is the unit of sharding: all its keys share one hash tag, so one namespace is served
by one master, and independent namespaces by different ones. Each namespace is consumed by its
own process (one consumer, batch_size 500), as independent services would be; the events are
published before the clock starts. The total rate is all events over the wall time from the
common start to the last process done; the median of the repeats is kept. Every server runs with
the same durability (AOF, appendfsync everysec). Prints a markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_core import CONSUME_BATCH, EVENT_TYPE, make_events  # noqa: E402
from eventkit import EventBus, EventStoreConfig  # noqa: E402

GROUP = "bench"
PUBLISH_BATCH = 1_000


def _config(url: str, namespace: str) -> EventStoreConfig:
    return EventStoreConfig(
        backend="redis", redis_url=url, namespace=namespace, trim_interval_hours=None
    )


async def publish(url: str, namespace: str, count: int) -> None:
    async with EventBus(_config(url, namespace)) as bus:
        events = make_events(count, tag=namespace[-4:])
        for start in range(0, count, PUBLISH_BATCH):
            await bus.publish_many(events[start : start + PUBLISH_BATCH])


async def consume(url: str, namespace: str, count: int, start_at: float) -> dict[str, float]:
    """The worker: open, wait for the common start, consume `count` events, report times."""
    handled = 0

    async def handler(_: Any) -> None:
        nonlocal handled
        handled += 1

    async with EventBus(_config(url, namespace)) as bus:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        await bus.subscribe_persistent([EVENT_TYPE], GROUP, "c0", handler, batch_size=CONSUME_BATCH)
        if not await bus.wait_idle(GROUP, timeout=600):
            raise RuntimeError(f"{namespace} did not go idle")
        ended = time.time()
    if handled != count:
        raise RuntimeError(f"{namespace}: handled {handled}, expected {count}")
    return {"began": began, "ended": ended}


def run_workers(targets: list[tuple[str, str]], count: int) -> float:
    """Events/s of all the namespaces together, each consumed by its own process."""
    start_at = time.time() + 2.0  # every process has opened its bus by then
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps([url, ns, count, start_at])],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for url, ns in targets
    ]
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed with {proc.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["ended"] for r in reports) - min(r["began"] for r in reports)
    return count * len(targets) / wall


def namespaces_per_master(cluster: Any) -> list[str]:
    """One fresh namespace served by each master, in node order."""
    from redis.crc import key_slot

    from eventkit.stores.redis_keys import Keys

    found: dict[int, str] = {}
    run = uuid.uuid4().hex[:6]
    i = 0
    while len(found) < len(cluster.nodes):
        namespace = f"bench-{run}-{i}"
        node = cluster.node_of_slot(key_slot(Keys(namespace).events.encode()))
        found.setdefault(node.port, namespace)
        i += 1
    return [found[node.port] for node in cluster.nodes]


def measure(url: str, namespaces: list[str], count: int, repeats: int) -> float:
    rates = []
    for r in range(repeats):
        fresh = [f"{ns}-r{r}" for ns in namespaces]
        for ns in fresh:
            asyncio.run(publish(url, ns, count))
        rates.append(run_workers([(url, ns) for ns in fresh], count))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 events a namespace, 1 repeat")
    parser.add_argument("--events", type=int, help="events per namespace (default 20,000)")
    parser.add_argument("--repeats", type=int, help="runs per row, median kept (default 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        url, namespace, count, start_at = json.loads(args.worker)
        print(json.dumps(asyncio.run(consume(url, namespace, count, start_at))))
        return
    count = args.events or (5_000 if args.quick else 20_000)
    repeats = args.repeats or (1 if args.quick else 3)

    from tests.redis_cluster import RedisClusterServers
    from tests.redis_server import RedisServer

    rows: list[tuple[str, int, float]] = []
    with RedisServer(appendonly=True) as server:
        # namespaces are assigned per master on the cluster; the single node gets one namespace
        rows.append(("single node", 1, measure(server.url, [f"bench-{uuid.uuid4().hex[:6]}"],
                                                 count, repeats)))  # fmt: skip
    with RedisClusterServers() as cluster:
        spread = namespaces_per_master(cluster)
        for n in (1, 2, 3):
            rows.append((f"3-master cluster, {n} on {n} master{'s' * (n > 1)}", n,
                         measure(cluster.url, spread[:n], count, repeats)))  # fmt: skip

    base = rows[0][2]
    print(f"\nconsume+ack, 1 consumer (batch_size {CONSUME_BATCH}) per namespace, one process "
          f"each; {count:,} events a namespace, median of {repeats}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Redis {redis_version()}\n")  # fmt: skip
    print("| setup | namespaces | events/s, all | events/s per namespace | vs single node |")
    print("|---|---:|---:|---:|---:|")
    for name, n, rate in rows:
        print(f"| {name} | {n} | {rate:,.0f} | {rate / n:,.0f} | {rate / base:.2f}× |")


def redis_version() -> str:
    done = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return next((w[2:] for w in done.stdout.split() if w.startswith("v=")), "?")


if __name__ == "__main__":
    main()
