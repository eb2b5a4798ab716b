"""The raw aiosqlite baselines of bench_core: what a hand-written event table does for the same work.

The schema mirrors SQLiteEventStore's (events with a store-assigned position, a unique event_id, the
type and time indexes; one delivery row per group and event with a partial index on unsettled work)
and the pragmas are the store's: WAL, synchronous=NORMAL. Keep it in step when the store's changes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000")
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    data TEXT NOT NULL,
    published_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_type ON events (event_type, position);
CREATE INDEX IF NOT EXISTS events_by_time ON events (timestamp_ms);
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    group_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    status TEXT NOT NULL,
    first_delivered_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    token TEXT,
    acked_ms INTEGER,
    last_error TEXT,
    PRIMARY KEY (group_name, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_unsettled ON deliveries (group_name, deadline_ms)
    WHERE status IN ('in_flight', 'retrying');
"""
INSERT = (
    "INSERT INTO events (event_id, event_type, version, source, timestamp_ms, data, published_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
CLAIM = """
INSERT INTO deliveries (group_name, position, consumer, attempts, status, first_delivered_ms,
                        deadline_ms, token)
SELECT ?, position, ?, 1, 'in_flight', ?, ?, ? FROM events
WHERE position > (SELECT cursor FROM groups WHERE name = ?) AND event_type = ?
ORDER BY position LIMIT ?
RETURNING position
"""
ACK = (
    "UPDATE deliveries SET status = 'acked', acked_ms = ?, token = NULL"
    " WHERE group_name = ? AND position = ? AND token = ? AND deadline_ms >= ?"
)
FETCH = (
    "SELECT position, event_id, event_type, version, source, timestamp_ms, data, published_ms"
    " FROM events WHERE position IN ({})"
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RawSQLite:
    """One aiosqlite connection on a file with the store's schema and pragmas."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self._tokens = 0

    @classmethod
    async def create(cls, path: Path) -> RawSQLite:
        return await cls.open(path)

    @classmethod
    async def open(cls, path: Path) -> RawSQLite:
        db = await aiosqlite.connect(path)  # implicit transactions, as most code uses it
        for pragma in PRAGMAS:
            await db.execute(pragma)
        await db.executescript(SCHEMA)
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def insert_single(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """execute + commit per row, json.dumps included."""
        db = self.db
        for event_id, event_type, version, source, ts, payload in rows:
            await db.execute(
                INSERT, (event_id, event_type, version, source, ts, json.dumps(payload), now_ms())
            )
            await db.commit()

    async def insert_many(self, rows: Sequence[tuple[Any, ...]], batch: int) -> None:
        """executemany + commit per batch, json.dumps included."""
        db = self.db
        for i in range(0, len(rows), batch):
            published = now_ms()
            params = [
                (event_id, event_type, version, source, ts, json.dumps(payload), published)
                for event_id, event_type, version, source, ts, payload in rows[i : i + batch]
            ]
            await db.executemany(INSERT, params)
            await db.commit()

    async def consume(self, group: str, consumers: int, batch: int, expected: int) -> float:
        """Events/s of `consumers` claim loops sharing one group: claim a batch (INSERT … RETURNING
        into deliveries + move the group's cursor, in one transaction), fetch the rows, json.loads
        each payload, call a no-op handler, ack the batch (UPDATE per delivery, one commit)."""
        db = self.db
        await db.execute("INSERT INTO groups (name, cursor) VALUES (?, 0)", (group,))
        await db.commit()
        lock = asyncio.Lock()  # one writer connection, as in the store
        handled = 0

        async def handler(_: Any) -> None:
            return None

        async def loop(name: str) -> None:
            nonlocal handled
            while True:
                async with lock:
                    self._tokens += 1
                    token, now = f"{name}-{self._tokens}", now_ms()
                    claimed = await db.execute_fetchall(
                        CLAIM, (group, name, now, now + 30_000, token, group, EVENT_TYPE, batch)
                    )  # one thread round trip (iterating an aiosqlite cursor costs one per row)
                    positions = [row[0] for row in claimed]
                    if positions:
                        await db.execute(
                            "UPDATE groups SET cursor = ? WHERE name = ?", (max(positions), group)
                        )
                    await db.commit()
                if not positions:
                    return
                marks = ",".join("?" * len(positions))
                events = await db.execute_fetchall(FETCH.format(marks), positions)
                for event in events:
                    await handler(json.loads(event[6]))
                handled += len(events)
                async with lock:
                    now = now_ms()
                    await db.executemany(ACK, [(now, group, p, token, now) for p in positions])
                    await db.commit()

        start = time.perf_counter()
        await asyncio.gather(*(loop(f"c{n}") for n in range(consumers)))
        seconds = time.perf_counter() - start
        if handled != expected:
            raise RuntimeError(f"raw consume handled {handled}, expected {expected}")
        return expected / seconds


EVENT_TYPE = "asset.discovered"
