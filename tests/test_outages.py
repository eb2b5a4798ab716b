"""Real store outages (SPEC §7): an outside SQLite writer holding the lock past busy_timeout, and
a redis-server killed with SIGKILL and restarted on its AOF. Consumers keep running and resume
by themselves; nothing published is lost; errors that reach the caller are typed and bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventkit import BaseEvent, EventBus, EventStoreConfig
from eventkit.errors import StoreUnavailableError
from eventkit.stores.base import DeliveryStatus
from tests.helpers import discovered, kill_redis_server, wait_until
from tests.redis_server import RedisServer

GROUP = "g"


async def _dlq_ids(bus: EventBus) -> set[str]:
    return {d.event_id for d in await bus.store.get_pending_events(GROUP)}


async def _assert_alive(bus: EventBus, handled: Counter[str]) -> None:
    extra = discovered(999, asset_id="after-the-outage")
    await bus.publish(extra)
    await wait_until(lambda: handled[extra.event_id] >= 1, timeout=10)
    assert await bus.wait_idle(GROUP, timeout=10)


# -- SQLite: an outside writer holds the write lock past busy_timeout ----------------------------


def _hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> None:
    """What another program writing the same file does: BEGIN IMMEDIATE, then take its time."""
    with contextlib.closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        db.execute("COMMIT")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sqlite_locked_by_an_outside_writer_loses_nothing(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventkit")
    events = [discovered(i) for i in range(40)]
    fail_once = {e.event_id for i, e in enumerate(events) if i % 7 == 3}  # retried
    poison = {events[20].event_id, events[35].event_id}  # to the DLQ
    goods = [e.event_id for e in events if e.event_id not in poison]
    handled: Counter[str] = Counter()
    attempts: Counter[str] = Counter()

    async def handler(event: BaseEvent) -> None:
        attempts[event.event_id] += 1
        await asyncio.sleep(0.03)
        if event.event_id in poison or (
            event.event_id in fail_once and attempts[event.event_id] == 1
        ):
            raise RuntimeError("handler failure")
        handled[event.event_id] += 1

    bus = EventBus(backend.config(busy_timeout_ms=200))
    await bus.initialize()
    try:
        await bus.publish_many(events)
        await bus.subscribe_persistent(
            ["*"], GROUP, "w1", handler, max_retries=1, retry_delay=0.01, max_retry_delay=0.05
        )
        await wait_until(lambda: len(handled) >= 3, timeout=10)
        locked = threading.Event()
        holder = asyncio.ensure_future(
            asyncio.to_thread(_hold_write_lock, backend.path, 1.5, locked)
        )
        assert await asyncio.to_thread(locked.wait, 10)
        assert len(handled) < len(goods)  # the outage comes while there is work

        # a publish meanwhile either fails, typed, or (if it outlasted the lock) is stored
        during = discovered(500, asset_id="published-during-the-lock")
        try:
            await bus.publish(during)
        except StoreUnavailableError:
            published_during = False
        else:
            published_during = True
        await holder

        assert await bus.wait_idle(GROUP, timeout=20)
        if published_during:
            goods.append(during.event_id)
        else:
            assert await bus.store.get_events([during.event_id]) == []
        final = {r.event_id: r.status for r in await bus.store.deliveries(GROUP)}
        assert {i: final.get(i) for i in goods} == dict.fromkeys(goods, DeliveryStatus.ACKED)
        assert await _dlq_ids(bus) == poison
        # the 30 s leases never ran out: failed settles were tried again, not left to expire
        assert all(handled[i] == 1 for i in goods), handled
        warned = [
            r for r in caplog.records
            if r.levelno == logging.WARNING and r.name.startswith("eventkit")
            and "lock" in r.getMessage()
        ]  # fmt: skip
        assert warned, caplog.text
        await _assert_alive(bus, handled)
    finally:
        await bus.close(timeout=1.0)


# -- Redis: the server is killed with SIGKILL, then restarted on its AOF ------------------------


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True) as server:
        yield server


def _config(server: RedisServer) -> EventStoreConfig:
    return EventStoreConfig(
        backend="redis", redis_url=server.url, namespace=f"outage-{uuid.uuid4().hex[:8]}",
        poll_interval_seconds=0.05, trim_interval_hours=None,
    )  # fmt: skip


class _Publisher:
    """Publishes one event every few ms until stopped; remembers which publishes returned (the
    store acknowledged them) and what errors the others raised."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.acknowledged: list[str] = []
        self.unavailable = 0
        self.untyped: list[BaseException] = []
        self._stop = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            event = discovered(10_000 + i, asset_id=f"live-{i}")
            i += 1
            try:
                await self.bus.publish(event)
            except StoreUnavailableError:
                self.unavailable += 1
            except Exception as e:
                self.untyped.append(e)
            else:
                self.acknowledged.append(event.event_id)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self.task, 60)


