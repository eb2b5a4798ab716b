"""Draw docs/figures/trace.png: plot_trace of one failed workflow's story from data/sample_events.jsonl.

    .venv/bin/python scripts/make_trace_figure.py

The story's events are published again in causal order, a moment apart (as its services would),
to a memory bus with three consumer groups: "indexer" (asset events; its first try of each
asset.processed fails, the retry succeeds), "quality-report" (quality.assessed, slow) and
"notifier" (workflow events; it cannot handle workflow.failed, which goes to its DLQ).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from eventkit import BaseEvent, EventBus, EventStoreConfig  # noqa: E402
from eventkit.events import event_from_dict  # noqa: E402
from eventkit.frames import trace_frame  # noqa: E402
from eventkit.frames_trace import causal_order  # noqa: E402
from eventkit.plots import plot_trace  # noqa: E402
from eventkit.records import StoredEvent  # noqa: E402

SAMPLE = ROOT / "data" / "sample_events.jsonl"
OUT = ROOT / "docs" / "figures" / "trace.png"


def failed_story() -> list[dict[str, Any]]:
    """The first failed workflow (in file order) whose story has two assets or more."""
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    stories: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        stories.setdefault(record["correlation_id"], []).append(record)
    for record in records:
        story = stories[record["correlation_id"]]
        assets = sum(r["event_type"] == "asset.discovered" for r in story)
        if record["event_type"] == "workflow.failed" and assets >= 2 and len(story) <= 10:
            return story
    raise SystemExit("no failed workflow with two assets in the sample")


async def main() -> None:
    story = failed_story()
    as_stored = [StoredEvent(n, r["event_id"], "", 1, "", 0, "", 0, r["correlation_id"],
                             r["causation_id"]) for n, r in enumerate(story)]  # fmt: skip
    ordered, _ = causal_order(as_stored)
    by_id = {r["event_id"]: r for r in story}
    tried: set[str] = set()

    async def indexer(event: BaseEvent) -> None:
        if event.event_type == "asset.processed" and event.event_id not in tried:
            tried.add(event.event_id)
            raise ConnectionError("search index not reachable")
        await asyncio.sleep(0.02)

    async def quality_report(event: BaseEvent) -> None:
        await asyncio.sleep(0.15)

    async def notifier(event: BaseEvent) -> None:
        if event.event_type == "workflow.failed":
            raise KeyError("no template for workflow.failed")

    config = EventStoreConfig(backend="memory", trim_interval_hours=None)
    async with EventBus(config) as bus:
        await bus.subscribe_persistent(["asset.discovered", "asset.processed"], "indexer", "i1",
                                       indexer, retry_delay=0.25)  # fmt: skip
        await bus.subscribe_persistent(["quality.assessed"], "quality-report", "q1",
                                       quality_report)  # fmt: skip
        await bus.subscribe_persistent(["workflow.started", "workflow.completed",
                                        "workflow.failed"], "notifier", "n1", notifier,
                                       max_retries=2, retry_delay=0.2)  # fmt: skip
        for stored in ordered:
            await bus.publish(event_from_dict(by_id[stored.event_id]))
            await asyncio.sleep(0.3)
        await bus.wait_idle(timeout=30)
        frame = await trace_frame(bus, event_id=story[-1]["event_id"])
    ax = plot_trace(frame)
    ax.figure.savefig(OUT, dpi=100)
    print(f"wrote {OUT} ({len(frame)} rows, {frame['step'].nunique()} events)")


if __name__ == "__main__":
    asyncio.run(main())
