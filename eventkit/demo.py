"""The demo job: a realistic asset pipeline through two consumer groups, one of them flaky."""

from __future__ import annotations

import asyncio
import random
import shlex
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventkit.bus import EventBus
from eventkit.config import EventStoreConfig
from eventkit.events import (
    AssetDiscoveredEvent,
    AssetProcessedEvent,
    BaseEvent,
    QualityAssessedEvent,
    WorkflowCompletedEvent,
    WorkflowFailedEvent,
    WorkflowStartedEvent,
)
from eventkit.progress import ProgressLine

SOURCES = ("scanner-nas", "scanner-cloud", "upload-api", "camera-sync")
MEDIA = (("image", ".jpg"), ("image", ".png"), ("video", ".mp4"), ("audio", ".wav"))
TOO_LARGE = 400_000_000  # bytes: the thumbnailer refuses these, so they end in its DLQ
ASSET_TYPES = ["asset.discovered", "asset.processed", "quality.assessed"]


def sample_events(count: int, seed: int = 7, start: datetime | None = None) -> Iterator[BaseEvent]:
    """A deterministic stream of pipeline events: discovered -> processed -> assessed, plus
    workflows that start and complete or fail."""
    rng = random.Random(seed)
    moment = start or datetime.now(UTC) - timedelta(hours=2)
    produced = 0
    asset = 0
    while produced < count:
        asset += 1
        asset_id = f"asset-{asset:06d}"
        media_type, ext = rng.choice(MEDIA)
        size = int(rng.lognormvariate(14, 1.6))
        if asset % 37 == 0:  # about 1 % of events: poison for the thumbnailer
            size = TOO_LARGE + rng.randrange(10**8)
        moment += timedelta(milliseconds=rng.randrange(50, 4000))
        batch: list[BaseEvent] = [
            AssetDiscoveredEvent(
                source=rng.choice(SOURCES), timestamp=moment, asset_id=asset_id,
                file_path=f"/library/{moment:%Y/%m/%d}/{asset_id}{ext}", media_type=media_type,
                file_size=size, metadata={"width": rng.choice((1280, 1920, 3840)), "height": 1080},
            ),
            AssetProcessedEvent(
                source="processor", timestamp=moment + timedelta(seconds=2), asset_id=asset_id,
                output_path=f"/processed/{asset_id}{ext}",
                processing_time_ms=round(rng.uniform(20, 900), 1), operations=["resize", "strip-exif"],
            ),
            QualityAssessedEvent(
                source="quality", timestamp=moment + timedelta(seconds=3), asset_id=asset_id,
                score=round(rng.betavariate(5, 2), 3),
                issues=rng.sample(["blur", "noise", "low-light", "crop"], rng.randrange(3)),
            ),
        ]  # fmt: skip
        if asset % 10 == 0:
            workflow_id = f"wf-{asset // 10:05d}"
            batch.append(
                WorkflowStartedEvent(
                    source="orchestrator", timestamp=moment, workflow_id=workflow_id,
                    workflow_type=rng.choice(["ingest", "reindex", "export"]),
                    input_data={"assets": 10},
                )
            )  # fmt: skip
            if rng.random() < 0.9:
                batch.append(
                    WorkflowCompletedEvent(
                        source="orchestrator", timestamp=moment + timedelta(seconds=30),
                        workflow_id=workflow_id, duration_ms=rng.uniform(1e3, 3e4),
                    )
                )  # fmt: skip
            else:
                batch.append(
                    WorkflowFailedEvent(
                        source="orchestrator", timestamp=moment + timedelta(seconds=30),
                        workflow_id=workflow_id, error_message="worker lost", error_type="Timeout",
                    )
                )  # fmt: skip
        yield from batch[: count - produced]
        produced += min(len(batch), count - produced)


class Catalog:
    """A reliable consumer: indexes every asset event."""

    event_types = ASSET_TYPES

    def __init__(self) -> None:
        self.indexed = 0

    async def handle_event(self, event: BaseEvent) -> None:
        self.indexed += 1


