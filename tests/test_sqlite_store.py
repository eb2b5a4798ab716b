"""SQLite-only properties: processes sharing one file, the schema on disk, the idle probe's cost, errors."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventkit.codec import decode
from eventkit.errors import StoreError, StoreUnavailableError
from eventkit.stores import sqlite_claim
from eventkit.stores.base import Claim, NewEvent
from eventkit.stores.sqlite import SQLiteEventStore
from eventkit.stores.sqlite_append import CHECKPOINT_EVERY, RESTART_FRAMES
from eventkit.stores.sqlite_sql import (
    CORRELATED,
    EVENT_COLUMNS,
    PROBE,
    SCHEMA_VERSION,
    payload_test,
)
from tests.helpers import new_events, schema_file

ROOT = Path(__file__).resolve().parents[1]

#: claims from one group of the store at argv[1] until it is idle; prints each event id it acked
WORKER = """
import asyncio, pathlib, sys
from eventkit.stores.sqlite import SQLiteEventStore

async def main(path, name, go):
    store = SQLiteEventStore(path)
    await store.open()
    print("ready", flush=True)
    while not pathlib.Path(go).exists():
        await asyncio.sleep(0.01)
    try:
        while not await store.is_idle(["split"]):
            claims = await store.claim("split", name, limit=10, lease_ms=30_000)
            await asyncio.sleep(0.002)  # some work, so the other process gets its turns
            assert await store.ack(claims) == len(claims)
            for claim in claims:
                print("acked", claim.event.event_id, flush=True)
    finally:
        await store.close()

