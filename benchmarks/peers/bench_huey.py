"""huey (SqliteHuey) for bench_peers.py, run in its own venv.

WAL (huey's default for SqliteHuey) and synchronous=NORMAL (set here on each of its connections,
like eventkit; huey's own choice is FULL or OFF). Publish: calling a `@huey.task()` one by one
(huey has no batch enqueue). Consume+ack: huey's consumer in-process, one worker thread at its
defaults (polls every 0.1 s when the queue is empty, backing off to 10 s); a task leaves the
queue when dequeued. Latency: the same consumer while the main thread enqueues every 5 ms.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
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
    wait_for,
)
from huey import SqliteHuey
from huey.storage import SqliteStorage


class NormalSyncStorage(SqliteStorage):
    def _create_connection(self) -> Any:
        conn = super()._create_connection()
        conn.execute("pragma synchronous=NORMAL")
        return conn


state: dict[str, Any] = {"handled": 0, "latency": None}
lock = threading.Lock()


def make_huey(path: Path) -> tuple[SqliteHuey, Any]:
    huey = SqliteHuey("bench", filename=str(path), storage_class=NormalSyncStorage)

    @huey.task()
    def handle(event: dict[str, Any]) -> None:
        with lock:
            state["handled"] += 1
        if state["latency"] is not None:
            state["latency"].seen(event["event_id"])

    return huey, handle


def run_consumer(huey: SqliteHuey) -> Any:
    consumer = huey.create_consumer(workers=1, periodic=False, check_worker_health=False)
    consumer.start()
    return consumer


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir)
    huey, handle = make_huey(workdir / f"huey-{args.tag}-single.db")
    for event in make_events(WARM, "warm"):
        handle(event)
    events = make_events(args.n, "s")
    start = start_clock()
    for event in events:
        handle(event)
    single = rate(len(events), time.perf_counter() - start)

    expected = len(events) + WARM
    state.update(handled=0)
    start = start_clock()
    consumer = run_consumer(huey)
    wait_for(lambda: state["handled"] >= expected, 600, "huey consume")
    consume = rate(expected, time.perf_counter() - start)
    consumer.stop(graceful=True)

    huey, handle = make_huey(workdir / f"huey-{args.tag}-latency.db")
    latency = Latency()
    events = make_events(args.latency + LATENCY_WARMUP, "lat")
    state.update(handled=0, latency=latency)
    consumer = run_consumer(huey)
    for event in events:
        latency.mark(event)
        handle(event)
        time.sleep(LATENCY_GAP)
    wait_for(lambda: state["handled"] >= len(events), 60, "huey latency")
    consumer.stop(graceful=True)
    p50, p99 = quantiles(latency.latencies)
    report("huey", dist_version("huey"), "sqlite", {
        "publish_single": single, "publish_batch": None, "consume": consume, "p50": p50, "p99": p99,
    })  # fmt: skip


if __name__ == "__main__":
    main()
