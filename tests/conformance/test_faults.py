"""SPEC §7 "Faults and bad input", on every backend where a fault can be made.

Every case ends with the same checks: each event acked or in the group's DLQ with a reason, none
lost, the group idle, and the consumer still alive (one more event is handled). Corrupt records
are written straight into the store, the way the store itself writes them, with one field broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from eventkit import BaseEvent, Event, EventBus, versioned_event
from eventkit.codec import encode
from eventkit.errors import ConfigError, EventKitError, SerializationError
from eventkit.stores.base import DeliveryStatus, NewEvent, now_ms
from tests.helpers import FlakyStore, discovered, wait_until

ROOT = Path(__file__).resolve().parents[2]
GROUP = "g"
#: a field left out of the record (Redis: not in the entry; SQLite: '' as NOT NULL forbids NULL;
#: memory: None)
MISSING: Any = object()


# -- helpers ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_bus(backend: Any, store: Any = None, **config: Any) -> AsyncIterator[EventBus]:
    """A bus on the backend's store (or on `store`, e.g. a FlakyStore around it), always closed."""
    bus = EventBus(
        backend.config(**config), store=store if store is not None else backend.new_store()
    )
    await bus.initialize()
    try:
        yield bus
    finally:
        await bus.close(timeout=1.0)


async def settled(
    bus: EventBus, condition: Callable[[], Any], what: str, timeout: float = 10
) -> None:
    """wait_until, saying where each event of the group stands when it times out."""
    try:
        await wait_until(condition, timeout=timeout)
    except AssertionError:
        where = {
            r.event_id[:8]: (r.status.value, r.attempts, r.last_error)
            for r in await bus.store.deliveries(GROUP)
        }
        raise AssertionError(f"{what}: not within {timeout} s; deliveries: {where}") from None


async def dlq_ids(bus: EventBus, group: str = GROUP) -> list[str]:
    return [letter.event_id for letter in await bus.store.get_pending_events(group)]


async def statuses(bus: EventBus, group: str = GROUP) -> dict[str, DeliveryStatus]:
    return {r.event_id: r.status for r in await bus.store.deliveries(group)}


async def assert_alive(bus: EventBus, handled: Counter[str], group: str = GROUP) -> None:
    """The consumer still runs: one more event is handled, and the group goes idle again."""
    extra = discovered(999, asset_id="still-alive")
    await bus.publish(extra)
    await wait_until(lambda: handled[extra.event_id] >= 1, timeout=5)
    assert await bus.wait_idle(group, timeout=10)


def warnings_mentioning(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("eventkit") and text in r.getMessage()
    ]


# -- corrupt records written straight into the store -------------------------------------------


def scheduled_event_class() -> type[BaseEvent]:
    """An event type with a datetime payload field (registered inside the test: the backend
    fixture isolates the registry)."""

    @versioned_event(version=1, event_type="test.scheduled", description="has a datetime field")
    class ScheduledEvent(BaseEvent):
        asset_id: str
        due: datetime

    return ScheduledEvent


def good_record(i: int) -> dict[str, Any]:
    """The fields of a well-formed stored event, in the store's order (NewEvent's)."""
    return encode(discovered(i, asset_id=f"corrupt-{i}"))._asdict()


@dataclass(frozen=True)
class Corruption:
    name: str
    #: the good record with one thing broken
    make: Callable[[dict[str, Any]], dict[str, Any]]
    backends: tuple[str, ...] = ("memory", "sqlite", "redis")
    needs_scheduled_type: bool = False


