"""SQLite counts (schema step 6): total_events and lag from counters stay equal to a count over the
log through every operation that moves them, a migration, and transactions that fail."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventkit.errors import StoreError
from eventkit.stores.base import NewEvent
from eventkit.stores.sqlite import SQLiteEventStore
from eventkit.stores.sqlite_sql import (
    ADVANCE_COUNTS,
    GROUP_STATS_BEFORE_COUNTS,
    SCHEMA_VERSION,
    STORE_TOTALS_BEFORE_COUNTS,
)
from tests.helpers import new_events, schema_file

DISCOVERED, STARTED = "asset.discovered", "workflow.started"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    opened = SQLiteEventStore(tmp_path / "events.db")
    await opened.open()
    yield opened
    await opened.close()


def counted_over_log(path: Path) -> tuple[int, dict[str, int]]:
    """total_events and each group's lag counted over the log, as before schema step 6."""
    with sqlite3.connect(path) as raw:
        [(total, _)] = raw.execute(STORE_TOTALS_BEFORE_COUNTS).fetchall()
        lags = {row[0]: row[1] for row in raw.execute(GROUP_STATS_BEFORE_COUNTS, {"now": 0})}
    raw.close()
    return total, lags


async def assert_counts_exact(store: SQLiteEventStore) -> dict[str, int]:
    stats = await store.stats()
    lags = {name: figures["lag"] for name, figures in stats["groups"].items()}
    assert (stats["store"]["total_events"], lags) == counted_over_log(store.path)
    return lags


def one(event_type: str, timestamp_ms: int = 0) -> NewEvent:
    return NewEvent(uuid.uuid4().hex, event_type, 1, "test", timestamp_ms, "{}")


async def test_counts_follow_publish_claims_and_trim(store: SQLiteEventStore) -> None:
    await store.ensure_group("typed", [DISCOVERED])
    await store.ensure_group("all", ["*"])
    await store.append(new_events(30, event_type_every=3))  # a batch: counted in its transaction
    for _ in range(5):  # single appends on the loop: after 'counted_to', counted by the readers
        await store.append([one(STARTED)])
    assert await assert_counts_exact(store) == {"typed": 20, "all": 35}
    claims = await store.claim("typed", "w", limit=50, lease_ms=60_000)  # skips the others
    await store.ack(claims)
    claims = await store.claim("all", "w", limit=12, lease_ms=60_000)
    await store.ack(claims)
    assert await assert_counts_exact(store) == {"typed": 0, "all": 23}
    trimmed = await store.trim(max_events=0)  # only what "all" has read can go
    assert trimmed.removed == 12
    await store.append([one(DISCOVERED)])
    assert await assert_counts_exact(store) == {"typed": 1, "all": 24}
    while claims := await store.claim("all", "w", limit=7, lease_ms=60_000):
        await store.ack(claims)
    await store.trim(max_events=0)
    assert await assert_counts_exact(store) == {"typed": 1, "all": 0}
    assert (await store.stats())["store"]["total_events"] == 1


async def test_counts_follow_group_starts_resets_and_deletes(store: SQLiteEventStore) -> None:
    await store.append([one(DISCOVERED, t) for t in range(10)])
    await store.append([one(STARTED, t) for t in range(10, 20)])
    await store.ensure_group("latest", [DISCOVERED], "latest")
    await store.ensure_group("from_5", ["*"], 5)
    await store.ensure_group("typed", [STARTED], 15)
    assert await assert_counts_exact(store) == {"latest": 0, "from_5": 15, "typed": 5}
    await store.ensure_group("latest", [STARTED])  # a new type: only what follows the cursor
    await store.append([one(STARTED, 30), one(DISCOVERED, 31)])
    assert await assert_counts_exact(store) == {"latest": 2, "from_5": 17, "typed": 6}
    for group, to in (("latest", "earliest"), ("from_5", "latest"), ("typed", 12)):
        before = await assert_counts_exact(store)
        dry = await store.reset_group(group, to, dry_run=True)
        assert await assert_counts_exact(store) == before
        done = await store.reset_group(group, to)
        assert done == dry
    assert await assert_counts_exact(store) == {"latest": 22, "from_5": 0, "typed": 9}
    claims = await store.claim("typed", "w", limit=3, lease_ms=60_000)
    await store.reset_group("typed", "earliest", force=True)  # drops the leases
    assert claims and await assert_counts_exact(store) == {"latest": 22, "from_5": 0, "typed": 11}
    assert await store.delete_group("latest")
    assert await assert_counts_exact(store) == {"from_5": 0, "typed": 11}


