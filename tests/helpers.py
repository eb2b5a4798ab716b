"""Small helpers shared by tests: sample events, recording handlers, polling waits."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from eventkit import BaseEvent, create_event
from eventkit.codec import encode
from eventkit.events import AssetDiscoveredEvent, WorkflowStartedEvent
from eventkit.stores.base import NewEvent
from eventkit.stores.sqlite_sql import MIGRATIONS

T = TypeVar("T")


def discovered(i: int = 0, **overrides: Any) -> AssetDiscoveredEvent:
    fields: dict[str, Any] = {
        "asset_id": f"asset-{i}",
        "file_path": f"/data/img-{i}.jpg",
        "media_type": "image",
        "file_size": 1000 + i,
        "metadata": {"width": 1920, "height": 1080, "n": i},
    }
    fields.update(overrides)
    source = fields.pop("source", "scanner")
    return create_event(AssetDiscoveredEvent, source=source, **fields)


def started(i: int = 0, timestamp: datetime | None = None) -> WorkflowStartedEvent:
    event = create_event(
        WorkflowStartedEvent, source="orchestrator", workflow_id=f"wf-{i}", workflow_type="ingest"
    )
    if timestamp is not None:
        event.timestamp = timestamp
        event.__post_init__()
    return event


def new_events(n: int, event_type_every: int = 0) -> list[NewEvent]:
    """Encoded events ready for store.append; every k-th is a workflow.started when k > 0."""
    out = []
    for i in range(n):
        use_workflow = event_type_every and i % event_type_every == 0
        out.append(encode(started(i) if use_workflow else discovered(i)))
    return out


class Recorder:
    """A handler that records what it got, and can fail the first `fail_times` attempts per event."""

    def __init__(self, fail_times: int = 0, fail_ids: set[str] | None = None) -> None:
        self.events: list[BaseEvent] = []
        self.attempts: dict[str, int] = {}
        self.times: dict[str, list[float]] = {}
        self.fail_times = fail_times
        self.fail_ids = fail_ids

    async def handle_event(self, event: BaseEvent) -> None:
        self.attempts[event.event_id] = self.attempts.get(event.event_id, 0) + 1
        self.times.setdefault(event.event_id, []).append(time.monotonic())
        should_fail = self.fail_ids is None or event.event_id in self.fail_ids
        if should_fail and self.attempts[event.event_id] <= self.fail_times:
            raise RuntimeError(f"flaky failure #{self.attempts[event.event_id]}")
        self.events.append(event)

    @property
    def ids(self) -> list[str]:
        return [e.event_id for e in self.events]


async def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll a (sync or async) condition until it is true; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


def all_of(kind: type[T], items: Iterable[object]) -> list[T]:
    """The items as a list, each asserted to be an instance of `kind` (narrows the type)."""
    checked: list[T] = []
    for item in items:
        assert isinstance(item, kind), f"expected {kind.__name__}, got {item!r}"
        checked.append(item)
    return checked


# -- fault injection (SPEC §7) ----------------------------------------------------------------


def _store_methods() -> tuple[str, ...]:
    """The async methods of the store protocol (base.EventStore), read from the protocol itself so
    a method added there is wrapped too."""
    import inspect

    from eventkit.stores.base import EventStore

    return tuple(
        name
        for name, value in vars(EventStore).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(value)
    )


class FlakyStore:
    """A store that delegates every protocol method to a real store, and makes chosen methods
    fail for their first N calls: `FlakyStore(store, fail={"ack": 3, "claim": 2})`.

    The failure is `StoreUnavailableError` (as a store outage gives), or what `error(name)` makes.
    `calls[name]` counts every call of a method (failed ones included), `failures[name]` the
    injected failures, so a test can see that a failed call was tried again.
    """

    def __init__(
        self,
        inner: Any,
        fail: dict[str, int] | None = None,
        *,
        error: Callable[[str], BaseException] | None = None,
    ) -> None:
        from collections import Counter

        self.inner = inner
        self.fail = dict(fail or {})
        unknown = set(self.fail) - set(_store_methods())
        if unknown:
            raise ValueError(f"not store protocol methods: {sorted(unknown)}")
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._error = error or _unavailable
        #: seconds a method sleeps before it delegates (a store that hangs, e.g. reconnecting)
        self.slow: dict[str, float] = {}

    @property
    def backend(self) -> str:
        return str(self.inner.backend)

    @property
    def blocking_claims(self) -> bool:
        return bool(self.inner.blocking_claims)

    @property
    def prefetch_turns(self) -> int:
        return int(self.inner.prefetch_turns)

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls[name] += 1
        if name in self.slow:
            await asyncio.sleep(self.slow[name])
        if self.failures[name] < self.fail.get(name, 0):
            self.failures[name] += 1
            raise self._error(name)
        return await getattr(self.inner, name)(*args, **kwargs)

    def exhausted(self) -> bool:
        """True once every injected failure has happened."""
        return all(self.failures[name] >= n for name, n in self.fail.items())

    def __getattr__(self, name: str) -> Any:  # anything else a store has (path, namespace...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"FlakyStore({self.inner!r}, fail={self.fail!r})"


def _unavailable(name: str) -> BaseException:
    from eventkit.errors import StoreUnavailableError

    return StoreUnavailableError(f"injected fault: {name} failed (FlakyStore)")


def _delegate(name: str) -> Callable[..., Any]:
    async def method(self: FlakyStore, *args: Any, **kwargs: Any) -> Any:
        return await self._call(name, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


for _name in _store_methods():
    setattr(FlakyStore, _name, _delegate(_name))
del _name


def kill_redis_server(server: Any) -> None:
    """SIGKILL a tests.redis_server.RedisServer (no AOF flush, no goodbye) and reap it; start()
    brings it back on the same port and data directory."""
    import signal

    process = server._process
    assert process is not None and process.poll() is None, "redis-server is not running"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    server._process = None


def schema_file(path: Path, step: int) -> sqlite3.Connection:
    """A SQLite store file as schema step `step` left it (no later step run), for upgrade tests:
    an autocommit connection in WAL mode, to write that step's rows with."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode = WAL")
    for number, statements in MIGRATIONS:
        if number <= step:
            for statement in statements:
                raw.execute(statement)
    raw.execute(f"PRAGMA user_version = {step}")
    return raw
