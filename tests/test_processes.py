"""Several OS processes on one store: work sharing, and a worker killed with SIGKILL mid-handler."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eventkit import BaseEvent, Delivery
from tests.helpers import discovered, wait_until

ROOT = Path(__file__).resolve().parents[1]
SHARED_BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)


def _spawn(backend: Any, group: str, name: str, mode: str) -> subprocess.Popen[str]:
    config = {
        "backend": backend.name, "path": str(backend.path), "redis_url": backend.redis_url,
        "namespace": backend.namespace, "trim_interval_hours": None, "poll_interval_seconds": 0.05,
    }  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_process", json.dumps(config), group, name, mode],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@SHARED_BACKENDS
async def test_two_processes_split_a_group_without_duplicates(backend: Any, make_bus: Any) -> None:
    bus = await make_bus()
    await bus.store.ensure_group("split", ["*"])
    events = [discovered(i) for i in range(300)]
    await bus.publish_many(events)
    workers = [_spawn(backend, "split", f"proc-{i}", "work") for i in range(2)]
    outputs = [await asyncio.to_thread(w.communicate, timeout=60) for w in workers]
    handled = [
        line.split()[1]
        for out, _ in outputs
        for line in out.splitlines()
        if line.startswith("handled")
    ]
    assert all(w.returncode == 0 for w in workers), [err for _, err in outputs]
    assert sorted(handled) == sorted(e.event_id for e in events)  # each once, none lost
    per_worker = [
        sum(1 for line in out.splitlines() if line.startswith("handled")) for out, _ in outputs
    ]
    assert all(count > 0 for count in per_worker), per_worker  # both took a share


@SHARED_BACKENDS
async def test_sigkill_mid_handler_loses_nothing_and_counts_the_attempt(
    backend: Any, make_bus: Any
) -> None:
    bus = await make_bus()
    await bus.store.ensure_group("crash", ["*"])
    events = [discovered(i) for i in range(20)]
    await bus.publish_many(events)
    worker = _spawn(backend, "crash", "doomed", "hang")
    assert worker.stdout is not None
    first = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 30)
    _, killed_id, attempt = first.split()
    assert attempt == "1"
    worker.send_signal(signal.SIGKILL)
    await asyncio.to_thread(worker.communicate)
    assert worker.returncode == -signal.SIGKILL

    attempts: dict[str, list[int]] = {}

    async def survivor(event: BaseEvent, delivery: Delivery) -> None:
        attempts.setdefault(event.event_id, []).append(delivery.attempt)

    await bus.subscribe_persistent(["*"], "crash", "survivor", survivor, lease_seconds=1.0)
    await wait_until(lambda: len(attempts) == 20, timeout=30)
    assert await bus.wait_idle("crash", timeout=10)
    assert sorted(attempts) == sorted(e.event_id for e in events)
    assert attempts[killed_id] == [2]  # the crash counted as an attempt
    stats = (await bus.get_stats())["groups"]["crash"]
    assert stats["acked"] == 20 and stats["pending"] == 0 and stats["dlq"] == 0
