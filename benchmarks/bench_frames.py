"""Export benchmark: events_frame and deliveries_frame of 1M stored rows beside pandas.read_sql.

    .venv/bin/python benchmarks/bench_frames.py [--events 1000000] [--db PATH] [--no-write]

Builds a SQLite store with SQLiteEventStore itself (publish_many in batches of 10,000 realistic
~300 B asset payloads; one consumer group claims and acks everything in large batches, so every
event has a delivery record), unless --db names a file built before. Each measurement then runs in
a fresh subprocess, so its peak RSS (getrusage) is its own, alternating eventkit and read_sql of the
same rows; the median of the repeats is kept. Prints a table and rewrites the "## Export (frames)"
section of benchmarks/RESULTS.md, leaving other sections alone; exit status 1 if a target fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import RESULTS, write_section  # noqa: E402
from eventkit import EventBus, EventStoreConfig, create_event  # noqa: E402
from eventkit.events import AssetDiscoveredEvent  # noqa: E402

SECTION = "## Export (frames)"
PUBLISH_BATCH = 10_000
CLAIM_BATCH = 20_000
GROUP = "bench"
REPEATS = 3
#: targets of issue 4: seconds, MB of peak RSS, and the ratio to read_sql in the same run
MAX_SECONDS, MAX_MB, MAX_RATIO = 6.0, 2048.0, 2.0
EVENTS_SQL = """SELECT position, event_id, event_type, version, source, timestamp_ms, data,
    published_ms FROM events ORDER BY position"""
DELIVERIES_SQL = """SELECT position, event_id, event_type, group_name, consumer, status, attempts,
    published_ms, first_delivered_ms, acked_ms, last_error FROM deliveries ORDER BY group_name,
    position"""
SOURCES = ("scanner-nas", "scanner-cloud", "upload-api", "mobile-sync")
ALBUMS = ("harbour", "studio", "mountain", "city", "forest", "portraits", "family", "archive")


def make_events(start: int, count: int, rng: random.Random) -> list[AssetDiscoveredEvent]:
    """Asset payloads of about 300 bytes of JSON, with a nested metadata object."""
    base = datetime(2026, 11, 2, tzinfo=UTC)
    return [
        create_event(
            AssetDiscoveredEvent,
            source=rng.choice(SOURCES),
            timestamp=base + timedelta(milliseconds=(start + i) * 600),
            asset_id=f"asset-{start + i:08d}",
            file_path=f"/media/{rng.choice(ALBUMS)}/2026/{rng.randrange(10**6):06d}/IMG_{start + i:08d}.jpg",
            media_type=rng.choice(("image", "image", "image", "video")),
            file_size=rng.randrange(50_000, 40_000_000),
            metadata={
                "width": rng.choice((1920, 3024, 4032)),
                "height": rng.choice((1080, 3024, 2268)),
                "camera": rng.choice(("Pixel 9", "iPhone 17", "X-T5", "A7 IV")),
                "exif": {
                    "iso": rng.choice((100, 200, 400, 800)),
                    "fnumber": 1.8,
                    "exposure": "1/250",
                },
                "tags": rng.sample(["family", "travel", "work", "pets", "night", "food"], 2),
            },
        )  # fmt: skip
        for i in range(count)
    ]


async def build(db: Path, count: int) -> None:
    """Publish `count` events, then claim and ack them all in one group (a delivery record each)."""
    rng = random.Random(1102)
    config = EventStoreConfig(backend="sqlite", path=db, trim_interval_hours=None, max_events=None)
    async with EventBus(config) as bus:
        await bus.store.ensure_group(GROUP, ["*"], "earliest")
        started = time.perf_counter()
        for start in range(0, count, PUBLISH_BATCH):
            await bus.publish_many(make_events(start, min(PUBLISH_BATCH, count - start), rng))
        print(f"published {count:,} events in {time.perf_counter() - started:.1f} s", flush=True)
        started, acked = time.perf_counter(), 0
        while claims := await bus.store.claim(
            GROUP, "worker", limit=CLAIM_BATCH, lease_ms=3_600_000
        ):
            acked += await bus.store.ack(claims)
        print(f"claimed and acked {acked:,} in {time.perf_counter() - started:.1f} s", flush=True)
        data = [e.data for e in await bus.store.read(limit=1000)]
    print(f"mean payload {statistics.mean(len(d.encode()) for d in data):.0f} B", flush=True)


async def measure_eventkit(db: Path, what: str) -> int:
    from eventkit.frames import deliveries_frame, events_frame

    config = EventStoreConfig(backend="sqlite", path=db, trim_interval_hours=None, max_events=None)
    async with EventBus(config) as bus:
        frame = await (events_frame(bus) if what == "events" else deliveries_frame(bus))
    return len(frame)


async def measure_store(db: Path, what: str) -> int:
    """Only page through the store's records (the floor under any frame built on the protocol)."""
    config = EventStoreConfig(backend="sqlite", path=db, trim_interval_hours=None, max_events=None)
    rows, after = 0, None
    async with EventBus(config) as bus:
        while True:
            if what == "events":
                page: list[Any] = await bus.store.read(after_position=after, limit=50_000)
            else:
                page = await bus.store.deliveries(GROUP, after_position=after, limit=50_000)
            rows += len(page)
            if len(page) < 50_000:
                return rows
            after = page[-1].position


