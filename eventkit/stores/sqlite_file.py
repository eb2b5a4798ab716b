"""One SQLite file opened as a store: its connections, schema steps and error messages.

One asyncio.Lock orders this process's writes; each is atomic across processes (a single
statement, or BEGIN IMMEDIATE). The writer (aiosqlite) runs claims, acks and the rarer writes; a
reader serves queries, which WAL never makes wait for a writer. Every database call of the store
goes through query, write_one, transaction or append, which turn sqlite3 errors into eventkit's.

Publishing has its own plain sqlite3 connection, because an aiosqlite call is a thread round trip
(0.1-0.3 ms, more on a loaded machine), three times a small commit's own cost:
- a lone append (no write of this process in progress, a few small rows) runs on the event loop's
  thread: see _append_on_loop for why that is safe. It uses busy_timeout 0, so a lock held by
  another process fails at once (nothing written) instead of blocking the loop; the append then
  takes the next path;
- every other append joins a queue, and one committer task writes the whole queue in one
  transaction on the publishing thread (group commit: concurrent publishers share a commit). Its
  positions come in commit order, as SQLite's write lock hands them out, in every process.
Both paths return once the transaction has committed (WAL, synchronous=NORMAL, as every write).

Checkpoints are off the hot path: no connection checkpoints on commit (wal_autocheckpoint = 0),
a PASSIVE checkpoint runs on its own connection and thread after about CHECKPOINT_EVERY small
commits. They were the main cause of the publish->handler tail (benchmarks/RESULTS.md): a commit
that crossed the 1,000-page threshold copied the WAL into the file and fsynced it, 5-40 ms inside
a publish or a claim. The append after a full checkpoint restarts the WAL, which fsyncs its
header, so it goes through the thread too.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from eventkit.errors import StoreError, StoreUnavailableError
from eventkit.stores.sqlite_sql import (
    DEAD_LETTERS,
    DELIVERIES,
    EVENTS,
    GROUPS,
    INSERT_EVENT,
    MIGRATIONS,
    POSITION_OF,
    SCHEMA_VERSION,
    SEQUENCE,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: an events row as the store writes it: event_id, type, version, source, timestamp_ms, data,
#: published_ms
Row = tuple[str, str, int, str, int, str | bytes, int]

#: an append written on the event loop's thread may hold at most this many rows and bytes of
#: data: a commit of a few pages costs ~30-100 µs; a large one goes through the thread
LOOP_APPEND_MAX_ROWS = 16
LOOP_APPEND_MAX_BYTES = 64 * 1024
#: a background checkpoint after this many commits (an append of n rows counts 1 + n // 8):
#: roughly the 1,000 WAL pages of SQLite's own wal_autocheckpoint
CHECKPOINT_EVERY = 200
#: pragmas of every connection that writes; checkpoints run in the background instead
WRITER_PRAGMAS = ["journal_mode = WAL", "synchronous = NORMAL", "wal_autocheckpoint = 0"]


class SQLiteFile:
    """The connections to one store file, opened read-write (WAL, schema up to date) or read-only
    (the file and its folder left exactly as they were)."""

    def __init__(self, path: Path, *, busy_timeout_ms: int, read_only: bool) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.read_only = read_only
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        # publishing: a plain connection, used on the loop or on its own thread, never both at
        # once (the lock); appends that wait for the lock, and the task that commits them
        self._publisher: sqlite3.Connection | None = None
        self._publishing: ThreadPoolExecutor | None = None
        self._queue: list[tuple[list[Row], asyncio.Future[list[int]]]] = []
        self._committer: asyncio.Task[None] | None = None
        # checkpoints: their own connection and thread
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing: ThreadPoolExecutor | None = None
        self._checkpoint: asyncio.Task[None] | None = None
        self._commits = 0
        #: a checkpoint copied the whole WAL: the next append restarts it (an fsync), off the loop
        self._wal_restart_due = False
        #: the file's schema step once open (read-only stores may be older than SCHEMA_VERSION)
        self.schema = SCHEMA_VERSION

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"

    async def open(self) -> None:
        if self._writer is not None:
            return
        if self.read_only:  # one connection serves both roles; any write fails as read-only
            self._writer = self._reader = await self._open_read_only()
            return
        if not self.path.parent.is_dir():  # say so before aiosqlite starts a thread for nothing
            raise StoreUnavailableError(f"SQLite store {self.path} is not writable: its directory "
                                        f"{self.path.parent} does not exist or is not a directory")  # fmt: skip
        await asyncio.to_thread(self._refuse_foreign_database)
        opened: list[aiosqlite.Connection] = []
        try:  # the writer sets WAL and the schema up before the reader looks
            for pragmas in (WRITER_PRAGMAS, ["query_only = ON"]):
                opened.append(db := await _connect(self.path))
                for pragma in [f"busy_timeout = {int(self.busy_timeout_ms)}", *pragmas]:
                    await db.execute(f"PRAGMA {pragma}")
                if len(opened) == 1:
                    await self._migrate(db)
            self._publishing = ThreadPoolExecutor(1, thread_name_prefix="eventkit-sqlite-append")
            self._checkpointing = ThreadPoolExecutor(1, thread_name_prefix="eventkit-sqlite-ckpt")
            self._publisher = await self._on_thread(self._publishing, _connect_plain, self.path)
        except BaseException as e:
            for db in opened:
                await db.close()
            if isinstance(e, sqlite3.Error):
                raise self.error(e) from e
            raise
        self._writer, self._reader = opened

    def _refuse_foreign_database(self) -> None:
        """Refuse, untouched, a file that holds another application's tables: opening it as a
        store would switch it to WAL and add eventkit's tables beside them."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        try:  # immutable: reads without creating -wal/-shm files or taking locks
            probe = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            try:
                [(version,)] = probe.execute("PRAGMA user_version").fetchall()
                tables = [name for (name,) in probe.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]  # fmt: skip
            finally:
                probe.close()
        except sqlite3.Error as e:
            raise self.error(e) from e
        if version == 0 and tables:
            raise StoreError(
                f"{self.path} is not an eventkit store (it holds tables {', '.join(tables[:5])}); "
                "it was left unchanged: point EVENT_STORE_PATH (or --path) at a new file"
            )

    async def _open_read_only(self) -> aiosqlite.Connection:
        """A read-only connection that leaves the file and its folder exactly as they were: no WAL
        switch, no schema step, no temp table, and no -wal/-shm files left beside the file.

        A plain `mode=ro` connection to a WAL database creates -wal and -shm and cannot remove
        them. So: with a -wal present (another process has the store open, or one died), read it
        with `readonly_shm=1`, which never writes the -shm; with none (the store was closed
        cleanly) the file alone is the whole database and `immutable=1` reads it without locks
        or side files (a writer that opens the store in the meantime is not seen).
        """
        path = self.path.resolve()
        try:
            with path.open("rb") as f:
                header = f.read(100)
        except FileNotFoundError:
            raise StoreError(f"SQLite store {self.path} does not exist: check the path (--path or "
                             "EVENT_STORE_PATH); reading a store never creates one") from None  # fmt: skip
        except OSError as e:  # a folder, permission denied
            raise StoreError(f"SQLite store {self.path} cannot be read ({e.strerror or e}): point "
                             "--path or EVENT_STORE_PATH at a readable store file") from None  # fmt: skip
        not_ours = (f"{self.path} is not an eventkit store ({{}}); it was left unchanged: point "
                    "--path or EVENT_STORE_PATH at a file eventkit wrote")  # fmt: skip
        if not header.startswith(b"SQLite format 3\x00"):
            raise StoreError(not_ours.format("not a SQLite database"))
        mode = "mode=ro"
        if header[18:20] == b"\x02\x02":  # WAL
            wal = Path(f"{path}-wal").exists()
            mode += "&readonly_shm=1" if wal else "&immutable=1"
        db = await _connect(f"{path.as_uri()}?{mode}", uri=True)
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            [(version,)] = await db.execute_fetchall("PRAGMA user_version")
            tables = {name for (name,) in await db.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
        except BaseException as e:
            await db.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"SQLite store {self.path} cannot be read ({e}): check that it "
                                 "is an eventkit store and that its -wal and -shm files (if "
                                 "any) are both there and readable") from None  # fmt: skip
            raise
        missing = {EVENTS, GROUPS, DELIVERIES, DEAD_LETTERS} - tables
        if version > SCHEMA_VERSION or not version or missing:
            await db.close()
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite store {self.path} has schema version {version}, newer "
                                 f"than this eventkit's {SCHEMA_VERSION}: upgrade eventkit")  # fmt: skip
            found = "no tables" if not tables else f"tables {', '.join(sorted(tables)[:5])}"
            raise StoreError(
                not_ours.format(f"a SQLite database with {found}, user_version {version}")
            )
        self.schema = version
        return db

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        """Apply missing schema steps in one write transaction, so racing processes apply each once."""
        [(mode,)] = await db.execute_fetchall("PRAGMA journal_mode")
        if mode != "wal":
            raise StoreUnavailableError(f"SQLite store {self.path} cannot use WAL (journal_mode="
                                        f"{mode}): put it on a local file system")  # fmt: skip
        await db.execute("BEGIN IMMEDIATE")
        try:
            [(version,)] = await db.execute_fetchall("PRAGMA user_version")
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite store {self.path} has schema version {version}, newer "
                                 f"than this eventkit's {SCHEMA_VERSION}: upgrade eventkit")  # fmt: skip
            for number, statements in MIGRATIONS:
                if number > version:
                    for statement in statements:
                        await db.execute(statement)
                    logger.info("applied schema step %d to %s", number, self.path)
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await db.execute("COMMIT")
        except BaseException:
            await db.rollback()
            raise
        await db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS trim_doomed (position INTEGER PRIMARY KEY)"
        )

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        for task in (self._committer, self._checkpoint):  # queued appends are written first
            if task is not None:
                await asyncio.wait({task})
        if reader is not None:
            await reader.close()
        async with self._lock:  # let a write in progress finish
            for plain, executor in ((self._checkpointer, self._checkpointing),
                                    (self._publisher, self._publishing)):  # fmt: skip
                if plain is not None:
                    await self._on_thread(executor, plain.close)
                if executor is not None:
                    executor.shutdown(wait=False)
            self._publisher = self._checkpointer = None
            self._publishing = self._checkpointing = None
            if writer is not None:
                await writer.close()

    # -- plumbing: every database call goes through one of these, which translate errors --------

    def error(self, e: sqlite3.Error) -> StoreError:
        text, path = str(e), self.path
        if self.read_only and "readonly" in text:
            return StoreError(f"SQLite store {path} was opened read-only ({text}): open it "
                              "without read_only to change it")  # fmt: skip
        if "readonly" in text or "unable to open" in text or "disk I/O" in text:
            return StoreUnavailableError(
                f"SQLite store {path} is not writable ({text}): make the file, its directory and "
                "the -wal/-shm files beside it writable, or point EVENT_STORE_PATH elsewhere")  # fmt: skip
        if "locked" in text or "busy" in text:
            return StoreUnavailableError(
                f"SQLite store {path} stayed locked by another writer for over busy_timeout_ms="
                f"{self.busy_timeout_ms} ({text}): raise it or stop the stuck writer")  # fmt: skip
        if "not a database" in text:
            return StoreUnavailableError(f"{path} is not a SQLite database ({text}): point "
                                         "EVENT_STORE_PATH at an eventkit store or a new file")  # fmt: skip
        return StoreError(f"SQLite store {path} failed: {text}")

    def connection(self, reader: bool = False) -> aiosqlite.Connection:
        db = self._reader if reader else self._writer
        if db is None:
            raise StoreError(f"{self!r} is not open: await store.open() (or bus.start()) first")
        return db

    async def query(self, sql: str, params: Any = ()) -> list[Any]:
        """A read on the reader connection: WAL readers never wait for the writer."""
        try:
            return list(await self.connection(reader=True).execute_fetchall(sql, params))
        except sqlite3.Error as e:
            raise self.error(e) from e

    async def write_one(self, sql: str, params: Any = ()) -> list[Any]:
        """One statement, atomic and durable by itself (autocommit), under the writer lock."""
        db = self.connection()
        async with self._lock:
            try:
                found = list(await db.execute_fetchall(sql, params))
            except sqlite3.Error as e:
                raise self.error(e) from e
            self._committed(1 + len(found) // 8)  # a claim or ack returns a row per event
            return found

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time per store, never shared between coroutines; BEGIN
        IMMEDIATE takes the file's write lock first, so what it reads no other process changes."""
        db = self.connection()
        async with self._lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException as e:
                await db.rollback()  # queued after any call still running: the FIFO keeps order
                if isinstance(e, sqlite3.Error):
                    raise self.error(e) from e
                raise
            finally:
                self._committed(1)

    # -- publishing -----------------------------------------------------------------------------

    async def append(self, rows: list[Row]) -> list[int]:
        """Store rows in one transaction, durably; their positions (an event_id stored before
        keeps its first position). On the loop when that is safe, else by group commit."""
        if not rows:
            return []
        if self._publisher is None:
            self.connection()  # not open: says so
            raise self.error(sqlite3.OperationalError("attempt to write a readonly database"))
        positions = self._append_on_loop(rows)
        if positions is not None:
            await asyncio.sleep(0)  # a turn for other tasks: a publishing loop must not starve them
            return positions
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.get_running_loop().create_task(self._commit_queue())
        return await future

    def _append_on_loop(self, rows: list[Row]) -> list[int] | None:
        """The speed trick of publishing: a small append committed on the event loop's thread,
        or None when it must take the thread (the caller queues it).

        Safe to run on the loop when nothing else of this process writes (the lock is free, no
        append waits: this one cannot overtake them), the rows are few and small, and no WAL
        restart (an fsync) is due. Then the commit is a few pages written to the WAL, which
        synchronous=NORMAL does not fsync, and no checkpoint runs (wal_autocheckpoint = 0). A
        write lock held by another process is not waited for: busy_timeout is 0 on this
        connection, so BEGIN IMMEDIATE fails at once, nothing is written, and the caller queues
        the append for the thread, which waits busy_timeout_ms. The benchmark row "loop lag
        while publishing one by one" and "publish one by one" against a synchronous sqlite3
        commit pay for it (benchmarks/bench_core.py).
        """
        db = self._publisher
        if (
            db is None
            or self._lock.locked()
            or self._queue
            or self._wal_restart_due
            or len(rows) > LOOP_APPEND_MAX_ROWS
            or sum(len(row[5]) for row in rows) > LOOP_APPEND_MAX_BYTES
        ):
            return None
        try:
            [positions] = _insert_batches(db, [rows])
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None  # rolled back: another process writes; the thread will wait for it
            raise self.error(e) from e
        except sqlite3.Error as e:
            raise self.error(e) from e
        self._committed(1 + len(rows) // 8)
        return positions

    async def _commit_queue(self) -> None:
        """Group commit: the queued appends in one transaction per turn, on the publishing
        thread; one turn per hold of the lock, so claims and acks wait one commit at most."""
        while self._queue:
            async with self._lock:
                taken, self._queue = self._queue, []
                restart, self._wal_restart_due = self._wal_restart_due, False
                try:
                    results = await self._on_thread(
                        self._publishing, self._insert_on_thread, [r for r, _ in taken], restart
                    )
                except BaseException as e:  # the thread is gone (closed); or cancelled
                    results = [e] * len(taken)
                    if not isinstance(e, Exception):
                        for _, future in [*taken, *self._queue]:
                            future.cancel()
                        raise
                finally:
                    self._committed(sum(1 + len(rows) // 8 for rows, _ in taken))
            for (_, future), result in zip(taken, results, strict=True):
                if future.done():  # its publisher was cancelled (the rows may be stored)
                    continue
                if isinstance(result, sqlite3.Error):
                    future.set_exception(self.error(result))
                elif isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _insert_on_thread(
        self, batches: list[list[Row]], restart: bool
    ) -> list[list[int] | BaseException]:
        """All batches in one transaction, waiting busy_timeout_ms for another process's lock;
        if it fails, each on its own, so one publisher's error is not every publisher's.

        With `restart`, first checkpoint the frames written since the background checkpoint, so
        that this write finds the WAL fully copied and restarts it from its start (SQLite does
        that only then; without it the WAL would grow for as long as writes keep coming)."""
        db = self._publisher
        if db is None:
            return [self.error(sqlite3.ProgrammingError("closed"))] * len(batches)
        if restart:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        try:
            try:
                return list(_insert_batches(db, batches))
            except sqlite3.Error as e:
                if len(batches) == 1:
                    return [e]
            results: list[list[int] | BaseException] = []
            for rows in batches:
                try:
                    results += _insert_batches(db, [rows])
                except sqlite3.Error as e:
                    results.append(e)
            return results
        finally:
            db.execute("PRAGMA busy_timeout = 0")

    # -- checkpoints --------------------------------------------------------------------------

    def _committed(self, weight: int) -> None:
        """Count a commit; start a background checkpoint once they add up (see the docstring)."""
        self._commits += weight
        if self._commits < CHECKPOINT_EVERY or self.read_only or self._publisher is None:
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
        if not busy and log == copied:
            self._wal_restart_due = True

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
            raise StoreError(f"{self!r} is not open: await store.open() (or bus.start()) first")
        return await asyncio.get_running_loop().run_in_executor(executor, call, *args)


def _connect_plain(path: Path) -> sqlite3.Connection:
    """A sqlite3 connection for appends or checkpoints: autocommit, busy_timeout 0 (the thread
    path raises it while it runs), usable from the loop and one helper thread, never at once."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
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
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return positions


def _insert(db: sqlite3.Connection, rows: list[Row]) -> list[int]:
    if len(rows) == 1:
        found = db.execute(f"{INSERT_EVENT} RETURNING position", rows[0]).fetchall()
        if found:
            return [found[0][0]]
    else:  # n rows inserted and the sequence moved by n: n distinct positions after before
        [(before,)] = db.execute(SEQUENCE).fetchall()
        inserted = db.executemany(INSERT_EVENT, rows).rowcount
        [(after,)] = db.execute(SEQUENCE).fetchall()
        if inserted == len(rows) == after - before:
            return list(range(before + 1, after + 1))
    # some event_id was stored before (a publish tried again): it keeps its first position
    return [db.execute(POSITION_OF, (row[0],)).fetchone()[0] for row in rows]


async def _connect(database: str | Path, *, uri: bool = False) -> aiosqlite.Connection:
    """An aiosqlite connection in autocommit mode whose worker thread is a daemon, and whose text
    reads never fail.

    aiosqlite's thread is not a daemon: a program that ends without close() (an exception before
    it) would wait for it forever. As a daemon it ends with the program, and the leases it held
    expire as after a crash (SPEC §7 "Exit"); tests/test_exit.py fails if aiosqlite changes this.
    Text that is not UTF-8 (written by another program) comes back as bytes instead of failing
    the whole query, so only that record goes to the DLQ (codec refuses it).
    """
    connection = aiosqlite.connect(database, uri=uri, isolation_level=None)
    thread = getattr(connection, "_thread", None)  # aiosqlite <= 0.22: private, but stable
    if thread is not None:
        thread.daemon = True
    db = await connection
    db.text_factory = _text_or_bytes
    return db


def _text_or_bytes(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
