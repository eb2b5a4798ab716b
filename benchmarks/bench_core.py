"""Core benchmark: eventkit's publish, consume and latency beside the raw library doing the same work.

    .venv/bin/python benchmarks/bench_core.py [--quick] [--backends memory,sqlite,redis]

Every eventkit figure is measured in the same run as its raw baseline (aiosqlite on a file created by
SQLiteEventStore itself, so the schema, indexes and pragmas are the store's own; redis-py on the same
server), alternating the two, and the median of a few repeats is kept. Prints a table and rewrites the
"## Core (publish, consume, latency)" section of benchmarks/RESULTS.md, leaving other sections alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import RESULTS, write_section  # noqa: E402
from eventkit import EventBus, EventStoreConfig  # noqa: E402
from eventkit.events import AssetDiscoveredEvent, datetime_to_ms  # noqa: E402

SECTION = "## Core (publish, consume, latency)"
PUBLISH_BATCH = 1_000
#: batch_size of the persistent subscriptions and of the raw claim loops
CONSUME_BATCH = 500  # as Kafka's max.poll.records default
#: subscribe_persistent's default batch_size, what users run with
DEFAULT_BATCH = 10
EVENT_TYPE = AssetDiscoveredEvent.event_type


@dataclass(frozen=True)
class Sizes:
    single: int  # publish one by one
    many: int  # publish_many, in batches of PUBLISH_BATCH
    consume: int  # events consumed per consume run
    memory: int  # events per memory-backend run
    idle_events: int  # events stored for the idle-poll row
    idle_polls: int
    latency: int  # events for publish -> handler latency, one every LATENCY_GAP
    repeats: int


FULL = Sizes(2_000, 50_000, 20_000, 100_000, 1_000_000, 300, 300, 3)
QUICK = Sizes(500, 10_000, 5_000, 20_000, 200_000, 100, 100, 1)
LATENCY_GAP = 0.005


@dataclass
class Row:
    """One line of the table: eventkit's figure, the raw library's, and the target."""

    backend: str
    name: str
    unit: str
    value: float
    raw: float | None = None
    #: value / raw must reach this
    min_ratio: float | None = None
    #: the value itself must reach (throughput) or stay under (latency, cost) this
    min_value: float | None = None
    max_value: float | None = None

    @property
    def ratio(self) -> float | None:
        return None if not self.raw else self.value / self.raw

    @property
    def target(self) -> str:
        parts = []
        if self.min_value is not None:
            parts.append(f"≥ {_num(self.min_value)} {self.unit}")
        if self.max_value is not None:
            parts.append(f"< {_num(self.max_value)} {self.unit}")
        if self.min_ratio is not None:
            parts.append(f"≥ {self.min_ratio:.0%} of raw")
        return " and ".join(parts) or "—"

    @property
    def passed(self) -> bool | None:
        checks = []
        if self.min_ratio is not None:
            checks.append(self.ratio is not None and self.ratio >= self.min_ratio)
        if self.min_value is not None:
            checks.append(self.value >= self.min_value)
        if self.max_value is not None:
            checks.append(self.value < self.max_value)
        return all(checks) if checks else None


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# -- workload ---------------------------------------------------------------------------------


def make_events(count: int, tag: str = "") -> list[AssetDiscoveredEvent]:
    """A realistic sample event: ids, a path, a size and a little metadata (~200 bytes of JSON)."""
    return [
        AssetDiscoveredEvent(
            asset_id=f"asset-{tag}{i:07d}",
            file_path=f"/media/incoming/2024/06/{tag}{i:07d}.jpg",
            media_type="image/jpeg",
            file_size=1_000_000 + i,
            metadata={"width": 4000, "height": 3000, "camera": "X-T5", "tags": ["raw", "hdr"]},
            source="bench",
        )
        for i in range(count)
    ]


def raw_rows(events: Sequence[AssetDiscoveredEvent]) -> list[tuple[Any, ...]]:
    """What a hand-written producer holds before writing: the envelope and the payload as a dict
    (json.dumps of the payload is left to the timed raw code, as eventkit does it in publish)."""
    return [
        (e.event_id, e.event_type, e.version, e.source, datetime_to_ms(e.timestamp), e.payload())
        for e in events
    ]


def median_of(values: Sequence[float]) -> float:
    return statistics.median(values)


async def timed(work: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    start = time.perf_counter()
    await work()
    return time.perf_counter() - start


async def alternate(
    repeats: int,
    eventkit: Callable[[int], Awaitable[float]],
    raw: Callable[[int], Awaitable[float]],
) -> tuple[float, float]:
    """Median rates of eventkit and raw, run in turns so drift hits both alike."""
    ours, theirs = [], []
    for i in range(repeats):
        theirs.append(await raw(i))
        ours.append(await eventkit(i))
    return median_of(ours), median_of(theirs)


async def noop(_: Any) -> None:
    return None


# -- through the bus (any backend) ------------------------------------------------------------


async def bus_publish_single(bus: EventBus, events: Sequence[AssetDiscoveredEvent]) -> float:
    async def run() -> None:
        for event in events:
            await bus.publish(event)

    return len(events) / await timed(run)


async def bus_publish_many(bus: EventBus, events: Sequence[AssetDiscoveredEvent]) -> float:
    async def run() -> None:
        for i in range(0, len(events), PUBLISH_BATCH):
            await bus.publish_many(events[i : i + PUBLISH_BATCH])

    return len(events) / await timed(run)


async def bus_consume(
    bus: EventBus, group: str, consumers: int, expected: int, batch_size: int = CONSUME_BATCH
) -> float:
    """Events/s for a fresh group (start earliest) to handle and ack `expected` stored events."""
    handled = 0

    async def handler(_: Any) -> None:
        nonlocal handled
        handled += 1

    async def run() -> None:
        ids = [
            await bus.subscribe_persistent(
                [EVENT_TYPE], group, f"c{n}", handler, batch_size=batch_size
            )
            for n in range(consumers)
        ]
        if not await bus.wait_idle(group, timeout=300):
            raise RuntimeError(f"{group} did not go idle")
        for sub_id in ids:
            await bus.unsubscribe_persistent(sub_id)

    seconds = await timed(run)
    if handled != expected:
        raise RuntimeError(f"{group}: handled {handled} events, expected {expected}")
    return expected / seconds


async def bus_latency(bus: EventBus, count: int) -> tuple[float, float]:
    """p50 and p99 ms from just before publish() to the persistent handler's call, at low load."""
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def handler(event: Any) -> None:
        latencies.append(time.perf_counter() - sent[event.event_id])

    sub_id = await bus.subscribe_persistent([EVENT_TYPE], "latency", "l1", handler, start="latest")
    events = make_events(count + 20, "lat")
    for event in events:
        sent[event.event_id] = time.perf_counter()
        await bus.publish(event)
        await asyncio.sleep(LATENCY_GAP)
    await bus.wait_idle("latency", timeout=60)
    await bus.unsubscribe_persistent(sub_id)
    measured = sorted(latencies[20:])  # the first few warm up the path
    p50 = measured[len(measured) // 2] * 1000
    p99 = measured[min(len(measured) - 1, int(len(measured) * 0.99))] * 1000
    return p50, p99


async def default_batch_row(backend: str, bus: EventBus, sizes: Sizes, stored: int) -> Row:
    """One consumer at the default batch_size beside batch_size=500, alternating on the same
    stored events (a fresh group per run): adaptive claims should close the gap (issue 12)."""

    async def default(r: int) -> float:
        return await bus_consume(bus, f"d{DEFAULT_BATCH}-{r}", 1, stored, DEFAULT_BATCH)

    async def tuned(r: int) -> float:
        return await bus_consume(bus, f"d{CONSUME_BATCH}-{r}", 1, stored)

    value, tuned_value = await alternate(sizes.repeats, default, tuned)
    name = f"consume+ack, 1 consumer, default batch_size={DEFAULT_BATCH} (raw: {CONSUME_BATCH})"
    return Row(backend, name, "events/s", value, tuned_value, min_ratio=0.80)


class LoopLag:
    """How late the event loop runs a task: a ticker that sleeps TICK at a time and records its
    oversleep, while the code under test runs beside it."""

    TICK = 0.001

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})

    async def _tick(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.TICK)
            self.lags.append(max(0.0, time.perf_counter() - start - self.TICK) * 1000)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.lags) or [0.0]
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def sync_sqlite3(path: Path) -> Any:
    """A synchronous SQLite peer's table (raw_sqlite's schema and pragmas) in plain sqlite3."""
    import sqlite3

    from benchmarks import raw_sqlite

    db = sqlite3.connect(path, isolation_level=None)
    for pragma in raw_sqlite.PRAGMAS:
        db.execute(pragma)
    db.executescript(raw_sqlite.SCHEMA)
    return db


