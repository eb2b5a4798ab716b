"""Small helpers shared by tests: sample events, recording handlers, polling waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from eventkit import BaseEvent, create_event
from eventkit.codec import encode
from eventkit.events import AssetDiscoveredEvent, WorkflowStartedEvent
from eventkit.stores.base import NewEvent

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
