"""Write data/sample_events.jsonl: a week of a media-asset pipeline, deterministic (fixed seed and start).

    .venv/bin/python data/make_sample_events.py

Each workflow is one story: ``workflow.started``, then for each asset of its batch (found by one
of several sources) ``asset.discovered`` -> ``asset.processed`` -> ``quality.assessed``, then
``workflow.completed`` or ``workflow.failed``. Every event of a story carries the workflow's
first event id as ``correlation_id`` and its parent's id as ``causation_id`` (what a handler that
publishes the next step gets from eventkit). All ``quality.assessed`` are stored at version 1,
about a fifth without ``issues``, so a v1->v2->v3 migration has work to do; a failed workflow's
last asset stalled before processing, and its failure names that asset's discovery as its cause.
A few poison events, each its own story, are mixed in for the notebooks' DLQ: markup in a path
(``<script>alert(1)</script>``), empty paths, negative or non-integer file sizes, and one
``quality.assessed`` stored at version 9, newer than any code knows. Records have the shape of
``eventkit.transfer.jsonl_record``; lines are in timestamp order, which becomes publish order.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("sample_events.jsonl")
SEED = 20262331
START = datetime(2026, 11, 2, tzinfo=UTC)
DAYS = 7
ASSETS = 1200
WORKFLOWS = 320
SOURCES = {"scanner-nas": 5, "scanner-cloud": 3, "upload-api": 2, "mobile-sync": 2}
ALBUMS = ("harbour", "studio", "mountain", "city", "forest", "portraits", "family", "archive")
MEDIA = {"image": ("jpg", "png", "heic"), "video": ("mp4", "mov"), "audio": ("wav", "flac")}
ISSUES = ("blurry", "underexposed", "overexposed", "noisy", "low_resolution", "tilted")
WORKFLOW_TYPES = ("import", "thumbnail_batch", "face_index", "backup", "transcode")
FAILURES = (
    ("TimeoutError", "storage backend did not answer within 30 s"),
    ("PermissionError", "read access denied on /mnt/nas/archive"),
    ("ValueError", "unsupported codec in input"),
)


class Log:
    """Events collected with ids drawn from the seeded generator, so every run writes the same file."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.records: list[dict[str, Any]] = []

    def add(self, event_type: str, at: datetime, source: str, data: dict[str, Any],
            version: int = 1, cause: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        """The record, in the story of `cause` (its parent) or starting its own."""
        event_id = uuid.UUID(int=self.rng.getrandbits(128), version=4).hex
        timestamp = int(at.timestamp() * 1000)
        correlation_id = event_id if cause is None else cause["correlation_id"]
        record = {"event_id": event_id, "event_type": event_type, "version": version,
                  "source": source, "timestamp": timestamp, "correlation_id": correlation_id,
                  "causation_id": None if cause is None else cause["event_id"], "data": data}  # fmt: skip
        self.records.append(record)
        return record


def moment(rng: random.Random) -> datetime:
    """A time in the week, busier in working hours."""
    day = rng.randrange(DAYS)
    hour = rng.choices(range(24), weights=[1] * 7 + [4] * 12 + [2] * 5)[0]
    return START + timedelta(days=day, hours=hour, seconds=rng.uniform(0, 3600))


def metadata(rng: random.Random, media_type: str) -> dict[str, Any]:
    if media_type == "image":
        width, height = rng.choice(((4032, 3024), (3024, 4032), (1920, 1080), (6000, 4000)))
        return {"width": width, "height": height,
                "exif": {"camera": rng.choice(("Pixel 9", "iPhone 17", "X-T5", "A7 IV")),
                         "iso": rng.choice((100, 200, 400, 800, 1600))}}  # fmt: skip
    if media_type == "video":
        return {"width": 3840, "height": 2160, "duration_s": round(rng.uniform(3, 600), 1)}
    return {"duration_s": round(rng.uniform(10, 900), 1), "bitrate_kbps": rng.choice((320, 1411))}


def asset(
    log: Log, n: int, found: datetime, started: dict[str, Any], stalls: bool
) -> tuple[datetime, dict[str, Any]]:
    """One asset's chain in a workflow's story: when it ended, and its last event."""
    rng = log.rng
    source = rng.choices(list(SOURCES), weights=list(SOURCES.values()))[0]
    media_type = rng.choices(list(MEDIA), weights=(7, 2, 1))[0]
    asset_id = f"asset-{n:05d}"
    path = f"/{source.split('-')[0]}/{rng.choice(ALBUMS)}/{2020 + n % 7}/{asset_id}.{rng.choice(MEDIA[media_type])}"
    last = log.add("asset.discovered", found, source, {
        "asset_id": asset_id, "file_path": path, "media_type": media_type,
        "file_size": rng.randrange(40_000, 400_000_000), "metadata": metadata(rng, media_type),
    }, cause=started)  # fmt: skip
    if stalls or rng.random() < 0.05:  # still waiting to be processed at the end of the week
        return found, last
    processed = found + timedelta(seconds=rng.expovariate(1 / 40))
    operations = ["thumbnail", "hash"] + (["transcode"] if media_type == "video" else [])
    last = log.add("asset.processed", processed, "pipeline", {
        "asset_id": asset_id, "output_path": f"/processed/{asset_id}.webp",
        "processing_time_ms": round(rng.lognormvariate(5, 0.8), 1), "operations": operations,
    }, cause=last)  # fmt: skip
    if media_type == "audio" or rng.random() < 0.05:
        return processed, last
    quality: dict[str, Any] = {"asset_id": asset_id, "score": round(rng.betavariate(6, 2), 3)}
    if rng.random() >= 0.2:  # about a fifth were written before `issues` existed
        quality["issues"] = rng.sample(ISSUES, rng.choice((0, 0, 1, 2)))
    assessed = processed + timedelta(seconds=rng.uniform(1, 30))
    return assessed, log.add("quality.assessed", assessed, "quality-bot", quality, cause=last)


def workflows(log: Log) -> None:
    """WORKFLOWS stories sharing ASSETS assets: batches of 1-7, each asset found a little after
    the workflow started; the workflow ends after its last asset's last step."""
    rng = log.rng
    cuts = sorted(rng.sample(range(1, ASSETS), WORKFLOWS - 1))
    for n, (first, end) in enumerate(zip([0, *cuts], [*cuts, ASSETS], strict=True)):
        workflow_id = f"wf-{n:04d}"
        started_at = moment(rng)
        kind = rng.choice(WORKFLOW_TYPES)
        started = log.add("workflow.started", started_at, "orchestrator", {
            "workflow_id": workflow_id, "workflow_type": kind,
            "input_data": {"batch_size": end - first, "priority": rng.choice(("low", "normal", "high"))},
        })  # fmt: skip
        fails = rng.random() < 0.12
        found, ended, last = started_at, started_at, started
        for a in range(first, end):
            found += timedelta(seconds=rng.expovariate(1 / 20))
            done, last = asset(log, a, found, started, stalls=fails and a == end - 1)
            ended = max(ended, done)
        ended += timedelta(milliseconds=rng.lognormvariate(7, 1))
        duration = (ended - started_at).total_seconds() * 1000
        if fails:  # its last asset stalled: the failure is caused by that asset's discovery
            error_type, message = rng.choice(FAILURES)
            log.add("workflow.failed", ended, "orchestrator", {
                "workflow_id": workflow_id, "error_message": message, "error_type": error_type,
            }, cause=last)  # fmt: skip
        else:
            log.add("workflow.completed", ended, "orchestrator", {
                "workflow_id": workflow_id, "duration_ms": round(duration, 1),
                "output": {"items": end - first},
            }, cause=last)  # fmt: skip


def poison(log: Log) -> None:
    """Events that a careful handler refuses, or that no current code can read."""
    rng = log.rng

    def discovered(n: int, **changes: Any) -> None:
        data = {"asset_id": f"asset-poison-{n}", "file_path": f"/upload/inbox/poison-{n}.jpg",
                "media_type": "image", "file_size": 1_234_567, "metadata": {"width": 640, "height": 480}}  # fmt: skip
        log.add("asset.discovered", moment(rng), "upload-api", {**data, **changes})

    discovered(1, file_path="/upload/inbox/<script>alert(1)</script>.jpg",
               metadata={"width": 640, "height": 480, "title": "<script>alert(1)</script>"})  # fmt: skip
    discovered(2, file_path="")
    discovered(3, file_path="")
    discovered(4, file_size=-1)
    discovered(5, file_size=-4096)
    discovered(6, file_size="12 MB")  # not an integer: arithmetic on it fails
    discovered(7, file_size="unknown")
    log.add("quality.assessed", moment(rng), "quality-bot-next",
            {"asset_id": "asset-00007", "quality_score": 91.5, "grader": "vision-v9",
             "issues": [], "regions": [{"x": 0, "y": 0, "score": 0.9}]}, version=9)  # fmt: skip


def main() -> None:
    log = Log(random.Random(SEED))
    workflows(log)
    poison(log)
    # in time order; within one millisecond, in the order made (a parent before its children)
    order = {id(record): n for n, record in enumerate(log.records)}
    log.records.sort(key=lambda r: (r["timestamp"], order[id(r)]))
    with OUT.open("w", encoding="utf-8", newline="\n") as out:
        for record in log.records:
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(log.records):,} events to {OUT}")


if __name__ == "__main__":
    main()