asyncio.run(main(*sys.argv[1:4]))
"""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    opened = SQLiteEventStore(tmp_path / "events.db")
    await opened.open()
    yield opened
    await opened.close()


async def test_two_processes_split_one_group_without_duplicates_or_losses(
    store: SQLiteEventStore, tmp_path: Path
) -> None:
    events = new_events(1000)
    await store.append(events)
    await store.ensure_group("split", ["*"])
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(store.path), f"proc-{i}", str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    for worker in workers:  # both connected before either claims
        assert worker.stdout is not None
        assert (await asyncio.to_thread(worker.stdout.readline)).strip() == "ready"
    go.touch()
    outputs = [await asyncio.to_thread(w.communicate, timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    acked = [[line.split()[1] for line in out.splitlines()] for out, _ in outputs]
    assert sorted(acked[0] + acked[1]) == sorted(e.event_id for e in events)  # once each
    assert all(len(share) > 0 for share in acked), [len(share) for share in acked]
    stats = (await store.stats())["groups"]["split"]
    assert {k: stats[k] for k in ("delivered", "acked", "pending", "lag")} == {
        "delivered": 1000, "acked": 1000, "pending": 0, "lag": 0,
    }  # fmt: skip


async def test_schema_version_is_recorded_and_an_existing_file_reopens(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = SQLiteEventStore(path)
    await first.open()
    positions = await first.append(new_events(3))
    await first.ensure_group("g", ["*"])
    await first.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()
    again = SQLiteEventStore(path)
    await again.open()
    try:
        assert [e.position for e in await again.read()] == positions
        assert await again.groups() == ["g"]
        later = await again.append(new_events(2))
        assert min(later) > max(positions)
        assert len(await again.claim("g", "w", limit=10, lease_ms=1_000)) == 5
    finally:
        await again.close()


async def test_a_file_of_schema_1_is_upgraded_and_its_groups_go_on(tmp_path: Path) -> None:
    """Step 2 (claims as one statement, the cursor moved by trigger) on a file written by step 1."""
    path = tmp_path / "old.db"
    with schema_file(path, 1) as raw:
        for n in (1, 2):  # the events the group had read (a cursor never runs ahead of the log)
            raw.execute(f"INSERT INTO events VALUES ({n}, 'old{n}', 'asset.discovered', 1, 's', "
                        "0, '{}', 0)")  # fmt: skip
        raw.execute("INSERT INTO consumer_groups (name, cursor, delivered) VALUES ('g', 2, 2)")
        raw.execute("INSERT INTO group_types VALUES ('g', '*')")
    raw.close()
    store = SQLiteEventStore(path)
    await store.open()
    try:
        await store.append(new_events(3))  # positions 3..5; the group had read up to 2
        claims = await store.claim("g", "w", limit=10, lease_ms=5_000)
        assert [c.event.position for c in claims] == [3, 4, 5]
        assert await store.ack(claims) == 3
        assert await store.claim("g", "w", limit=10, lease_ms=5_000) == []
        stats = (await store.stats())["groups"]["g"]
        assert (stats["delivered"], stats["acked"], stats["lag"]) == (5, 3, 0)
    finally:
        await store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    raw.close()


async def test_dead_letters_of_a_schema_3_file_read_with_no_replays_then_count_them(
    tmp_path: Path,
) -> None:
    """Step 4 (replay counts) on a file whose DLQ was written by step 3, read-only and upgraded."""
    path = tmp_path / "old.db"
    with schema_file(path, 3) as raw:
        raw.execute("INSERT INTO events VALUES (1, 'e1', 'asset.discovered', 1, 's', 0, '{}', 0)")
        raw.execute("INSERT INTO consumer_groups (name, cursor, delivered) VALUES ('g', 1, 1)")
        raw.execute("INSERT INTO group_types VALUES ('g', '*')")
        raw.execute(
            "INSERT INTO deliveries (group_name, position, event_id, event_type, published_ms, "
            "consumer, attempts, status, first_delivered_ms, last_error) "
            "VALUES ('g', 1, 'e1', 'asset.discovered', 0, 'w', 4, 'dead', 0, 'boom')"
        )
        raw.execute(
            "INSERT INTO dead_letters VALUES (1, 'e1', 'asset.discovered', 1, 's', 0, '{}', 0, "
            "'g', 'w', 4, 5, 'boom', 'tb')"
        )
    raw.close()
    reader = SQLiteEventStore(path, read_only=True)
    await reader.open()
    try:
        [letter] = await reader.get_pending_events("g")
        assert (letter.event_id, letter.attempts, letter.replays) == ("e1", 4, 0)
    finally:
        await reader.close()
    store = SQLiteEventStore(path)
    await store.open()
    try:
        assert await store.replay_dead_letters("g") == 1
        [claim] = await store.claim("g", "w", limit=1, lease_ms=5_000)
        assert await store.dead_letter(claim, error="boom again")
        [letter] = await store.get_pending_events("g")
        assert (letter.attempts, letter.replays, letter.last_error) == (1, 1, "boom again")
    finally:
        await store.close()


async def test_a_file_of_schema_4_reads_old_events_as_their_own_stories_then_upgrades(
    tmp_path: Path,
) -> None:
    """Step 5 (correlation and causation) on a file whose log and DLQ were written by step 4."""
    path = tmp_path / "old.db"
    with schema_file(path, 4) as raw:
        for n in (1, 2):
            raw.execute(f"""INSERT INTO events VALUES ({n}, 'e{n}', 'asset.processed', 1, 's', 0,
                            '{{"asset_id": "a{n}"}}', 0)""")  # fmt: skip
        raw.execute("INSERT INTO consumer_groups (name, cursor, delivered) VALUES ('g', 2, 1)")
        raw.execute("INSERT INTO group_types VALUES ('g', '*')")
        raw.execute(
            "INSERT INTO deliveries (group_name, position, event_id, event_type, published_ms, "
            "consumer, attempts, status, first_delivered_ms, last_error) "
            "VALUES ('g', 1, 'e1', 'asset.processed', 0, 'w', 4, 'dead', 0, 'boom')"
        )
        raw.execute(
            """INSERT INTO dead_letters VALUES (1, 'e1', 'asset.processed', 1, 's', 0,
               '{"asset_id": "a1"}', 0, 'g', 'w', 4, 5, 'boom', 'tb', 0)"""
        )
    raw.close()
    reader = SQLiteEventStore(path, read_only=True)  # reads the old layout as it is
    await reader.open()
    try:
        assert [(s.correlation_id, s.causation_id) for s in await reader.read()] == [
            (None, None)
        ] * 2
        assert [s.event_id for s in await reader.correlated("e2")] == ["e2"]
        assert [s.event_id for s in await reader.find("asset_id", "a2")] == ["e2"]
        [letter] = await reader.get_pending_events("g")
        assert (letter.event.correlation_id, letter.event.causation_id) == ("e1", None)
    finally:
        await reader.close()
    store = SQLiteEventStore(path)
    await store.open()
    try:
        [old, _] = await store.read()
        assert (decode(old).correlation_id, decode(old).causation_id) == ("e1", None)
        child = NewEvent("e3", "asset.processed", 1, "s", 0, '{"asset_id": "a3"}', "e1", "e1")
        await store.append([child])
        assert [s.event_id for s in await store.correlated("e1")] == ["e1", "e3"]
        assert [s.event_id for s in await store.correlated("e2")] == ["e2"]
        assert await store.replay_dead_letters("g") == 1  # its redelivery reads the old row
        [claim] = await store.claim("g", "w", limit=1, lease_ms=5_000)
        assert (claim.event.event_id, decode(claim.event).correlation_id) == ("e1", "e1")
    finally:
        await store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        columns = {row[1] for row in raw.execute("PRAGMA table_info(events)")}
        assert {"correlation_id", "causation_id"} <= columns
    raw.close()


async def test_find_and_correlated_seek_by_index(store: SQLiteEventStore) -> None:
    """Stories by events_by_correlation; a payload field once index_payload_field made one (the
    plans of the store's own statements)."""
    events = new_events(50)
    await store.append(events)
    test, params = payload_test("asset_id", "x")
    find = (f"SELECT {EVENT_COLUMNS} FROM events WHERE {test}", params)
    story = (CORRELATED.format(columns=EVENT_COLUMNS), {"id": "x"})

    def plan(sql: str, params: object) -> str:
        with sqlite3.connect(store.path) as raw:
            found = " ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        raw.close()
        return found

    assert "SCAN events" in plan(*find)  # no index yet
    name = await store.index_payload_field("asset_id")
    assert await store.index_payload_field("asset_id") == name  # idempotent
    for sql, values in (find, story):
        found = plan(sql, values)
        assert "SEARCH events USING" in found and "SCAN" not in found, found
    assert name in plan(*find)
    assert [s.event_id for s in await store.find("asset_id", "asset-3")] == [events[3].event_id]


async def test_idle_claim_is_cheap_with_a_large_log_and_never_waits_for_the_writer(
    store: SQLiteEventStore,
) -> None:
    template = new_events(1)[0]
    for start in range(0, 200_000, 20_000):
        await store.append([
            NewEvent(f"bulk-{n}", template.event_type, 1, "bulk", template.timestamp_ms, "{}")
            for n in range(start, start + 20_000)
        ])  # fmt: skip
    await store.ensure_group("caught-up", ["*"], "latest")
    await store.ensure_group("other-type", ["workflow.completed"])  # 200k unread of other types
    # another process holds the write lock all along: an idle poll must not need it
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for group in ["caught-up", "other-type"] * 3:
            for limit in (10, 500):  # on the loop, and on the reader's thread
                polling = asyncio.ensure_future(
                    store.claim(group, "w", limit=limit, lease_ms=30_000)
                )
                assert await asyncio.wait_for(polling, 5) == []
        # cheap whatever the log's size: the probe only seeks (its cost is benchmarks/
        # bench_core.py's row "idle claim() with 1,000,000 events stored")
        for group in ("caught-up", "other-type"):
            steps = holder.execute(f"EXPLAIN QUERY PLAN {PROBE}", {"group": group, "now": 0})
            details = [step[3] for step in steps]
            assert not [d for d in details if d.startswith("SCAN")], details
    finally:
        holder.rollback()
        holder.close()
    assert await store.is_idle(["caught-up", "other-type"])


async def test_an_unwritable_path_says_which_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = SQLiteEventStore(blocker / "events.db")
    with pytest.raises(StoreUnavailableError, match="a-file/events.db is not writable"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):  # and it stays unusable
        await store.read()


async def test_a_file_that_is_not_a_database_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is a text file, not SQLite " * 64)
    with pytest.raises(StoreUnavailableError, match="notes.db.*not a SQLite database"):
        await SQLiteEventStore(path).open()
    assert path.read_bytes().startswith(b"this is a text file")  # left as it was


async def test_opening_another_applications_database_refuses_and_leaves_it_unchanged(
    tmp_path: Path,
) -> None:
    import hashlib

    path = tmp_path / "other-app.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        raw.execute("INSERT INTO invoices VALUES (1, 9.5)")
    raw.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    store = SQLiteEventStore(path)
    with pytest.raises(StoreError, match="not an eventkit store.*invoices"):
        await store.open()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other-app.db"]  # no -wal, no -shm


# -- publishing: on the loop when safe, else group commit on a thread (issue 12) ----------------


def _wal_frames(path: Path) -> int:
    """Frames in the WAL now (a PASSIVE checkpoint reports them and waits for nothing)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        [(_, frames, _)] = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return int(frames)
    finally:
        db.close()


def _hold_write_lock(path: Path, release: threading.Event, held: threading.Event) -> None:
    """Another program's write transaction, open until `release`."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(30)
        db.execute("COMMIT")
    finally:
        db.close()


async def _hold_lock(path: Path) -> tuple[asyncio.Future[None], threading.Event]:
    release, held = threading.Event(), threading.Event()
    holder = asyncio.ensure_future(asyncio.to_thread(_hold_write_lock, path, release, held))
    assert await asyncio.to_thread(held.wait, 10)
    return holder, release


async def test_an_append_blocked_by_another_process_waits_off_the_loop(
    store: SQLiteEventStore,
) -> None:
    await store.append(new_events(1))  # positions from 1
    holder, release = await _hold_lock(store.path)
    appending = asyncio.ensure_future(store.append(new_events(1)))
    for _ in range(20):  # the loop keeps running: the append waits on its thread
        await asyncio.sleep(0)
    assert not appending.done()
    release.set()
    await holder
    assert await appending == [2]
    assert [e.position for e in await store.read()] == [1, 2]


async def test_concurrent_appends_share_commits_in_order(store: SQLiteEventStore) -> None:
    events = new_events(120)
    holder, release = await _hold_lock(store.path)
    before = _wal_frames(store.path)
    singles = [asyncio.ensure_future(store.append([e])) for e in events[:100]]
    batches = [asyncio.ensure_future(store.append(events[i : i + 5])) for i in range(100, 120, 5)]
    for _ in range(20):
        await asyncio.sleep(0)
    release.set()
    await holder
    positions = [p for task in [*singles, *batches] for p in await task]
    # 104 appends, each its own commit, would write 4+ WAL frames per event: shared, far fewer
    assert _wal_frames(store.path) - before < len(events)
    stored = {e.event_id: e.position for e in await store.read()}
    assert positions == [stored[e.event_id] for e in events]
    assert sorted(positions) == list(range(1, 121))
    # a batch is one transaction: its positions follow each other
    for i in range(100, 120, 5):
        assert positions[i : i + 5] == list(range(positions[i], positions[i] + 5))


async def test_an_event_published_again_keeps_its_first_position(store: SQLiteEventStore) -> None:
    events = new_events(3)
    assert await store.append(events[:2]) == [1, 2]
    assert await store.append(events[1:2]) == [2]  # on the loop
    holder, release = await _hold_lock(store.path)
    again = [asyncio.ensure_future(store.append(events)), asyncio.ensure_future(
        store.append(events[:1]))]  # fmt: skip
    release.set()
    await holder
    found = [await task for task in again]  # by group commit
    third = [e.position for e in await store.get_events([events[2].event_id])]
    assert found == [[1, 2, *third], [1]]
    assert third[0] > 2


async def test_the_wal_restarts_while_single_appends_keep_coming(
    store: SQLiteEventStore,
) -> None:
    for event in new_events(6000):
        await store.append([event])
    # each append writes 4-6 frames: without restarts the WAL would hold over 24,000; with them,
    # what came after the last (RESTART_FRAMES, and the commits of a checkpoint or two)
    assert _wal_frames(store.path) < RESTART_FRAMES + 2 * CHECKPOINT_EVERY * 6 == 5400


async def test_a_read_only_store_refuses_appends(store: SQLiteEventStore) -> None:
    await store.append(new_events(1))
    reader = SQLiteEventStore(store.path, read_only=True)
    await reader.open()
    try:
        with pytest.raises(StoreError, match="read-only"):
            await reader.append(new_events(1))
    finally:
        await reader.close()


# -- small claims of new events on the loop when safe (issue 12) --------------------------------


def _claim_now(store: SQLiteEventStore, group: str, limit: int) -> list[Claim] | None:
    """The loop path alone: claims made synchronously, or None where it defers to the thread."""
    return sqlite_claim.claim_on_loop(store._file, group, "w", limit, 30_000)


async def test_a_small_claim_of_new_events_is_made_on_the_loop(store: SQLiteEventStore) -> None:
    await store.append(new_events(40))
    await store.ensure_group("g", ["*"])
    claims = _claim_now(store, "g", sqlite_claim.LOOP_CLAIM_MAX)
    assert claims is not None
    assert [c.event.position for c in claims] == list(range(1, sqlite_claim.LOOP_CLAIM_MAX + 1))
    assert all(c.attempt == 1 and c.consumer_name == "w" for c in claims)
    # larger claims go through the thread, and go on where the loop's left off
    assert _claim_now(store, "g", sqlite_claim.LOOP_CLAIM_MAX + 1) is None
    rest = await store.claim("g", "w", limit=100, lease_ms=30_000)
    assert [c.event.position for c in rest] == list(range(sqlite_claim.LOOP_CLAIM_MAX + 1, 41))
    assert await store.ack([*claims, *rest]) == 40
    stats = (await store.stats())["groups"]["g"]
    assert (stats["delivered"], stats["acked"], stats["lag"]) == (40, 40, 0)
    assert _claim_now(store, "g", 10) == []  # caught up: an idle poll on the loop
    assert _claim_now(store, "g", 500) == []  # whatever the size


async def test_due_deliveries_and_the_stores_own_writes_send_a_claim_to_the_thread(
    store: SQLiteEventStore,
) -> None:
    await store.append(new_events(3))
    await store.ensure_group("g", ["*"])
    [first, *_] = await store.claim("g", "w", limit=3, lease_ms=30_000)
    assert await store.retry_later(first, due_ms=0, error="boom")
    assert _claim_now(store, "g", 10) is None  # a retry is due: a transaction, on the thread
    [retried] = await store.claim("g", "w", limit=1, lease_ms=30_000)
    assert (retried.event.position, retried.attempt, retried.last_error) == (1, 2, "boom")
    await store.append(new_events(1))
    async with store._file.transaction():  # this process writes: the loop must not overtake it
        assert _claim_now(store, "g", 10) is None
    [fourth] = _claim_now(store, "g", 10) or []
    assert fourth.event.position == 4


async def test_a_small_claim_blocked_by_another_process_waits_off_the_loop(
    store: SQLiteEventStore,
) -> None:
    await store.append(new_events(5))
    await store.ensure_group("g", ["*"])
    holder, release = await _hold_lock(store.path)
    assert _claim_now(store, "g", 10) is None  # busy at once (nothing leased), not waited for
    claiming = asyncio.ensure_future(store.claim("g", "w", limit=10, lease_ms=30_000))
    for _ in range(20):  # the loop keeps running: the claim waits on the writer's thread
        await asyncio.sleep(0)
    assert not claiming.done()
    release.set()
    await holder
    assert [c.event.position for c in await claiming] == [1, 2, 3, 4, 5]
    assert (await store.stats())["groups"]["g"]["in_flight"] == 5


def _writes(store: SQLiteEventStore) -> tuple[int, int]:
    """Rows changed so far by the publishing connection (the loop's) and by the writer."""
    publisher, writer = store._file._appender._publisher, store._file._writer
    assert publisher is not None and writer is not None
    return publisher.total_changes, writer.total_changes


async def test_a_short_batch_is_settled_on_the_loop_and_a_long_one_by_the_writer(
    store: SQLiteEventStore,
) -> None:
    # one connection writing keeps its page cache: SQLite drops it once another connection wrote
    await store.append(new_events(60))
    await store.ensure_group("g", ["*"])
    short = await store.claim("g", "w", limit=sqlite_claim.LOOP_CLAIM_MAX, lease_ms=30_000)
    long = await store.claim("g", "w", limit=44, lease_ms=30_000)
    publisher, writer = _writes(store)
    assert await store.ack(short) == sqlite_claim.LOOP_CLAIM_MAX
    after_short = _writes(store)
    assert after_short[0] >= publisher + sqlite_claim.LOOP_CLAIM_MAX  # (and the trigger's rows)
    assert after_short[1] == writer
    assert await store.ack(long) == 44
    assert _writes(store)[1] > writer
    stats = (await store.stats())["groups"]["g"]
    assert (stats["acked"], stats["in_flight"], stats["lag"]) == (60, 0, 0)


async def test_a_process_that_only_consumes_settles_on_the_loop_after_its_checkpoints(
    store: SQLiteEventStore,
) -> None:
    """Claims and acks count towards background checkpoints as appends do; what follows a
    checkpoint (counts, a WAL restart) must not wait for an append that never comes here."""
    publisher = SQLiteEventStore(store.path)  # another process's appends, as far as `store` knows
    await publisher.open()
    await publisher.append(new_events(3 * CHECKPOINT_EVERY))
    await publisher.close()
    await store.ensure_group("g", ["*"])
    rounds = 2 * CHECKPOINT_EVERY // 3  # a short claim and its ack: 2 commits each
    for _ in range(rounds):
        claims = await store.claim("g", "w", limit=3, lease_ms=30_000)
        assert await store.ack(claims) == 3
    await store._file._appender.settle()  # noqa: SLF001 - the checkpoint and what follows it
    claims = await store.claim("g", "w", limit=3, lease_ms=30_000)
    writer = _writes(store)[1]
    assert await store.ack(claims) == 3
    assert _writes(store)[1] == writer  # on the loop, as before the checkpoints
    assert (await store.stats())["groups"]["g"]["acked"] == 3 * rounds + 3


async def test_a_short_ack_blocked_by_another_process_waits_off_the_loop(
    store: SQLiteEventStore,
) -> None:
    await store.append(new_events(3))
    await store.ensure_group("g", ["*"])
    claims = await store.claim("g", "w", limit=3, lease_ms=30_000)
    holder, release = await _hold_lock(store.path)
    acking = asyncio.ensure_future(store.ack(claims))
    for _ in range(20):  # the loop keeps running: the ack waits on the writer's thread
        await asyncio.sleep(0)
    assert not acking.done()
    release.set()
    await holder
    assert await acking == 3
    assert (await store.stats())["groups"]["g"]["acked"] == 3