async def test_a_step_5_file_gets_its_counts_at_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with schema_file(path, 5) as raw:
        for n in range(1, 11):
            event_type = DISCOVERED if n % 2 else STARTED
            raw.execute(
                "INSERT INTO events (position, event_id, event_type, version, source, "
                "timestamp_ms, data, published_ms) VALUES (?, ?, ?, 1, 's', 0, '{}', 0)",
                (n, f"e{n}", event_type),
            )
        raw.execute("DELETE FROM events WHERE position <= 2")  # trimmed before the upgrade
        for name, cursor, event_type in (("all", 4, "*"), ("typed", 7, DISCOVERED)):
            raw.execute("INSERT INTO consumer_groups (name, cursor) VALUES (?, ?)", (name, cursor))
            raw.execute("INSERT INTO group_types VALUES (?, ?)", (name, event_type))
    raw.close()
    before = counted_over_log(path)
    store = SQLiteEventStore(path)
    await store.open()
    try:
        assert await assert_counts_exact(store) == before[1] == {"all": 6, "typed": 1}
        await store.append([one(DISCOVERED), one(STARTED)])
        claims = await store.claim("typed", "w", limit=10, lease_ms=60_000)
        assert [c.event.event_id for c in claims][:1] == ["e9"]
        await store.ack(claims)
        assert await assert_counts_exact(store) == {"all": 8, "typed": 0}
    finally:
        await store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    raw.close()


async def test_an_outside_writers_rollback_leaves_the_counts_as_they_were(
    store: SQLiteEventStore,
) -> None:
    await store.ensure_group("g", ["*"])
    await store.append(new_events(4))
    raw = sqlite3.connect(store.path, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute(
            "INSERT INTO events (event_id, event_type, version, source, timestamp_ms, data, "
            "published_ms) VALUES ('outside', 'x', 1, 's', 0, '{}', 0)"
        )
        for sql in ADVANCE_COUNTS:
            raw.execute(sql)
        raw.execute("ROLLBACK")
        assert await assert_counts_exact(store) == {"g": 4}
        # a committed outside insert that does not count itself is counted by the readers
        raw.execute(
            "INSERT INTO events (event_id, event_type, version, source, timestamp_ms, data, "
            "published_ms) VALUES ('outside', 'x', 1, 's', 0, '{}', 0)"
        )
    finally:
        raw.close()
    assert await assert_counts_exact(store) == {"g": 5}
    await store.append(new_events(3))  # the batch counts the outside row too
    assert await assert_counts_exact(store) == {"g": 8}


async def test_a_failed_batch_counts_nothing(store: SQLiteEventStore) -> None:
    await store.ensure_group("g", [DISCOVERED])
    await store.append(new_events(3))
    bad = [*new_events(3), one(DISCOVERED)._replace(source=None)]  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="NOT NULL"):
        await store.append(bad)
    assert await assert_counts_exact(store) == {"g": 3}


async def test_single_publishes_are_counted_after_each_background_checkpoint(
    store: SQLiteEventStore,
) -> None:
    await store.ensure_group("g", ["*"])
    for _ in range(600):  # a few times CHECKPOINT_EVERY: checkpoints, each then a WAL restart
        await store.append([one(STARTED)])
    await store._file._appender.settle()  # noqa: SLF001 - the checkpoint task, for the test only
    with sqlite3.connect(store.path) as raw:
        [(counted,)] = raw.execute("SELECT value FROM meta WHERE key = 'counted_to'").fetchall()
    raw.close()
    assert counted > 0
    assert await assert_counts_exact(store) == {"g": 600}
