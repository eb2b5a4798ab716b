"""What codec's fast decode path (codec._instance_template) pays for: decodes per second of stored
sample events with it and without it, alternating in one run.

    .venv/bin/python benchmarks/bench_codec.py

The path fills a dataclass instance's __dict__ from a template instead of calling the generated
__init__; it relies on how dataclasses generates __init__ (tests/test_codec.py fails loudly if
CPython changes that). Decoding is most of a consumer's work on the memory backend, so this row
is the one that keeps the trick.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventkit import codec  # noqa: E402
from eventkit.events import AssetDiscoveredEvent  # noqa: E402
from eventkit.records import StoredEvent  # noqa: E402

EVENTS = 50_000
ROUNDS = 5


def stored_sample() -> list[StoredEvent]:
    stored = []
    for i in range(EVENTS):
        event = AssetDiscoveredEvent(
            asset_id=f"asset-{i}", file_path=f"/media/{i}.jpg", media_type="image", file_size=i
        )
        new = codec.encode(event)
        stored.append(new.stored(i + 1, new.timestamp_ms))
    return stored


def decodes_per_second(stored: list[StoredEvent], fast: bool, template: object) -> float:
    codec._instance_template = template if fast else (lambda cls: None)  # type: ignore[assignment]
    codec._PLANS.clear()  # plans are made again with or without the template
    started = time.perf_counter()
    for event in stored:
        codec.decode(event)
    return len(stored) / (time.perf_counter() - started)


def main() -> None:
    stored = stored_sample()
    template = codec._instance_template
    figures: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(ROUNDS):
        for fast in (True, False):
            figures[fast].append(decodes_per_second(stored, fast, template))
    codec._instance_template = template
    fast, plain = (statistics.median(figures[f]) for f in (True, False))
    print("| measure | with the fast path | without | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| codec.decode, {EVENTS:,} asset.discovered (median of {ROUNDS}) | {fast:,.0f}/s "
          f"| {plain:,.0f}/s | {fast / plain:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