async def sync_publish_single(db: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """What a synchronous peer does in an async program: sqlite3 insert + commit per event on
    the loop's thread (json.dumps included), giving the loop a turn between events."""
    import json

    from benchmarks import raw_sqlite

    for event_id, event_type, version, source, ts, payload in rows:
        db.execute("BEGIN")
        db.execute(raw_sqlite.INSERT, (event_id, event_type, version, source, ts,
                                       json.dumps(payload), raw_sqlite.now_ms()))  # fmt: skip
        db.execute("COMMIT")
        await asyncio.sleep(0)


async def sqlite_single_vs_sync_rows(
    sizes: Sizes, config: Callable[[], EventStoreConfig], workdir: Path
) -> list[Row]:
    """Publish one by one against a synchronous sqlite3 commit per event (same durability: WAL,
    synchronous=NORMAL), and the loop's lag while each runs, alternating."""
    rates: tuple[list[float], list[float]] = ([], [])
    lags: tuple[list[LoopLag], list[LoopLag]] = ([], [])
    for r in range(sizes.repeats):
        db = sync_sqlite3(workdir / f"sync-{r}.db")
        try:
            await sync_publish_single(db, raw_rows(make_events(200, "warm")))
            rows_ = raw_rows(make_events(sizes.single, f"sync{r}"))
            gc.collect()  # before the ticker starts: timed() would count it as lag
            async with LoopLag() as lag:
                start = time.perf_counter()
                await sync_publish_single(db, rows_)
                rates[1].append(len(rows_) / (time.perf_counter() - start))
            lags[1].append(lag)
        finally:
            db.close()
        async with EventBus(config()) as bus:
            await bus_publish_many(bus, make_events(200, "warm"))
            events = make_events(sizes.single, f"lag{r}")
            gc.collect()
            async with LoopLag() as lag:
                start = time.perf_counter()
                for event in events:
                    await bus.publish(event)
                rates[0].append(len(events) / (time.perf_counter() - start))
            lags[0].append(lag)
    p99 = [median_of([lag.quantile(0.99) for lag in side]) for side in lags]
    worst = [max(lag.quantile(1.0) for lag in side) for side in lags]
    return [
        Row("sqlite", "publish one by one (raw: sync sqlite3 commit per event)", "events/s",
            median_of(rates[0]), median_of(rates[1]), min_ratio=1.0),
        Row("sqlite", "loop lag while publishing one by one, p99 (raw: sync sqlite3)", "ms",
            p99[0], p99[1], max_value=5.0),
        Row("sqlite", "loop lag while publishing one by one, max (raw: sync sqlite3)", "ms",
            worst[0], worst[1], max_value=5.0),
    ]  # fmt: skip


async def latency_rows(backend: str, bus: EventBus, sizes: Sizes) -> list[Row]:
    p50, p99 = await bus_latency(bus, sizes.latency)
    return [
        Row(backend, "publish→handler latency p50", "ms", p50, max_value=5.0),
        Row(backend, "publish→handler latency p99", "ms", p99),
    ]


# -- memory -----------------------------------------------------------------------------------


async def bench_memory(sizes: Sizes) -> list[Row]:
    config = EventStoreConfig(backend="memory", trim_interval_hours=None)
    rows: list[Row] = []
    async with EventBus(config) as bus:
        await bus_publish_many(bus, make_events(2_000, "warm"))
        await bus_consume(bus, "warm", 1, 2_000)
        many, single = [], []
        for r in range(sizes.repeats):
            many.append(await bus_publish_many(bus, make_events(sizes.memory, f"m{r}")))
            single.append(await bus_publish_single(bus, make_events(sizes.memory // 4, f"s{r}")))
        rows.append(Row("memory", "publish_many (batches of 1,000)", "events/s", median_of(many),
                        min_value=100_000))  # fmt: skip
        rows.append(Row("memory", "publish one by one", "events/s", median_of(single),
                        min_value=100_000))  # fmt: skip
    for consumers in (1, 4):
        async with EventBus(config) as bus:
            await bus.publish_many(make_events(sizes.memory, "c"))
            rates = [
                await bus_consume(bus, f"g{consumers}-{r}", consumers, sizes.memory)
                for r in range(sizes.repeats)
            ]
            rows.append(Row("memory", f"consume+ack, {consumers} consumer{'s' * (consumers > 1)}",
                            "events/s", median_of(rates), min_value=100_000))  # fmt: skip
            if consumers == 1:
                rows.append(await default_batch_row("memory", bus, sizes, sizes.memory))
    async with EventBus(config) as bus:
        rows += await latency_rows("memory", bus, sizes)
    return rows


# -- SQLite -----------------------------------------------------------------------------------


async def bench_sqlite(sizes: Sizes, workdir: Path) -> list[Row]:
    from benchmarks import raw_sqlite

    rows: list[Row] = []
    counter = iter(range(1_000_000))

    def fresh_config() -> EventStoreConfig:
        return EventStoreConfig(
            backend="sqlite", path=workdir / f"ek-{next(counter)}.db", trim_interval_hours=None,
            max_events=None,
        )  # fmt: skip

    async def fresh_raw() -> raw_sqlite.RawSQLite:
        return await raw_sqlite.RawSQLite.create(workdir / f"raw-{next(counter)}.db")

    # publish one by one, then in batches: a fresh file for every run on both sides
    for label, count, bus_run, raw_run, ratio in (
        ("publish one by one", sizes.single, bus_publish_single, "insert_single", 0.70),
        ("publish_many (batches of 1,000)", sizes.many, bus_publish_many, "insert_many", 0.50),
    ):

        async def ours(r: int, count: int = count, bus_run: Any = bus_run) -> float:
            async with EventBus(fresh_config()) as bus:
                await bus_publish_many(bus, make_events(200, "warm"))
                return float(await bus_run(bus, make_events(count, f"p{r}")))

        async def theirs(r: int, count: int = count, raw_run: str = raw_run) -> float:
            raw = await fresh_raw()
            try:
                await raw.insert_many(raw_rows(make_events(200, "warm")), PUBLISH_BATCH)
                rows_ = raw_rows(make_events(count, f"p{r}"))
                if raw_run == "insert_single":
                    return len(rows_) / await timed(lambda: raw.insert_single(rows_))
                return len(rows_) / await timed(lambda: raw.insert_many(rows_, PUBLISH_BATCH))
            finally:
                await raw.close()

        value, raw_value = await alternate(sizes.repeats, ours, theirs)
        rows.append(Row("sqlite", label, "events/s", value, raw_value, min_ratio=ratio))
    rows += await sqlite_single_vs_sync_rows(sizes, fresh_config, workdir)

    # consume + ack: the same stored events, a fresh group per run (bus) or a fresh file (raw)
    config = fresh_config()
    async with EventBus(config) as bus:
        await bus_publish_many(bus, make_events(sizes.consume, "c"))
        await bus_consume(bus, "warm", 1, sizes.consume)
        for consumers in (1, 4):

            async def ours_c(r: int, consumers: int = consumers) -> float:
                return await bus_consume(bus, f"g{consumers}-{r}", consumers, sizes.consume)

            async def theirs_c(r: int, consumers: int = consumers) -> float:
                raw = await fresh_raw()
                try:
                    await raw.insert_many(raw_rows(make_events(sizes.consume, "c")), PUBLISH_BATCH)
                    return await raw.consume(f"g{r}", consumers, CONSUME_BATCH, sizes.consume)
                finally:
                    await raw.close()

            value, raw_value = await alternate(sizes.repeats, ours_c, theirs_c)
            name = f"consume+ack, {consumers} consumer{'s' * (consumers > 1)}"
            # issue 2 asks ≥ 20,000 events/s of one consumer; both rows must reach 15 % of raw
            rows.append(Row("sqlite", name, "events/s", value, raw_value, min_ratio=0.15,
                            min_value=20_000 if consumers == 1 else None))  # fmt: skip
            if consumers == 1:
                rows.append(await default_batch_row("sqlite", bus, sizes, sizes.consume))
        rows += await latency_rows("sqlite", bus, sizes)

    rows.append(await sqlite_idle_poll(fresh_config(), sizes))
    return rows


async def sqlite_idle_poll(config: EventStoreConfig, sizes: Sizes) -> Row:
    """An idle consumer's claim() on a group with nothing to do, over sizes.idle_events stored."""
    from eventkit import codec
    from eventkit.stores.base import NewEvent
    from eventkit.stores.sqlite import SQLiteEventStore

    store = SQLiteEventStore(config.resolved_path, busy_timeout_ms=config.busy_timeout_ms)
    await store.open()
    # fill through the store's own append (its schema, its indexes), skipping the per-event encode
    template = codec.encode(make_events(1)[0])
    chunk = 10_000
    for start in range(0, sizes.idle_events, chunk):
        await store.append([
            NewEvent(f"idle-{n:08d}", template.event_type, template.version, template.source,
                     template.timestamp_ms + n, template.data)
            for n in range(start, min(start + chunk, sizes.idle_events))
        ])  # fmt: skip
    try:
        await store.ensure_group("idle", [EVENT_TYPE], "latest")
        await store.register_consumer("idle", "c1")
        polls = []
        for _ in range(20):  # warm the page cache
            await store.claim("idle", "c1", limit=CONSUME_BATCH, lease_ms=30_000)
        for _ in range(sizes.idle_polls):
            start = time.perf_counter()
            claims = await store.claim("idle", "c1", limit=CONSUME_BATCH, lease_ms=30_000)
            polls.append((time.perf_counter() - start) * 1e6)
            assert not claims
    finally:
        await store.close()
    label = f"idle claim() with {sizes.idle_events:,} events stored (median)"
    return Row("sqlite", label, "µs", median_of(polls), max_value=1_000)


# -- Redis ------------------------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on a free loopback port, without persistence."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def __exit__(self, *_: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


async def bench_redis(sizes: Sizes, url: str) -> list[Row]:
    from benchmarks import raw_redis

    rows: list[Row] = []
    counter = iter(range(1_000_000))

    def fresh_config() -> EventStoreConfig:
        return EventStoreConfig(
            backend="redis", redis_url=url, namespace=f"bench-{os.getpid()}-{next(counter)}",
            trim_interval_hours=None, max_events=None,
        )  # fmt: skip

    raw = raw_redis.RawRedis(url, prefix=f"bench-raw-{os.getpid()}")
    try:

        async def ours(r: int) -> float:
            async with EventBus(fresh_config()) as bus:
                await bus_publish_many(bus, make_events(1_000, "warm"))
                rate = await bus_publish_many(bus, make_events(sizes.many, f"p{r}"))
                await raw_redis.drop_namespace(url, bus.config.namespace)  # type: ignore[union-attr]
                return rate

        async def theirs(r: int) -> float:
            stream = await raw.fresh_stream()
            await raw.xadd_many(stream, raw_rows(make_events(1_000, "warm")), PUBLISH_BATCH)
            rows_ = raw_rows(make_events(sizes.many, f"p{r}"))
            rate = len(rows_) / await timed(lambda: raw.xadd_many(stream, rows_, PUBLISH_BATCH))
            await raw.drop(stream)
            return rate

        value, raw_value = await alternate(sizes.repeats, ours, theirs)
        rows.append(Row("redis", "publish_many (batches of 1,000)", "events/s", value, raw_value,
                        min_ratio=0.40))  # fmt: skip

        config = fresh_config()
        async with EventBus(config) as bus:
            await bus_publish_many(bus, make_events(sizes.consume, "c"))
            await bus_consume(bus, "warm", 1, sizes.consume)
            stream = await raw.fresh_stream()
            await raw.xadd_many(stream, raw_rows(make_events(sizes.consume, "c")), PUBLISH_BATCH)
            for consumers in (1, 4):

                async def ours_c(r: int, consumers: int = consumers) -> float:
                    return await bus_consume(bus, f"g{consumers}-{r}", consumers, sizes.consume)

                async def theirs_c(r: int, consumers: int = consumers) -> float:
                    return await raw.consume(
                        stream, f"g{consumers}-{r}", consumers, CONSUME_BATCH, sizes.consume
                    )

                value, raw_value = await alternate(sizes.repeats, ours_c, theirs_c)
                name = f"consume+ack, {consumers} consumer{'s' * (consumers > 1)}"
                rows.append(Row("redis", name, "events/s", value, raw_value, min_ratio=0.30))
                if consumers == 1:
                    rows.append(await default_batch_row("redis", bus, sizes, sizes.consume))
            await raw.drop(stream)
            rows += await latency_rows("redis", bus, sizes)
        await raw_redis.drop_namespace(url, config.namespace)
    finally:
        await raw.close()
    return rows


# -- report -----------------------------------------------------------------------------------


def table(rows: Sequence[Row]) -> str:
    head = "| backend | measure | eventkit | raw | ratio | target | result |"
    lines = [head, "|---|---|---:|---:|---:|---|---|"]
    for row in rows:
        raw = "—" if row.raw is None else f"{_num(row.raw)}"
        ratio = "—" if row.ratio is None else f"{row.ratio:.0%}"
        result = {True: "PASS", False: "**FAIL**", None: "info"}[row.passed]
        lines.append(
            f"| {row.backend} | {row.name} | {_num(row.value)} {row.unit} | {raw} | {ratio} "
            f"| {row.target} | {result} |"
        )
    return "\n".join(lines)


def environment(command: str) -> list[str]:
    import sqlite3

    import aiosqlite

    interpreter = (
        Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    )
    versions = [
        f"Python {platform.python_version()} (`{interpreter}`)",
        f"aiosqlite {aiosqlite.__version__}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    try:
        import hiredis
        import redis

        versions += [f"redis-py {redis.__version__}", f"hiredis {hiredis.__version__}"]
        server = shutil.which("redis-server")
        if server:
            out = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
            versions.append("redis-server " + out.split("v=")[1].split()[0] if "v=" in out else "")
    except ImportError:
        pass
    return [
        f"- command: `{command}`",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs (`nproc` = {_nproc()}), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"- versions: {', '.join(v for v in versions if v)}",
        f"- SQLite: WAL, synchronous=NORMAL (the store's pragmas, on both sides); "
        f"consumers use batch_size={CONSUME_BATCH}; medians of the repeats",
    ]


def _store_available(backend: str) -> bool:
    import importlib

    try:
        importlib.import_module(f"eventkit.stores.{backend}")
    except ImportError:
        return False
    return True


def _nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return str(os.cpu_count())


def write_results(rows: Sequence[Row], command: str, skipped: Sequence[str] = ()) -> None:
    notes = [f"- not measured: {b} (eventkit/stores/{b}.py not importable)" for b in skipped]
    write_section(
        SECTION, "\n".join([SECTION, "", *environment(command), *notes, "", table(rows), ""])
    )


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (< 1 min)")
    parser.add_argument("--backends", default="memory,sqlite,redis")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    command = ".venv/bin/python benchmarks/bench_core.py" + " ".join(
        [""] + [a for a in (argv if argv is not None else sys.argv[1:])]
    )
    rows: list[Row] = []
    skipped: list[str] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eventkit-bench-") as tmp:
        for backend in backends:
            print(f"-- {backend} ...", flush=True)
            if backend in ("sqlite", "redis") and not _store_available(backend):
                print(f"   skipped: eventkit/stores/{backend}.py is not importable", flush=True)
                skipped.append(backend)
                continue
            if backend == "memory":
                rows += await bench_memory(sizes)
            elif backend == "sqlite":
                rows += await bench_sqlite(sizes, Path(tmp))
            elif backend == "redis":
                url = os.environ.get("REDIS_URL")
                if url:
                    rows += await bench_redis(sizes, url)
                else:
                    with RedisServer() as server:
                        rows += await bench_redis(sizes, server.url)
            else:
                parser.error(f"unknown backend {backend!r}: use memory, sqlite or redis")
    print(table(rows))
    print(f"({time.perf_counter() - began:.0f} s)")
    if not args.no_write:
        write_results(rows, command.strip(), skipped)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
