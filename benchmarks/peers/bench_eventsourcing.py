"""eventsourcing (SQLite) for bench_peers.py, run in its own venv.

WAL (eventsourcing's own) and synchronous=NORMAL (set here on each pooled connection, like
eventkit). An event is a `Published` event of one long-lived aggregate. Publish: one
`app.save(aggregate)` per event, and a save per 1,000 events for the batch. Consume+ack: a
ProcessApplication following the store's notification log, `pull_and_process` over what publish one
by one stored; each processed event records its tracking position (eventsourcing's ack) in the
follower's own database. Latency: the two applications in a SingleThreadedRunner, which runs the
follower's policy when the leader saves.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from _common import (
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
from eventsourcing import sqlite as es_sqlite
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.system import ProcessApplication, SingleThreadedRunner, System

_create_connection = es_sqlite.SQLiteConnectionPool._create_connection


def _normal_sync(self: Any) -> Any:
    conn = _create_connection(self)
    conn._sqlite_conn.execute("PRAGMA synchronous=NORMAL")
    return conn


es_sqlite.SQLiteConnectionPool._create_connection = _normal_sync  # type: ignore[method-assign]


class Stream(Aggregate):
    @event("Published")
    def publish(self, event: dict[str, Any]) -> None:
        pass


class Store(Application):
    pass


state: dict[str, Any] = {"handled": 0, "latency": None}


class Counter(ProcessApplication):
    def policy(self, domain_event: Any, processing_event: Any) -> None:
        if isinstance(domain_event, Stream.Published):
            state["handled"] += 1
            if state["latency"] is not None:
                state["latency"].seen(domain_event.event["event_id"])


def env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


def publish_single(app: Application, stream: Stream, events: list[dict[str, Any]]) -> float:
    start = start_clock()
    for item in events:
        stream.publish(item)
        app.save(stream)
    return rate(len(events), time.perf_counter() - start)


def publish_batch(app: Application, stream: Stream, events: list[dict[str, Any]]) -> float:
    start = start_clock()
    for i in range(0, len(events), PUBLISH_BATCH):
        for item in events[i : i + PUBLISH_BATCH]:
            stream.publish(item)
        app.save(stream)
    return rate(len(events), time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    workdir = Path(args.workdir)
    store = Store(env=env(workdir / f"es-{args.tag}-single.db"))
    stream = Stream()
    store.save(stream)
    publish_single(store, stream, make_events(WARM, "warm"))
    single = publish_single(store, stream, make_events(args.n, "s"))

    batch_store = Store(env=env(workdir / f"es-{args.tag}-batch.db"))
    batch_stream = Stream()
    batch_store.save(batch_stream)
    publish_batch(batch_store, batch_stream, make_events(WARM, "warm"))
    batch = publish_batch(batch_store, batch_stream, make_events(args.n, "b"))
    batch_store.close()

    counter = Counter(env=env(workdir / f"es-{args.tag}-counter.db"))
    counter.follow(store.name, store.notification_log)
    expected = args.n + WARM
    state.update(handled=0)
    start = start_clock()
    counter.pull_and_process(store.name)
    consume = rate(expected, time.perf_counter() - start)
    if state["handled"] != expected:
        raise RuntimeError(f"handled {state['handled']}, expected {expected}")
    counter.close()
    store.close()

    runner = SingleThreadedRunner(
        System(pipes=[[Store, Counter]]),
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "STORE_SQLITE_DBNAME": str(workdir / f"es-{args.tag}-lat-store.db"),
            "COUNTER_SQLITE_DBNAME": str(workdir / f"es-{args.tag}-lat-counter.db"),
        },
    )
    runner.start()
    store = runner.get(Store)
    stream = Stream()
    store.save(stream)
    latency = Latency()
    state.update(handled=0, latency=latency)
    for item in make_events(args.latency + LATENCY_WARMUP, "lat"):
        latency.mark(item)
        stream.publish(item)
        store.save(stream)
        time.sleep(LATENCY_GAP)
    runner.stop()
    p50, p99 = quantiles(latency.latencies)
    report("eventsourcing", dist_version("eventsourcing"), "sqlite", {
        "publish_single": single, "publish_batch": batch, "consume": consume, "p50": p50, "p99": p99,
    })  # fmt: skip


if __name__ == "__main__":
    main()
