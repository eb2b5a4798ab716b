"""What a single SQLite commit costs with eventkit's events table against a queue's (issue 12).

    .venv/bin/python benchmarks/bench_sqlite_schema.py [--n 10000] [--rounds 3]

Publishing one event at a time on SQLite is bounded by the commit: each page the insert dirties
is written to the WAL. eventkit's table (schema_steps 1-7) dirties five: the row, sqlite_sequence
(AUTOINCREMENT: positions never reused after a trim), the UNIQUE event_id index (idempotent
publish), events_by_type (claims and lag by type) and events_by_time (time ranges). A queue such
as persist-queue's SQLiteAckQueue dirties two (the row and sqlite_sequence). This times the bare
statement and its commit for each shape, one index left out at a time, in plain sqlite3 with
eventkit's pragmas (WAL, synchronous=NORMAL, no autocheckpoint); prints µs per commit (medians
over rounds). No eventkit code runs but the schema text, so the figures bound what any code on
top of the schema can reach.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventkit.stores.sqlite_sql import INSERT_EVENT_NARROW, MIGRATIONS  # noqa: E402

DATA = json.dumps({
    "asset_id": "asset-x0000001", "file_path": "/media/incoming/2024/06/x0000001.jpg",
    "media_type": "image/jpeg", "file_size": 1000001,
    "metadata": {"width": 4000, "height": 3000, "camera": "X-T5", "tags": ["raw", "hdr"]},
})  # fmt: skip
TABLE = """CREATE TABLE events (position INTEGER PRIMARY KEY {autoincrement},
    event_id TEXT NOT NULL {unique}, event_type TEXT NOT NULL, version INTEGER NOT NULL,
    source TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, data TEXT NOT NULL,
    published_ms INTEGER NOT NULL)"""
INSERT = """INSERT INTO events (event_id, event_type, version, source, timestamp_ms, data,
    published_ms) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING position"""


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "wal_autocheckpoint = 0"):
        db.execute(f"PRAGMA {pragma}")
    return db


def shapes() -> dict[str, tuple[list[str], str]]:
    """Each shape's schema statements and insert statement."""
    eventkit = [sql for _, step in MIGRATIONS for sql in step]

    def variant(autoincrement: bool, unique: bool, by_type: bool, by_time: bool) -> list[str]:
        table = TABLE.format(autoincrement="AUTOINCREMENT" if autoincrement else "",
                             unique="UNIQUE" if unique else "")  # fmt: skip
        return [table, *(["CREATE INDEX t ON events (event_type, position)"] if by_type else []),
                *(["CREATE INDEX s ON events (timestamp_ms)"] if by_time else [])]  # fmt: skip

    return {
        "eventkit's schema (steps 1-7)": (eventkit, INSERT_EVENT_NARROW + " RETURNING position"),
        "its events table alone": (variant(True, True, True, True), INSERT),
        "  without AUTOINCREMENT": (variant(False, True, True, True), INSERT),
        "  without the UNIQUE event_id": (variant(True, False, True, True), INSERT),
        "  without events_by_type": (variant(True, True, False, True), INSERT),
        "  without events_by_time": (variant(True, True, True, False), INSERT),
        "a queue's table (row + sqlite_sequence)": (variant(True, False, False, False), INSERT),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000, help="commits per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="eventkit-schema-"))
    made = shapes()
    dbs = {}
    for i, (name, (schema, _)) in enumerate(made.items()):
        dbs[name] = db = connect(folder / f"shape{i}.db")
        for sql in schema:
            db.execute(sql)
    timings: dict[str, list[float]] = {name: [] for name in made}
    now = int(time.time() * 1000)
    for _ in range(args.rounds):  # shapes alternate within a round, so drift hits them alike
        for name, (_, insert) in made.items():
            db = dbs[name]
            rows = [(uuid.uuid4().hex, "asset.discovered", 1, "bench", now + i, DATA, now)
                    for i in range(args.n)]  # fmt: skip
            start = time.perf_counter()
            for row in rows:
                db.execute(insert, row).fetchall()
            timings[name].append((time.perf_counter() - start) / args.n * 1e6)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"| table shape | µs per insert+commit (median of {args.rounds}) | range |")
    print("|---|---:|---:|")
    for name, values in timings.items():
        print(f"| {name} | {statistics.median(values):.1f} | "
              f"{min(values):.1f}–{max(values):.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
