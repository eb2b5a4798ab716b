"""SPEC §7 Exit: a program that ends without close() — normally or by an exception — exits, on
every backend, and its leases expire as after a crash (nothing acked, nothing lost)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from eventkit import BaseEvent, Delivery
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]
EXIT_WITHIN = 20.0

# argv: config JSON, mode (raise | return | raise-in-flight)
SCRIPT = """
import asyncio, json, sys
from eventkit import EventBus, EventStoreConfig
from tests.helpers import discovered

async def main(config, mode):
    bus = EventBus(EventStoreConfig(**config))
    await bus.initialize()
    started, handled = asyncio.Event(), asyncio.Event()

    async def handler(event):
        started.set()
        if mode == "raise-in-flight":
            print("started", event.event_id, flush=True)
            await asyncio.sleep(3600)
        handled.set()

    await bus.subscribe_persistent(["*"], "exit-group", "doomed", handler, lease_seconds=1.0)
    await bus.publish(discovered(1))
    await asyncio.wait_for(started.wait() if mode == "raise-in-flight" else handled.wait(), 10)
    print("handled", flush=True)
    if mode != "return":
        raise RuntimeError("boom before close")

asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2]))
"""


def _config(backend: Any) -> dict[str, Any]:
    return {
        "backend": backend.name, "path": str(backend.path), "redis_url": backend.redis_url,
        "namespace": backend.namespace, "trim_interval_hours": None, "poll_interval_seconds": 0.05,
    }  # fmt: skip


async def _run(backend: Any, mode: str) -> subprocess.CompletedProcess[str]:
    try:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", SCRIPT, json.dumps(_config(backend)), mode],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
            text=True, timeout=EXIT_WITHIN,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:  # subprocess.run killed it
        pytest.fail(
            f"{mode}: the program did not exit within {EXIT_WITHIN} s without close() "
            f"(stdout {e.stdout!r}, stderr {e.stderr!r})"
        )


@pytest.mark.timeout(60)
async def test_program_that_raises_before_close_exits(backend: Any) -> None:
    done = await _run(backend, "raise")
    assert "handled" in done.stdout, done.stderr
    assert done.returncode != 0
    assert "boom before close" in done.stderr, done.stderr


@pytest.mark.timeout(60)
async def test_program_that_returns_without_close_exits(backend: Any) -> None:
    done = await _run(backend, "return")
    assert "handled" in done.stdout, done.stderr
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
async def test_event_in_flight_when_a_program_dies_comes_back(backend: Any, make_bus: Any) -> None:
    done = await _run(backend, "raise-in-flight")
    assert done.returncode != 0 and "boom before close" in done.stderr, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("started")]
    in_flight = line.split()[1]

    bus = await make_bus()
    attempts: dict[str, list[int]] = defaultdict(list)

    async def survivor(event: BaseEvent, delivery: Delivery) -> None:
        attempts[event.event_id].append(delivery.attempt)

    await bus.subscribe_persistent(["*"], "exit-group", "survivor", survivor, lease_seconds=1.0)
    await wait_until(lambda: attempts[in_flight], timeout=10)  # neither acked nor lost
    assert await bus.wait_idle("exit-group", timeout=10)
    assert await bus.get_pending_events("exit-group") == 0
    assert list(attempts) == [in_flight]