class FlakyThumbnailer:
    """Fails now and then (retried with backoff) and always on huge files (dead-lettered)."""

    event_types = ["asset.discovered"]

    def __init__(self, failure_rate: float = 0.1, seed: int = 11) -> None:
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate

    async def handle_event(self, event: BaseEvent) -> None:
        assert isinstance(event, AssetDiscoveredEvent)
        if event.file_size >= TOO_LARGE:
            raise ValueError(f"{event.file_size} bytes is too large to thumbnail")
        if self.rng.random() < self.failure_rate:
            raise ConnectionError("thumbnail service timed out")
        await asyncio.sleep(0)


async def run_demo(
    path: Path,
    events: int = 3000,
    report_dir: Path | None = None,
    out: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Publish, consume with two groups, then print stats and the DLQ; returns the stats."""
    config = EventStoreConfig(backend="sqlite", path=path, trim_interval_hours=None)
    progress = ProgressLine()
    async with EventBus(config) as bus:
        out(f"eventkit demo: store {path} (SQLite, WAL)")
        batch: list[BaseEvent] = []
        published = 0
        for event in sample_events(events):
            batch.append(event)
            if len(batch) == 500:
                published += len(await bus.publish_many(batch))
                batch.clear()
                progress.update(f"published {published}/{events} events")
        published += len(await bus.publish_many(batch))
        progress.done(f"published {published}/{events} events")

        catalog = Catalog()
        for i in range(2):
            await bus.subscribe_persistent(ASSET_TYPES, "catalog", f"catalog-{i}", catalog, 50)
            await bus.subscribe_persistent(
                ["asset.discovered"], "thumbnails", f"thumbs-{i}", FlakyThumbnailer(seed=i),
                batch_size=20, max_retries=2, retry_delay=0.05, max_retry_delay=0.5,
            )  # fmt: skip
        while not await bus.wait_idle(timeout=0.25):
            stats = await bus.get_stats()
            progress.update(_progress_text(stats))
        stats = await bus.get_stats()
        progress.done(_progress_text(stats))
        _print_stats(stats, out)
        await _print_dlq(bus, "thumbnails", path, out)
        if report_dir is not None:
            await _write_report(bus, report_dir, out)
        return stats


def _progress_text(stats: dict[str, Any]) -> str:
    parts = [
        f"{name}: {g['acked']} acked, {g['in_flight']} in flight, {g['lag']} unread, {g['dlq']} in DLQ"
        for name, g in stats["groups"].items()
    ]
    return "consuming | " + " | ".join(parts)


def _print_stats(stats: dict[str, Any], out: Callable[[str], Any]) -> None:
    store = stats["store"]
    out("")
    out(
        f"store: {store['backend']}, {store['total_events']} events, "
        f"{store['in_flight_events']} in flight, {store['dlq_events']} in DLQ"
    )
    out(
        f"{'group':<12} {'delivered':>9} {'acked':>7} {'retried':>7} {'dlq':>5} {'lag':>5} consumers"
    )
    for name, g in stats["groups"].items():
        out(
            f"{name:<12} {g['delivered']:>9} {g['acked']:>7} {g['retried']:>7} {g['dlq']:>5} "
            f"{g['lag']:>5} {g['consumers']:>9}"
        )


async def _print_dlq(bus: EventBus, group: str, path: Path, out: Callable[[str], Any]) -> None:
    letters = await bus.store.get_pending_events(group)
    out("")
    out(f"dead-letter queue of {group!r}: {len(letters)} entries")
    for letter in letters[:10]:
        out(f"  {letter.event_id}  attempts={letter.attempts}  {letter.last_error}")
    if len(letters) > 10:
        out(f"  ... and {len(letters) - 10} more (dlq_frame() in a notebook shows them all)")
    if letters:
        command = f"eventkit dlq {group} --path {shlex.quote(str(path))} --replay"
        out(f"  replay them with: {command}   (or bus.replay_dlq({group!r}))")


async def _write_report(bus: EventBus, report_dir: Path, out: Callable[[str], Any]) -> None:
    try:
        from eventkit.report import write_report
    except ImportError as e:
        out(f"\nno report: {e.name} is missing; pip install 'eventkit[notebook]' to get one")
        return
    written = await write_report(bus, report_dir)
    out(f"\nreport written to {report_dir}/: " + ", ".join(p.name for p in written))
