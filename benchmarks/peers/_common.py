"""Shared by the peer scripts (standard library only: each runs in its own peer's venv).

Every script measures what applies of: publish one by one, publish in batches of PUBLISH_BATCH,
consume+ack of what is stored, and publish→handler latency at one event every LATENCY_GAP, on the
same ~370-byte event eventkit publishes in bench_core.py, and prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

PUBLISH_BATCH = 1_000  # as bench_core.PUBLISH_BATCH
CONSUME_BATCH = 500  # as bench_core.CONSUME_BATCH, where a peer lets the reader choose
LATENCY_GAP = 0.005  # as bench_core.LATENCY_GAP
LATENCY_WARMUP = 20  # as bench_core.bus_latency: the first few warm up the path
WARM = 200  # events published before a timed publish


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000, help="events per measure")
    parser.add_argument("--latency", type=int, default=300, help="events for the latency measure")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--workdir", default=".", help="a fresh folder for SQLite files")
    parser.add_argument("--tag", default="r0", help="unique per run: key and file prefix")
    parser.add_argument("--backend", default="", help="eventkit only: sqlite or redis")
    return parser.parse_args()


def make_events(count: int, tag: str = "") -> list[dict[str, Any]]:
    """bench_core.make_events's event with its envelope, as a peer is handed it: ~370 B of JSON."""
    now_ms = int(time.time() * 1000)
    events = []
    for i in range(count):
        event_id = uuid.uuid4().hex
        events.append({
            "event_id": event_id,
            "event_type": "asset.discovered",
            "version": 1,
            "source": "bench",
            "timestamp_ms": now_ms + i,
            "data": {
                "asset_id": f"asset-{tag}{i:07d}",
                "file_path": f"/media/incoming/2024/06/{tag}{i:07d}.jpg",
                "media_type": "image/jpeg",
                "file_size": 1_000_000 + i,
                "metadata": {"width": 4000, "height": 3000, "camera": "X-T5", "tags": ["raw", "hdr"]},
            },
        })  # fmt: skip
    return events


def event_bytes() -> int:
    """Its size as json.dumps writes it by default."""
    return len(json.dumps(make_events(1, "0")[0]))


def rate(count: int, seconds: float) -> float:
    return count / seconds


def start_clock() -> float:
    gc.collect()
    return time.perf_counter()


def quantiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms as bench_core.bus_latency takes them (after the warm-up events)."""
    measured = sorted(latencies[LATENCY_WARMUP:])
    p50 = measured[len(measured) // 2] * 1000
    p99 = measured[min(len(measured) - 1, int(len(measured) * 0.99))] * 1000
    return p50, p99


class Latency:
    """Send times by event id; the handler calls `seen` with the event id it was given."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.latencies: list[float] = []

    def mark(self, event: dict[str, Any]) -> None:
        self.sent[event["event_id"]] = time.perf_counter()

    def seen(self, event_id: str) -> None:
        sent = self.sent.get(event_id)
        if sent is not None:
            self.latencies.append(time.perf_counter() - sent)


def dist_version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def report(library: str, version: str, backend: str, figures: dict[str, Any], **extra: Any) -> None:
    """The one JSON line bench_peers.py reads (the last line of stdout)."""
    out = {"library": library, "version": version, "backend": backend, **figures, **extra}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.0005)