def measure_read_sql(db: Path, what: str) -> int:
    import pandas as pd

    with sqlite3.connect(db) as connection:
        frame = pd.read_sql(EVENTS_SQL if what == "events" else DELIVERIES_SQL, connection)
    return len(frame)


def child(db: Path, what: str, how: str) -> None:
    """One measurement in this process: prints {"seconds", "rows", "peak_mb"} as JSON."""
    import pandas  # noqa: F401  imports are not what we measure
    import pyarrow.json  # noqa: F401

    import eventkit.frames  # noqa: F401

    started = time.perf_counter()
    if how == "eventkit":
        rows = asyncio.run(measure_eventkit(db, what))
    elif how == "store":
        rows = asyncio.run(measure_store(db, what))
    else:
        rows = measure_read_sql(db, what)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_mb": peak_mb}))


def run_child(db: Path, what: str, how: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", what, how, "--db", str(db)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(db: Path, what: str) -> dict[str, float]:
    ours, theirs, floor = [], [], []
    for _ in range(REPEATS):  # alternate, so all see the same page cache and machine load
        ours.append(run_child(db, what, "eventkit"))
        theirs.append(run_child(db, what, "read_sql"))
        floor.append(run_child(db, what, "store"))
    if {r["rows"] for r in ours} != {r["rows"] for r in theirs}:
        raise SystemExit(f"{what}: eventkit and read_sql read different row counts")
    return {
        "rows": ours[0]["rows"],
        "seconds": statistics.median(r["seconds"] for r in ours),
        "peak_mb": max(r["peak_mb"] for r in ours),
        "sql_seconds": statistics.median(r["seconds"] for r in theirs),
        "sql_peak_mb": max(r["peak_mb"] for r in theirs),
        "store_seconds": statistics.median(r["seconds"] for r in floor),
    }


def table(results: dict[str, dict[str, float]]) -> str:
    lines = [
        "| frame | rows | eventkit | peak RSS | read_sql | read_sql peak RSS | ratio "
        "| store paging alone | target | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for what, r in results.items():
        ratio = r["seconds"] / r["sql_seconds"]
        ok = r["seconds"] <= MAX_SECONDS and r["peak_mb"] <= MAX_MB and ratio <= MAX_RATIO
        lines.append(
            f"| {what}_frame | {r['rows']:,.0f} | {r['seconds']:.2f} s | {r['peak_mb']:,.0f} MB "
            f"| {r['sql_seconds']:.2f} s | {r['sql_peak_mb']:,.0f} MB | {ratio:.2f}× "
            f"| {r['store_seconds']:.2f} s "
            f"| ≤ {MAX_SECONDS:g} s, ≤ {MAX_MB:,.0f} MB, ≤ {MAX_RATIO:g}× read_sql "
            f"| {'PASS' if ok else '**FAIL**'} |"
        )
    return "\n".join(lines)


def passed(results: dict[str, dict[str, float]]) -> bool:
    return all(
        r["seconds"] <= MAX_SECONDS
        and r["peak_mb"] <= MAX_MB
        and r["seconds"] / r["sql_seconds"] <= MAX_RATIO
        for r in results.values()
    )


def environment(command: str, count: int) -> list[str]:
    import numpy
    import pandas
    import pyarrow

    return [
        f"- command: `{command}`",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} {platform.release()}",
        f"- versions: Python {platform.python_version()}, pandas {pandas.__version__}, pyarrow "
        f"{pyarrow.__version__}, numpy {numpy.__version__}, SQLite {sqlite3.sqlite_version}",
        f"- data: {count:,} `asset.discovered` events (~300 B payloads with nested metadata) and "
        f"{count:,} acked delivery records of one group, in a file SQLiteEventStore built",
        "- each figure is the median of 3 runs, each in a fresh subprocess (peak RSS by getrusage, "
        "imports included); read_sql selects the same columns and rows in the same run",
        "- store paging alone: `store.read`/`store.deliveries` pages of 50,000 and nothing else, "
        "the floor under any frame built on the store protocol (info, no target)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse (or build once into) this SQLite file")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "HOW"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.db, *args.child)
        return 0
    with tempfile.TemporaryDirectory(prefix="eventkit-bench-") as tmp:
        db = args.db or Path(tmp) / "frames.db"
        if not db.exists():
            asyncio.run(build(db, args.events))
        results = {what: compare(db, what) for what in ("events", "deliveries")}
    command = "python " + " ".join(["benchmarks/bench_frames.py", *(argv or sys.argv[1:])])
    body = "\n".join([SECTION, "", *environment(command, args.events), "", table(results), ""])
    print(body)
    if not args.no_write:
        write_section(SECTION, body)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if passed(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