def _with(**fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda record: {**record, **fields}


def _not_a_date(record: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps({"asset_id": "scheduled-1", "due": "not-a-date"})
    return {**record, "event_type": "test.scheduled", "data": data}


def _data_not_utf8(record: dict[str, Any]) -> dict[str, Any]:
    # a complete, valid payload but for one byte that is not UTF-8 inside a string value
    raw = record["data"].encode()
    assert b"corrupt-" in raw
    return {**record, "data": raw.replace(b"corrupt-", b"corrupt\xff-")}


def _source_not_utf8(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "source": b"scan\xffner"}


CORRUPTIONS = [
    Corruption("timestamp_ms_10_to_16", _with(timestamp_ms=10**16)),
    Corruption("timestamp_ms_text", _with(timestamp_ms="yesterday")),
    Corruption("datetime_field_not_a_date", _not_a_date, needs_scheduled_type=True),
    Corruption("version_text", _with(version="abc")),
    Corruption("payload_not_json", _with(data='{"asset_id": "x", not json')),
    Corruption("payload_json_not_object", _with(data="[1, 2, 3]")),
    Corruption("payload_json_string", _with(data='"just text"')),
    Corruption("missing_envelope_fields", _with(version=MISSING, timestamp_ms=MISSING)),
    # memory holds str: the byte becomes a lone surrogate, as reading with surrogateescape does
    Corruption("payload_not_utf8", _data_not_utf8),
    Corruption("source_not_utf8", _source_not_utf8, backends=("sqlite", "redis")),
]


async def write_raw(backend: Any, bus: EventBus, record: dict[str, Any]) -> None:
    if backend.name == "memory":
        values = {
            k: None
            if v is MISSING
            else v.decode("utf-8", "surrogateescape")
            if isinstance(v, bytes)
            else v
            for k, v in record.items()
        }
        await bus.store.append([NewEvent(**values)])
    elif backend.name == "sqlite":
        await asyncio.to_thread(_sqlite_insert, backend.path, record)
    else:
        await asyncio.to_thread(_redis_xadd, backend.redis_url, backend.namespace, record)


def _sqlite_insert(path: Path, record: dict[str, Any]) -> None:
    """A row of table `events` as SQLiteEventStore.append writes it (position by AUTOINCREMENT)."""
    columns, values, params = [], [], []
    for column, value in record.items():
        columns.append(column)
        value = "" if value is MISSING else value
        values.append("CAST(? AS TEXT)" if isinstance(value, bytes) else "?")
        params.append(value)
    sql = f"INSERT INTO events ({', '.join(columns)}, published_ms) VALUES ({', '.join(values)}, ?)"
    with contextlib.closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as db:
        db.execute(sql, [*params, now_ms()])


def _redis_xadd(url: str, namespace: str, record: dict[str, Any]) -> None:
    """An entry of the namespace's stream as the append script writes it (fields in NewEvent
    order), and its event_id in the ids hash; bytes go in as they are (no decoding client)."""
    import redis

    from eventkit.stores.redis import _Keys

    keys = _Keys(namespace)
    client = redis.Redis.from_url(url)
    try:
        # an empty correlation or causation id is written as "" (as append.lua writes it)
        fields = {k: "" if v is None else v for k, v in record.items() if v is not MISSING}
        entry_id = client.xadd(keys.events, fields)
        client.hset(keys.ids, record["event_id"], entry_id)
    finally:
        client.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("backend", "corruption"),
    [pytest.param(name, c, id=f"{c.name}-{name}") for c in CORRUPTIONS for name in c.backends],
    indirect=["backend"],
)
async def test_corrupt_record_goes_to_dlq_and_the_group_goes_on(
    backend: Any, make_bus: Any, corruption: Corruption
) -> None:
    if corruption.needs_scheduled_type:
        scheduled_event_class()
    bus = await make_bus()
    handled: Counter[str] = Counter()

    async def handler(event: BaseEvent) -> None:
        handled[event.event_id] += 1

    goods = [discovered(i) for i in range(4)]
    bad = corruption.make(good_record(50))
    await bus.publish_many(goods[:2])
    await write_raw(backend, bus, bad)
    await bus.publish_many(goods[2:])

    # the bad record sits in the middle of the group's first batch
    await bus.subscribe_persistent(["*"], GROUP, "w1", handler, max_retries=1, retry_delay=0.01)
    await wait_until(lambda: len(handled) >= len(goods), timeout=5)
    await wait_until(lambda: bus.get_pending_events(GROUP), timeout=5)
    assert await bus.wait_idle(GROUP, timeout=10)

    letters = await bus.store.get_pending_events(GROUP)
    assert [d.event_id for d in letters] == [bad["event_id"]]
    assert letters[0].last_error.startswith("SerializationError"), letters[0].last_error
    assert letters[0].consumer_group == GROUP
    assert handled == Counter({e.event_id: 1 for e in goods})  # each once; the bad one never
    assert (await statuses(bus))[bad["event_id"]] == DeliveryStatus.DEAD
    await assert_alive(bus, handled)

    # replay reads the same log: it may skip the record or refuse it, but only with a typed error
    try:
        replayed = await bus.replay_events(["*"], lambda event: None)
    except EventKitError:
        pass
    else:
        assert replayed == len(goods) + 1


# -- handlers that misbehave --------------------------------------------------------------------


class UnprintableError(Exception):
    """An exception whose str() and repr() raise."""

    def __str__(self) -> str:
        raise RuntimeError("str() of UnprintableError raised")

    def __repr__(self) -> str:
        raise RuntimeError("repr() of UnprintableError raised")


class FatalHandlerError(BaseException):
    """A BaseException that is neither an Exception nor one of asyncio's or the interpreter's."""


class FailingAwaitable:
    """An awaitable (not a coroutine: nothing warns if it is never awaited) that fails."""

    def __await__(self) -> Any:
        raise LookupError("the awaitable a plain handler returned failed")
        yield  # a generator: the error comes when it is awaited


async def _raise(error: BaseException) -> None:
    raise error


async def _cancel_own_task() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(5)


@dataclass(frozen=True)
class Misbehaviour:
    name: str
    #: what the handler does for a chosen event: returns an awaitable (async handlers await it)
    #: or, for plain handlers, the value it returns
    act: Callable[[], Any]
    #: regex the DLQ reason must match; None: the event ends acked
    reason: str | None
    plain: bool = False
    lease_seconds: float = 30.0
    batch_size: int = 10
    bad_count: int = 2
    #: run on an event loop of its own thread: these escape a loop that lets them through
    isolate: bool = False


LEASE_REASON = r"(?i)lease|timeout|timed out"
MISBEHAVIOURS = [
    Misbehaviour("raises_value_error", lambda: _raise(ValueError("bad value")), r"ValueError"),
    Misbehaviour(
        "raises_cancelled_error", lambda: _raise(asyncio.CancelledError()), r"CancelledError"
    ),
    Misbehaviour("raises_unprintable", lambda: _raise(UnprintableError()), r"UnprintableError"),
    Misbehaviour("raises_system_exit", lambda: _raise(SystemExit(3)), r"SystemExit", isolate=True),
    Misbehaviour(
        "raises_keyboard_interrupt",
        lambda: _raise(KeyboardInterrupt()),
        r"KeyboardInterrupt",
        isolate=True,
    ),
    Misbehaviour(
        "raises_base_exception", lambda: _raise(FatalHandlerError("fatal")), r"FatalHandlerError"
    ),
    Misbehaviour("cancels_own_task", _cancel_own_task, r"Cancel"),
    Misbehaviour("returns_non_awaitable", lambda: 42, None, plain=True),
    Misbehaviour("returns_failing_awaitable", FailingAwaitable, r"LookupError", plain=True),
    Misbehaviour(
        "hangs_past_lease",
        lambda: asyncio.sleep(60),
        LEASE_REASON,
        lease_seconds=0.5,
        batch_size=1,
        bad_count=1,
    ),
    Misbehaviour(
        "blocks_past_lease_sync",
        lambda: time.sleep(0.8),
        LEASE_REASON,
        plain=True,
        lease_seconds=0.5,
        batch_size=1,
        bad_count=1,
    ),
]


async def _misbehaviour_scenario(backend: Any, m: Misbehaviour) -> None:
    goods = [discovered(i) for i in range(4)]
    bads = [discovered(100 + i) for i in range(m.bad_count)]
    bad_ids = {e.event_id for e in bads}
    handled: Counter[str] = Counter()  # successful calls
    calls: Counter[str] = Counter()  # every call

    if m.plain:

        def handler(event: BaseEvent) -> Any:
            calls[event.event_id] += 1
            if event.event_id in bad_ids:
                return m.act()
            handled[event.event_id] += 1
            return None

    else:

        async def handler(event: BaseEvent) -> Any:  # type: ignore[misc]
            calls[event.event_id] += 1
            if event.event_id in bad_ids:
                return await m.act()
            handled[event.event_id] += 1
            return None

    async with open_bus(backend) as bus:
        order = [goods[0], bads[0], goods[1], *bads[1:], *goods[2:]]
        await bus.publish_many(order)
        await bus.subscribe_persistent(
            ["*"], GROUP, "w1", handler, batch_size=m.batch_size, max_retries=1,
            lease_seconds=m.lease_seconds, retry_delay=0.01, max_retry_delay=0.05,
        )  # fmt: skip
        await settled(bus, lambda: all(handled[e.event_id] for e in goods), "good events handled")
        if m.reason is None:
            await wait_until(lambda: all(calls[i] for i in bad_ids), timeout=10)
        else:
            await wait_until(lambda: _dlq_size(bus, len(bads)), timeout=10)
        assert await bus.wait_idle(GROUP, timeout=10)

        final = await statuses(bus)
        letters = {d.event_id: d for d in await bus.store.get_pending_events(GROUP)}
        assert all(final[e.event_id] == DeliveryStatus.ACKED for e in goods), final
        if m.reason is None:  # a plain handler's return value is just ignored
            assert all(final[i] == DeliveryStatus.ACKED for i in bad_ids), final
            assert letters == {}
            assert all(calls[i] == 1 for i in bad_ids), calls
        else:
            assert all(final[i] == DeliveryStatus.DEAD for i in bad_ids), final
            assert set(letters) == bad_ids
            for letter in letters.values():
                assert re.search(m.reason, letter.last_error), letter.last_error
                # 1 + max_retries; a lease that ran out is counted by the claim that finds it
                assert letter.attempts == 2 or m.lease_seconds < 30, letter
            assert all(calls[i] == 2 for i in bad_ids), calls
        if m.lease_seconds >= 30:  # no lease ran out: every good event handled exactly once
            assert all(handled[e.event_id] == 1 for e in goods), handled
        await assert_alive(bus, handled)


async def _dlq_size(bus: EventBus, size: int) -> bool:
    return await bus.get_pending_events(GROUP) >= size


async def _in_own_loop(scenario: Callable[[], Awaitable[None]], timeout: float) -> None:
    """Run a scenario on a new event loop in a thread, so that an interpreter-level exception
    escaping that loop fails this test instead of stopping the whole pytest session."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(scenario())  # type: ignore[arg-type]
        except BaseException as e:  # noqa: B036 - reported below
            outcome.append(e)

    thread = threading.Thread(target=run, name="eventkit-test-isolated-loop", daemon=True)
    thread.start()
    await asyncio.to_thread(thread.join, timeout)
    if thread.is_alive():
        pytest.fail(f"the scenario did not finish within {timeout} s")
    if outcome:
        error = outcome[0]
        if isinstance(error, AssertionError | pytest.fail.Exception):
            raise error
        pytest.fail(f"{type(error).__name__} escaped the consumer and ended its event loop")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("misbehaviour", MISBEHAVIOURS, ids=lambda m: m.name)
async def test_handler_misbehaviour_fails_the_attempt_not_the_consumer(
    backend: Any, misbehaviour: Misbehaviour
) -> None:
    if misbehaviour.isolate:
        await _in_own_loop(lambda: _misbehaviour_scenario(backend, misbehaviour), timeout=45)
    else:
        await _misbehaviour_scenario(backend, misbehaviour)


# -- a store whose calls fail: settles are retried, nothing is lost -----------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["claim", "ack", "retry_later", "dead_letter"])
async def test_failing_store_calls_are_retried_and_nothing_is_lost(
    backend: Any, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventkit")
    flaky = FlakyStore(backend.new_store(), fail={method: 3})
    events = [discovered(i) for i in range(8)]
    fail_once = {events[1].event_id, events[5].event_id}  # retried, then handled
    poison = {events[3].event_id, events[6].event_id}  # always fail: DLQ
    handled: Counter[str] = Counter()
    attempts: Counter[str] = Counter()

    async def handler(event: BaseEvent) -> None:
        attempts[event.event_id] += 1
        if event.event_id in poison or (
            event.event_id in fail_once and attempts[event.event_id] == 1
        ):
            raise RuntimeError(f"handler failure #{attempts[event.event_id]}")
        handled[event.event_id] += 1

    async with open_bus(backend, store=flaky) as bus:
        await bus.publish_many(events)
        await bus.subscribe_persistent(
            ["*"], GROUP, "w1", handler, max_retries=1, retry_delay=0.01, max_retry_delay=0.05
        )
        goods = [e.event_id for e in events if e.event_id not in poison]
        await settled(bus, lambda: all(handled[i] for i in goods), "handled", timeout=15)
        await wait_until(lambda: _dlq_size(bus, len(poison)), timeout=15)
        assert await bus.wait_idle(GROUP, timeout=15)

        assert flaky.exhausted(), flaky.failures
        assert flaky.calls[method] > flaky.fail[method], flaky.calls  # tried again after failing
        final = await statuses(bus)
        assert {i: final[i] for i in goods} == dict.fromkeys(goods, DeliveryStatus.ACKED)
        assert sorted(await dlq_ids(bus)) == sorted(poison)  # each exactly once
        assert all(final[i] == DeliveryStatus.DEAD for i in poison)
        # leases (30 s) never ran out: a retried settle, not an expired lease, brought them here
        assert all(handled[i] == 1 for i in goods), handled
        assert all(attempts[i] == 2 for i in poison | fail_once), attempts
        assert warnings_mentioning(caplog, "injected fault"), caplog.text
        await assert_alive(bus, handled)


@pytest.mark.timeout(60)
async def test_failing_extend_lease_loses_nothing(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch that outlives half its lease has its leases renewed; renewals that fail are
    logged, and the events still end acked (redelivered if a lease ran out)."""
    caplog.set_level(logging.WARNING, logger="eventkit")
    flaky = FlakyStore(backend.new_store(), fail={"extend_lease": 3})
    events = [discovered(i) for i in range(10)]
    handled: Counter[str] = Counter()

    async def handler(event: BaseEvent) -> None:
        await asyncio.sleep(0.2)
        handled[event.event_id] += 1

    async with open_bus(backend, store=flaky) as bus:
        await bus.publish_many(events)
        await bus.subscribe_persistent(
            ["*"], GROUP, "w1", handler, batch_size=5, max_retries=5, lease_seconds=1.0,
            retry_delay=0.01,
        )  # fmt: skip
        await settled(bus, lambda: all(handled[e.event_id] for e in events), "handled", timeout=20)
        assert await bus.wait_idle(GROUP, timeout=15)
        assert flaky.exhausted(), flaky.calls
        assert flaky.calls["extend_lease"] > flaky.fail["extend_lease"], flaky.calls
        final = await statuses(bus)
        assert all(final[e.event_id] == DeliveryStatus.ACKED for e in events), final
        assert await dlq_ids(bus) == []
        assert warnings_mentioning(caplog, "injected fault"), caplog.text
        await assert_alive(bus, handled)


# -- live members in stats ----------------------------------------------------------------------

MEMBER_SCRIPT = """
import asyncio, json, sys
from eventkit import EventBus, EventStoreConfig

async def main():
    bus = EventBus(EventStoreConfig(**json.loads(sys.argv[1])))
    await bus.initialize()
    await bus.subscribe_persistent(["*"], sys.argv[2], sys.argv[3], lambda event: None,
                                   lease_seconds=float(sys.argv[4]))
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def config_dict(backend: Any) -> dict[str, Any]:
    return {
        "backend": backend.name, "path": str(backend.path), "redis_url": backend.redis_url,
        "namespace": backend.namespace, "trim_interval_hours": None, "poll_interval_seconds": 0.05,
    }  # fmt: skip


async def consumers(bus: EventBus, group: str = GROUP) -> int:
    return int((await bus.get_stats())["groups"][group]["consumers"])


class _OtherProcess:
    """A second member that dies without close(): a process killed with SIGKILL."""

    def __init__(self, backend: Any, lease: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", MEMBER_SCRIPT, json.dumps(config_dict(backend)), GROUP, "w2",
             str(lease)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip

    async def ready(self) -> None:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 30)
        assert line.strip() == "ready", self.process.stderr.read() if self.process.stderr else ""

    async def die(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(self.process.communicate)

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


class _OtherLoop:
    """For the memory store (one process only): a second bus on its own event loop in a thread,
    sharing the store, whose program simply ends without close()."""

    def __init__(self, backend: Any, lease: float) -> None:
        self._started = threading.Event()
        self._end = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(backend, lease), daemon=True)
        self._thread.start()

    def _run(self, backend: Any, lease: float) -> None:
        async def program() -> None:
            bus = EventBus(backend.config(), store=backend.new_store())
            await bus.initialize()
            await bus.subscribe_persistent(["*"], GROUP, "w2", lambda e: None, lease_seconds=lease)
            self._started.set()
            await asyncio.to_thread(self._end.wait, 60)

        try:
            asyncio.run(program())
        except BaseException as e:  # noqa: B036
            self.error = e
            self._started.set()

    async def ready(self) -> None:
        assert await asyncio.to_thread(self._started.wait, 30)
        assert self.error is None, self.error

    async def die(self) -> None:
        self._end.set()
        await asyncio.to_thread(self._thread.join, 30)
        assert not self._thread.is_alive()

    def cleanup(self) -> None:
        self._end.set()
        self._thread.join(30)


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the dead member's bus was never closed
async def test_stats_count_live_members_and_dead_ones_drop_out(make_bus: Any, backend: Any) -> None:
    lease = 0.5
    bus = await make_bus()
    await bus.subscribe_persistent(["*"], GROUP, "w1", lambda e: None, lease_seconds=lease)
    other = (_OtherLoop if backend.name == "memory" else _OtherProcess)(backend, lease)
    try:
        await other.ready()
        await wait_until(lambda: _consumers_are(bus, 2), timeout=10)
        await asyncio.sleep(3 * lease)  # live members stay counted past 2 x lease
        assert await consumers(bus) == 2
        await other.die()
        started = time.monotonic()
        await wait_until(lambda: _consumers_are(bus, 1), timeout=2 * lease + 3)
        assert time.monotonic() - started < 2 * lease + 3
        await asyncio.sleep(3 * lease)  # and the live one still is
        assert await consumers(bus) == 1
    finally:
        other.cleanup()
        gc.collect()


async def _consumers_are(bus: EventBus, n: int) -> bool:
    return await consumers(bus) == n


# -- supervision: a consumer task that ends anyway is restarted and counted ---------------------


def consumer_tasks(group: str, name: str) -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("eventkit-consumer:")
        and t.get_name().endswith(f"{group}:{name}")
    ]


async def restarts(bus: EventBus) -> int:
    value = (await bus.get_stats())["bus"]["consumer_restarts"]
    assert type(value) is int, value
    return value


@pytest.mark.timeout(30)
async def test_consumer_task_cancelled_from_outside_is_restarted_and_counted(
    make_bus: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventkit")
    bus = await make_bus()
    handled: Counter[str] = Counter()

    async def handler(event: BaseEvent) -> None:
        handled[event.event_id] += 1

    await bus.subscribe_persistent(["*"], GROUP, "w1", handler)
    first = discovered(1)
    await bus.publish(first)
    await wait_until(lambda: handled[first.event_id], timeout=5)
    assert await restarts(bus) == 0
    [task] = consumer_tasks(GROUP, "w1")
    task.cancel()  # not stop(), not close()
    await wait_until(lambda: _restarts_above(bus, 0), timeout=10)
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("eventkit")
    ]
    assert errors, caplog.text
    assert any("w1" in r.getMessage() for r in errors), [r.getMessage() for r in errors]
    await assert_alive(bus, handled)
    assert handled[first.event_id] == 1


class CrashError(BaseException):
    """Not an Exception: what a store call should never raise, so it gets past the consumer."""


@pytest.mark.timeout(30)
async def test_consumer_that_ends_by_an_exception_is_restarted_with_its_traceback_logged(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventkit")
    flaky = FlakyStore(backend.new_store(), fail={"claim": 1}, error=lambda name: CrashError(name))
    handled: Counter[str] = Counter()

    async def handler(event: BaseEvent) -> None:
        handled[event.event_id] += 1

    async with open_bus(backend, store=flaky) as bus:
        await bus.subscribe_persistent(["*"], GROUP, "w1", handler)
        await wait_until(flaky.exhausted, timeout=5)
        await assert_alive(bus, handled)  # the group still delivers, whatever happened
        count = await restarts(bus)
        if count:  # the worker ended: the supervisor logged why, with the traceback
            logged = [
                r
                for r in caplog.records
                if r.levelno == logging.ERROR and r.exc_info and r.exc_info[0] is CrashError
            ]
            assert logged, caplog.text
            assert "Traceback" in caplog.text
            assert count == 1


async def _restarts_above(bus: EventBus, n: int) -> bool:
    return await restarts(bus) > n


# -- refused at the door ------------------------------------------------------------------------


async def _not_stored(bus: EventBus, *events: BaseEvent) -> bool:
    return await bus.store.get_events([e.event_id for e in events]) == []


def _surrogate_events() -> list[tuple[str, BaseEvent]]:
    return [
        ("source", discovered(1, source="scan\udcffner")),
        ("payload", discovered(2, asset_id="asset-\ud800")),
        ("nested_value", discovered(3, metadata={"note": "x\udfffy"})),
        ("nested_key", discovered(4, metadata={"k\udcff": 1})),
    ]


@pytest.mark.parametrize("where", [w for w, _ in _surrogate_events()])
async def test_publish_refuses_lone_surrogates(bus: EventBus, where: str) -> None:
    event = dict(_surrogate_events())[where]
    total = (await bus.get_stats())["store"]["total_events"]
    with pytest.raises(SerializationError):
        await bus.publish(event)
    with pytest.raises(SerializationError):
        await bus.publish_many([discovered(10), event, discovered(11)])
    assert await _not_stored(bus, event)
    assert (await bus.get_stats())["store"]["total_events"] == total  # the batch: none of it


@pytest.mark.parametrize(
    "moment",
    [
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),  # year 10000 in UTC
        datetime(1, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))),  # year 0 in UTC
    ],
    ids=["after_9999", "before_1"],
)
async def test_publish_refuses_timestamps_outside_years_1_to_9999(
    bus: EventBus, moment: datetime
) -> None:
    event = discovered(1)
    event.timestamp = moment  # set after creation, as user code may
    with pytest.raises(SerializationError):
        await bus.publish(event)
    assert await _not_stored(bus, event)


@pytest.mark.parametrize("event_type", ["", "asset\x00discovered"], ids=["empty", "nul"])
async def test_publish_refuses_bad_event_type_names(bus: EventBus, event_type: str) -> None:
    try:
        event = Event(event_type=event_type, source="s", data={"x": 1})
    except ConfigError:
        return  # refused even earlier, when the event was made: it cannot reach the store
    with pytest.raises(ConfigError):
        await bus.publish(event)
    with pytest.raises(ConfigError):
        await bus.publish_many([discovered(1), event])
    assert await _not_stored(bus, event)
    assert (await bus.get_stats())["store"]["total_events"] == 0


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("consumer_group", ""),
        ("consumer_group", "g\x00x"),
        ("consumer_name", ""),
        ("consumer_name", "w\x00"),
        ("event_types", [""]),
        ("event_types", ["asset\x00discovered"]),
    ],
    ids=["group-empty", "group-nul", "name-empty", "name-nul", "type-empty", "type-nul"],
)
async def test_subscribe_refuses_bad_names(bus: EventBus, argument: str, value: Any) -> None:
    kwargs: dict[str, Any] = {
        "event_types": ["*"], "consumer_group": GROUP, "consumer_name": "w1",
        "handler": lambda e: None,
    }  # fmt: skip
    kwargs[argument] = value
    with pytest.raises(ConfigError):
        await bus.subscribe_persistent(**kwargs)
    assert await bus.store.groups() == []  # nothing was created


BAD_NUMBERS = [
    *(
        (name, value)
        for name in ("lease_seconds", "retry_delay", "max_retry_delay")
        for value in (math.nan, math.inf, -math.inf, True, -1.0)
    ),
    ("batch_size", True),
    ("batch_size", 0),
    ("batch_size", -1),
    ("max_retries", True),
    ("max_retries", -1),
]


@pytest.mark.parametrize(("argument", "value"), BAD_NUMBERS, ids=lambda v: repr(v))
async def test_subscribe_refuses_bad_numbers(bus: EventBus, argument: str, value: Any) -> None:
    with pytest.raises(ConfigError) as raised:
        await bus.subscribe_persistent(["*"], GROUP, "w1", lambda e: None, **{argument: value})
    assert isinstance(raised.value, ValueError)
    assert await bus.store.groups() == []


@pytest.mark.parametrize("value", [math.nan, math.inf, True, -1], ids=repr)
async def test_trim_refuses_bad_ages(bus: EventBus, value: Any) -> None:
    await bus.publish(discovered(1))
    with pytest.raises(ConfigError):
        await bus.trim_old_events(value)
    assert (await bus.get_stats())["store"]["total_events"] == 1


@pytest.mark.parametrize("value", [math.nan, True], ids=repr)
async def test_wait_idle_refuses_bad_timeouts(bus: EventBus, value: Any) -> None:
    with pytest.raises(ConfigError):
        await bus.wait_idle(GROUP, timeout=value)


@pytest.mark.parametrize("limit", [-1, True], ids=repr)
async def test_replay_refuses_bad_limits(bus: EventBus, limit: Any) -> None:
    with pytest.raises((ConfigError, TypeError)):
        await bus.replay_events(["*"], lambda e: None, limit=limit)


# -- wait_idle is bounded ------------------------------------------------------------------------


async def _timed(call: Awaitable[bool]) -> tuple[bool, float]:
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


@pytest.mark.timeout(30)
async def test_wait_idle_returns_within_its_timeout_when_busy(bus: EventBus) -> None:
    started = asyncio.Event()

    async def hang(event: BaseEvent) -> None:
        started.set()
        await asyncio.sleep(60)

    await bus.subscribe_persistent(["*"], GROUP, "w1", hang)
    await bus.publish(discovered(1))
    await asyncio.wait_for(started.wait(), 5)  # in flight
    for timeout in (0.0, 0.5):
        idle, took = await _timed(bus.wait_idle(GROUP, timeout=timeout))
        assert idle is False
        assert took < timeout + 1, took
    await bus.store.ensure_group("lagging", ["*"])  # unread, nobody consuming
    await bus.publish(discovered(2))
    idle, took = await _timed(bus.wait_idle("lagging", timeout=0.3))
    assert idle is False and took < 1.3, took


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", ["failing", "hanging"])
async def test_wait_idle_returns_false_within_its_timeout_when_the_store_fails(
    backend: Any, fault: str
) -> None:
    flaky = FlakyStore(backend.new_store())
    async with open_bus(backend, store=flaky) as bus:
        await bus.subscribe_persistent(["*"], GROUP, "w1", lambda e: None)
        if fault == "failing":
            flaky.fail["is_idle"] = 10**9
        else:
            flaky.slow["is_idle"] = 20.0
        idle, took = await _timed(bus.wait_idle(GROUP, timeout=0.5))
        assert idle is False
        assert took < 1.5, took
        flaky.fail.pop("is_idle", None)
        flaky.slow.clear()