@pytest.mark.timeout(120)
async def test_redis_killed_and_restarted_loses_nothing(aof_redis: RedisServer) -> None:
    handled: Counter[str] = Counter()

    async def handler(event: BaseEvent) -> None:
        await asyncio.sleep(0.005)
        handled[event.event_id] += 1

    bus = EventBus(_config(aof_redis))
    await bus.initialize()
    publisher: _Publisher | None = None
    try:
        backlog = await bus.publish_many([discovered(i) for i in range(300)])
        await bus.subscribe_persistent(["*"], GROUP, "w1", handler, max_retries=3, retry_delay=0.05)
        publisher = _Publisher(bus)
        await wait_until(lambda: len(handled) >= 30, timeout=10)
        assert len(handled) < len(backlog)  # killed with a backlog
        await asyncio.to_thread(kill_redis_server, aof_redis)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(aof_redis.start)
        after = len(publisher.acknowledged)
        await wait_until(lambda: len(publisher.acknowledged) >= after + 10, timeout=30)
        await publisher.stop()
        assert publisher.untyped == [], publisher.untyped

        assert await bus.wait_idle(GROUP, timeout=30)
        acknowledged = set(backlog) | set(publisher.acknowledged)
        lost = acknowledged - set(handled) - await _dlq_ids(bus)
        assert not lost, f"{len(lost)} acknowledged events were neither handled nor in the DLQ"
        await _assert_alive(bus, handled)  # the same subscription, never re-subscribed
    finally:
        if publisher is not None and not publisher.task.done():
            publisher.task.cancel()
            await asyncio.wait({publisher.task})
        await bus.close(timeout=1.0)


#: how long a call may take to report that Redis is down
UNAVAILABLE_WITHIN = 30.0


async def _fails_unavailable(name: str, call: Callable[[], Awaitable[Any]], within: float) -> None:
    started = time.monotonic()
    try:
        await asyncio.wait_for(call(), within)
    except StoreUnavailableError:
        return
    except TimeoutError:
        pytest.fail(f"{name} neither returned nor failed within {within} s while Redis was down")
    except Exception as e:
        pytest.fail(
            f"{name} raised {type(e).__module__}.{type(e).__name__}, not StoreUnavailableError: {e}"
        )
    pytest.fail(f"{name} succeeded while Redis was down ({time.monotonic() - started:.1f} s)")


@pytest.mark.timeout(120)
async def test_redis_down_gives_typed_errors_and_bounded_waits(aof_redis: RedisServer) -> None:
    handled: Counter[str] = Counter()

    async def handler(event: BaseEvent) -> None:
        handled[event.event_id] += 1

    bus = EventBus(_config(aof_redis))
    await bus.initialize()
    try:
        await bus.subscribe_persistent(["*"], GROUP, "w1", handler)
        first = await bus.publish_many([discovered(i) for i in range(3)])
        await wait_until(lambda: all(handled[i] for i in first), timeout=10)
        await asyncio.to_thread(kill_redis_server, aof_redis)

        # side by side: the store may take a while to give up on reconnecting (SPEC bounds
        # only wait_idle), but it must give up, with its own error type
        await asyncio.gather(
            _fails_unavailable("get_stats()", bus.get_stats, within=UNAVAILABLE_WITHIN),
            _fails_unavailable(
                "store.get_pending_events()", lambda: bus.store.get_pending_events(GROUP),
                within=UNAVAILABLE_WITHIN,
            ),
            _fails_unavailable(
                "replay_events()", lambda: bus.replay_events(["*"], lambda e: None),
                within=UNAVAILABLE_WITHIN,
            ),
            _fails_unavailable(
                "publish()", lambda: bus.publish(discovered(7)), within=UNAVAILABLE_WITHIN
            ),
        )  # fmt: skip
        started = time.monotonic()
        idle = await asyncio.wait_for(bus.wait_idle(GROUP, timeout=1), 10)
        took = time.monotonic() - started
        assert idle is False
        assert took < 2, f"wait_idle(timeout=1) took {took:.1f} s with Redis down"

        await asyncio.to_thread(aof_redis.start)
        await _assert_alive(bus, handled)  # resumed by itself
        assert all(handled[i] == 1 for i in first)
    finally:
        if aof_redis._process is None:  # never leave close() talking to a dead server
            await asyncio.to_thread(aof_redis.start)
        await bus.close(timeout=1.0)
