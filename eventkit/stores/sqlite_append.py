"""Publishing to one SQLite store file, and the background checkpoints of its WAL.

Publishing has its own plain sqlite3 connection, because an aiosqlite call is a thread round trip
(0.1-0.3 ms, more on a loaded machine), three times a small commit's own cost:
- a lone append (no write of this process in progress, a few small rows) runs on the event loop's
  thread: see on_loop for why that is safe (small claims of new events use it too, see
  sqlite_claim.py). It uses busy_timeout 0, so a lock held by another process fails at once
  (nothing written) instead of blocking the loop; the append then takes the next path;
- every other append joins a queue, and one committer task writes the whole queue in one
  transaction on the publishing thread (group commit: concurrent publishers share a commit). Its
  positions come in commit order, as SQLite's write lock hands them out, in every process.
Both paths return once the transaction has committed (WAL, synchronous=NORMAL, as every write).

Checkpoints are off the hot path: no connection checkpoints on commit (wal_autocheckpoint = 0),
a PASSIVE checkpoint runs on its own connection and thread after about CHECKPOINT_EVERY small
commits. They were the main cause of the publish->handler tail (benchmarks/RESULTS.md): a commit
that crossed the 1,000-page threshold copied the WAL into the file and fsynced it, 5-40 ms inside
a publish or a claim. Under steady appends the background checkpoint alone never catches up,
and the WAL grew for good (bench_scale.py: 16 GB beside a 2 GB store): so after every
checkpoint that finds RESTART_FRAMES in the WAL, this process's writes wait while the publishing
thread copies what was committed meanwhile and restarts the WAL (an fsync of its header); see
_run_checkpoint for why not after each.

The store's other writes (claims, acks, transactions on its aiosqlite writer) share the asyncio.Lock
given to Appender, and report their commits to it (committed), so they count towards checkpoints.

Counts (schema step 6): a transaction of appends ends by adding the rows after META 'counted_to' to
TYPE_COUNTS by type and moving 'counted_to' (ADVANCE_COUNTS: one range scan a batch; a trigger per
row cost publish_many ~8 %). A lone append on the loop is one statement and counts nothing: readers
add the few rows after 'counted_to' by a range scan, and a background checkpoint that follows
such appends is followed by a write on the publishing thread that advances the counts, so that
tail stays short under single publishes. Counts roll back with their transaction.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from eventkit.errors import StoreError
from eventkit.stores.sqlite_sql import (
    ADVANCE_COUNTS,
    INSERT_EVENT,
    INSERT_EVENT_NARROW,
    POSITION_OF,
    SEQUENCE,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: an events row as the store writes it: event_id, type, version, source, timestamp_ms, data,
#: published_ms, then correlation_id and causation_id; without those two when the whole batch has
#: none (most publishes: INSERT_EVENT_NARROW binds two parameters fewer per row)
Row = (
    tuple[str, str, int, str, int, str | bytes, int, str | None, str | None]
    | tuple[str, str, int, str, int, str | bytes, int]
)

#: an append written on the event loop's thread may hold at most this many rows and bytes of
#: data: a commit of a few pages costs ~30-100 µs; a large one goes through the thread
LOOP_APPEND_MAX_ROWS = 16
LOOP_APPEND_MAX_BYTES = 64 * 1024
#: appends on the loop hold it at most this long before their publisher yields a turn
LOOP_HOLD_S = 0.001
#: a background checkpoint after this many commits (an append of n rows counts 1 + n // 32):
#: roughly the 1,000 WAL pages of SQLite's own wal_autocheckpoint
CHECKPOINT_EVERY = 200
#: the WAL restarts once a background checkpoint finds this many frames in it, or nothing
#: committed while it ran: each restart holds this process's writes ~3-5 ms (see _run_checkpoint).
#: With what lands meanwhile the file stays near 20 MB; past 4,096 frames each page read probes
#: one more of the WAL index's hash tables
RESTART_FRAMES = 3_000
#: pragmas of every connection that writes; checkpoints run in the background instead
WRITER_PRAGMAS = ["journal_mode = WAL", "synchronous = NORMAL", "wal_autocheckpoint = 0"]


class Appender:
    """The publishing connection, thread and queue of one store file, and its checkpoints.

    `lock` is the store's writer lock: the publishing connection is used on the loop or on its own
    thread, never both at once, and one group commit holds the lock as any other write does.
    `error` turns a sqlite3 error into eventkit's, with the store's advice.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int,
        lock: asyncio.Lock,
        error: Callable[[sqlite3.Error], StoreError],
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._lock = lock
        self._error = error
        # publishing: a plain connection; appends that wait for the lock, and the task that
        # commits them
        self._publisher: sqlite3.Connection | None = None
        self._publishing: ThreadPoolExecutor | None = None
        self._queue: list[tuple[list[Row], asyncio.Future[list[int]]]] = []
        self._committer: asyncio.Task[None] | None = None
        # checkpoints: their own connection and thread
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing: ThreadPoolExecutor | None = None
        self._checkpoint: asyncio.Task[None] | None = None
        self._commits = 0
        #: appends on the loop since the counts were last brought up to date (they count nothing)
        self._uncounted = False
        #: when appends on the loop started holding it (None: the loop turned since the last one)
        self._loop_held_since: float | None = None

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"

    @property
    def is_open(self) -> bool:
        return self._publisher is not None

    async def open(self) -> None:
        """Start the publishing and checkpoint threads and connect for publishing (the schema is
        already up to date)."""
        self._publishing = ThreadPoolExecutor(1, thread_name_prefix="eventkit-sqlite-append")
        self._checkpointing = ThreadPoolExecutor(1, thread_name_prefix="eventkit-sqlite-ckpt")
        self._publisher = await self._on_thread(self._publishing, _connect_plain, self.path)

    async def settle(self) -> None:
        """Wait for the queued appends to be written and for a checkpoint in progress."""
        for task in (self._committer, self._checkpoint):
            if task is not None:
                await asyncio.wait({task})

    async def close(self) -> None:
        """Close the connections and threads; the caller holds the lock (no write in progress)."""
        for plain, executor in ((self._checkpointer, self._checkpointing),
                                (self._publisher, self._publishing)):  # fmt: skip
            if plain is not None:
                await self._on_thread(executor, plain.close)
            if executor is not None:
                executor.shutdown(wait=False)
        self._publisher = self._checkpointer = None
        self._publishing = self._checkpointing = None

    # -- publishing -----------------------------------------------------------------------------

    async def append(self, rows: list[Row]) -> list[int]:
        """Store rows in one transaction, durably; their positions (an event_id stored before
        keeps its first position). On the loop when that is safe, else by group commit."""
        positions = self._append_on_loop(rows)
        if positions is not None:
            if self._loop_held_too_long():  # a publishing loop must not starve other tasks
                await asyncio.sleep(0)
            return positions
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.get_running_loop().create_task(self._commit_queue())
        return await future

    def _append_on_loop(self, rows: list[Row]) -> list[int] | None:
        """A small append committed on the event loop's thread (see on_loop), or None when it must
        take the thread (the caller queues it). The benchmark rows "loop lag while publishing one
        by one" and "publish one by one" against a synchronous sqlite3 commit pay for it
        (benchmarks/bench_core.py)."""
        if (
            len(rows) > LOOP_APPEND_MAX_ROWS
            or sum(len(row[5]) for row in rows) > LOOP_APPEND_MAX_BYTES
        ):
            return None
        positions = self.on_loop(lambda db: _insert_batches(db, [rows])[0])
        if positions is not None:
            self._uncounted = True
            self.committed(1 + len(rows) // 8)
        return positions

    def on_loop(self, work: Callable[[sqlite3.Connection], T | None]) -> T | None:
        """The speed trick of this store: `work` run at once on the event loop's thread with the
        publishing connection, or None when it must go through a thread (not safe now, another
        process holds the write lock, or `work` itself says so by returning None).

        Safe when nothing else of this process writes (the lock is free, no append waits: this
        cannot overtake them; a WAL restart, an fsync, happens under the lock: _run_checkpoint).
        Then a small write is a few pages written to the WAL, which synchronous=NORMAL does not
        fsync, and no checkpoint runs (wal_autocheckpoint = 0): 30-150 µs, against 0.1-0.3 ms
        for each thread round trip. A write lock held by another process is not waited for:
        busy_timeout is 0 here, so the statement fails at once, nothing is written, and the
        caller takes its thread path, which waits busy_timeout_ms. `work` must keep to a few
        statements of bounded size, and must not let a busy error escape after a statement that
        wrote (it would be taken for "nothing written")."""
        db = self._publisher
        if db is None or self._lock.locked() or self._queue:
            return None
        try:
            return work(db)
        except sqlite3.OperationalError as e:
            if is_busy(e):
                return None  # rolled back: another process writes; the thread will wait for it
            raise self._error(e) from e
        except sqlite3.Error as e:
            raise self._error(e) from e

    def _loop_held_too_long(self) -> bool:
        """Whether appends on the loop have held it for LOOP_HOLD_S without a turn of the loop.

        A task publishing in a loop must leave other tasks their turn (consumers, and the
        background checkpoint, which only starts on a turn), but a turn per publish (an epoll
        call) cost ~4 µs of ~75 µs here: so a publisher yields once its appends held the loop
        LOOP_HOLD_S, not after each. A callback scheduled at the first of them notes the loop's
        next turn (benchmark row "loop lag while publishing one by one" bounds the hold)."""
        now = time.perf_counter()
        if self._loop_held_since is None:
            self._loop_held_since = now
            asyncio.get_running_loop().call_soon(self._loop_turned)
            return False
        return now - self._loop_held_since > LOOP_HOLD_S

    def _loop_turned(self) -> None:
        self._loop_held_since = None

    async def _commit_queue(self) -> None:
        """Group commit: the queued appends in one transaction per turn, on the publishing
        thread; one turn per hold of the lock, so claims and acks wait one commit at most."""
        while self._queue:
            async with self._lock:
                taken, self._queue = self._queue, []
                try:
                    results = await self._on_thread(
                        self._publishing, self._insert_on_thread, [r for r, _ in taken]
                    )
                except BaseException as e:  # the thread is gone (closed); or cancelled
                    results = [e] * len(taken)
                    if not isinstance(e, Exception):
                        for _, future in [*taken, *self._queue]:
                            future.cancel()
                        raise
                finally:
                    self.committed(sum(1 + len(rows) // 8 for rows, _ in taken))
            for (_, future), result in zip(taken, results, strict=True):
                if future.done():  # its publisher was cancelled (the rows may be stored)
                    continue
                if isinstance(result, sqlite3.Error):
                    future.set_exception(self._error(result))
                elif isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _insert_on_thread(self, batches: list[list[Row]]) -> list[list[int] | BaseException]:
        """All batches in one transaction, waiting busy_timeout_ms for another process's lock;
        if it fails, each on its own, so one publisher's error is not every publisher's."""
        db = self._publisher
        if db is None:
            return [self._error(sqlite3.ProgrammingError("closed"))] * len(batches)
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        try:
            try:
                results: list[list[int] | BaseException] = list(_insert_batches(db, batches))
                return results
            except sqlite3.Error as e:
                if len(batches) == 1:
                    return [e]
            results = []
            for rows in batches:
                try:
                    results += _insert_batches(db, [rows])
                except sqlite3.Error as e:
                    results.append(e)
            return results
        finally:
            db.execute("PRAGMA busy_timeout = 0")

    # -- checkpoints --------------------------------------------------------------------------

    def committed(self, weight: int) -> None:
        """Count a commit; start a background checkpoint once they add up (see the docstring)."""
        self._commits += weight
        if self._commits < CHECKPOINT_EVERY or self._publisher is None:
            return
        if self._checkpoint is None or self._checkpoint.done():
            self._commits = 0
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            busy, log, copied = await self._on_thread(self._checkpointing, self._checkpoint_now)
        except (sqlite3.Error, StoreError, RuntimeError) as e:  # the next one may do; nothing lost
            logger.debug("checkpoint of %s failed: %s", self.path, e)
            return
        if busy or log == 0:
            return
        # Under steady writes commits land while this copies, and the WAL restarts only once all
        # of it is in the file: copying the rest and its fsyncs hold this process's writes ~3 ms,
        # a quarter of publishing one by one's time when it came after every checkpoint; so only
        # once the WAL holds RESTART_FRAMES. After a checkpoint that nothing followed
        # (self._commits still 0) the next write would restart the WAL wherever it ran: this
        # one, on the thread, keeps that fsync off the loop.
        restart = self._commits == 0 or log >= RESTART_FRAMES
        if not restart and not self._uncounted:
            return
        try:
            async with self._lock:  # this process's writes wait (appends queue for one commit)
                await self._on_thread(self._publishing, self._catch_up, restart)
        except (StoreError, RuntimeError) as e:  # closed meanwhile
            logger.debug("no catch-up after the checkpoint of %s: %s", self.path, e)

    def _catch_up(self, restart: bool) -> None:
        """After a background checkpoint: the counts brought up to date (single appends on the
        loop count nothing), in a write that restarts the WAL when `restart` first copied the
        frames written since (SQLite restarts it only once all are in the file)."""
        db = self._publisher
        if db is None:
            return
        if restart:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        if _advance_counts(db):  # under the lock: no append on the loop meanwhile
            self._uncounted = False

    def _checkpoint_now(self) -> tuple[int, int, int]:
        """PASSIVE: copies what it can without waiting for any lock, while others go on."""
        if self._checkpointer is None:
            self._checkpointer = _connect_plain(self.path)
        [(busy, log, copied)] = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return busy, log, copied

    async def _on_thread(
        self, executor: ThreadPoolExecutor | None, call: Callable[..., T], *args: Any
    ) -> T:
        if executor is None:
            raise StoreError(
                f"{self!r} is not open: await bus.initialize() (or store.open()) first"
            )
        return await asyncio.get_running_loop().run_in_executor(executor, call, *args)


def is_busy(error: sqlite3.OperationalError) -> bool:
    """Another connection holds the lock this statement needed (it wrote nothing)."""
    code = getattr(error, "sqlite_errorcode", 0)  # none when the sqlite3 module raised it
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def text_or_bytes(raw: bytes) -> str | bytes:
    """Text columns as str, or as bytes when not UTF-8 (a corrupt record: the codec names it)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _connect_plain(path: Path) -> sqlite3.Connection:
    """A sqlite3 connection for appends or checkpoints: autocommit, busy_timeout 0 (the thread
    path raises it while it runs), usable from the loop and one helper thread, never at once."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    db.text_factory = text_or_bytes
    for pragma in WRITER_PRAGMAS:
        db.execute(f"PRAGMA {pragma}")
    return db


def _insert_batches(db: sqlite3.Connection, batches: Sequence[list[Row]]) -> list[list[int]]:
    """Insert each batch, all in one transaction; the positions of each batch's rows."""
    if len(batches) == 1 and len(batches[0]) == 1:  # one statement: atomic by itself
        return [_insert(db, batches[0])]
    db.execute("BEGIN IMMEDIATE")
    try:
        positions = [_insert(db, rows) for rows in batches]
        for sql in ADVANCE_COUNTS:
            db.execute(sql)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return positions


def _advance_counts(db: sqlite3.Connection) -> bool:
    """ADVANCE_COUNTS in a transaction of its own; a lock held elsewhere skips it (False: next
    time)."""
    try:
        db.execute("BEGIN IMMEDIATE")
        for sql in ADVANCE_COUNTS:
            db.execute(sql)
        db.execute("COMMIT")
        return True
    except sqlite3.OperationalError as e:
        if db.in_transaction:
            db.execute("ROLLBACK")
        logger.debug("counts of %s not advanced: %s", db, e)
        return False


def _insert(db: sqlite3.Connection, rows: list[Row]) -> list[int]:
    sql = INSERT_EVENT_NARROW if len(rows[0]) == 7 else INSERT_EVENT  # a batch is one or other
    if len(rows) == 1:
        found = db.execute(f"{sql} RETURNING position", rows[0]).fetchall()
        if found:
            return [found[0][0]]
    else:  # n rows inserted and the sequence moved by n: n distinct positions after before
        [(before,)] = db.execute(SEQUENCE).fetchall()
        inserted = db.executemany(sql, rows).rowcount
        [(after,)] = db.execute(SEQUENCE).fetchall()
        if inserted == len(rows) == after - before:
            return list(range(before + 1, after + 1))
    # some event_id was stored before (a publish tried again): it keeps its first position
    return [db.execute(POSITION_OF, (row[0],)).fetchone()[0] for row in rows]
