"""persist-queue (SQLiteAckQueue) for bench_peers.py, run in its own venv.

WAL (persist-queue's own) and synchronous=NORMAL (set here, like eventkit), JSON serializer,
auto_commit. Publish: `put` one by one (no batch put). Consume+ack: `get(raw=True)` then
`ack(id=...)` per item in one thread. Latency: a consumer thread blocked in `get()` (woken by
persist-queue's in-process put event) while the main thread puts one event every 5 ms.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import persistqueue
import persistqueue.serializers.json
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
    wait_for,
)


def open_queue(path: Path) -> Any:
    queue = persistqueue.SQLiteAckQueue(
        str(path), multithreading=True, auto_commit=True,
        serializer=persistqueue.serializers.json,
    )  # fmt: skip
    for conn in {id(queue._getter): queue._getter, id(queue._putter): queue._putter}.values():
        conn.execute("PRAGMA synchronous=NORMAL")
    return queue


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir)
    queue = open_queue(workdir / f"pq-{args.tag}-single")
    for event in make_events(WARM, "warm"):
        queue.put(event)
    events = make_events(args.n, "s")
    start = start_clock()
    for event in events:
        queue.put(event)
    single = rate(len(events), time.perf_counter() - start)

    expected = len(events) + WARM
    start = start_clock()
    for _ in range(expected):
        item = queue.get(raw=True)
        queue.ack(id=item["pqid"])
    consume = rate(expected, time.perf_counter() - start)
    queue.close()

    queue = open_queue(workdir / f"pq-{args.tag}-latency")
    latency = Latency()
    events = make_events(args.latency + LATENCY_WARMUP, "lat")

    def consumer() -> None:
        for _ in range(len(events)):
            item = queue.get(raw=True)
            latency.seen(item["data"]["event_id"])
            queue.ack(id=item["pqid"])

    thread = threading.Thread(target=consumer, daemon=True)
    thread.start()
    time.sleep(0.2)
    for event in events:
        latency.mark(event)
        queue.put(event)
        time.sleep(LATENCY_GAP)
    wait_for(lambda: not thread.is_alive(), 60, "persist-queue consumer")
    queue.close()
    p50, p99 = quantiles(latency.latencies)
    report("persist-queue", dist_version("persist-queue"), "sqlite", {
        "publish_single": single, "publish_batch": None, "consume": consume, "p50": p50, "p99": p99,
    })  # fmt: skip


if __name__ == "__main__":
    main()
